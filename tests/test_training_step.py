"""Tests for course_ddpm.training_step: the pieces of Ho et al. 2020, Algorithm 1 (learning rate,
EMA, data order, batch, loss), the state a run starts from, and one step checked against the
same step written out with torch's own pieces. Synthetic data and a tiny U-Net: no MNIST."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from course_ddpm.rng import derive_seed
from course_ddpm.schedules import make_schedule
from course_ddpm.training_config import TrainConfig
from course_ddpm.training_step import (
    Batch,
    EpochSampler,
    TrainingDiverged,
    TrainState,
    diffusion_loss,
    draw_batch,
    ema_decay_at,
    ema_update,
    lr_at,
    train_step,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops (tests/conftest.py)
TINY_MODEL = {"base_channels": 8, "channel_mults": [1, 2], "attention": False, "groups": 4}


def tiny_config(**overrides) -> TrainConfig:
    settings = dict(model_kwargs=TINY_MODEL, schedule="cosine", T=20, batch_size=8, lr=1e-3, warmup_steps=4)
    return TrainConfig(**{**settings, **overrides})


def synthetic_x(n: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def parameters(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


# ------------------------------------------------------------------------ small parts
def test_lr_warmup_is_linear_then_constant():
    config = TrainConfig(lr=1e-3, warmup_steps=4)
    assert [lr_at(config, s) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert lr_at(dataclasses.replace(config, warmup_steps=0), 0) == 1e-3


def test_ema_update_is_the_exponential_moving_average():
    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    old = [p.detach().clone() for p in ema.parameters()]
    ema_update(ema, model, 0.9)
    for p_ema, p_old, p in zip(ema.parameters(), old, model.parameters()):
        torch.testing.assert_close(p_ema, 0.9 * p_old + 0.1 * p.detach(), rtol=1e-6, atol=1e-7)
    assert ema_decay_at(0.999, 0) == pytest.approx(0.1) and ema_decay_at(0.999, 10**6) == 0.999


def test_epoch_sampler_visits_every_image_once_per_epoch_and_resumes():
    sampler = EpochSampler(10, seed=1)
    stream = torch.cat([sampler.next(7) for _ in range(10)])  # 70 indices = 7 epochs, batches straddle them
    for epoch in range(7):
        assert sorted(stream[10 * epoch : 10 * (epoch + 1)].tolist()) == list(range(10))
    assert not torch.equal(stream[:10], stream[10:20])  # a fresh order each epoch
    state = sampler.state_dict()
    expected = torch.cat([sampler.next(3) for _ in range(5)])
    resumed = EpochSampler(10, seed=999)
    resumed.load_state_dict(state)
    assert torch.equal(torch.cat([resumed.next(3) for _ in range(5)]), expected)


def test_draw_batch_ranges_and_label_dropout_rate():
    x, y = torch.zeros(50, 1, 4, 4), torch.arange(50) % 5
    config = TrainConfig(T=20, batch_size=20_000, conditional=True, label_dropout=0.25)
    batch = draw_batch(x, y, EpochSampler(50, 0), torch.Generator().manual_seed(0), config, null_label=10)
    assert batch.t.min() >= 0 and batch.t.max() == 19 and batch.eps.shape == (20_000, 1, 4, 4)
    dropped = (batch.y == 10).double().mean().item()
    assert abs(dropped - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 20_000)  # binomial: 4 standard errors
    kept = batch.y != 10
    assert set(batch.y[kept].tolist()) <= set(range(5))
    assert abs(batch.eps.mean().item()) < 0.01 and abs(batch.eps.std().item() - 1) < 0.01


def test_diffusion_loss_is_eps_mse_at_q_sample():
    schedule = make_schedule("cosine", 20)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    t = torch.tensor([0, 3, 7, 11, 15, 19])
    seen = {}

    def model(x_t, t_in, y):
        seen["x_t"] = x_t
        return 0.5 * x_t

    loss = diffusion_loss(model, schedule, Batch(x0, t, eps, None))
    alpha_bar = schedule.alpha_bar[t].float().reshape(-1, 1, 1, 1)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps  # Ho et al. eq. 4, written out
    torch.testing.assert_close(seen["x_t"], x_t)
    torch.testing.assert_close(loss, ((eps - 0.5 * x_t) ** 2).mean())


# --------------------------------------------------------------- the state and the step
def test_start_seeds_the_weights_and_the_streams_from_the_config_seed():
    config = tiny_config()
    a, b = TrainState.start(config, 24), TrainState.start(config, 24)
    other = TrainState.start(dataclasses.replace(config, seed=1), 24)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert not torch.equal(a.model.conv_in.weight, other.model.conv_in.weight)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), a.ema_model.parameters()))
    assert a.model.training and not a.ema_model.training and not any(p.requires_grad for p in a.ema_model.parameters())
    assert a.step == 0 and a.optimizer.param_groups[0]["lr"] == config.lr
    # the data order and the noise: generators of their own, seeded by name
    assert torch.equal(a.sampler.next(24), EpochSampler(24, derive_seed(0, "data order")).next(24))
    noise = torch.Generator().manual_seed(derive_seed(0, "t, eps, labels"))
    assert torch.equal(torch.rand(3, generator=a.noise_generator), torch.rand(3, generator=noise))
    # afterwards the global RNG (dropout) is the rank's own stream
    TrainState.start(config, 24, rank=1)
    after_rank_1 = torch.rand(3)
    torch.manual_seed(derive_seed(0, "dropout rank 1"))
    assert torch.equal(after_rank_1, torch.rand(3))


def test_start_builds_what_build_returns_and_refuses_unknown_model_kwargs():
    state = TrainState.start(tiny_config(), 24, build=lambda c: torch.nn.Conv2d(1, 1, 3, padding=1))
    assert isinstance(state.model, torch.nn.Conv2d) and isinstance(state.ema_model, torch.nn.Conv2d)
    with pytest.raises(ValueError, match="model_kwargs do not fit.*widht"):
        TrainState.start(tiny_config(model_kwargs={"widht": 3}), 24)


def test_train_step_is_algorithm_1_written_out_with_torch_pieces():
    """Two steps (in warm-up, with active clipping and EMA warm-up) against the same steps
    written out: eq. 4 and eq. 14 by hand, the gradient clipped by hand, torch's AdamW."""
    config = tiny_config(grad_clip=0.05, weight_decay=0.01, ema_decay=0.9)
    schedule, x = make_schedule("cosine", 20), synthetic_x()
    state = TrainState.start(config, len(x))
    model, ema = copy.deepcopy(state.model), copy.deepcopy(state.ema_model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for step in range(2):
        batch = draw_batch(x, None, state.sampler, state.noise_generator, config, None)
        loss = train_step(state, batch, schedule, config)

        alpha_bar = schedule.alpha_bar[batch.t].float().reshape(-1, 1, 1, 1)  # (B, 1, 1, 1)
        x_t = alpha_bar.sqrt() * batch.x0 + (1 - alpha_bar).sqrt() * batch.eps  # eq. 4
        expected = (batch.eps - model(x_t, batch.t)).square().mean()  # eq. 14
        optimizer.zero_grad()
        expected.backward()
        norm = torch.sqrt(sum(p.grad.square().sum() for p in model.parameters()))
        assert norm > config.grad_clip  # the clipping is in play
        for p in model.parameters():
            p.grad *= config.grad_clip / (norm + 1e-6)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * (step + 1) / config.warmup_steps  # linear warm-up over 4 steps
        optimizer.step()
        decay = min(0.9, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.copy_(decay * p_ema + (1 - decay) * p)

        assert loss == pytest.approx(expected.item(), rel=1e-6) and state.step == step + 1
        # Adam divides by sqrt(v): where a gradient is tiny, round-off of the (CPU-dependent)
        # summation order is amplified to ~1e-6 in the update. An algorithmic slip (no clipping,
        # no warm-up, another EMA decay) moves parameters by ~lr = 1e-3: far outside these bounds.
        for mine, theirs in ((state.model, model), (state.ema_model, ema)):
            for p, q in zip(mine.parameters(), theirs.parameters()):
                torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


class _NaNOutput(torch.nn.Module):
    """eps_pred = w * x_t, NaN everywhere: the loss is NaN."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x_t, t, y=None):
        return self.w * x_t * float("nan")


class _NaNGradient(torch.nn.Module):
    """eps_pred = 0 * sqrt(|w|) with w = 0: a finite loss whose gradient is 0 * inf = NaN."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t, y=None):
        return torch.zeros_like(x_t) * self.w.abs().sqrt()


@pytest.mark.parametrize("build, what", [(_NaNOutput, "loss is nan"), (_NaNGradient, "gradient norm is nan")])
def test_a_nan_loss_or_gradient_raises_before_any_update(build, what):
    config, x = tiny_config(), synthetic_x()
    state = TrainState.start(config, len(x), build=lambda c: build())
    before, ema_before = parameters(state.model), parameters(state.ema_model)
    batch = draw_batch(x, None, state.sampler, state.noise_generator, config, None)
    with pytest.raises(TrainingDiverged, match=f"{what} at step 1"):
        train_step(state, batch, make_schedule("cosine", 20), config)
    assert state.step == 0 and state.optimizer.state_dict()["state"] == {}  # AdamW never stepped
    assert all(torch.equal(p, q) for p, q in zip(parameters(state.model), before))
    assert all(torch.equal(p, q) for p, q in zip(parameters(state.ema_model), ema_before))


def test_state_dict_round_trip_continues_the_same_steps():
    config, schedule, x = tiny_config(), make_schedule("cosine", 20), synthetic_x()

    def step(state: TrainState) -> float:
        batch = draw_batch(x, None, state.sampler, state.noise_generator, config, None)
        return train_step(state, batch, schedule, config)

    state = TrainState.start(config, len(x))
    step(state)
    saved = copy.deepcopy(state.state_dict())
    expected = [step(state) for _ in range(2)]
    resumed = TrainState.start(dataclasses.replace(config, seed=5), len(x))
    resumed.load_state_dict(saved)
    assert resumed.step == 1 and [step(resumed) for _ in range(2)] == expected
    assert all(torch.equal(p, q) for p, q in zip(resumed.model.parameters(), state.model.parameters()))

"""Exercises of notebook 03 (training): the [-1, 1] scaling, one L_simple step, the EMA, the time embedding.

References are the package's (:mod:`course_ddpm.data`, :mod:`course_ddpm.training_step`,
:mod:`course_ddpm.unet`); each :class:`Mistake` is a wrong version with the hint that names it.
"""

from __future__ import annotations

import functools

import math

import torch
from torch import nn

from course_ddpm.data import from_pixels
from course_ddpm.exercises._check import Case, Exercise, Mistake, flat_parameters, randn
from course_ddpm.forward import q_sample
from course_ddpm.schedules import broadcast, linear_schedule
from course_ddpm.training_step import Batch, diffusion_loss, ema_update
from course_ddpm.unet import sinusoidal_embedding


_randn = functools.partial(randn, dtype=torch.float32)


# --- 1. pixels 0..255 -> [-1, 1] --------------------------------------------------------------
def _range_reference(pixels):
    return from_pixels(pixels.to(torch.float32) / 255)


def _range_cases() -> list[Case]:
    image = torch.randint(0, 256, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return [Case("all 256 levels", (torch.arange(256, dtype=torch.uint8),)),
            Case("a (2, 1, 4, 4) uint8 image", (image,))]


TO_MODEL_RANGE = Exercise(
    name="my_to_model_range",
    reference=_range_reference,
    reference_name="course_ddpm.data.from_pixels(pixels / 255)",
    cases=_range_cases,
    mistakes=(
        Mistake("that is [0, 1] (ToTensor's range); the model works in [-1, 1]: x0 = 2 * pixels / 255 - 1",
                lambda p: p.to(torch.float32) / 255),
        Mistake("that is [0, 2]: subtract 1 after dividing by 127.5", lambda p: p.to(torch.float32) / 127.5),
        Mistake("divide by 127.5 (= 255 / 2), not 128: 255 must map to exactly 1",
                lambda p: p.to(torch.float32) / 128 - 1),
        Mistake("that is [-0.5, 0.5]: scale by 2 after subtracting 0.5", lambda p: p.to(torch.float32) / 255 - 0.5),
    ),
)


# --- 2. one training loss (Algorithm 1, without the optimizer) --------------------------------
def _toy_model(x_t: torch.Tensor, t: torch.Tensor, y=None) -> torch.Tensor:
    """A fixed stand-in for a network: depends on x_t and t, like eps_theta(x_t, t)."""
    return torch.tanh(x_t) * (0.5 + t.to(x_t.dtype) / 1000).reshape(-1, *([1] * (x_t.ndim - 1)))


def _loss_reference(model, schedule, x0, t, eps):
    return diffusion_loss(model, schedule, Batch(x0, t, eps, None))


def _loss(model, schedule, x0, t, eps, model_x=None, target=None, signal=None, noise=None, t_model=None, reduce="mean"):
    signal = schedule.alpha_bar.sqrt() if signal is None else signal
    noise = (1 - schedule.alpha_bar).sqrt() if noise is None else noise
    x_t = broadcast(signal, t, x0) * x0 + broadcast(noise, t, x0) * eps
    eps_pred = model(x_t if model_x is None else model_x, t if t_model is None else t_model)
    err = ((eps if target is None else target) - eps_pred) ** 2
    return err.mean() if reduce == "mean" else err.sum()


def _loss_cases() -> list[Case]:
    schedule = linear_schedule(1000)
    x0 = _randn(4, 1, 3, 3, seed=0).clamp(-1, 1)
    return [
        Case("a batch of 4 images, t = 0, 10, 500, 999",
             (_toy_model, schedule, x0, torch.tensor([0, 10, 500, 999]), _randn(4, 1, 3, 3, seed=1))),
        Case("a batch of 2 at t = 200",
             (_toy_model, schedule, x0[:2], torch.tensor([200, 200]), _randn(2, 1, 3, 3, seed=2))),
    ]


TRAINING_LOSS = Exercise(
    name="my_training_loss",
    reference=_loss_reference,
    reference_name="course_ddpm.training_step.diffusion_loss",
    cases=_loss_cases,
    mistakes=(
        Mistake("the model sees the noisy x_t, not the clean x0",
                lambda m, s, x0, t, eps: _loss(m, s, x0, t, eps, model_x=x0)),
        Mistake("the model predicts the noise eps: compare its output with eps, not with x0",
                lambda m, s, x0, t, eps: _loss(m, s, x0, t, eps, target=x0)),
        Mistake("x_t uses alpha_bar_t (the product), not alpha_t: "
                "x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps",
                lambda m, s, x0, t, eps: _loss(m, s, x0, t, eps, signal=s.alpha.sqrt(), noise=(1 - s.alpha).sqrt())),
        Mistake("L_simple is the mean over all entries (.mean()), not the sum",
                lambda m, s, x0, t, eps: _loss(m, s, x0, t, eps, reduce="sum")),
        Mistake("t off by one: the model gets the same code t that made x_t",
                lambda m, s, x0, t, eps: _loss(m, s, x0, t, eps, t_model=t + 1)),
        Mistake("square roots are missing in x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps",
                lambda m, s, x0, t, eps: _loss(m, s, x0, t, eps, signal=s.alpha_bar, noise=1 - s.alpha_bar)),
    ),
)


# --- 3. the EMA of the weights ---------------------------------------------------------------
def _pair(seed: int) -> tuple[nn.Module, nn.Module]:
    """(ema_model, model): two small networks with different weights, the EMA frozen as TrainState's is."""
    torch.manual_seed(seed)  # nn.Linear's initialisation reads the global generator
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    ema_model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).requires_grad_(False)
    return ema_model, model


def _run_ema(fn, args):
    ema_model, model, decay = args
    fn(ema_model, model, decay)
    return flat_parameters(ema_model), flat_parameters(model)


def _ema_cases() -> list[Case]:
    state = torch.random.get_rng_state()
    try:
        return [Case("decay 0.9", (*_pair(0), 0.9)), Case("decay 0.999", (*_pair(1), 0.999)),
                Case("decay 0", (*_pair(2), 0.0))]
    finally:
        torch.random.set_rng_state(state)  # leave the notebook's random stream as it was


@torch.no_grad()
def _ema(ema_model, model, decay, *, weight_of_new=None, update="ema"):
    w = 1 - decay if weight_of_new is None else weight_of_new
    for p_ema, p in zip(ema_model.parameters(), model.parameters()):
        if update == "ema":
            p_ema.copy_((1 - w) * p_ema + w * p)
        elif update == "model":
            p.copy_(decay * p + (1 - decay) * p_ema)


def _ema_not_in_place(ema_model, model, decay):
    for p_ema, p in zip(ema_model.parameters(), model.parameters()):
        p_ema = decay * p_ema + (1 - decay) * p  # noqa: F841 - rebinds the name, the module keeps its weights


EMA_UPDATE = Exercise(
    name="my_ema_update",
    reference=ema_update,
    reference_name="course_ddpm.training_step.ema_update",
    cases=_ema_cases,
    run=_run_ema,
    output_names=("ema_model's weights", "model's weights"),
    mistakes=(
        Mistake("the weights are swapped: theta_ema <- decay * theta_ema + (1 - decay) * theta",
                lambda e, m, d: _ema(e, m, d, weight_of_new=d)),
        Mistake("ema_model's weights did not change: `p_ema = ...` only rebinds a name; update in place "
                "(p_ema.copy_(...) or p_ema.mul_(decay).add_(...))", _ema_not_in_place),
        Mistake("decay is ignored: the weights were copied (theta_ema <- theta)",
                lambda e, m, d: _ema(e, m, d, weight_of_new=1.0)),
        Mistake("the new weights are missing: theta_ema <- decay * theta_ema + (1 - decay) * theta",
                lambda e, m, d: _ema(e, m, d, weight_of_new=0.0) or [p.mul_(d) for p in e.parameters()]),
        Mistake("you changed the model, not ema_model: the average is written into ema_model",
                lambda e, m, d: _ema(e, m, d, update="model")),
    ),
)


# --- 4. the sinusoidal time embedding ----------------------------------------------------------
def _embedding(t, dim, max_period=10000.0, order="sin_cos", denominator=None, sign=-1):
    half = dim // 2
    w = torch.exp(sign * math.log(max_period) * torch.arange(half, dtype=torch.float32) / (denominator or half))
    angle = t.float()[:, None] * w[None, :]  # (B, half)
    if order == "interleaved":
        return torch.stack([torch.sin(angle), torch.cos(angle)], dim=2).reshape(t.shape[0], dim)
    parts = [torch.sin(angle), torch.cos(angle)]
    return torch.cat(parts if order == "sin_cos" else parts[::-1], dim=1)


def _embedding_cases() -> list[Case]:
    return [
        Case("t = 0, 111, ..., 999, dim 16", (torch.arange(0, 1000, 111), 16)),
        Case("t = 0 and 1, dim 2", (torch.tensor([0, 1]), 2)),
        Case("random t, dim 32", (torch.randint(0, 1000, (5,), generator=torch.Generator().manual_seed(0)), 32)),
    ]


TIME_EMBEDDING = Exercise(
    name="my_time_embedding",
    reference=sinusoidal_embedding,
    reference_name="course_ddpm.unet.sinusoidal_embedding",
    cases=_embedding_cases,
    atol=1e-4,  # float32 sin(t w) at t ~ 1000: another order of operations moves the angle by ~1e-4
    mistakes=(
        Mistake("the sines come first, then the cosines: torch.cat([sin, cos], dim=1)",
                lambda t, dim: _embedding(t, dim, order="cos_sin")),
        Mistake("concatenate all sines, then all cosines (yours interleave sin and cos)",
                lambda t, dim: _embedding(t, dim, order="interleaved")),
        Mistake("the frequencies are max_period^(-i / (dim/2)) for i = 0..dim/2-1: divide by dim/2, not dim",
                lambda t, dim: _embedding(t, dim, denominator=dim)),
        Mistake("the exponent is negative: w_i = max_period^(-i / (dim/2)) falls from 1 to 1/max_period",
                lambda t, dim: _embedding(t, dim, sign=+1)),
    ),
)

EXERCISES = (TRAINING_LOSS, TO_MODEL_RANGE, TIME_EMBEDDING, EMA_UPDATE)  # in the order of notebook 03
check_to_model_range = TO_MODEL_RANGE.check
check_training_loss = TRAINING_LOSS.check
check_ema_update = EMA_UPDATE.check
check_time_embedding = TIME_EMBEDDING.check

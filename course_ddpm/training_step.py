"""One training step of a noise predictor eps_theta: Ho et al. 2020 (arXiv:2006.11239), Algorithm 1.

    x0 ~ data,  t ~ Uniform{0, ..., T-1} (code index),  eps ~ N(0, I)      (draw_batch)
    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps            (eq. 4)
    take a gradient step on  || eps - eps_theta(x_t, t) ||^2         (eq. 14, L_simple)

with AdamW at a warmed-up learning rate (:func:`lr_at`), gradient clipping and an
exponential moving average (EMA) of the weights, which is what gets sampled from (Ho et
al. 2020, appendix B: EMA decay 0.9999). For classifier-free guidance (Ho & Salimans 2022)
the label is replaced by the null label ``num_classes`` with probability ``label_dropout``.

:class:`TrainState` is what a step changes (weights, EMA, optimizer, the data order and
noise streams, the step count) and :meth:`TrainState.start` starts it from a config's
seed; :func:`train_step` takes one step on a batch from :func:`draw_batch`. The run
around them (logs, checkpoints, resume, signals) is :mod:`course_ddpm.training`; the
benchmarks that train several networks side by side call the same two.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from course_ddpm import distributed
from course_ddpm.forward import q_sample
from course_ddpm.losses import l_simple
from course_ddpm.networks import build_model
from course_ddpm.rng import derive_seed, seed_global_rng
from course_ddpm.schedules import Schedule
from course_ddpm.training_config import TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; no update was made with it."""


# -------------------------------------------------------------------- the small parts
def lr_at(config: TrainConfig, step: int) -> float:
    """Learning rate of step ``step`` (0-based): lr * min(1, (step + 1) / warmup_steps)."""
    if config.warmup_steps == 0:
        return config.lr
    return config.lr * min(1.0, (step + 1) / config.warmup_steps)


def ema_decay_at(decay: float, num_updates: int) -> float:
    """EMA decay with warm-up, min(decay, (1 + n) / (10 + n)), so early averages forget
    the random initial weights (as TensorFlow's ExponentialMovingAverage with num_updates)."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta, in place; buffers are copied."""
    for p_ema, p in zip(ema_model.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1.0 - decay)  # p_ema + (1 - decay) (p - p_ema)
    for b_ema, b in zip(ema_model.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


class EpochSampler:
    """An endless stream of data indices: epoch after epoch, each a fresh permutation.

    A batch may run over the end of an epoch into the next one, so every image is seen
    once per epoch whatever the batch size. ``state_dict`` makes the stream resumable.
    """

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError(f"the data set is empty (n={n})")
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.pos = 0, 0
        self.perm = torch.randperm(n, generator=self.generator)

    def next(self, batch_size: int) -> torch.Tensor:
        """The next ``(batch_size,)`` long indices."""
        chunks, need = [], batch_size
        while need > 0:
            if self.pos == self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.epoch, self.pos = self.epoch + 1, 0
            take = min(need, self.n - self.pos)
            chunks.append(self.perm[self.pos : self.pos + take])
            self.pos, need = self.pos + take, need - take
        return torch.cat(chunks)

    def state_dict(self) -> dict:
        return {"n": self.n, "generator": self.generator.get_state(), "perm": self.perm, "epoch": self.epoch,
                "pos": self.pos}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n:
            raise ValueError(f"the checkpoint's data set had {state['n']} images, this one has {self.n}")
        self.generator.set_state(state["generator"])
        self.perm, self.epoch, self.pos = state["perm"], state["epoch"], state["pos"]


@dataclass(frozen=True)
class Batch:
    """One training batch: x0 ``(B, C, H, W)``, t ``(B,)``, eps like x0, y ``(B,)`` or None."""

    x0: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor
    y: torch.Tensor | None

    def slice(self, rows: slice, device: torch.device) -> "Batch":
        """These rows, moved to ``device``."""
        y = None if self.y is None else self.y[rows].to(device)
        return Batch(self.x0[rows].to(device), self.t[rows].to(device), self.eps[rows].to(device), y)


def draw_batch(
    x: torch.Tensor, y: torch.Tensor | None, sampler: EpochSampler, noise_generator: torch.Generator,
    config: TrainConfig, null_label: int | None,
) -> Batch:  # fmt: skip
    """Draw a global batch on the CPU: indices, then t, eps, label drop-outs, in this order.

    Every process draws the same global batch and keeps its slice (distributed training).
    """
    B = config.batch_size
    idx = sampler.next(B)  # (B,)
    x0 = x[idx]  # (B, C, H, W)
    t = torch.randint(0, config.T, (B,), generator=noise_generator)  # t ~ U{0..T-1}
    eps = torch.randn(x0.shape, generator=noise_generator, dtype=x0.dtype)  # eps ~ N(0, I)
    labels = None
    if config.conditional:
        drop = torch.rand(B, generator=noise_generator) < config.label_dropout  # (B,)
        labels = torch.where(drop, torch.full_like(y[idx], null_label), y[idx])
    return Batch(x0, t, eps, labels)


def diffusion_loss(model: nn.Module, schedule: Schedule, batch: Batch, precision: str = "fp32") -> torch.Tensor:
    """L_simple on one batch: x_t = q_sample(x0, t, eps) (eq. 4), mean ||eps - eps_theta||^2 (eq. 14)."""
    x_t = q_sample(schedule, batch.x0, batch.t, batch.eps)  # (B, C, H, W)
    with _autocast(batch.x0.device, precision):
        eps_pred = model(x_t, batch.t, batch.y)
    return l_simple(batch.eps, eps_pred.float())


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for precision "bf16"; for "fp32" no autocast object at all: torch
    before 2.5 refuses ``torch.autocast("mps")`` even with ``enabled=False`` (and 2.5 warns)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------------------ the state and the step
def model_from_config(config: TrainConfig, in_channels: int = 1) -> nn.Module:
    """``build_model(config.model, **config.model_config_kwargs(in_channels))``; a ValueError
    (not a TypeError) when ``model_kwargs`` holds a key the model does not take."""
    try:
        return build_model(config.model, **config.model_config_kwargs(in_channels=in_channels))
    except TypeError as e:  # an unknown key in model_kwargs
        raise ValueError(f"model_kwargs do not fit model {config.model!r}: {e}") from None


@dataclass(eq=False)
class TrainState:
    """What a training step changes: the weights, their EMA, the optimizer, the data order
    (``sampler``), the t/eps/label stream (``noise_generator``) and the steps done."""

    model: nn.Module
    ema_model: nn.Module
    optimizer: torch.optim.Optimizer
    sampler: EpochSampler
    noise_generator: torch.Generator
    step: int = 0

    @classmethod
    def start(
        cls, config: TrainConfig, n_data: int, *, in_channels: int = 1, device: torch.device = torch.device("cpu"),
        rank: int = 0, build: Callable[[TrainConfig], nn.Module] | None = None,
    ) -> "TrainState":  # fmt: skip
        """A fresh run's state from ``config.seed``: the same initial weights on every rank.

        The global RNG is seeded with ``config.seed`` (initial weights), then with the rank's
        dropout seed; the data order and the noise come from their own generators
        (:func:`course_ddpm.rng.derive_seed`).

        Args:
            config: seed, lr, weight_decay; model and model_kwargs unless ``build`` is given.
            n_data: images in the training set (the data order permutes them).
            in_channels: image channels, for :func:`model_from_config`.
            device: where the model lives. rank: this process's rank (its dropout stream).
            build: ``build(config) -> model`` instead of :func:`model_from_config` (benchmarks).
        """
        seed_global_rng(config.seed, device)  # the same initial weights on every rank
        model = model_from_config(config, in_channels) if build is None else build(config)
        model = model.to(device).train()
        ema_model = copy.deepcopy(model).requires_grad_(False).eval()
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        sampler = EpochSampler(n_data, derive_seed(config.seed, "data order"))
        noise_generator = torch.Generator().manual_seed(derive_seed(config.seed, "t, eps, labels"))
        seed_global_rng(derive_seed(config.seed, f"dropout rank {rank}"), device)
        return cls(model, ema_model, optimizer, sampler, noise_generator)

    def state_dict(self) -> dict:
        """Plain tensors and numbers (``torch.load(weights_only=True)`` reads them back)."""
        return {"step": self.step, "model": self.model.state_dict(), "ema": self.ema_model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "sampler": self.sampler.state_dict(),
                "noise_generator": self.noise_generator.get_state()}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (extra keys, such as a run's RNG, are ignored)."""
        self.model.load_state_dict(state["model"])
        self.ema_model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.noise_generator.set_state(state["noise_generator"])
        self.step = state["step"]


def train_step(
    state: TrainState, batch: Batch, schedule: Schedule, config: TrainConfig, *, net: nn.Module | None = None,
    info: distributed.DistInfo | None = None,
) -> float:  # fmt: skip
    """One step of Algorithm 1 (Ho et al. 2020) on a drawn batch; returns the global-batch loss.

    1. loss = L_simple (eq. 14) at x_t = q_sample(x0, t, eps) (eq. 4): :func:`diffusion_loss`;
    2. its gradient (under DDP ``net`` averages the ranks' gradients: the global batch's);
    3. the global-batch loss (mean over ranks); NaN or inf raises :class:`TrainingDiverged`;
    4. clip the global gradient norm to ``config.grad_clip``; NaN or inf raises too;
    5. AdamW step at ``lr_at(config, state.step)``;
    6. EMA update with decay ``ema_decay_at(config.ema_decay, state.step)``; ``state.step += 1``.

    A divergence raises before the optimizer step, so the state stays the last good one.
    The device is read twice, for the NaN guard: the loss and the gradient norm.

    Args:
        state: updated in place. batch: this process's rows, on the model's device.
        schedule: the noise schedule (alpha_bar). config: precision, grad_clip, lr, ema_decay.
        net: what computes eps_theta (the DDP wrapper of ``state.model``); default ``state.model``.
        info: the process group (default: one process).
    """
    info = distributed.DistInfo() if info is None else info
    loss = diffusion_loss(state.model if net is None else net, schedule, batch, config.precision)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()  # under DDP: the mean of the ranks' gradients = gradient of the global-batch loss
    # float32, as the loss itself: under nccl the sum runs on the GPU, and a device never gets
    # float64 (MPS has none).
    total = distributed.all_reduce_sum(torch.tensor([loss.item()], dtype=torch.float32), info)
    loss_value = total[0].item() / info.world_size
    lr = lr_at(config, state.step)
    if not math.isfinite(loss_value):
        raise _diverged("loss", loss_value, state.step, lr)
    if config.grad_clip is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), config.grad_clip).item()
        if not math.isfinite(grad_norm):
            raise _diverged("gradient norm", grad_norm, state.step, lr)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    state.optimizer.step()
    ema_update(state.ema_model, state.model, ema_decay_at(config.ema_decay, state.step))
    state.step += 1
    return loss_value


def _diverged(what: str, value: float, step: int, lr: float) -> TrainingDiverged:
    return TrainingDiverged(
        f"{what} is {value} at step {step + 1} (lr {lr:.3g}); no update was made with it. "
        "Try a lower lr, a grad_clip, or precision fp32."
    )

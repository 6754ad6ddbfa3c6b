"""Noise schedules: the fixed forward process q(x_t | x_{t-1}) of a diffusion model.

Everything else in the package indexes these tensors, so this module also fixes the
conventions used everywhere.

Time index
----------
The papers count steps t = 1..T, with x_0 the data and x_T (almost) pure noise.
Code counts ``t = 0..T-1``, so the tensor entry ``beta[t]`` is the paper's
beta_{t+1}, and ``alpha_bar[t]`` is the paper's alpha_bar_{t+1}. A network called with
code index ``t`` denoises the paper's x_{t+1}. Sampling starts at code ``t = T-1``
(paper x_T) and its last step, code ``t = 0``, returns the paper's x_0.
This is the convention of diffusers and improved-diffusion.

Names (paper symbol -> code -> diffusers' ``DDPMScheduler``)
-------------------------------------------------------------
=================================  ==================  =====================
beta_t                             ``beta``            ``betas``
alpha_t = 1 - beta_t               ``alpha``           ``alphas``
alpha_bar_t = prod_{s<=t} alpha_s  ``alpha_bar``       ``alphas_cumprod``
alpha_bar_{t-1} (alpha_bar_0 = 1)  ``alpha_bar_prev``  (``alphas_cumprod[t-1]``)
beta_tilde_t (Ho et al. eq. 7)     ``beta_tilde``      ``_get_variance(t)``
SNR(t) = alpha_bar_t/(1-alpha_bar)  ``snr``             --
predicted x_0                      ``x0_pred``         ``pred_original_sample``
x_t                                ``x_t``             ``sample``
=================================  ==================  =====================

All schedules are built in float64 (the products of ~1000 numbers close to 1 lose
digits in float32) and cast to the working dtype only when used, by :func:`broadcast`.

Devices
-------
The tables live on the CPU and float64 never leaves it: Apple's MPS has no float64, so
anything computed in float64 is computed on the CPU, cast to the data's dtype there, and
only then moved to the data's device. Time indices are range-checked where reading them
is free (on the CPU, :func:`course_ddpm.validation.check_t`); reading a GPU tensor waits
for the GPU, so a device ``t`` is not read on every step (the sampling loop and training
make ``t`` from Python ints, already checked).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from course_ddpm.validation import check_T, check_t

ScheduleKind = Literal["linear", "cosine"]

#: alpha_bar_T above this leaves visible signal in x_T although sampling starts from
#: pure noise (see :meth:`Schedule.prior_kl_per_dim`). Linear T=1000 gives 4e-5.
TERMINAL_ALPHA_BAR_WARN = 1e-3


class TerminalSignalWarning(UserWarning):
    """x_T still carries signal: q(x_T | x_0) is far from the N(0, I) that sampling uses."""


@dataclass(frozen=True, eq=False)
class Schedule:
    """A variance schedule beta_1..beta_T and the quantities derived from it.

    Attributes (all float64 tensors of shape ``(T,)``, code index t = paper t - 1):
        beta: forward-process variances beta_t (Ho et al. 2020, eq. 2).
        alpha: 1 - beta_t.
        alpha_bar: prod_{s <= t} alpha_s, so q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0,
            (1 - alpha_bar_t) I) (Ho et al. eq. 4; Luo 2022 eq. 70).
        alpha_bar_prev: alpha_bar_{t-1}, with alpha_bar_0 = 1 for the first step
            (``alpha_bar_or_one[:-1]``; the property :attr:`alpha_bar_or_one` also has t = -1).
        beta_tilde: posterior variance (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t
            of q(x_{t-1} | x_t, x_0) (Ho et al. eq. 7). beta_tilde[0] = 0.
        snr: signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) (Kingma et al. 2021).
        name: a short label such as ``"linear T=1000"``.
    """

    beta: torch.Tensor
    alpha: torch.Tensor
    alpha_bar: torch.Tensor
    alpha_bar_prev: torch.Tensor
    beta_tilde: torch.Tensor
    snr: torch.Tensor
    name: str = "custom"

    @property
    def T(self) -> int:  # noqa: N802 - the paper's symbol
        """Number of diffusion steps."""
        return self.beta.shape[0]

    @classmethod
    def from_beta(cls, beta: torch.Tensor, name: str = "custom", warn: bool = True) -> "Schedule":
        """Build a schedule from betas; checks 0 < beta < 1 and T >= 1.

        Args:
            beta: ``(T,)`` variances of the forward steps, any float dtype.
            name: label shown in plots and warnings.
            warn: emit :class:`TerminalSignalWarning` when alpha_bar_T > 1e-3.
        """
        if not isinstance(beta, torch.Tensor):
            raise TypeError(f"beta must be a torch.Tensor, got {type(beta).__name__}")
        if beta.ndim != 1 or beta.shape[0] < 1:
            raise ValueError(f"beta must have shape (T,) with T >= 1, got {tuple(beta.shape)}")
        if not beta.is_floating_point():
            raise TypeError(f"beta must be a float tensor, got dtype {beta.dtype}")
        beta = beta.detach().to(device="cpu", dtype=torch.float64)
        if not bool(((beta > 0) & (beta < 1)).all()):
            raise ValueError(
                f"beta must lie in (0, 1); got min {beta.min().item():.3g}, max {beta.max().item():.3g}"
            )
        alpha = 1.0 - beta
        alpha_bar = torch.cumprod(alpha, dim=0)
        alpha_bar_prev = _prepend_one(alpha_bar)[:-1]
        beta_tilde = beta * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        snr = alpha_bar / (1.0 - alpha_bar)
        schedule = cls(beta, alpha, alpha_bar, alpha_bar_prev, beta_tilde, snr, name)
        if warn and schedule.alpha_bar[-1].item() > TERMINAL_ALPHA_BAR_WARN:
            warnings.warn(
                f"{name}: alpha_bar_T = {schedule.alpha_bar[-1].item():.4g}, so x_T keeps "
                f"{100 * math.sqrt(schedule.alpha_bar[-1].item()):.0f}% of the signal "
                f"(sqrt(alpha_bar_T)) while sampling starts from pure noise; prior KL up to "
                f"{schedule.prior_kl_per_dim():.3g} nats per pixel. Fix: linear_schedule(T, "
                f"rescale=True), or cosine_schedule(T).",
                TerminalSignalWarning,
                stacklevel=3,
            )
        return schedule

    @property
    def alpha_bar_or_one(self) -> torch.Tensor:
        """``(T + 1,)`` alpha_bar indexed by code t + 1: entry 0 is 1, for code t = -1 (the clean
        data x_0, the paper's alpha_bar_0 = 1; diffusers' ``final_alpha_cumprod`` with
        ``set_alpha_to_one``), entry t + 1 is ``alpha_bar[t]``. DDIM's last step goes to t = -1."""
        return _prepend_one(self.alpha_bar)

    def prior_kl_per_dim(self, x0_abs_max: float = 1.0) -> float:
        """Worst-case KL(q(x_T | x_0) || N(0, 1)) per dimension, in nats, for |x_0| <= x0_abs_max.

        KL(N(sqrt(a) x0, 1 - a) || N(0, 1)) = 0.5 * (a x0^2 - a - log(1 - a)) with
        a = alpha_bar_T; it grows with x0^2, so the worst case is at |x0| = x0_abs_max.
        This is the prior-matching term L_T of Ho et al. eq. 5 (Luo 2022 eq. 58).
        """
        a = self.alpha_bar[-1].item()
        return 0.5 * (a * x0_abs_max**2 - a - math.log1p(-a))

    def to_dict(self) -> dict:
        """Summary for model cards and plots (plain Python numbers)."""
        return {
            "name": self.name,
            "T": self.T,
            "alpha_bar_T": self.alpha_bar[-1].item(),
            "sqrt_alpha_bar_T": math.sqrt(self.alpha_bar[-1].item()),
            "prior_kl_per_dim_max": self.prior_kl_per_dim(),
        }


def linear_schedule(
    T: int, beta_start: float = 1e-4, beta_end: float = 0.02, rescale: bool = False, warn: bool = True
) -> Schedule:
    """Linear betas from beta_start to beta_end (Ho et al. 2020, section 4).

    With ``rescale=True`` both ends are multiplied by 1000 / T, as improved-diffusion's
    ``get_named_beta_schedule("linear", T)`` does (Nichol & Dhariwal 2021), so that a
    short chain (T=300) still ends near pure noise: alpha_bar_T drops from 0.048 to 3.4e-5.

    Args:
        T: number of steps, >= 1.
        beta_start, beta_end: betas of the first and last step before rescaling.
        rescale: multiply both by 1000 / T.
        warn: warn when x_T keeps signal (see :class:`TerminalSignalWarning`).
    """
    check_T(T)
    scale = 1000.0 / T if rescale else 1.0
    if beta_end * scale >= 1.0:
        raise ValueError(
            f"rescale=True multiplies beta_end={beta_end} by 1000/T = {scale:.4g}, giving a beta >= 1; "
            f"use T > {1000.0 * beta_end:g}, or cosine_schedule(T)"
        )
    beta = torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64)
    name = f"linear T={T}" + (" rescaled" if rescale else "")
    return Schedule.from_beta(beta, name=name, warn=warn)


def cosine_schedule(T: int, s: float = 0.008, max_beta: float = 0.999, warn: bool = True) -> Schedule:
    """Cosine schedule of Nichol & Dhariwal 2021 (arXiv:2102.09672, eq. 17).

    f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2),  alpha_bar_t = f(t) / f(0),
    beta_t = min(1 - alpha_bar_t / alpha_bar_{t-1}, max_beta).

    Betas are computed from the ratio f(t)/f(t-1) as improved-diffusion does, then capped.
    """
    check_T(T)
    if not 0.0 < max_beta < 1.0:
        raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}")

    def f(t: torch.Tensor) -> torch.Tensor:
        return torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    steps = torch.arange(T, dtype=torch.float64)
    beta = torch.clamp(1.0 - f(steps + 1) / f(steps), max=max_beta)
    return Schedule.from_beta(beta, name=f"cosine T={T}", warn=warn)


def make_schedule(kind: ScheduleKind, T: int, rescale: bool = False, warn: bool = True) -> Schedule:
    """Schedule by name, as stored in training configs and model cards."""
    if kind == "linear":
        return linear_schedule(T, rescale=rescale, warn=warn)
    if kind == "cosine":
        if rescale:
            raise ValueError("rescale applies to the linear schedule only")
        return cosine_schedule(T, warn=warn)
    raise ValueError(f"kind must be 'linear' or 'cosine', got {kind!r}")


def first_step_below(schedule: Schedule, fraction: float) -> int | None:
    """The first code index t whose signal left, sqrt(alpha_bar_t), is below ``fraction``; None if none is.

    sqrt(alpha_bar_t) is the scale of x_0 in x_t (Ho et al. eq. 4); it falls with t. The
    lecture's linear T=300 schedule ends at 0.22, so it never drops below 1 %: None.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    below = torch.nonzero(schedule.alpha_bar.sqrt() < fraction)  # (K, 1) indices, ascending
    return int(below[0, 0]) if below.numel() else None


def broadcast(coef: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-timestep coefficients coef[t] shaped to broadcast against a batch.

    The one helper every formula uses to index a schedule tensor.

    The table is cast to ``like``'s dtype on the CPU before it moves (MPS has no
    float64); the values are those of ``coef[t].to(like.dtype)``.

    Args:
        coef: ``(T,)`` schedule tensor (float64 on the CPU).
        t: ``(B,)`` integer code time indices in [0, T), on the CPU or on ``like``'s device.
        like: ``(B, ...)`` tensor whose dtype, device and rank the result takes.

    Returns:
        ``(B, 1, ..., 1)`` tensor with ``like.ndim`` dimensions.
    """
    t = check_t(t, coef.shape[0], batch=like.shape[0] if like.ndim > 0 else None)
    out = coef.to(like.dtype).to(t.device)[t]  # (B,) cast on the CPU, then moved to t and indexed
    return out.to(like.device).reshape(-1, *([1] * (like.ndim - 1)))  # (B, 1, ..., 1)


def _prepend_one(alpha_bar: torch.Tensor) -> torch.Tensor:
    """``(T + 1,)``: 1 (alpha_bar of the clean data, paper t = 0), then alpha_bar_1..alpha_bar_T."""
    return torch.cat([torch.ones(1, dtype=alpha_bar.dtype), alpha_bar])

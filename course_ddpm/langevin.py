"""Langevin dynamics: sampling a density from its score alone.

The overdamped Langevin equation

    dx = grad log p(x) dt + sqrt(2) dW

has p as its stationary distribution (its Fokker--Planck equation
d rho/dt = div(rho grad(log rho - log p)) vanishes at rho = p): a particle in the potential
U = -log p at unit temperature relaxes to the Boltzmann distribution p = exp(-U) / Z,
and Z is never needed, only grad log p. Its Euler--Maruyama discretisation with step h is
the unadjusted Langevin algorithm (ULA; Roberts & Tweedie 1996):

    x <- x + h grad log p(x) + sqrt(2 h) z,   z ~ N(0, I).

Without a Metropolis correction ULA is biased: for p = N(0, s^2) its chain is a linear
AR(1) process with stationary variance s^2 / (1 - h / (2 s^2)), exactly, not s^2
(:func:`ula_gaussian_variance`). Annealed Langevin (Song & Ermon 2019, arXiv:1907.05600,
Algorithm 1) runs it through decreasing noise levels, where the score of the noised
density is easier to learn and the modes are connected.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from course_ddpm.validation import check_count, check_float

#: ``score_fn(x)`` -> grad log p(x), both ``(B, ...)``.
Score = Callable[[torch.Tensor], torch.Tensor]


def langevin_step(x: torch.Tensor, score: torch.Tensor, step_size: float, noise: torch.Tensor) -> torch.Tensor:
    """One ULA step x + h score + sqrt(2 h) z (Euler--Maruyama for dx = grad log p dt + sqrt(2) dW).

    Args:
        x, score, noise: ``(B, ...)``. step_size: h > 0.
    """
    check_float("x", x)
    _check_step(step_size)
    return x + step_size * score + math.sqrt(2.0 * step_size) * noise


def langevin_sample(
    score_fn: Score,
    x: torch.Tensor,
    step_size: float,
    num_steps: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run ``num_steps`` ULA steps from ``x`` (``(B, ...)``); returns the last state ``(B, ...)``."""
    check_count("num_steps", num_steps)
    for _ in range(num_steps):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = langevin_step(x, score_fn(x), step_size, noise)
    return x


def annealed_langevin_sample(
    score_fn: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    variances: Sequence[float],
    steps_per_level: int,
    step_scale: float,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1).

    For each noise level i, from the noisiest to the cleanest, ``steps_per_level`` ULA
    steps on the noised density p_i with step h_i = step_scale * v_i / v_L, where v_i is
    the level's noise variance and v_L the last (smallest) one. (Algorithm 1 writes the
    step as alpha_i/2 score + sqrt(alpha_i) z; that is h = alpha_i / 2 here.)

    Args:
        score_fn: ``score_fn(x, i)`` -> grad log p_i(x) at level i.
        x: ``(B, ...)`` start, e.g. N(0, I).
        variances: v_1 > ... > v_L > 0, the noise variance of each level.
        steps_per_level: ULA steps at each level (the paper's T).
        step_scale: h at the last level (the paper's epsilon / 2).
    """
    check_count("steps_per_level", steps_per_level)
    v_last = float(variances[-1])
    for i, v in enumerate(variances):
        h = step_scale * float(v) / v_last
        for _ in range(steps_per_level):
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = langevin_step(x, score_fn(x, i), h, noise)
    return x


def ula_gaussian_variance(std: float, step_size: float) -> float:
    """Stationary variance of ULA on N(m, s^2): s^2 / (1 - h / (2 s^2)), for 0 < h < 2 s^2.

    The chain x' = (1 - h/s^2) x + sqrt(2 h) z is AR(1) with coefficient a = 1 - h/s^2;
    its stationary variance is 2 h / (1 - a^2) = s^2 / (1 - h / (2 s^2)): the step-size bias.
    """
    _check_step(step_size)
    if step_size >= 2.0 * std**2:
        raise ValueError(f"ULA on N(m, {std}^2) diverges for h >= 2 s^2 = {2 * std**2:g}, got h = {step_size}")
    return std**2 / (1.0 - step_size / (2.0 * std**2))


def _check_step(step_size: float) -> None:
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not step_size > 0:
        raise ValueError(f"step_size must be a float > 0, got {step_size!r}")

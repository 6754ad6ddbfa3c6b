"""Toy data with a known density and a known optimal denoiser: a 1-D Gaussian mixture.

Each coordinate of x_0 is drawn independently from

    p(x_0) = sum_k w_k N(x_0; m_k, s_k^2).

Noising by q(x_t | x_0) keeps it a Gaussian mixture (a Gaussian convolved with a
Gaussian), with means sqrt(alpha_bar_t) m_k and variances alpha_bar_t s_k^2 + 1 - alpha_bar_t.
So the score grad log q(x_t) is known in closed form, and with it the optimal noise
predictor E[eps | x_t] = -sqrt(1 - alpha_bar_t) grad log q(x_t) (Tweedie; Luo 2022,
"Three Equivalent Interpretations"). Tests and the ELBO notebook use it as an exact
"trained network", so every formula can be checked without training anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from course_ddpm.schedules import Schedule, broadcast
from course_ddpm.validation import check_float


@dataclass(frozen=True)
class GaussianMixture:
    """A 1-D Gaussian mixture applied to every coordinate independently.

    Attributes:
        weights: mixture weights w_k (positive, summing to 1).
        means: component means m_k.
        stds: component standard deviations s_k > 0.
    """

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.weights)
        if k == 0 or len(self.means) != k or len(self.stds) != k:
            raise ValueError("weights, means and stds must be non-empty and of equal length")
        if any(w <= 0 for w in self.weights) or abs(sum(self.weights) - 1.0) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {self.weights}")
        if any(s <= 0 for s in self.stds):
            raise ValueError(f"stds must be positive, got {self.stds}")

    @classmethod
    def gaussian(cls, mean: float = 0.0, std: float = 1.0) -> "GaussianMixture":
        """The one-component case N(mean, std^2)."""
        return cls((1.0,), (float(mean),), (float(std),))

    def _params(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kw = dict(dtype=like.dtype, device=like.device)
        return torch.tensor(self.weights, **kw), torch.tensor(self.means, **kw), torch.tensor(self.stds, **kw)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x_0 of the given shape, float64, each entry independently."""
        w, m, s = self._params(torch.empty(0, dtype=torch.float64))
        k = torch.multinomial(w, math.prod(shape), replacement=True, generator=generator).reshape(shape)
        z = torch.randn(shape, generator=generator, dtype=torch.float64)
        return m[k] + s[k] * z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) summed over all but the batch dimension: ``(B, ...)`` -> ``(B,)``, in nats."""
        check_float("x", x)
        return _mixture_log_prob(x, *self._params(x), scale=None, var_add=None).flatten(1).sum(1)

    def noised_log_prob(self, schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log q(x_t) of the noised data, ``(B, ...)`` -> ``(B,)`` (Gaussian convolution, closed form)."""
        check_float("x_t", x_t)
        ab = broadcast(schedule.alpha_bar, t, x_t)
        return _mixture_log_prob(x_t, *self._params(x_t), scale=ab.sqrt(), var_add=1.0 - ab).flatten(1).sum(1)

    def score(self, schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log q(x_t), elementwise, ``(B, ...)``.

        For a mixture, grad log q = sum_k r_k(x) * (-(x - mu_k) / v_k) with responsibilities
        r_k = w_k N(x; mu_k, v_k) / q(x), mu_k = sqrt(alpha_bar) m_k, v_k = alpha_bar s_k^2 + 1 - alpha_bar.
        """
        check_float("x_t", x_t)
        w, m, s = self._params(x_t)
        ab = broadcast(schedule.alpha_bar, t, x_t).unsqueeze(-1)  # (B, 1, ..., 1, 1)
        mu = ab.sqrt() * m  # (B, 1, ..., K)
        v = ab * s**2 + 1.0 - ab  # (B, 1, ..., K)
        x = x_t.unsqueeze(-1)  # (B, ..., 1)
        log_comp = w.log() - 0.5 * (x - mu) ** 2 / v - 0.5 * torch.log(2 * math.pi * v)  # (B, ..., K)
        r = torch.softmax(log_comp, dim=-1)
        return (r * (-(x - mu) / v)).sum(-1)

    def optimal_eps(self, schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """E[eps | x_t] = -sqrt(1 - alpha_bar_t) grad log q(x_t): the minimiser of L_simple."""
        return -broadcast((1.0 - schedule.alpha_bar).sqrt(), t, x_t) * self.score(schedule, x_t, t)

    def eps_model(self, schedule: Schedule):
        """The optimal denoiser as a callable ``model(x_t, t) -> eps_pred``, like a trained network."""

        def model(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            return self.optimal_eps(schedule, x_t, t)

        return model


def _mixture_log_prob(
    x: torch.Tensor,
    w: torch.Tensor,
    m: torch.Tensor,
    s: torch.Tensor,
    scale: torch.Tensor | None,
    var_add: torch.Tensor | None,
) -> torch.Tensor:
    """Elementwise log sum_k w_k N(x; scale m_k, scale^2 s_k^2 + var_add)."""
    x = x.unsqueeze(-1)  # (B, ..., 1)
    mu = m if scale is None else scale.unsqueeze(-1) * m
    v = s**2 if scale is None else (scale.unsqueeze(-1) ** 2) * s**2 + var_add.unsqueeze(-1)
    log_comp = w.log() - 0.5 * (x - mu) ** 2 / v - 0.5 * torch.log(2 * math.pi * v)
    return torch.logsumexp(log_comp, dim=-1)

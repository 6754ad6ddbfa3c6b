"""The forward process as a stochastic differential equation: the variance-preserving SDE.

Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential
Equations" (arXiv:2011.13456). In the limit of many small steps, DDPM's chain
x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps (Ho et al. eq. 2) becomes

    dx = f(x, t) dt + g(t) dW,   f(x, t) = -1/2 beta(t) x,   g(t) = sqrt(beta(t))     (Song et al. eq. 11)

on continuous time t in [0, 1]: an Ornstein--Uhlenbeck process with a time-dependent
rate, whose equilibrium is N(0, I). Its transition density is Gaussian (Song et al.
eq. 29, appendix B):

    x_t | x_s ~ N(sqrt(alpha_bar(t) / alpha_bar(s)) x_s, (1 - alpha_bar(t) / alpha_bar(s)) I),
    alpha_bar(t) = exp(-int_0^t beta(s) ds).

Time-reversed, it is again a diffusion (Anderson 1982; Song et al. eq. 6), run from
t = 1 down to 0 with a reverse-time Brownian motion W_bar:

    dx = [f(x, t) - g(t)^2 grad log p_t(x)] dt + g(t) dW_bar.

The probability-flow ODE with the same marginals is :mod:`course_ddpm.ode`.

Continuous beta(t) of a discrete schedule
-----------------------------------------
Code index k (paper step k + 1, see :mod:`course_ddpm.schedules`) sits at t_k = (k + 1) / T.
beta(t) is the piecewise-linear curve through the points (t_k - 1/(2T), T beta_k), the
middle of step k, extended linearly to [0, 1]; so the integral of beta(t) over step k is
beta_k (exactly for the linear schedule, where beta(t) is Song et al.'s straight line
beta_min + t (beta_max - beta_min)), and

    alpha_bar(t_k) = exp(-sum_{j <= k} beta_j) = prod_{j <= k} (1 - beta_j) (1 + O(beta^2)),

the discrete alpha_bar to first order in beta. A network trained at code index k is
asked at continuous t for the nearest index, :meth:`VPSDE.code_index`; the score is
Tweedie's -eps / sqrt(1 - alpha_bar(t)) (:func:`course_ddpm.forward.score_from_eps`).

Shapes: ``x`` is ``(B, ...)``; ``t`` a float or a ``(B,)`` float tensor in [0, 1].
All schedule arithmetic is float64 on the CPU, cast to x's dtype where it meets x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from course_ddpm.schedules import Schedule
from course_ddpm.toy import GaussianMixture
from course_ddpm.validation import check_count, check_eps_pred, check_float, check_same_shape

#: A continuous-time score: ``score_fn(x, t)`` with x ``(B, ...)`` and t ``(B,)`` float64 in [0, 1],
#: returning grad_x log p_t(x), ``(B, ...)``.
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class VPSDE:
    """The variance-preserving SDE of a discrete schedule (Song et al. 2021, eq. 11).

    Attributes:
        schedule: the discrete schedule it continues.
        knots: ``(T,)`` float64, T beta_k: beta(t) at the middle of step k, t = (k + 1/2) / T.
        cumulative: ``(T,)`` float64, int_0^{(k + 1/2)/T} beta(s) ds.
    """

    schedule: Schedule
    knots: torch.Tensor
    cumulative: torch.Tensor

    @classmethod
    def from_schedule(cls, schedule: Schedule) -> "VPSDE":
        """The continuous beta(t) through (k + 1/2) / T -> T beta_k (see the module docstring); T >= 2."""
        T = check_count("schedule.T", schedule.T, 2)
        knots = T * schedule.beta  # (T,) float64
        slope0 = (knots[1] - knots[0]) * T
        beta_at_0 = knots[0] - slope0 / (2 * T)  # the first segment, extended to t = 0
        if beta_at_0 <= 0:
            raise ValueError(
                f"{schedule.name}: beta(t) extended linearly to t = 0 would be {float(beta_at_0):.3g} <= 0; "
                f"the chain is too short for its SDE limit (use T >= ~200)"
            )
        first = (beta_at_0 + knots[0]) / (4 * T)  # trapezoid over [0, 1/(2T)]
        steps = (knots[:-1] + knots[1:]) / (2 * T)  # trapezoids between neighbouring knots
        cumulative = torch.cat([first.reshape(1), first + torch.cumsum(steps, 0)])  # (T,)
        return cls(schedule, knots, cumulative)

    @property
    def T(self) -> int:  # noqa: N802 - the paper's symbol
        return self.schedule.T

    # ------------------------------------------------------------------ schedule in t
    def _segment(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segment j with t in [s_j, s_{j+1}] (extended at the ends), s_j, and its slope."""
        T = self.T
        j = torch.clamp(torch.floor(t * T - 0.5), 0, T - 2).long()
        s_j = (j.double() + 0.5) / T
        slope = (self.knots[j + 1] - self.knots[j]) * T
        return j, s_j, slope

    def beta(self, t: float | torch.Tensor) -> torch.Tensor:
        """beta(t), float64 on the CPU, shaped like t (Song et al. eq. 11)."""
        t = _as_time(t)
        j, s_j, slope = self._segment(t)
        return self.knots[j] + slope * (t - s_j)

    def integral(self, t: float | torch.Tensor) -> torch.Tensor:
        """int_0^t beta(s) ds (exact for the piecewise-linear beta), float64, shaped like t."""
        t = _as_time(t)
        j, s_j, _ = self._segment(t)
        return self.cumulative[j] + (t - s_j) * (self.knots[j] + self.beta(t)) / 2

    def alpha_bar(self, t: float | torch.Tensor) -> torch.Tensor:
        """alpha_bar(t) = exp(-int_0^t beta) (Song et al. eq. 29), float64, shaped like t."""
        return torch.exp(-self.integral(t))

    def code_index(self, t: float | torch.Tensor) -> torch.Tensor:
        """The nearest code index k to continuous t (t_k = (k + 1) / T), ``(B,)`` long in [0, T)."""
        t = _as_time(t)
        return torch.clamp(torch.round(t * self.T - 1.0), 0, self.T - 1).long()

    def time_of_index(self, k: int | torch.Tensor) -> torch.Tensor:
        """t_k = (k + 1) / T, the continuous time of code index k (paper step k + 1), float64."""
        return (torch.as_tensor(k, dtype=torch.float64) + 1.0) / self.T

    # ------------------------------------------------------------------- the SDE
    def drift(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """f(x, t) = -1/2 beta(t) x (Song et al. eq. 11), ``(B, ...)``."""
        check_float("x", x)
        return -0.5 * per_sample(self.beta(t), x) * x

    def diffusion(self, t: float | torch.Tensor) -> torch.Tensor:
        """g(t) = sqrt(beta(t)) (Song et al. eq. 11), float64, shaped like t."""
        return self.beta(t).sqrt()

    def marginal(self, x0: torch.Tensor, t: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of x_t | x_0: N(sqrt(alpha_bar(t)) x_0, (1 - alpha_bar(t)) I).

        Returns mean ``(B, ...)`` and variance ``(B, 1, ..., 1)``.
        """
        return self.transition(x0, 0.0, t)

    def transition(
        self, x_s: torch.Tensor, s: float | torch.Tensor, t: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The OU transition density x_t | x_s for s <= t (Song et al. eq. 29, appendix B):

            mean = sqrt(alpha_bar(t) / alpha_bar(s)) x_s,   variance = 1 - alpha_bar(t) / alpha_bar(s).

        Returns mean ``(B, ...)`` and variance ``(B, 1, ..., 1)``.
        """
        check_float("x_s", x_s)
        ratio = torch.exp(self.integral(s) - self.integral(t))  # alpha_bar(t) / alpha_bar(s)
        return per_sample(ratio.sqrt(), x_s) * x_s, per_sample(1.0 - ratio, x_s)

    # ------------------------------------------------------------ Euler--Maruyama
    def forward_step(self, x: torch.Tensor, t: float | torch.Tensor, dt: float, noise: torch.Tensor) -> torch.Tensor:
        """One Euler--Maruyama step of the forward SDE from t to t + dt:

            x + f(x, t) dt + g(t) sqrt(dt) z,   z ~ N(0, I).

        With dt = 1/T and beta(t) dt = beta_k it is DDPM's step sqrt(1 - beta_k) x + sqrt(beta_k) z
        to first order in beta (Song et al. appendix B).
        """
        check_same_shape(x=x, noise=noise)
        return x + self.drift(x, t) * dt + per_sample(self.diffusion(t) * math.sqrt(dt), x) * noise

    def reverse_step(
        self, x: torch.Tensor, t: float | torch.Tensor, dt: float, score: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """One Euler--Maruyama step of the reverse SDE (Anderson 1982; Song et al. eq. 6) from t to t - dt:

            x - [f(x, t) - g(t)^2 score] dt + g(t) sqrt(dt) z,   z ~ N(0, I).

        Args:
            x: ``(B, ...)`` at time t. dt: the step, > 0. score: ``(B, ...)`` grad log p_t(x).
        """
        check_same_shape(x=x, score=score, noise=noise)
        g = per_sample(self.diffusion(t), x)
        return x - (self.drift(x, t) - g**2 * score) * dt + g * math.sqrt(dt) * noise


# --------------------------------------------------------------------- scores in t
def score_from_model(sde: VPSDE, model: Callable[..., torch.Tensor], y: torch.Tensor | None = None) -> ScoreFn:
    """A noise predictor as a continuous-time score: -eps_theta(x, k(t)) / sqrt(1 - alpha_bar(t)).

    Tweedie's formula (:func:`course_ddpm.forward.score_from_eps`), with the network asked
    at the nearest code index :meth:`VPSDE.code_index` (it was trained on those only).
    """

    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        k = sde.code_index(t).to(x.device)  # (B,)
        eps_pred = check_eps_pred(model(x, k) if y is None else model(x, k, y), x.shape)
        return -eps_pred / per_sample((1.0 - sde.alpha_bar(t)).sqrt(), x)

    return score_fn


def score_of_mixture(sde: VPSDE, mixture: GaussianMixture) -> ScoreFn:
    """The exact score grad log p_t(x) of the toy mixture's noised density at continuous t."""

    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return mixture.score_at(x, per_sample(sde.alpha_bar(t), x))

    return score_fn


def reverse_sde_sample(
    sde: VPSDE,
    score_fn: ScoreFn,
    x_T: torch.Tensor,
    num_steps: int,
    *,
    t_end: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Integrate the reverse SDE from t = 1 down to ``t_end`` by Euler--Maruyama, equal steps.

    Args:
        x_T: ``(B, ...)`` start, usually N(0, I) (the prior, which equals q(x_1) up to alpha_bar(1)).
        num_steps: number of steps N (dt = (1 - t_end) / N).
        t_end: where to stop, in [0, 1); a network's score is best stopped at t_0 = 1/T.
        generator: for the noise z of each step.

    Returns:
        ``(B, ...)`` the sample at ``t_end`` (no final noise-free denoising step).
    """
    check_float("x_T", x_T)
    check_count("num_steps", num_steps)
    if not 0.0 <= t_end < 1.0:
        raise ValueError(f"t_end must lie in [0, 1), got {t_end}")
    dt = (1.0 - t_end) / num_steps
    x = x_T
    for i in range(num_steps):
        t = torch.full((x.shape[0],), 1.0 - i * dt, dtype=torch.float64)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = sde.reverse_step(x, t, dt, score_fn(x, t), noise)
    return x


# ------------------------------------------------------------------------- helpers
def _as_time(t: float | torch.Tensor) -> torch.Tensor:
    """t as a float64 CPU tensor (shape kept); checks 0 <= t <= 1."""
    t = torch.as_tensor(t.detach().cpu() if isinstance(t, torch.Tensor) else t, dtype=torch.float64)
    if t.numel() and (bool((t < 0).any()) or bool((t > 1).any())):
        raise ValueError(f"continuous time t must lie in [0, 1], got values in [{float(t.min())}, {float(t.max())}]")
    return t


def per_sample(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or ``(B,)`` float64 coefficient as ``(B, 1, ..., 1)`` (or ``()``) in like's dtype and device."""
    coef = coef.to(like.dtype).to(like.device)
    return coef if coef.ndim == 0 else coef.reshape(-1, *([1] * (like.ndim - 1)))

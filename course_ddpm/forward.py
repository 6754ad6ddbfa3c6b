"""The forward (noising) process q and the three equivalent things a network may predict.

q is fixed, not learned: every function here is a closed form of the schedule.
Time indices follow :mod:`course_ddpm.schedules` (code t = paper t - 1).

Shapes: ``x0``, ``x_t``, ``eps`` are ``(B, ...)`` (images ``(B, C, H, W)``), ``t`` is
``(B,)`` long. Per-timestep coefficients come from :func:`schedules.broadcast`.
"""

from __future__ import annotations

import torch

from course_ddpm.schedules import Schedule, broadcast
from course_ddpm.validation import check_float, check_same_shape


def q_mean_variance(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).

    Ho et al. 2020, eq. 4; Luo 2022, "Variational Diffusion Models" (q(x_t | x_0)).

    Returns:
        mean ``(B, ...)`` and variance ``(B, 1, ..., 1)``.
    """
    check_float("x0", x0)
    mean = broadcast(schedule.alpha_bar.sqrt(), t, x0) * x0
    var = broadcast(1.0 - schedule.alpha_bar, t, x0)
    return mean, var


def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0) by reparameterisation.

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,  eps ~ N(0, I)
    (Ho et al. 2020, eq. 4 and the line above eq. 9).

    Args:
        x0: ``(B, ...)`` clean data, in [-1, 1] for images.
        t: ``(B,)`` code time indices.
        eps: ``(B, ...)`` standard normal noise, same shape as ``x0``.
    """
    check_float("x0", x0)
    check_float("eps", eps)
    check_same_shape(x0=x0, eps=eps)
    return broadcast(schedule.alpha_bar.sqrt(), t, x0) * x0 + broadcast((1.0 - schedule.alpha_bar).sqrt(), t, x0) * eps


def q_step_mean_variance(
    schedule: Schedule, x_prev: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward step q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I) (Ho et al. eq. 2).

    ``x_prev`` is the paper's x_{t-1} for code index ``t`` (for t = 0 it is x_0).

    Returns:
        mean ``(B, ...)`` and variance ``(B, 1, ..., 1)``.
    """
    check_float("x_prev", x_prev)
    return broadcast(schedule.alpha.sqrt(), t, x_prev) * x_prev, broadcast(schedule.beta, t, x_prev)


def q_trajectory(schedule: Schedule, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Run the Markov chain x_0 -> x_1 -> ... -> x_T one step at a time.

    Each step draws x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps_t (Ho et al. eq. 2). Its
    marginals equal q(x_t | x_0) of :func:`q_sample`, which the tests check.

    Returns:
        ``(T + 1, B, ...)`` with entry k the paper's x_k (entry 0 is ``x0``).
    """
    check_float("x0", x0)
    xs = [x0]
    for step in range(schedule.T):
        t = torch.full((x0.shape[0],), step, dtype=torch.long, device=x0.device)
        mean, var = q_step_mean_variance(schedule, xs[-1], t)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        xs.append(mean + var.sqrt() * eps)
    return torch.stack(xs)  # (T + 1, B, ...)


def q_posterior(
    schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior of the forward process, q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde I).

    mu_tilde  = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
              + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t      (Ho et al. eq. 7)
    beta_tilde = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t                (Ho et al. eq. 7)

    It is tractable only because it conditions on x_0 (Ho et al. eq. 6; Luo 2022, the
    derivation of the denoising matching term). At code t = 0, beta_tilde = 0 and
    mu_tilde = x_0.

    Returns:
        mu_tilde ``(B, ...)`` and beta_tilde ``(B, 1, ..., 1)``.
    """
    check_float("x0", x0)
    check_float("x_t", x_t)
    check_same_shape(x0=x0, x_t=x_t)
    s = schedule
    coef_x0 = s.alpha_bar_prev.sqrt() * s.beta / (1.0 - s.alpha_bar)
    coef_xt = s.alpha.sqrt() * (1.0 - s.alpha_bar_prev) / (1.0 - s.alpha_bar)
    mu_tilde = broadcast(coef_x0, t, x0) * x0 + broadcast(coef_xt, t, x_t) * x_t
    return mu_tilde, broadcast(s.beta_tilde, t, x_t)


# --- The three parameterisations: eps, x0, score ------------------------------------
# Luo 2022, "Three Equivalent Interpretations": from x_t = sqrt(ab) x0 + sqrt(1 - ab) eps
# any one of (x0, eps, score) determines the others given x_t. With the optimal
# predictors the score is grad log q(x_t) (Tweedie's formula, Efron 2011).


def x0_from_eps(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)  (inverse of eq. 4; Ho et al. eq. 15)."""
    check_same_shape(x_t=x_t, eps=eps)
    return (x_t - broadcast((1.0 - schedule.alpha_bar).sqrt(), t, x_t) * eps) / broadcast(
        schedule.alpha_bar.sqrt(), t, x_t
    )


def eps_from_x0(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t)  (eq. 4 solved for eps)."""
    check_same_shape(x_t=x_t, x0=x0)
    return (x_t - broadcast(schedule.alpha_bar.sqrt(), t, x_t) * x0) / broadcast(
        (1.0 - schedule.alpha_bar).sqrt(), t, x_t
    )


def score_from_eps(schedule: Schedule, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """score = grad_x log q(x_t) = -eps / sqrt(1 - alpha_bar_t)  (Tweedie; Luo 2022, score-based view)."""
    return -eps / broadcast((1.0 - schedule.alpha_bar).sqrt(), t, eps)


def eps_from_score(schedule: Schedule, t: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """eps = -sqrt(1 - alpha_bar_t) * score  (inverse of :func:`score_from_eps`)."""
    return -broadcast((1.0 - schedule.alpha_bar).sqrt(), t, score) * score


def x0_from_score(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Tweedie's formula: E[x0 | x_t] = (x_t + (1 - alpha_bar_t) score) / sqrt(alpha_bar_t)."""
    check_same_shape(x_t=x_t, score=score)
    return (x_t + broadcast(1.0 - schedule.alpha_bar, t, x_t) * score) / broadcast(schedule.alpha_bar.sqrt(), t, x_t)

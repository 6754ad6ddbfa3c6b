"""The learned reverse transition p_theta(x_{t-1} | x_t), built from a noise prediction.

p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I)  (Ho et al. 2020, eq. 1 with
fixed variances, section 3.2). The mean is the forward posterior mean with the unknown
x_0 replaced by the network's estimate:

    x0_pred  = (x_t - sqrt(1 - alpha_bar_t) eps_pred) / sqrt(alpha_bar_t)
    mu_theta = mu_tilde(x0_pred, x_t)
             = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_pred)   (Ho et al. eq. 11)

The two lines agree exactly; the first also allows clipping x0_pred to [-1, 1].
The DDPM step (:mod:`course_ddpm.ddpm`) and the variational bound
(:mod:`course_ddpm.bound`, :mod:`course_ddpm.elbo`) both use this module, so they cannot disagree.

A sampler step returns a :class:`StepOutput` (DDPM and DDIM alike), and draws its noise
z with :func:`randn_tensor`.

Names (paper symbol -> code -> diffusers)
-----------------------------------------
==============================  ====================  =====================================
eps_theta(x_t, t)               ``eps_pred``          ``model_output``, ``pred_epsilon``
predicted x_0                   ``x0_pred``           ``pred_original_sample``
x_t, x_{t-1}                    ``x_t``, ``x_prev``   ``sample``, ``prev_sample``
sigma_t^2 choice (section 3.2)  ``variance_type``     ``variance_type``
z ~ N(0, I)                     ``noise``             ``variance_noise``
==============================  ====================  =====================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from course_ddpm.forward import q_posterior, x0_from_eps
from course_ddpm.schedules import Schedule, broadcast
from course_ddpm.validation import check_choice

#: sigma_t^2 = beta_tilde_t ("fixed_small", optimal for deterministic x_0) or beta_t
#: ("fixed_large", optimal for x_0 ~ N(0, I)); Ho et al. section 3.2.
VarianceType = Literal["fixed_small", "fixed_large"]
VARIANCE_TYPES = ("fixed_small", "fixed_large")


@dataclass(frozen=True)
class ReverseStep:
    """Gaussian p_theta(x_{t-1} | x_t) and the x_0 estimate it came from (all ``(B, ...)``-broadcastable)."""

    mean: torch.Tensor  # (B, ...) mu_theta
    variance: torch.Tensor  # (B, 1, ..., 1) sigma_t^2; 0 at code t = 0 for fixed_small
    log_variance: torch.Tensor  # (B, 1, ..., 1) finite at t = 0 (for likelihoods)
    x0_pred: torch.Tensor  # (B, ...)


@dataclass(frozen=True, eq=False)
class StepOutput:
    """Result of one reverse step of a sampler (both ``(B, ...)``).

    x_prev: the next, less noisy sample x_{t-1} (diffusers' ``prev_sample``).
    x0_pred: the x_0 estimate the step used (``pred_original_sample``), clipped if asked.
    """

    x_prev: torch.Tensor
    x0_pred: torch.Tensor


def sigma2(schedule: Schedule, variance_type: VarianceType) -> torch.Tensor:
    """sigma_t^2 of the reverse step for every code t, ``(T,)`` float64 (Ho et al. section 3.2)."""
    check_choice("variance_type", variance_type, VARIANCE_TYPES)
    return schedule.beta_tilde if variance_type == "fixed_small" else schedule.beta


def log_sigma2(schedule: Schedule, variance_type: VarianceType) -> torch.Tensor:
    """log sigma_t^2, ``(T,)``, with code t = 0 replaced by beta_tilde of code t = 1.

    beta_tilde at t = 0 is 0, so its log is -inf; the decoder likelihood needs a finite
    width there. improved-diffusion (``posterior_log_variance_clipped``, and the
    ``fixed_large`` branch of ``p_mean_variance``) makes the same replacement.
    """
    s2 = sigma2(schedule, variance_type).clone()
    if schedule.T > 1:
        s2[0] = schedule.beta_tilde[1]
    else:
        s2[0] = schedule.beta[0]
    return s2.log()


def p_mean_variance(
    schedule: Schedule,
    x_t: torch.Tensor,
    t: torch.Tensor,
    eps_pred: torch.Tensor,
    variance_type: VarianceType = "fixed_small",
    clip_x0: bool = False,
) -> ReverseStep:
    """Mean and variance of p_theta(x_{t-1} | x_t) from a noise prediction (Ho et al. eq. 11).

    Args:
        x_t: ``(B, ...)`` current sample (paper x_{t+1} for code index t).
        t: ``(B,)`` code time indices.
        eps_pred: ``(B, ...)`` the network's noise prediction eps_theta(x_t, t).
        variance_type: "fixed_small" (beta_tilde) or "fixed_large" (beta).
        clip_x0: clip x0_pred to [-1, 1] before forming the mean. Off here, as the
            variational bound needs it; the samplers turn it on for images (see
            :func:`course_ddpm.ddpm.ddpm_step`).
    """
    x0_pred = x0_from_eps(schedule, x_t, t, eps_pred)
    if clip_x0:
        x0_pred = x0_pred.clamp(-1.0, 1.0)
    mean, _ = q_posterior(schedule, x0_pred, x_t, t)
    return ReverseStep(
        mean=mean,
        variance=broadcast(sigma2(schedule, variance_type), t, x_t),
        log_variance=broadcast(log_sigma2(schedule, variance_type), t, x_t),
        x0_pred=x0_pred,
    )


def randn_tensor(
    shape: Sequence[int], generator: torch.Generator | None, device, dtype: torch.dtype
) -> torch.Tensor:
    """z ~ N(0, I) of ``shape``, drawn on the generator's device and moved to ``device``.

    The draws depend on the generator only, not on where the sample lives (diffusers'
    ``randn_tensor``); without a generator, torch's global RNG on ``device``.
    """
    draw_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=draw_device, dtype=dtype).to(device)

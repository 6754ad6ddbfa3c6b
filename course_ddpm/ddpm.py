"""DDPM ancestral sampling: one step x_t -> x_{t-1} ~ p_theta(x_{t-1} | x_t).

Ho et al. 2020 (arXiv:2006.11239), Algorithm 2, written as numbered steps that cite the
paper, as diffusers' ``DDPMScheduler.step`` (``scheduling_ddpm.py``) is. The Gaussian
p_theta itself (mean from eq. 11, variance from section 3.2) is
:func:`course_ddpm.reverse.p_mean_variance`; names and their diffusers equivalents are
listed in :mod:`course_ddpm.reverse`. The loop over all T steps is
:func:`course_ddpm.sampling.sample` with ``sampler="ddpm"``.

Time indices follow :mod:`course_ddpm.schedules`: code t = 0..T-1 is the paper's t = 1..T.

Devices: a step called with indices *on a device* and without ``noise`` reads them once,
to ask whether any t > 0 (and so whether to draw z); the loop passes Python ints and
never reads device memory.
"""

from __future__ import annotations

import torch

from course_ddpm.reverse import VARIANCE_TYPES, StepOutput, VarianceType, p_mean_variance, randn_tensor
from course_ddpm.schedules import Schedule
from course_ddpm.validation import check_choice, check_float, check_same_shape, check_t


def ddpm_step(
    schedule: Schedule,
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    eps_pred: torch.Tensor,
    *,
    variance_type: VarianceType = "fixed_small",
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_x0: bool = True,
) -> StepOutput:
    """One DDPM ancestral step x_t -> x_{t-1} ~ p_theta(x_{t-1} | x_t) (Ho et al. 2020, Algorithm 2).

        x_{t-1} = mu_theta(x_t, t) + sigma_t z,   z ~ N(0, I), z = 0 at the last step,
        mu_theta = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_pred)   (eq. 11)

    The step only moves to the adjacent index t - 1, so a DDPM chain visits all T steps;
    for fewer steps use :func:`course_ddpm.ddim.ddim_step` with eta = 1 (the same chain,
    respaced).

    Args:
        schedule: the training schedule.
        x_t: ``(B, ...)`` current sample; for code index t it is the paper's x_{t+1}.
        t: code index, an int or a ``(B,)`` integer tensor (entries may differ; z is
            zeroed per sample where t = 0).
        eps_pred: ``(B, ...)`` the network's eps_theta(x_t, t).
        variance_type: sigma_t^2 = beta_tilde_t ("fixed_small") or beta_t ("fixed_large"),
            Ho et al. section 3.2.
        noise: ``(B, ...)`` z to use; drawn from ``generator`` when None (only if some
            t > 0, as diffusers' ``DDPMScheduler.step`` does).
        generator: torch.Generator for z.
        clip_x0: clip x0_pred to [-1, 1] before forming the mean (images in [-1, 1]; the
            default of every sampler, as diffusers' ``clip_sample=True``; turn it off for
            other data).

    Returns:
        :class:`~course_ddpm.reverse.StepOutput` with x_prev ``(B, ...)`` and x0_pred ``(B, ...)``.
    """
    check_float("x_t", x_t)
    check_float("eps_pred", eps_pred)
    check_same_shape(x_t=x_t, eps_pred=eps_pred)
    check_choice("variance_type", variance_type, VARIANCE_TYPES)
    t = check_t(t, schedule.T, x_t.shape[0])  # (B,)
    # 1. x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps_pred) / sqrt(alpha_bar_t)   (Ho et al. eq. 15)
    # 2. mu_theta = mu_tilde(x0_pred, x_t), the posterior mean of eq. 7; equal to eq. 11
    # 3. sigma_t^2 = beta_tilde_t or beta_t                                       (section 3.2)
    step = p_mean_variance(schedule, x_t, t, eps_pred, variance_type=variance_type, clip_x0=clip_x0)
    # 4. z ~ N(0, I) if t > 1 (paper), else z = 0                                  (Algorithm 2, line 3)
    has_noise = t > 0  # (B,)
    if noise is None:
        draw = bool(has_noise.any())
        noise = randn_tensor(x_t.shape, generator, x_t.device, x_t.dtype) if draw else torch.zeros_like(x_t)
    else:
        check_float("noise", noise)
        check_same_shape(x_t=x_t, noise=noise)
    nonzero = has_noise.to(device=x_t.device, dtype=x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))  # (B, 1, ..., 1)
    # 5. x_{t-1} = mu_theta + sigma_t z                                            (Algorithm 2, line 4)
    x_prev = step.mean + nonzero * step.variance.sqrt() * noise
    return StepOutput(x_prev=x_prev, x0_pred=step.x0_pred)

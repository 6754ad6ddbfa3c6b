"""Inpainting with an unconditional model: conditioning without retraining.

Some pixels of an image x_0 are known (``mask`` = True), the rest are to be drawn so that
the whole looks like data. The replacement method (Song et al. 2021, score SDE, appendix
I.2; Lugmayr et al. 2022, RePaint, arXiv:2201.09865, eq. 8) runs the usual reverse chain
and, after every step t -> t_prev, overwrites the known pixels by a fresh draw of the
forward process at t_prev:

    x_prev[known]   = sqrt(alpha_bar_prev) x_0 + sqrt(1 - alpha_bar_prev) eps,   eps ~ N(0, I)
    x_prev[unknown] = the sampler's step from x_t                    (DDPM or DDIM)

so that the known part always has the noise level the model expects. At t_prev = -1
(alpha_bar = 1) the known pixels are x_0 itself: they come out exactly as given.

The two halves only meet through the network, one step at a time, so the unknown part can
drift out of harmony with the known one. RePaint's **resampling** (Algorithm 1, with
``resample`` = U) repeats each step U times, each time diffusing the combined x_prev back
to t by the forward jump

    x_t ~ q(x_t | x_prev) = N(sqrt(alpha_bar_t / alpha_bar_prev) x_prev, (1 - alpha_bar_t / alpha_bar_prev) I)

(one step of Ho et al. eq. 2 when t_prev = t - 1), which lets the network harmonise the
two parts at the cost of U times more network calls.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

from course_ddpm.ddim import SPACINGS, Spacing, ddim_step, timesteps
from course_ddpm.ddpm import ddpm_step
from course_ddpm.guidance import conditioning, predict_eps
from course_ddpm.reverse import randn_tensor
from course_ddpm.sampling import SamplerName, _inference_mode, num_steps
from course_ddpm.schedules import Schedule
from course_ddpm.validation import check_choice, check_count, check_eta, check_float


def noise_known(
    schedule: Schedule, x0: torch.Tensor, t_prev: int, generator: torch.Generator | None
) -> torch.Tensor:
    """A draw of q(x_{t_prev} | x_0) (Ho et al. eq. 4); x_0 itself at t_prev = -1.  ``(B, ...)``."""
    alpha_bar = float(schedule.alpha_bar_or_one[t_prev + 1])
    if alpha_bar == 1.0:
        return x0
    eps = randn_tensor(x0.shape, generator, x0.device, x0.dtype)
    return alpha_bar**0.5 * x0 + (1.0 - alpha_bar) ** 0.5 * eps


def renoise(
    schedule: Schedule, x_prev: torch.Tensor, t_prev: int, t: int, generator: torch.Generator | None
) -> torch.Tensor:
    """RePaint's jump back: a draw of q(x_t | x_{t_prev}) for t > t_prev (a product of Ho et al. eq. 2 steps)."""
    ratio = float(schedule.alpha_bar_or_one[t + 1] / schedule.alpha_bar_or_one[t_prev + 1])
    z = randn_tensor(x_prev.shape, generator, x_prev.device, x_prev.dtype)
    return ratio**0.5 * x_prev + (1.0 - ratio) ** 0.5 * z


def inpaint(
    model: Callable[..., torch.Tensor],
    schedule: Schedule,
    x0: torch.Tensor,
    mask: torch.Tensor,
    *,
    sampler: SamplerName = "ddim",
    num_inference_steps: int | None = None,
    eta: float = 0.0,
    spacing: Spacing = "leading",
    resample: int = 1,
    generator: torch.Generator | None = None,
    y: torch.Tensor | None = None,
    guidance_scale: float | None = None,
    clip_x0: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """Fill in the pixels of ``x0`` where ``mask`` is False; keep those where it is True.

    Args:
        model, schedule: the noise predictor and its training schedule (any model
            :func:`course_ddpm.sampling.sample` takes, unconditional or with ``y``).
        x0: ``(B, C, H, W)`` (any ``(B, ...)``) images whose known pixels are kept; the
            values under the unknown pixels are never read.
        mask: bool, ``x0``'s shape or broadcastable to it (e.g. ``(1, 1, H, W)``); True = known.
        sampler, num_inference_steps, eta, spacing, clip_x0: as in :func:`~course_ddpm.sampling.sample`
            (DDIM with 50 steps by default; DDPM runs all T).
        resample: RePaint's U, the number of times each step is taken (1: plain replacement).
        generator: seeds x_T, the known pixels' noise, every z and every jump back.
        y, guidance_scale: class labels and classifier-free guidance, as in ``sample``.
        progress: a tqdm progress bar over the steps.

    Returns:
        ``(B, ...)`` the completed images; ``[mask]`` equals ``x0[mask]`` exactly.
    """
    check_float("x0", x0)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = known pixel), got {getattr(mask, 'dtype', type(mask))}")
    try:
        mask = torch.broadcast_to(mask.to(x0.device), x0.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to x0's {tuple(x0.shape)}") from None
    check_count("resample", resample)
    check_choice("spacing", spacing, SPACINGS)
    check_eta(eta)
    if sampler == "ddpm" and eta != 0.0:
        raise ValueError(f"eta applies to sampler='ddim' only, got eta={eta} with sampler='ddpm'")
    T = schedule.T
    K = num_steps(sampler, num_inference_steps, T)
    ts = list(range(T - 1, -1, -1)) if sampler == "ddpm" else timesteps(T, K, spacing)
    y, null_label = conditioning(model, y, guidance_scale, None, x0.shape[0], x0.device)

    x = randn_tensor(x0.shape, generator, x0.device, x0.dtype)  # x_T ~ N(0, I)
    with _inference_mode(model):
        for i, t in enumerate(tqdm(ts, desc=f"inpainting ({sampler})", disable=not progress, leave=False)):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            t_batch = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)  # (B,)
            for u in range(resample):
                eps_pred = predict_eps(model, x, t_batch, y, guidance_scale, null_label)
                if sampler == "ddpm":
                    x_unknown = ddpm_step(schedule, x, t, eps_pred, generator=generator, clip_x0=clip_x0).x_prev
                else:
                    x_unknown = ddim_step(
                        schedule, x, t, t_prev, eps_pred, eta=eta, generator=generator, clip_x0=clip_x0
                    ).x_prev
                x_prev = torch.where(mask, noise_known(schedule, x0, t_prev, generator), x_unknown)
                if u + 1 < resample and t_prev >= 0:
                    x = renoise(schedule, x_prev, t_prev, t, generator)  # back to t, try again
                else:
                    break
            x = x_prev
    return x

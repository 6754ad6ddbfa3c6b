"""Samplers: from pure noise x_T to data x_0 with a noise predictor eps_theta(x_t, t).

One algorithm per function; each step is written as numbered steps that cite the
paper's formula, as in diffusers' ``scheduling_ddpm.py`` and ``scheduling_ddim.py``.

* :func:`ddpm_step` -- ancestral sampling, Ho et al. 2020 (arXiv:2006.11239), Algorithm 2.
* :func:`ddim_step` -- Song et al. 2021, DDIM (arXiv:2010.02502), eq. 12 with sigma from
  eq. 16, on any decreasing subsequence of timesteps. eta = 0: deterministic (an ODE
  solver); eta = 1: DDPM with sigma_t^2 = beta_tilde_t on that subsequence.
* :func:`ddim_invert_step` / :func:`ddim_invert` -- the same formula run upwards,
  x_0 -> x_T (DDIM encoding).
* :func:`sample` -- the whole loop, with classifier-free guidance (Ho & Salimans 2022).
* :func:`timesteps` -- which code indices a K-step sampler visits; :func:`slerp`.

Time indices follow :mod:`course_ddpm.schedules`: code t = 0..T-1 is the paper's
t = 1..T; code t = -1 stands for the clean data x_0 (alpha_bar = 1).

Names: DDIM's alpha is our alpha_bar
-------------------------------------
Song et al. write alpha_t for what Ho et al. (and this package) call alpha_bar_t, the
cumulative product. So DDIM's "sqrt(alpha_{t-1})" is ``alpha_bar_prev.sqrt()`` here.

==============================  ====================  =====================================
paper symbol                    code                  diffusers
==============================  ====================  =====================================
alpha_t (DDIM) = alpha_bar_t    ``alpha_bar[t]``      ``alphas_cumprod[t]``
alpha_{t-1} (DDIM)              ``alpha_bar_prev``    ``alpha_prod_t_prev``
alpha_0 = 1 (DDIM)              t_prev = -1           ``final_alpha_cumprod`` (set_alpha_to_one)
sigma_t(eta) (DDIM eq. 16)      ``ddim_sigma(...)``   ``std_dev_t``
eps_theta(x_t)                  ``eps_pred``          ``model_output``, ``pred_epsilon``
predicted x_0                   ``x0_pred``           ``pred_original_sample``
x_t, x_{t-1}                    ``x_t``, ``x_prev``   ``sample``, ``prev_sample``
z ~ N(0, I)                     ``noise``             ``variance_noise``
==============================  ====================  =====================================

Random numbers: :func:`sample` draws x_T first and then, for each step that adds noise,
one ``torch.randn`` of the sample's shape from the same generator, in the order
diffusers' schedulers do (DDPM: only for t > 0; DDIM: every step when eta > 0). So a
loop over diffusers' ``step(..., generator=g)`` with the same seed gives the same samples.

Devices: float64 stays on the CPU (MPS has none); a coefficient computed in float64 is
cast to the sample's dtype on the CPU and then moved (see :mod:`course_ddpm.schedules`).
:func:`sample` passes Python ints as time indices, so its loop never reads device memory
(which would wait for the GPU on every step). A step called with indices *on a device*
reads them once: :func:`ddim_step` copies t and t_prev to the CPU for its float64
coefficients, and :func:`ddpm_step` without ``noise`` asks whether any t > 0.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from course_ddpm.forward import eps_from_x0, x0_from_eps
from course_ddpm.reverse import VarianceType, p_mean_variance
from course_ddpm.schedules import Schedule, broadcast
from course_ddpm.validation import (
    check_choice,
    check_eps_pred,
    check_eta,
    check_float,
    check_guidance_scale,
    check_labels,
    check_null_label,
    check_num_inference_steps,
    check_same_shape,
    check_shape,
    check_t,
    check_t_pair,
    check_T,
)

SamplerName = Literal["ddpm", "ddim"]
Spacing = Literal["leading", "trailing", "linspace"]
_SPACINGS = ("leading", "trailing", "linspace")
_VARIANCES = ("fixed_small", "fixed_large")


@dataclass(frozen=True, eq=False)
class StepOutput:
    """Result of one reverse step (both ``(B, ...)``).

    x_prev: the next, less noisy sample x_{t-1} (diffusers' ``prev_sample``).
    x0_pred: the x_0 estimate the step used (``pred_original_sample``), clipped if asked.
    """

    x_prev: torch.Tensor
    x0_pred: torch.Tensor


@dataclass(frozen=True, eq=False)
class SampleResult:
    """Output of :func:`sample`.

    Attributes:
        x0: ``(B, C, H, W)`` (or ``(B, ...)``) final samples, on the sampling device.
        timesteps: the K code indices visited, descending (e.g. ``(999, ..., 0)``).
        trajectory: ``(K + 1, B, ...)`` x_T, then x after each step (the last is ``x0``),
            on the CPU; None unless ``record=True``.
        x0_preds: ``(K, B, ...)`` the x_0 prediction of each step, on the CPU; None unless
            ``record=True``.
    """

    x0: torch.Tensor
    timesteps: tuple[int, ...]
    trajectory: torch.Tensor | None = None
    x0_preds: torch.Tensor | None = None


# ----------------------------------------------------------------------------- steps
def ddpm_step(
    schedule: Schedule,
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    eps_pred: torch.Tensor,
    *,
    variance: VarianceType = "fixed_small",
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_x0: bool = False,
) -> StepOutput:
    """One DDPM ancestral step x_t -> x_{t-1} ~ p_theta(x_{t-1} | x_t) (Ho et al. 2020, Algorithm 2).

        x_{t-1} = mu_theta(x_t, t) + sigma_t z,   z ~ N(0, I), z = 0 at the last step,
        mu_theta = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_pred)   (eq. 11)

    The step only moves to the adjacent index t - 1, so a DDPM chain visits all T steps;
    for fewer steps use :func:`ddim_step` with eta = 1 (the same chain, respaced).

    Args:
        schedule: the training schedule.
        x_t: ``(B, ...)`` current sample; for code index t it is the paper's x_{t+1}.
        t: code index, an int or a ``(B,)`` integer tensor (entries may differ; z is
            zeroed per sample where t = 0).
        eps_pred: ``(B, ...)`` the network's eps_theta(x_t, t).
        variance: sigma_t^2 = beta_tilde_t ("fixed_small") or beta_t ("fixed_large"),
            Ho et al. section 3.2.
        noise: ``(B, ...)`` z to use; drawn from ``generator`` when None (only if some
            t > 0, as diffusers' ``DDPMScheduler.step`` does).
        generator: torch.Generator for z.
        clip_x0: clip x0_pred to [-1, 1] before forming the mean (images).

    Returns:
        :class:`StepOutput` with x_prev ``(B, ...)`` and x0_pred ``(B, ...)``.
    """
    check_float("x_t", x_t)
    check_float("eps_pred", eps_pred)
    check_same_shape(x_t=x_t, eps_pred=eps_pred)
    check_choice("variance", variance, _VARIANCES)
    t = check_t(t, schedule.T, x_t.shape[0])
    # 1. x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps_pred) / sqrt(alpha_bar_t)   (Ho et al. eq. 15)
    # 2. mu_theta = mu_tilde(x0_pred, x_t), the posterior mean of eq. 7; equal to eq. 11
    # 3. sigma_t^2 = beta_tilde_t or beta_t                                       (section 3.2)
    step = p_mean_variance(schedule, x_t, t, eps_pred, variance=variance, clip_x0=clip_x0)
    # 4. z ~ N(0, I) if t > 1 (paper), else z = 0                                  (Algorithm 2, line 3)
    has_noise = t > 0  # (B,)
    if noise is None:
        noise = _randn(x_t.shape, generator, x_t.device, x_t.dtype) if bool(has_noise.any()) else torch.zeros_like(x_t)
    else:
        check_float("noise", noise)
        check_same_shape(x_t=x_t, noise=noise)
    nonzero = has_noise.to(device=x_t.device, dtype=x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))  # (B, 1, ..., 1)
    # 5. x_{t-1} = mu_theta + sigma_t z                                            (Algorithm 2, line 4)
    x_prev = step.mean + nonzero * step.variance.sqrt() * noise
    return StepOutput(x_prev=x_prev, x0_pred=step.x0_pred)


def ddim_sigma(
    schedule: Schedule, t: int | torch.Tensor, t_prev: int | torch.Tensor, eta: float
) -> torch.Tensor:
    """sigma_t(eta) of a DDIM step from code t to t_prev < t (Song et al. 2021, eq. 16).

        sigma(eta) = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * sqrt(1 - alpha_bar_t / alpha_bar_prev)

    (in DDIM's own notation alpha for alpha_bar). With eta = 1 and t_prev = t - 1 this is
    sqrt(beta_tilde_t) of Ho et al. eq. 7; with t_prev = -1, alpha_bar_prev = 1 and sigma = 0.

    Args:
        t, t_prev: code indices, ints or ``(B,)`` integer tensors, -1 <= t_prev < t < T
            (copied to the CPU if they are on a device).
        eta: 0 (deterministic DDIM) .. 1 (DDPM-like).

    Returns:
        float64 tensor, shape ``()`` for int t, else ``(B,)``, on the CPU.
    """
    check_eta(eta)
    t_, t_prev_ = check_t_pair(_on_cpu(t), _on_cpu(t_prev), schedule.T)
    ab_t = schedule.alpha_bar[t_]
    ab_prev = schedule.alpha_bar_or_one[t_prev_ + 1]
    sigma = eta * ((1.0 - ab_prev) / (1.0 - ab_t)).sqrt() * (1.0 - ab_t / ab_prev).sqrt()
    return sigma if isinstance(t, torch.Tensor) or isinstance(t_prev, torch.Tensor) else sigma.reshape(())


def ddim_step(
    schedule: Schedule,
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    t_prev: int | torch.Tensor,
    eps_pred: torch.Tensor,
    *,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_x0: bool = False,
) -> StepOutput:
    """One DDIM step from code index t to any t_prev < t (Song et al. 2021, eq. 12 and 16).

        x_prev = sqrt(alpha_bar_prev) x0_pred                        "predicted x_0"
               + sqrt(1 - alpha_bar_prev - sigma^2) eps_pred          "direction pointing to x_t"
               + sigma z                                              "random noise",  z ~ N(0, I)

    (Song et al. write alpha for our alpha_bar; see the module docstring.) t_prev = -1
    means the clean end, alpha_bar_prev = 1 (diffusers' ``set_alpha_to_one=True``); then
    x_prev = x0_pred. eta = 0 is deterministic; eta = 1 with t_prev = t - 1 is exactly
    the DDPM step with sigma^2 = beta_tilde.

    With ``clip_x0`` the clipped x0_pred is also turned back into eps_pred (as
    improved-diffusion's ``ddim_sample`` does, = diffusers' ``use_clipped_model_output=True``).

    Args:
        schedule: the training schedule.
        x_t: ``(B, ...)`` current sample at code index t.
        t, t_prev: code indices, ints or ``(B,)`` integer tensors, -1 <= t_prev < t < T. The
            coefficients are computed from them in float64 on the CPU, so tensors on a device
            are read once (ints, as :func:`sample` passes them, cost nothing).
        eps_pred: ``(B, ...)`` the network's eps_theta(x_t, t).
        eta: in [0, 1], scales sigma (eq. 16).
        noise: ``(B, ...)`` z; drawn from ``generator`` when None and eta > 0 (every step,
            as diffusers' ``DDIMScheduler.step``).
        generator: torch.Generator for z.
        clip_x0: clip x0_pred to [-1, 1].

    Returns:
        :class:`StepOutput` with x_prev ``(B, ...)`` and x0_pred ``(B, ...)``.
    """
    check_float("x_t", x_t)
    check_float("eps_pred", eps_pred)
    check_same_shape(x_t=x_t, eps_pred=eps_pred)
    check_eta(eta)
    t_, t_prev_ = check_t_pair(_on_cpu(t), _on_cpu(t_prev), schedule.T, x_t.shape[0])  # (B,) each, on the CPU
    # 1. x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps_pred) / sqrt(alpha_bar_t)   ("predicted x_0", eq. 12)
    x0_pred = x0_from_eps(schedule, x_t, t_, eps_pred)
    if clip_x0:
        x0_pred = x0_pred.clamp(-1.0, 1.0)
        eps_pred = eps_from_x0(schedule, x_t, t_, x0_pred)
    # 2. alpha_bar_prev (1 at t_prev = -1) and sigma_t(eta), in float64 on the CPU  (eq. 16)
    ab_prev = schedule.alpha_bar_or_one[t_prev_ + 1]  # (B,)
    sigma = ddim_sigma(schedule, t_, t_prev_, eta)  # (B,)
    # 3. "direction pointing to x_t": sqrt(1 - alpha_bar_prev - sigma^2)          (eq. 12)
    dir_coef = (1.0 - ab_prev - sigma**2).clamp(min=0.0).sqrt()  # (B,) clamp: rounding only, eta <= 1
    # 4. x_prev = sqrt(alpha_bar_prev) x0_pred + direction + sigma z               (eq. 12)
    x_prev = _per_sample(ab_prev.sqrt(), x_t) * x0_pred + _per_sample(dir_coef, x_t) * eps_pred
    if eta > 0:
        if noise is None:
            noise = _randn(x_t.shape, generator, x_t.device, x_t.dtype)
        check_float("noise", noise)
        check_same_shape(x_t=x_t, noise=noise)
        x_prev = x_prev + _per_sample(sigma, x_t) * noise
    return StepOutput(x_prev=x_prev, x0_pred=x0_pred)


def ddim_invert_step(
    schedule: Schedule,
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    t_next: int | torch.Tensor,
    eps_pred: torch.Tensor,
) -> StepOutput:
    """One deterministic DDIM step *upwards*, from code index t to t_next > t (encoding).

    Eq. 12 of Song et al. with sigma = 0 is a step of an ODE (their section 4.3, "Relevance
    to neural ODEs"), which can be run from x_0 towards x_T as well:

        x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps_pred) / sqrt(alpha_bar_t)
        x_next  = sqrt(alpha_bar_next) x0_pred + sqrt(1 - alpha_bar_next) eps_pred

    t = -1 is the clean data (alpha_bar = 1, so x0_pred = x_t). Same arithmetic as
    diffusers' ``DDIMInverseScheduler.step``.

    Args:
        x_t: ``(B, ...)`` sample at code index t.
        t, t_next: ints or ``(B,)`` integer tensors, -1 <= t < t_next < T.
        eps_pred: ``(B, ...)`` noise prediction; :func:`ddim_invert` uses eps_theta(x_t, t_next).

    Returns:
        :class:`StepOutput` with ``x_prev`` holding x_next ``(B, ...)``, and x0_pred.
    """
    check_float("x_t", x_t)
    check_float("eps_pred", eps_pred)
    check_same_shape(x_t=x_t, eps_pred=eps_pred)
    # the pair (t_next, t) is a valid downward pair: -1 <= t < t_next < T
    t_next_, t_ = check_t_pair(t_next, t, schedule.T, x_t.shape[0], names=("t_next", "t"))
    ab_or_one = schedule.alpha_bar_or_one
    # 1. x0_pred from x_t at level t (alpha_bar = 1 at t = -1)                (eq. 12, first term)
    ab_t = broadcast(ab_or_one, t_ + 1, x_t)
    x0_pred = (x_t - (1.0 - ab_t).sqrt() * eps_pred) / ab_t.sqrt()
    # 2. x_next = sqrt(alpha_bar_next) x0_pred + sqrt(1 - alpha_bar_next) eps_pred   (eq. 12, sigma = 0)
    ab_next = broadcast(schedule.alpha_bar, t_next_, x_t)
    x_next = ab_next.sqrt() * x0_pred + (1.0 - ab_next).sqrt() * eps_pred
    return StepOutput(x_prev=x_next, x0_pred=x0_pred)


# ------------------------------------------------------------------------- timesteps
def timesteps(T: int, steps: int, spacing: Spacing = "leading") -> list[int]:
    """The ``steps`` code indices a sampler visits, descending, each in [0, T).

    Equals diffusers' ``DDIMScheduler.set_timesteps`` (``steps_offset=0``) for its
    ``timestep_spacing`` option of the same name (Python's ``round`` and numpy's both
    round halves to even):

    * "leading": ``k * (T // steps)`` for k = steps-1..0, e.g. T=1000, 50 steps ->
      980, 960, ..., 0. The DDIM authors' own code ("uniform" skip).
    * "trailing": ``round(T - k * T / steps) - 1`` for k = 0..steps-1 -> 999, 979, ..., 19;
      starts at the last index, where the sampler's N(0, I) start matches q(x_T) best
      (Lin et al. 2023, arXiv:2305.08891, Table 2).
    * "linspace": ``round(linspace(0, T - 1, steps))`` reversed -> 999, 979, ..., 0.

    ``steps == T`` gives every index (T-1, ..., 0) for all three.

    Args:
        T: number of training steps.
        steps: number of sampling steps K, 1 <= K <= T.
        spacing: "leading", "trailing" or "linspace".
    """
    check_T(T)
    check_num_inference_steps(steps, T)
    if spacing == "leading":
        ratio = T // steps
        ts = [k * ratio for k in reversed(range(steps))]
    elif spacing == "trailing":
        # T - k * T / steps, in numpy.arange's arithmetic (start + k * delta), so that
        # rounding at exact halves agrees with diffusers
        delta = (T - T / steps) - T
        ts = [round(T + k * delta) - 1 for k in range(steps)]
    elif spacing == "linspace":
        # k * (T - 1) / (steps - 1), in numpy.linspace's arithmetic (k * step, last = T - 1)
        if steps == 1:
            ts = [0]
        else:
            step = (T - 1) / (steps - 1)
            ts = [T - 1 if k == steps - 1 else round(k * step) for k in reversed(range(steps))]
    else:
        raise ValueError(f"spacing must be one of {_SPACINGS}, got {spacing!r}")
    assert all(a > b for a, b in zip(ts, ts[1:])) and 0 <= ts[-1] and ts[0] < T, ts
    return ts


# --------------------------------------------------------------------------- sampling
def sample(
    model: Callable[..., torch.Tensor],
    schedule: Schedule,
    shape: Sequence[int],
    *,
    sampler: SamplerName = "ddpm",
    steps: int | None = None,
    eta: float = 0.0,
    variance: VarianceType = "fixed_small",
    spacing: Spacing = "leading",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    y: torch.Tensor | None = None,
    guidance_scale: float | None = None,
    null_label: int | None = None,
    clip_x0: bool = True,
    progress: bool = True,
    record: bool = False,
    x_T: torch.Tensor | None = None,
) -> SampleResult:
    """Generate samples: x_T ~ N(0, I), then K reverse steps down to x_0.

    * ``sampler="ddpm"``: all T steps of :func:`ddpm_step` (Ho et al. Algorithm 2).
      ``steps`` must be None or T: a DDPM chain with fewer steps is DDIM with eta = 1
      (use ``sampler="ddim", eta=1.0``), so no separate respacing is implemented.
    * ``sampler="ddim"``: :func:`ddim_step` on ``timesteps(T, steps, spacing)``, the last
      step going to t_prev = -1. ``steps=None`` means all T.

    Classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598, Algorithm 2), when
    ``guidance_scale`` s is given:

        eps = eps_uncond + s (eps_cond - eps_uncond)

    with eps_cond = model(x_t, t, y) and eps_uncond = model(x_t, t, null_label), both in one
    forward pass of batch 2B. s = 0: unconditional, s = 1: conditional; the paper's
    w = s - 1 (their (1 + w) eps_cond - w eps_uncond).

    The model runs under ``torch.no_grad()`` and, if it is an ``nn.Module``, in eval mode;
    its previous mode is restored afterwards.

    Args:
        model: ``model(x_t, t) -> eps_pred`` or, with ``y``, ``model(x_t, t, y)``; x_t
            ``(B, ...)``, t ``(B,)`` long; eps_pred has the shape of x_t.
        schedule: the schedule the model was trained with.
        shape: ``(B, C, H, W)`` (any ``(B, ...)``).
        sampler: "ddpm" or "ddim".
        steps: number of steps K (see above).
        eta: DDIM's eta in [0, 1] (eq. 16); must be 0 for "ddpm".
        variance: DDPM's sigma_t^2, "fixed_small" (beta_tilde) or "fixed_large" (beta).
        spacing: DDIM timestep spacing, see :func:`timesteps`.
        generator: seeds x_T and every z; same seed, same samples.
        device: where to sample; default x_T's device, else the model's, else the CPU.
        dtype: default x_T's dtype, else ``torch.get_default_dtype()``.
        y: ``(B,)`` integer class labels, or None.
        guidance_scale: s above; needs ``y``.
        null_label: the "no label" class; default ``model.config.num_classes``.
        clip_x0: clip every x0_pred to [-1, 1] (images in [-1, 1]; off for other data).
        progress: show a tqdm progress bar.
        record: keep the trajectory and x0 predictions (on the CPU).
        x_T: ``shape`` starting noise to use instead of drawing it (DDIM determinism,
            interpolation).

    Returns:
        :class:`SampleResult`.
    """
    shape = check_shape(shape)
    check_choice("sampler", sampler, ("ddpm", "ddim"))
    check_choice("variance", variance, _VARIANCES)
    check_choice("spacing", spacing, _SPACINGS)
    check_eta(eta)
    T = schedule.T
    if steps is not None:
        check_num_inference_steps(steps, T)
    if sampler == "ddpm":
        if steps is not None and steps != T:
            raise ValueError(
                f"steps={steps}: DDPM ancestral sampling visits all T={T} steps. For fewer steps "
                f"use sampler='ddim' with eta=1.0, which is DDPM (sigma^2 = beta_tilde) on the "
                f"shorter chain (Song et al. eq. 16), or eta=0.0 for deterministic DDIM."
            )
        if eta != 0.0:
            raise ValueError(f"eta applies to sampler='ddim' only, got eta={eta} with sampler='ddpm'")
        ts = list(range(T - 1, -1, -1))
    else:
        ts = timesteps(T, T if steps is None else steps, spacing)
    if x_T is not None:
        check_float("x_T", x_T)
        if tuple(x_T.shape) != shape:
            raise ValueError(f"shape mismatch: x_T has shape {tuple(x_T.shape)} but shape is {shape}")
    device = torch.device(device) if device is not None else _default_device(model, x_T)
    dtype = dtype if dtype is not None else (x_T.dtype if x_T is not None else torch.get_default_dtype())
    y, null_label = _check_conditioning(model, y, guidance_scale, null_label, shape[0], device)

    # x_T ~ N(0, I)  (Ho et al. Algorithm 2, line 1)
    x = x_T.to(device=device, dtype=dtype) if x_T is not None else _randn(shape, generator, device, dtype)
    trajectory, x0_preds = ([x.cpu()], []) if record else (None, None)
    with _inference_mode(model):
        for i, t in enumerate(tqdm(ts, desc=f"{sampler} sampling", disable=not progress, leave=False)):
            t_batch = torch.full((shape[0],), t, dtype=torch.long, device=device)  # (B,)
            eps_pred = _predict_eps(model, x, t_batch, y, guidance_scale, null_label)
            if sampler == "ddpm":
                out = ddpm_step(schedule, x, t, eps_pred, variance=variance, generator=generator, clip_x0=clip_x0)
            else:
                t_prev = ts[i + 1] if i + 1 < len(ts) else -1
                out = ddim_step(schedule, x, t, t_prev, eps_pred, eta=eta, generator=generator, clip_x0=clip_x0)
            x = out.x_prev
            if record:
                trajectory.append(x.cpu())
                x0_preds.append(out.x0_pred.cpu())
    return SampleResult(
        x0=x,
        timesteps=tuple(ts),
        trajectory=torch.stack(trajectory) if record else None,  # (K + 1, B, ...)
        x0_preds=torch.stack(x0_preds) if record else None,  # (K, B, ...)
    )


def ddim_invert(
    model: Callable[..., torch.Tensor],
    schedule: Schedule,
    x0: torch.Tensor,
    *,
    steps: int | None = None,
    spacing: Spacing = "leading",
    y: torch.Tensor | None = None,
    guidance_scale: float | None = None,
    null_label: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """DDIM encoding x_0 -> x_T: the deterministic sampler (eta = 0) run backwards.

    Visits -1 -> tau_1 -> ... -> tau_K (the sampler's timesteps, ascending) with
    :func:`ddim_invert_step`. The model cannot be evaluated at the clean end t = -1, so each
    step from tau_{i-1} to tau_i uses eps_theta(x_{tau_{i-1}}, tau_i), as diffusers'
    ``DDIMInverseScheduler`` pipelines do: a first-order approximation whose error
    vanishes as the steps shrink. Decoding the result with ``sample(..., sampler="ddim",
    eta=0.0, clip_x0=False, x_T=...)`` and the same ``steps``/``spacing`` returns close to
    x0 (Song et al. 2021, section 4.3 and the reconstruction experiment of section 5).

    Args:
        x0: ``(B, ...)`` data.
        steps, spacing: as in :func:`sample`; None means all T.
        y, guidance_scale, null_label: as in :func:`sample`.

    Returns:
        ``(B, ...)`` x_T, same dtype and device as x0.
    """
    check_float("x0", x0)
    check_choice("spacing", spacing, _SPACINGS)
    if steps is not None:
        check_num_inference_steps(steps, schedule.T)
    y, null_label = _check_conditioning(model, y, guidance_scale, null_label, x0.shape[0], x0.device)
    ts = timesteps(schedule.T, schedule.T if steps is None else steps, spacing)[::-1]  # ascending
    x, t = x0, -1
    with _inference_mode(model):
        for t_next in tqdm(ts, desc="ddim inversion", disable=not progress, leave=False):
            t_batch = torch.full((x.shape[0],), t_next, dtype=torch.long, device=x.device)  # (B,)
            eps_pred = _predict_eps(model, x, t_batch, y, guidance_scale, null_label)
            x = ddim_invert_step(schedule, x, t, t_next, eps_pred).x_prev
            t = t_next
    return x


def slerp(x_a: torch.Tensor, x_b: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noises (Song et al. 2021, section 5.3).

        theta = arccos(<x_a, x_b> / (|x_a| |x_b|))
        x(alpha) = sin((1 - alpha) theta) / sin(theta) x_a + sin(alpha theta) / sin(theta) x_b

    Gaussian noise in high dimension lies near a sphere of radius sqrt(d); a straight
    line between two such points passes inside it (norm ~ sqrt(d / 2) at alpha = 1/2),
    where the model has never seen x_T. slerp stays at the right norm. The whole tensor
    is one vector (pass single noises, e.g. ``(C, H, W)`` or ``(1, C, H, W)``).

    Args:
        x_a, x_b: noises of the same shape S.
        alpha: a float (returns shape S) or a 1-D tensor/sequence of N values (returns
            ``(N, *S)``); 0 gives x_a, 1 gives x_b.
    """
    check_float("x_a", x_a)
    check_float("x_b", x_b)
    check_same_shape(x_a=x_a, x_b=x_b)
    if isinstance(alpha, bool):
        raise TypeError("alpha must be a float or a 1-D sequence of floats, got bool")
    a = torch.as_tensor(alpha.cpu() if isinstance(alpha, torch.Tensor) else alpha, dtype=torch.float64)
    scalar = a.ndim == 0
    if a.ndim > 1:
        raise ValueError(f"alpha must be a float or a 1-D sequence, got shape {tuple(a.shape)}")
    if not bool(torch.isfinite(a).all()):
        raise ValueError("alpha must be finite")
    # float64 on the CPU (MPS has none); the result is cast back, then moved to x_a's device
    x_a64, x_b64 = x_a.cpu().double(), x_b.cpu().double()
    va, vb = x_a64.reshape(-1), x_b64.reshape(-1)
    cos = (va @ vb) / (va.norm() * vb.norm())
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    a = a.reshape(-1, *([1] * x_a.ndim))  # (N, 1, ..., 1)
    if float(theta) < 1e-6:  # (anti-)parallel to rounding: sin(theta) ~ 0, use the straight line
        w_a, w_b = 1.0 - a, a
    else:
        w_a, w_b = torch.sin((1.0 - a) * theta) / torch.sin(theta), torch.sin(a * theta) / torch.sin(theta)
    out = (w_a * x_a64 + w_b * x_b64).to(x_a.dtype).to(x_a.device)  # (N, *S)
    return out[0] if scalar else out


# --------------------------------------------------------------------------- helpers
def _predict_eps(
    model: Callable[..., torch.Tensor],
    x_t: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor | None,
    guidance_scale: float | None,
    null_label: int | None,
) -> torch.Tensor:
    """eps_pred from the model; with guidance, eps_u + s (eps_c - eps_u) from one batch of 2B."""
    if y is None:
        eps_pred = model(x_t, t)
    elif guidance_scale is None:
        eps_pred = model(x_t, t, y)
    else:
        y_null = torch.full_like(y, null_label)
        eps_both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, y_null]))  # (2B, ...)
        check_eps_pred(eps_both, (2 * x_t.shape[0], *x_t.shape[1:]))
        eps_cond, eps_uncond = eps_both.chunk(2)  # 2 x (B, ...)
        eps_pred = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
    return check_eps_pred(eps_pred, x_t.shape)


@contextlib.contextmanager
def _inference_mode(model: object) -> Iterator[None]:
    """torch.no_grad() and, for an nn.Module, eval mode; the previous mode is restored."""
    was_training = model.training if isinstance(model, nn.Module) else None
    if was_training is not None:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training is not None:
            model.train(was_training)


def _check_conditioning(
    model: object, y: torch.Tensor | None, guidance_scale: float | None, null_label: int | None, batch: int, device
) -> tuple[torch.Tensor | None, int | None]:
    """Validate labels and guidance; returns y on ``device`` and the null label (None without guidance)."""
    if y is not None:
        y = check_labels(y, batch).to(device=device, dtype=torch.long)
    if guidance_scale is None:
        return y, None
    if y is None:
        raise ValueError("guidance_scale needs class labels y")
    check_guidance_scale(guidance_scale)
    if null_label is None:
        null_label = getattr(getattr(model, "config", None), "num_classes", None)
        if null_label is None:
            raise ValueError("classifier-free guidance needs null_label (model.config.num_classes was not found)")
    return y, check_null_label(null_label)


def _default_device(model: object, x_T: torch.Tensor | None) -> torch.device:
    if x_T is not None:
        return x_T.device
    if isinstance(model, nn.Module):
        param = next(model.parameters(), None)
        if param is not None:
            return param.device
    return torch.device("cpu")


def _randn(shape: Sequence[int], generator: torch.Generator | None, device, dtype: torch.dtype) -> torch.Tensor:
    """torch.randn on the generator's device, moved to ``device`` (as diffusers' ``randn_tensor``)."""
    draw_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=draw_device, dtype=dtype).to(device)


def _on_cpu(t: int | torch.Tensor) -> int | torch.Tensor:
    """An int as it is; a tensor of indices copied to the CPU (a read, if it is on a device)."""
    return t.cpu() if isinstance(t, torch.Tensor) else t


def _per_sample(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B,)`` coefficients on the CPU -> ``(B, 1, ..., 1)`` in like's dtype, on like's device.

    Cast on the CPU, then moved: float64 never reaches the device (MPS has none).
    """
    return coef.to(like.dtype).to(like.device).reshape(-1, *([1] * (like.ndim - 1)))  # (B, 1, ..., 1)

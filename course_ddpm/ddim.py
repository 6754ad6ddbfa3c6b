"""DDIM: one step from x_t to any earlier x_{t_prev}, its inversion, and its timesteps.

Song et al. 2021, "Denoising Diffusion Implicit Models" (arXiv:2010.02502). Each step is
written as numbered steps that cite the paper, as diffusers' ``scheduling_ddim.py``.

* :func:`ddim_step` -- eq. 12 with sigma from eq. 16 (:func:`ddim_sigma`), on any
  decreasing subsequence of timesteps. eta = 0: deterministic (an ODE solver); eta = 1:
  DDPM with sigma_t^2 = beta_tilde_t on that subsequence.
* :func:`ddim_invert_step` -- the same formula run upwards, x_0 -> x_T (DDIM encoding;
  the loop is :func:`course_ddpm.sampling.ddim_invert`).
* :func:`timesteps` -- which code indices a K-step sampler visits (section 4.2).
* :func:`slerp` -- interpolation between two starting noises (section 5.3).

Time indices follow :mod:`course_ddpm.schedules`: code t = 0..T-1 is the paper's
t = 1..T; code t = -1 stands for the clean data x_0 (alpha_bar = 1).

Names: DDIM's alpha is our alpha_bar
-------------------------------------
Song et al. write alpha_t for what Ho et al. (and this package) call alpha_bar_t, the
cumulative product. So DDIM's "sqrt(alpha_{t-1})" is ``alpha_bar_prev.sqrt()`` here.
The names the DDPM step shares (eps_pred, x0_pred, x_prev, noise) are listed in
:mod:`course_ddpm.reverse`.

==============================  ==================================  ===================================
paper symbol                    code                                diffusers
==============================  ==================================  ===================================
alpha_t (DDIM) = alpha_bar_t    ``alpha_bar[t]``                    ``alphas_cumprod[t]``
alpha_{t-1} (DDIM)              ``alpha_bar_prev``                  ``alpha_prod_t_prev``
alpha_0 = 1 (DDIM)              ``alpha_bar_or_one[0]``, t = -1     ``final_alpha_cumprod``
sigma_t(eta) (DDIM eq. 16)      ``ddim_sigma(...)``                 ``std_dev_t``
tau_1 < ... < tau_K (sec. 4.2)  ``timesteps(T, K)`` (descending)    ``set_timesteps(K)``
==============================  ==================================  ===================================

Devices: the coefficients of a step are computed from (t, t_prev) in float64 on the CPU
and cast there to the sample's dtype before they move (MPS has no float64). A step
called with indices *on a device* copies them to the CPU once (a read); the loop passes
Python ints, which cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from course_ddpm.forward import eps_from_x0, q_sample, x0_from_eps
from course_ddpm.reverse import StepOutput, randn_tensor
from course_ddpm.schedules import Schedule
from course_ddpm.validation import (
    check_choice,
    check_eta,
    check_float,
    check_num_inference_steps,
    check_same_shape,
    check_T,
    check_t_pair,
)

Spacing = Literal["leading", "trailing", "linspace"]
SPACINGS = ("leading", "trailing", "linspace")


@dataclass(frozen=True, eq=False)
class InversionStepOutput:
    """Result of one DDIM inversion step (both ``(B, ...)``).

    x_next: the next, *noisier* sample x_{t_next} (diffusers' ``DDIMInverseScheduler``
        returns it as ``prev_sample``).
    x0_pred: the x_0 estimate the step used (``pred_original_sample``).
    """

    x_next: torch.Tensor
    x0_pred: torch.Tensor


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
    clip_x0: bool = True,
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
        t, t_prev: code indices, ints or ``(B,)`` integer tensors, -1 <= t_prev < t < T
            (see "Devices" above).
        eps_pred: ``(B, ...)`` the network's eps_theta(x_t, t).
        eta: in [0, 1], scales sigma (eq. 16).
        noise: ``(B, ...)`` z; drawn from ``generator`` when None and eta > 0 (every step,
            as diffusers' ``DDIMScheduler.step``).
        generator: torch.Generator for z.
        clip_x0: clip x0_pred to [-1, 1] (images in [-1, 1]; the default of every sampler,
            as diffusers' ``clip_sample=True``; turn it off for other data).

    Returns:
        :class:`~course_ddpm.reverse.StepOutput` with x_prev ``(B, ...)`` and x0_pred ``(B, ...)``.
    """
    check_float("x_t", x_t)
    check_float("eps_pred", eps_pred)
    check_same_shape(x_t=x_t, eps_pred=eps_pred)
    check_eta(eta)
    t, t_prev = check_t_pair(_on_cpu(t), _on_cpu(t_prev), schedule.T, x_t.shape[0])  # (B,) each, on the CPU
    # 1. x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps_pred) / sqrt(alpha_bar_t)   ("predicted x_0", eq. 12)
    x0_pred = x0_from_eps(schedule, x_t, t, eps_pred)
    if clip_x0:
        x0_pred = x0_pred.clamp(-1.0, 1.0)
        eps_pred = eps_from_x0(schedule, x_t, t, x0_pred)
    # 2. alpha_bar_prev (1 at t_prev = -1) and sigma_t(eta), in float64 on the CPU  (eq. 16)
    ab_prev = schedule.alpha_bar_or_one[t_prev + 1]  # (B,)
    sigma = ddim_sigma(schedule, t, t_prev, eta)  # (B,)
    # 3. "direction pointing to x_t": sqrt(1 - alpha_bar_prev - sigma^2)          (eq. 12)
    dir_coef = (1.0 - ab_prev - sigma**2).clamp(min=0.0).sqrt()  # (B,) clamp: rounding only, eta <= 1
    # 4. x_prev = sqrt(alpha_bar_prev) x0_pred + direction + sigma z               (eq. 12)
    x_prev = _per_sample(ab_prev.sqrt(), x_t) * x0_pred + _per_sample(dir_coef, x_t) * eps_pred
    if eta > 0:
        if noise is None:
            noise = randn_tensor(x_t.shape, generator, x_t.device, x_t.dtype)
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
) -> InversionStepOutput:
    """One deterministic DDIM step *upwards*, from code index t to t_next > t (encoding).

    Eq. 12 of Song et al. with sigma = 0 is a step of an ODE (their section 4.3, "Relevance
    to neural ODEs"), which can be run from x_0 towards x_T as well:

        x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps_pred) / sqrt(alpha_bar_t)
        x_next  = sqrt(alpha_bar_next) x0_pred + sqrt(1 - alpha_bar_next) eps_pred

    that is, x0_pred from eps_pred (Ho et al. eq. 15), then q(x_t | x_0) of Ho et al. eq. 4
    with x0_pred and eps_pred in place of x_0 and eps. t = -1 is the clean data
    (alpha_bar = 1, so x0_pred = x_t). Same arithmetic as diffusers' ``DDIMInverseScheduler.step``.

    Args:
        x_t: ``(B, ...)`` sample at code index t.
        t, t_next: ints or ``(B,)`` integer tensors, -1 <= t < t_next < T.
        eps_pred: ``(B, ...)`` noise prediction; :func:`~course_ddpm.sampling.ddim_invert`
            uses eps_theta(x_t, t_next).

    Returns:
        :class:`InversionStepOutput` with x_next ``(B, ...)`` and x0_pred ``(B, ...)``.
    """
    check_float("x_t", x_t)
    check_float("eps_pred", eps_pred)
    check_same_shape(x_t=x_t, eps_pred=eps_pred)
    # the pair (t_next, t) is a valid downward pair: -1 <= t < t_next < T
    t_next, t = check_t_pair(t_next, t, schedule.T, x_t.shape[0], names=("t_next", "t"))  # (B,) each
    # 1. x0_pred from x_t at level t; x_t itself at t = -1 (alpha_bar = 1)        (Ho et al. eq. 15)
    clean = (t < 0).to(x_t.device).reshape(-1, *([1] * (x_t.ndim - 1)))  # (B, 1, ..., 1)
    x0_pred = torch.where(clean, x_t, x0_from_eps(schedule, x_t, t.clamp(min=0), eps_pred))
    # 2. x_next = sqrt(alpha_bar_next) x0_pred + sqrt(1 - alpha_bar_next) eps_pred   (eq. 12, sigma = 0)
    x_next = q_sample(schedule, x0_pred, t_next, eps_pred)
    return InversionStepOutput(x_next=x_next, x0_pred=x0_pred)


def timesteps(T: int, num_inference_steps: int, spacing: Spacing = "leading") -> list[int]:
    """The K = ``num_inference_steps`` code indices a sampler visits, descending, each in [0, T).

    Song et al.'s increasing subsequence tau of [1, ..., T] (section 4.2), reversed and in
    code indices. Equals diffusers' ``DDIMScheduler.set_timesteps`` (``steps_offset=0``) for
    its ``timestep_spacing`` option of the same name (Python's ``round`` and numpy's both
    round halves to even):

    * "leading": ``k * (T // K)`` for k = K-1..0, e.g. T=1000, K=50 -> 980, 960, ..., 0.
      The DDIM authors' own code ("uniform" skip).
    * "trailing": ``round(T - k * T / K) - 1`` for k = 0..K-1 -> 999, 979, ..., 19;
      starts at the last index, where the sampler's N(0, I) start matches q(x_T) best
      (Lin et al. 2023, arXiv:2305.08891, Table 2).
    * "linspace": ``round(linspace(0, T - 1, K))`` reversed -> 999, 979, ..., 0.

    ``K == T`` gives every index (T-1, ..., 0) for all three.

    Args:
        T: number of training steps.
        num_inference_steps: number of sampling steps K, 1 <= K <= T.
        spacing: "leading", "trailing" or "linspace".
    """
    check_T(T)
    K = check_num_inference_steps(num_inference_steps, T)
    check_choice("spacing", spacing, SPACINGS)
    if spacing == "leading":
        ratio = T // K
        ts = [k * ratio for k in reversed(range(K))]
    elif spacing == "trailing":
        # T - k * T / K, in numpy.arange's arithmetic (start + k * delta), so that
        # rounding at exact halves agrees with diffusers
        delta = (T - T / K) - T
        ts = [round(T + k * delta) - 1 for k in range(K)]
    elif K == 1:  # "linspace"
        ts = [0]
    else:  # "linspace": k * (T - 1) / (K - 1), in numpy.linspace's arithmetic (k * step, last = T - 1)
        step = (T - 1) / (K - 1)
        ts = [T - 1 if k == K - 1 else round(k * step) for k in reversed(range(K))]
    assert all(a > b for a, b in zip(ts, ts[1:])) and 0 <= ts[-1] and ts[0] < T, ts
    return ts


def slerp(x_a: torch.Tensor, x_b: torch.Tensor, lam: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noises (Song et al. 2021, section 5.3).

        theta = arccos(<x_a, x_b> / (|x_a| |x_b|))
        x(lam) = sin((1 - lam) theta) / sin(theta) x_a + sin(lam theta) / sin(theta) x_b

    Gaussian noise in high dimension lies near a sphere of radius sqrt(d); a straight
    line between two such points passes inside it (norm ~ sqrt(d / 2) at lam = 1/2),
    where the model has never seen x_T. slerp stays at the right norm. The whole tensor
    is one vector (pass single noises, e.g. ``(C, H, W)`` or ``(1, C, H, W)``).

    Args:
        x_a, x_b: noises of the same shape S.
        lam: the interpolation weight lambda (the paper's alpha; renamed, since alpha is
            the schedule's), a float (returns shape S) or a 1-D tensor/sequence of N
            values (returns ``(N, *S)``); 0 gives x_a, 1 gives x_b.
    """
    check_float("x_a", x_a)
    check_float("x_b", x_b)
    check_same_shape(x_a=x_a, x_b=x_b)
    if isinstance(lam, bool):
        raise TypeError("lam must be a float or a 1-D sequence of floats, got bool")
    lam = torch.as_tensor(lam.cpu() if isinstance(lam, torch.Tensor) else lam, dtype=torch.float64)
    scalar = lam.ndim == 0
    if lam.ndim > 1:
        raise ValueError(f"lam must be a float or a 1-D sequence, got shape {tuple(lam.shape)}")
    if not bool(torch.isfinite(lam).all()):
        raise ValueError("lam must be finite")
    # float64 on the CPU (MPS has none); the result is cast back, then moved to x_a's device
    x_a64, x_b64 = x_a.cpu().double(), x_b.cpu().double()
    va, vb = x_a64.reshape(-1), x_b64.reshape(-1)
    cos = (va @ vb) / (va.norm() * vb.norm())
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    lam = lam.reshape(-1, *([1] * x_a.ndim))  # (N, 1, ..., 1)
    if float(theta) < 1e-6:  # (anti-)parallel to rounding: sin(theta) ~ 0, use the straight line
        w_a, w_b = 1.0 - lam, lam
    else:
        w_a, w_b = torch.sin((1.0 - lam) * theta) / torch.sin(theta), torch.sin(lam * theta) / torch.sin(theta)
    out = (w_a * x_a64 + w_b * x_b64).to(x_a.dtype).to(x_a.device)  # (N, *S)
    return out[0] if scalar else out


def _on_cpu(t: int | torch.Tensor) -> int | torch.Tensor:
    """An int as it is; a tensor of indices copied to the CPU (a read, if it is on a device)."""
    return t.cpu() if isinstance(t, torch.Tensor) else t


def _per_sample(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B,)`` coefficients on the CPU -> ``(B, 1, ..., 1)`` in like's dtype, on like's device.

    Cast on the CPU, then moved: float64 never reaches the device (MPS has none).
    """
    return coef.to(like.dtype).to(like.device).reshape(-1, *([1] * (like.ndim - 1)))  # (B, 1, ..., 1)

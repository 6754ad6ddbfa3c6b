"""The sampling loops: from pure noise x_T to data x_0 with a noise predictor eps_theta(x_t, t).

* :func:`sample` -- one batch: x_T ~ N(0, I), then K reverse steps, each a
  :func:`~course_ddpm.ddpm.ddpm_step` (Ho et al. 2020, Algorithm 2) or a
  :func:`~course_ddpm.ddim.ddim_step` (Song et al. 2021, eq. 12), with classifier-free
  guidance (:mod:`course_ddpm.guidance`). Optionally records the whole trajectory.
* :func:`generate` -- any number of images, in batches of :func:`sample`, with a progress
  bar: what the command line, the evaluation, the benchmarks and the notebooks call.
* :func:`ddim_invert` -- the deterministic DDIM sampler run backwards, x_0 -> x_T.

Defaults, the same in every function and on the command line: ``sampler="ddim"`` with
``num_inference_steps`` = 50 (Song et al. 2021, Table 1; all T when T < 50), eta = 0,
and ``clip_x0=True`` (images in [-1, 1]). DDPM always runs all T steps.

Random numbers: :func:`sample` draws x_T first and then, for each step that adds noise,
one ``torch.randn`` of the sample's shape from the same generator, in the order
diffusers' schedulers do (DDPM: only for t > 0; DDIM: every step when eta > 0). So a
loop over diffusers' ``step(..., generator=g)`` with the same seed gives the same samples.

Devices: the loops pass Python ints as time indices to the steps, so they never read
device memory (which would wait for the GPU on every step); see :mod:`course_ddpm.ddim`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from course_ddpm.ddim import SPACINGS, Spacing, ddim_invert_step, ddim_step, timesteps
from course_ddpm.ddpm import ddpm_step
from course_ddpm.guidance import conditioning, predict_eps
from course_ddpm.reverse import VARIANCE_TYPES, VarianceType, randn_tensor
from course_ddpm.schedules import Schedule
from course_ddpm.validation import (
    check_choice,
    check_count,
    check_eta,
    check_float,
    check_num_inference_steps,
    check_shape,
)

SamplerName = Literal["ddpm", "ddim"]
SAMPLERS = ("ddpm", "ddim")

#: DDIM steps when ``num_inference_steps`` is None (Song et al. 2021, Table 1; capped at T).
DEFAULT_DDIM_STEPS = 50


@dataclass(frozen=True, eq=False)
class SampleResult:
    """Output of :func:`sample`.

    Attributes:
        samples: ``(B, C, H, W)`` (or ``(B, ...)``) the generated x_0, on the sampling device.
        timesteps: the K code indices visited, descending (e.g. ``(980, ..., 0)``).
        trajectory: ``(K + 1, B, ...)`` x_T, then x after each step (the last is
            ``samples``), on the CPU; None unless ``record=True``.
        x0_preds: ``(K, B, ...)`` the x_0 prediction of each step, on the CPU; None unless
            ``record=True``.
    """

    samples: torch.Tensor
    timesteps: tuple[int, ...]
    trajectory: torch.Tensor | None = None
    x0_preds: torch.Tensor | None = None


def num_steps(sampler: SamplerName, num_inference_steps: int | None, T: int) -> int:
    """How many steps a sampler runs: T for DDPM; for DDIM ``num_inference_steps``, or 50 (at most T) for None."""
    check_choice("sampler", sampler, SAMPLERS)
    if num_inference_steps is None:
        return T if sampler == "ddpm" else min(DEFAULT_DDIM_STEPS, T)
    check_num_inference_steps(num_inference_steps, T)
    if sampler == "ddpm" and num_inference_steps != T:
        raise ValueError(
            f"num_inference_steps={num_inference_steps}: DDPM ancestral sampling visits all T={T} steps. For "
            f"fewer steps use sampler='ddim' with eta=1.0, which is DDPM (sigma^2 = beta_tilde) on the "
            f"shorter chain (Song et al. eq. 16), or eta=0.0 for deterministic DDIM."
        )
    return num_inference_steps


def sample(
    model: Callable[..., torch.Tensor],
    schedule: Schedule,
    shape: Sequence[int],
    *,
    sampler: SamplerName = "ddim",
    num_inference_steps: int | None = None,
    eta: float = 0.0,
    variance_type: VarianceType = "fixed_small",
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
    """Generate one batch: x_T ~ N(0, I), then K reverse steps down to x_0.

    * ``sampler="ddim"`` (the default): :func:`~course_ddpm.ddim.ddim_step` on
      ``timesteps(T, K, spacing)``, the last step going to t_prev = -1.
    * ``sampler="ddpm"``: all T steps of :func:`~course_ddpm.ddpm.ddpm_step` (Ho et al.
      Algorithm 2). A DDPM chain with fewer steps is DDIM with eta = 1 (use
      ``sampler="ddim", eta=1.0``), so no separate respacing is implemented.

    With ``guidance_scale`` s, every eps_pred is classifier-free guided
    (:func:`course_ddpm.guidance.predict_eps`). The model runs under ``torch.no_grad()``
    and, if it is an ``nn.Module``, in eval mode; its previous mode is restored afterwards.

    Args:
        model: ``model(x_t, t) -> eps_pred`` or, with ``y``, ``model(x_t, t, y)``; x_t
            ``(B, ...)``, t ``(B,)`` long; eps_pred has the shape of x_t.
        schedule: the schedule the model was trained with.
        shape: ``(B, C, H, W)`` (any ``(B, ...)``).
        sampler: "ddim" or "ddpm".
        num_inference_steps: K; None: 50 for DDIM (at most T), T for DDPM (see :func:`num_steps`).
        eta: DDIM's eta in [0, 1] (eq. 16); must be 0 for "ddpm".
        variance_type: DDPM's sigma_t^2, "fixed_small" (beta_tilde) or "fixed_large" (beta).
        spacing: DDIM timestep spacing, see :func:`~course_ddpm.ddim.timesteps`.
        generator: seeds x_T and every z; same seed, same samples.
        device: where to sample; default x_T's device, else the model's, else the CPU.
        dtype: default x_T's dtype, else ``torch.get_default_dtype()``.
        y: ``(B,)`` integer class labels, or None.
        guidance_scale: s above; needs ``y``.
        null_label: the "no label" class; default ``model.config.num_classes``.
        clip_x0: clip every x0_pred to [-1, 1] (images in [-1, 1]; off for other data).
        progress: show a tqdm progress bar over the steps.
        record: keep the trajectory and x0 predictions (on the CPU).
        x_T: ``shape`` starting noise to use instead of drawing it (DDIM determinism,
            interpolation).

    Returns:
        :class:`SampleResult`.
    """
    shape = check_shape(shape)
    check_choice("variance_type", variance_type, VARIANCE_TYPES)
    check_choice("spacing", spacing, SPACINGS)
    check_eta(eta)
    T = schedule.T
    K = num_steps(sampler, num_inference_steps, T)
    if sampler == "ddpm" and eta != 0.0:
        raise ValueError(f"eta applies to sampler='ddim' only, got eta={eta} with sampler='ddpm'")
    ts = list(range(T - 1, -1, -1)) if sampler == "ddpm" else timesteps(T, K, spacing)
    if x_T is not None:
        check_float("x_T", x_T)
        if tuple(x_T.shape) != shape:
            raise ValueError(f"shape mismatch: x_T has shape {tuple(x_T.shape)} but shape is {shape}")
    device = torch.device(device) if device is not None else _default_device(model, x_T)
    dtype = dtype if dtype is not None else (x_T.dtype if x_T is not None else torch.get_default_dtype())
    y, null_label = conditioning(model, y, guidance_scale, null_label, shape[0], device)

    # x_T ~ N(0, I)  (Ho et al. Algorithm 2, line 1)
    x = x_T.to(device=device, dtype=dtype) if x_T is not None else randn_tensor(shape, generator, device, dtype)
    trajectory, x0_preds = ([x.cpu()], []) if record else (None, None)
    with _inference_mode(model):
        for i, t in enumerate(tqdm(ts, desc=f"{sampler} sampling", disable=not progress, leave=False)):
            t_batch = torch.full((shape[0],), t, dtype=torch.long, device=device)  # (B,)
            eps_pred = predict_eps(model, x, t_batch, y, guidance_scale, null_label)
            if sampler == "ddpm":
                out = ddpm_step(schedule, x, t, eps_pred, variance_type=variance_type, generator=generator,
                                clip_x0=clip_x0)  # fmt: skip
            else:
                t_prev = ts[i + 1] if i + 1 < len(ts) else -1
                out = ddim_step(schedule, x, t, t_prev, eps_pred, eta=eta, generator=generator, clip_x0=clip_x0)
            x = out.x_prev
            if record:
                trajectory.append(x.cpu())
                x0_preds.append(out.x0_pred.cpu())
    return SampleResult(
        samples=x,
        timesteps=tuple(ts),
        trajectory=torch.stack(trajectory) if record else None,  # (K + 1, B, ...)
        x0_preds=torch.stack(x0_preds) if record else None,  # (K, B, ...)
    )


def generate(
    model: Callable[..., torch.Tensor],
    schedule: Schedule,
    n: int,
    *,
    image_shape: Sequence[int] | None = None,
    labels: int | torch.Tensor | None = None,
    guidance_scale: float | None = None,
    null_label: int | None = None,
    sampler: SamplerName = "ddim",
    num_inference_steps: int | None = None,
    eta: float = 0.0,
    variance_type: VarianceType = "fixed_small",
    spacing: Spacing = "leading",
    clip_x0: bool = True,
    x_T: torch.Tensor | None = None,
    seed: int | None = 0,
    batch_size: int = 250,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """``n`` images from the model: :func:`sample` on batches of ``batch_size``, concatenated.

    One generator, seeded with ``seed`` on ``device``, draws every batch's x_T and noise in
    turn, so the same seed, batch size and device give the same images.

    Args:
        model, schedule: as in :func:`sample`.
        n: how many images.
        image_shape: ``(C, H, W)`` (any shape of one sample); default ``x_T``'s, else
            :func:`default_image_shape` of the model.
        labels: class labels y for a class-conditional model: one int for every image,
            or an ``(n,)`` integer tensor, one per image; None for an unconditional model.
        guidance_scale, null_label: classifier-free guidance, as in :func:`sample`.
        sampler, num_inference_steps, eta, variance_type, spacing, clip_x0: as in :func:`sample`.
        x_T: ``(n, *image_shape)`` starting noise (split into the batches) instead of drawing it.
        seed: seeds the generator; None: torch's global RNG.
        batch_size: images per call of the model (2x that with guidance).
        device: where to sample; default x_T's device, else the model's, else the CPU.
        progress: a tqdm progress bar over the batches (and one over the steps of each).

    Returns:
        ``(n, *image_shape)`` float32 images on the CPU.
    """
    check_count("n", n)
    check_count("batch_size", batch_size)
    if x_T is not None:
        check_float("x_T", x_T)
        image_shape = tuple(x_T.shape[1:]) if image_shape is None else image_shape
        if tuple(x_T.shape) != (n, *image_shape):
            raise ValueError(f"shape mismatch: x_T has shape {tuple(x_T.shape)}, expected {(n, *image_shape)}")
    image_shape = check_shape(default_image_shape(model) if image_shape is None else image_shape)
    if isinstance(labels, int) and not isinstance(labels, bool):
        labels = torch.full((n,), labels, dtype=torch.long)
    elif labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != (n,)):
        raise ValueError(f"labels must be an int or have shape (n,) = ({n},), got {getattr(labels, 'shape', labels)!r}")
    device = torch.device(device) if device is not None else _default_device(model, x_T)
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    batches = []
    for start in tqdm(range(0, n, batch_size), desc=f"{sampler} sampling", unit="batch", disable=not progress):
        b = min(batch_size, n - start)
        result = sample(
            model, schedule, (b, *image_shape), sampler=sampler, num_inference_steps=num_inference_steps, eta=eta,
            variance_type=variance_type, spacing=spacing, generator=generator, device=device,
            y=None if labels is None else labels[start : start + b], guidance_scale=guidance_scale,
            null_label=null_label, clip_x0=clip_x0, progress=progress,
            x_T=None if x_T is None else x_T[start : start + b],
        )  # fmt: skip
        batches.append(result.samples.detach().float().cpu())
    return torch.cat(batches)  # (n, *image_shape)


def default_image_shape(model: object, card: dict | None = None) -> tuple[int, ...]:
    """``(C, H, W)`` a model was trained on: its card's ``image_shape``, else
    ``(model.config.in_channels, 28, 28)``, the MNIST size (1 channel without a config)."""
    if card and card.get("image_shape"):
        return tuple(card["image_shape"])
    return (getattr(getattr(model, "config", None), "in_channels", 1), 28, 28)


def ddim_invert(
    model: Callable[..., torch.Tensor],
    schedule: Schedule,
    x0: torch.Tensor,
    *,
    num_inference_steps: int | None = None,
    spacing: Spacing = "leading",
    y: torch.Tensor | None = None,
    guidance_scale: float | None = None,
    null_label: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """DDIM encoding x_0 -> x_T: the deterministic sampler (eta = 0) run backwards.

    Visits -1 -> tau_1 -> ... -> tau_K (the sampler's timesteps, ascending) with
    :func:`~course_ddpm.ddim.ddim_invert_step`. The model cannot be evaluated at the clean
    end t = -1, so each step from tau_{i-1} to tau_i uses eps_theta(x_{tau_{i-1}}, tau_i), as
    diffusers' ``DDIMInverseScheduler`` pipelines do: a first-order approximation whose
    error vanishes as the steps shrink. Decoding the result with ``sample(..., eta=0.0,
    clip_x0=False, x_T=...)`` and the same ``num_inference_steps``/``spacing`` returns close
    to x0 (Song et al. 2021, section 4.3 and the reconstruction experiment of section 5).

    Args:
        x0: ``(B, ...)`` data.
        num_inference_steps, spacing: as in :func:`sample` (DDIM).
        y, guidance_scale, null_label: as in :func:`sample`.

    Returns:
        ``(B, ...)`` x_T, same dtype and device as x0.
    """
    check_float("x0", x0)
    check_choice("spacing", spacing, SPACINGS)
    K = num_steps("ddim", num_inference_steps, schedule.T)
    y, null_label = conditioning(model, y, guidance_scale, null_label, x0.shape[0], x0.device)
    ts = timesteps(schedule.T, K, spacing)[::-1]  # ascending
    x, t = x0, -1
    with _inference_mode(model):
        for t_next in tqdm(ts, desc="ddim inversion", disable=not progress, leave=False):
            t_batch = torch.full((x.shape[0],), t_next, dtype=torch.long, device=x.device)  # (B,)
            eps_pred = predict_eps(model, x, t_batch, y, guidance_scale, null_label)
            x = ddim_invert_step(schedule, x, t, t_next, eps_pred).x_next
            t = t_next
    return x


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


def _default_device(model: object, x_T: torch.Tensor | None) -> torch.device:
    if x_T is not None:
        return x_T.device
    if isinstance(model, nn.Module):
        param = next(model.parameters(), None)
        if param is not None:
            return param.device
    return torch.device("cpu")

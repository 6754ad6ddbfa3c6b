"""Classifier-free guidance: the noise prediction of a class-conditional sampler.

Ho & Salimans 2022 (arXiv:2207.12598), Algorithm 2. One network, trained with its labels
replaced by a "no label" class (``null_label``) some of the time, predicts both
eps_cond = eps_theta(x_t, t, y) and eps_uncond = eps_theta(x_t, t, null_label); the
sampler uses

    eps = eps_uncond + s (eps_cond - eps_uncond)

s = 0: unconditional, s = 1: plain conditional, s > 1: guided towards y (sharper, less
varied samples). The paper writes w = s - 1: (1 + w) eps_cond - w eps_uncond.
"""

from __future__ import annotations

from typing import Callable

import torch

from course_ddpm.validation import check_eps_pred, check_guidance_scale, check_labels, check_null_label


def predict_eps(
    model: Callable[..., torch.Tensor],
    x_t: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor | None = None,
    guidance_scale: float | None = None,
    null_label: int | None = None,
) -> torch.Tensor:
    """eps_pred from the model; with ``guidance_scale`` s, eps_uncond + s (eps_cond - eps_uncond).

    With guidance, eps_cond and eps_uncond come from one forward pass of batch 2B.

    Args:
        model: ``model(x_t, t) -> eps_pred`` or, with ``y``, ``model(x_t, t, y)``.
        x_t: ``(B, ...)``; t: ``(B,)`` long; y: ``(B,)`` class labels or None.
        guidance_scale, null_label: s and the "no label" class (default ``model.config.num_classes``).

    Returns:
        ``(B, ...)`` eps_pred, checked to have the shape of x_t.
    """
    if y is None:
        eps_pred = model(x_t, t)
    elif guidance_scale is None:
        eps_pred = model(x_t, t, y)
    else:
        y_null = torch.full_like(y, default_null_label(model) if null_label is None else null_label)
        eps_both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, y_null]))  # (2B, ...)
        check_eps_pred(eps_both, (2 * x_t.shape[0], *x_t.shape[1:]))
        eps_cond, eps_uncond = eps_both.chunk(2)  # 2 x (B, ...)
        eps_pred = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
    return check_eps_pred(eps_pred, x_t.shape)


def conditioning(
    model: object,
    y: torch.Tensor | None,
    guidance_scale: float | None,
    null_label: int | None,
    batch: int,
    device: torch.device | str,
) -> tuple[torch.Tensor | None, int | None]:
    """Check labels and guidance for a batch of ``batch``; y on ``device`` and the null label.

    Guidance needs labels y. The null label defaults to ``model.config.num_classes`` (the
    course's networks reserve that class for "no label"); it is None without guidance.
    Labels are checked before any sampling starts: a model whose ``config.num_classes`` is
    None takes none, and a conditional one takes 0..num_classes (num_classes = null label).
    """
    num_classes = getattr(getattr(model, "config", None), "num_classes", "unknown")
    if y is not None:
        y = check_labels(y, batch)
        if num_classes is None:
            raise ValueError("labels y were given but the model is unconditional (config.num_classes is None)")
        if isinstance(num_classes, int) and y.numel() and y.device.type == "cpu":
            low, high = int(y.min()), int(y.max())
            if low < 0 or high > num_classes:
                raise ValueError(
                    f"labels must lie in [0, {num_classes - 1}] (or {num_classes}, the null label), got [{low}, {high}]"
                )
        y = y.to(device=device, dtype=torch.long)
    if guidance_scale is None:
        return y, None
    if y is None:
        raise ValueError("guidance_scale needs class labels y")
    check_guidance_scale(guidance_scale)
    return y, check_null_label(default_null_label(model) if null_label is None else null_label)


def default_null_label(model: object) -> int:
    """The "no label" class of the course's networks: ``model.config.num_classes``."""
    null_label = getattr(getattr(model, "config", None), "num_classes", None)
    if null_label is None:
        raise ValueError("classifier-free guidance needs null_label (model.config.num_classes was not found)")
    return null_label

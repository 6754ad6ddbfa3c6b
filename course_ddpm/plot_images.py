"""Figures of images: grids, noising strips, reverse trajectories, their animation, heatmaps.

Each function takes tensors and returns a matplotlib Figure (or an animation); nothing
here re-derives the maths: :func:`noising_strip` calls ``forward.q_sample`` itself, the
others draw what the caller passes. The curves and histograms are in
:mod:`course_ddpm.plot_curves`.

No function calls ``plt.show()``: a notebook cell ends with ``plt.show()`` or ``;``
itself, so that no Figure repr becomes the cell's result (nbval compares it as text).

Images are tensors in model space [-1, 1]; they are mapped to [0, 1] by
:func:`course_ddpm.data.to_pixels`, the one place where that conversion is written.
Time titles show the code index t = 0..T-1 (paper t - 1, see :mod:`course_ddpm.schedules`).

Shapes: a batch of images is ``(B, C, H, W)`` with C = 1 (grey) or 3 (RGB).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from course_ddpm.data import to_pixels
from course_ddpm.forward import q_sample
from course_ddpm.schedules import Schedule

__all__ = [
    "to_image_array",
    "image_grid",
    "strip_times",
    "noising_strip",
    "trajectory_strip",
    "trajectory_animation",
    "heatmaps",
]


def to_image_array(x: torch.Tensor):
    """One image ``(C, H, W)`` in [-1, 1] -> numpy ``(H, W)`` (grey) or ``(H, W, 3)`` in [0, 1]."""
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be one image of shape (C, H, W) with C in (1, 3), got {shape}")
    pixels = to_pixels(x.detach().to("cpu", torch.float32))  # (C, H, W) in [0, 1]
    if pixels.shape[0] == 1:
        return pixels[0].numpy()  # (H, W)
    return pixels.permute(1, 2, 0).numpy()  # (H, W, 3)


def _show(ax, x: torch.Tensor, title: str | None = None) -> None:
    ax.imshow(to_image_array(x), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8)


def _check_batch(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a batch of images (B, C, H, W), got {shape}")


def image_grid(
    x: torch.Tensor, ncols: int = 8, titles: Sequence[str] | None = None, size: float = 1.0, suptitle: str | None = None
) -> Figure:
    """A grid of images, one axes per image.

    Args:
        x: ``(B, C, H, W)`` images in [-1, 1].
        ncols: images per row.
        titles: optional ``B`` labels (e.g. the digit class).
        size: inches per image.
    Returns:
        a Figure with exactly ``B`` axes.
    """
    _check_batch("x", x)
    if titles is not None and len(titles) != x.shape[0]:
        raise ValueError(f"titles has {len(titles)} entries but x has {x.shape[0]} images")
    B = x.shape[0]
    ncols = max(1, min(ncols, B))
    nrows = math.ceil(B / ncols)
    fig = plt.figure(figsize=(size * ncols, size * nrows + (0.3 if suptitle else 0.0)), layout="constrained")
    for i in range(B):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        _show(ax, x[i], None if titles is None else titles[i])
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def image_rows(rows: Mapping[str, torch.Tensor], size: float = 0.8, suptitle: str | None = None) -> Figure:
    """Rows of images, each with its label on the left (e.g. samples of a run at several steps).

    Args:
        rows: label -> ``(K, C, H, W)`` images in [-1, 1], the same K in every row.
        size: inches per image.
    Returns:
        a Figure with one axes per image, ``len(rows)`` by K.
    """
    if not rows:
        raise ValueError("rows is empty")
    for label, x in rows.items():
        _check_batch(f"rows[{label!r}]", x)
    counts = {x.shape[0] for x in rows.values()}
    if len(counts) != 1:
        raise ValueError(f"every row must hold the same number of images, got {sorted(counts)}")
    K = counts.pop()
    fig, axes = plt.subplots(len(rows), K, figsize=(size * K + 1.2, size * len(rows) + (0.3 if suptitle else 0.0)),
                             squeeze=False, layout="constrained")  # fmt: skip
    for r, (label, x) in enumerate(rows.items()):
        for k in range(K):
            _show(axes[r, k], x[k])
        axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def strip_times(T: int, fractions: Sequence[float]) -> list[int]:
    """Code time indices at given fractions of the chain: t = round(f * (T - 1)), f in [0, 1]."""
    if any(not 0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"fractions must lie in [0, 1], got {list(fractions)}")
    return [round(f * (T - 1)) for f in fractions]


def noising_strip(
    x0: torch.Tensor,
    schedules: Mapping[str, Schedule],
    fractions: Sequence[float] = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0),
    eps: torch.Tensor | None = None,
    size: float = 1.1,
) -> Figure:
    """One image noised by q(x_t | x_0): one row per schedule, one column per time step.

    Column k shows x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
    (:func:`course_ddpm.forward.q_sample`, Ho et al. 2020 eq. 4) at code t =
    round(fractions[k] * (T - 1)); every panel uses the same ``eps``, so rows differ only
    by their schedule. Titles give t and sqrt(alpha_bar_t), the fraction of signal left.

    Args:
        x0: ``(C, H, W)`` or ``(1, C, H, W)`` one image in [-1, 1].
        schedules: row label -> Schedule.
        fractions: K positions along the chain, in [0, 1] (1 = the last step, paper x_T).
        eps: ``(1, C, H, W)`` noise shared by all panels; drawn with seed 0 if None.
    Returns:
        a Figure with ``len(schedules) * K`` axes.
    """
    if x0.ndim == 3:
        x0 = x0.unsqueeze(0)
    _check_batch("x0", x0)
    if x0.shape[0] != 1:
        raise ValueError(f"x0 must be one image, got a batch of {x0.shape[0]}")
    if not schedules:
        raise ValueError("schedules must hold at least one schedule")
    if eps is None:
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0), dtype=x0.dtype)
    K = len(fractions)
    fig, axes = plt.subplots(len(schedules), K, figsize=(size * K + 1.4, (size + 0.25) * len(schedules)),
                             squeeze=False, layout="constrained")
    for row, (label, schedule) in enumerate(schedules.items()):
        for col, t in enumerate(strip_times(schedule.T, fractions)):
            t_batch = torch.tensor([t])
            x_t = q_sample(schedule, x0, t_batch, eps)  # (1, C, H, W)
            signal = schedule.alpha_bar[t].sqrt().item()
            _show(axes[row, col], x_t[0], f"t={t}\n√ᾱ={signal:.2f}")
        axes[row, 0].set_ylabel(label, fontsize=8)
    return fig


def trajectory_strip(
    x_t: torch.Tensor, x0_pred: torch.Tensor | None, t: Sequence[int], size: float = 1.1
) -> Figure:
    """A reverse (or forward) trajectory: x_t over time, and below it the x0 estimate at each step.

    Args:
        x_t: ``(K, C, H, W)`` one image at K time steps, in [-1, 1].
        x0_pred: ``(K, C, H, W)`` the model's estimate of x_0 at the same steps, or None.
        t: the K code time indices (column titles).
    Returns:
        a Figure with K axes (one row) or 2 K axes (two rows).
    """
    _check_batch("x_t", x_t)
    rows = [("x_t", x_t)]
    if x0_pred is not None:
        _check_batch("x0_pred", x0_pred)
        if x0_pred.shape != x_t.shape:
            raise ValueError(f"x0_pred has shape {tuple(x0_pred.shape)}, x_t has {tuple(x_t.shape)}")
        rows.append(("x0_pred", x0_pred))
    if len(t) != x_t.shape[0]:
        raise ValueError(f"t has {len(t)} entries but x_t has {x_t.shape[0]} images")
    K = x_t.shape[0]
    fig, axes = plt.subplots(len(rows), K, figsize=(size * K + 0.8, size * len(rows) + 0.2), squeeze=False,
                             layout="constrained")
    for r, (label, images) in enumerate(rows):
        for k in range(K):
            _show(axes[r, k], images[k], f"t={int(t[k])}" if r == 0 else None)
        axes[r, 0].set_ylabel(label, fontsize=8)
    return fig


def trajectory_animation(
    x_t: torch.Tensor, x0_pred: torch.Tensor | None, t: Sequence[int], size: float = 1.2, interval: int = 80
):
    """An animation of a reverse trajectory: frame k shows x_t and (below) x0_pred at time t[k].

    Display it in a notebook with ``IPython.display.HTML(anim.to_jshtml())``. The figure is
    not managed by pyplot, so no static copy of it is shown as well.

    Args:
        x_t: ``(K, B, C, H, W)`` B images at K time steps, in [-1, 1].
        x0_pred: ``(K, B, C, H, W)`` the model's estimate of x_0 at the same steps, or None.
        t: the K code time indices (shown in the title).
        interval: milliseconds per frame.
    Returns:
        a ``matplotlib.animation.FuncAnimation`` with K frames.
    """
    from matplotlib.animation import FuncAnimation

    if not isinstance(x_t, torch.Tensor) or x_t.ndim != 5:
        raise ValueError(f"x_t must have shape (K, B, C, H, W), got {getattr(x_t, 'shape', type(x_t).__name__)}")
    rows = [("x_t", x_t)]
    if x0_pred is not None:
        if x0_pred.shape != x_t.shape:
            raise ValueError(f"x0_pred has shape {tuple(x0_pred.shape)}, x_t has {tuple(x_t.shape)}")
        rows.append(("x0_pred", x0_pred))
    K, B = x_t.shape[:2]
    if len(t) != K:
        raise ValueError(f"t has {len(t)} entries but x_t has {K} time steps")
    fig = Figure(figsize=(size * B + 0.6, size * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), B, squeeze=False)
    images = []
    for r, (label, frames) in enumerate(rows):
        for b in range(B):
            _show(axes[r, b], frames[0, b])
            images.append((axes[r, b].get_images()[0], frames, b))
        axes[r, 0].set_ylabel(label, fontsize=8)
    title = fig.suptitle(f"t = {int(t[0])}", fontsize=9)

    def update(k: int):
        for image, frames, b in images:
            image.set_data(to_image_array(frames[k, b]))
        title.set_text(f"t = {int(t[k])}")
        return [image for image, _, _ in images] + [title]

    return FuncAnimation(fig, update, frames=K, interval=interval, blit=False)


def heatmaps(
    maps: Mapping[str, torch.Tensor], size: float = 2.4, cmap: str = "magma", log: bool = False
) -> Figure:
    """Non-negative 2-D maps side by side, each with its own colour bar (e.g. |gradients|).

    Args:
        maps: panel title -> ``(H, W)`` tensor.
        log: colour by log10 of the values (zeros stay blank, so a map's support stays visible).
    Returns:
        a Figure with ``len(maps)`` image axes (plus one colour-bar axes each).
    """
    if not maps:
        raise ValueError("maps must hold at least one panel")
    fig, axes = plt.subplots(1, len(maps), figsize=(size * len(maps) + 0.6, size), squeeze=False,
                             layout="constrained")
    for ax, (title, m) in zip(axes[0], maps.items()):
        if not isinstance(m, torch.Tensor) or m.ndim != 2:
            raise ValueError(f"map {title!r} must be a (H, W) tensor, got {getattr(m, 'shape', type(m).__name__)}")
        values = m.detach().cpu().double()
        if log:
            values = torch.where(values > 0, values.clamp_min(1e-300).log10(), torch.full_like(values, float("nan")))
        image = ax.imshow(values.numpy(), cmap=cmap, interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=9)
    return fig

"""The course's figures: each function takes tensors and returns a matplotlib Figure.

Nothing here re-derives the maths: callers pass values from :mod:`course_ddpm.forward`,
:mod:`course_ddpm.losses`, the samplers or a training log, or a function calls the
package's formula itself (:func:`noising_strip` calls ``forward.q_sample``).

No function calls ``plt.show()``: a notebook cell ends with ``plt.show()`` or ``;``
itself, so that no Figure repr becomes the cell's result (nbval compares it as text).

Images are tensors in model space [-1, 1]; they are mapped to [0, 1] by
:func:`course_ddpm.data.to_pixels`, the one place where that conversion is written.
Time axes show the code index t = 0..T-1 (paper t - 1, see :mod:`course_ddpm.schedules`),
or t / T when schedules of different length share an axis.

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
    "schedule_curves",
    "pixel_histograms",
    "density_curves",
    "elbo_distributions",
    "loss_curve",
    "trajectory_strip",
    "paths_1d",
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


def schedule_curves(
    schedules: Mapping[str, Schedule] | Sequence[Schedule],
    quantities: Sequence[str] = ("alpha_bar", "snr"),
    x_axis: str = "fraction",
    size: tuple[float, float] = (4.0, 3.0),
) -> Figure:
    """Curves of schedule quantities over time, one axes per quantity, one line per schedule.

    ``snr`` is drawn on a log y-axis (it spans ten orders of magnitude).

    Args:
        schedules: label -> Schedule, or a sequence (labelled by ``schedule.name``).
        quantities: names of ``(T,)`` attributes of Schedule, e.g. "alpha_bar", "snr",
            "beta", "beta_tilde".
        x_axis: "fraction" (t / T, so that different T share an axis) or "t" (code index).
    Returns:
        a Figure with ``len(quantities)`` axes.
    """
    if not isinstance(schedules, Mapping):
        schedules = {s.name: s for s in schedules}
    if x_axis not in ("fraction", "t"):
        raise ValueError(f"x_axis must be 'fraction' or 't', got {x_axis!r}")
    fig, axes = plt.subplots(1, len(quantities), figsize=(size[0] * len(quantities), size[1]), squeeze=False,
                             layout="constrained")
    for ax, quantity in zip(axes[0], quantities):
        for label, schedule in schedules.items():
            values = getattr(schedule, quantity, None)
            if not isinstance(values, torch.Tensor) or values.shape != (schedule.T,):
                raise ValueError(f"{quantity!r} is not a (T,) tensor of Schedule")
            t = torch.arange(schedule.T, dtype=torch.float64)
            x = (t + 1) / schedule.T if x_axis == "fraction" else t
            ax.plot(x.numpy(), values.numpy(), label=label)
        if quantity == "snr":
            ax.set_yscale("log")
        ax.set_xlabel("t / T" if x_axis == "fraction" else "t (code index = paper t - 1)")
        ax.set_title(quantity)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return fig


def pixel_histograms(
    values: Mapping[str, torch.Tensor], bins: int = 60, x_range: tuple[float, float] = (-4.0, 4.0),
    size: tuple[float, float] = (2.6, 2.2), sharey: bool = False,
) -> Figure:
    """Histograms of pixel values (density-normalised) with the N(0, 1) density overlaid.

    Args:
        values: panel title -> tensor of any shape (all its entries are histogrammed).
        bins: number of bins over ``x_range``.
        sharey: one y-scale for all panels (off by default: clean images have tall spikes).
    Returns:
        a Figure with ``len(values)`` axes.
    """
    if not values:
        raise ValueError("values must hold at least one panel")
    fig, axes = plt.subplots(1, len(values), figsize=(size[0] * len(values), size[1]), squeeze=False, sharey=sharey,
                             layout="constrained")
    grid = torch.linspace(x_range[0], x_range[1], 400, dtype=torch.float64)
    normal_pdf = torch.distributions.Normal(0.0, 1.0).log_prob(grid).exp()
    for ax, (title, x) in zip(axes[0], values.items()):
        values = x.detach().flatten().cpu().double()
        ax.hist(values.numpy(), bins=bins, range=x_range, density=True, color="C0", alpha=0.7)
        ax.plot(grid.numpy(), normal_pdf.numpy(), color="C3", lw=1.5, label="N(0, 1)")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(*x_range)
    axes[0, 0].legend(fontsize=8)
    return fig


def density_curves(
    grid: torch.Tensor, curves: Mapping[str, torch.Tensor], title: str | None = None, xlabel: str = "x",
    size: tuple[float, float] = (5.0, 3.0), yscale: str = "linear", ylabel: str | None = None,
) -> Figure:
    """Several functions of one variable on a shared axes (densities, scores, per-step weights).

    Args:
        grid: ``(N,)`` x values.
        curves: label -> ``(N,)`` y values; a label starting with "--" is drawn dashed.
        yscale: "linear" or "log".
    Returns:
        a Figure with one axes.
    """
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    for label, y in curves.items():
        if y.shape != grid.shape:
            raise ValueError(f"curve {label!r} has shape {tuple(y.shape)}, grid has {tuple(grid.shape)}")
        style = "--" if label.startswith("--") else "-"
        ax.plot(grid.detach().cpu().numpy(), y.detach().cpu().double().numpy(), style, label=label.removeprefix("--"))
    ax.set_xlabel(xlabel)
    ax.set_yscale(yscale)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def elbo_distributions(
    estimates: Mapping[str, torch.Tensor], log_px: float | None = None, bins: int = 50,
    size: tuple[float, float] = (6.0, 3.2), xlabel: str = "nats",
) -> Figure:
    """Histograms of per-sample Monte Carlo ELBO estimates, their means, and log p(x).

    Args:
        estimates: estimator name -> ``(N,)`` per-trajectory estimates, in nats.
        log_px: the exact log-likelihood to draw as a vertical line (the bound's ceiling).
    Returns:
        a Figure with one axes.
    """
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    all_values = torch.cat([v.detach().flatten().cpu().double() for v in estimates.values()])
    lo, hi = torch.quantile(all_values, 0.005).item(), torch.quantile(all_values, 0.995).item()
    if log_px is not None:
        hi = max(hi, log_px)
    for i, (label, v) in enumerate(estimates.items()):
        v = v.detach().flatten().cpu().double()
        ax.hist(v.numpy(), bins=bins, range=(lo, hi), density=True, alpha=0.5, color=f"C{i}",
                label=f"{label}: mean {v.mean().item():.3f}, std {v.std().item():.3f}")
        ax.axvline(v.mean().item(), color=f"C{i}", ls="--", lw=1)
    if log_px is not None:
        ax.axvline(log_px, color="k", lw=1.5, label=f"log p(x) = {log_px:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return fig


def loss_curve(
    losses: Sequence[float] | torch.Tensor, smooth: int = 1, log_y: bool = True, xlabel: str = "step",
    label: str = "loss", size: tuple[float, float] = (5.0, 3.0),
) -> Figure:
    """A training-loss curve, optionally with a moving average over ``smooth`` steps.

    Returns:
        a Figure with one axes.
    """
    y = torch.as_tensor(losses.cpu() if isinstance(losses, torch.Tensor) else losses, dtype=torch.float64).flatten()
    if y.numel() == 0:
        raise ValueError("losses is empty")
    if smooth < 1:
        raise ValueError(f"smooth must be >= 1, got {smooth}")
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    steps = torch.arange(y.numel())
    ax.plot(steps.numpy(), y.numpy(), alpha=0.35 if smooth > 1 else 1.0, label=label)
    if smooth > 1 and y.numel() >= smooth:
        kernel = torch.ones(1, 1, smooth, dtype=torch.float64) / smooth
        avg = torch.nn.functional.conv1d(y.view(1, 1, -1), kernel).flatten()  # (N - smooth + 1,)
        ax.plot(steps[smooth - 1:].numpy(), avg.numpy(), label=f"moving average ({smooth})")
    if log_y and bool((y > 0).all()):
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
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


def paths_1d(
    xs: torch.Tensor, max_paths: int = 30, size: tuple[float, float] = (6.0, 3.0), title: str | None = None
) -> Figure:
    """Sample paths of a 1-D chain x_0 -> x_T (e.g. :func:`course_ddpm.forward.q_trajectory`).

    Args:
        xs: ``(T + 1, B)`` or ``(T + 1, B, 1)``; entry k is the paper's x_k.
        max_paths: draw at most this many of the B paths.
    Returns:
        a Figure with one axes (x-axis: paper step k = 0..T).
    """
    xs = xs.detach().cpu().double()
    if xs.ndim == 3 and xs.shape[2] == 1:
        xs = xs[..., 0]
    if xs.ndim != 2:
        raise ValueError(f"xs must have shape (T + 1, B) or (T + 1, B, 1), got {tuple(xs.shape)}")
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    k = torch.arange(xs.shape[0])
    ax.plot(k.numpy(), xs[:, :max_paths].numpy(), lw=0.6, alpha=0.7)
    ax.set_xlabel("paper step k (x_k)")
    ax.set_ylabel("x_k")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig


# --- figures of notebooks 3 (training) and 4 (sampling) --------------------------------
__all__ += ["heatmaps", "digit_histograms", "trajectory_animation", "sampler_tradeoff"]


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


def digit_histograms(
    counts: Mapping[str, torch.Tensor], size: tuple[float, float] = (6.0, 2.8)
) -> Figure:
    """Grouped bars of how often each digit 0..9 was drawn, as fractions, with the uniform 0.1 line.

    Args:
        counts: label -> ``(10,)`` counts (e.g. from :func:`course_ddpm.evaluation.digit_histogram`);
            each is divided by its sum, and its total N goes into the legend.
    Returns:
        a Figure with one axes holding ``len(counts)`` bar groups.
    """
    if not counts:
        raise ValueError("counts must hold at least one histogram")
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    width = 0.8 / len(counts)
    for i, (label, c) in enumerate(counts.items()):
        c = torch.as_tensor(c, dtype=torch.float64).flatten()
        if c.numel() != 10 or bool((c < 0).any()) or float(c.sum()) <= 0:
            raise ValueError(f"counts {label!r} must be 10 non-negative numbers with a positive sum")
        digits = torch.arange(10, dtype=torch.float64) - 0.4 + width * (i + 0.5)
        ax.bar(digits.numpy(), (c / c.sum()).numpy(), width=width, label=f"{label} (N={int(c.sum())})")
    ax.axhline(0.1, color="k", lw=1, ls="--", label="uniform")
    ax.set_xticks(range(10))
    ax.set_xlabel("digit (classifier's prediction)")
    ax.set_ylabel("fraction of samples")
    ax.legend(fontsize=7)
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


def sampler_tradeoff(
    results: Sequence[Mapping], fid_key: str = "fid", floor: float | None = None,
    size: tuple[float, float] = (8.0, 3.0),
) -> Figure:
    """Quality against cost of samplers: two panels from rows of a sampler study.

    Left: MNIST-FID against network calls per sample (both log scale), one line per DDIM
    eta, DDPM as single markers at its T calls, and the FID floor (real digits) dotted.
    Right: wall-clock seconds per sample against network calls. The rows are those of
    ``benchmarks/sampler_study.py`` (its JSON's ``results``).

    Args:
        results: rows with keys ``name``, ``sampler`` ("ddpm" or "ddim"), ``eta``,
            ``network_calls``, ``wall_s_per_sample`` and ``fid_key``; DDPM rows also ``variance``.
        fid_key: which FID to plot, e.g. ``"fid_common_n"`` for the like-for-like column.
        floor: FID of real digits at the same N, drawn as a horizontal line if given.
    Returns:
        a Figure with two axes.
    """
    if not results:
        raise ValueError("results is empty")
    missing = [r.get("name") for r in results if fid_key not in r or "network_calls" not in r]
    if missing:
        raise ValueError(f"rows {missing} have no {fid_key!r} or 'network_calls'")
    fig, (ax_fid, ax_time) = plt.subplots(1, 2, figsize=size, layout="constrained")
    ddim = [r for r in results if r["sampler"] == "ddim"]
    for eta in sorted({float(r["eta"]) for r in ddim}):
        rows = sorted((r for r in ddim if float(r["eta"]) == eta), key=lambda r: r["network_calls"])
        calls = [r["network_calls"] for r in rows]
        for ax, key in ((ax_fid, fid_key), (ax_time, "wall_s_per_sample")):
            ax.plot(calls, [r[key] for r in rows], marker="o", ms=4, label=f"DDIM, eta = {eta:g}")
    for r, marker in zip((r for r in results if r["sampler"] == "ddpm"), "s^vD"):
        label = f"DDPM, {r.get('variance', '')}".rstrip(", ")
        for ax, key in ((ax_fid, fid_key), (ax_time, "wall_s_per_sample")):
            ax.plot([r["network_calls"]], [r[key]], marker=marker, ls="none", color="k", mfc="none", label=label)
    if floor is not None:
        ax_fid.axhline(floor, color="grey", ls=":", label="floor (real digits)")
    for ax, ylabel in ((ax_fid, "MNIST-FID (lower is better)"), (ax_time, "seconds per sample (wall)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("network calls per sample")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    ax_fid.legend(fontsize=7)
    return fig

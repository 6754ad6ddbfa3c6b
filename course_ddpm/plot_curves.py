"""Figures of curves and histograms: schedules, densities, ELBO estimates, losses, paths, samplers.

Each function takes values and returns a matplotlib Figure; nothing here re-derives the
maths: callers pass values from :mod:`course_ddpm.forward`, :mod:`course_ddpm.elbo`, the
samplers, a training log or a benchmark's JSON. The figures of images are in
:mod:`course_ddpm.plot_images`.

No function calls ``plt.show()``: a notebook cell ends with ``plt.show()`` or ``;``
itself, so that no Figure repr becomes the cell's result (nbval compares it as text).

Time axes show the code index t = 0..T-1 (paper t - 1, see :mod:`course_ddpm.schedules`),
or t / T when schedules of different length share an axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from course_ddpm.schedules import Schedule

__all__ = [
    "schedule_curves",
    "pixel_histograms",
    "density_curves",
    "elbo_distributions",
    "loss_curve",
    "paths_1d",
    "digit_histograms",
    "sampler_tradeoff",
    "decoder_bins",
]


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


def decoder_bins(
    pixels: Sequence[tuple[float, float, str]], sigma: float, size: tuple[float, float] = (4.2, 2.6)
) -> Figure:
    """One panel per pixel: the decoder's Gaussian N(mean, sigma^2) over the 8-bit bins around it.

    The bins are those of Ho et al. eq. 13: width 2/255, centred on the 256 levels of [-1, 1], the
    outer two extending to -inf and +inf. The pixel's own bin is shaded; its area under the curve
    is the probability the decoder gives the pixel.

    Args:
        pixels: ``(x0, mean, title)`` per panel: the pixel's level in [-1, 1], the decoder mean.
        sigma: the decoder std.
    """
    half = 1.0 / 255.0
    fig, axes = plt.subplots(1, len(pixels), figsize=(size[0] * len(pixels), size[1]), layout="constrained", squeeze=False)
    for ax, (x0, mean, title) in zip(axes[0], pixels):
        lo, hi = min(mean, x0) - 5 * sigma, max(mean, x0) + 5 * sigma
        z = torch.linspace(lo, hi, 801, dtype=torch.float64)
        density = torch.exp(-0.5 * ((z - mean) / sigma) ** 2) / (sigma * (2 * torch.pi) ** 0.5)
        ax.plot(z.numpy(), density.numpy(), color="C0", label=f"N(mean, sigma^2), sigma = {sigma:.4f}")
        first, last = round((lo + 1) * 127.5), round((hi + 1) * 127.5)
        for k in range(max(first - 1, 0), min(last + 1, 255) + 1):
            edge = k / 127.5 - 1 + half  # upper edge of the bin of level k
            if lo <= edge <= hi and k < 255:
                ax.axvline(edge, color="0.6", lw=0.6)
        bin_lo = lo if x0 <= -1 + 1e-6 else max(x0 - half, lo)  # the bottom bin reaches -inf
        bin_hi = hi if x0 >= 1 - 1e-6 else min(x0 + half, hi)  # the top bin reaches +inf
        inside = (z >= bin_lo) & (z <= bin_hi)
        ax.fill_between(z[inside].numpy(), density[inside].numpy(), color="C1", alpha=0.5, label="bin of x0")
        ax.axvline(x0, color="C3", lw=1.2, ls="--", label="x0")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("pixel value")
    fig.legend(*axes[0, -1].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8)
    return fig

"""Figures of guided sampling: the guidance trade-off of a sweep, and guided densities on the toy.

As in :mod:`course_ddpm.plot_curves`, each function takes values (a benchmark's JSON,
samples, densities on a grid) and returns a matplotlib Figure, and none calls ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

__all__ = ["guidance_tradeoff", "guided_histograms"]


def guidance_tradeoff(sweep: Mapping, size: tuple[float, float] = (10.0, 3.0)) -> Figure:
    """Three panels against the guidance scale s, from ``benchmarks/guidance_sweep.py``'s JSON.

    Left: the fraction of samples classified as the requested digit (all digits, and the
    worst digit). Middle: MNIST-FID of all samples and the median per-digit FID, each with
    its floor (real images, same N) dotted. Right: how varied and how bold the samples are:
    the mean feature spread (1 = as varied as MNIST) and the fraction of ink pixels over
    MNIST's (1 = strokes as thick as MNIST's).
    """
    rows = sorted(sweep["results"], key=lambda r: r["guidance_scale"])
    if not rows:
        raise ValueError("the sweep has no results")
    s = [r["guidance_scale"] for r in rows]
    fig, (ax_acc, ax_fid, ax_div) = plt.subplots(1, 3, figsize=size, layout="constrained")

    ax_acc.plot(s, [r["accuracy"] for r in rows], "o-", label="all digits")
    ax_acc.plot(s, [min(r["accuracy_per_digit"]) for r in rows], "s--", label="worst digit")
    ax_acc.set_ylabel("classified as requested")
    ax_acc.set_ylim(0, 1.02)

    def median(values: list[float]) -> float:
        return float(torch.tensor(values).median())

    lines = ax_fid.plot(s, [r["fid"] for r in rows], "o-", label=f"all {sweep['n']} samples")
    ax_fid.axhline(sweep["fid_floor"], color=lines[0].get_color(), ls=":", label="floor, all")
    lines = ax_fid.plot(s, [median(r["fid_per_digit"]) for r in rows], "s--",
                        label=f"per digit (median, {sweep['n_per_digit']} each)")  # fmt: skip
    floor = median([f for r in rows for f in r["fid_floor_per_digit"]])
    ax_fid.axhline(floor, color=lines[0].get_color(), ls=":", label="floor, per digit")
    ax_fid.set_yscale("log")
    ax_fid.set_ylabel("MNIST-FID (lower is better)")

    ink_mnist = sweep["mnist_pixels"]["ink"]
    ax_div.plot(s, [sum(r["feature_spread_per_digit"]) / len(r["feature_spread_per_digit"]) for r in rows], "o-",
                label="feature spread")  # fmt: skip
    ax_div.plot(s, [r["pixels"]["ink"] / ink_mnist for r in rows], "s--", label="ink pixels / MNIST's")
    ax_div.axhline(1.0, color="grey", ls=":", label="MNIST")
    ax_div.set_ylabel("relative to MNIST")
    for ax in (ax_acc, ax_fid, ax_div):
        ax.set_xlabel("guidance scale s")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return fig


def guided_histograms(
    grid: torch.Tensor,
    samples: Mapping[str, torch.Tensor],
    densities: Mapping[str, Mapping[str, torch.Tensor]],
    bins: int = 80,
    size: tuple[float, float] = (10.0, 2.6),
) -> Figure:
    """One panel per setting: a histogram of 1-D samples with density curves over it.

    Args:
        grid: ``(N,)`` x values of the curves.
        samples: panel title -> samples (any shape; flattened).
        densities: panel title -> {label -> ``(N,)`` normalised density}; a label starting
            with "--" is drawn dashed.
    """
    if set(samples) != set(densities):
        raise ValueError(f"samples and densities name different panels: {list(samples)} vs {list(densities)}")
    fig, axes = plt.subplots(1, len(samples), figsize=size, layout="constrained", sharey=True, squeeze=False)
    x = grid.detach().cpu().double().numpy()
    for ax, (title, draws) in zip(axes[0], samples.items()):
        ax.hist(draws.detach().cpu().double().flatten().numpy(), bins=bins, range=(x[0], x[-1]), density=True,
                color="0.8", label="samples")  # fmt: skip
        for label, y in densities[title].items():
            if y.shape != grid.shape:
                raise ValueError(f"curve {label!r} has shape {tuple(y.shape)}, grid has {tuple(grid.shape)}")
            ax.plot(x, y.detach().cpu().double().numpy(), "--" if label.startswith("--") else "-",
                    label=label.removeprefix("--"))  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x")
        ax.legend(fontsize=7)
    return fig

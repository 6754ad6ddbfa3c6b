"""Figures of 2-D points: samples scattered over a known density (the playground, notebook 07).

As :mod:`course_ddpm.plot_curves`, each function takes values and returns a matplotlib Figure
without calling ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from course_ddpm.toy2d import GaussianMixture2D

__all__ = ["points_over_density"]

#: The square every panel shows: the unit-variance data lie well inside it.
LIMIT = 2.5


def points_over_density(
    panels: Mapping[str, torch.Tensor], density: GaussianMixture2D, *, size: float = 3.2, max_points: int = 2000,
) -> Figure:  # fmt: skip
    """One panel per entry: the points ``(N, 2)`` (at most ``max_points``) over the contours of
    ``density`` (log p on a grid), all on the square [-2.5, 2.5]^2.

    Points outside the square are drawn on its edge (clamped), so a sampler that diverges
    shows as points along the frame, not as an empty panel.
    """
    grid = torch.linspace(-LIMIT, LIMIT, 200, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    log_p = density.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).reshape(xx.shape)  # (200, 200)
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), layout="constrained", squeeze=False)
    for ax, (title, points) in zip(axes[0], panels.items()):
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"panel {title!r}: points must have shape (N, 2), got {tuple(points.shape)}")
        ax.contourf(xx.numpy(), yy.numpy(), log_p.clamp(min=-12).numpy(), levels=12, cmap="Blues")
        shown = points[:max_points].detach().double().nan_to_num(nan=LIMIT).clamp(-LIMIT, LIMIT).numpy()
        ax.scatter(shown[:, 0], shown[:, 1], s=2, c="tab:red", alpha=0.6, linewidths=0)
        ax.set_xlim(-LIMIT, LIMIT)
        ax.set_ylim(-LIMIT, LIMIT)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=9)
    return fig

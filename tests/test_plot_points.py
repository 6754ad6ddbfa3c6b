"""course_ddpm.plot_points: one panel per entry, points kept inside the frame, clear errors."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch

from course_ddpm.plot_points import LIMIT, points_over_density
from course_ddpm.toy2d import ring_mixture


def test_one_panel_per_entry_with_its_title_and_points_clamped_to_the_frame():
    far = torch.tensor([[10.0, -10.0], [float("nan"), 0.0], [0.5, 0.5]])
    fig = points_over_density({"a": far, "b": torch.zeros(4, 2)}, ring_mixture())
    axes = fig.axes[:2]
    assert [ax.get_title() for ax in axes] == ["a", "b"]
    offsets = axes[0].collections[-1].get_offsets()
    assert offsets.shape == (3, 2) and abs(offsets).max() <= LIMIT
    plt.close(fig)


def test_points_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        points_over_density({"x": torch.zeros(3, 3)}, ring_mixture())
    plt.close("all")

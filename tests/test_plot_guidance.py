"""Tests for course_ddpm.plot_guidance: the guidance trade-off and the guided histograms draw the right data."""

import pytest
import torch

from course_ddpm import plot_guidance

pytestmark = pytest.mark.usefixtures("figures_not_shown")


def _row(s, accuracy, fid, spread, ink):
    return {"guidance_scale": s, "accuracy": accuracy, "accuracy_per_digit": [accuracy] * 9 + [accuracy - 0.1],
            "fid": fid, "fid_per_digit": [fid * 2] * 10, "fid_floor_per_digit": [40.0] * 10,
            "feature_spread_per_digit": [spread] * 10, "pixels": {"grey": 0.1, "ink": ink, "mean": 0.1}}  # fmt: skip


SWEEP = {"n": 100, "n_per_digit": 10, "fid_floor": 12.0, "mnist_pixels": {"ink": 0.1},
         "results": [_row(2.0, 0.99, 30.0, 0.6, 0.05), _row(0.0, 0.1, 150.0, 1.1, 0.12)]}  # fmt: skip


def test_guidance_tradeoff_plots_each_quantity_against_the_scale_in_order():
    fig = plot_guidance.guidance_tradeoff(SWEEP)
    ax_acc, ax_fid, ax_div = fig.axes
    accuracy, worst = ax_acc.get_lines()
    assert list(accuracy.get_xdata()) == [0.0, 2.0]  # sorted by s
    assert list(accuracy.get_ydata()) == [0.1, 0.99] and list(worst.get_ydata()) == pytest.approx([0.0, 0.89])
    fid_lines = ax_fid.get_lines()
    assert list(fid_lines[0].get_ydata()) == [150.0, 30.0]
    assert list(fid_lines[1].get_ydata()) == [12.0, 12.0]  # the floor, a horizontal line
    assert list(fid_lines[2].get_ydata()) == [300.0, 60.0]  # median per-digit FID
    spread, ink = ax_div.get_lines()[:2]
    assert list(spread.get_ydata()) == pytest.approx([1.1, 0.6])
    assert list(ink.get_ydata()) == pytest.approx([1.2, 0.5])  # relative to MNIST's 0.1
    with pytest.raises(ValueError, match="no results"):
        plot_guidance.guidance_tradeoff({**SWEEP, "results": []})


def test_guided_histograms_one_panel_per_setting_with_its_curves():
    grid = torch.linspace(-3, 3, 61)
    normal = torch.exp(-grid**2 / 2) / (2 * torch.pi) ** 0.5
    samples = {"a": torch.randn(50_000, generator=torch.Generator().manual_seed(0)), "b": torch.zeros(10)}
    fig = plot_guidance.guided_histograms(grid, samples, {"a": {"N(0,1)": normal}, "b": {"--flat": normal * 0}},
                                          bins=30)  # fmt: skip
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    heights = torch.tensor([p.get_height() for p in fig.axes[0].patches])
    centres = torch.tensor([p.get_x() + p.get_width() / 2 for p in fig.axes[0].patches])
    assert torch.allclose(heights, torch.exp(-centres**2 / 2) / (2 * torch.pi) ** 0.5, atol=0.02)
    assert fig.axes[1].get_lines()[0].get_linestyle() == "--"
    with pytest.raises(ValueError, match="name different panels"):
        plot_guidance.guided_histograms(grid, samples, {"a": {}})
    with pytest.raises(ValueError, match="has shape"):
        plot_guidance.guided_histograms(grid, {"a": samples["a"]}, {"a": {"x": normal[:5]}})

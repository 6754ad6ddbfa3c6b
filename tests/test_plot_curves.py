"""Tests for course_ddpm.plot_curves: figures of curves and histograms draw the right data.

Every test runs with ``plt.show`` replaced by a failure (conftest's ``figures_not_shown``):
the figure functions return figures and leave showing them to the notebook cell.
"""

import pytest
import torch

from course_ddpm import plot_curves


pytestmark = pytest.mark.usefixtures("figures_not_shown")


@pytest.mark.parametrize("quantities", [("alpha_bar",), ("alpha_bar", "snr"), ("beta", "beta_tilde", "snr")])
def test_schedule_curves_one_axes_per_quantity_one_line_per_schedule(schedules, quantities):
    fig = plot_curves.schedule_curves(schedules, quantities)
    assert len(fig.axes) == len(quantities)
    for ax, quantity in zip(fig.axes, quantities):
        assert len(ax.get_lines()) == len(schedules)
        assert ax.get_yscale() == ("log" if quantity == "snr" else "linear")
    y = fig.axes[0].get_lines()[1].get_ydata()
    assert torch.allclose(torch.as_tensor(y), getattr(schedules["cosine"], quantities[0]))


def test_schedule_curves_rejects_unknown_quantity(schedules):
    with pytest.raises(ValueError, match="'T' is not a"):
        plot_curves.schedule_curves(schedules, ["T"])


def test_pixel_histograms_overlay_the_standard_normal():
    g = torch.Generator().manual_seed(0)
    values = {"N(0,1)": torch.randn(200_000, generator=g), "shifted": torch.randn(1000, generator=g) + 2}
    fig = plot_curves.pixel_histograms(values, bins=40)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    heights = torch.tensor([p.get_height() for p in ax.patches])
    assert len(heights) == 40
    # The histogram of N(0, 1) samples sits on the overlaid N(0, 1) density.
    centres = torch.tensor([p.get_x() + p.get_width() / 2 for p in ax.patches], dtype=torch.float64)
    pdf = torch.distributions.Normal(0.0, 1.0).log_prob(centres).exp()
    assert (heights.double() - pdf).abs().max() < 0.02
    line = ax.get_lines()[0]
    assert abs(max(line.get_ydata()) - 0.3989) < 1e-3


def test_density_curves_and_paths(schedules):
    grid = torch.linspace(-3, 3, 50)
    fig = plot_curves.density_curves(grid, {"a": grid**2, "--b": grid}, yscale="log")
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 2
    assert fig.axes[0].get_yscale() == "log"
    assert fig.axes[0].get_lines()[1].get_linestyle() == "--"
    with pytest.raises(ValueError, match="curve 'a'"):
        plot_curves.density_curves(grid, {"a": grid[:3]})
    xs = torch.randn(11, 50)
    fig = plot_curves.paths_1d(xs, max_paths=7)
    assert len(fig.axes[0].get_lines()) == 7


def test_elbo_distributions_draws_each_estimator_and_log_px():
    g = torch.Generator().manual_seed(0)
    estimates = {"denoising": torch.randn(500, generator=g) - 1, "consistency": 3 * torch.randn(500, generator=g) - 1}
    fig = plot_curves.elbo_distributions(estimates, log_px=0.5, bins=30)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * 30
    vertical = [line.get_xdata()[0] for line in ax.get_lines()]
    assert vertical[-1] == 0.5  # log p(x)
    assert abs(vertical[0] - estimates["denoising"].double().mean().item()) < 1e-12
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith("consistency: mean") for label in labels)


def test_loss_curve_moving_average():
    losses = torch.arange(1, 21, dtype=torch.float64)
    fig = plot_curves.loss_curve(losses, smooth=5)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    assert lines[1].get_ydata().tolist() == pytest.approx([(k - 2) for k in range(5, 21)])  # mean of 5 consecutive
    assert fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="smooth"):
        plot_curves.loss_curve([1.0], smooth=0)


def test_digit_histograms_bars_are_fractions_of_each_total():
    counts_a = torch.tensor([10, 0, 0, 0, 0, 0, 0, 0, 0, 30])
    counts_b = torch.ones(10, dtype=torch.long)
    fig = plot_curves.digit_histograms({"a": counts_a, "b": counts_b})
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights[:10] == pytest.approx([0.25] + [0.0] * 8 + [0.75])
    assert heights[10:] == pytest.approx([0.1] * 10)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == ["a (N=40)", "b (N=10)", "uniform"]
    with pytest.raises(ValueError, match="10 non-negative"):
        plot_curves.digit_histograms({"a": torch.ones(9)})


def _study_row(name, sampler, calls, eta, fid, wall, variance="fixed_small"):
    return {"name": name, "sampler": sampler, "network_calls": calls, "eta": eta, "fid": fid,
            "wall_s_per_sample": wall, "variance": variance}


def test_sampler_tradeoff_one_line_per_eta_and_ddpm_markers():
    rows = [_study_row("ddpm_small", "ddpm", 1000, 0.0, 8.0, 2.0), _study_row("ddpm_large", "ddpm", 1000, 0.0, 9.0, 2.1, "fixed_large")]
    rows += [_study_row(f"ddim{k}_eta{e:g}", "ddim", k, e, 100.0 / k + e, k / 500) for k in (10, 50) for e in (0.0, 1.0)]
    fig = plot_curves.sampler_tradeoff(rows, floor=3.0)
    ax_fid, ax_time = fig.axes
    lines = {line.get_label(): line for line in ax_fid.get_lines()}
    assert set(lines) == {"DDIM, eta = 0", "DDIM, eta = 1", "DDPM, fixed_small", "DDPM, fixed_large", "floor (real digits)"}
    assert lines["DDIM, eta = 1"].get_xdata().tolist() == [10, 50]
    assert lines["DDIM, eta = 1"].get_ydata().tolist() == pytest.approx([11.0, 3.0])
    assert lines["DDPM, fixed_large"].get_ydata().tolist() == [9.0]
    assert list(lines["floor (real digits)"].get_ydata()) == [3.0, 3.0]
    times = {line.get_label(): line.get_ydata().tolist() for line in ax_time.get_lines()}
    assert times["DDIM, eta = 0"] == pytest.approx([0.02, 0.1]) and times["DDPM, fixed_small"] == [2.0]
    assert ax_fid.get_xscale() == ax_time.get_yscale() == "log"
    with pytest.raises(ValueError, match="fid_common_n"):
        plot_curves.sampler_tradeoff(rows, fid_key="fid_common_n")
    with pytest.raises(ValueError, match="empty"):
        plot_curves.sampler_tradeoff([])


def test_decoder_bins_shades_the_pixel_bin_in_every_panel():
    import matplotlib.pyplot as plt

    from course_ddpm.plot_curves import decoder_bins

    fig = decoder_bins([(-1.0, -0.998, "background"), (1 / 127.5 - 1 + 0.4, 0.405, "ink")], sigma=0.0074)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.collections) == 1  # the shaded bin
        assert len(ax.get_lines()) > 3  # the curve, the bin edges and x0
    plt.close(fig)

"""Tests for course_ddpm.plotting: figures have the expected axes and show the right data."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from course_ddpm import plotting  # noqa: E402
from course_ddpm.forward import q_sample  # noqa: E402
from course_ddpm.schedules import cosine_schedule, linear_schedule  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def schedules():
    return {"linear": linear_schedule(1000), "cosine": cosine_schedule(100)}


def _images(ax) -> list:
    return ax.get_images()


def test_to_image_array_maps_minus_one_to_black_and_one_to_white():
    x = torch.tensor([[[-1.0, 0.0, 1.0, 3.0]]])  # (1, 1, 4)
    a = plotting.to_image_array(x)
    assert a.shape == (1, 4)
    assert a.tolist() == [[0.0, 0.5, 1.0, 1.0]]  # (x + 1) / 2, clamped
    rgb = plotting.to_image_array(torch.zeros(3, 2, 5))
    assert rgb.shape == (2, 5, 3)
    with pytest.raises(ValueError, match="x must be one image"):
        plotting.to_image_array(torch.zeros(2, 1, 4, 4))


@pytest.mark.parametrize("B, ncols, rows", [(1, 8, 1), (8, 4, 2), (10, 4, 3)])
def test_image_grid_has_one_axes_per_image(B, ncols, rows):
    x = torch.linspace(-1, 1, B * 16).reshape(B, 1, 4, 4)
    fig = plotting.image_grid(x, ncols=ncols, titles=[str(i) for i in range(B)])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == B
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (rows, min(ncols, B))
    # The data drawn is the image mapped to [0, 1], not the raw tensor.
    shown = _images(fig.axes[-1])[0].get_array()
    assert torch.allclose(torch.as_tensor(shown), (x[-1, 0] + 1) / 2)
    assert fig.axes[2 % B].get_title() == str(2 % B)


def test_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        plotting.image_grid(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="titles has 1 entries"):
        plotting.image_grid(torch.zeros(2, 1, 4, 4), titles=["a"])


def test_strip_times_spans_the_chain():
    assert plotting.strip_times(1000, [0.0, 0.5, 1.0]) == [0, 500, 999]
    assert plotting.strip_times(300, [1.0]) == [299]
    with pytest.raises(ValueError, match="fractions"):
        plotting.strip_times(10, [1.5])


def test_noising_strip_shows_q_sample_for_each_schedule(schedules):
    x0 = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    eps = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    fractions = (0.0, 0.5, 1.0)
    fig = plotting.noising_strip(x0, schedules, fractions, eps=eps)
    assert len(fig.axes) == len(schedules) * len(fractions)
    # Row "cosine", last column: x_T of the cosine schedule with the same eps (independently
    # recomputed with q_sample, then mapped to [0, 1] like the display).
    t = plotting.strip_times(100, fractions)[-1]
    expected = ((q_sample(schedules["cosine"], x0[None], torch.tensor([t]), eps)[0, 0] + 1) / 2).clamp(0, 1)
    shown = torch.as_tensor(_images(fig.axes[len(fractions) * 1 + 2])[0].get_array())
    assert torch.allclose(shown, expected.float(), atol=1e-6)
    assert fig.axes[len(fractions)].get_ylabel() == "cosine"
    assert fig.axes[0].get_title().startswith("t=0")


@pytest.mark.parametrize("quantities", [("alpha_bar",), ("alpha_bar", "snr"), ("beta", "beta_tilde", "snr")])
def test_schedule_curves_one_axes_per_quantity_one_line_per_schedule(schedules, quantities):
    fig = plotting.schedule_curves(schedules, quantities)
    assert len(fig.axes) == len(quantities)
    for ax, quantity in zip(fig.axes, quantities):
        assert len(ax.get_lines()) == len(schedules)
        assert ax.get_yscale() == ("log" if quantity == "snr" else "linear")
    y = fig.axes[0].get_lines()[1].get_ydata()
    assert torch.allclose(torch.as_tensor(y), getattr(schedules["cosine"], quantities[0]))


def test_schedule_curves_rejects_unknown_quantity(schedules):
    with pytest.raises(ValueError, match="'T' is not a"):
        plotting.schedule_curves(schedules, ["T"])


def test_pixel_histograms_overlay_the_standard_normal():
    g = torch.Generator().manual_seed(0)
    values = {"N(0,1)": torch.randn(200_000, generator=g), "shifted": torch.randn(1000, generator=g) + 2}
    fig = plotting.pixel_histograms(values, bins=40)
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
    fig = plotting.density_curves(grid, {"a": grid**2, "--b": grid}, yscale="log")
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 2
    assert fig.axes[0].get_yscale() == "log"
    assert fig.axes[0].get_lines()[1].get_linestyle() == "--"
    with pytest.raises(ValueError, match="curve 'a'"):
        plotting.density_curves(grid, {"a": grid[:3]})
    xs = torch.randn(11, 50)
    fig = plotting.paths_1d(xs, max_paths=7)
    assert len(fig.axes[0].get_lines()) == 7


def test_elbo_distributions_draws_each_estimator_and_log_px():
    g = torch.Generator().manual_seed(0)
    estimates = {"denoising": torch.randn(500, generator=g) - 1, "consistency": 3 * torch.randn(500, generator=g) - 1}
    fig = plotting.elbo_distributions(estimates, log_px=0.5, bins=30)
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
    fig = plotting.loss_curve(losses, smooth=5)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    assert lines[1].get_ydata().tolist() == pytest.approx([(k - 2) for k in range(5, 21)])  # mean of 5 consecutive
    assert fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="smooth"):
        plotting.loss_curve([1.0], smooth=0)


@pytest.mark.parametrize("with_x0", [True, False])
def test_trajectory_strip_rows(with_x0):
    K = 5
    x_t = torch.rand(K, 1, 6, 6) * 2 - 1
    fig = plotting.trajectory_strip(x_t, -x_t if with_x0 else None, t=[999, 750, 500, 250, 0])
    assert len(fig.axes) == K * (2 if with_x0 else 1)
    if with_x0:
        shown = torch.as_tensor(_images(fig.axes[K])[0].get_array())  # first x0_pred panel
        assert torch.allclose(shown, (-x_t[0, 0] + 1) / 2)
    with pytest.raises(ValueError, match="t has 2 entries"):
        plotting.trajectory_strip(x_t, None, t=[1, 0])


def test_no_function_calls_show(monkeypatch, schedules):
    def fail(*args, **kwargs):
        raise AssertionError("plotting must not call plt.show()")

    monkeypatch.setattr(plt, "show", fail)
    plotting.image_grid(torch.zeros(2, 1, 4, 4))
    plotting.schedule_curves(schedules)
    plotting.loss_curve([3.0, 2.0, 1.0])


# --- figures of notebooks 3 and 4 ---------------------------------------------------------


def test_heatmaps_one_panel_per_map_and_log_blanks_zeros():
    m = torch.zeros(5, 5)
    m[1:4, 1:4] = torch.arange(1.0, 10.0).reshape(3, 3)
    fig = plotting.heatmaps({"a": m, "b": 2 * m}, log=True)
    image_axes = [ax for ax in fig.axes if _images(ax) and ax.get_title()]
    assert [ax.get_title() for ax in image_axes] == ["a", "b"]
    shown = torch.as_tensor(_images(image_axes[0])[0].get_array().filled(float("nan")))
    assert torch.isnan(shown[0, 0]) and torch.isnan(shown[4, 4])  # zeros outside the support: blank
    assert shown[2, 2].item() == pytest.approx(torch.log10(torch.tensor(5.0)).item())
    linear = plotting.heatmaps({"a": m})
    assert torch.equal(torch.as_tensor(_images(linear.axes[0])[0].get_array()).float(), m)
    with pytest.raises(ValueError, match="must be a \\(H, W\\) tensor"):
        plotting.heatmaps({"a": torch.zeros(1, 5, 5)})


def test_digit_histograms_bars_are_fractions_of_each_total():
    counts_a = torch.tensor([10, 0, 0, 0, 0, 0, 0, 0, 0, 30])
    counts_b = torch.ones(10, dtype=torch.long)
    fig = plotting.digit_histograms({"a": counts_a, "b": counts_b})
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights[:10] == pytest.approx([0.25] + [0.0] * 8 + [0.75])
    assert heights[10:] == pytest.approx([0.1] * 10)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == ["a (N=40)", "b (N=10)", "uniform"]
    with pytest.raises(ValueError, match="10 non-negative"):
        plotting.digit_histograms({"a": torch.ones(9)})


def test_trajectory_animation_frames_show_each_step():
    K, B = 4, 3
    x_t = torch.rand(K, B, 1, 5, 5) * 2 - 1
    anim = plotting.trajectory_animation(x_t, -x_t, t=[30, 20, 10, 0])
    fig = anim._fig
    assert len(fig.axes) == 2 * B
    anim._func(2)  # draw frame 2
    shown = torch.as_tensor(_images(fig.axes[1])[0].get_array())  # x_t row, image b = 1
    assert torch.allclose(shown, (x_t[2, 1, 0] + 1) / 2)
    shown_x0 = torch.as_tensor(_images(fig.axes[B + 1])[0].get_array())  # x0_pred row, image b = 1
    assert torch.allclose(shown_x0, (-x_t[2, 1, 0] + 1) / 2)
    assert fig._suptitle.get_text() == "t = 10"
    assert anim.to_jshtml().count("data:image/png") == K  # one embedded frame per step
    with pytest.raises(ValueError, match="t has 2 entries"):
        plotting.trajectory_animation(x_t, None, t=[1, 0])


def _study_row(name, sampler, calls, eta, fid, wall, variance="fixed_small"):
    return {"name": name, "sampler": sampler, "network_calls": calls, "eta": eta, "fid": fid,
            "wall_s_per_sample": wall, "variance": variance}


def test_sampler_tradeoff_one_line_per_eta_and_ddpm_markers():
    rows = [_study_row("ddpm_small", "ddpm", 1000, 0.0, 8.0, 2.0), _study_row("ddpm_large", "ddpm", 1000, 0.0, 9.0, 2.1, "fixed_large")]
    rows += [_study_row(f"ddim{k}_eta{e:g}", "ddim", k, e, 100.0 / k + e, k / 500) for k in (10, 50) for e in (0.0, 1.0)]
    fig = plotting.sampler_tradeoff(rows, floor=3.0)
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
        plotting.sampler_tradeoff(rows, fid_key="fid_common_n")
    with pytest.raises(ValueError, match="empty"):
        plotting.sampler_tradeoff([])

"""Tests for course_ddpm.plot_images: figures of images show the right pixels in the expected axes.

Every test runs with ``plt.show`` replaced by a failure (conftest's ``figures_not_shown``):
the figure functions return figures and leave showing them to the notebook cell.
"""

import pytest
import torch
from matplotlib.figure import Figure

from course_ddpm import plot_images
from course_ddpm.forward import q_sample


pytestmark = pytest.mark.usefixtures("figures_not_shown")


def _images(ax) -> list:
    return ax.get_images()


def test_to_image_array_maps_minus_one_to_black_and_one_to_white():
    x = torch.tensor([[[-1.0, 0.0, 1.0, 3.0]]])  # (1, 1, 4)
    a = plot_images.to_image_array(x)
    assert a.shape == (1, 4)
    assert a.tolist() == [[0.0, 0.5, 1.0, 1.0]]  # (x + 1) / 2, clamped
    rgb = plot_images.to_image_array(torch.zeros(3, 2, 5))
    assert rgb.shape == (2, 5, 3)
    with pytest.raises(ValueError, match="x must be one image"):
        plot_images.to_image_array(torch.zeros(2, 1, 4, 4))


@pytest.mark.parametrize("B, ncols, rows", [(1, 8, 1), (8, 4, 2), (10, 4, 3)])
def test_image_grid_has_one_axes_per_image(B, ncols, rows):
    x = torch.linspace(-1, 1, B * 16).reshape(B, 1, 4, 4)
    fig = plot_images.image_grid(x, ncols=ncols, titles=[str(i) for i in range(B)])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == B
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (rows, min(ncols, B))
    # The data drawn is the image mapped to [0, 1], not the raw tensor.
    shown = _images(fig.axes[-1])[0].get_array()
    assert torch.allclose(torch.as_tensor(shown), (x[-1, 0] + 1) / 2)
    assert fig.axes[2 % B].get_title() == str(2 % B)


def test_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        plot_images.image_grid(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="titles has 1 entries"):
        plot_images.image_grid(torch.zeros(2, 1, 4, 4), titles=["a"])


def test_strip_times_spans_the_chain():
    assert plot_images.strip_times(1000, [0.0, 0.5, 1.0]) == [0, 500, 999]
    assert plot_images.strip_times(300, [1.0]) == [299]
    with pytest.raises(ValueError, match="fractions"):
        plot_images.strip_times(10, [1.5])


def test_noising_strip_shows_q_sample_for_each_schedule(schedules):
    x0 = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    eps = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    fractions = (0.0, 0.5, 1.0)
    fig = plot_images.noising_strip(x0, schedules, fractions, eps=eps)
    assert len(fig.axes) == len(schedules) * len(fractions)
    # Row "cosine", last column: x_T of the cosine schedule with the same eps (independently
    # recomputed with q_sample, then mapped to [0, 1] like the display).
    t = plot_images.strip_times(100, fractions)[-1]
    expected = ((q_sample(schedules["cosine"], x0[None], torch.tensor([t]), eps)[0, 0] + 1) / 2).clamp(0, 1)
    shown = torch.as_tensor(_images(fig.axes[len(fractions) * 1 + 2])[0].get_array())
    assert torch.allclose(shown, expected.float(), atol=1e-6)
    assert fig.axes[len(fractions)].get_ylabel() == "cosine"
    assert fig.axes[0].get_title().startswith("t=0")


@pytest.mark.parametrize("with_x0", [True, False])
def test_trajectory_strip_rows(with_x0):
    K = 5
    x_t = torch.rand(K, 1, 6, 6) * 2 - 1
    fig = plot_images.trajectory_strip(x_t, -x_t if with_x0 else None, t=[999, 750, 500, 250, 0])
    assert len(fig.axes) == K * (2 if with_x0 else 1)
    if with_x0:
        shown = torch.as_tensor(_images(fig.axes[K])[0].get_array())  # first x0_pred panel
        assert torch.allclose(shown, (-x_t[0, 0] + 1) / 2)
    with pytest.raises(ValueError, match="t has 2 entries"):
        plot_images.trajectory_strip(x_t, None, t=[1, 0])


def test_heatmaps_one_panel_per_map_and_log_blanks_zeros():
    m = torch.zeros(5, 5)
    m[1:4, 1:4] = torch.arange(1.0, 10.0).reshape(3, 3)
    fig = plot_images.heatmaps({"a": m, "b": 2 * m}, log=True)
    image_axes = [ax for ax in fig.axes if _images(ax) and ax.get_title()]
    assert [ax.get_title() for ax in image_axes] == ["a", "b"]
    shown = torch.as_tensor(_images(image_axes[0])[0].get_array().filled(float("nan")))
    assert torch.isnan(shown[0, 0]) and torch.isnan(shown[4, 4])  # zeros outside the support: blank
    assert shown[2, 2].item() == pytest.approx(torch.log10(torch.tensor(5.0)).item())
    linear = plot_images.heatmaps({"a": m})
    assert torch.equal(torch.as_tensor(_images(linear.axes[0])[0].get_array()).float(), m)
    with pytest.raises(ValueError, match="must be a \\(H, W\\) tensor"):
        plot_images.heatmaps({"a": torch.zeros(1, 5, 5)})


def test_trajectory_animation_frames_show_each_step():
    K, B = 4, 3
    x_t = torch.rand(K, B, 1, 5, 5) * 2 - 1
    anim = plot_images.trajectory_animation(x_t, -x_t, t=[30, 20, 10, 0])
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
        plot_images.trajectory_animation(x_t, None, t=[1, 0])


def test_image_rows_one_row_per_label_with_the_label_on_the_left():
    rows = {"step 500": -torch.ones(3, 1, 4, 4), "step 1,000": torch.ones(3, 1, 4, 4)}  # black, white
    fig = plot_images.image_rows(rows, suptitle="x")
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert [fig.axes[0].get_ylabel(), fig.axes[3].get_ylabel()] == ["step 500", "step 1,000"]
    assert fig.axes[3].images[0].get_array().max() == 1.0 and fig.axes[0].images[0].get_array().max() == 0.0
    with pytest.raises(ValueError, match="same number"):
        plot_images.image_rows({"a": torch.zeros(2, 1, 4, 4), "b": torch.zeros(3, 1, 4, 4)})
    with pytest.raises(ValueError, match="empty"):
        plot_images.image_rows({})

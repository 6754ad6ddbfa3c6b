"""Tests for course_ddpm.widgets: read-outs against closed forms, and the widget's callbacks."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from course_ddpm import widgets as W
from course_ddpm.forward import q_sample
from course_ddpm.schedules import cosine_schedule, linear_schedule


@pytest.fixture(scope="module")
def schedules():
    return {"linear T=1000": linear_schedule(1000), "cosine T=50": cosine_schedule(50)}


@pytest.fixture(scope="module")
def x0():
    g = torch.Generator().manual_seed(0)
    return (torch.rand(1, 8, 8, generator=g) * 2 - 1).to(torch.float32)  # (C, H, W) in [-1, 1]


def _decode(png: bytes) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(io.BytesIO(png)))).double().flatten()


@pytest.mark.parametrize("t", [0, 1, 250, 999])
def test_readouts_equal_closed_forms(schedules, x0, t):
    schedule = schedules["linear T=1000"]
    r = W.readouts(schedule, x0, t)
    # Closed forms written out independently of forward.py and gaussian.py:
    # alpha_bar_t = prod_{s<=t} (1 - beta_s); KL(N(a x0, 1 - a^2) || N(0, 1)) per pixel
    # = 0.5 (a^2 x0^2 + (1 - a^2) - 1 - log(1 - a^2)).
    alpha_bar = math.prod(1.0 - b for b in schedule.beta[: t + 1].tolist())
    assert r["sqrt_alpha_bar"] == pytest.approx(math.sqrt(alpha_bar), rel=1e-10)
    assert r["snr"] == pytest.approx(alpha_bar / (1 - alpha_bar), rel=1e-9)
    x = x0.double().flatten()
    kl = 0.5 * (alpha_bar * x**2 - alpha_bar - math.log(1 - alpha_bar))
    assert r["kl_per_pixel"] == pytest.approx(kl.mean().item(), rel=1e-9)
    assert r["kl_total"] == pytest.approx(kl.sum().item(), rel=1e-9)
    assert (r["t"], r["paper_t"]) == (t, t + 1)


def test_readouts_at_the_last_step_match_the_schedules_prior_kl(x0):
    # The worst case over |x0| <= 1 of the per-pixel KL is Schedule.prior_kl_per_dim().
    schedule = linear_schedule(300, warn=False)
    ones = torch.ones(1, 4, 4)
    assert W.readouts(schedule, ones, 299)["kl_per_pixel"] == pytest.approx(schedule.prior_kl_per_dim(), rel=1e-9)
    assert W.readouts(schedule, x0, 299)["kl_per_pixel"] <= schedule.prior_kl_per_dim()
    assert round(100 * W.readouts(schedule, x0, 299)["sqrt_alpha_bar"]) == 22  # the lecture's "22 % of the signal"


def test_readouts_reject_bad_t_and_shape(schedules, x0):
    schedule = schedules["cosine T=50"]
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\) = \[0, 50\)"):
        W.readouts(schedule, x0, 50)
    with pytest.raises(TypeError, match="t must be an int"):
        W.readouts(schedule, x0, 1.0)
    with pytest.raises(ValueError, match="x0 must be one image"):
        W.readouts(schedule, torch.zeros(2, 1, 8, 8), 0)


def test_render_png_shows_q_sample(schedules, x0):
    schedule = schedules["cosine T=50"]
    eps = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    png = W.render_png(schedule, x0, 20, eps, scale=2)
    image = Image.open(io.BytesIO(png))
    assert image.size == (16, 16) and image.mode == "L"
    x_t = q_sample(schedule, x0[None], torch.tensor([20]), eps)[0, 0]  # (8, 8)
    expected = ((x_t.double() + 1) / 2).clamp(0, 1) * 255
    shown = _decode(png).reshape(16, 16)[::2, ::2]  # undo the nearest-neighbour enlargement
    assert (shown - expected).abs().max() <= 0.5 + 1e-6


def _widget(schedules, x0, **kw):
    return W.forward_noising_widget(x0, schedules, **kw)


def _value(html_widget) -> float:
    text = html_widget.value
    return float(text.split('<span class="course-ddpm-value">')[1].split("</span>")[0])


def test_widget_has_stable_descriptions_and_classes(schedules, x0):
    w = _widget(schedules, x0)
    assert w.t_slider.description == "t" and W.CSS["t"] in w.t_slider._dom_classes
    assert w.schedule_dropdown.description == "schedule" and W.CSS["schedule"] in w.schedule_dropdown._dom_classes
    assert W.CSS["image"] in w.image._dom_classes and W.CSS["box"] in w._dom_classes
    assert w.t_slider.max == 999 and w.schedule_dropdown.value == "linear T=1000"
    for key in ("sqrt_alpha_bar", "snr", "kl_per_pixel"):
        assert W.CSS[key] in w.readout_html[key]._dom_classes


def test_slider_callback_changes_image_and_readouts(schedules, x0):
    w = _widget(schedules, x0, t=0)
    before = w.image.value
    w.t_slider.value = 600
    assert w.image.value != before
    assert _decode(w.image.value).std() > 0  # not a blank picture
    expected = W.readouts(schedules["linear T=1000"], x0, 600)
    for key in ("sqrt_alpha_bar", "snr", "kl_per_pixel"):
        assert _value(w.readout_html[key]) == pytest.approx(expected[key], rel=1e-5)
    # The noise is fixed, so going back reproduces the first picture exactly.
    w.t_slider.value = 0
    assert w.image.value == before


def test_dropdown_switches_schedule_and_clamps_t(schedules, x0):
    w = _widget(schedules, x0, t=700)
    w.schedule_dropdown.value = "cosine T=50"
    assert w.t_slider.max == 49 and w.t_slider.value == 49
    caption = next(c for c in w.children[1].children[1].children if W.CSS["caption"] in c._dom_classes)
    assert caption.value.startswith("cosine T=50: code t = 49 (paper t = 50) of T = 50")
    assert w.image.value == W.render_png(schedules["cosine T=50"], x0, 49, _eps(x0, 0), 6)
    assert _value(w.readout_html["snr"]) == pytest.approx(schedules["cosine T=50"].snr[49].item(), rel=1e-5)
    w.t_slider.value = 10
    w.schedule_dropdown.value = "linear T=1000"  # growing T keeps t
    assert w.t_slider.max == 999 and w.t_slider.value == 10
    assert _value(w.readout_html["sqrt_alpha_bar"]) == pytest.approx(
        schedules["linear T=1000"].alpha_bar[10].sqrt().item(), rel=1e-5
    )


def _eps(x0, seed):
    return torch.randn((1, *x0.shape), generator=torch.Generator().manual_seed(seed), dtype=x0.dtype)

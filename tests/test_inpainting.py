"""Tests for course_ddpm.inpainting: the replacement method and RePaint's resampling.

A correlated Gaussian (course_ddpm.toy.CorrelatedGaussian) has an exact denoiser and an exact
conditional p(x_2 | x_1), so what inpainting should return is known in closed form.
"""

from __future__ import annotations

import pytest
import torch

from course_ddpm.inpainting import inpaint, noise_known, renoise
from course_ddpm.sampling import sample
from course_ddpm.schedules import linear_schedule
from course_ddpm.toy import CorrelatedGaussian

pytestmark = pytest.mark.usefixtures("one_thread")

SCHED = linear_schedule(100, rescale=True)
GAUSS = CorrelatedGaussian((0.0, 0.0), ((1.0, 0.9), (0.9, 1.0)))
MASK = torch.tensor([True, False])  # x_1 known, x_2 to fill in


def _inpaint(x0, mask, seed=0, **kw):
    return inpaint(GAUSS.eps_model(SCHED), SCHED, x0, mask, generator=torch.Generator().manual_seed(seed),
                   clip_x0=False, progress=False, **kw)  # fmt: skip


def _known_x1(n, value=1.5):
    x0 = torch.full((n, 2), float("nan"), dtype=torch.float64)  # the unknown half is never read
    x0[:, 0] = value
    return x0


@pytest.mark.parametrize("kw", [dict(sampler="ddpm"), dict(sampler="ddim", num_inference_steps=10, eta=1.0),
                                dict(sampler="ddim", num_inference_steps=10, resample=3)])  # fmt: skip
def test_known_pixels_come_out_exactly_and_unknown_ones_are_finite(kw):
    out = _inpaint(_known_x1(64), MASK, **kw)
    assert torch.equal(out[:, 0], torch.full((64,), 1.5, dtype=torch.float64))
    assert torch.isfinite(out[:, 1]).all()


def test_nothing_known_is_plain_sampling_and_everything_known_returns_x0():
    # DDIM with eta = 0 adds no noise, so the known pixels' draws cannot change the unknown ones.
    x0 = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    none = _inpaint(x0, torch.zeros(2, dtype=torch.bool), sampler="ddim", num_inference_steps=10, seed=7)
    plain = sample(GAUSS.eps_model(SCHED), SCHED, (32, 2), num_inference_steps=10, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(7), clip_x0=False, progress=False).samples  # fmt: skip
    torch.testing.assert_close(none, plain, rtol=0, atol=0)
    everything = _inpaint(x0, torch.ones(2, dtype=torch.bool), sampler="ddim", num_inference_steps=10)
    assert torch.equal(everything, x0)


def test_resampling_moves_the_fill_in_to_the_exact_conditional():
    """p(x_2 | x_1 = 1.5) = N(1.35, 0.19); plain replacement misses the mean by far, RePaint does not."""
    n = 2000
    mean, var = GAUSS.conditional(MASK, torch.tensor([1.5]))
    assert float(mean) == pytest.approx(0.9 * 1.5) and float(var) == pytest.approx(1 - 0.81)
    plain = _inpaint(_known_x1(n), MASK, sampler="ddpm")[:, 1]
    repaint = _inpaint(_known_x1(n), MASK, sampler="ddpm", resample=20)[:, 1]
    se = (var / n).sqrt().item()  # standard error of a mean of n exact draws
    assert float(mean) - plain.mean().item() > 40 * se  # measured 0.41 too low (about 43 se)
    assert abs(repaint.mean().item() - float(mean)) < 0.05  # measured 0.02
    assert abs(plain.mean().item() - float(mean)) > 5 * abs(repaint.mean().item() - float(mean))


def test_noise_known_and_renoise_have_the_forward_moments():
    n, t_prev, t = 200_000, 9, 39
    x0 = torch.full((n, 1), 0.8, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    ab_prev, ab = SCHED.alpha_bar[t_prev].item(), SCHED.alpha_bar[t].item()
    x_prev = noise_known(SCHED, x0, t_prev, g)
    assert x_prev.mean().item() == pytest.approx(ab_prev**0.5 * 0.8, abs=5e-3)
    assert x_prev.var().item() == pytest.approx(1 - ab_prev, rel=2e-2)
    x_t = renoise(SCHED, x_prev, t_prev, t, g)  # q(x_t | x_prev) composed with q(x_prev | x_0) = q(x_t | x_0)
    assert x_t.mean().item() == pytest.approx(ab**0.5 * 0.8, abs=5e-3)
    assert x_t.var().item() == pytest.approx(1 - ab, rel=2e-2)
    assert torch.equal(noise_known(SCHED, x0, -1, g), x0)


def test_bad_masks_and_arguments_give_clear_errors():
    x0 = _known_x1(4)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        _inpaint(x0, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="does not broadcast"):
        _inpaint(x0, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="resample"):
        _inpaint(x0, MASK, resample=0)
    with pytest.raises(ValueError, match="eta applies to sampler='ddim' only"):
        _inpaint(x0, MASK, sampler="ddpm", eta=0.5)

"""Tests for course_ddpm.langevin: ULA and annealed Langevin against closed-form stationary statistics."""

import math

import pytest
import torch

from course_ddpm.langevin import annealed_langevin_sample, langevin_sample, langevin_step, ula_gaussian_variance
from course_ddpm.schedules import linear_schedule
from course_ddpm.sde import VPSDE
from course_ddpm.toy import GaussianMixture

pytestmark = pytest.mark.usefixtures("one_thread")

N = 10_000


def exact_score(mixture: GaussianMixture):
    """grad log p of the clean mixture (alpha_bar = 1): the toy's exact score."""
    return lambda x: mixture.score_at(x, torch.ones(x.shape[0], 1, dtype=x.dtype))


def test_step_size_bias_on_a_gaussian_matches_the_ar1_closed_form():
    """ULA on N(0.3, 0.5^2): stationary variance s^2 / (1 - h / (2 s^2)), not s^2."""
    gaussian = GaussianMixture.gaussian(0.3, 0.5)
    g = torch.Generator().manual_seed(0)
    for h, expected in ((0.1, 0.25 / 0.8), (0.02, 0.25 / 0.96)):
        x = langevin_sample(exact_score(gaussian), torch.zeros(N, 1, dtype=torch.float64), h, 600, generator=g)
        assert ula_gaussian_variance(0.5, h) == pytest.approx(expected)
        se = expected * math.sqrt(2 / N)
        assert abs(x.var().item() - expected) < 4 * se
        assert abs(x.mean().item() - 0.3) < 4 * math.sqrt(expected / N)
    assert abs(0.25 / 0.8 - 0.25) > 10 * 0.3 * math.sqrt(2 / N)  # the bias is resolved at this N


def test_langevin_on_the_mixture_reaches_its_stationary_statistics():
    mixture = GaussianMixture((0.3, 0.7), (-0.8, 0.6), (0.4, 0.4))
    g = torch.Generator().manual_seed(1)
    x = langevin_sample(exact_score(mixture), torch.randn(N, 1, generator=g, dtype=torch.float64), 0.005, 3000, generator=g)
    w, m, s = (torch.tensor(v, dtype=torch.float64) for v in (mixture.weights, mixture.means, mixture.stds))
    mean = float((w * m).sum())
    left = float((w * torch.special.ndtr(-m / s)).sum())  # P(x < 0)
    assert abs(x.mean().item() - mean) < 4 * math.sqrt(0.5 / N) + 0.01
    assert abs((x < 0).double().mean().item() - left) < 4 * math.sqrt(left * (1 - left) / N) + 0.01


def test_annealed_langevin_ends_at_the_last_levels_ula_variance():
    """Target N(0, s^2) noised by VP levels: the last level's score is that of N(0, ab s^2 + 1 - ab)."""
    sde = VPSDE.from_schedule(linear_schedule(1000))
    gaussian = GaussianMixture.gaussian(0.0, 0.2)
    times = torch.tensor([0.6, 0.3, 0.1, 0.02], dtype=torch.float64)
    alpha_bar = sde.alpha_bar(times)
    variances = (1 - alpha_bar).tolist()

    def score(x, i):
        return gaussian.score_at(x, torch.full((x.shape[0], 1), float(alpha_bar[i]), dtype=x.dtype))

    g = torch.Generator().manual_seed(2)
    x = annealed_langevin_sample(score, torch.randn(N, 1, generator=g, dtype=torch.float64), variances, 300, 0.002, generator=g)
    last_std = math.sqrt(float(alpha_bar[-1]) * 0.04 + variances[-1])
    expected = ula_gaussian_variance(last_std, 0.002)
    assert abs(x.var().item() - expected) < 4 * expected * math.sqrt(2 / N)


def test_step_and_checks():
    x, score, z = torch.ones(2, 1), torch.full((2, 1), 2.0), torch.full((2, 1), 0.5)
    assert torch.allclose(langevin_step(x, score, 0.125, z), torch.full((2, 1), 1 + 0.25 + 0.5 * 0.5))
    with pytest.raises(ValueError, match="step_size"):
        langevin_step(x, score, 0.0, z)
    with pytest.raises(ValueError, match="diverges"):
        ula_gaussian_variance(0.5, 0.5)

"""course_ddpm.toy2d: moments against their closed forms, and a density that integrates to 1."""

from __future__ import annotations

import math

import pytest
import torch

from course_ddpm.toy2d import GaussianMixture2D, ring_mixture, two_moons


def test_ring_has_unit_covariance_in_closed_form_and_in_samples():
    mix = ring_mixture(k=8, std=0.1)
    torch.testing.assert_close(mix.mean(), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(mix.covariance(), torch.eye(2, dtype=torch.float64), atol=1e-12, rtol=0)
    x = mix.sample(200_000, torch.Generator().manual_seed(0)).double()
    # sampling error of a mean or covariance entry of unit-variance data: ~1/sqrt(N) = 0.0022
    torch.testing.assert_close(x.mean(0), mix.mean(), atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), mix.covariance(), atol=0.015, rtol=0)


def test_mixture_moments_follow_the_law_of_total_covariance():
    """An asymmetric mixture: mean and covariance against a direct sum written out by hand."""
    mix = GaussianMixture2D((0.2, 0.8), ((1.0, 2.0), (-1.0, 0.5)), std=0.3)
    mean = torch.tensor([0.2 * 1 + 0.8 * -1, 0.2 * 2 + 0.8 * 0.5], dtype=torch.float64)
    second = sum(w * torch.outer(torch.tensor(m, dtype=torch.float64), torch.tensor(m, dtype=torch.float64))
                 for w, m in zip(mix.weights, mix.means))  # fmt: skip
    cov = 0.09 * torch.eye(2, dtype=torch.float64) + second - torch.outer(mean, mean)
    torch.testing.assert_close(mix.mean(), mean)
    torch.testing.assert_close(mix.covariance(), cov)
    x = mix.sample(200_000, torch.Generator().manual_seed(1)).double()
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.02, rtol=0)


def test_log_density_integrates_to_one_on_a_grid():
    mix = ring_mixture()
    h = 0.01
    grid = torch.arange(-2.5, 2.5, h, dtype=torch.float64) + h / 2
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    p = mix.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp()
    assert abs(p.sum().item() * h * h - 1.0) < 1e-6


def test_log_density_of_one_component_is_the_gaussian_formula():
    mix = GaussianMixture2D((1.0,), ((0.5, -1.0),), std=2.0)
    x = torch.tensor([[0.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
    d2 = ((x - torch.tensor([0.5, -1.0], dtype=torch.float64)) ** 2).sum(1)
    torch.testing.assert_close(mix.log_prob(x), -d2 / 8 - math.log(2 * math.pi * 4))


def test_two_moons_are_standardised_by_their_closed_form_moments():
    x = two_moons(200_000, noise=0.1, generator=torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(x.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.01, rtol=0)
    torch.testing.assert_close(x.var(0), torch.ones(2, dtype=torch.float64), atol=0.015, rtol=0)


def test_samples_are_seeded_and_float32():
    mix = ring_mixture()
    a, b = (mix.sample(5, torch.Generator().manual_seed(3)) for _ in range(2))
    assert a.dtype == torch.float32 and a.shape == (5, 2) and torch.equal(a, b)


@pytest.mark.parametrize(
    "make",
    [lambda: GaussianMixture2D((0.5, 0.6), ((0, 0), (1, 1)), 0.1), lambda: GaussianMixture2D((1.0,), ((0, 0),), 0.0),
     lambda: ring_mixture(k=2), lambda: ring_mixture(std=1.0), lambda: two_moons(10, noise=-1.0)],
)  # fmt: skip
def test_bad_arguments_are_clear_errors(make):
    with pytest.raises(ValueError):
        make()

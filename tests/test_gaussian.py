"""Tests for course_ddpm.gaussian: Gaussian KLs and log-densities, and the discrete decoder.

Every check is against something computed another way: torch.distributions, a Monte
Carlo average, or the exact normal CDF.
"""

import math

import pytest
import torch

from course_ddpm.gaussian import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    gaussian_log_likelihood,
    normal_kl,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops (tests/conftest.py)


LEVELS = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0  # the 256-level grid of [-1, 1]


def standard_error(x: torch.Tensor) -> float:
    return (x.std() / math.sqrt(x.numel())).item()


def test_normal_kl_of_a_gaussian_with_itself_is_zero():
    mean = torch.tensor([-1.0, 0.0, 2.5], dtype=torch.float64)
    logvar = torch.tensor([-3.0, 0.0, 1.2], dtype=torch.float64)
    torch.testing.assert_close(normal_kl(mean, logvar, mean, logvar), torch.zeros(3, dtype=torch.float64))


def test_normal_kl_matches_torch_distributions_and_monte_carlo():
    """KL(p || q) = E_p[log p - log q]: closed form vs torch.distributions vs a sample average."""
    mean1, logvar1, mean2, logvar2 = 0.3, math.log(0.5), -0.4, math.log(1.7)
    kl = normal_kl(torch.tensor(mean1, dtype=torch.float64), logvar1, mean2, logvar2).item()

    p = torch.distributions.Normal(mean1, math.sqrt(0.5))
    q = torch.distributions.Normal(mean2, math.sqrt(1.7))
    assert kl == pytest.approx(torch.distributions.kl_divergence(p, q).item(), rel=1e-6)

    g = torch.Generator().manual_seed(1)
    x = mean1 + math.sqrt(0.5) * torch.randn(400_000, generator=g, dtype=torch.float64)
    log_ratio = gaussian_log_likelihood(x, mean1, torch.tensor(logvar1)) - gaussian_log_likelihood(
        x, mean2, torch.tensor(logvar2)
    )
    assert abs(log_ratio.mean().item() - kl) < 4 * standard_error(log_ratio)


def test_normal_kl_broadcasts_and_needs_a_tensor():
    kl = normal_kl(torch.zeros(4, 1, 3), torch.zeros(4, 1, 1), 1.0, 0.0)
    assert kl.shape == (4, 1, 3)
    torch.testing.assert_close(kl, torch.full((4, 1, 3), 0.5))
    with pytest.raises(TypeError, match="Tensor"):
        normal_kl(0.0, 0.0, 1.0, 0.0)


def test_gaussian_log_likelihood_matches_torch_distributions():
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    expected = torch.distributions.Normal(0.5, 0.7).log_prob(x)
    torch.testing.assert_close(gaussian_log_likelihood(x, 0.5, torch.tensor(2 * math.log(0.7))), expected)


# --- The discretised decoder (Ho et al. eq. 13) ---------------------------------------


def test_approx_cdf_is_close_to_the_exact_normal_cdf_and_monotone():
    x = torch.linspace(-8, 8, 100_001, dtype=torch.float64)
    approx = approx_standard_normal_cdf(x)
    assert (approx - torch.special.ndtr(x)).abs().max().item() < 2.5e-4
    assert bool((approx.diff() >= 0).all())
    assert approx[0].item() < 1e-6 and approx[-1].item() > 1 - 1e-6


@pytest.mark.parametrize("mean, scale", [(0.0, 0.3), (0.7, 0.01), (-0.99, 0.05), (1.3, 1.0), (0.123, 1e-4)])
def test_discretized_decoder_sums_to_one_over_the_256_bins(mean, scale):
    log_p = discretized_gaussian_log_likelihood(
        LEVELS, torch.full_like(LEVELS, mean), torch.full_like(LEVELS, math.log(scale))
    )
    assert bool((log_p <= 0).all())
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-8)


def test_discretized_decoder_matches_exact_bin_integrals():
    """P(bin) = Phi(upper) - Phi(lower) with the edge bins open; checked with the exact CDF."""
    mean, scale = 0.2, 0.15
    log_p = discretized_gaussian_log_likelihood(
        LEVELS, torch.full_like(LEVELS, mean), torch.full_like(LEVELS, math.log(scale))
    )
    upper = torch.cat([LEVELS[:-1] + 1 / 255, torch.tensor([math.inf], dtype=torch.float64)])
    lower = torch.cat([torch.tensor([-math.inf], dtype=torch.float64), LEVELS[1:] - 1 / 255])
    exact = torch.special.ndtr((upper - mean) / scale) - torch.special.ndtr((lower - mean) / scale)
    # Absolute error of a bin is at most twice that of the CDF approximation.
    assert (log_p.exp() - exact).abs().max().item() < 5e-4


def test_discretized_decoder_tends_to_density_times_bin_width():
    """For a scale much wider than a bin, P(bin) ~ N(x; mean, scale^2) * 2/255."""
    for scale in (0.3, 1.0):
        inner = (LEVELS.abs() < 0.99) & ((LEVELS - 0.1).abs() < 2 * scale)
        x = LEVELS[inner]
        mean = torch.full_like(x, 0.1)
        log_p = discretized_gaussian_log_likelihood(x, mean, torch.full_like(x, math.log(scale)))
        density_times_width = gaussian_log_likelihood(x, mean, torch.full_like(x, 2 * math.log(scale))).exp() * 2 / 255
        # 1% is the error of the tanh approximation of Phi's slope, not of the bin width.
        torch.testing.assert_close(log_p.exp(), density_times_width, rtol=1.5e-2, atol=0)
    # As the scale shrinks below a bin, all the mass falls into the bin of the mean.
    p_own_bin = [
        discretized_gaussian_log_likelihood(
            LEVELS[100:101], LEVELS[100:101] + 0.001, torch.tensor([math.log(scale)], dtype=torch.float64)
        ).exp().item()
        for scale in (1e-2, 1e-3, 1e-4)
    ]
    assert p_own_bin[0] < p_own_bin[1] < p_own_bin[2] and p_own_bin[2] > 1 - 1e-9


def test_discretized_decoder_rejects_data_off_the_grid():
    zeros = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="grid"):
        discretized_gaussian_log_likelihood(zeros + 0.001, zeros, zeros)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        discretized_gaussian_log_likelihood(zeros + 1.5, zeros, zeros)
    with pytest.raises(ValueError, match="means"):
        discretized_gaussian_log_likelihood(zeros, torch.zeros(2, 4, dtype=torch.float64), zeros)



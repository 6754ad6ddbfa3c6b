"""Tests for course_ddpm.likelihood: ODE log-likelihoods against exact densities, Hutchinson's estimator."""

import math

import pytest
import torch

from course_ddpm.likelihood import (
    BIN_WIDTH,
    bits_per_dim_of_density,
    dequantise,
    divergence_exact,
    divergence_hutchinson,
    mnist_ode_bits_per_dim,
    ode_bits_per_dim,
    ode_log_likelihood,
    rademacher,
)
from course_ddpm.data import load_mnist
from course_ddpm.schedules import linear_schedule
from course_ddpm.sde import VPSDE, score_of_mixture
from course_ddpm.toy import GaussianMixture

pytestmark = pytest.mark.usefixtures("one_thread")

SDE = VPSDE.from_schedule(linear_schedule(1000))


def exact_prior(mixture: GaussianMixture):
    """log p_1 of the noised mixture, so that the only error left is the solver's."""
    ab = float(SDE.alpha_bar(1.0))
    return lambda x1: mixture.log_prob_at(x1, torch.full((x1.shape[0],) + (1,) * (x1.ndim - 1), ab, dtype=x1.dtype))


@pytest.mark.parametrize(
    "mixture", [GaussianMixture.gaussian(0.3, 0.5), GaussianMixture((0.2, 0.5, 0.3), (-0.6, 0.1, 0.7), (0.1, 0.2, 0.05))]
)
def test_ode_likelihood_equals_the_exact_log_density(mixture):
    x0 = mixture.sample((6, 2), generator=torch.Generator().manual_seed(0))
    result = ode_log_likelihood(SDE, score_of_mixture(SDE, mixture), x0, t_start=0.0, rtol=1e-7, atol=1e-7,
                                prior_log_prob=exact_prior(mixture))  # fmt: skip
    assert torch.allclose(result.log_p, mixture.log_prob(x0), atol=1e-4)
    assert torch.allclose(result.log_p, result.log_prior + result.delta)


def test_standard_normal_prior_costs_only_the_terminal_mismatch():
    gaussian = GaussianMixture.gaussian(0.3, 0.5)
    x0 = gaussian.sample((4, 3), generator=torch.Generator().manual_seed(1))
    result = ode_log_likelihood(SDE, score_of_mixture(SDE, gaussian), x0, t_start=0.0)
    # log p_1 - log N(0, I) ~ sqrt(alpha_bar(1)) m x_1 per dimension, alpha_bar(1) = 4e-5: a few 1e-3 here
    assert torch.allclose(result.log_p, gaussian.log_prob(x0), atol=0.02)


def test_hutchinson_is_unbiased_for_a_dense_jacobian():
    A = torch.randn(5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    fn = lambda x: x @ A.T  # noqa: E731 - Jacobian A for every x
    x = torch.zeros(20_000, 5, dtype=torch.float64)
    z = rademacher((20_000, 5), torch.Generator().manual_seed(3), torch.float64)
    _, estimates = divergence_hutchinson(fn, x, z)
    _, exact = divergence_exact(fn, x[:2])
    assert torch.allclose(exact, torch.trace(A).expand(2))
    se = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean() - torch.trace(A)) < 4 * se
    assert estimates.std() > 0.5  # the off-diagonal part is noise, averaged away


def test_hutchinson_with_rademacher_is_exact_for_a_diagonal_jacobian():
    """Each coordinate of the toy flows on its own, so z^T J z = sum J_ii z_i^2 = tr J when z_i = +-1."""
    mixture = GaussianMixture((0.3, 0.7), (-0.8, 0.6), (0.3, 0.4))
    x0 = mixture.sample((3, 4), generator=torch.Generator().manual_seed(4))
    kw = dict(t_start=0.0, rtol=1e-7, atol=1e-7)
    exact = ode_log_likelihood(SDE, score_of_mixture(SDE, mixture), x0, **kw)
    hutch = ode_log_likelihood(SDE, score_of_mixture(SDE, mixture), x0, divergence="hutchinson",
                               generator=torch.Generator().manual_seed(5), **kw)  # fmt: skip
    assert torch.allclose(exact.log_p, hutch.log_p, atol=1e-5)


def test_uniform_density_over_the_bins_is_eight_bits():
    """p uniform on [-1 - 1/255, 1 + 1/255]^D (256 bins of width 2/255) is 8 bits/dim: log2 256."""
    D = 10
    log_p = torch.tensor([-D * math.log(256 * BIN_WIDTH)], dtype=torch.float64)
    assert bits_per_dim_of_density(log_p, D).item() == pytest.approx(8.0)


def test_dequantise_stays_in_each_pixels_bin():
    x0 = (torch.randint(0, 256, (50, 1, 2, 2), generator=torch.Generator().manual_seed(6)).double() / 255) * 2 - 1
    y = dequantise(x0, torch.Generator().manual_seed(7))
    assert torch.equal(torch.round((y + 1) * 255 / 2), torch.round((x0 + 1) * 255 / 2))
    assert float((y - x0).abs().max()) <= BIN_WIDTH / 2


def test_ode_bits_per_dim_with_the_optimal_denoiser_matches_the_exact_density():
    """The toy's optimal eps as a 'network' (asked at grid indices) against the dequantised images' exact log-density."""
    schedule = SDE.schedule
    mixture = GaussianMixture((0.5, 0.5), (-0.5, 0.5), (0.3, 0.3))
    x0 = torch.round((mixture.sample((4, 1, 3, 3), torch.Generator().manual_seed(8)).clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
    bpd, nfe = ode_bits_per_dim(mixture.eps_model(schedule), SDE, x0, generator=torch.Generator().manual_seed(9),
                                rtol=1e-6, atol=1e-6)  # fmt: skip
    y = dequantise(x0, torch.Generator().manual_seed(9))  # the same draw as inside
    exact = bits_per_dim_of_density(mixture.log_prob(y), 9)
    assert nfe > 10
    assert torch.allclose(bpd, exact, atol=0.02)


@pytest.mark.mnist
def test_mnist_ode_bits_per_dim_averages_the_per_image_values_with_their_standard_error():
    """The mean and standard error of the per-image values; the first is a direct ode_bits_per_dim call, same seed."""
    mixture = GaussianMixture((0.5, 0.5), (-0.8, 0.8), (0.3, 0.3))
    result = mnist_ode_bits_per_dim(mixture.eps_model(SDE.schedule), SDE, 3, batch_size=1, seed=0, rtol=1e-4)
    per_image = torch.tensor(result["per_image"], dtype=torch.float64)
    assert result["n"] == 3 and len(result["nfe"]) == 3
    assert result["bpd"] == pytest.approx(float(per_image.mean()))
    assert result["stderr"] == pytest.approx(float(per_image.std() / math.sqrt(3)))
    x_test, _ = load_mnist(train=False)
    generator = torch.Generator().manual_seed(0)
    first, _ = ode_bits_per_dim(mixture.eps_model(SDE.schedule), SDE, x_test[:1], generator=generator, rtol=1e-4, atol=1e-4)
    assert float(first[0]) == pytest.approx(result["per_image"][0])

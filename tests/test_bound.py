"""Tests for course_ddpm.bound: the variational bound on 8-bit data, in bits per dimension.

Every check is against something computed another way: a closed form, the exact bin
masses of the normal CDF, or the exact likelihood of quantised toy data (whose optimal
denoiser, course_ddpm.toy, stands in for a trained network).
"""

import math

import pytest
import torch

from course_ddpm.bound import prior_bpd, variational_bound, vb_term_bpd
from course_ddpm.forward import q_sample
from course_ddpm.gaussian import approx_standard_normal_cdf
from course_ddpm.reverse import p_mean_variance
from course_ddpm.schedules import linear_schedule
from course_ddpm.toy import GaussianMixture


pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops (tests/conftest.py)


LN2 = math.log(2.0)
LEVELS = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0  # the 256-level grid of [-1, 1]
MIXTURE = GaussianMixture((0.3, 0.7), (-0.5, 0.4), (0.15, 0.25))


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Continuous values -> the nearest of the 256 levels in [-1, 1] (like uint8 / 127.5 - 1)."""
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round() / 127.5 - 1.0


def standard_error(x: torch.Tensor) -> float:
    return (x.std() / math.sqrt(x.numel())).item()


# --- Terms of the bound -------------------------------------------------------------


def test_prior_bpd_matches_the_closed_form():
    """KL(N(sqrt(a) x0, 1 - a) || N(0, 1)) = 0.5 (a x0^2 - a - log(1 - a)) per dimension."""
    s = linear_schedule(300, warn=False)  # unrescaled: alpha_bar_T = 0.048, a visible prior term
    a = s.alpha_bar[-1].item()
    x0 = torch.tensor([[1.0, -1.0, 0.0, 0.5], [0.2, 0.2, 0.2, 0.2]], dtype=torch.float64)
    per_dim = 0.5 * (a * x0**2 - a - math.log(1 - a))
    torch.testing.assert_close(prior_bpd(s, x0), per_dim.mean(1) / LN2)
    assert prior_bpd(s, torch.ones(1, 4, dtype=torch.float64)).item() == pytest.approx(s.prior_kl_per_dim() / LN2)


def test_decoder_term_matches_a_direct_computation():
    """At t = 0 the term is -log2 P(x0) / D, P a product over pixels of Gaussian bin masses."""
    s = linear_schedule(1000)
    g = torch.Generator().manual_seed(5)
    x0 = quantize(MIXTURE.sample((4, 1, 3, 3), generator=g))
    x0[0, 0, 0, :] = torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64)  # exercise the open edge bins
    t = torch.zeros(4, dtype=torch.long)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps_pred = eps + 0.2 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    bpd = vb_term_bpd(s, x0, q_sample(s, x0, t, eps), t, eps_pred)

    p = p_mean_variance(s, q_sample(s, x0, t, eps), t, eps_pred)
    scale = p.log_variance.exp().sqrt()
    upper = torch.where(x0 == 1.0, torch.full_like(x0, math.inf), x0 + 1 / 255)
    lower = torch.where(x0 == -1.0, torch.full_like(x0, -math.inf), x0 - 1 / 255)
    mass = approx_standard_normal_cdf((upper - p.mean) / scale) - approx_standard_normal_cdf((lower - p.mean) / scale)
    torch.testing.assert_close(bpd, -mass.log2().flatten(1).mean(1))
    exact_mass = torch.special.ndtr((upper - p.mean) / scale) - torch.special.ndtr((lower - p.mean) / scale)
    torch.testing.assert_close(bpd, -exact_mass.log2().flatten(1).mean(1), rtol=0, atol=0.01)


def test_vb_term_handles_mixed_t_row_by_row():
    s = linear_schedule(50, rescale=True)
    g = torch.Generator().manual_seed(6)
    x0 = quantize(MIXTURE.sample((5, 2, 2), generator=g))
    t = torch.tensor([0, 3, 0, 49, 17])
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps_pred = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = q_sample(s, x0, t, eps)
    together = vb_term_bpd(s, x0, x_t, t, eps_pred)
    rows = [slice(i, i + 1) for i in range(5)]
    one_by_one = torch.cat([vb_term_bpd(s, x0[r], x_t[r], t[r], eps_pred[r]) for r in rows])
    torch.testing.assert_close(together, one_by_one)
    assert bool(torch.isfinite(together).all()) and bool((together >= 0).all())


# --- The whole bound on discrete data -------------------------------------------------

DISCRETE_MIXTURE = GaussianMixture((0.5, 0.5), (-0.5, 0.5), (0.05, 0.1))


def discrete_data_nll_bpd(x0: torch.Tensor) -> torch.Tensor:
    """Exact -log2 P(x0) / D under the quantised mixture: each pixel's bin mass from the mixture CDF."""
    mix = DISCRETE_MIXTURE
    w, m, sd = (torch.tensor(v, dtype=torch.float64) for v in (mix.weights, mix.means, mix.stds))
    upper = torch.where(x0 >= 1.0, torch.full_like(x0, math.inf), x0 + 1 / 255).unsqueeze(-1)
    lower = torch.where(x0 <= -1.0, torch.full_like(x0, -math.inf), x0 - 1 / 255).unsqueeze(-1)
    mass = (w * (torch.special.ndtr((upper - m) / sd) - torch.special.ndtr((lower - m) / sd))).sum(-1)
    return -mass.log2().flatten(1).mean(1)


def test_variational_bound_on_tiny_discrete_images_bounds_the_true_nll():
    """E[bound] >= E[-log2 P_model] >= E[-log2 P_data] (cross-entropy >= entropy), on 4x4 images."""
    s = linear_schedule(1000)
    g = torch.Generator().manual_seed(7)
    x0 = quantize(DISCRETE_MIXTURE.sample((64, 1, 4, 4), generator=g))
    vb = variational_bound(DISCRETE_MIXTURE.eps_model(s), s, x0, generator=g)

    assert vb.terms_bpd.shape == (64, 1000) and vb.total_bpd.shape == (64,)
    assert bool((vb.terms_bpd >= 0).all()) and bool((vb.prior_bpd < 1e-3).all())

    excess = vb.total_bpd - discrete_data_nll_bpd(x0)  # measured: 0.69 +- 0.07 bits/dim
    assert excess.mean().item() > 3 * standard_error(excess)
    assert excess.mean().item() < 1.5  # a bound in nats, or a wrong decoder, would be far looser
    assert 0 < vb.total_bpd.mean().item() < 8


def test_bound_of_a_model_that_knows_x0_is_prior_plus_decoder_in_closed_form():
    """A model that returns the true noise makes p_theta the forward posterior, so every KL
    term vanishes and the bound is L_T + L_0, both in closed form (a = alpha_bar_T,
    sigma_1^2 = beta_tilde_2 = beta_1 beta_2 / (beta_1 + beta_2 - beta_1 beta_2), h = 1/255):

        L_T = 0.5 (a x0^2 - a - log(1 - a))            per dimension (Ho et al. eq. 5)
        L_0 = -log(2 Phi(h / sigma_1) - 1)              inner bins, mean mu_theta(x_1) = x0
            = -log Phi(h / sigma_1)                     the two open edge bins (eq. 13)

    computed here with the exact normal CDF (the package's tanh approximation differs by 2e-4).
    """
    s = linear_schedule(300, warn=False)  # unrescaled: alpha_bar_T = 0.048, a visible prior term
    x0 = LEVELS[[0, 40, 128, 200, 255, 97, 1, 254]].reshape(2, 1, 2, 2)  # includes both edge bins

    def knows_x0(x_t, t):  # eps = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t), exactly
        ab = s.alpha_bar[t].reshape(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    vb = variational_bound(knows_x0, s, x0, generator=torch.Generator().manual_seed(9))

    a = s.alpha_bar[-1].item()
    prior = (0.5 * (a * x0**2 - a - math.log(1 - a))).flatten(1).mean(1) / LN2
    b1, b2 = s.beta[0].item(), s.beta[1].item()
    sigma_1 = math.sqrt(b1 * b2 / (b1 + b2 - b1 * b2))
    phi = torch.special.ndtr(torch.tensor(1 / 255 / sigma_1, dtype=torch.float64))
    edge = (x0.abs() == 1.0).double()
    decoder = -(edge * phi.log() + (1 - edge) * (2 * phi - 1).log()).flatten(1).mean(1) / LN2
    torch.testing.assert_close(vb.prior_bpd, prior)
    torch.testing.assert_close(vb.decoder_bpd, decoder, rtol=0, atol=1e-3)
    assert vb.terms_bpd[:, 1:].abs().max().item() < 1e-9
    torch.testing.assert_close(vb.total_bpd, prior + decoder, rtol=0, atol=1e-3)


def test_variational_bound_passes_labels_and_checks_the_model_output():
    s = linear_schedule(20, rescale=False, warn=False)
    x0 = quantize(DISCRETE_MIXTURE.sample((3, 2, 2), generator=torch.Generator().manual_seed(8)))
    seen = []

    def model(x_t, t, y):
        seen.append(y)
        return torch.zeros_like(x_t)

    y = torch.tensor([0, 1, 2])
    variational_bound(model, s, x0, generator=torch.Generator().manual_seed(9), y=y)
    assert len(seen) == 20 and all(v is y for v in seen)
    with pytest.raises(ValueError, match="shape"):
        variational_bound(lambda x_t, t: x_t[:, :1], s, x0)


# --- What the fixed variances cost -------------------------------------------------------


def test_decoder_bpd_at_sigma_1_is_the_decoder_term():
    """decoder_bpd with the schedule's sigma_1 is vb_term_bpd's t = 0 row (the same eq. 13)."""
    from course_ddpm.bound import decoder_bpd
    from course_ddpm.reverse import log_sigma2

    schedule = linear_schedule(1000)
    x0 = quantize(MIXTURE.sample((4, 1, 3, 3), torch.Generator().manual_seed(0)))
    t = torch.zeros(4, dtype=torch.long)
    x_1 = q_sample(schedule, x0, t, torch.randn(x0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    eps_pred = 0.9 * MIXTURE.optimal_eps(schedule, x_1, t)  # an imperfect model
    mean = p_mean_variance(schedule, x_1, t, eps_pred).mean
    sigma_1 = log_sigma2(schedule, "fixed_small")[0].exp().sqrt()
    torch.testing.assert_close(decoder_bpd(x0, mean, sigma_1), vb_term_bpd(schedule, x0, x_1, t, eps_pred))
    # a perfect mean with a tiny sigma pays almost nothing; a wide sigma pays more
    assert decoder_bpd(x0, x0, 1e-4).max() < 1e-6
    assert decoder_bpd(x0, x0, 0.1).min() > decoder_bpd(x0, x0, 0.01).max()
    with pytest.raises(ValueError, match="positive"):
        decoder_bpd(x0, x0, 0.0)


def test_decoder_floor_closed_form_matches_the_evaluation_code():
    """Exact Phi in closed form against evaluation.decoder_floor_bpd (tanh Phi, the model's code path)."""
    from course_ddpm.bound import decoder_floor_closed_form
    from course_ddpm.evaluation import decoder_floor_bpd
    from course_ddpm.reverse import log_sigma2

    schedule = linear_schedule(1000)
    levels = LEVELS[torch.randint(0, 256, (3, 1, 8, 8), generator=torch.Generator().manual_seed(2))]
    x0 = torch.where(torch.rand(levels.shape, generator=torch.Generator().manual_seed(3)) < 0.5, -1.0, levels)
    sigma_1 = log_sigma2(schedule, "fixed_small")[0].exp().sqrt().item()
    closed = decoder_floor_closed_form(x0, sigma_1).mean().item()
    assert closed == pytest.approx(decoder_floor_bpd(schedule, x0), abs=2e-3)  # tanh Phi is off by <= 2e-4
    # a single background pixel: -log2 Phi(h / sigma); a single inner pixel: -log2(2 Phi(h / sigma) - 1)
    phi = 0.5 * (1 + math.erf(1 / 255 / sigma_1 / math.sqrt(2)))
    background, inner = torch.full((1, 1), -1.0, dtype=torch.float64), torch.full((1, 1), 1 / 127.5 - 1, dtype=torch.float64)
    assert decoder_floor_closed_form(background, sigma_1).item() == pytest.approx(-math.log2(phi))
    assert decoder_floor_closed_form(inner, sigma_1).item() == pytest.approx(-math.log2(2 * phi - 1))
    assert decoder_floor_closed_form(background, 10.0).item() < 1.0  # a background pixel never costs a bit


def test_variance_excess_is_zero_for_beta_tilde_and_the_bound_difference_for_beta():
    """fixed_large minus fixed_small, term by term, for a model whose mean is exact (eps_pred = eps)."""
    from course_ddpm.bound import variance_excess_bpd

    schedule = linear_schedule(50, rescale=True)
    assert variance_excess_bpd(schedule, "fixed_small").abs().max() < 1e-12
    excess = variance_excess_bpd(schedule, "fixed_large")  # (T,)
    assert excess[0] == 0 and bool((excess[1:] > 0).all())
    x0 = quantize(MIXTURE.sample((2, 1, 2, 2), torch.Generator().manual_seed(4)))
    t = torch.arange(50).repeat_interleave(2)  # (100,) every step for both examples
    x0_rep = x0.repeat(50, 1, 1, 1)
    eps = torch.randn(x0_rep.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x_t = q_sample(schedule, x0_rep, t, eps)
    small = vb_term_bpd(schedule, x0_rep, x_t, t, eps, "fixed_small")
    large = vb_term_bpd(schedule, x0_rep, x_t, t, eps, "fixed_large")
    torch.testing.assert_close(large - small, excess[t])


def test_perfect_mean_pixel_bits_against_scipy_normal_cdf():
    from scipy.stats import norm

    from course_ddpm.bound import perfect_mean_pixel_bits

    for sigma in (0.001, 0.0074, 0.05):
        outer, inner = perfect_mean_pixel_bits(sigma)
        h = 1 / 255
        assert outer == pytest.approx(-math.log2(norm.cdf(h / sigma)), rel=1e-12)
        assert inner == pytest.approx(-math.log2(norm.cdf(h / sigma) - norm.cdf(-h / sigma)), rel=1e-10)
        assert outer < 1.0 < inner or sigma < 0.002  # a wide Gaussian: an edge pixel costs under a bit
    with pytest.raises(ValueError, match="positive"):
        perfect_mean_pixel_bits(0.0)

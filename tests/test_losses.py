"""Tests for course_ddpm.losses: L_simple, Gaussian KLs, the discrete decoder and the ELBO.

Every check is against something computed another way: torch.distributions, a Monte
Carlo average, the exact normal CDF, a closed form, or the known density of the toy
mixture of course_ddpm.toy (whose optimal denoiser stands in for a trained network).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from course_ddpm.forward import q_sample, q_step_mean_variance, q_trajectory
from course_ddpm.losses import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    elbo_consistency_form,
    elbo_denoising_form,
    gaussian_log_likelihood,
    l_simple,
    normal_kl,
    prior_bpd,
    variational_bound,
    vb_term_bpd,
    weighted_eps_mse_coefficient,
)
from course_ddpm.reverse import p_mean_variance
from course_ddpm.schedules import cosine_schedule, linear_schedule
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


# --- L_simple and Gaussians ----------------------------------------------------------


def test_l_simple_is_the_mean_squared_error():
    g = torch.Generator().manual_seed(0)
    eps, eps_pred = torch.randn(2, 5, 3, 4, 4, generator=g)
    loss = l_simple(eps, eps_pred)
    assert loss.ndim == 0
    torch.testing.assert_close(loss, F.mse_loss(eps_pred, eps))
    assert l_simple(eps, eps).item() == 0.0


def test_l_simple_rejects_bad_inputs():
    with pytest.raises(ValueError, match="eps_pred"):
        l_simple(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="eps"):
        l_simple(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))


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


# --- Terms of the bound -------------------------------------------------------------


def test_prior_bpd_matches_the_closed_form():
    """KL(N(sqrt(a) x0, 1 - a) || N(0, 1)) = 0.5 (a x0^2 - a - log(1 - a)) per dimension."""
    s = linear_schedule(300, warn=False)  # unrescaled: alpha_bar_T = 0.048, a visible prior term
    a = s.alpha_bar[-1].item()
    x0 = torch.tensor([[1.0, -1.0, 0.0, 0.5], [0.2, 0.2, 0.2, 0.2]], dtype=torch.float64)
    per_dim = 0.5 * (a * x0**2 - a - math.log(1 - a))
    torch.testing.assert_close(prior_bpd(s, x0), per_dim.mean(1) / LN2)
    assert prior_bpd(s, torch.ones(1, 4, dtype=torch.float64)).item() == pytest.approx(s.prior_kl_per_dim() / LN2)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_kl_term_is_a_weighted_eps_mse(variance):
    """L_{t-1} = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)) ||eps - eps_pred||^2 + C_t (Ho eq. 12)."""
    s = cosine_schedule(100)
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(6, 2, 3, 3, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps_pred = eps + 0.3 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 5, 30, 60, 98, 99])
    x_t = q_sample(s, x0, t, eps)
    kl_nats = vb_term_bpd(s, x0, x_t, t, eps_pred, variance) * 18 * LN2  # D = 18

    weight = weighted_eps_mse_coefficient(s, variance)[t]
    weighted_mse = weight * ((eps - eps_pred) ** 2).flatten(1).sum(1)
    if variance == "fixed_small":
        constant = torch.zeros(6, dtype=torch.float64)
    else:  # KL between N(., beta_tilde) and N(., beta): 0.5 (log(beta / beta_tilde) + beta_tilde / beta - 1) per dim
        ratio = s.beta_tilde[t] / s.beta[t]
        constant = 18 * 0.5 * (-ratio.log() + ratio - 1)
    torch.testing.assert_close(kl_nats, weighted_mse + constant)


def test_weight_at_t0_is_that_of_a_gaussian_decoder():
    """-log N(x0; mu_theta(x_1), sigma_1^2) = weight_0 ||eps - eps_pred||^2 + 0.5 D log(2 pi sigma_1^2)."""
    s = linear_schedule(1000)
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(5, 7, generator=g, dtype=torch.float64)
    eps, noise = torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    eps_pred = eps + 0.5 * noise
    t = torch.zeros(5, dtype=torch.long)
    p = p_mean_variance(s, q_sample(s, x0, t, eps), t, eps_pred)
    nll = -gaussian_log_likelihood(x0, p.mean, p.log_variance).sum(1)
    weight = weighted_eps_mse_coefficient(s)[0]
    constant = 0.5 * 7 * (math.log(2 * math.pi) + p.log_variance[0, 0])
    torch.testing.assert_close(nll, weight * ((eps - eps_pred) ** 2).sum(1) + constant)


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
    torch.testing.assert_close(vb.total_bpd, vb.prior_bpd + vb.terms_bpd.sum(1))
    torch.testing.assert_close(vb.decoder_bpd, vb.terms_bpd[:, 0])
    assert bool((vb.terms_bpd >= 0).all()) and bool((vb.prior_bpd < 1e-3).all())

    excess = vb.total_bpd - discrete_data_nll_bpd(x0)  # measured: 0.69 +- 0.07 bits/dim
    assert excess.mean().item() > 3 * standard_error(excess)
    assert excess.mean().item() < 1.5  # a bound in nats, or a wrong decoder, would be far looser
    assert 0 < vb.total_bpd.mean().item() < 8


def test_variational_bound_is_reproducible_and_passes_labels():
    s = linear_schedule(20, rescale=False, warn=False)
    x0 = quantize(DISCRETE_MIXTURE.sample((3, 2, 2), generator=torch.Generator().manual_seed(8)))
    seen = []

    def model(x_t, t, y):
        seen.append(y)
        return torch.zeros_like(x_t)

    y = torch.tensor([0, 1, 2])
    a = variational_bound(model, s, x0, generator=torch.Generator().manual_seed(9), y=y)
    b = variational_bound(model, s, x0, generator=torch.Generator().manual_seed(9), y=y)
    torch.testing.assert_close(a.total_bpd, b.total_bpd)
    assert len(seen) == 40 and all(v is y for v in seen)
    with pytest.raises(ValueError, match="shape"):
        variational_bound(lambda x_t, t: x_t[:, :1], s, x0)


# --- Luo 2022: two forms of the ELBO --------------------------------------------------


def luo_estimates(schedule, x0, generator):
    traj = q_trajectory(schedule, x0, generator)
    model = MIXTURE.eps_model(schedule)
    return traj, elbo_consistency_form(schedule, traj, model), elbo_denoising_form(schedule, traj, model)


def test_luo_forms_have_the_same_expectation():
    """Same trajectories, so the paired difference has a small standard error."""
    g = torch.Generator().manual_seed(10)
    s = linear_schedule(50, rescale=True)
    x0 = MIXTURE.sample((4000, 1), generator=g)
    _, consistency, denoising = luo_estimates(s, x0, g)
    diff = consistency.elbo - denoising.elbo  # measured: 0.01 +- 0.02 nats
    assert abs(diff.mean().item()) < 4 * standard_error(diff)
    # The terms add up to the ELBO.
    torch.testing.assert_close(
        consistency.elbo, consistency.reconstruction - consistency.prior_matching - consistency.consistency.sum(1)
    )
    torch.testing.assert_close(
        denoising.elbo, denoising.reconstruction - denoising.prior_matching - denoising.denoising_matching.sum(1)
    )
    assert consistency.consistency.shape == denoising.denoising_matching.shape == (4000, 49)


def test_luo_forms_coincide_for_a_single_step():
    s = linear_schedule(1, beta_start=0.9, beta_end=0.9, warn=False)
    x0 = MIXTURE.sample((10, 3), generator=torch.Generator().manual_seed(11))
    _, consistency, denoising = luo_estimates(s, x0, torch.Generator().manual_seed(12))
    torch.testing.assert_close(consistency.elbo, denoising.elbo)


def test_reconstruction_term_is_the_gaussian_decoder_density():
    """log N(x0; x0_pred(x_1), beta_tilde_2): at code 0 the reverse mean is the x0 estimate (Ho eq. 15)."""
    s = linear_schedule(100, rescale=True)
    g = torch.Generator().manual_seed(17)
    x0 = MIXTURE.sample((50, 2), generator=g)
    traj, consistency, denoising = luo_estimates(s, x0, g)
    x1, ab = traj[1], s.alpha_bar[0].item()
    eps_pred = MIXTURE.optimal_eps(s, x1, torch.zeros(50, dtype=torch.long))
    x0_pred = (x1 - math.sqrt(1 - ab) * eps_pred) / math.sqrt(ab)
    expected = torch.distributions.Normal(x0_pred, s.beta_tilde[1].sqrt()).log_prob(x0).sum(1)
    torch.testing.assert_close(denoising.reconstruction, expected)
    torch.testing.assert_close(consistency.reconstruction, expected)


def test_denoising_matching_terms_are_the_vb_terms():
    """Luo's denoising matching term at paper t is Ho et al.'s L_{t-1}: vb_term_bpd at code t - 1, in nats."""
    s = cosine_schedule(30)
    g = torch.Generator().manual_seed(13)
    x0 = MIXTURE.sample((8, 2, 3), generator=g)
    traj, _, denoising = luo_estimates(s, x0, g)
    model = MIXTURE.eps_model(s)
    for code in (1, 10, 29):
        t = torch.full((8,), code)
        x_t = traj[code + 1]
        bpd = vb_term_bpd(s, x0, x_t, t, model(x_t, t))
        torch.testing.assert_close(denoising.denoising_matching[:, code - 1], bpd * 6 * LN2)


def test_literal_kl_reading_of_luo_eq45_is_not_the_elbo():
    """Luo's eq. 45 puts KL(q(x_t|x_{t-1}) || p(x_t|x_{t+1})) under E_{q(x_{t-1},x_{t+1}|x_0)}.

    That integrates x_t as if independent of x_{t+1}. Computed literally, it is lower than
    the ELBO by about 1 nat per step and noisier; elbo_consistency_form conditions x_t on
    both neighbours instead, and matches (see test_luo_forms_have_the_same_expectation).
    """
    g = torch.Generator().manual_seed(14)
    s = linear_schedule(25, rescale=True)
    x0 = MIXTURE.sample((2000, 1), generator=g)
    traj, consistency, denoising = luo_estimates(s, x0, g)
    model = MIXTURE.eps_model(s)
    literal = torch.zeros(2000, dtype=torch.float64)
    for t in range(1, s.T):  # paper t
        q_mean, q_var = q_step_mean_variance(s, traj[t - 1], torch.full((2000,), t - 1))
        code = torch.full((2000,), t)
        p = p_mean_variance(s, traj[t + 1], code, model(traj[t + 1], code))
        literal += normal_kl(q_mean, q_var.log(), p.mean, p.log_variance).sum(1)
    literal_elbo = consistency.reconstruction - consistency.prior_matching - literal
    gap = denoising.elbo - literal_elbo  # measured: about 13 nats for T = 25
    assert gap.mean().item() > 0.5 * (s.T - 1)
    assert literal_elbo.var().item() > denoising.elbo.var().item()


def test_consistency_form_variance_with_the_optimal_denoiser():
    """Observed, not a theorem: with the optimal denoiser the consistency form is the less noisy.

    Its terms are log-ratios of densities that nearly cancel along a trajectory when
    p_theta matches the true reverse process; the denoising form adds T - 1 non-negative
    KLs. Measured at T = 200, one x0: variance 4.4 (consistency) vs 10 (denoising).
    """
    g = torch.Generator().manual_seed(15)
    s = linear_schedule(200, rescale=True)
    x0 = torch.full((2000, 1), 0.3, dtype=torch.float64)
    _, consistency, denoising = luo_estimates(s, x0, g)
    assert consistency.elbo.var().item() < 0.7 * denoising.elbo.var().item()


@pytest.mark.parametrize("data", [GaussianMixture.gaussian(0.2, 0.3), MIXTURE], ids=["gaussian", "mixture"])
def test_both_forms_bound_log_p_on_average_and_tighten_with_T(data):
    """E_x0[ELBO] <= E_x0[log p_theta(x0)] <= E_x0[log p_data(x0)]; the gap shrinks as T grows.

    The optimal denoiser of the toy is the "trained network". Measured gaps (nats, mixture,
    4000 draws): 3.0 (T = 25), 1.75 (T = 50), 0.82 (T = 200).
    """
    g = torch.Generator().manual_seed(16)
    x0 = data.sample((3000, 1), generator=g)
    log_p = data.log_prob(x0)
    mean_gaps = []
    for T in (25, 50, 200):
        s = linear_schedule(T, rescale=True)
        traj = q_trajectory(s, x0, g)
        model = data.eps_model(s)
        for form in (elbo_consistency_form, elbo_denoising_form):
            gap = log_p - form(s, traj, model).elbo
            assert gap.mean().item() > 3 * standard_error(gap), (T, form.__name__)
        gap = log_p - elbo_denoising_form(s, traj, model).elbo
        mean_gaps.append((gap.mean().item(), standard_error(gap)))
    for (looser, se_looser), (tighter, se_tighter) in zip(mean_gaps, mean_gaps[1:]):
        assert looser - tighter > 3 * math.hypot(se_looser, se_tighter), mean_gaps


def test_luo_forms_validate_their_inputs():
    s = linear_schedule(30, rescale=True)
    model = MIXTURE.eps_model(s)
    with pytest.raises(ValueError, match="T \\+ 1"):
        elbo_denoising_form(s, torch.zeros(30, 4, 1, dtype=torch.float64), model)
    with pytest.raises(ValueError, match="shape"):
        elbo_consistency_form(s, torch.zeros(31, 4, 2, dtype=torch.float64), lambda x_t, t: x_t[:, :1])
    with pytest.raises(TypeError, match="trajectory"):
        elbo_consistency_form(s, torch.zeros(31, 4, 1, dtype=torch.long), model)


def test_weighted_x0_mse_coefficient_equals_the_kl():
    """KL(q(x_{t-1}|x_t,x0) || p_theta) = 1/2 (SNR(t-1) - SNR(t)) ||x0 - x0_pred||^2 for sigma^2 = beta_tilde."""
    from course_ddpm.forward import q_posterior, q_sample
    from course_ddpm.losses import normal_kl, weighted_x0_mse_coefficient
    from course_ddpm.reverse import p_mean_variance
    from course_ddpm.schedules import cosine_schedule

    s = cosine_schedule(100)
    g = torch.Generator().manual_seed(5)
    x0 = torch.rand(32, 1, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.randint(1, 100, (32,), generator=g)
    x_t = q_sample(s, x0, t, eps)
    eps_pred = eps + 0.2 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    mu_tilde, beta_tilde = q_posterior(s, x0, x_t, t)
    p = p_mean_variance(s, x_t, t, eps_pred, variance_type="fixed_small")
    kl = normal_kl(mu_tilde, beta_tilde.log(), p.mean, p.log_variance)
    weight = weighted_x0_mse_coefficient(s)
    torch.testing.assert_close(kl, weight[t].unsqueeze(1) * (x0 - p.x0_pred) ** 2, rtol=1e-8, atol=1e-12)
    assert weight[0].item() == float("inf") and bool((weight[1:] > 0).all())

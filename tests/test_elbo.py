"""Tests for course_ddpm.elbo: Luo 2022's two forms of the ELBO, on continuous toy data.

Checked against closed forms, torch.distributions, the bits/dim terms of course_ddpm.bound,
a literal reading of Luo's eq. 45, and the exact log-density of the toy mixture of
course_ddpm.toy (whose optimal denoiser stands in for a trained network).
"""

import math

import pytest
import torch

from course_ddpm.bound import vb_term_bpd
from course_ddpm.elbo import (
    consistency_terms_as_printed,
    elbo_consistency_form,
    elbo_denoising_form,
    printed_excess_closed_form,
)
from course_ddpm.forward import q_step_mean_variance, q_trajectory
from course_ddpm.gaussian import normal_kl
from course_ddpm.reverse import p_mean_variance
from course_ddpm.schedules import cosine_schedule, linear_schedule
from course_ddpm.toy import GaussianMixture


pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops (tests/conftest.py)


LN2 = math.log(2.0)
MIXTURE = GaussianMixture((0.3, 0.7), (-0.5, 0.4), (0.15, 0.25))


def standard_error(x: torch.Tensor) -> float:
    return (x.std() / math.sqrt(x.numel())).item()


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
    traj, consistency, denoising = luo_estimates(s, x0, g)
    diff = consistency.elbo - denoising.elbo  # measured: 0.01 +- 0.02 nats
    assert abs(diff.mean().item()) < 4 * standard_error(diff)
    assert consistency.consistency.shape == denoising.denoising_matching.shape == (4000, 49)
    # The prior matching terms in closed form: KL(N(m, v) || N(0, 1)) = 0.5 (m^2 + v - 1 - log v).
    a, alpha_T, beta_T = s.alpha_bar[-1].item(), s.alpha[-1].item(), s.beta[-1].item()
    from_x0 = 0.5 * (a * x0**2 + (1 - a) - 1 - math.log(1 - a))  # q(x_T | x_0)
    from_x_prev = 0.5 * (alpha_T * traj[s.T - 1] ** 2 + beta_T - 1 - math.log(beta_T))  # q(x_T | x_{T-1})
    torch.testing.assert_close(denoising.prior_matching, from_x0.sum(1))
    torch.testing.assert_close(consistency.prior_matching, from_x_prev.sum(1))


def test_both_forms_at_a_single_step_are_decoder_density_minus_prior_kl():
    """T = 1: ELBO = log N(x0; x0_pred(x_1), beta_1) - KL(N(sqrt(alpha_1) x0, beta_1) || N(0, 1)).

    No consistency or denoising terms are left, and both forms reduce to this; checked
    against torch.distributions for each of 10 draws.
    """
    s = linear_schedule(1, beta_start=0.9, beta_end=0.9, warn=False)
    x0 = MIXTURE.sample((10, 3), generator=torch.Generator().manual_seed(11))
    traj, consistency, denoising = luo_estimates(s, x0, torch.Generator().manual_seed(12))
    x1, alpha = traj[1], 0.1
    eps_pred = MIXTURE.optimal_eps(s, x1, torch.zeros(10, dtype=torch.long))
    x0_pred = (x1 - math.sqrt(1 - alpha) * eps_pred) / math.sqrt(alpha)
    decoder = torch.distributions.Normal(x0_pred, math.sqrt(0.9)).log_prob(x0).sum(1)
    prior = torch.distributions.kl_divergence(
        torch.distributions.Normal(math.sqrt(alpha) * x0, math.sqrt(0.9)), torch.distributions.Normal(0.0, 1.0)
    ).sum(1)
    for form in (consistency, denoising):
        torch.testing.assert_close(form.elbo, decoder - prior)
    assert consistency.consistency.shape == denoising.denoising_matching.shape == (10, 0)


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

    That integrates x_t as if independent of x_{t+1}: a false identity, not an estimator of
    the ELBO. Computed literally here (and by consistency_terms_as_printed), it is lower than
    the ELBO and noisier; measured at T = 25 (rescaled linear): about 13 nats, 0.54 nats per
    step, not the ~1 nat per step of T = 1000 (test_printed_excess_against_its_closed_form).
    elbo_consistency_form conditions x_t on both neighbours instead, and matches (see
    test_luo_forms_have_the_same_expectation).
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
    torch.testing.assert_close(consistency_terms_as_printed(s, traj, model).sum(1), literal)
    literal_elbo = consistency.reconstruction - consistency.prior_matching - literal
    gap = denoising.elbo - literal_elbo  # measured: about 13 nats for T = 25
    assert 0.4 * (s.T - 1) < gap.mean().item() < 0.7 * (s.T - 1)
    assert literal_elbo.var().item() > denoising.elbo.var().item()


def test_printed_excess_against_its_closed_form():
    """Near the optimum the printed KL exceeds the true term by 1/2 (2a - ln a), a = beta_t / beta_tilde_{t+1}.

    Holds for small steps (T = 200 rescaled: measured 0.96 vs 1.01 nats per step, averaged over
    steps), not for big ones (T = 25: measured 0.56, the closed form still 1.01).
    """
    g = torch.Generator().manual_seed(17)
    x0 = torch.full((2000, 1), 0.3, dtype=torch.float64)
    excess = {}
    for T in (25, 200):
        s = linear_schedule(T, rescale=True)
        traj, consistency, _ = luo_estimates(s, x0, g)
        measured = (consistency_terms_as_printed(s, traj, MIXTURE.eps_model(s)) - consistency.consistency).mean(0)
        excess[T] = measured.mean().item(), printed_excess_closed_form(s).mean().item()
    measured, closed = excess[200]
    assert abs(measured - closed) < 0.1, excess
    measured, closed = excess[25]
    assert measured < 0.75 * closed, excess


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

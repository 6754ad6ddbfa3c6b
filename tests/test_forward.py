"""Tests for course_ddpm.forward: q(x_t | x_0), its posterior and the parameterisations."""

import math

import pytest
import torch

from course_ddpm.forward import (
    eps_from_score,
    eps_from_x0,
    q_mean_variance,
    q_posterior,
    q_sample,
    q_trajectory,
    score_from_eps,
    x0_from_eps,
    x0_from_score,
)
from course_ddpm.schedules import cosine_schedule, linear_schedule


@pytest.fixture(scope="module")
def schedule():
    return linear_schedule(1000)


def test_q_sample_moments_match_closed_form(schedule):
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    for step in (0, 99, 500, 999):
        t = torch.full((n,), step)
        x_t = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64))
        ab = schedule.alpha_bar[step].item()
        se_mean = math.sqrt((1 - ab) / n)
        assert abs(x_t.mean().item() - math.sqrt(ab) * 0.7) < 5 * se_mean
        assert x_t.var().item() == pytest.approx(1 - ab, rel=0.02)
        mean, var = q_mean_variance(schedule, x0[:2], t[:2])
        assert mean[0, 0].item() == pytest.approx(math.sqrt(ab) * 0.7)
        assert var.shape == (2, 1) and var[0, 0].item() == pytest.approx(1 - ab)


def test_stepwise_chain_has_the_marginals_of_q_sample():
    """Composing T single steps q(x_t | x_{t-1}) gives q(x_t | x_0) (Ho et al. eq. 4)."""
    s = linear_schedule(50, rescale=True)
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((40_000, 1), -0.5, dtype=torch.float64)
    traj = q_trajectory(s, x0, g)
    assert traj.shape == (51, 40_000, 1)
    torch.testing.assert_close(traj[0], x0)
    for k in (1, 10, 50):
        ab = s.alpha_bar[k - 1].item()
        assert traj[k].mean().item() == pytest.approx(math.sqrt(ab) * -0.5, abs=0.02)
        assert traj[k].var().item() == pytest.approx(1 - ab, rel=0.03)


def test_q_posterior_equals_bayes_rule():
    """Product of Gaussians: q(x_{t-1}|x_t,x0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x0), computed independently."""
    s = cosine_schedule(200)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(64, 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = torch.randint(1, 200, (64,), generator=g)
    mu_tilde, beta_tilde = q_posterior(s, x0, x_t, t)

    a_t = s.alpha[t].unsqueeze(1)
    b_t = s.beta[t].unsqueeze(1)
    ab_prev = s.alpha_bar[t - 1].unsqueeze(1)
    # likelihood in x_{t-1}: N(x_t; sqrt(a_t) x_{t-1}, b_t)  -> precision a_t / b_t, mean x_t / sqrt(a_t)
    # prior: N(x_{t-1}; sqrt(ab_prev) x0, 1 - ab_prev)
    precision = a_t / b_t + 1 / (1 - ab_prev)
    mean = (math.sqrt(1) * a_t.sqrt() * x_t / b_t + ab_prev.sqrt() * x0 / (1 - ab_prev)) / precision
    torch.testing.assert_close(mu_tilde, mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(beta_tilde.expand_as(mean), (1 / precision).expand_as(mean), rtol=1e-10, atol=1e-14)


def test_q_posterior_at_first_step_is_x0():
    s = cosine_schedule(10)
    x0 = torch.randn(4, 2, dtype=torch.float64)
    mu, var = q_posterior(s, x0, torch.randn(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(mu, x0)
    assert bool((var == 0).all())


def test_parameterisations_are_consistent(schedule):
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(8, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (8,), generator=g)
    x_t = q_sample(schedule, x0, t, eps)
    torch.testing.assert_close(x0_from_eps(schedule, x_t, t, eps), x0, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(eps_from_x0(schedule, x_t, t, x0), eps, rtol=1e-9, atol=1e-9)
    score = score_from_eps(schedule, t, eps)
    torch.testing.assert_close(eps_from_score(schedule, t, score), eps)
    torch.testing.assert_close(x0_from_score(schedule, x_t, t, score), x0, rtol=1e-7, atol=1e-7)


def test_score_of_a_point_mass_is_the_gaussian_score(schedule):
    """For data at a single point c, q(x_t) = N(sqrt(ab) c, 1 - ab): its score is -(x - sqrt(ab) c)/(1 - ab)."""
    c, t = 0.3, torch.tensor([250, 250])
    x_t = torch.tensor([[0.1], [-1.2]], dtype=torch.float64)
    ab = schedule.alpha_bar[250].item()
    eps = eps_from_x0(schedule, x_t, t, torch.full_like(x_t, c))
    expected = -(x_t - math.sqrt(ab) * c) / (1 - ab)
    torch.testing.assert_close(score_from_eps(schedule, t, eps), expected)


def test_bad_inputs(schedule):
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="shape mismatch: x0"):
        q_sample(schedule, x0, torch.tensor([1, 2]), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="x0 must be a float tensor"):
        q_sample(schedule, torch.zeros(2, 3, dtype=torch.long), torch.tensor([1, 2]), x0)
    with pytest.raises(ValueError, match="batch size"):
        q_sample(schedule, x0, torch.tensor([1, 2, 3]), x0)
    with pytest.raises(ValueError, match=r"\[0, T\)"):
        q_posterior(schedule, x0, x0, torch.tensor([0, 1000]))

"""Tests for course_ddpm.ode: the probability-flow ODE against the Gaussian's affine flow, DDIM and its NFE."""

import math

import pytest
import torch

from course_ddpm.ddim import ddim_step
from course_ddpm.ode import ddim_variables, ode_drift, ode_sample, solve_flow
from course_ddpm.sampling import sample
from course_ddpm.schedules import linear_schedule
from course_ddpm.sde import VPSDE, score_of_mixture
from course_ddpm.toy import GaussianMixture

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULE = linear_schedule(1000)
SDE = VPSDE.from_schedule(SCHEDULE)
MIXTURE = GaussianMixture((0.3, 0.7), (-0.8, 0.6), (0.3, 0.4))


def test_flow_of_a_gaussian_is_the_affine_map_between_its_marginals():
    """For p_0 = N(m, s^2), p_t = N(sqrt(ab) m, ab s^2 + 1 - ab) and the flow is x_t = mu_t + sqrt(v_t / v_0) (x_0 - m)."""
    m, s = 0.4, 0.3
    gaussian = GaussianMixture.gaussian(m, s)
    x0 = torch.linspace(-1, 1.5, 7, dtype=torch.float64)[:, None]
    for t in (0.3, 1.0):
        end = solve_flow(SDE, score_of_mixture(SDE, gaussian), x0, 0.0, t, rtol=1e-9, atol=1e-9)
        ab = float(SDE.alpha_bar(t))
        closed = math.sqrt(ab) * m + math.sqrt((ab * s**2 + 1 - ab) / s**2) * (x0 - m)
        assert torch.allclose(end.x, closed, atol=1e-6)
        back = solve_flow(SDE, score_of_mixture(SDE, gaussian), end.x, t, 0.0, rtol=1e-9, atol=1e-9)
        assert torch.allclose(back.x, x0, atol=1e-6)  # the flow is invertible


def test_ddim_step_is_euler_in_x_bar_and_sigma():
    """x_prev / sqrt(ab_prev) = x_t / sqrt(ab_t) + (sigma_prev - sigma_t) eps_pred (DDIM eq. 14), eta = 0."""
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(5, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 3, generator=g, dtype=torch.float64)
    ab = SCHEDULE.alpha_bar_or_one
    for t, t_prev in ((999, 979), (500, 100), (20, -1)):
        x_prev = ddim_step(SCHEDULE, x_t, t, t_prev, eps, clip_x0=False).x_prev
        sigma, sigma_prev = (((1 - ab[k + 1]) / ab[k + 1]).sqrt() for k in (t, t_prev))
        euler = x_t / ab[t + 1].sqrt() + (sigma_prev - sigma) * eps
        assert torch.allclose(x_prev / ab[t_prev + 1].sqrt(), euler, rtol=1e-12, atol=1e-12)


def test_in_ddim_variables_the_ode_reads_dx_bar_dsigma_equals_eps():
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    score_fn = score_of_mixture(SDE, MIXTURE)
    for t in (0.05, 0.5, 0.9):
        t_vec = torch.full((4,), t, dtype=torch.float64)
        h = 1e-6
        x_bar, sigma = ddim_variables(SDE, x, t_vec)
        x_bar_h, sigma_h = ddim_variables(SDE, x + h * ode_drift(SDE, score_fn, x, t_vec), t_vec + h)
        eps = -(1 - SDE.alpha_bar(t)).sqrt() * score_fn(x, t_vec)
        assert torch.allclose((x_bar_h - x_bar) / (sigma_h - sigma)[:, None], eps, rtol=1e-4, atol=1e-5)


def test_ddim_with_many_steps_converges_to_the_ode_endpoint():
    """DDIM (eta = 0) from the same x_T approaches the ODE solution like Euler's method, error ~ 1/K."""
    x_T = torch.randn(200, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ode = solve_flow(SDE, score_of_mixture(SDE, MIXTURE), x_T, 1.0, 0.0, rtol=1e-8, atol=1e-8)
    errors = []
    for K in (50, 200, 1000):
        ddim = sample(MIXTURE.eps_model(SCHEDULE), SCHEDULE, x_T.shape, num_inference_steps=K, x_T=x_T,
                      clip_x0=False, progress=False, dtype=torch.float64).samples  # fmt: skip
        errors.append(float((ddim - ode.x).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert 3 < errors[1] / errors[2] < 7  # first order: 5x the steps, about 5x smaller
    assert errors[2] < 0.01


def test_ode_sample_counts_network_calls_and_matches_the_flow():
    calls = []
    eps_model = MIXTURE.eps_model(SCHEDULE)

    def model(x, t):
        calls.append(1)
        return eps_model(x, t)

    x_T = torch.randn(50, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    result = ode_sample(model, SDE, x_T.shape, x_T=x_T, rtol=1e-6, atol=1e-6, clip_x0=False)
    assert result.nfe == len(calls)
    exact = solve_flow(SDE, score_of_mixture(SDE, MIXTURE), x_T, 1.0, 0.0, rtol=1e-8, atol=1e-8)
    assert float((result.x - exact.x).abs().max()) < 0.01  # network asked at grid indices only
    loose = ode_sample(model, SDE, x_T.shape, x_T=x_T, rtol=1e-2, atol=1e-2, clip_x0=False)
    assert loose.nfe < result.nfe

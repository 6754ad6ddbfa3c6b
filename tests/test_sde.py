"""Tests for course_ddpm.sde: the VP-SDE of a discrete schedule, its OU transitions, Euler--Maruyama.

Against closed forms: the linear schedule's straight-line beta(t) and its Gaussian integral,
the discrete chain's alpha_bar (first order in beta), the OU transition density against a
simulation, DDPM's step against the Euler--Maruyama step, and the reverse SDE with the toy
mixture's exact score against the mixture's moments.
"""

import math

import pytest
import torch

from course_ddpm.forward import q_step_mean_variance
from course_ddpm.schedules import cosine_schedule, linear_schedule
from course_ddpm.sde import VPSDE, reverse_sde_sample, score_from_model, score_of_mixture
from course_ddpm.toy import GaussianMixture

pytestmark = pytest.mark.usefixtures("one_thread")

LINEAR = VPSDE.from_schedule(linear_schedule(1000))
MIXTURE = GaussianMixture((0.3, 0.7), (-0.8, 0.6), (0.3, 0.4))


def test_linear_schedule_gives_song_et_al_straight_line():
    """beta(t) = beta_min + t (beta_max - beta_min) and alpha_bar(t) = exp(-beta_min t - (beta_max - beta_min) t^2 / 2)."""
    T, b1, bT = 1000, 1e-4, 0.02
    slope = T * (bT - b1) * T / (T - 1)  # knots T beta_k at (k + 1/2) / T, beta_k linear in k
    beta_min = T * b1 - slope / (2 * T)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert torch.allclose(LINEAR.beta(t), beta_min + slope * t, rtol=1e-12)
    closed = torch.exp(-(beta_min * t + slope * t**2 / 2))
    assert torch.allclose(LINEAR.alpha_bar(t), closed, rtol=1e-10)


@pytest.mark.parametrize("schedule", [linear_schedule(1000), cosine_schedule(1000), linear_schedule(200, rescale=True)])
def test_integral_matches_quadrature(schedule):
    sde = VPSDE.from_schedule(schedule)
    t = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    beta = sde.beta(t)
    quad = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum((beta[1:] + beta[:-1]) / 2 * (t[1] - t[0]), 0)])
    idx = torch.arange(0, 200_001, 10_000)
    assert torch.allclose(sde.integral(t[idx]), quad[idx], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("T", [500, 1000, 2000])
def test_discrete_marginals_agree_to_first_order_in_beta(T):
    """log alpha_bar(t_k) - log prod(1 - beta_j) = -sum (beta_j + log(1 - beta_j)) = sum beta_j^2 / 2 + O(beta^3)."""
    schedule = linear_schedule(T, rescale=True)
    sde = VPSDE.from_schedule(schedule)
    k = torch.arange(T)
    gap = sde.alpha_bar(sde.time_of_index(k)).log() - schedule.alpha_bar.log()  # (T,)
    second_order = torch.cumsum(schedule.beta**2, 0) / 2
    assert torch.allclose(gap, second_order, rtol=0.05, atol=1e-12)
    assert float(gap.abs().max()) < float((schedule.beta**2).sum())  # halves when T doubles


def test_ddpm_step_is_euler_maruyama_to_first_order():
    schedule = LINEAR.schedule
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for k in (0, 400, 999):
        mean, var = q_step_mean_variance(schedule, x, torch.full((64,), k))
        ddpm = mean + var.sqrt() * z
        em = LINEAR.forward_step(x, (k + 0.5) / 1000, 1 / 1000, z)
        beta = float(schedule.beta[k])
        assert float((ddpm - em).abs().max()) <= beta**2 * float(x.abs().max())  # sqrt(1-b) = 1 - b/2 + O(b^2)
        assert float((ddpm - em).abs().max()) > 0


def test_transition_density_against_simulation():
    """Euler--Maruyama from x_s = 1.5 at s = 0.2 to t = 0.6 against N(sqrt(ab_t/ab_s) x_s, 1 - ab_t/ab_s)."""
    g = torch.Generator().manual_seed(2)
    n, steps, s, t = 20_000, 400, 0.2, 0.6
    x = torch.full((n, 1), 1.5, dtype=torch.float64)
    dt = (t - s) / steps
    for i in range(steps):
        x = LINEAR.forward_step(x, s + (i + 0.5) * dt, dt, torch.randn(n, 1, generator=g, dtype=torch.float64))
    mean, var = LINEAR.transition(torch.full((1, 1), 1.5, dtype=torch.float64), s, t)
    se_mean, se_var = math.sqrt(var.item() / n), var.item() * math.sqrt(2 / n)
    assert abs(x.mean().item() - mean.item()) < 4 * se_mean + 1e-3
    assert abs(x.var().item() - var.item()) < 4 * se_var + 1e-3
    m0, v0 = LINEAR.marginal(torch.ones(1, 1, dtype=torch.float64), t)
    assert m0.item() ** 2 == pytest.approx(LINEAR.alpha_bar(t).item()) and v0.item() == pytest.approx(1 - m0.item() ** 2)


def test_reverse_sde_with_exact_score_samples_the_mixture():
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(8000, 1, generator=g, dtype=torch.float64)
    x0 = reverse_sde_sample(LINEAR, score_of_mixture(LINEAR, MIXTURE), x_T, 500, generator=g)
    w, m, s = (torch.tensor(v, dtype=torch.float64) for v in (MIXTURE.weights, MIXTURE.means, MIXTURE.stds))
    mean = (w * m).sum()
    var = (w * (s**2 + m**2)).sum() - mean**2
    assert abs(x0.mean() - mean) < 4 * math.sqrt(var / 8000) + 0.01
    assert abs(x0.var() - var) < 4 * var * math.sqrt(2 / 8000) + 0.02
    left = (w * torch.special.ndtr(-m / s)).sum()  # P(x0 < 0)
    assert abs((x0 < 0).double().mean() - left) < 4 * math.sqrt(left * (1 - left) / 8000) + 0.01


def test_score_from_model_asks_the_nearest_index_and_applies_tweedie():
    asked = []

    def model(x, k):
        asked.append(k.clone())
        return torch.ones_like(x)

    t = torch.tensor([0.0, 0.0004, 0.0016, 0.5, 1.0], dtype=torch.float64)
    x = torch.zeros(5, 2, dtype=torch.float64)
    score = score_from_model(LINEAR, model)(x, t)
    assert asked[0].tolist() == [0, 0, 1, 499, 999]
    assert torch.allclose(score[:, 0], -1 / (1 - LINEAR.alpha_bar(t)).sqrt())
    k = torch.arange(1000)
    assert torch.equal(LINEAR.code_index(LINEAR.time_of_index(k)), k)


def test_checks():
    with pytest.raises(ValueError, match="must lie in"):
        LINEAR.beta(1.5)
    with pytest.raises(ValueError):
        VPSDE.from_schedule(linear_schedule(1, warn=False))
    with pytest.raises(ValueError, match="too short"):
        VPSDE.from_schedule(linear_schedule(50, rescale=True))
    with pytest.raises(ValueError, match="t_end"):
        reverse_sde_sample(LINEAR, score_of_mixture(LINEAR, MIXTURE), torch.zeros(2, 1), 5, t_end=1.0)

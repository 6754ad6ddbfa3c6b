"""Tests for course_ddpm.losses: L_simple and the weights that turn each KL term into an MSE.

Each weight is checked against the KL it stands for, computed by course_ddpm.gaussian's
normal_kl (or the bound's term), for noise predictions that are off by a random amount.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from course_ddpm.bound import vb_term_bpd
from course_ddpm.forward import q_posterior, q_sample
from course_ddpm.gaussian import gaussian_log_likelihood, normal_kl
from course_ddpm.losses import l_simple, weighted_eps_mse_coefficient, weighted_x0_mse_coefficient
from course_ddpm.reverse import p_mean_variance
from course_ddpm.schedules import cosine_schedule, linear_schedule


pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops (tests/conftest.py)


LN2 = math.log(2.0)


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


# --- Weights of the bound's terms ---------------------------------------------------


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



def test_weighted_x0_mse_coefficient_equals_the_kl():
    """KL(q(x_{t-1}|x_t,x0) || p_theta) = 1/2 (SNR(t-1) - SNR(t)) ||x0 - x0_pred||^2 for sigma^2 = beta_tilde."""
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

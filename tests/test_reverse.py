"""Tests for course_ddpm.reverse: p_theta(x_{t-1} | x_t) from a noise prediction."""

import pytest
import torch

from course_ddpm.forward import q_posterior, q_sample
from course_ddpm.reverse import log_sigma2, p_mean_variance, sigma2
from course_ddpm.schedules import linear_schedule


def test_mean_matches_ho_eq_11():
    """mu_theta = 1/sqrt(alpha_t) (x_t - beta_t/sqrt(1-alpha_bar_t) eps_pred), written out by hand."""
    s = linear_schedule(100, rescale=True)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(16, 1, 3, 3, generator=g, dtype=torch.float64)
    eps_pred = torch.randn(x_t.shape, generator=g, dtype=torch.float64)
    t = torch.randint(0, 100, (16,), generator=g)
    out = p_mean_variance(s, x_t, t, eps_pred)
    a, b, ab = (v[t].view(-1, 1, 1, 1) for v in (s.alpha, s.beta, s.alpha_bar))
    expected = (x_t - b / (1 - ab).sqrt() * eps_pred) / a.sqrt()
    torch.testing.assert_close(out.mean, expected, rtol=1e-9, atol=1e-9)


def test_true_noise_gives_the_forward_posterior():
    s = linear_schedule(100, rescale=True)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(8, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.randint(0, 100, (8,), generator=g)
    x_t = q_sample(s, x0, t, eps)
    out = p_mean_variance(s, x_t, t, eps)
    mu_tilde, beta_tilde = q_posterior(s, x0, x_t, t)
    torch.testing.assert_close(out.mean, mu_tilde, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(out.variance, beta_tilde)
    torch.testing.assert_close(out.x0_pred, x0, rtol=1e-8, atol=1e-8)


def test_variances_and_clipping():
    s = linear_schedule(50, rescale=True)
    torch.testing.assert_close(sigma2(s, "fixed_small"), s.beta_tilde)
    torch.testing.assert_close(sigma2(s, "fixed_large"), s.beta)
    for kind in ("fixed_small", "fixed_large"):
        log_var = log_sigma2(s, kind)
        assert torch.isfinite(log_var).all()
        assert log_var[0].item() == pytest.approx(s.beta_tilde[1].log().item())
        torch.testing.assert_close(log_var[1:], sigma2(s, kind)[1:].log())
    x_t = torch.full((2, 1), 5.0, dtype=torch.float64)
    out = p_mean_variance(s, x_t, torch.tensor([3, 3]), torch.zeros_like(x_t), clip_x0=True)
    assert out.x0_pred.max().item() == 1.0
    with pytest.raises(ValueError, match="variance_type"):
        sigma2(s, "learned")

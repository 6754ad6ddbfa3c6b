"""course_ddpm.failure_modes: each mistake, run through the package's sampler, is the formula written wrong by hand."""

from __future__ import annotations

import torch

from course_ddpm.ddpm import ddpm_step
from course_ddpm.failure_modes import alpha_for_alpha_bar, variance_for_std
from course_ddpm.schedules import linear_schedule


def test_variance_for_std_adds_sigma_squared_times_z():
    schedule = linear_schedule(100, rescale=True)
    g = torch.Generator().manual_seed(0)
    x_t, eps, z = (torch.randn(6, 2, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([1, 5, 20, 50, 80, 99])
    wrong = ddpm_step(variance_for_std(schedule), x_t, t, eps, noise=z, clip_x0=False).x_prev
    right = ddpm_step(schedule, x_t, t, eps, noise=torch.zeros_like(z), clip_x0=False).x_prev  # the mean
    sigma2 = schedule.beta_tilde[t][:, None]  # (6, 1): the variance of Algorithm 2's sigma_t z
    torch.testing.assert_close(wrong, right + sigma2 * z)
    torch.testing.assert_close(variance_for_std(schedule).alpha_bar, schedule.alpha_bar)  # nothing else changes


def test_alpha_for_alpha_bar_is_eq_11_with_alpha_in_the_eps_coefficient():
    schedule = linear_schedule(100, rescale=True)
    g = torch.Generator().manual_seed(1)
    x_t, eps = (torch.randn(5, 2, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([0, 3, 30, 60, 99])

    def model(x, t, y=None):
        return eps

    eps_wrong = alpha_for_alpha_bar(model, schedule)(x_t, t)
    x_prev = ddpm_step(schedule, x_t, t, eps_wrong, noise=torch.zeros_like(x_t), clip_x0=False).x_prev
    alpha, beta = schedule.alpha[t][:, None], schedule.beta[t][:, None]
    by_hand = (x_t - beta / (1 - alpha).sqrt() * eps) / alpha.sqrt()  # eq. 11 with alpha for alpha_bar
    torch.testing.assert_close(x_prev, by_hand)
    torch.testing.assert_close(eps_wrong[0], eps[0])  # at code t = 0, alpha_bar = alpha: no mistake

"""Tests for course_ddpm.ddpm: the DDPM ancestral step (Ho et al. 2020, Algorithm 2).

The step's mean is checked against the forward posterior of Ho et al. eq. 7 (computed by
:func:`course_ddpm.forward.q_posterior`), its noise against sigma_t z with z = 0 at the
last step, and per-sample time indices against separate calls. Parity with diffusers'
``DDPMScheduler.step`` is in test_diffusers_parity.py; whole DDPM chains against their
closed form are in test_sampling.py.
"""

from __future__ import annotations

import pytest
import torch

from course_ddpm.ddpm import ddpm_step
from course_ddpm.forward import q_posterior
from course_ddpm.schedules import linear_schedule

pytestmark = pytest.mark.usefixtures("one_thread")

SCHED = linear_schedule(250, rescale=True)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_ddpm_step_mean_is_posterior_mean_and_last_step_is_noiseless():
    g = _gen(2)
    x_t, eps_pred, z = torch.randn(3, 6, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 0, 3, 3, 100, 249])
    out = ddpm_step(SCHED, x_t, t, eps_pred, variance_type="fixed_large", noise=z, clip_x0=False)
    mu, _ = q_posterior(SCHED, out.x0_pred, x_t, t)
    sigma = SCHED.beta[t].sqrt().unsqueeze(1) * (t > 0).unsqueeze(1)  # z = 0 where t = 0
    torch.testing.assert_close(out.x_prev, mu + sigma * z)
    # per-sample t gives the same rows as separate calls with int t
    for i in range(6):
        rows = slice(i, i + 1)
        row = ddpm_step(SCHED, x_t[rows], int(t[i]), eps_pred[rows], variance_type="fixed_large", noise=z[rows],
                        clip_x0=False)  # fmt: skip
        torch.testing.assert_close(row.x_prev, out.x_prev[rows])


def test_ddpm_step_clips_x0_pred_by_default():
    # x0_pred = (x_t - sqrt(1 - ab) eps) / sqrt(ab) far outside [-1, 1]: clipped unless asked not to
    x_t = torch.tensor([[3.0, -3.0]], dtype=torch.float64)
    eps_pred = torch.zeros_like(x_t)
    clipped = ddpm_step(SCHED, x_t, 100, eps_pred, noise=torch.zeros_like(x_t))
    raw = ddpm_step(SCHED, x_t, 100, eps_pred, noise=torch.zeros_like(x_t), clip_x0=False)
    torch.testing.assert_close(clipped.x0_pred, torch.tensor([[1.0, -1.0]], dtype=torch.float64))
    torch.testing.assert_close(raw.x0_pred, x_t / SCHED.alpha_bar[100].sqrt())
    mu, _ = q_posterior(SCHED, clipped.x0_pred, x_t, torch.tensor([100]))
    torch.testing.assert_close(clipped.x_prev, mu)


def test_ddpm_step_draws_z_only_when_some_t_is_positive():
    x = torch.zeros(4, 3, dtype=torch.float64)
    g = _gen(0)
    ddpm_step(SCHED, x, 0, x, generator=g)  # last step: nothing drawn
    assert torch.equal(torch.randn(2, generator=g), torch.randn(2, generator=_gen(0)))
    out = ddpm_step(SCHED, x, 5, x, generator=_gen(1), variance_type="fixed_large")
    z = torch.randn(4, 3, generator=_gen(1), dtype=torch.float64)
    torch.testing.assert_close(out.x_prev, SCHED.beta[5].sqrt() * z)


def test_ddpm_step_rejects_bad_arguments():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="t must lie in"):
        ddpm_step(SCHED, x, 250, x)
    with pytest.raises(TypeError, match="t must hold integer"):
        ddpm_step(SCHED, x, torch.tensor([1.0, 2.0]), x)
    with pytest.raises(ValueError, match="shape mismatch"):
        ddpm_step(SCHED, x, 3, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="variance_type"):
        ddpm_step(SCHED, x, 3, x, variance_type="learned")

"""Tests for course_ddpm.ddim: the DDIM step, its sigma, its inversion, timesteps and slerp.

* DDIM with eta = 1 on the full grid is DDPM with sigma^2 = beta_tilde (Song et al. eq. 16),
  checked against :func:`course_ddpm.ddpm.ddpm_step` and empirically;
* with one eps for both directions, the inversion step undoes the step exactly;
* timesteps follow the closed forms of their spacings; slerp stays on the sphere.

Parity with diffusers' ``DDIMScheduler`` / ``DDIMInverseScheduler`` is in
test_diffusers_parity.py; whole DDIM chains are in test_sampling.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from course_ddpm.ddim import ddim_invert_step, ddim_sigma, ddim_step, slerp, timesteps
from course_ddpm.ddpm import ddpm_step
from course_ddpm.reverse import p_mean_variance
from course_ddpm.schedules import cosine_schedule, linear_schedule

pytestmark = pytest.mark.usefixtures("one_thread")

SCHED = linear_schedule(250, rescale=True)  # short chain that still ends near pure noise


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -------------------------------------------------------------- DDIM eta=1 is DDPM
@pytest.mark.parametrize("schedule", [SCHED, cosine_schedule(100)], ids=["linear", "cosine"])
def test_ddim_eta1_full_grid_variance_is_beta_tilde(schedule):
    t = torch.arange(schedule.T)
    sigma = ddim_sigma(schedule, t, t - 1, eta=1.0)
    torch.testing.assert_close(sigma**2, schedule.beta_tilde, rtol=1e-12, atol=1e-15)
    assert ddim_sigma(schedule, 5, 4, eta=0.0).item() == 0.0


@pytest.mark.parametrize("schedule", [SCHED, cosine_schedule(100)], ids=["linear", "cosine"])
def test_ddim_eta1_full_grid_step_equals_ddpm_fixed_small_step(schedule):
    B = 4
    g = _gen(0)
    x_t = torch.randn(B, 3, generator=g, dtype=torch.float64)
    for t in [schedule.T - 1, schedule.T // 2, 1, 0]:
        eps_pred, z = torch.randn(2, B, 3, generator=g, dtype=torch.float64)
        for clip_x0 in (False, True):
            ddim = ddim_step(schedule, x_t, t, t - 1, eps_pred, eta=1.0, noise=z, clip_x0=clip_x0)
            ddpm = ddpm_step(schedule, x_t, t, eps_pred, variance_type="fixed_small", noise=z, clip_x0=clip_x0)
            torch.testing.assert_close(ddim.x_prev, ddpm.x_prev, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(ddim.x0_pred, ddpm.x0_pred)


def test_ddim_eta1_step_variance_empirically():
    # Many draws of one step from fixed (x_t, eps_pred): Var[x_prev] = beta_tilde_t, mean = DDPM mean.
    n, t = 200_000, 40
    x_t = torch.full((n, 1), 0.7, dtype=torch.float64)
    eps_pred = torch.full((n, 1), -0.3, dtype=torch.float64)
    x_prev = ddim_step(SCHED, x_t, t, t - 1, eps_pred, eta=1.0, generator=_gen(1), clip_x0=False).x_prev
    beta_tilde = SCHED.beta_tilde[t].item()
    assert abs(x_prev.var().item() / beta_tilde - 1) < 5 * math.sqrt(2 / n)
    mean = p_mean_variance(SCHED, x_t[:1], torch.tensor([t]), eps_pred[:1]).mean.item()
    assert abs(x_prev.mean().item() - mean) < 5 * math.sqrt(beta_tilde / n)


# ------------------------------------------------------------------ inversion, clipping
def test_ddim_invert_step_undoes_ddim_step_with_the_same_eps():
    # With one eps for both directions, eq. 12 (sigma = 0) is exactly invertible.
    g = _gen(7)
    x_t, eps_pred = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    for t, t_prev in [(200, 150), (10, -1), (249, 0)]:
        down = ddim_step(SCHED, x_t, t, t_prev, eps_pred, clip_x0=False)
        up = ddim_invert_step(SCHED, down.x_prev, t_prev, t, eps_pred)
        torch.testing.assert_close(up.x_next, x_t, rtol=1e-9, atol=1e-9)


def test_ddim_invert_step_from_the_clean_end_per_sample():
    # t = -1 is the data itself (x0_pred = x_t); rows with t >= 0 first estimate x_0 (Ho et al. eq. 15).
    g = _gen(8)
    x_t, eps_pred = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    t, t_next = torch.tensor([-1, 0, 100]), torch.tensor([5, 5, 120])
    out = ddim_invert_step(SCHED, x_t, t, t_next, eps_pred)
    ab = SCHED.alpha_bar_or_one[t + 1].unsqueeze(1)  # 1 for t = -1
    ab_next = SCHED.alpha_bar[t_next].unsqueeze(1)
    x0_pred = (x_t - (1 - ab).sqrt() * eps_pred) / ab.sqrt()
    torch.testing.assert_close(out.x0_pred, x0_pred, rtol=1e-12, atol=1e-12)
    assert torch.equal(out.x0_pred[0], x_t[0])
    torch.testing.assert_close(out.x_next, ab_next.sqrt() * x0_pred + (1 - ab_next).sqrt() * eps_pred)


def test_ddim_clip_recomputes_eps_from_clipped_x0():
    x_t = torch.tensor([[3.0, 0.1]], dtype=torch.float64)
    eps_pred = torch.tensor([[-2.0, 0.2]], dtype=torch.float64)
    t, t_prev = 100, 50
    out = ddim_step(SCHED, x_t, t, t_prev, eps_pred)  # clip_x0=True by default
    assert out.x0_pred.abs().max() <= 1.0
    a, a_prev = SCHED.alpha_bar[t], SCHED.alpha_bar[t_prev]
    eps_clipped = (x_t - a.sqrt() * out.x0_pred) / (1 - a).sqrt()
    torch.testing.assert_close(out.x_prev, a_prev.sqrt() * out.x0_pred + (1 - a_prev).sqrt() * eps_clipped)
    raw = ddim_step(SCHED, x_t, t, t_prev, eps_pred, clip_x0=False)
    torch.testing.assert_close(raw.x_prev, a_prev.sqrt() * raw.x0_pred + (1 - a_prev).sqrt() * eps_pred)


def test_ddim_steps_reject_bad_arguments():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="t_prev must be smaller"):
        ddim_step(SCHED, x, 10, 10, x)
    with pytest.raises(ValueError, match="t_prev must lie in"):
        ddim_step(SCHED, x, 10, -2, x)
    with pytest.raises(ValueError, match="eta"):
        ddim_step(SCHED, x, 10, 5, x, eta=-1.0)
    with pytest.raises(ValueError, match="t_next must lie in"):
        ddim_invert_step(SCHED, x, 10, 250, x)


# ------------------------------------------------------------------ timesteps, slerp
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps_are_descending_distinct_in_range(spacing):
    for T in (1, 7, 250, 1000):
        for steps in sorted({n for n in (1, 2, 3, T // 3, T // 2, T - 1, T) if 1 <= n <= T}):
            ts = timesteps(T, steps, spacing)
            assert len(ts) == steps and all(a > b for a, b in zip(ts, ts[1:])) and 0 <= ts[-1] and ts[0] < T
        assert timesteps(T, T, spacing) == list(range(T - 1, -1, -1))


def test_timesteps_examples():
    assert timesteps(1000, 50, "leading")[:3] == [980, 960, 940] and timesteps(1000, 50, "leading")[-1] == 0
    assert timesteps(1000, 50, "trailing")[:2] == [999, 979] and timesteps(1000, 50, "trailing")[-1] == 19
    assert timesteps(1000, 4, "linspace") == [999, 666, 333, 0]
    with pytest.raises(ValueError, match="steps"):
        timesteps(10, 11)
    with pytest.raises(ValueError, match="spacing"):
        timesteps(10, 5, "quadratic")


def test_slerp():
    g = _gen(8)
    a, b = torch.randn(2, 1, 28, 28, generator=g, dtype=torch.float64)
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    path = slerp(a, b, torch.linspace(0, 1, 9))
    assert path.shape == (9, 1, 28, 28)
    # orthonormal pair: slerp is cos/sin of the angle, so the norm stays 1
    e1, e2 = torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
    e1[0, 0], e2[1, 1] = 1.0, 1.0
    mid = slerp(e1, e2, 0.5)
    torch.testing.assert_close(mid, (e1 + e2) / math.sqrt(2))
    torch.testing.assert_close(slerp(e1, e2, [0.25])[0], math.cos(math.pi / 8) * e1 + math.sin(math.pi / 8) * e2)
    torch.testing.assert_close(slerp(a, a, 0.3), a)  # parallel: falls back to the straight line
    with pytest.raises(ValueError, match="shape mismatch"):
        slerp(a, b[..., :5], 0.5)
    with pytest.raises(ValueError, match="lam"):
        slerp(a, b, [[0.5]])

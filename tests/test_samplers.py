"""Tests for course_ddpm.samplers.

The exact "trained network" is the optimal denoiser of toy data (course_ddpm.toy), so the
samplers are checked against what they must produce, not against our own outputs:

* on Gaussian data N(m, s^2) every sampler is an affine-Gaussian chain whose slope,
  offset and noise scale per step follow in closed form from the paper's equations; the
  sampler must follow that chain path by path (same random numbers), and its samples
  must be N(m, s^2) up to Monte Carlo and discretisation error;
* DDIM with eta = 1 on the full grid is DDPM with sigma^2 = beta_tilde (Song et al. eq. 16);
* DDIM with eta = 0 is deterministic, follows the straight path of a point mass exactly,
  and inverts (x_0 -> x_T -> x_0) up to its first-order discretisation error.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_ddpm.forward import q_posterior
from course_ddpm.reverse import p_mean_variance
from course_ddpm.samplers import (
    SampleResult,
    ddim_invert,
    ddim_invert_step,
    ddim_sigma,
    ddim_step,
    ddpm_step,
    sample,
    slerp,
    timesteps,
)
from course_ddpm.schedules import cosine_schedule, linear_schedule
from course_ddpm.toy import GaussianMixture

torch.set_num_threads(1)

SCHED = linear_schedule(250, rescale=True)  # short chain that still ends near pure noise
M, S = 0.5, 0.5  # the Gaussian data N(M, S^2)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sample(model, shape, seed=0, **kw) -> SampleResult:
    kw.setdefault("clip_x0", False)
    return sample(model, SCHED, shape, generator=_gen(seed), dtype=torch.float64, progress=False, **kw)


# --------------------------------------------------------------- Gaussian closed form
def gaussian_chain(schedule, m, s, ts, sampler, eta=0.0, variance="fixed_small"):
    """Per-step (slope, offset, sigma) of x_prev = slope * x + offset + sigma * z for data N(m, s^2).

    Written from the papers, independently of the package: with a = alpha_bar_t,
    v = a s^2 + 1 - a and u = x - sqrt(a) m, the optimal predictions are
    x0_pred = m + sqrt(a) s^2 u / v and eps_pred = sqrt(1 - a) u / v (Gaussian conditioning).
    """
    ab = schedule.alpha_bar.tolist()
    steps = []
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        a, a_prev = ab[t], (ab[t_prev] if t_prev >= 0 else 1.0)
        v = a * s * s + 1.0 - a
        x0_slope, x0_off = math.sqrt(a) * s * s / v, m - a * s * s * m / v  # x0_pred = slope x + off
        eps_slope, eps_off = math.sqrt(1.0 - a) / v, -math.sqrt(1.0 - a) * math.sqrt(a) * m / v
        if sampler == "ddim":  # Song et al. eq. 12 and 16
            sig2 = eta**2 * (1 - a_prev) / (1 - a) * (1 - a / a_prev)
            c_x0, c_eps = math.sqrt(a_prev), math.sqrt(max(1.0 - a_prev - sig2, 0.0))
            slope, off = c_x0 * x0_slope + c_eps * eps_slope, c_x0 * x0_off + c_eps * eps_off
        else:  # Ho et al. eq. 7 posterior mean with x0_pred; sigma^2 = beta_tilde or beta
            beta = 1.0 - a / a_prev
            c_x0, c_x = math.sqrt(a_prev) * beta / (1 - a), math.sqrt(1 - beta) * (1 - a_prev) / (1 - a)
            slope, off = c_x0 * x0_slope + c_x, c_x0 * x0_off
            sig2 = 0.0 if t == 0 else (beta * (1 - a_prev) / (1 - a) if variance == "fixed_small" else beta)
        steps.append((slope, off, math.sqrt(sig2)))
    return steps


def gaussian_chain_law(chain, mean=0.0, var=1.0):
    """Mean and std of the chain's output for x_T ~ N(mean, var)."""
    for slope, off, sigma in chain:
        mean, var = slope * mean + off, slope**2 * var + sigma**2
    return mean, math.sqrt(var)


SAMPLER_CASES = {
    "ddpm-fixed_small": dict(sampler="ddpm"),
    "ddpm-fixed_large": dict(sampler="ddpm", variance="fixed_large"),
    "ddim-eta0-100-trailing": dict(sampler="ddim", steps=100, spacing="trailing"),
    "ddim-eta1-100-trailing": dict(sampler="ddim", steps=100, spacing="trailing", eta=1.0),
    "ddim-eta0.5-50-leading": dict(sampler="ddim", steps=50, eta=0.5),
}


def _chain_for(kw):
    if kw["sampler"] == "ddpm":
        ts = list(range(SCHED.T - 1, -1, -1))
    else:
        ts = timesteps(SCHED.T, kw["steps"], kw.get("spacing", "leading"))
    return ts, gaussian_chain(SCHED, M, S, ts, kw["sampler"], kw.get("eta", 0.0), kw.get("variance", "fixed_small"))


@pytest.mark.parametrize("kw", SAMPLER_CASES.values(), ids=SAMPLER_CASES.keys())
def test_gaussian_data_sampler_follows_closed_form_chain_path_by_path(kw):
    # Same seed -> same x_T and z's (sample() draws x_T, then one z per noisy step, like diffusers).
    B = 500
    model = GaussianMixture.gaussian(M, S).eps_model(SCHED)
    out = _sample(model, (B, 1), seed=3, record=True, **kw)
    ts, chain = _chain_for(kw)
    assert out.timesteps == tuple(ts)
    g = _gen(3)
    xs = [torch.randn((B, 1), generator=g, dtype=torch.float64)]
    for t, (slope, off, sigma) in zip(ts, chain):
        draws = kw["sampler"] == "ddim" and kw.get("eta", 0.0) > 0 or kw["sampler"] == "ddpm" and t > 0
        z = torch.randn((B, 1), generator=g, dtype=torch.float64) if draws else 0.0
        xs.append(slope * xs[-1] + off + sigma * z)
    torch.testing.assert_close(out.trajectory, torch.stack(xs), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out.x0, xs[-1], rtol=1e-9, atol=1e-9)


# Discretisation: the chain's output std differs from S by a few percent at these step
# counts (computed by gaussian_chain_law; it shrinks as steps grow). DDIM eta=1 at 100
# steps loses ~7%: it is DDPM with sigma^2 = beta_tilde on a coarse grid.
MAX_REL_STD_BIAS = {"ddpm-fixed_small": 0.03, "ddpm-fixed_large": 0.01, "ddim-eta0-100-trailing": 0.035,
                    "ddim-eta1-100-trailing": 0.07, "ddim-eta0.5-50-leading": 0.07}


@pytest.mark.parametrize(
    "name", ["ddpm-fixed_small", "ddpm-fixed_large", "ddim-eta0-100-trailing", "ddim-eta1-100-trailing"]
)
def test_gaussian_data_is_reproduced(name):
    B = 20_000
    kw = SAMPLER_CASES[name]
    model = GaussianMixture.gaussian(M, S).eps_model(SCHED)
    x = _sample(model, (B, 1), seed=11, **kw).x0.squeeze(1)
    mean_se, std_se = S / math.sqrt(B), S / math.sqrt(2 * B)
    law_mean, law_std = gaussian_chain_law(_chain_for(kw)[1])
    # the discrete chain's law is close to N(M, S^2) ...
    assert abs(law_mean - M) < 0.01 and abs(law_std / S - 1) < MAX_REL_STD_BIAS[name]
    # ... and the samples have exactly that law, up to Monte Carlo error (5 SE) ...
    assert abs(x.mean().item() - law_mean) < 5 * mean_se
    assert abs(x.std().item() - law_std) < 5 * std_se
    # ... hence N(M, S^2) up to Monte Carlo + discretisation tolerance.
    assert abs(x.mean().item() - M) < 5 * mean_se + 0.01
    assert abs(x.std().item() - S) < 5 * std_se + MAX_REL_STD_BIAS[name] * S


def test_gaussian_chain_converges_to_data_as_steps_grow():
    # First-order samplers: the std bias of DDIM (eta 0 and 1) falls ~ like 1/steps.
    for eta in (0.0, 1.0):
        bias = []
        for steps in (25, 50, 125, 250):
            chain = gaussian_chain(SCHED, M, S, timesteps(SCHED.T, steps, "trailing"), "ddim", eta)
            bias.append(abs(gaussian_chain_law(chain)[1] / S - 1))
        assert all(b2 < 0.65 * b1 for b1, b2 in zip(bias, bias[1:])), bias


@pytest.mark.parametrize(
    "kw", [dict(sampler="ddpm"), dict(sampler="ddim", steps=100, spacing="trailing")], ids=["ddpm", "ddim"]
)
def test_two_component_mixture_is_reproduced(kw):
    # A single Gaussian with the mixture's mean 0.4 and std 0.94 would put ~33% of its mass
    # in the gap |x| < 0.4; the mixture puts ~0.1% there.
    B = 20_000
    mix = GaussianMixture((0.3, 0.7), (-1.0, 1.0), (0.2, 0.2))
    x = _sample(mix.eps_model(SCHED), (B, 1), seed=5, **kw).x0.squeeze(1)
    left, right = x[x < 0], x[x >= 0]
    assert abs(left.numel() / B - 0.3) < 0.02  # 6 SE of a binomial fraction
    assert (x.abs() < 0.4).double().mean().item() < 0.01
    assert abs(left.mean().item() + 1.0) < 0.03 and abs(right.mean().item() - 1.0) < 0.03
    assert abs(left.std().item() / 0.2 - 1) < 0.15 and abs(right.std().item() / 0.2 - 1) < 0.15


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
        ddim = ddim_step(schedule, x_t, t, t - 1, eps_pred, eta=1.0, noise=z)
        ddpm = ddpm_step(schedule, x_t, t, eps_pred, variance="fixed_small", noise=z)
        torch.testing.assert_close(ddim.x_prev, ddpm.x_prev, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ddim.x0_pred, ddpm.x0_pred)


def test_ddim_eta1_step_variance_empirically():
    # Many draws of one step from fixed (x_t, eps_pred): Var[x_prev] = beta_tilde_t, mean = DDPM mean.
    n, t = 200_000, 40
    x_t = torch.full((n, 1), 0.7, dtype=torch.float64)
    eps_pred = torch.full((n, 1), -0.3, dtype=torch.float64)
    x_prev = ddim_step(SCHED, x_t, t, t - 1, eps_pred, eta=1.0, generator=_gen(1)).x_prev
    beta_tilde = SCHED.beta_tilde[t].item()
    assert abs(x_prev.var().item() / beta_tilde - 1) < 5 * math.sqrt(2 / n)
    mean = p_mean_variance(SCHED, x_t[:1], torch.tensor([t]), eps_pred[:1]).mean.item()
    assert abs(x_prev.mean().item() - mean) < 5 * math.sqrt(beta_tilde / n)


def test_ddpm_step_mean_is_posterior_mean_and_last_step_is_noiseless():
    g = _gen(2)
    x_t, eps_pred, z = torch.randn(3, 6, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 0, 3, 3, 100, 249])
    out = ddpm_step(SCHED, x_t, t, eps_pred, variance="fixed_large", noise=z)
    mu, _ = q_posterior(SCHED, out.x0_pred, x_t, t)
    sigma = SCHED.beta[t].sqrt().unsqueeze(1) * (t > 0).unsqueeze(1)  # z = 0 where t = 0
    torch.testing.assert_close(out.x_prev, mu + sigma * z)
    # per-sample t gives the same rows as separate calls with int t
    for i in range(6):
        rows = slice(i, i + 1)
        row = ddpm_step(SCHED, x_t[rows], int(t[i]), eps_pred[rows], variance="fixed_large", noise=z[rows])
        torch.testing.assert_close(row.x_prev, out.x_prev[rows])


# ---------------------------------------------------------------- DDIM determinism
def test_ddim_eta0_is_deterministic_given_x_T():
    model = GaussianMixture((0.5, 0.5), (-1.0, 1.0), (0.3, 0.3)).eps_model(SCHED)
    x_T = torch.randn(64, 1, generator=_gen(0), dtype=torch.float64)
    a = _sample(model, (64, 1), seed=1, sampler="ddim", steps=20, x_T=x_T).x0
    b = _sample(model, (64, 1), seed=2, sampler="ddim", steps=20, x_T=x_T).x0
    assert torch.equal(a, b)
    c = _sample(model, (64, 1), seed=2, sampler="ddim", steps=20, eta=1.0, x_T=x_T).x0
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("steps", [1, 7, 250])
def test_ddim_eta0_with_exact_denoiser_of_a_point_follows_the_straight_path(steps):
    # Data = the single point c. The exact noise prediction is eps(x_t) = (x_t - sqrt(ab) c) / sqrt(1 - ab),
    # so x0_pred = c exactly, eps is conserved, and eq. 12 gives x_t = sqrt(ab_t) c + sqrt(1 - ab_t) eps_T.
    c = torch.tensor([[0.3, -0.8]], dtype=torch.float64)
    ab = SCHED.alpha_bar

    def exact_eps(x_t, t):
        a = ab[t].unsqueeze(1)
        return (x_t - a.sqrt() * c) / (1 - a).sqrt()

    x_T = torch.randn(16, 2, generator=_gen(4), dtype=torch.float64)
    out = _sample(exact_eps, (16, 2), sampler="ddim", steps=steps, x_T=x_T, record=True)
    eps_T = exact_eps(x_T, torch.full((16,), out.timesteps[0]))
    torch.testing.assert_close(out.x0, c.expand(16, 2), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.x0_preds, c.expand(steps, 16, 2), rtol=1e-10, atol=1e-10)
    for k, t in enumerate(out.timesteps[1:], start=1):
        torch.testing.assert_close(out.trajectory[k], ab[t].sqrt() * c + (1 - ab[t]).sqrt() * eps_T)


def test_ddim_eta0_decoding_of_gaussian_data_is_the_closed_form_affine_map():
    # eta = 0: x_0 = A x_T + B exactly, with A, B the product of the per-step closed forms.
    x_T = torch.linspace(-3, 3, 13, dtype=torch.float64).unsqueeze(1)
    model = GaussianMixture.gaussian(M, S).eps_model(SCHED)
    ts = timesteps(SCHED.T, 30, "linspace")
    x0 = _sample(model, x_T.shape, sampler="ddim", steps=30, spacing="linspace", x_T=x_T).x0
    expected = x_T.clone()
    for slope, off, sigma in gaussian_chain(SCHED, M, S, ts, "ddim"):
        assert sigma == 0.0
        expected = slope * expected + off
    torch.testing.assert_close(x0, expected, rtol=1e-10, atol=1e-10)


def test_ddim_inversion_round_trip_with_exact_denoiser():
    # Gaussian data: the DDIM ODE maps x_0 to x_T = sqrt(ab_T) m + sqrt(ab_T s^2 + 1 - ab_T) (x_0 - m) / s
    # (the monotone map between two 1-D Gaussians). Encoding, then decoding, returns x_0 up to
    # the first-order error of both Euler-type passes, which halves when the steps double.
    g = GaussianMixture.gaussian(M, S)
    model = g.eps_model(SCHED)
    x0 = g.sample((400, 1), generator=_gen(6))
    ab_T = SCHED.alpha_bar[-1].item()
    ode_x_T = math.sqrt(ab_T) * M + math.sqrt(ab_T * S**2 + 1 - ab_T) * (x0 - M) / S
    errors = []
    for steps in (125, 250):
        x_T = ddim_invert(model, SCHED, x0, steps=steps, spacing="trailing", progress=False)
        back = _sample(model, x0.shape, sampler="ddim", steps=steps, spacing="trailing", x_T=x_T).x0
        errors.append(((x_T - ode_x_T).abs().max().item(), (back - x0).abs().max().item()))
    (enc_125, rt_125), (enc_250, rt_250) = errors
    assert enc_250 < 0.03 and rt_250 < 0.04
    assert enc_250 < 0.65 * enc_125 and rt_250 < 0.65 * rt_125


def test_ddim_invert_step_undoes_ddim_step_with_the_same_eps():
    # With one eps for both directions, eq. 12 (sigma = 0) is exactly invertible.
    g = _gen(7)
    x_t, eps_pred = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    for t, t_prev in [(200, 150), (10, -1), (249, 0)]:
        down = ddim_step(SCHED, x_t, t, t_prev, eps_pred)
        up = ddim_invert_step(SCHED, down.x_prev, t_prev, t, eps_pred)
        torch.testing.assert_close(up.x_prev, x_t, rtol=1e-9, atol=1e-9)


def test_ddim_clip_recomputes_eps_from_clipped_x0():
    x_t = torch.tensor([[3.0, 0.1]], dtype=torch.float64)
    eps_pred = torch.tensor([[-2.0, 0.2]], dtype=torch.float64)
    t, t_prev = 100, 50
    out = ddim_step(SCHED, x_t, t, t_prev, eps_pred, clip_x0=True)
    assert out.x0_pred.abs().max() <= 1.0
    a, a_prev = SCHED.alpha_bar[t], SCHED.alpha_bar[t_prev]
    eps_clipped = (x_t - a.sqrt() * out.x0_pred) / (1 - a).sqrt()
    torch.testing.assert_close(out.x_prev, a_prev.sqrt() * out.x0_pred + (1 - a_prev).sqrt() * eps_clipped)


# ------------------------------------------------------------------ sample(): API
def test_same_seed_same_samples_and_record_shapes():
    model = GaussianMixture.gaussian(0.0, 0.5).eps_model(SCHED)
    for kw in (dict(sampler="ddpm"), dict(sampler="ddim", steps=10, eta=0.5)):
        a = _sample(model, (4, 1, 2, 3), seed=9, record=True, **kw)
        b = _sample(model, (4, 1, 2, 3), seed=9, **kw)
        c = _sample(model, (4, 1, 2, 3), seed=10, **kw)
        assert torch.equal(a.x0, b.x0) and not torch.equal(a.x0, c.x0)
        K = len(a.timesteps)
        assert K == (250 if kw["sampler"] == "ddpm" else 10)
        assert a.trajectory.shape == (K + 1, 4, 1, 2, 3) and a.x0_preds.shape == (K, 4, 1, 2, 3)
        assert torch.equal(a.trajectory[-1], a.x0)
        assert b.trajectory is None and b.x0_preds is None
    x_T = torch.randn(4, 1, 2, 3, dtype=torch.float64)
    assert torch.equal(_sample(model, x_T.shape, sampler="ddim", steps=3, x_T=x_T, record=True).trajectory[0], x_T)


def test_sample_default_dtype_and_clip():
    model = GaussianMixture.gaussian(0.0, 3.0).eps_model(SCHED)  # data far outside [-1, 1]
    out = sample(model, SCHED, (256, 1), sampler="ddim", steps=10, generator=_gen(0), progress=False, record=True)
    assert out.x0.dtype == torch.get_default_dtype()
    assert out.x0_preds.abs().max() <= 1.0 and out.x0.abs().max() <= 1.0  # clip_x0=True by default


class CountingConditionalModel(nn.Module):
    """eps of N(-1, 0.3^2) for y = 0, N(+1, 0.3^2) for y = 1, and their mixture for the null label 2."""

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"num_classes": 2})()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.per_class = [
            GaussianMixture.gaussian(-1.0, 0.3).eps_model(SCHED),
            GaussianMixture.gaussian(1.0, 0.3).eps_model(SCHED),
            GaussianMixture((0.5, 0.5), (-1.0, 1.0), (0.3, 0.3)).eps_model(SCHED),
        ]
        self.batch_sizes, self.modes, self.grad_enabled = [], [], []

    def forward(self, x_t, t, y=None):
        self.batch_sizes.append(x_t.shape[0])
        self.modes.append(self.training)
        self.grad_enabled.append(torch.is_grad_enabled())
        y = torch.full_like(t, 2) if y is None else y
        eps = [f(x_t, t) for f in self.per_class]
        mask = [(y == k).to(x_t.dtype).unsqueeze(1) for k in range(3)]
        return sum(m * e for m, e in zip(mask, eps))


@pytest.mark.parametrize("kw", [dict(sampler="ddpm"), dict(sampler="ddim", steps=25, eta=1.0)], ids=["ddpm", "ddim"])
def test_guidance_scale_0_is_unconditional_and_1_is_conditional(kw):
    model = CountingConditionalModel()
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    shape = (6, 1)
    uncond = _sample(model, shape, seed=1, y=torch.full_like(y, 2), **kw).x0
    cond = _sample(model, shape, seed=1, y=y, **kw).x0
    model.batch_sizes.clear()
    g0 = _sample(model, shape, seed=1, y=y, guidance_scale=0.0, **kw).x0
    assert set(model.batch_sizes) == {12}  # cond and uncond in one forward pass of 2B
    g1 = _sample(model, shape, seed=1, y=y, guidance_scale=1.0, null_label=2, **kw).x0
    torch.testing.assert_close(g0, uncond, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g1, cond, rtol=1e-10, atol=1e-10)
    g3 = _sample(model, shape, seed=1, y=y, guidance_scale=3.0, **kw).x0
    assert not torch.allclose(g3, cond)


def test_sample_runs_in_eval_mode_without_grad_and_restores_mode():
    model = CountingConditionalModel().train()
    _sample(model, (2, 1), sampler="ddim", steps=3)
    assert model.modes == [False] * 3 and model.grad_enabled == [False] * 3
    assert model.training
    model.eval()
    _sample(model, (2, 1), sampler="ddim", steps=3)
    assert not model.training


def test_model_errors_restore_training_mode():
    class Broken(CountingConditionalModel):
        def forward(self, x_t, t, y=None):
            return x_t[:1]

    model = Broken().train()
    with pytest.raises(ValueError, match="eps_pred of shape"):
        _sample(model, (2, 1), sampler="ddim", steps=3)
    assert model.training


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(sampler="ddim", eta=-0.1), ValueError, "eta"),
        (dict(sampler="ddim", eta=1.5), ValueError, "eta"),
        (dict(sampler="ddim", steps=251), ValueError, "steps"),
        (dict(sampler="ddim", steps=0), ValueError, "steps"),
        (dict(sampler="ddim", steps=2.0), TypeError, "steps"),
        (dict(sampler="ddpm", steps=50), ValueError, "sampler='ddim'"),
        (dict(sampler="ddpm", eta=0.5), ValueError, "eta"),
        (dict(sampler="euler"), ValueError, "sampler"),
        (dict(variance="learned"), ValueError, "variance"),
        (dict(sampler="ddim", spacing="uniform"), ValueError, "spacing"),
        (dict(x_T=torch.zeros(3, 2, dtype=torch.float64)), ValueError, "shape mismatch"),
        (dict(y=torch.tensor([0, 1])), ValueError, "y must have shape"),
        (dict(y=torch.tensor([0.0, 1.0, 0.0])), TypeError, "y must be an integer"),
        (dict(guidance_scale=2.0), ValueError, "needs class labels y"),
    ],
)
def test_sample_rejects_bad_arguments(kw, err, match):
    model = GaussianMixture.gaussian().eps_model(SCHED)
    with pytest.raises(err, match=match):
        sample(model, SCHED, (3, 1), progress=False, **kw)


def test_guidance_needs_a_null_label():
    model = GaussianMixture.gaussian().eps_model(SCHED)  # a plain function: no model.config
    with pytest.raises(ValueError, match="null_label"):
        sample(model, SCHED, (3, 1), y=torch.tensor([0, 1, 0]), guidance_scale=2.0, progress=False)


def test_step_functions_reject_bad_arguments():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="t_prev must be smaller"):
        ddim_step(SCHED, x, 10, 10, x)
    with pytest.raises(ValueError, match="t_prev must lie in"):
        ddim_step(SCHED, x, 10, -2, x)
    with pytest.raises(ValueError, match="t must lie in"):
        ddpm_step(SCHED, x, 250, x)
    with pytest.raises(TypeError, match="t must hold integer"):
        ddpm_step(SCHED, x, torch.tensor([1.0, 2.0]), x)
    with pytest.raises(ValueError, match="shape mismatch"):
        ddpm_step(SCHED, x, 3, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="variance"):
        ddpm_step(SCHED, x, 3, x, variance="learned")
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

"""Tests for course_ddpm.sampling: the sampling loop, the batched generator, DDIM inversion.

The exact "trained network" is the optimal denoiser of toy data (course_ddpm.toy), so the
samplers are checked against what they must produce, not against our own outputs:

* on Gaussian data N(m, s^2) every sampler is an affine-Gaussian chain whose slope,
  offset and noise scale per step follow in closed form from the paper's equations; the
  sampler must follow that chain path by path (same random numbers), and its samples
  must be N(m, s^2) up to Monte Carlo and discretisation error;
* DDIM with eta = 0 is deterministic, follows the straight path of a point mass exactly,
  and inverts (x_0 -> x_T -> x_0) up to its first-order discretisation error;
* :func:`generate` in batches gives what :func:`sample` gives in one batch from the same
  starting noise, for any image shape, with one label or one per image.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_ddpm.ddim import timesteps
from course_ddpm.sampling import SampleResult, ddim_invert, default_image_shape, generate, num_steps, sample
from course_ddpm.schedules import linear_schedule
from course_ddpm.toy import GaussianMixture

pytestmark = pytest.mark.usefixtures("one_thread")

SCHED = linear_schedule(250, rescale=True)  # short chain that still ends near pure noise
M, S = 0.5, 0.5  # the Gaussian data N(M, S^2)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sample(model, shape, seed=0, **kw) -> SampleResult:
    kw.setdefault("clip_x0", False)
    return sample(model, SCHED, shape, generator=_gen(seed), dtype=torch.float64, progress=False, **kw)


# --------------------------------------------------------------- Gaussian closed form
def gaussian_chain(schedule, m, s, ts, sampler, eta=0.0, variance_type="fixed_small"):
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
            sig2 = 0.0 if t == 0 else (beta * (1 - a_prev) / (1 - a) if variance_type == "fixed_small" else beta)
        steps.append((slope, off, math.sqrt(sig2)))
    return steps


def gaussian_chain_law(chain, mean=0.0, var=1.0):
    """Mean and std of the chain's output for x_T ~ N(mean, var)."""
    for slope, off, sigma in chain:
        mean, var = slope * mean + off, slope**2 * var + sigma**2
    return mean, math.sqrt(var)


SAMPLER_CASES = {
    "ddpm-fixed_small": dict(sampler="ddpm"),
    "ddpm-fixed_large": dict(sampler="ddpm", variance_type="fixed_large"),
    "ddim-eta0-100-trailing": dict(sampler="ddim", num_inference_steps=100, spacing="trailing"),
    "ddim-eta1-100-trailing": dict(sampler="ddim", num_inference_steps=100, spacing="trailing", eta=1.0),
    "ddim-eta0.5-50-leading": dict(sampler="ddim", num_inference_steps=50, eta=0.5),
}


def _chain_for(kw):
    if kw["sampler"] == "ddpm":
        ts = list(range(SCHED.T - 1, -1, -1))
    else:
        ts = timesteps(SCHED.T, kw["num_inference_steps"], kw.get("spacing", "leading"))
    variance_type = kw.get("variance_type", "fixed_small")
    return ts, gaussian_chain(SCHED, M, S, ts, kw["sampler"], kw.get("eta", 0.0), variance_type)


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
    torch.testing.assert_close(out.samples, xs[-1], rtol=1e-9, atol=1e-9)


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
    x = _sample(model, (B, 1), seed=11, **kw).samples.squeeze(1)
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
    "kw", [dict(sampler="ddpm"), dict(sampler="ddim", num_inference_steps=100, spacing="trailing")],
    ids=["ddpm", "ddim"],
)
def test_two_component_mixture_is_reproduced(kw):
    # A single Gaussian with the mixture's mean 0.4 and std 0.94 would put ~33% of its mass
    # in the gap |x| < 0.4; the mixture puts ~0.1% there.
    B = 20_000
    mix = GaussianMixture((0.3, 0.7), (-1.0, 1.0), (0.2, 0.2))
    x = _sample(mix.eps_model(SCHED), (B, 1), seed=5, **kw).samples.squeeze(1)
    left, right = x[x < 0], x[x >= 0]
    assert abs(left.numel() / B - 0.3) < 0.02  # 6 SE of a binomial fraction
    assert (x.abs() < 0.4).double().mean().item() < 0.01
    assert abs(left.mean().item() + 1.0) < 0.03 and abs(right.mean().item() - 1.0) < 0.03
    assert abs(left.std().item() / 0.2 - 1) < 0.15 and abs(right.std().item() / 0.2 - 1) < 0.15


# ---------------------------------------------------------------- DDIM determinism
def test_ddim_eta0_is_deterministic_given_x_T():
    model = GaussianMixture((0.5, 0.5), (-1.0, 1.0), (0.3, 0.3)).eps_model(SCHED)
    x_T = torch.randn(64, 1, generator=_gen(0), dtype=torch.float64)
    a = _sample(model, (64, 1), seed=1, sampler="ddim", num_inference_steps=20, x_T=x_T).samples
    b = _sample(model, (64, 1), seed=2, sampler="ddim", num_inference_steps=20, x_T=x_T).samples
    assert torch.equal(a, b)
    c = _sample(model, (64, 1), seed=2, sampler="ddim", num_inference_steps=20, eta=1.0, x_T=x_T).samples
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
    out = _sample(exact_eps, (16, 2), sampler="ddim", num_inference_steps=steps, x_T=x_T, record=True)
    eps_T = exact_eps(x_T, torch.full((16,), out.timesteps[0]))
    torch.testing.assert_close(out.samples, c.expand(16, 2), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.x0_preds, c.expand(steps, 16, 2), rtol=1e-10, atol=1e-10)
    for k, t in enumerate(out.timesteps[1:], start=1):
        torch.testing.assert_close(out.trajectory[k], ab[t].sqrt() * c + (1 - ab[t]).sqrt() * eps_T)


def test_ddim_eta0_decoding_of_gaussian_data_is_the_closed_form_affine_map():
    # eta = 0: x_0 = A x_T + B exactly, with A, B the product of the per-step closed forms.
    x_T = torch.linspace(-3, 3, 13, dtype=torch.float64).unsqueeze(1)
    model = GaussianMixture.gaussian(M, S).eps_model(SCHED)
    ts = timesteps(SCHED.T, 30, "linspace")
    x0 = _sample(model, x_T.shape, sampler="ddim", num_inference_steps=30, spacing="linspace", x_T=x_T).samples
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
        x_T = ddim_invert(model, SCHED, x0, num_inference_steps=steps, spacing="trailing", progress=False)
        back = _sample(model, x0.shape, num_inference_steps=steps, spacing="trailing", x_T=x_T).samples
        errors.append(((x_T - ode_x_T).abs().max().item(), (back - x0).abs().max().item()))
    (enc_125, rt_125), (enc_250, rt_250) = errors
    assert enc_250 < 0.03 and rt_250 < 0.04
    assert enc_250 < 0.65 * enc_125 and rt_250 < 0.65 * rt_125


# ------------------------------------------------------------------ sample(): API
def test_same_seed_same_samples_and_record_shapes():
    model = GaussianMixture.gaussian(0.0, 0.5).eps_model(SCHED)
    for kw in (dict(sampler="ddpm"), dict(sampler="ddim", num_inference_steps=10, eta=0.5)):
        a = _sample(model, (4, 1, 2, 3), seed=9, record=True, **kw)
        b = _sample(model, (4, 1, 2, 3), seed=9, **kw)
        c = _sample(model, (4, 1, 2, 3), seed=10, **kw)
        assert torch.equal(a.samples, b.samples) and not torch.equal(a.samples, c.samples)
        K = len(a.timesteps)
        assert K == (250 if kw["sampler"] == "ddpm" else 10)
        assert a.trajectory.shape == (K + 1, 4, 1, 2, 3) and a.x0_preds.shape == (K, 4, 1, 2, 3)
        assert torch.equal(a.trajectory[-1], a.samples)
        assert b.trajectory is None and b.x0_preds is None
    x_T = torch.randn(4, 1, 2, 3, dtype=torch.float64)
    recorded = _sample(model, x_T.shape, sampler="ddim", num_inference_steps=3, x_T=x_T, record=True)
    assert torch.equal(recorded.trajectory[0], x_T)


def test_sample_default_dtype_and_clip():
    model = GaussianMixture.gaussian(0.0, 3.0).eps_model(SCHED)  # data far outside [-1, 1]
    out = sample(model, SCHED, (256, 1), num_inference_steps=10, generator=_gen(0), progress=False, record=True)
    assert out.samples.dtype == torch.get_default_dtype()
    assert out.x0_preds.abs().max() <= 1.0 and out.samples.abs().max() <= 1.0  # clip_x0=True by default


class RecordingModel(nn.Module):
    """The exact denoiser of N(0, 0.5^2) data per pixel, any shape; records what it is asked."""

    def __init__(self, num_classes: int | None = None):
        super().__init__()
        self.config = type("Config", (), {"num_classes": num_classes, "in_channels": 3})()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.eps = GaussianMixture.gaussian(0.0, 0.5).eps_model(SCHED)
        self.batch_sizes, self.labels, self.modes, self.grad_enabled = [], [], [], []

    def forward(self, x_t, t, y=None):
        self.batch_sizes.append(x_t.shape[0])
        self.labels.append(y)
        self.modes.append(self.training)
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.eps(x_t.flatten(1), t).reshape(x_t.shape)


def test_sample_runs_in_eval_mode_without_grad_and_restores_mode():
    model = RecordingModel().train()
    _sample(model, (2, 1), num_inference_steps=3)
    assert model.modes == [False] * 3 and model.grad_enabled == [False] * 3
    assert model.training
    model.eval()
    _sample(model, (2, 1), num_inference_steps=3)
    assert not model.training


def test_one_default_sampler_everywhere():
    # DDIM with 50 steps (at most T), eta 0, clipped: the defaults of sample, generate and the CLI
    model = GaussianMixture.gaussian(0.0, 3.0).eps_model(SCHED)  # data far outside [-1, 1]
    out = sample(model, SCHED, (3, 1), generator=_gen(0), progress=False, record=True)
    assert out.timesteps == tuple(timesteps(SCHED.T, 50)) and out.samples.abs().max() <= 1.0
    assert num_steps("ddim", None, SCHED.T) == 50 and num_steps("ddim", None, 20) == 20
    assert num_steps("ddpm", None, SCHED.T) == SCHED.T
    explicit = sample(model, SCHED, (3, 1), sampler="ddim", num_inference_steps=50, eta=0.0, clip_x0=True,
                      generator=_gen(0), progress=False)  # fmt: skip
    assert torch.equal(out.samples, explicit.samples)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(sampler="ddim", eta=-0.1), ValueError, "eta"),
        (dict(sampler="ddim", eta=1.5), ValueError, "eta"),
        (dict(sampler="ddim", num_inference_steps=251), ValueError, "num_inference_steps"),
        (dict(sampler="ddim", num_inference_steps=0), ValueError, "num_inference_steps"),
        (dict(sampler="ddim", num_inference_steps=2.0), TypeError, "num_inference_steps"),
        (dict(sampler="ddpm", num_inference_steps=50), ValueError, "sampler='ddim'"),
        (dict(sampler="ddpm", eta=0.5), ValueError, "eta"),
        (dict(sampler="euler"), ValueError, "sampler"),
        (dict(variance_type="learned"), ValueError, "variance_type"),
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


# ------------------------------------------------------------------ generate
def test_generate_in_batches_equals_one_batch_from_the_same_x_T():
    # eta = 0 draws nothing after x_T: the batching alone must not change any image
    model = RecordingModel()
    x_T = torch.randn(7, 3, 2, 2, generator=_gen(1))
    batched = generate(model, SCHED, 7, x_T=x_T, num_inference_steps=5, batch_size=3, progress=False)
    assert model.batch_sizes == [3] * 5 + [3] * 5 + [1] * 5
    whole = sample(model, SCHED, x_T.shape, num_inference_steps=5, x_T=x_T, progress=False).samples
    assert batched.shape == (7, 3, 2, 2) and batched.dtype == torch.float32 and batched.device.type == "cpu"
    assert torch.equal(batched, whole)


def test_generate_draws_every_batch_from_one_seeded_generator():
    # batch after batch: x_T and the z of each step from one generator on the device, in turn
    model = RecordingModel()
    images = generate(model, SCHED, 5, image_shape=(1, 3), sampler="ddim", num_inference_steps=4, eta=1.0,
                      seed=3, batch_size=2, progress=False)  # fmt: skip
    g = _gen(3)
    expected = [sample(model, SCHED, (b, 1, 3), num_inference_steps=4, eta=1.0, generator=g, progress=False).samples
                for b in (2, 2, 1)]  # fmt: skip
    assert torch.equal(images, torch.cat(expected))
    again = generate(model, SCHED, 5, image_shape=(1, 3), num_inference_steps=4, eta=1.0, seed=3, batch_size=2,
                     progress=False)  # fmt: skip
    other = generate(model, SCHED, 5, image_shape=(1, 3), num_inference_steps=4, eta=1.0, seed=4, batch_size=2,
                     progress=False)  # fmt: skip
    assert torch.equal(images, again) and not torch.equal(images, other)


def test_generate_labels_one_for_all_or_one_per_image():
    model = RecordingModel(num_classes=10)
    generate(model, SCHED, 5, image_shape=(1, 2), labels=7, num_inference_steps=2, batch_size=3, progress=False)
    assert [y.tolist() for y in model.labels] == [[7, 7, 7]] * 2 + [[7, 7]] * 2
    model.labels.clear()
    per_image = torch.tensor([0, 1, 2, 3, 4])
    generate(model, SCHED, 5, image_shape=(1, 2), labels=per_image, guidance_scale=2.0, num_inference_steps=2,
             batch_size=3, progress=False)  # fmt: skip
    # with guidance: the labels, then the null label (num_classes), in one batch of 2B
    assert [y.tolist() for y in model.labels] == [[0, 1, 2, 10, 10, 10]] * 2 + [[3, 4, 10, 10]] * 2
    with pytest.raises(ValueError, match="labels"):
        generate(model, SCHED, 5, image_shape=(1, 2), labels=per_image[:4], progress=False)


def test_generate_image_shape_defaults_and_checks():
    model = RecordingModel()
    assert default_image_shape(model) == (3, 28, 28)  # in_channels from the config, MNIST's 28 x 28
    assert default_image_shape(model, {"image_shape": [1, 8, 8]}) == (1, 8, 8)
    assert default_image_shape(GaussianMixture.gaussian().eps_model(SCHED)) == (1, 28, 28)
    assert generate(model, SCHED, 2, num_inference_steps=1, progress=False).shape == (2, 3, 28, 28)
    with pytest.raises(ValueError, match="shape mismatch"):
        generate(model, SCHED, 3, x_T=torch.zeros(2, 1, 4), progress=False)
    with pytest.raises(ValueError, match="n must be"):
        generate(model, SCHED, 0, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        generate(model, SCHED, 2, batch_size=0, progress=False)

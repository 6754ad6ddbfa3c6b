"""Parity with Hugging Face diffusers' DDPMScheduler / DDIMScheduler (an independent implementation).

diffusers is a test-only dependency; without it this file is skipped, or fails with
``COURSE_DDPM_REQUIRE_TEST_DEPS=1`` (CI; see ``conftest.require_or_skip``).

Names (ours -> diffusers)
-------------------------
==========================================  ===================================================
``Schedule.beta / alpha / alpha_bar``       ``scheduler.betas / alphas / alphas_cumprod``
code index t = 0..T-1                       ``timestep`` (same convention, same values)
``linear_schedule(T)``                      ``beta_schedule="linear"`` (beta_start=1e-4,
                                            beta_end=0.02 used as given, at any T)
``linear_schedule(T, rescale=True)``        ``"linear"`` with beta_start/end times 1000 / T
``cosine_schedule(T)``                      ``beta_schedule="squaredcos_cap_v2"``
``forward.q_sample(s, x0, t, eps)``         ``add_noise(original_samples, noise, timesteps)``
``ddpm_step(s, x_t, t, eps_pred, ...)``     ``DDPMScheduler.step(model_output, timestep, sample,
                                            generator)``
``variance_type="fixed_small" / ...``       ``variance_type="fixed_small" / "fixed_large"``
``clip_x0=False`` / ``True`` (default)      ``clip_sample=False`` / ``True`` (default)
``ddim_step(s, x_t, t, t_prev, eps_pred,    ``DDIMScheduler.step(model_output, timestep, sample,
eta, noise)``                               eta, variance_noise=noise)``, ``set_alpha_to_one=True``
t_prev = -1 (alpha_bar = 1)                 ``final_alpha_cumprod = 1``
``clip_x0=True`` (DDIM)                     ``clip_sample=True, use_clipped_model_output=True``
``timesteps(T, K, spacing)``                ``set_timesteps(K)`` with ``timestep_spacing=spacing``
``ddim_invert_step``                        ``DDIMInverseScheduler.step``
``StepOutput.x_prev / x0_pred``             ``prev_sample / pred_original_sample``
``InversionStepOutput.x_next``              ``prev_sample`` of ``DDIMInverseScheduler``
==========================================  ===================================================

diffusers keeps everything in float32; our schedules are float64, cast when used. So
outputs agree to float32 rounding, not bit for bit. diffusers' DDIMScheduler steps from t
to ``t - T // K``: that is our next timestep for "leading" spacing (compared here), not
in general for "linspace".
"""

from __future__ import annotations

import pytest
import torch

from conftest import require_or_skip
from course_ddpm.ddim import ddim_invert_step, ddim_step, timesteps
from course_ddpm.ddpm import ddpm_step
from course_ddpm.forward import q_sample
from course_ddpm.sampling import sample
from course_ddpm.schedules import cosine_schedule, linear_schedule
from course_ddpm.toy import GaussianMixture

try:
    import diffusers
except ImportError as err:  # a test dependency: pip install -e ".[test]"
    require_or_skip(f"diffusers does not import ({err}); it is the independent implementation compared here")

pytestmark = pytest.mark.usefixtures("one_thread")

T = 1000
SHAPE = (3, 1, 4, 4)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _inputs(schedule, t: int, seed: int = 0):
    """A realistic (x_t, eps_pred) pair in float32: x_t from q_sample, eps_pred = eps + error."""
    g = _gen(seed)
    x0 = torch.rand(SHAPE, generator=g) * 2 - 1
    eps = torch.randn(SHAPE, generator=g)
    x_t = q_sample(schedule, x0, torch.full((SHAPE[0],), t), eps)
    eps_pred = eps + 0.1 * torch.randn(SHAPE, generator=g)
    return x_t, eps_pred


def _use_our_alpha_bar(scheduler, schedule):
    """Give the scheduler our float64 alpha_bar, so that only the step formulas are compared.

    DDPMScheduler.step recomputes beta_t = 1 - alphas_cumprod[t] / alphas_cumprod[t - 1]; in
    float32 that loses ~3 of 7 digits where beta_t ~ 1e-4 (small t), an error of the float32
    table, not of the formula. The tables themselves are compared in the schedule tests.
    """
    scheduler.alphas_cumprod = schedule.alpha_bar.clone()
    scheduler.one = torch.tensor(1.0, dtype=torch.float64)
    return scheduler


def _close(ours, theirs, scale=1.0):
    """float32 agreement; ``scale`` widens atol where 1/sqrt(alpha_bar) amplifies rounding."""
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * scale)


# ----------------------------------------------------------------------- schedules
@pytest.mark.parametrize("T_", [1000, 300, 50])
def test_linear_alphas_cumprod(T_):
    # diffusers' "linear" takes beta_start/beta_end as they are (no 1000/T rescaling), so it
    # equals our linear_schedule(T) at every T, and our rescaled one with rescaled ends.
    plain = diffusers.DDPMScheduler(num_train_timesteps=T_, beta_schedule="linear")
    torch.testing.assert_close(plain.alphas_cumprod, linear_schedule(T_, warn=False).alpha_bar.float())
    scale = 1000 / T_
    rescaled = diffusers.DDPMScheduler(num_train_timesteps=T_, beta_start=1e-4 * scale, beta_end=0.02 * scale)
    torch.testing.assert_close(rescaled.alphas_cumprod, linear_schedule(T_, rescale=True).alpha_bar.float())


@pytest.mark.parametrize("T_", [1000, 250])
def test_cosine_alphas_cumprod(T_):
    theirs = diffusers.DDPMScheduler(num_train_timesteps=T_, beta_schedule="squaredcos_cap_v2")
    ours = cosine_schedule(T_)
    torch.testing.assert_close(theirs.betas, ours.beta.float())
    torch.testing.assert_close(theirs.alphas_cumprod, ours.alpha_bar.float())


def test_add_noise_is_q_sample():
    schedule = linear_schedule(T)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=T)
    g = _gen(1)
    x0, eps = torch.randn(2, 8, 1, 4, 4, generator=g)
    t = torch.randint(0, T, (8,), generator=g)
    _close(q_sample(schedule, x0, t, eps), scheduler.add_noise(x0, eps, t))


# ------------------------------------------------------------------------- DDPM step
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
def test_ddpm_step(variance_type, beta_schedule):
    schedule = linear_schedule(T) if beta_schedule == "linear" else cosine_schedule(T)
    scheduler = diffusers.DDPMScheduler(
        num_train_timesteps=T, beta_schedule=beta_schedule, variance_type=variance_type, clip_sample=False
    )
    _use_our_alpha_bar(scheduler, schedule)
    for t in [T - 1, 700, 300, 50, 1, 0]:
        x_t, eps_pred = _inputs(schedule, t, seed=t)
        theirs = scheduler.step(eps_pred, t, x_t, generator=_gen(t))
        scale = 1.0 / schedule.alpha_bar[t].sqrt().item()
        # (a) the same seeded generator: we draw z exactly as diffusers does (only for t > 0)
        ours = ddpm_step(schedule, x_t, t, eps_pred, variance_type=variance_type, generator=_gen(t), clip_x0=False)
        _close(ours.x0_pred, theirs.pred_original_sample, scale)
        _close(ours.x_prev, theirs.prev_sample, scale)
        # (b) the same z passed explicitly
        z = torch.randn(SHAPE, generator=_gen(t))
        ours = ddpm_step(schedule, x_t, t, eps_pred, variance_type=variance_type, noise=z, clip_x0=False)
        _close(ours.x_prev, theirs.prev_sample, scale)


def test_ddpm_step_with_clipping():
    schedule = linear_schedule(T)
    scheduler = _use_our_alpha_bar(diffusers.DDPMScheduler(num_train_timesteps=T, clip_sample=True), schedule)
    for t in [900, 400, 10]:
        x_t, eps_pred = _inputs(schedule, t, seed=t)
        theirs = scheduler.step(eps_pred, t, x_t, generator=_gen(t))
        ours = ddpm_step(schedule, x_t, t, eps_pred, generator=_gen(t), clip_x0=True)
        _close(ours.x0_pred, theirs.pred_original_sample)
        _close(ours.x_prev, theirs.prev_sample)


def test_whole_ddpm_chain_matches_a_diffusers_loop_with_the_same_seed():
    # Same seed, same random stream: x_T first, then one z per step with t > 0.
    T_ = 100
    schedule = linear_schedule(T_, rescale=True)
    scheduler = diffusers.DDPMScheduler(
        num_train_timesteps=T_, beta_start=1e-4 * 1000 / T_, beta_end=0.02 * 1000 / T_, clip_sample=False
    )
    model = GaussianMixture((0.4, 0.6), (-0.5, 0.5), (0.2, 0.3)).eps_model(schedule)
    g = _gen(3)
    x = torch.randn(SHAPE, generator=g)
    for t in scheduler.timesteps:
        eps_pred = model(x, torch.full((SHAPE[0],), int(t)))
        x = scheduler.step(eps_pred, int(t), x, generator=g).prev_sample
    ours = sample(model, schedule, SHAPE, sampler="ddpm", generator=_gen(3), clip_x0=False, progress=False)
    torch.testing.assert_close(ours.samples, x, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------- DDIM step
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("steps", [50, 7])
def test_ddim_step(eta, steps):
    schedule = linear_schedule(T)
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=T, clip_sample=False, set_alpha_to_one=True)
    scheduler.set_timesteps(steps)
    ts = timesteps(T, steps, "leading")
    assert scheduler.timesteps.tolist() == ts
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        x_t, eps_pred = _inputs(schedule, t, seed=i)
        z = torch.randn(SHAPE, generator=_gen(100 + i))
        theirs = scheduler.step(eps_pred, t, x_t, eta=eta, variance_noise=z)
        ours = ddim_step(schedule, x_t, t, t_prev, eps_pred, eta=eta, noise=z, clip_x0=False)
        scale = 1.0 / schedule.alpha_bar[t].sqrt().item()
        _close(ours.x0_pred, theirs.pred_original_sample, scale)
        _close(ours.x_prev, theirs.prev_sample, scale)


def test_ddim_step_with_clipping_uses_the_clipped_model_output():
    schedule = cosine_schedule(T)
    scheduler = diffusers.DDIMScheduler(
        num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", clip_sample=True, set_alpha_to_one=True
    )
    scheduler.set_timesteps(20)
    ts = scheduler.timesteps.tolist()
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        x_t, eps_pred = _inputs(schedule, t, seed=i)
        z = torch.randn(SHAPE, generator=_gen(i))
        theirs = scheduler.step(eps_pred, t, x_t, eta=0.3, variance_noise=z, use_clipped_model_output=True)
        ours = ddim_step(schedule, x_t, t, t_prev, eps_pred, eta=0.3, noise=z, clip_x0=True)
        _close(ours.x0_pred, theirs.pred_original_sample)
        _close(ours.x_prev, theirs.prev_sample)


def test_ddim_eta1_on_a_subsequence_is_diffusers_respaced_ddpm():
    # DDPMScheduler.set_timesteps(K) steps t -> previous timestep with alpha_bar ratios:
    # the respaced DDPM chain with sigma^2 = beta_tilde of the new chain = DDIM with eta = 1.
    schedule = linear_schedule(T)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=T, clip_sample=False)
    scheduler.set_timesteps(25)
    ts = scheduler.timesteps.tolist()
    assert ts == timesteps(T, 25, "leading")
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        x_t, eps_pred = _inputs(schedule, t, seed=i)
        theirs = scheduler.step(eps_pred, t, x_t, generator=_gen(i))
        z = torch.randn(SHAPE, generator=_gen(i)) if t > 0 else torch.zeros(SHAPE)
        ours = ddim_step(schedule, x_t, t, t_prev, eps_pred, eta=1.0, noise=z, clip_x0=False)
        _close(ours.x_prev, theirs.prev_sample, 1.0 / schedule.alpha_bar[t].sqrt().item())


def test_whole_ddim_chain_matches_a_diffusers_loop():
    schedule = linear_schedule(T)
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=T, clip_sample=False, set_alpha_to_one=True)
    scheduler.set_timesteps(40)
    model = GaussianMixture((0.5, 0.5), (-0.6, 0.6), (0.2, 0.2)).eps_model(schedule)
    x_T = torch.randn(SHAPE, generator=_gen(5))
    x = x_T
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, torch.full((SHAPE[0],), int(t))), int(t), x, eta=0.0).prev_sample
    ours = sample(model, schedule, SHAPE, sampler="ddim", num_inference_steps=40, x_T=x_T, clip_x0=False,
                  progress=False)
    torch.testing.assert_close(ours.samples, x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps_match_set_timesteps(spacing):
    # (250, 125, "linspace") hits an exact half (124.5): rounding must follow numpy's arithmetic.
    for T_ in (1000, 999, 250, 7):
        for steps in sorted({1, 2, 3, 7, 13, 50, 100, 125, 333, T_ // 2, T_ - 1, T_}):
            if not 1 <= steps <= T_:
                continue
            scheduler = diffusers.DDIMScheduler(num_train_timesteps=T_, timestep_spacing=spacing)
            scheduler.set_timesteps(steps)
            theirs = scheduler.timesteps.tolist()
            assert timesteps(T_, steps, spacing) == theirs[:steps], (T_, steps)
            # diffusers' "trailing" uses a float np.arange, which for some (T, K), e.g.
            # (999, 13), yields one element too many: an invalid timestep -1.
            assert theirs[steps:] in ([], [-1]), (T_, steps)


def test_ddim_invert_step_matches_ddim_inverse_scheduler():
    schedule = linear_schedule(T)
    scheduler = diffusers.DDIMInverseScheduler(num_train_timesteps=T, clip_sample=False, set_alpha_to_one=True)
    scheduler.set_timesteps(20)
    ts = scheduler.timesteps.tolist()  # ascending
    assert ts == timesteps(T, 20, "leading")[::-1]
    t = -1
    for i, t_next in enumerate(ts):
        x_t, eps_pred = _inputs(schedule, max(t, 0), seed=i)
        theirs = scheduler.step(eps_pred, t_next, x_t)
        ours = ddim_invert_step(schedule, x_t, t, t_next, eps_pred)
        scale = 1.0 / schedule.alpha_bar[max(t, 0)].sqrt().item()
        _close(ours.x0_pred, theirs.pred_original_sample, scale)
        _close(ours.x_next, theirs.prev_sample, scale)
        t = t_next

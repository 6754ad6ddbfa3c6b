"""Exercises of notebook 07 (the 2-D playground): the whole training step, and the whole sampler.

Unlike the exercises of notebooks 01-04, the playground *uses* what the student writes: section 3
trains and samples with the student's functions once their checks pass
(:func:`~course_ddpm.exercises._check.yours_if_correct`), and with the package's until then.

References are the package's: :func:`course_ddpm.training_step.train_step` (Ho et al. 2020,
Algorithm 1, with AdamW, gradient clipping and the EMA) and :func:`course_ddpm.playground.draw`
(Algorithm 2 through :func:`course_ddpm.sampling.sample`, sigma_t^2 = beta_tilde_t, no clipping).
Each :class:`Mistake` is a wrong version with the hint that names it. Code t = paper t - 1.
"""

from __future__ import annotations

import dataclasses

import torch

from course_ddpm.exercises._check import Case, Exercise, Mistake, flat_parameters, randn
from course_ddpm.mlp import MLPConfig
from course_ddpm.playground import PLAYGROUND_CONFIG, draw, start, train_steps
from course_ddpm.schedules import cosine_schedule, linear_schedule
from course_ddpm.training_step import draw_batch, ema_decay_at, ema_update, lr_at, train_step


# --- 1. one training step (Algorithm 1: L_simple, gradient, clipping, AdamW, EMA) ----------------
#: A small run: steps 0-1 already taken (so the gradients of the last step are still there and the
#: EMA's warm-up decay is far from ema_decay), a gradient clip small enough to act.
_STEP_CONFIG = dataclasses.replace(PLAYGROUND_CONFIG, batch_size=16, grad_clip=0.05, seed=3)
_STEP_MLP = MLPConfig(hidden=16, depth=2, time_dim=8)


def _step_cases() -> list[Case]:
    state = torch.random.get_rng_state()  # TrainState.start seeds the global generator
    try:
        cases = []
        for description, config, done in (("the third step of a small run (batch 16)", _STEP_CONFIG, 2),
                                          ("the first step of a run (batch 8, lr warming up)",
                                           dataclasses.replace(_STEP_CONFIG, batch_size=8, seed=4), 0)):
            x0 = randn(64, 2, seed=config.seed)  # (N, 2) float64 points
            run = train_steps(start(x0, config, mlp_config=_STEP_MLP), x0, done)
            batch = draw_batch(x0, None, run.state.sampler, run.state.noise_generator, config, null_label=None)
            cases.append(Case(description, (run.state, batch, run.schedule, config)))
        return cases
    finally:
        torch.random.set_rng_state(state)  # leave the notebook's random stream as it was


def _run_step(fn, args):
    state = args[0]
    loss = fn(*args)
    return loss, flat_parameters(state.model), flat_parameters(state.ema_model), state.step


def _step(state, batch, schedule, config, *, model_x=False, target=None, alpha=None, sqrt=True, reduce="mean",
          t_shift=0, zero_grad=True, clip=True, optimizer_step=True, ema="after", count=True):
    """Algorithm 1 written out, with switches that make one mistake each."""
    model, optimizer = state.model, state.optimizer
    for group in optimizer.param_groups:
        group["lr"] = lr_at(config, state.step)
    table = schedule.alpha_bar if alpha is None else alpha
    signal, noise = (table.sqrt(), (1 - table).sqrt()) if sqrt else (table, 1 - table)
    x_t = signal[batch.t][:, None] * batch.x0 + noise[batch.t][:, None] * batch.eps  # (B, 2)
    err = ((batch.x0 if target == "x0" else batch.eps) - model(batch.x0 if model_x else x_t, batch.t + t_shift)) ** 2
    loss = err.mean() if reduce == "mean" else err.sum()
    decay = ema_decay_at(config.ema_decay, state.step) if ema != "constant" else config.ema_decay
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    if ema == "before":
        ema_update(state.ema_model, model, decay)
    if optimizer_step:
        optimizer.step()
    if ema in ("after", "constant"):
        ema_update(state.ema_model, model, decay)
    if count:
        state.step += 1
    return loss.item()


TRAINING_STEP_2D = Exercise(
    name="my_training_step_2d",
    reference=train_step,
    reference_name="course_ddpm.training_step.train_step",
    cases=_step_cases,
    run=_run_step,
    output_names=("the returned loss", "state.model's weights", "state.ema_model's weights", "state.step"),
    mistakes=(
        Mistake("the model sees the noisy x_t, not the clean x0", lambda *a: _step(*a, model_x=True)),
        Mistake("the model predicts the noise eps: compare its output with eps, not with x0",
                lambda *a: _step(*a, target="x0")),
        Mistake("x_t uses alpha_bar_t (the product), not alpha_t: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps",
                lambda s, b, sch, c: _step(s, b, sch, c, alpha=sch.alpha)),
        Mistake("square roots are missing in x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps",
                lambda *a: _step(*a, sqrt=False)),
        Mistake("L_simple is the mean over all entries (.mean()), not the sum", lambda *a: _step(*a, reduce="sum")),
        Mistake("t off by one: the model gets the same code t that made x_t", lambda *a: _step(*a, t_shift=1)),
        Mistake("optimizer.zero_grad() is missing: the last step's gradients were added to this one's",
                lambda *a: _step(*a, zero_grad=False)),
        Mistake("the gradient is not clipped: torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip) "
                "after loss.backward()", lambda *a: _step(*a, clip=False)),
        Mistake("optimizer.step() is missing: the weights did not change", lambda *a: _step(*a, optimizer_step=False)),
        Mistake("the EMA is updated before optimizer.step(): it must average the new weights",
                lambda *a: _step(*a, ema="before")),
        Mistake("the EMA's decay warms up: ema_decay_at(config.ema_decay, state.step), not config.ema_decay",
                lambda *a: _step(*a, ema="constant")),
        Mistake("the EMA is not updated: ema_update(state.ema_model, model, ema_decay_at(config.ema_decay, state.step))",
                lambda *a: _step(*a, ema="none")),
        Mistake("state.step += 1 is missing: the learning rate's and the EMA's warm-ups count the steps",
                lambda *a: _step(*a, count=False)),
    ),
)


# --- 2. the sampler (Algorithm 2, all T steps, sigma_t^2 = beta_tilde_t) -------------------------
def _stand_in(x_t: torch.Tensor, t: torch.Tensor, y=None) -> torch.Tensor:
    """A fixed stand-in for a trained network: eps_theta depends on x_t and t (not on y)."""
    return torch.tanh(x_t * (1 + t.to(x_t.dtype)[:, None] / 10))  # (n, 2)


def _sampler_reference(model, schedule, n, seed=0):
    return draw(model, schedule, n, seed=seed, sampler="ddpm")


@torch.no_grad()
def _sampler(model, schedule, n, seed=0, *, variance="beta_tilde", std=True, mean_alpha=None,
             noise_table=None, sqrt=True, sign=-1, t_shift=0, stop=-1):
    """Algorithm 2 written out, with switches that make one mistake each. (Noise at the last step is
    no mistake here: sigma_0^2 = beta_tilde_0 = 0, so the z of code t = 0 is multiplied by 0.)"""
    s = schedule
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)  # x_T ~ N(0, I)
    var = s.beta_tilde if variance == "beta_tilde" else s.beta
    sigma = var.sqrt() if std else var
    scale = s.alpha if mean_alpha is None else mean_alpha
    noise = (1 - (s.alpha_bar if noise_table is None else noise_table))
    noise = noise.sqrt() if sqrt else noise
    for t in range(s.T - 1, stop, -1):
        eps = model(x, torch.full((n,), t + t_shift))
        mean = (x + sign * s.beta[t] / noise[t] * eps) / scale[t].sqrt()
        z = torch.randn(n, 2, generator=g, dtype=torch.float64) if t > 0 else torch.zeros_like(x)
        x = mean + sigma[t] * z
    return x


def _sampler_cases() -> list[Case]:
    return [
        Case("a stand-in model, linear schedule T = 25 (rescaled), n = 5, seed 0",
             (_stand_in, linear_schedule(25, rescale=True), 5, 0)),
        Case("cosine schedule T = 8, n = 3, seed 7", (_stand_in, cosine_schedule(8), 3, 7)),
    ]


SAMPLER_2D = Exercise(
    name="my_sampler_2d",
    reference=_sampler_reference,
    reference_name="course_ddpm.playground.draw (sampler='ddpm')",
    cases=_sampler_cases,
    mistakes=(
        Mistake("sigma_t z uses the standard deviation sigma_t = sqrt(beta_tilde_t), not the variance",
                lambda *a: _sampler(*a, std=False)),
        Mistake("sigma_t^2 = beta_tilde_t here (schedule.beta_tilde), not beta_t (the other choice of Ho et al. "
                "section 3.2, the one of notebook 04's exercise)", lambda *a: _sampler(*a, variance="beta")),
        Mistake("1 / sqrt(alpha_t) of one step scales the mean, not 1 / sqrt(alpha_bar_t)",
                lambda m, s, n, seed=0: _sampler(m, s, n, seed, mean_alpha=s.alpha_bar)),
        Mistake("the noise coefficient is beta_t / sqrt(1 - alpha_bar_t), with alpha_bar_t (the product), "
                "not alpha_t", lambda m, s, n, seed=0: _sampler(m, s, n, seed, noise_table=s.alpha)),
        Mistake("a square root is missing: beta_t / sqrt(1 - alpha_bar_t) multiplies eps_theta",
                lambda *a: _sampler(*a, sqrt=False)),
        Mistake("wrong sign: the predicted noise is subtracted, x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta",
                lambda *a: _sampler(*a, sign=+1)),
        Mistake("t off by one: the model gets the code t of the x_t it is given (t = T-1 first)",
                lambda *a: _sampler(*a, t_shift=1)),
        Mistake("the last step is missing: the loop runs over all T steps, t = T-1 down to 0 (code)",
                lambda *a: _sampler(*a, stop=0)),
    ),
)

EXERCISES = (TRAINING_STEP_2D, SAMPLER_2D)  # in the order of notebook 07
check_training_step_2d = TRAINING_STEP_2D.check
check_sampler_2d = SAMPLER_2D.check

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7 · A 2-D playground that trains in seconds
#
# **Runtime:** about 1 min on 2 CPU cores (measured with `jupyter nbconvert --execute`; several times
# longer when other programs compete for the cores).
#
# MNIST takes CPU-hours to train. Here the data are points in the plane, the network is a small MLP,
# and a model trains to good samples in seconds. That makes it the place to write the training step
# (Ho et al. 2020, Algorithm 1) and the sampler (Algorithm 2) yourself, see them work at once, and try things:
#
# 1. the data: eight Gaussians on a ring, with a known density;
# 2. the training step and the sampler, written by you (two exercises with checks);
# 3. a run, its samples over the true density, and a number that says how close they are;
# 4. a gallery of the classic failures "the loss converged but the samples are noise": each one
#    cell, one picture, one number.
#
# *Time index.* Code `t = 0..T-1` is the papers' $t = 1..T$ (see `course_ddpm.schedules`).

# %%
import dataclasses
import time
import warnings

import matplotlib.pyplot as plt
import torch

from course_ddpm import exercises, failure_modes, playground, results, training_step
from course_ddpm.ddpm import ddpm_step
from course_ddpm.sliced_wasserstein import sliced_wasserstein
from course_ddpm.notebook import agree, setup, show_code
from course_ddpm.plot_points import points_over_density
from course_ddpm.schedules import TerminalSignalWarning
from course_ddpm.training_step import train_step

setup(seed=0)  # torch threads and seed (course_ddpm.notebook.setup)

# %% [markdown]
# ## 1. The data: a ring of Gaussians, scaled like the noise
#
# $p(x) = \frac{1}{8}\sum_{k=1}^{8} \mathcal N(x; m_k, s^2 I)$ with $s = 0.1$ and the means on a circle
# of radius $r = \sqrt{2(1 - s^2)}$, so that the covariance is $(r^2/2 + s^2)\,I = I$: the data have
# the scale of the noise $\epsilon \sim \mathcal N(0, I)$ that the forward process adds, as MNIST in
# $[-1, 1]$ does. The density is known, so samples can be scored by their log-likelihood too.

# %%
data = playground.playground_data()  # train 10,000, reference 10,000, a true draw of 1,000 points
print("closed-form covariance = I:", agree(data.density.covariance() - torch.eye(2, dtype=torch.float64)))
print("sample covariance:", [[round(v, 2) for v in row] for row in torch.cov(data.train.T.double()).tolist()])
points_over_density({"10,000 training points": data.train}, data.density)
plt.show()

# %% [markdown]
# **How close is a sample to the data?** The sliced Wasserstein distance $SW_2$
# (`course_ddpm.sliced_wasserstein`): project both point sets on a direction $\theta$, pair the
# sorted projections, average the squared gaps over the directions. Even a perfect sampler does not
# reach 0 with finitely many points: an independent draw of 1,000 *true* points from the same
# density, compared with the same 10,000 held-out points, sets the **floor**.

# %%
show_code(playground.score)

# %% [markdown]
# ## 2. The training step and the sampler: yours
#
# Here you write the two functions that make a diffusion model, whole, and section 3 trains and
# samples with them as soon as their checks pass (until then it uses the package's, and says so).
#
# The `state` holds `state.model` ($\epsilon_\theta$, an MLP called as `model(x_t, t)` on points
# `(B, 2)` and code indices `(B,)`), its EMA copy `state.ema_model`, the AdamW `state.optimizer` and
# the number of steps taken, `state.step`. The `batch` was drawn as the trainer draws it
# (`training_step.draw_batch`): `batch.x0` `(B, 2)`, `batch.t` `(B,)` with $t \sim \mathcal U\{0..T-1\}$
# and `batch.eps` $\sim \mathcal N(0, I)$ like `x0`. Everything is float64.

# %% [markdown] tags=["exercise"]
# **Exercise 7.1 · One training step** (Ho et al. 2020, Algorithm 1). The learning rate of this step is
# set for you. Then:
#
# 1. form $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ (`schedule.alpha_bar`, indexed by `batch.t`);
# 2. the loss $L_\text{simple}$, the mean of $(\epsilon - \epsilon_\theta(x_t, t))^2$ over all entries;
# 3. clear the old gradients (`zero_grad` of the optimizer), backpropagate, clip the gradient's norm to
#    `config.grad_clip` (`torch.nn.utils.clip_grad_norm_`), and let the optimizer take its step;
# 4. update the EMA of the *new* weights: `training_step.ema_update(ema_model, model, decay)` with the
#    warmed-up decay `training_step.ema_decay_at(config.ema_decay, state.step)`;
# 5. count the step in `state.step` and return the loss as a Python float (`.item()`).

# %% tags=["exercise"]
def my_training_step_2d(state, batch, schedule, config):
    """One step of Algorithm 1 on batch (x0, t, eps): L_simple, clipping, AdamW, EMA; returns the loss."""
    model, optimizer = state.model, state.optimizer
    for group in optimizer.param_groups:  # the warmed-up learning rate of this step
        group["lr"] = training_step.lr_at(config, state.step)
    ### BEGIN SOLUTION
    alpha_bar = schedule.alpha_bar[batch.t][:, None]  # (B, 1)
    x_t = alpha_bar.sqrt() * batch.x0 + (1 - alpha_bar).sqrt() * batch.eps  # (B, 2)
    loss = ((batch.eps - model(x_t, batch.t)) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    training_step.ema_update(state.ema_model, model, training_step.ema_decay_at(config.ema_decay, state.step))
    state.step += 1
    return loss.item()
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_training_step_2d(my_training_step_2d)

# %% [markdown]
# The package's step does the same, and guards against a diverged loss (it is what MNIST trains with):

# %%
show_code(train_step)

# %% [markdown] tags=["exercise"]
# **Exercise 7.2 · The sampler** (Ho et al. 2020, Algorithm 2). Draw $x_T \sim \mathcal N(0, I)$ of shape
# `(n, 2)` from the generator `g`, then for code $t = T-1, \dots, 0$:
#
# $$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big) + \sigma_t z,
# \qquad \sigma_t^2 = \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t,$$
#
# with $z \sim \mathcal N(0, I)$ drawn from `g` (again `(n, 2)`, float64) at every step but the last, and
# $z = 0$ there. The model takes the code indices as a tensor: `model(x, torch.full((n,), t))`.
# `schedule` has `beta`, `alpha`, `alpha_bar` and `beta_tilde`. Draw the random numbers in this order
# and with these shapes, and your samples equal the package's to round-off, so the check can compare them.

# %% tags=["exercise"]
@torch.no_grad()  # sampling needs no gradients
def my_sampler_2d(model, schedule, n, seed=0):
    """n samples (n, 2) of DDPM ancestral sampling, all T steps, sigma_t^2 = beta_tilde_t."""
    g = torch.Generator().manual_seed(seed)
    ### BEGIN SOLUTION
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)  # x_T ~ N(0, I)
    for t in range(schedule.T - 1, -1, -1):
        eps = model(x, torch.full((n,), t))  # (n, 2)
        mean = (x - schedule.beta[t] / (1 - schedule.alpha_bar[t]).sqrt() * eps) / schedule.alpha[t].sqrt()
        z = torch.randn(n, 2, generator=g, dtype=torch.float64) if t > 0 else torch.zeros_like(x)
        x = mean + schedule.beta_tilde[t].sqrt() * z
    return x
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_sampler_2d(my_sampler_2d)

# %% [markdown]
# The package's loop (`sampling.sample`, here without clipping $x_0$ to $[-1, 1]$: these are points,
# not images) takes each step with `ddpm.ddpm_step`, which computes the same mean through $\hat x_0$:

# %%
show_code(ddpm_step)

# %% [markdown]
# Section 3 and the gallery train and sample with your two functions once they pass their checks:

# %%
training_step_2d = exercises.yours_if_correct(my_training_step_2d, exercises.check_training_step_2d)
sampler_2d = exercises.yours_if_correct(my_sampler_2d, exercises.check_sampler_2d)


# %% [markdown]
# ## 3. Training in seconds
#
# The playground's run (`playground.PLAYGROUND_CONFIG`): an MLP with 3 hidden layers of 64 and a
# sinusoidal time embedding, a linear schedule with $T = 200$ steps (betas rescaled by $1000/T$, so
# $\bar\alpha_T$ is that of Ho et al.'s $T = 1000$), 2,000 steps of 256 points, AdamW, EMA 0.995. It
# computes in float64, so that the numbers below are the same on every CPU (see `course_ddpm.playground`).

# %% tags=["nbval-ignore-output"]
config = playground.PLAYGROUND_CONFIG
start = time.perf_counter()
run = playground.train(data.train, config, step=training_step_2d)
print(f"{config.steps} steps in {time.perf_counter() - start:.1f} s")

# %%
n = data.true_draw.shape[0]
samples = sampler_2d(run.state.ema_model, run.schedule, n)
good = playground.score(samples, data.reference, data.true_draw, data.density)
print(f"loss: first 100 steps {sum(run.losses[:100]) / 100:.3f}, last 100 steps {sum(run.losses[-100:]) / 100:.3f}")
print(good)
points_over_density({f"{n} samples (EMA weights)": samples, f"{n} true points": data.true_draw}, data.density)
plt.show()

# %% [markdown]
# The samples sit on the eight modes and none is missing. Their $SW_2$ is close to the floor; the
# mean log-likelihood is a sharper test (the modes are narrow, $s = 0.1$), and there the samples are
# still a little wider than the data.
#
# **How fast, measured.** `benchmarks/playground.py` trains the same run, scores the EMA weights every
# 250 steps, and stops the clock at the first score that is good ($SW_2 \le 1.25\times$ the floor and
# a mean log-likelihood within 1 nat of true data's). Its result on this project's machine:

# %%
bench = results.load_result("playground")
first = bench["first_good"]
print(f"good samples after {first['step']} steps: {first['wall_s']:.0f} s wall "
      f"({first['train_wall_s']:.0f} s training + {first['sample_wall_s']:.0f} s sampling) "
      f"on {bench['threads']} threads; load average {bench['meta']['load_average'][0]:.1f} "
      f"on {bench['meta']['environment']['cpus']} cores")
for row in bench["rows"]:
    print(f"step {row['step']:5d}: SW_2 {row['swd']:.3f} (floor {row['swd_floor']:.3f}), "
          f"log p {row['log_likelihood']:6.2f} (true {row['log_likelihood_true']:.2f})")

# %% [markdown]
# ## 4. Gallery: the loss converged, but the samples are wrong
#
# Each failure below is one classic mistake, everything else as in section 3, scored by the same
# $SW_2$ (good run: printed above).
#
# **(a) Data not scaled like the noise.** The same ring squeezed into $[0, 1]$, $0.5 + 0.25\,x$ (the
# classic bug of notebook 03: pixels in $[0, 1]$ instead of $[-1, 1]$), mapped back before scoring.
# Its spread is now a quarter of the noise's, so at every $t$ the signal-to-noise ratio is 16 times
# lower than the schedule was built for: the noise drowns the ring's structure early in the forward
# process (the printed share of steps at which the signal is still louder than the noise), and only
# the last few reverse steps are left to form the modes.

# %%
squeezed = 0.5 + 0.25 * data.train
run_a = playground.train(squeezed, config, step=training_step_2d)
samples_a = (sampler_2d(run_a.state.ema_model, run_a.schedule, n) - 0.5) / 0.25
score_a = playground.score(samples_a, data.reference, data.true_draw, data.density)
snr = run_a.schedule.snr  # alpha_bar / (1 - alpha_bar) for unit-variance data
louder, louder_unit = (0.25**2 * snr > 1).double().mean().item(), (snr > 1).double().mean().item()
print(f"signal louder than noise at {louder:.0%} of the steps (unit-variance data: {louder_unit:.0%});  "
      f"SW_2 = {score_a.swd:.3f}")
points_over_density({"(a) trained on 0.5 + 0.25 x": samples_a}, data.density)
plt.show()

# %% [markdown]
# **(b) Too few steps.** A cosine schedule with only $T = 5$: $x_T$ is pure noise, but each reverse
# step now has to bridge so much noise that the Gaussian $p_\theta(x_{t-1} \mid x_t)$ of Algorithm 2
# is a poor fit to the true reverse step, and the samples blur.

# %%
config_b = dataclasses.replace(config, schedule="cosine", T=5, rescale=False)
run_b = playground.train(data.train, config_b, step=training_step_2d)
samples_b = sampler_2d(run_b.state.ema_model, run_b.schedule, n)
score_b = playground.score(samples_b, data.reference, data.true_draw, data.density)
print(f"sqrt(alpha_bar_T) = {run_b.schedule.alpha_bar[-1].sqrt().item():.3f};  SW_2 = {score_b.swd:.3f}")
points_over_density({"(b) cosine schedule, T = 5": samples_b}, data.density)
plt.show()

# %% [markdown]
# **(b′) A schedule that leaves signal at $x_T$.** Linear betas from $10^{-4}$ to $0.02$ with only
# $T = 50$ steps: $x_T$ keeps $\sqrt{\bar\alpha_T} = 78\,\%$ of $x_0$, while sampling starts from pure
# noise (the package warns; the warning is shown). Here it hardly hurts. The start is off: $q(x_T)$ is
# measurably not $\mathcal N(0, I)$ (the first number, beside the floor for 1,000 true noise points).
# But in two dimensions the mismatch is small, at most the warning's 0.46 nats per dimension, and the
# reverse steps still pull the points onto the ring. A 784-pixel image pays that KL 784 times.

# %%
config_b2 = dataclasses.replace(config, T=50, rescale=False)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", TerminalSignalWarning)
    run_b2 = playground.train(data.train, config_b2, step=training_step_2d)
print(caught[0].message if caught else "no warning")
samples_b2 = sampler_2d(run_b2.state.ema_model, run_b2.schedule, n)
score_b2 = playground.score(samples_b2, data.reference, data.true_draw, data.density)
g = torch.Generator().manual_seed(1)
alpha_bar_T = run_b2.schedule.alpha_bar[-1].item()
x_T = alpha_bar_T**0.5 * data.true_draw + (1 - alpha_bar_T) ** 0.5 * torch.randn(n, 2, generator=g)  # q(x_T | x_0)
noise = torch.randn(10 * n, 2, generator=g)
print(f"SW_2 of q(x_T) to N(0, I) = {sliced_wasserstein(x_T, noise):.3f} "
      f"(floor {sliced_wasserstein(torch.randn(n, 2, generator=g), noise):.3f});  SW_2 of the samples = {score_b2.swd:.3f}")
points_over_density({"(b') linear schedule, T = 50": samples_b2}, data.density)
plt.show()

# %% [markdown]
# **(c) The wrong variance: $\sigma_t^2 z$ where Algorithm 2 has $\sigma_t z$.** The good run's
# weights; only the sampler's noise is wrong. $\sigma_t < 1$, so $\sigma_t^2 \ll \sigma_t$: the
# samples get almost no noise and collapse onto the centres of the modes.

# %%
samples_c = sampler_2d(run.state.ema_model, failure_modes.variance_for_std(run.schedule), n)
score_c = playground.score(samples_c, data.reference, data.true_draw, data.density)
print(f"SW_2 = {score_c.swd:.3f}")
points_over_density({"(c) sigma_t^2 z instead of sigma_t z": samples_c}, data.density)
plt.show()

# %% [markdown]
# **(c′) The wrong constants: $\alpha_t$ where $\bar\alpha_t$ belongs** in the noise coefficient of
# eq. 11, $\beta_t/\sqrt{1-\alpha_t}$ instead of $\beta_t/\sqrt{1-\bar\alpha_t}$. At large $t$ it is
# $\sqrt{\beta_t}$ instead of about $\beta_t$: every step removes several times too much noise.

# %%
samples_c2 = sampler_2d(failure_modes.alpha_for_alpha_bar(run.state.ema_model, run.schedule), run.schedule, n)
score_c2 = playground.score(samples_c2, data.reference, data.true_draw, data.density)
print(f"SW_2 = {score_c2.swd:.3f}")
points_over_density({"(c') alpha_t for alpha_bar_t in eq. 11": samples_c2}, data.density)
plt.show()

# %% [markdown]
# **(d) No EMA.** The same run's raw weights instead of their exponential moving average. At this
# learning rate each step moves the weights visibly; the EMA averages the last ~200 steps' noise away.

# %%
samples_d = sampler_2d(run.state.model, run.schedule, n)
score_d = playground.score(samples_d, data.reference, data.true_draw, data.density)
print(f"SW_2 = {score_d.swd:.3f}")
points_over_density({"(d) raw weights, no EMA": samples_d}, data.density)
plt.show()

# %% [markdown]
# ## 5. All of them, and a warning about the log-likelihood

# %%
scores = {"good run": good, "(a) data not scaled": score_a, "(b) T = 5": score_b, "(b') T = 50, signal at x_T": score_b2,
          "(c) sigma^2 for sigma": score_c, "(c') alpha for alpha_bar": score_c2, "(d) no EMA": score_d}
print(f"{'':26s} {'SW_2':>6s} {'mean log p':>11s}")
for name, s in scores.items():
    print(f"{name:26s} {s.swd:6.3f} {s.log_likelihood:11.2f}")
print(f"{'true data (floor)':26s} {good.swd_floor:6.3f} {good.log_likelihood_true:11.2f}")

# %% [markdown]
# Every failure but (b′) lies roughly three to four times farther from the data than the good run. The
# log-likelihood alone would be fooled: samples collapsed onto the modes' centres (c) score a *higher* mean log-likelihood
# than true data, because the density is highest there. A likelihood of samples rewards mode-seeking;
# $SW_2$ compares the whole distribution, spread included.

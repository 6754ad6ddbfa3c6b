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
# # 2 · The forward process: noising an MNIST digit
#
# **Runtime:** about 20 s on 2 CPU cores (measured with `jupyter nbconvert --execute`; most of it is
# importing torch, loading MNIST and sampling the toy; several times longer when other programs compete for the cores).
#
# A diffusion model destroys data step by step with a *fixed* Gaussian noising process $q$ and
# learns to undo it. Here we only look at $q$: one MNIST digit, four noise schedules, and the
# numbers that tell us whether the last step $x_T$ really is pure noise.
#
# You will see
# 1. the digit at a few steps of each schedule (a static strip, then an interactive slider),
# 2. how $\bar\alpha_t$ and the signal-to-noise ratio fall over time,
# 3. the pixel histogram turning into $\mathcal N(0, 1)$,
# 4. the **T = 300 problem** of a lecture schedule — 22 % of the signal left in $x_T$ — what it does to
#    samples drawn with an exact denoiser, and its fix.
#
# *Time index.* The papers count $t = 1,\dots,T$; the code counts `t = 0..T-1`, so code `t`
# is paper $t+1$ (see `course_ddpm.schedules`). Every `t` printed below is a code index.

# %%
import math
import warnings

import matplotlib.pyplot as plt
import torch

from course_ddpm import bound, exercises, forward, plot_curves, plot_images, widgets
from course_ddpm.data import load_mnist
from course_ddpm.notebook import agree, setup, show_code
from course_ddpm.sampling import sample
from course_ddpm.schedules import broadcast, cosine_schedule, first_step_below, linear_schedule
from course_ddpm.sliced_wasserstein import sliced_wasserstein
from course_ddpm.toy import GaussianMixture, x0_law_from_standard_normal_start

setup(seed=0)  # torch threads and seed (course_ddpm.notebook.setup)

# %% [markdown]
# ## The data
#
# `load_mnist` returns the images scaled to $[-1, 1]$ (pixel $p\in[0,1]$ becomes $x_0 = 2p - 1$),
# the scale the noise is matched to. We take the first test digit.

# %%
x_test, y_test = load_mnist(train=False)
x0 = x_test[0]  # (1, 28, 28)
print(f"x_test: {tuple(x_test.shape)}, values in [{x_test.min():.1f}, {x_test.max():.1f}]; x0 is a {y_test[0].item()}")

# %% [markdown]
# ## Four schedules
#
# A schedule is the list of step variances $\beta_1,\dots,\beta_T$. We compare
#
# | name | betas | source |
# |---|---|---|
# | linear T=1000 | $10^{-4} \to 0.02$ | Ho et al. 2020, section 4 |
# | linear T=300 | $10^{-4} \to 0.02$, only 300 steps | the lecture's first version |
# | linear T=300 rescaled | both ends $\times\,1000/T$ | Nichol & Dhariwal 2021 (improved-diffusion) |
# | cosine T=1000 | from $\bar\alpha_t = \cos^2(\cdot)$ | Nichol & Dhariwal 2021, eq. 17 |
#
# Building the lecture's schedule raises a `TerminalSignalWarning`; we catch it and print it, since
# it is the subject of a section below.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    schedules = {
        "linear T=1000": linear_schedule(1000),
        "linear T=300": linear_schedule(300),
        "linear T=300 rescaled": linear_schedule(300, rescale=True),
        "cosine T=1000": cosine_schedule(1000),
    }
for w in caught:
    print(f"{w.category.__name__}: {w.message}")

# %% [markdown] tags=["exercise"]
# **Exercise 2.1 · $\bar\alpha_t$ from the betas.** Write `my_alpha_bar(beta)`: from a `(T,)` tensor of betas, the `(T,)` tensor of
# $\bar\alpha_t = \prod_{s\le t}(1-\beta_s)$, entry `t` for code index `t` (torch has a cumulative product). The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_alpha_bar(beta):
    """alpha_bar_t = prod_{s <= t} (1 - beta_s), (T,) -> (T,) (Ho et al. eq. 4)."""
    ### BEGIN SOLUTION
    return torch.cumprod(1 - beta, dim=0)
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_alpha_bar(my_alpha_bar)

# %% [markdown]
# ## What the noising looks like
#
# Each row is one schedule; the columns are 0 %, 5 %, 10 %, 25 %, 50 %, 75 % and 100 % of the way
# through its chain. All panels use the *same* noise draw, so rows differ only by how much signal
# the schedule keeps; the titles give $\sqrt{\bar\alpha_t}$, the fraction of $x_0$ left.
# Compare the last column: three chains end with $\sqrt{\bar\alpha_T}\le 0.01$, the lecture's
# T=300 chain with 0.22 — though to the eye all four panels look like noise.
# The difference is statistical, and we measure it below.

# %%
plot_images.noising_strip(x0, schedules)
plt.show()

# %% [markdown]
# ## The formula behind the picture
#
# One forward step is $q(x_t\mid x_{t-1}) = \mathcal N\big(\sqrt{\alpha_t}\,x_{t-1},\ \beta_t I\big)$
# with $\alpha_t = 1-\beta_t$, i.e. $x_t = \sqrt{\alpha_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon_t$ with a fresh $\epsilon_t\sim\mathcal N(0, I)$.
# Chaining $t$ Gaussian steps gives a Gaussian again (Ho et al. 2020, eq. 4):
#
# $$q(x_t\mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t)\,I\big),
# \qquad \bar\alpha_t = \prod_{s=1}^{t}\alpha_s .$$
#
# *Proof by induction.* For $t = 1$ it is the step itself ($\bar\alpha_1 = \alpha_1$). If
# $x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,x_0 + \sqrt{1-\bar\alpha_{t-1}}\,\bar\epsilon$ with $\bar\epsilon\sim\mathcal N(0, I)$ independent of $\epsilon_t$, then
#
# $$x_t = \sqrt{\alpha_t}\sqrt{\bar\alpha_{t-1}}\,x_0 + \underbrace{\sqrt{\alpha_t(1-\bar\alpha_{t-1})}\,\bar\epsilon + \sqrt{\beta_t}\,\epsilon_t}_{\text{sum of independent Gaussians}} ,$$
#
# and a sum of independent zero-mean Gaussians is a zero-mean Gaussian whose variance is the sum of the variances:
#
# $$\sqrt{\alpha_t}\sqrt{\bar\alpha_{t-1}} = \sqrt{\bar\alpha_t},\qquad
# \alpha_t(1-\bar\alpha_{t-1}) + \beta_t = \alpha_t - \bar\alpha_t + 1 - \alpha_t = 1-\bar\alpha_t .$$
#
# The two identities at every step of the four schedules (`alpha_bar_prev` is $\bar\alpha_{t-1}$, 1 at code $t = 0$):

# %%
for name, s in schedules.items():
    mean_step = s.alpha.sqrt() * s.alpha_bar_prev.sqrt() - s.alpha_bar.sqrt()
    variance_step = s.alpha * (1 - s.alpha_bar_prev) + s.beta - (1 - s.alpha_bar)
    print(f"{name:22s} mean coefficient: {agree(mean_step)};  variance: {agree(variance_step)}")

# %% [markdown]
# So we can jump to any $t$ in one draw: $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$,
# $\epsilon\sim\mathcal N(0, I)$.

# %% [markdown] tags=["exercise"]
# **Exercise 2.2 · `q_sample`.** Write `my_q_sample(schedule, x0, t, eps)`: $x_t$ for a batch `x0` of shape `(B, C, H, W)`, code indices
# `t` of shape `(B,)` and noise `eps` like `x0`. `broadcast(schedule.alpha_bar, t, x0)` gives each image's
# $\bar\alpha_t$ as a `(B, 1, 1, 1)` tensor. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_q_sample(schedule, x0, t, eps):
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (Ho et al. eq. 4)."""
    ### BEGIN SOLUTION
    alpha_bar = broadcast(schedule.alpha_bar, t, x0)  # (B, 1, 1, 1)
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_q_sample(my_q_sample)

# %% [markdown]
# The package's code for it:

# %%
show_code(forward.q_sample)

# %% [markdown]
# The one-jump formula and the step-by-step chain agree. We run the chain
# (`forward.q_trajectory`) on 20 000 copies of one pixel value and compare the empirical
# mean and variance at a few steps with $\sqrt{\bar\alpha_t}\,x_0$ and $1-\bar\alpha_t$. They agree
# within Monte Carlo error (about $\pm 0.007$ for the mean and $\pm 0.01$ for the variance here):

# %%
schedule = schedules["linear T=300 rescaled"]
pixel = torch.full((20_000, 1), 0.8, dtype=torch.float64)
chain = forward.q_trajectory(schedule, pixel, generator=torch.Generator().manual_seed(0))  # (T + 1, 20000, 1)
for t in (0, 50, 150, 299):
    mean, var = forward.q_mean_variance(schedule, pixel[:1], torch.tensor([t]))
    x_t = chain[t + 1]  # entry k of the chain is paper x_k = code t = k - 1
    print(f"t={t:3d}  mean {x_t.mean():+.3f} (formula {mean.item():+.3f})   variance {x_t.var():.3f} (formula {var.item():.3f})")

# %% [markdown]
# ## Signal left and signal-to-noise ratio
#
# $\sqrt{\bar\alpha_t}$ is the weight of the data in $x_t$, and
# $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$ compares the signal's variance with the noise's.
# The x-axis is $t/T$, so that chains of different length share it; SNR is on a log scale.
# The rescaled T=300 curve (green) lies almost on the linear T=1000 one (blue, nearly hidden under it):
# rescaling makes 300 steps do roughly what 1000 did. The cosine schedule keeps more signal in the first
# half; the lecture's short linear chain (orange) never gets its SNR below 0.05.

# %%
plot_curves.schedule_curves(schedules, ("alpha_bar", "snr"))
plt.show()

# %% [markdown]
# "Almost", not "exactly": $\log\bar\alpha_t = \sum_{s\le t}\log(1-\beta_s) = -\sum_{s\le t}\beta_s - \tfrac12\sum_{s\le t}\beta_s^2 - \dots$
# Rescaling by $1000/T$ keeps $\sum_s\beta_s$ over the chain, so the two schedules agree to first order in $\beta$;
# the second-order term is $1000/300$ times larger for the bigger steps, and $\bar\alpha_T$ ends up smaller:

# %%
for name in ("linear T=1000", "linear T=300 rescaled"):
    s = schedules[name]
    print(f"{name:22s} sum beta {s.beta.sum():.3f}   sum beta^2 / 2 {0.5 * (s.beta**2).sum():.3f}   "
          f"log alpha_bar_T {s.alpha_bar[-1].log():.3f}   alpha_bar_T {s.alpha_bar[-1]:.1e}")

# %% [markdown] tags=["exercise"]
# **Exercise 2.3 · The signal-to-noise ratio.** Write `my_snr(schedule, t)`: $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$ for a `(B,)` tensor of code indices. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_snr(schedule, t):
    """SNR(t) = alpha_bar_t / (1 - alpha_bar_t), (B,) (Kingma et al. 2021)."""
    ### BEGIN SOLUTION
    alpha_bar = schedule.alpha_bar[t]  # (B,)
    return alpha_bar / (1 - alpha_bar)
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_snr(my_snr)

# %% [markdown] tags=["exercise"]
# **Exercise 2.4 · The cosine schedule.** Write `my_cosine_beta(T, s=0.008, max_beta=0.999)`: the `(T,)` float64 betas of Nichol & Dhariwal's eq. 17,
# $f(t) = \cos^2\!\big(\tfrac{t/T + s}{1 + s}\,\tfrac{\pi}{2}\big)$, $\bar\alpha_t = f(t)/f(0)$,
# $\beta_t = \min\big(1 - \bar\alpha_t/\bar\alpha_{t-1},\ \text{max\_beta}\big)$; the beta of code index `t` is
# $1 - f(t+1)/f(t)$, capped. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_cosine_beta(T, s=0.008, max_beta=0.999):
    """Betas of the cosine schedule (Nichol & Dhariwal 2021, eq. 17), (T,) float64."""
    ### BEGIN SOLUTION
    def f(t):
        return torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    t = torch.arange(T, dtype=torch.float64)
    return torch.clamp(1 - f(t + 1) / f(t), max=max_beta)
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_cosine_beta(my_cosine_beta)

# %% [markdown]
# ## The pixel histogram approaches $\mathcal N(0, 1)$
#
# Take 256 test digits and noise them to a few steps of the linear T=1000 schedule. MNIST pixels
# sit mostly at $-1$ (background) and near $+1$ (ink); the noise blurs the two spikes into one
# Gaussian. The red line is the $\mathcal N(0,1)$ density that sampling starts from.

# %%
schedule = schedules["linear T=1000"]
batch = x_test[:256].double()  # (256, 1, 28, 28)
eps = torch.randn(batch.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
panels = {}
for t in (0, 100, 300, 999):
    x_t = forward.q_sample(schedule, batch, torch.full((256,), t), eps)
    panels[f"t={t}: mean {x_t.mean():+.2f}, std {x_t.std():.2f}"] = x_t
plot_curves.pixel_histograms(panels)
plt.show()

# %% [markdown]
# ## The T = 300 problem
#
# Sampling starts from $x_T\sim\mathcal N(0, I)$. That is only right if $q(x_T\mid x_0)$ is
# (almost) $\mathcal N(0, I)$ for every digit. We measure the gap with
# $\mathrm{KL}\big(q(x_T\mid x_0)\,\|\,\mathcal N(0, I)\big)$ — the *prior-matching* term $L_T$ of the
# ELBO (notebook 1). `widgets.readouts` computes it per pixel for one digit, from
# `forward.q_mean_variance` and `gaussian.normal_kl`:

# %%
show_code(widgets.readouts)

# %%
print(f"{'schedule':24s} {'sqrt(alpha_bar_T)':>17s} {'SNR(T)':>9s} {'KL per pixel':>13s} {'KL of the digit':>16s}")
for name, schedule in schedules.items():
    r = widgets.readouts(schedule, x0, schedule.T - 1)
    print(f"{name:24s} {r['sqrt_alpha_bar']:17.4g} {r['snr']:9.2e} {r['kl_per_pixel']:13.2e} {r['kl_total']:11.3g} nats")

# %% [markdown]
# With the lecture's linear T=300 schedule, $\sqrt{\bar\alpha_T} = 0.22$: **22 % of the digit is
# still in $x_T$**, and $q(x_T\mid x_0)$ is about 18 nats away from $\mathcal N(0,I)$ for this digit,
# over a thousand times more than for the other three schedules. A model trained on this chain never sees
# pure noise at its last step, yet sampling hands it pure noise.
#
# The same number from the variational-bound code, `bound.prior_bpd` (bits per dimension, so
# times $\ln 2$ for nats):

# %%
schedule = schedules["linear T=300"]
prior_nats = bound.prior_bpd(schedule, x0[None].double()).item() * math.log(2)
print(f"prior_bpd * ln 2 = {prior_nats:.6f} nats/pixel;  readouts: {widgets.readouts(schedule, x0, 299)['kl_per_pixel']:.6f}")

# %% [markdown] tags=["exercise"]
# **Exercise 2.5 · When is the signal gone.** Write `my_first_step_below(schedule, fraction)`: the first code index `t` at which the signal left in $x_t$,
# $\sqrt{\bar\alpha_t}$, is below `fraction` (a Python `int`), or `None` if no step of the schedule gets there. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_first_step_below(schedule, fraction):
    """First code t with sqrt(alpha_bar_t) < fraction, or None."""
    ### BEGIN SOLUTION
    for t in range(schedule.T):
        if schedule.alpha_bar[t].sqrt() < fraction:
            return t
    return None
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_first_step_below(my_first_step_below)

# %% [markdown]
# The package's answer (`schedules.first_step_below`) for the four schedules, at 1 %:

# %%
for name in schedules:
    t = first_step_below(schedules[name], 0.01)
    left = schedules[name].alpha_bar[-1].sqrt()
    print(f"{name:24s} " + (f"below 1 % from code t = {t} of {schedules[name].T}" if t is not None
                             else f"never below 1 %: sqrt(alpha_bar_T) = {left:.2f}"))

# %% [markdown]
# The rescaled T = 300 chain gets below 1 % at the same share of its length as the T = 1000 one (95 %),
# the cosine schedule only in its last 7 steps, and the lecture's schedule never.

# %% [markdown]
# Where is the digit? A single $x_T$ hides it under noise, but the *mean* of $q(x_T\mid x_0)$,
# $\sqrt{\bar\alpha_T}\,x_0$, does not. Below: one draw of $x_T$, the average of 256 draws, and the
# exact mean from `forward.q_mean_variance`, for the lecture's schedule (top) and the rescaled one (bottom).

# %%
draws = torch.randn((256, *x0.shape), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
images, titles = [], []
for name in ("linear T=300", "linear T=300 rescaled"):
    schedule = schedules[name]
    t_last = torch.full((256,), schedule.T - 1)
    x_T = forward.q_sample(schedule, x0.double().expand_as(draws), t_last, draws)  # (256, 1, 28, 28)
    mean, _ = forward.q_mean_variance(schedule, x0[None].double(), t_last[:1])
    images += [x_T[0], x_T.mean(0), mean[0]]
    titles += [f"{name}\none x_T", "mean of 256 x_T", "sqrt(alpha_bar_T) x0"]
plot_images.image_grid(torch.stack(images), ncols=3, titles=titles, size=1.9)
plt.show()

# %% [markdown]
# The histograms of $x_T$ over 256 digits say the same: for T = 300 the pixels are shifted left
# (the black background, $x_0 = -1$, is 22 % visible) and skewed; after the fix they follow
# $\mathcal N(0,1)$.

# %%
panels = {}
for name in ("linear T=300", "linear T=300 rescaled"):
    schedule = schedules[name]
    x_T = forward.q_sample(schedule, batch, torch.full((256,), schedule.T - 1), eps)
    panels[f"{name}: mean {x_T.mean():+.2f}, std {x_T.std():.2f}"] = x_T
plot_curves.pixel_histograms(panels, size=(3.4, 2.4))
plt.show()

# %% [markdown]
# **The fix.** Keep $\bar\alpha_T \approx 0$ when you shorten the chain:
#
# * *rescale* the linear betas by $1000/T$ (`linear_schedule(300, rescale=True)`, betas
#   $3.3\cdot10^{-4}\to 0.067$), so that 300 bigger steps destroy about as much as 1000 small ones (the same $\sum\beta_s$; equal to first order in $\beta$); or
# * use the *cosine* schedule, which is defined through $\bar\alpha_t$ and ends near 0 for any $T$.
#
# The package warns whenever $\bar\alpha_T > 10^{-3}$:

# %%
for name, schedule in schedules.items():
    betas = f"betas {schedule.beta[0].item():.2e} .. {schedule.beta[-1].item():.3f}"
    print(f"{name:24s} {betas:28s} alpha_bar_T = {schedule.alpha_bar[-1].item():.2e}")

# %% [markdown]
# ### The consequence: what the sampler draws
#
# The forward statistics are only half the story; what matters is the samples. No training is
# needed to see them: the toy mixture of notebook 1 has an exact denoiser,
# `GaussianMixture.eps_model(schedule)`, the $\epsilon$-prediction that minimises $L_\text{simple}$ at
# every step. We run Ho et al.'s Algorithm 2 with it from $x_T\sim\mathcal N(0,1)$ (`sampling.sample`,
# `sampler="ddpm"`) under the three linear schedules, so any error is the schedule's, never the
# network's. The distance to the data is the 1-D Wasserstein distance $W_2$ of 4 000 samples to 16 000
# true draws (`sliced_wasserstein`, exact in 1-D); 4 000 more true draws give the floor, what a perfect
# sampler would score at this sample size.

# %%
def sample_exact(data, schedule, n=4_000, seed=3):
    """Algorithm 2 with the exact denoiser of `data`, from x_T ~ N(0, 1): (n, 1) samples."""
    return sample(data.eps_model(schedule), schedule, (n, 1), sampler="ddpm", clip_x0=False,
                  dtype=torch.float64, progress=False, generator=torch.Generator().manual_seed(seed)).samples


def compare_histograms(data, names, grid, title):
    reference = data.sample((16_000, 1), generator=torch.Generator().manual_seed(5))  # (16000, 1)
    floor = sliced_wasserstein(data.sample((4_000, 1), generator=torch.Generator().manual_seed(6)), reference, 1)
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 2.4), sharey=True, layout="constrained")
    print(f"{title}: W2 of 4 000 true draws (the floor) {floor:.2f}")
    for ax, name in zip(axes, names):
        x = sample_exact(data, schedules[name])
        w2 = sliced_wasserstein(x, reference, 1)
        print(f"  {name:24s} samples: mean {x.mean():6.2f}, std {x.std():.2f}, W2 to the data {w2:.2f}")
        ax.hist(x[:, 0].numpy(), bins=60, density=True, alpha=0.6, label="samples")
        ax.plot(grid.numpy(), data.log_prob(grid[:, None]).exp().numpy(), "k", lw=1.2, label="data")
        ax.set_title(f"{name}\nW2 {w2:.2f}", fontsize=9)
    axes[0].legend(fontsize=8)
    plt.show()


mixture = GaussianMixture(weights=(0.3, 0.7), means=(-1.0, 0.6), stds=(0.15, 0.3))  # notebook 1's toy
sampled = ("linear T=300", "linear T=300 rescaled", "linear T=1000")
compare_histograms(mixture, sampled, torch.linspace(-1.8, 1.8, 361, dtype=torch.float64), "toy mixture")

# %% [markdown]
# Nothing to see: for one coordinate of the toy the exact chain forgives the wrong start, because its
# $q(x_T)$, with mean $\sqrt{\bar\alpha_T}\,\mathbb E[x_0]$ and variance $\bar\alpha_T\operatorname{Var}[x_0] + 1 - \bar\alpha_T$,
# is already close to $\mathcal N(0, 1)$ (first line below).
#
# A digit is different, because its 784 pixels move **together**. Take the direction of the mean
# image, $u = \mathbb E[x_0]/\lVert\mathbb E[x_0]\rVert$. The projection $u\cdot x_0$ of the test digits
# has a large mean and a small spread, so 22 % of it is still far from 0:

# %%
flat = x_test.flatten(1).double()  # (10000, 784)
u = flat.mean(0) / flat.mean(0).norm()  # (784,) unit vector along the mean image
projection = flat @ u  # (10000,) one number per digit
ab_T = schedules["linear T=300"].alpha_bar[-1].item()
x0_toy = mixture.sample((100_000, 1), generator=torch.Generator().manual_seed(7))
print(f"toy: data mean {x0_toy.mean():.2f}, variance {x0_toy.var():.2f}; under linear T=300 q(x_T) has mean "
      f"{math.sqrt(ab_T) * x0_toy.mean():.2f}, variance {ab_T * x0_toy.var() + 1 - ab_T:.2f}")
print(f"u . x0 over the test digits: mean {projection.mean():.1f}, std {projection.std():.2f}")
print(f"under linear T=300, q(x_T) along u: mean sqrt(alpha_bar_T) * {projection.mean():.1f} = "
      f"{math.sqrt(ab_T) * projection.mean():.1f}, where the sampler starts at 0 +- 1")

# %% [markdown]
# Model that one direction by a Gaussian with the digits' mean and standard deviation: its exact
# denoiser is known too (a one-component `GaussianMixture`). Now the wrong start shows:

# %%
direction = GaussianMixture.gaussian(projection.mean().item(), projection.std().item())
compare_histograms(direction, sampled, torch.linspace(15, 28, 261, dtype=torch.float64), "u . x0 of a digit")

# %% [markdown]
# **Why.** The exact reverse chain turns each $x_T$ into a draw of $q(x_0\mid x_T)$; it is right only
# if $x_T$ is drawn from the chain's own marginal $q(x_T)$. Under T = 300, $q(x_T)$ still holds
# $\sqrt{\bar\alpha_T} = 22\,\%$ of the signal, and the sampler starts from $\mathcal N(0, 1)$ instead. For
# Gaussian data $\mathcal N(m, s^2)$ the damage is a closed form (regress $x_0$ on $x_T$, then average over the
# wrong start; `toy.x0_law_from_standard_normal_start`):
#
# $$k = \frac{\sqrt{\bar\alpha_T}\,s^2}{\bar\alpha_T s^2 + 1 - \bar\alpha_T},\qquad
# \mathbb E[\text{sample}] = m\,\big(1 - k\sqrt{\bar\alpha_T}\big),\qquad
# \operatorname{Var}[\text{sample}] = s^2\big(1 - k\sqrt{\bar\alpha_T}\big) + k^2 .$$
#
# With $\bar\alpha_T\to 0$ it is the data's $m$ and $s^2$. Against the histograms above:

# %%
for name in sampled:
    mean, std = x0_law_from_standard_normal_start(direction.means[0], direction.stds[0], schedules[name].alpha_bar[-1].item())
    print(f"{name:24s} predicted samples: mean {mean:6.2f}, std {std:.2f}  (data: {direction.means[0]:.2f}, "
          f"{direction.stds[0]:.2f}); {1 - mean / direction.means[0]:.0%} of the mean image missing")

# %% [markdown]
# Under T = 300 the samples sit 1.5 standard deviations below the data along $u$: in this model of one
# direction, the digits come out with a tenth too little of the mean image (whose background is black).
# The simulations agree with the formula to their sampling error; rescaled, the samples are at the floor
# of the sample size. The start is the whole cause: the same T = 300 chain, started from draws of its own
# $q(x_T)$ instead of $\mathcal N(0, 1)$, lands on the data:

# %%
schedule = schedules["linear T=300"]
x0_direction = direction.sample((4_000, 1), generator=torch.Generator().manual_seed(9))  # (4000, 1)
x_T = forward.q_sample(schedule, x0_direction, torch.full((4_000,), schedule.T - 1),
                       torch.randn((4_000, 1), generator=torch.Generator().manual_seed(10), dtype=torch.float64))
x = sample(direction.eps_model(schedule), schedule, (4_000, 1), sampler="ddpm", clip_x0=False, x_T=x_T,
           progress=False, generator=torch.Generator().manual_seed(3)).samples
print(f"linear T=300 from q(x_T): samples mean {x.mean():.2f}, std {x.std():.2f} (data {direction.means[0]:.2f}, {direction.stds[0]:.2f})")

# %% [markdown]
# A trained network adds a second problem on top: it never saw pure noise at its last step.

# %% [markdown]
# ## Try it yourself
#
# Move the slider over $t$ and switch schedules. The read-outs are `widgets.readouts` for the
# digit shown: $\sqrt{\bar\alpha_t}$, $\mathrm{SNR}(t)$ and
# $\mathrm{KL}(q(x_t\mid x_0)\,\|\,\mathcal N(0,I))$ per pixel. The noise draw is fixed, so moving
# the slider only changes the mix of digit and noise. (A widget needs a running kernel; the static
# strip above shows the same pictures.)

# %% tags=["nbval-ignore-output"]
widgets.forward_noising_widget(x0, schedules, t=150)

# %% [markdown]
# ## Summary
#
# * $q(x_t\mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t)I)$: one Gaussian jump to any step.
# * A schedule must end with $\bar\alpha_T \approx 0$; check $\sqrt{\bar\alpha_T}$ and the prior KL
#   (`Schedule.to_dict()`, `widgets.readouts`).
# * Linear 1e-4 → 0.02 is tuned for $T = 1000$. For shorter chains rescale it or use the cosine schedule.
# * Even an exact denoiser samples the wrong distribution when $\bar\alpha_T$ is not near 0: it starts from
#   $\mathcal N(0, I)$, not from $q(x_T)$. The damage is largest along directions where the pixels move
#   together (in a 1-D model of the mean-image direction, 10 % of the mean image is missing under T = 300).

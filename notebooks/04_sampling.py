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
# # 4 · Sampling: from noise to digits with DDPM and DDIM
#
# **Runtime:** about 1 min on 2 CPU cores (measured with `jupyter nbconvert --execute`; most of it is
# the 1000-step DDPM chain of section 1; several times longer when other programs compete for the cores).
#
# A trained noise predictor $\epsilon_\theta(x_t, t)$ (notebook 3) turns into a generator by running
# the forward process backwards. With the shipped weights we
#
# 1. run DDPM's ancestral sampler through all $T = 1000$ steps and watch a digit appear,
# 2. sample with DDIM in 10, 20 and 50 steps and measure the samples (MNIST-FID, digit histogram),
# 3. check that DDIM with $\eta = 0$ is deterministic: one noise, one digit,
# 4. walk between two noises and watch the digit change,
# 5. compare DDPM's two variance choices.
#
# *Time index.* The papers count $t = 1,\dots,T$; the code counts `t = 0..T-1`, so code `t`
# is paper $t+1$ (see `course_ddpm.schedules`). Every `t` printed below is a code index.

# %%
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import HTML

from course_ddpm import evaluation, exercises, load_pretrained, plot_curves, plot_images, results, reverse, sampling
from course_ddpm.checkpoints import schedule_from_card
from course_ddpm.data import load_mnist
from course_ddpm.ddim import ddim_step, slerp, timesteps
from course_ddpm.ddpm import ddpm_step
from course_ddpm.fid import fid_reference_points, mnist_fid
from course_ddpm.notebook import setup, show_code
from course_ddpm.schedules import broadcast

setup(seed=0)  # torch threads and seed (course_ddpm.notebook.setup)

# %% [markdown]
# The shipped model and the schedule it was trained with (notebook 3 shows how it was trained):

# %%
model, card = load_pretrained("unet")
schedule = schedule_from_card(card)
print(f"{card['model']['name']}, {card['step']} training steps, {schedule.name}")

# %% [markdown]
# ## 1. DDPM: ancestral sampling
#
# Start from pure noise and take $T$ small steps down the chain, each a draw from the learned
# reverse transition $p_\theta(x_{t-1}\mid x_t) = \mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I)$.
# Algorithm 2 of Ho et al. (2020):
#
# > $x_T\sim\mathcal N(0, I)$  
# > **for** $t = T,\dots,1$: $\quad z\sim\mathcal N(0, I)$ if $t > 1$, else $z = 0$  
# > $\qquad x_{t-1} = \dfrac{1}{\sqrt{\alpha_t}}\Big(x_t - \dfrac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big) + \sigma_t z$  
# > **return** $x_0$
#
# The mean is Ho et al.'s eq. 11. The package computes it as the forward posterior mean
# $\tilde\mu(\hat x_0, x_t)$ with the model's estimate $\hat x_0$ of the clean image in place of $x_0$
# (the same number; it also lets us clip $\hat x_0$ to $[-1, 1]$).
#
# **Clipping.** Every sample, FID and study in this course is drawn with `clip_x0=True`: $\hat x_0$ is
# clipped to $[-1, 1]$ before the mean is formed. That is what Ho et al.'s *released code* does, not
# their Algorithm 2 above (which has no clip). For DDIM with $\eta = 0$ (section 2) it matters more:
# with the clip, DDIM is no longer a discretisation of the probability-flow ODE (notebook 5), whose
# drift has no clip in it. Section 6 measures what the clip changes.

# %% [markdown] tags=["exercise"]
# **Exercise 4.1 · $\hat x_0$ from $\epsilon$.** Write `my_x0_from_eps(schedule, x_t, t, eps)`: solve $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$
# for $x_0$, for a batch `x_t` `(B, ...)`, code indices `t` `(B,)` and `eps` like `x_t`. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_x0_from_eps(schedule, x_t, t, eps):
    """x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (Ho et al. eq. 15)."""
    ### BEGIN SOLUTION
    alpha_bar = broadcast(schedule.alpha_bar, t, x_t)  # (B, 1, ..., 1)
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_x0_from_eps(my_x0_from_eps)

# %% [markdown] tags=["exercise"]
# **Exercise 4.2 · One DDPM step.** Write `my_ddpm_step(schedule, x_t, t, eps_pred, z)`: line 4 of Algorithm 2 with $\sigma_t^2 = \beta_t$, for a
# batch `x_t` `(B, ...)`, code indices `t` `(B,)` (code `t = 0` is the paper's $t = 1$, the last step), the
# model's `eps_pred` and a noise draw `z`, both like `x_t`. No clipping. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_ddpm_step(schedule, x_t, t, eps_pred, z):
    """x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_pred) / sqrt(alpha_t) + sigma_t z, sigma_t^2 = beta_t."""
    ### BEGIN SOLUTION
    alpha = broadcast(schedule.alpha, t, x_t)  # (B, 1, ..., 1)
    alpha_bar = broadcast(schedule.alpha_bar, t, x_t)
    beta = broadcast(schedule.beta, t, x_t)
    mean = (x_t - beta / (1 - alpha_bar).sqrt() * eps_pred) / alpha.sqrt()
    not_last = (t > 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))  # z = 0 at the last step
    return mean + not_last * beta.sqrt() * z
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_ddpm_step(my_ddpm_step)

# %% [markdown]
# The package's step:

# %%
show_code(ddpm_step)

# %% [markdown]
# `sampling.sample` runs the loop. 16 digits, 1000 network calls on a batch of 16; `record=True`
# keeps every $x_t$ and every $\hat x_0$ for the pictures below. The progress bar and the time:

# %% tags=["nbval-ignore-output"]
start = time.perf_counter()
ddpm = sampling.sample(model, schedule, (16, 1, 28, 28), sampler="ddpm",
                       generator=torch.Generator().manual_seed(0), record=True)
print(f"DDPM, {len(ddpm.timesteps)} steps, 16 images: {time.perf_counter() - start:.1f} s")

# %%
print(f"trajectory {tuple(ddpm.trajectory.shape)} = (T + 1, B, C, H, W); x0_preds {tuple(ddpm.x0_preds.shape)}")
plot_images.image_grid(ddpm.samples, ncols=8, suptitle="DDPM, 1000 steps")
plt.show()

# %% [markdown]
# **The trajectory.** Top row: one chain's $x_t$ as the sampler walks down (`trajectory[k]` is the
# input of the step at `timesteps[k]`). Bottom row: the network's estimate of the clean image at the
# same step, $\hat x_0 = \big(x_t-\sqrt{1-\bar\alpha_t}\,\epsilon_\theta(x_t, t)\big)/\sqrt{\bar\alpha_t}$
# (Ho et al. eq. 15), clipped to $[-1, 1]$. At $t = 999$ the estimate is not yet an image: dividing by
# $\sqrt{\bar\alpha_{999}}$ amplifies whatever noise the network did not explain, and the clip turns it
# into black-and-white speckle (the cell after the strip counts the clipped pixels). A few hundred
# steps later $\hat x_0$ is a blurry average of possible digits; $x_t$ still looks like noise when
# $\hat x_0$ already shows the digit.

# %%
shown_t = [999, 900, 800, 700, 600, 500, 400, 300, 200, 100, 50, 0]
k = [ddpm.timesteps.index(t) for t in shown_t]  # positions in the chain
plot_images.trajectory_strip(ddpm.trajectory[k, 0], ddpm.x0_preds[k, 0], t=shown_t)
plt.show()

# %%
print(f"1 / sqrt(alpha_bar) at t = 999: {1 / schedule.alpha_bar[999].sqrt():.0f} (the amplification of x0_pred)")

# %% tags=["nbval-ignore-output"]
for t in (999, 900, 700, 500, 100):  # the 1000-step chain's round-off differs between CPUs: not compared
    at_clip = (ddpm.x0_preds[ddpm.timesteps.index(t)].abs() == 1).double().mean()  # all 16 chains
    print(f"t = {t:3d}: {100 * at_clip:4.1f} % of the pixels of x0_pred sit at the clip (+-1)")

# %% [markdown]
# When is the digit decided? The mean squared distance between each step's estimate $\hat x_0$ and
# the sample the chain finally returns, averaged over the 16 chains:

# %%
distance = (ddpm.x0_preds - ddpm.samples[None]).pow(2).mean(dim=(2, 3, 4)).mean(dim=1)  # (T,)
t_axis = torch.tensor(ddpm.timesteps, dtype=torch.float64)
plot_curves.density_curves(t_axis, {"mean ||x0_pred(t) - x0||^2 / D": distance}, xlabel="t (code index)",
                        title="distance of the estimate x0_pred from the final sample")
plt.gca().invert_xaxis()  # sampling runs from t = 999 (left) to t = 0 (right)
plt.show()

# %% [markdown]
# As an animation (every 50th step, 6 chains; press play):

# %% tags=["nbval-ignore-output"]
frames = list(range(0, len(ddpm.timesteps), 50)) + [len(ddpm.timesteps) - 1]
animation = plot_images.trajectory_animation(ddpm.trajectory[frames, :6], ddpm.x0_preds[frames, :6],
                                          t=[ddpm.timesteps[i] for i in frames], size=1.0)
HTML(animation.to_jshtml())

# %% [markdown]
# ## 2. DDIM: the same model, far fewer steps
#
# 1000 network calls per image is slow. Song et al. (2021, DDIM) found a family of non-Markovian
# forward processes with the same marginals $q(x_t\mid x_0)$, and hence the same training loss: the
# trained model works unchanged. Their reverse step can jump from $t$ to any earlier $t'$
# (eq. 12, with their $\alpha$ written as our $\bar\alpha$):
#
# $$x_{t'} = \sqrt{\bar\alpha_{t'}}\;\underbrace{\hat x_0}_{\text{predicted } x_0}
# + \underbrace{\sqrt{1-\bar\alpha_{t'}-\sigma_t^2}\;\epsilon_\theta(x_t, t)}_{\text{direction pointing to } x_t}
# + \underbrace{\sigma_t z}_{\text{random noise}},
# \qquad \sigma_t = \eta\sqrt{\frac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}}\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_{t'}}}\quad\text{(eq. 16)}.$$
#
# With $\eta = 1$ and $t' = t-1$ this is the DDPM step with $\sigma_t^2 = \tilde\beta_t$; with $\eta = 0$
# there is no noise at all.
# The $K$ steps visit every $(T/K)$-th index (`timesteps` from `course_ddpm.ddim`, "leading" spacing as
# in the DDIM paper):

# %% [markdown] tags=["exercise"]
# **Exercise 4.3 · One DDIM step.** Write `my_ddim_step(schedule, x_t, t, t_prev, eps_pred, eta, z)`: eq. 12 with $\sigma_t$ of eq. 16, from
# code index `t` to `t_prev` (both ints, `t_prev < t`; `t_prev = -1` is the clean end, where $\bar\alpha = 1$:
# `schedule.alpha_bar_or_one[t_prev + 1]` handles it). `x_t`, `eps_pred` and the noise `z` are `(B, ...)`. No clipping. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_ddim_step(schedule, x_t, t, t_prev, eps_pred, eta, z):
    """x_{t_prev} of DDIM (Song et al. 2021, eq. 12 with sigma of eq. 16)."""
    ### BEGIN SOLUTION
    alpha_bar = schedule.alpha_bar[t]
    alpha_bar_prev = schedule.alpha_bar_or_one[t_prev + 1]  # 1 at t_prev = -1
    x0_pred = (x_t - (1 - alpha_bar).sqrt() * eps_pred) / alpha_bar.sqrt()
    sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar)).sqrt() * (1 - alpha_bar / alpha_bar_prev).sqrt()
    direction = (1 - alpha_bar_prev - sigma**2).sqrt() * eps_pred
    return alpha_bar_prev.sqrt() * x0_pred + direction + sigma * z
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_ddim_step(my_ddim_step)

# %%
for steps in (10, 20, 50):
    ts = timesteps(schedule.T, steps)
    print(f"{steps:2d} steps: {ts[:4]} ... {ts[-2:]} (then x0)")
print()
show_code(ddim_step)

# %% [markdown]
# We draw `N_EVAL` digits with each number of steps, all from the **same seed** and so from the same
# starting noises $x_T$: enough to look at and to count digits, too few to rank the samplers by FID
# (below).

# %%
N_EVAL = 100

# %% tags=["nbval-ignore-output"]
ddim = {}
for steps in (10, 20, 50):
    start = time.perf_counter()
    ddim[steps] = sampling.generate(model, schedule, N_EVAL, sampler="ddim", num_inference_steps=steps, eta=0.0,
                                    seed=1, progress=False)
    print(f"DDIM {steps:2d} steps, {N_EVAL} images: {time.perf_counter() - start:5.1f} s")

# %% [markdown]
# The first 10 digits of each run. Each column starts from the same $x_T$:

# %%
rows = torch.cat([ddim[steps][:10] for steps in ddim])  # (30, 1, 28, 28)
titles = [f"{steps} steps" if i == 0 else "" for steps in ddim for i in range(10)]
plot_images.image_grid(rows, ncols=10, titles=titles)
plt.show()

# %% [markdown]
# **Measuring samples.** `mnist_fid` (`course_ddpm.fid`) is the Fréchet distance between Gaussians
# fitted to the features that the course's MNIST classifier extracts from the samples and from the 10 000
# MNIST test images (lower is better). It depends strongly on the number of samples $N$, so it is
# only read against two yardsticks at the same $N$ (`fid_reference_points`): the
# **floor**, $N$ real training digits (a perfect model), and the **ceiling**, $N$ images of uniform
# noise. How large must $N$ be? Two draws of $N$ real digits, against the test set:

# %% tags=["nbval-ignore-output"]
for n in (100, 1000):
    floors = [fid_reference_points(n, seed=seed)["floor"] for seed in (0, 1)]
    print(f"N = {n:4d}: floor {floors[0]:5.1f} and {floors[1]:5.1f} (two draws of N real digits)")

# %% [markdown]
# At $N = 100$ the floor alone is near 90 and moves by about 10 between two draws of real digits:
# as large as the differences between samplers that we would want to read. So this notebook
# does not rank samplers at $N = 100$: section 6 reads them at $N = 1000$ (floor near 10) from the
# course's sampler study. What 100 digits do show is the **digit histogram** of the classifier's
# predictions: a good model draws every digit about equally often (KL from uniform near 0).

# %% tags=["nbval-ignore-output"]
counts = {steps: evaluation.digit_histogram(x)[0] for steps, x in ddim.items()}
for steps in ddim:
    kl = evaluation.kl_from_uniform(counts[steps] / N_EVAL)
    print(f"DDIM {steps:2d} steps: KL from uniform {kl:.2f} nats, digit counts 0..9 {counts[steps].tolist()}")
plot_curves.digit_histograms({f"DDIM {steps} steps": c for steps, c in counts.items()})
plt.show()

# %% [markdown]
# Fewer steps are faster; the question is how much quality each saving costs, and section 6
# answers it at $N = 1000$.
#
# ## 3. DDIM with $\eta = 0$ is deterministic
#
# With $\eta = 0$ the update has no random term: the sampler is a deterministic map from $x_T$ to
# $x_0$ (a discretised ODE, Song et al. section 4.3). Same noise in, same digit out — bit for bit.
# With $\eta = 1$ every step adds fresh noise, so the same $x_T$ gives different digits for different
# seeds of that noise.

# %%
x_T = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(2))


def ddim50(eta, seed):
    return sampling.generate(model, schedule, len(x_T), x_T=x_T, sampler="ddim", num_inference_steps=50, eta=eta,
                             seed=seed, progress=False)


runs = {"eta=0, seed 3": ddim50(0.0, 3), "eta=0, seed 4": ddim50(0.0, 4),
        "eta=1, seed 3": ddim50(1.0, 3), "eta=1, seed 4": ddim50(1.0, 4)}
print("eta=0: the two runs are identical:", torch.equal(runs["eta=0, seed 3"], runs["eta=0, seed 4"]))
print("eta=1: the two runs are identical:", torch.equal(runs["eta=1, seed 3"], runs["eta=1, seed 4"]))

# %%
titles = [name if i == 0 else "" for name in runs for i in range(8)]
plot_images.image_grid(torch.cat(list(runs.values())), ncols=8, titles=titles)
plt.show()

# %% [markdown]
# The $\eta = 1$ rows still share their starting noise, yet each step's fresh $z$ lets the chains drift
# apart. Because the $\eta = 0$ map is deterministic (and smooth), $x_T$ works as a *latent code* of
# the digit: section 2's columns show that the same $x_T$ gives similar digits with 10, 20 or 50 steps,
# and the next section moves through that code.
#
# ## 4. Interpolating between two noises
#
# Take two noises $x_T^{(a)}, x_T^{(b)}$ and decode points between them with DDIM ($\eta = 0$). Is a
# straight line a good path? In $D = 784$ dimensions a Gaussian sample lies near the sphere of
# radius $\sqrt D = 28$, and the midpoint of a chord lies well inside it, where the model never saw
# noise. **Spherical** interpolation (slerp, Song et al. section 5.3)
#
# $$x(\lambda) = \frac{\sin((1-\lambda)\theta)}{\sin\theta}\,x_T^{(a)} + \frac{\sin(\lambda\theta)}{\sin\theta}\,x_T^{(b)},
# \qquad \cos\theta = \frac{\langle x_T^{(a)}, x_T^{(b)}\rangle}{\|x_T^{(a)}\|\,\|x_T^{(b)}\|}$$
#
# keeps the norm (`slerp` from `course_ddpm.ddim`):

# %% [markdown] tags=["exercise"]
# **Exercise 4.4 · slerp.** Write `my_slerp(x_a, x_b, lam)`: the formula above for two tensors of one shape (each taken as one long
# vector) and a float `lam`; it returns a tensor of that shape. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_slerp(x_a, x_b, lam):
    """Spherical interpolation between two noises (Song et al. 2021, section 5.3)."""
    ### BEGIN SOLUTION
    cos_theta = (x_a * x_b).sum() / (x_a.norm() * x_b.norm())
    theta = torch.arccos(cos_theta)
    return (torch.sin((1 - lam) * theta) * x_a + torch.sin(lam * theta) * x_b) / torch.sin(theta)
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_slerp(my_slerp)

# %%
x_a, x_b = x_T[0], x_T[1]  # (1, 28, 28) each
lam = torch.linspace(0, 1, 9)
path_slerp = slerp(x_a, x_b, lam)  # (9, 1, 28, 28)
path_line = torch.stack([(1 - l) * x_a + l * x_b for l in lam.tolist()])  # the straight line, for comparison
print(f"norms: x_a {x_a.norm():.1f}, x_b {x_b.norm():.1f}, sqrt(D) = {784 ** 0.5:.0f}")
print(f"at lambda = 0.5: slerp {path_slerp[4].norm():.1f}, straight line {path_line[4].norm():.1f}")

# %%
decoded = sampling.generate(model, schedule, 18, x_T=torch.cat([path_slerp, path_line]), sampler="ddim",
                            num_inference_steps=50, eta=0.0, progress=False)
titles = [f"λ={l:.3g}" for l in lam.tolist()] + [""] * 9
plot_images.image_grid(decoded, ncols=9, titles=titles, suptitle="top: slerp;  bottom: straight line")
plt.show()

# %% [markdown]
# The ends of both rows are the digits of $x_T^{(a)}$ and $x_T^{(b)}$ (the first two columns of
# section 3's $\eta = 0$ rows), and with slerp every step in between starts from noise of the right
# norm. The straight line's middle starts from noise of norm 20 instead of 28, unlike any $x_T$ the
# sampler was built for. Compare the middle columns of the two rows, and the contrast of each
# decoded image (the standard deviation of its pixels) with that of real test digits:

# %%
contrast = decoded.flatten(1).std(dim=1)  # (18,) one number per image
print("lambda        " + " ".join(f"{l:5.3f}" for l in lam.tolist()))
print("slerp         " + " ".join(f"{c:5.2f}" for c in contrast[:9].tolist()))
print("straight line " + " ".join(f"{c:5.2f}" for c in contrast[9:].tolist()))
x_test, _ = load_mnist(train=False)
print(f"MNIST test digits: {x_test.flatten(1).std(dim=1).mean():.2f} on average")

# %% [markdown]
# One pair cannot settle which path is better: a straight-line digit can look fine. The course's
# `benchmarks/interpolation_study.py` decoded the $\lambda = 0.5$ midpoints of 500 pairs of noises
# along both paths, and the endpoints $x_T^{(a)}$ as the reference, and measured each set of 500 digits:

# %%
interp = results.load_result("interpolation_study")
print(f"N = {interp['n']} pairs, DDIM-{interp['steps']}; FID floor at N: {interp['fid_floor']:.1f}; "
      f"MNIST contrast {interp['mnist_contrast']:.2f}")
print(f"{'start':9s} {'|x_T|':>5s} {'MNIST-FID':>9s} {'confidence':>10s} {'digit KL':>8s} {'contrast':>8s}")
for name, r in interp["rows"].items():
    print(f"{name:9s} {r['x_T_norm']:5.1f} {r['fid']:9.1f} {r['mean_confidence']:10.3f} {r['kl_from_uniform']:8.3f} "
          f"{r['contrast']:8.2f}")

# %% [markdown]
# The numbers say what one picture could not. Slerp's midpoints decode to digits as good as the
# endpoints' own (the same FID, the same balance of digits, MNIST's contrast). The straight line's
# midpoints, with noise of norm 20, decode to a few digits drawn over and over (digit KL far from
# 0), with faint strokes (low contrast), and an FID several times worse. Yet the classifier is
# *more* confident on them: confidence alone would have picked the wrong path. A metric that
# compares whole distributions (FID, the digit histogram) is what catches it.

# %% [markdown]
# ## 5. DDPM's two variances
#
# The reverse step's variance $\sigma_t^2$ is not learned here. Ho et al. (section 3.2) tried two
# choices: $\sigma_t^2 = \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t$
# (`variance_type="fixed_small"`, the default; optimal if $x_0$ were one fixed point) and
# $\sigma_t^2 = \beta_t$ (`"fixed_large"`; optimal for $x_0\sim\mathcal N(0, I)$), and report similar
# sample quality for both. They differ only near the data end of the chain (`reverse.sigma2`):

# %%
small, large = reverse.sigma2(schedule, "fixed_small"), reverse.sigma2(schedule, "fixed_large")
print(f"{'t':>4s} {'beta_tilde_t':>13s} {'beta_t':>9s} {'ratio':>6s}")
for t in (0, 1, 2, 5, 10, 50, 100, 500, 999):
    print(f"{t:4d} {small[t].item():13.2e} {large[t].item():9.2e} {(small[t] / large[t]).item():6.3f}")

# %% [markdown]
# From $t = 50$ on the two agree within a few per cent; they differ only in the last few steps
# (at $t = 1$, $\tilde\beta_t$ is less than half of $\beta_t$). The very last step adds no noise with
# either choice ($z = 0$ in Algorithm 2). Try it:
# `sampling.sample(model, schedule, (16, 1, 28, 28), sampler="ddpm", variance_type="fixed_large")`,
# or read section 6.
#
# ## 6. The full sampler study
#
# Section 2 measured 100 samples per sampler: too few to rank samplers. The course's benchmark
# `benchmarks/sampler_study.py` ran every sampler on the shipped model, side by side on the same
# CPU, from the same starting noises: DDPM with all $T = 1000$ steps and both variances, and DDIM with
# 10, 20, 50 and 100 steps at $\eta\in\{0, 0.5, 1\}$. It took 34 minutes on two CPU cores; its results are stored
# with the package (`results.load_result("sampler_study")`; the README shows the same table), and this
# cell reads them:

# %%
study = results.load_result("sampler_study")
common_n, rows = study["common_n"], {r["name"]: r for r in study["results"]}
floor = study["reference"][str(common_n)]["floor"]
sizes = sorted({r["n"] for r in study["results"]})
print(f"model: step {study['meta']['checkpoint_step']}; N per sampler {sizes}; FID below on the first {common_n} "
      f"samples of each (same x_T), floor at that N {floor:.1f}")
print(f"{'sampler':14s} {'calls':>5s} {'s/sample':>8s} {'speed-up':>8s} {'MNIST-FID':>9s} {'digit KL':>8s}")
for r in study["results"]:
    print(f"{r['name']:14s} {r['network_calls']:5d} {r['wall_s_per_sample']:8.3f} {r['speedup']:7.1f}x "
          f"{r['fid_common_n']:9.2f} {r['kl_from_uniform']:8.4f}")

# %%
plot_curves.sampler_tradeoff(study["results"], fid_key="fid_common_n", floor=floor)
plt.show()

# %% [markdown]
# The published expectation (Song et al. 2021, Table 1, on CIFAR-10 with Inception-FID): DDIM with
# 50 steps and $\eta = 0$ comes within 1.0–1.5× the FID of DDPM with 1000 steps, about 20× faster.
# The same two ratios, measured here:

# %%
ddim50, ddpm = rows["ddim50_eta0"], rows["ddpm_small"]
for eta in (0, 1):
    ratio = rows[f"ddim50_eta{eta}"]["fid_common_n"] / ddpm["fid_common_n"]
    print(f"FID(DDIM 50, eta {eta}) / FID(DDPM 1000, fixed_small) = {ratio:.2f}")
print(f"speed-up of DDIM 50 over DDPM 1000: {ddim50['speedup']:.1f}x wall clock, "
      f"{ddim50['call_ratio']:.0f}x fewer network calls")
print(f"FID(DDPM fixed_large) / FID(DDPM fixed_small) = {rows['ddpm_large']['fid_common_n'] / ddpm['fid_common_n']:.2f}")

# %% [markdown]
# The speed-up is what the number of network calls predicts. The quality is not what Song et al.
# found: deterministic DDIM ($\eta = 0$) stays more than twice DDPM's FID at 50 and at 100 steps,
# while DDIM with fresh noise at every step ($\eta = 1$) comes within their 1.0–1.5× band (their
# Table 1 even has the opposite order at 50 steps on CIFAR-10: $\eta = 1$ 8.01, $\eta = 0$ 4.67).
# Why? An unconverged model is one guess; three others can be measured: the clip of $\hat x_0$
# (section 1), the "leading" spacing (the first DDIM call is at $t = 980$ on pure noise, and with
# $\eta = 0$ nothing corrects it), and the yardstick itself. `sampler_study.py --ablation --features`
# varies the first two and measures every sampler in **two feature spaces**: the course classifier's
# (a) and that of a second classifier, trained independently (b: another seed, half the width):

# %%
ablation = results.load_result("ddim_ablation")
n_ab = ablation["common_n"]
ab = {r["name"]: r for r in ablation["results"]}
print(f"first {n_ab} samples of each sampler (same x_T); FID floor at N = {n_ab}: {ablation['reference'][str(n_ab)]['floor']:.1f}")
print(f"{'sampler':28s} {'FID a':>6s} {'FID b':>6s} {'KID a':>6s} {'KID b':>6s} {'prec a':>6s} {'rec a':>6s}")
for name, r in ab.items():
    a, b = r["features"]["a"], r["features"]["b"]
    print(f"{name:28s} {a['fid']:6.1f} {b['fid']:6.1f} {a['kid']:6.1f} {b['kid']:6.1f} {a['precision']:6.2f} "
          f"{a['recall']:6.2f}")  # fmt: skip
eta0 = [r["fid"] for name, r in ab.items() if name.startswith("ddim50_eta0")]
print(f"DDIM-50, eta = 0, N = {ab['ddim50_eta0']['n']}: FID {min(eta0):.1f} to {max(eta0):.1f} with clipping and "
      f"spacing varied")  # fmt: skip
for space in "ab":
    ratio = ab["ddim50_eta0"]["features"][space]["fid"] / ab["ddpm_small"]["features"][space]["fid"]
    print(f"feature space {space}: FID(DDIM 50, eta 0) / FID(DDPM) = {ratio:.2f} at N = {n_ab}")

# %% [markdown]
# What the measurements say:
#
# * **Not clipping, not spacing.** With $\eta = 0$ the four combinations stay within about one FID
#   point of each other at $N = 1000$.
# * **Not the classifier.** An independently trained classifier ranks the samplers the same way,
#   with the same ratio. KID (an unbiased kernel distance, so without FID's floor; it can fall
#   below 0 by chance when two sets are alike) and the precision/recall pair agree too.
# * **What kind of worse:** $\eta = 0$ samples lose *precision* (fewer of them fall where real digits
#   are), not *recall* (they cover the digits as well as DDPM's do). That fits the argument of Karras
#   et al. (2022, arXiv:2206.00364, section 4): a deterministic sampler carries the network's errors
#   along the whole path, and fresh noise at each step washes part of them out. For these weights
#   the best fast sampler is DDIM with 50 steps and $\eta = 1$.
#
# **An FID is only as meaningful as its features and its $N$.** Each feature space has its own
# scale (compare the columns a and b), so FIDs from two implementations are never comparable, only
# rankings and ratios within one. And even a ratio depends on $N$: the floor adds to every FID and
# pulls the ratio towards 1 as $N$ falls (2.3 at $N = 1000$ in the study above, about 1.6 at
# $N = 300$ here). A study that finds "DDIM within 1.1× of DDPM" at small $N$ in another feature
# space is not in conflict with these numbers: compare the excess over the floor, or KID, instead.
# FID is Fréchet distance of *Gaussians* fitted to features: it sees means and covariances, nothing
# else; KID compares the distributions through a kernel; precision and recall separate realism
# from coverage. DDPM's two variances give the same FID within the noise, as Ho et al. report.
#
# ## Summary
#
# * DDPM (Algorithm 2): $T$ stochastic steps, each $x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z$ (`ddpm_step`, in `course_ddpm.ddpm`).
# * The estimate $\hat x_0$ shows the digit long before $x_t$ does.
# * DDIM (eq. 12) reuses the same model with 10–50 steps; $\eta = 0$ makes it a deterministic map
#   from noise to digit, so noises can be interpolated (with slerp).
# * Judge samples against yardsticks at the same $N$: MNIST-FID floor and ceiling, digit histogram;
#   at $N = 100$ the floor's own spread is as large as the differences between samplers.
# * Slerp's midpoints decode as well as the endpoints; the straight line's collapse onto a few faint
#   digits (500 pairs), although the classifier is more confident on them.
# * Every sample here clips $\hat x_0$ (Ho et al.'s code, not Algorithm 2). DDIM with $\eta = 0$ is
#   worse than DDPM on these weights whatever the clipping, the spacing or the feature space; it
#   loses precision, not recall. FIDs compare only within one feature space and one $N$.

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
# # 1 · The ELBO of a variational diffusion model
#
# **Runtime:** about 20 s on 2 CPU cores (measured with `jupyter nbconvert --execute`; several times
# longer when other programs compete for the cores).
#
# We derive the training objective of a diffusion model the way Luo (2022, *Understanding Diffusion
# Models: A Unified Perspective*, arXiv:2208.11970) does — as the evidence lower bound (ELBO) of a
# hierarchical VAE — and check every step numerically on a toy distribution whose density and
# optimal denoiser are known exactly. Nothing is trained: the toy's optimal noise predictor plays the
# trained network.
#
# Plan: Markovian hierarchical VAE → three restrictions (and, for physicists, why a chain avoids the normaliser $Z$) → ELBO with consistency terms → ELBO with
# denoising terms → the posterior $q(x_{t-1}\mid x_t, x_0)$ → KL as a weighted MSE → $L_\text{simple}$
# → three equivalent predictions ($x_0$, $\epsilon$, score) → both ELBO forms by Monte Carlo →
# errata of the lecture notes.
#
# *Time index.* Formulas use the papers' $t = 1,\dots,T$; code uses `t = 0..T-1`, so code `t` is
# paper $t+1$ (see `course_ddpm.schedules`).

# %%
import math

import matplotlib.pyplot as plt
import torch
from numpy.polynomial.hermite_e import hermegauss

from course_ddpm import elbo, energy, exercises, forward, gaussian, losses, plot_curves, reverse
from course_ddpm.notebook import agree, setup, show_code
from course_ddpm.schedules import broadcast, linear_schedule
from course_ddpm.toy import GaussianMixture

setup(seed=0)  # torch threads and seed (course_ddpm.notebook.setup)

# %% [markdown]
# ## 1. From a VAE to a Markovian hierarchical VAE
#
# A VAE has one latent $z$ and the bound
# $\log p(x) \ge \mathbb E_{q(z\mid x)}[\log p_\theta(x\mid z)] - D_\mathrm{KL}(q(z\mid x)\,\|\,p(z))$.
# A *Markovian hierarchical* VAE stacks $T$ latents $x_1,\dots,x_T$ above the data $x_0$ in a chain.
# The decoder walks **down** the chain, the encoder walks **up**:
#
# $$p(x_{0:T}) = p(x_T)\prod_{t=1}^{T} p_\theta(x_{t-1}\mid x_t),
# \qquad
# q(x_{1:T}\mid x_0) = \prod_{t=1}^{T} q(x_t\mid x_{t-1}).$$
#
# Each decoder factor goes from $x_t$ to $x_{t-1}$ (erratum 1 below).
#
# ## 2. Three restrictions make it a variational diffusion model
#
# Luo (section *Variational Diffusion Models*):
# 1. every latent has the **dimension of the data**;
# 2. the encoder step is **fixed, not learned**: a linear Gaussian
#    $q(x_t\mid x_{t-1}) = \mathcal N\big(\sqrt{\alpha_t}\,x_{t-1},\ (1-\alpha_t) I\big)$, with $\beta_t = 1-\alpha_t$ from a schedule;
# 3. the $\alpha_t$ are chosen so that the last latent is **standard normal**, $q(x_T\mid x_0)\approx\mathcal N(0, I)$.
#
# Our data is a 1-D mixture of two Gaussians (`toy.GaussianMixture`). Here are 40 of 2 000 paths of
# the encoder chain, from the data (left) to noise (right):

# %%
mixture = GaussianMixture(weights=(0.3, 0.7), means=(-1.0, 0.6), stds=(0.15, 0.3))
schedule = linear_schedule(1000)
x0 = mixture.sample((2000, 1), generator=torch.Generator().manual_seed(0))  # (B, 1)
chain = forward.q_trajectory(schedule, x0, generator=torch.Generator().manual_seed(1))  # (T + 1, B, 1)
plot_curves.paths_1d(chain, max_paths=40, title="forward chain on the toy mixture")
plt.show()

# %% [markdown]
# The three restrictions, checked on these paths. For restriction 2 we regress $x_t$ on $x_{t-1}$
# at one step: a fixed linear Gaussian step has slope $\sqrt{\alpha_t}$, intercept 0 and residual
# variance $\beta_t$, whatever the data.

# %%
print(f"1. dimension: x0 {tuple(x0.shape)}; chain {tuple(chain.shape)} = (T + 1, B, 1), every x_t like x0")

t = 500  # code step: chain[t] is x_{t-1} of this step, chain[t + 1] is x_t
x_prev, x_next = chain[t], chain[t + 1]  # (B, 1) each
design = torch.cat([x_prev, torch.ones_like(x_prev)], dim=1)  # (B, 2): columns for slope and intercept
coef = torch.linalg.lstsq(design, x_next).solution  # (2, 1): least-squares slope and intercept
slope, intercept = coef[:, 0]
residual_var = (x_next - design @ coef).var()
print(f"2. fixed step: slope {slope:.4f} (sqrt(alpha_t) = {schedule.alpha[t].sqrt():.4f}), "
      f"intercept {intercept:+.4f}, residual variance {residual_var:.5f} (beta_t = {schedule.beta[t]:.5f})")

print(f"3. x_T: mean {chain[-1].mean():+.3f}, std {chain[-1].std():.3f} (N(0, 1)); alpha_bar_T = {schedule.alpha_bar[-1]:.1e}")

# %% [markdown]
# The encoder step in the package is exactly this closed form of the schedule; there is nothing in it to learn:

# %%
show_code(forward.q_step_mean_variance)

# %% [markdown]
# ### Aside for physicists: why a chain, and why a tractable normaliser matters
#
# Diffusion models come from non-equilibrium statistical physics (Sohl-Dickstein et al. 2015,
# *Deep unsupervised learning using nonequilibrium thermodynamics*, arXiv:1503.03585): destroy the
# structure of the data **slowly** with a forward diffusion, a Markov chain that relaxes any density
# to a simple equilibrium, here $\mathcal N(0, I)$, and learn the chain that runs back. For small steps
# the reverse of a Gaussian diffusion step has the same Gaussian form (Feller 1949, which they cite), so
# each reverse step can be learned as a Gaussian.
#
# Why not model the data directly as a Boltzmann density (their section 1),
# $p_\theta(x) = \varphi_\theta(x)/Z_\theta$ with $\varphi_\theta = e^{-E_\theta}$? Its log-likelihood $\log p_\theta(x) = -E_\theta(x) - \log Z_\theta$ needs the
# partition function $Z_\theta = \int e^{-E_\theta(x)}\,dx$, and so does its gradient in $\theta$. In one
# dimension a quadrature finds $Z$ (a double well, $E = 8(x^2-1)^2$, below: about 100 points give it to 12
# digits); with $n$ points per axis the same rule needs $n^D$ evaluations of $E$ in $D$ dimensions
# (`course_ddpm.energy`):

# %%
def well(x):
    return energy.double_well(x, barrier=8.0)  # E(x) = 8 (x^2 - 1)^2


for n in (13, 25, 49, 97, 193):
    print(f"Z by the trapezoid rule on [-3, 3], n = {n:3d} points: {math.exp(energy.log_partition_1d(well, -3.0, 3.0, n)):.12f}")
for n, what in ((100, "points per axis, about what the 1-D rule needed"), (256, "grey levels: a sum over every 8-bit image")):
    print(f"D = 784 (an MNIST image), n = {n} {what}: 10^{energy.log10_grid_points(n, 784):.0f} evaluations")

# %% [markdown]
# Left: the unnormalised $\varphi$ and the density $\varphi/Z$. Right: the forward chain of our toy as a
# sequence of densities $q(x_t)$ (closed form, `GaussianMixture.log_prob_at`), relaxing to the
# equilibrium $\mathcal N(0,1) = e^{-x^2/2}/\sqrt{2\pi}$, a Boltzmann density whose $Z$ is known.

# %%
x_axis = torch.linspace(-3, 3, 601, dtype=torch.float64)  # (N,)
Z_well = math.exp(energy.log_partition_1d(well, -3.0, 3.0, 601))
fig, (ax_well, ax_chain) = plt.subplots(1, 2, figsize=(9, 2.8), layout="constrained")
ax_well.plot(x_axis, torch.exp(-well(x_axis)), label=r"$\varphi = e^{-E}$")
ax_well.plot(x_axis, torch.exp(-well(x_axis)) / Z_well, label=rf"$\varphi/Z$, $Z = {Z_well:.3f}$")
ax_well.set_title("double well E = 8(x² − 1)²", fontsize=10); ax_well.legend(fontsize=8)
for t in (0, 50, 150, 300, 999):  # code steps
    alpha_bar = schedule.alpha_bar[t].reshape(1, 1).expand(len(x_axis), 1)  # (N, 1)
    ax_chain.plot(x_axis, mixture.log_prob_at(x_axis[:, None], alpha_bar).exp(), label=f"t = {t}")
ax_chain.set_title("forward chain: q(x_t) relaxes to N(0, 1)", fontsize=10); ax_chain.legend(fontsize=8)
plt.show()

# %% [markdown]
# A diffusion model never needs a $Z$. Its density
# $p_\theta(x_0) = \int p(x_T)\prod_{t=1}^T p_\theta(x_{t-1}\mid x_t)\,dx_{1:T}$ is built from normalised pieces,
# a standard normal and Gaussian steps, so it integrates to 1 for every $\theta$. It cannot be evaluated in
# closed form either, but because every factor is normalised its logarithm has a lower bound that can be
# estimated by sampling the forward chain: the ELBO of the next section. Notebook 5 (section 6) meets
# $p = \varphi/Z$ from the other side: the score $\nabla\log p = \nabla\log\varphi$ does not need $Z$ at all.

# %% [markdown]
# ## 3. The ELBO, first form: reconstruction, prior matching, consistency
#
# Multiply and divide by the encoder and use Jensen's inequality ($\log$ is concave):
#
# $$\log p(x_0) = \log \mathbb E_{q(x_{1:T}\mid x_0)}\!\left[\frac{p(x_{0:T})}{q(x_{1:T}\mid x_0)}\right]
# \;\ge\; \mathbb E_{q(x_{1:T}\mid x_0)}\!\left[\log\frac{p(x_{0:T})}{q(x_{1:T}\mid x_0)}\right] = \text{ELBO}.$$
#
# From here on it is an inequality, "$\ge$", never "$=$" (erratum 2). Insert the two products and pair
# every decoder factor with the encoder factor of the same variable:
#
# $$\text{ELBO} = \mathbb E_q\big[\log p_\theta(x_0\mid x_1)\big]
# + \mathbb E_q\!\left[\log\frac{p(x_T)}{q(x_T\mid x_{T-1})}\right]
# + \sum_{t=1}^{T-1}\mathbb E_q\!\left[\log\frac{p_\theta(x_t\mid x_{t+1})}{q(x_t\mid x_{t-1})}\right].$$
#
# A log-ratio becomes a $-D_\mathrm{KL}$ only after the expectation is split in two: an outer one over
# the variables the densities condition on, and an inner one over the variable they are densities
# of, *under its conditional distribution given the outer ones* (erratum 4). For the prior term,
# given $x_{T-1}$ the variable $x_T$ is distributed as $q(x_T\mid x_{T-1})$, so the inner expectation
# is $-D_\mathrm{KL}(q(x_T\mid x_{T-1})\,\|\,p(x_T))$.
#
# A consistency term involves $x_{t-1}, x_t, x_{t+1}$. Given its two neighbours, $x_t$ is distributed as
# $r_t = q(x_t\mid x_{t-1}, x_{t+1}) \propto q(x_t\mid x_{t-1})\,q(x_{t+1}\mid x_t)$, a Gaussian. Adding and subtracting
# $\log r_t$ inside the inner expectation,
#
# $$\mathbb E_{r_t}\!\left[\log\frac{p_\theta(x_t\mid x_{t+1})}{q(x_t\mid x_{t-1})}\right]
# = \mathbb E_{r_t}\!\left[\log\frac{r_t}{q(x_t\mid x_{t-1})}\right] - \mathbb E_{r_t}\!\left[\log\frac{r_t}{p_\theta(x_t\mid x_{t+1})}\right]
# = D_\mathrm{KL}(r_t\,\|\,q(x_t\mid x_{t-1})) - D_\mathrm{KL}(r_t\,\|\,p_\theta(x_t\mid x_{t+1})),$$
#
# so the first form of the ELBO is
#
# $$\text{ELBO} = \underbrace{\mathbb E_{q(x_1\mid x_0)}\big[\log p_\theta(x_0\mid x_1)\big]}_{\text{reconstruction}}
# - \underbrace{\mathbb E_{q(x_{T-1}\mid x_0)}\big[D_\mathrm{KL}(q(x_T\mid x_{T-1})\,\|\,p(x_T))\big]}_{\text{prior matching}}
# - \sum_{t=1}^{T-1}\underbrace{\mathbb E_{q(x_{t-1},x_{t+1}\mid x_0)}\big[D_\mathrm{KL}(r_t\,\|\,p_\theta(x_t\mid x_{t+1})) - D_\mathrm{KL}(r_t\,\|\,q(x_t\mid x_{t-1}))\big]}_{\text{consistency}} .$$
#
# The consistency term asks the decoder step from $x_{t+1}$ to agree with the encoder step from
# $x_{t-1}$. `elbo.elbo_consistency_form` computes exactly this.
#
# > **Remark — Luo's eq. 45 as printed is a false identity.** Luo (and the notes' slide "The last term") writes the
# > consistency term as $\mathbb E_{q(x_{t-1},x_{t+1}\mid x_0)}\big[D_\mathrm{KL}(q(x_t\mid x_{t-1})\,\|\,p_\theta(x_t\mid x_{t+1}))\big]$,
# > i.e. takes the inner expectation under $q(x_t\mid x_{t-1})$ as if $x_t$ did not depend on $x_{t+1}$. That is not a
# > noisy or biased estimate of the ELBO: the printed equation is false, its right-hand side a different, smaller number.
# > For a near-optimal model, $p_\theta(x_t\mid x_{t+1}) \approx \mathcal N(m_p, \tilde\beta_{t+1})$ and the printed KL of two
# > Gaussians is $\tfrac12\big(a - 1 - \ln a + (m_q - m_p)^2/\tilde\beta_{t+1}\big)$ with $a = \beta_t/\tilde\beta_{t+1}$;
# > $m_q - m_p$ spans the forward noise into $x_t$ (variance $\beta_t$) and the reverse residual (variance $\tilde\beta_{t+1}$),
# > so its mean square is about $(a+1)\tilde\beta_{t+1}$, while the true term is about 0. The printed term is too large by
# >
# > $$\tfrac12\,(2a - \ln a)\ \text{nats per dimension per step},\qquad a = \beta_t/\tilde\beta_{t+1}\approx 1 ,$$
# >
# > about 1 nat per dimension per step, so about 784 nats per step on MNIST. It depends on the schedule and the model
# > (section 9 measures 0.54 nats per step at $T = 25$). In fairness: Luo uses eq. 45 only as motivation and moves on to
# > the denoising form (eq. 58, next section), from which DDPM and $L_\text{simple}$ are derived; they are unaffected.
#
# ## 4. The ELBO, second form: denoising matching
#
# The first form needs two random neighbours per term. Luo's second derivation conditions on $x_0$:
# by the Markov property $q(x_t\mid x_{t-1}) = q(x_t\mid x_{t-1}, x_0)$, and by Bayes' rule
#
# $$q(x_t\mid x_{t-1}, x_0) = \frac{q(x_{t-1}\mid x_t, x_0)\,q(x_t\mid x_0)}{q(x_{t-1}\mid x_0)} .$$
#
# Now pair each decoder factor with the encoder factor *of the same step* $t$ (not of the same variable, as in
# the first form), split off $t = 1$, and replace $q(x_t\mid x_{t-1})$ for $t\ge 2$ by Bayes' rule. Along any single
# trajectory, before any expectation,
#
# $$\log\frac{p(x_{0:T})}{q(x_{1:T}\mid x_0)}
# = \log\frac{p(x_T)\,p_\theta(x_0\mid x_1)}{q(x_1\mid x_0)}
# + \sum_{t=2}^{T}\log\frac{p_\theta(x_{t-1}\mid x_t)}{q(x_{t-1}\mid x_t, x_0)}
# + \underbrace{\sum_{t=2}^{T}\log\frac{q(x_{t-1}\mid x_0)}{q(x_t\mid x_0)}}_{=\ \log q(x_1\mid x_0) - \log q(x_T\mid x_0)} .$$
#
# The last sum telescopes (each $\log q(x_k\mid x_0)$, $2\le k\le T-1$, appears once with each sign), and its
# $\log q(x_1\mid x_0)$ cancels the one in the first term:
#
# $$\log\frac{p(x_{0:T})}{q(x_{1:T}\mid x_0)}
# = \log p_\theta(x_0\mid x_1) + \log\frac{p(x_T)}{q(x_T\mid x_0)} + \sum_{t=2}^{T}\log\frac{p_\theta(x_{t-1}\mid x_t)}{q(x_{t-1}\mid x_t, x_0)} .$$
#
# Both steps on five trajectories of the chain, with the toy's optimal denoiser as $p_\theta$ (code step $k$ takes
# paper $x_k$ to $x_{k+1}$):

# %%
paths = forward.q_trajectory(schedule, torch.full((5, 1), 0.6, dtype=torch.float64),
                             generator=torch.Generator().manual_seed(11))  # (T + 1, 5, 1)
T = schedule.T
code = torch.arange(T).repeat_interleave(5)  # (T * 5,), code k for each (k, path)
x_from, x_to = paths[:-1].reshape(-1, 1), paths[1:].reshape(-1, 1)  # paper x_k and x_{k+1}, (T * 5, 1)
x0_rep = paths[0].repeat(T, 1)  # (T * 5, 1)
model = mixture.eps_model(schedule)  # the optimal denoiser, model(x_t, t) -> eps_pred


def log_density(x, mean, var):  # (K * 5, 1) -> (K, 5)
    return gaussian.gaussian_log_likelihood(x, mean, var.log()).reshape(-1, 5)


log_q_step = log_density(x_to, *forward.q_step_mean_variance(schedule, x_from, code))  # log q(x_{k+1} | x_k)
p = reverse.p_mean_variance(schedule, x_to, code, model(x_to, code))
log_p_step = log_density(x_from, p.mean, p.log_variance.exp())  # log p_theta(x_k | x_{k+1})
log_q_marginal = log_density(x_to, *forward.q_mean_variance(schedule, x0_rep, code))  # log q(x_{k+1} | x_0)
later = code >= 1  # the posterior of code 0 has beta_tilde = 0
log_q_post = log_density(x_from[later], *forward.q_posterior(schedule, x0_rep[later], x_to[later], code[later]))
log_prior = gaussian.gaussian_log_likelihood(paths[-1], torch.zeros(()), torch.zeros(()))[:, 0]  # log N(x_T; 0, 1)

bayes = log_q_post + log_q_marginal[1:] - log_q_marginal[:-1]  # rows k = 1..T-1
print(f"Bayes' rule for every factor k >= 1:     {agree(log_q_step[1:] - bayes, digits=9)}")
first_form = log_prior + log_p_step.sum(0) - log_q_step.sum(0)
second_form = log_p_step[0] + log_prior - log_q_marginal[-1] + (log_p_step[1:] - log_q_post).sum(0)
print(f"the log-ratio before and after the pairing: {agree(first_form - second_form, digits=9)}")
print("log-ratio per path:", " ".join(f"{v:.3f}" for v in first_form.tolist()))

# %% [markdown]
# Taking the expectation over $q(x_{1:T}\mid x_0)$ and splitting it as in section 3 (erratum 4) turns each log-ratio
# into a $-D_\mathrm{KL}$ (Luo eq. 58; Ho et al. 2020 eq. 5 with the sign flipped):
#
# $$\text{ELBO} = \underbrace{\mathbb E_{q(x_1\mid x_0)}\big[\log p_\theta(x_0\mid x_1)\big]}_{\text{reconstruction}}
# - \underbrace{D_\mathrm{KL}(q(x_T\mid x_0)\,\|\,p(x_T))}_{\text{prior matching}}
# - \sum_{t=2}^{T}\underbrace{\mathbb E_{q(x_t\mid x_0)}\big[D_\mathrm{KL}(q(x_{t-1}\mid x_t, x_0)\,\|\,p_\theta(x_{t-1}\mid x_t))\big]}_{\text{denoising matching}} .$$
#
# Here the split is right: given $x_t$ and $x_0$, $x_{t-1}$ is distributed as $q(x_{t-1}\mid x_t, x_0)$.
# Each term has one random variable, $x_t$, and the prior term none. The decoder step is trained to
# match the *posterior of the forward process*, which we now compute.
#
# ## 5. The posterior $q(x_{t-1}\mid x_t, x_0)$
#
# Given a clean $x_0$ and a noisy $x_t$, where was $x_{t-1}$? Bayes' rule from above, evaluated on a
# grid of $x_{t-1}$ with three Gaussian densities of the forward process (the package's
# `q_step_mean_variance`, `q_mean_variance` and `gaussian.gaussian_log_likelihood`), against the
# closed form `forward.q_posterior`:

# %%
t = torch.tensor([20])  # code step: x_t is paper x_21, x_{t-1} is paper x_20
x0_point = torch.tensor([[0.6]], dtype=torch.float64)  # (1, 1)
x_t = forward.q_sample(schedule, x0_point, t, eps=torch.tensor([[1.0]], dtype=torch.float64))  # one sigma away
grid = torch.linspace(0.3, 0.95, 401, dtype=torch.float64)[:, None]  # (N, 1) values of x_{t-1}
t_grid = t.expand(grid.shape[0])

step_mean, step_var = forward.q_step_mean_variance(schedule, grid, t_grid)  # q(x_t | x_{t-1}), per grid point
prior_mean, prior_var = forward.q_mean_variance(schedule, x0_point, t - 1)  # q(x_{t-1} | x_0)
marg_mean, marg_var = forward.q_mean_variance(schedule, x0_point, t)  # q(x_t | x_0)
log_likelihood = gaussian.gaussian_log_likelihood(x_t.expand_as(grid), step_mean, step_var.log())
log_prior = gaussian.gaussian_log_likelihood(grid, prior_mean.expand_as(grid), prior_var.log())
log_evidence = gaussian.gaussian_log_likelihood(x_t, marg_mean, marg_var.log())
log_bayes = log_likelihood + log_prior - log_evidence  # log q(x_{t-1} | x_t, x_0), Bayes' rule

mu_tilde, beta_tilde = forward.q_posterior(schedule, x0_point, x_t, t)
log_closed = gaussian.gaussian_log_likelihood(grid, mu_tilde.expand_as(grid), beta_tilde.log())

plot_curves.density_curves(grid[:, 0], {
    "q(x_{t-1} | x_0)": log_prior[:, 0].exp(),
    "q(x_{t-1} | x_t, x_0) by Bayes' rule": log_bayes[:, 0].exp(),
    "--closed form N(mu_tilde, beta_tilde)": log_closed[:, 0].exp(),
}, xlabel="x_{t-1}", title=f"x_0 = 0.6, x_t = {x_t.item():.3f}, code t = 20")
plt.show()

# %% [markdown]
# The posterior is narrower than the prior $q(x_{t-1}\mid x_0)$ and pulled toward the observed $x_t$.
#
# **Completing the square** (Luo eqs. 71–84). In Bayes' rule the evidence $q(x_t\mid x_0)$ does not depend on
# $x_{t-1}$, so up to terms free of $x_{t-1}$ (per dimension; $\bar\alpha_{t-1}$, $\beta_t$ paper-indexed):
#
# $$\log q(x_{t-1}\mid x_t, x_0) = -\frac12\left[\frac{(x_t - \sqrt{\alpha_t}\,x_{t-1})^2}{\beta_t}
# + \frac{(x_{t-1} - \sqrt{\bar\alpha_{t-1}}\,x_0)^2}{1-\bar\alpha_{t-1}}\right] + C
# = -\frac12\Big[A\,x_{t-1}^2 - 2B\,x_{t-1}\Big] + C'
# = -\frac{(x_{t-1} - B/A)^2}{2/A} + C'' ,$$
#
# $$A = \frac{\alpha_t}{\beta_t} + \frac{1}{1-\bar\alpha_{t-1}} = \frac{\alpha_t(1-\bar\alpha_{t-1}) + \beta_t}{\beta_t(1-\bar\alpha_{t-1})}
# = \frac{1-\bar\alpha_t}{\beta_t(1-\bar\alpha_{t-1})},
# \qquad B = \frac{\sqrt{\alpha_t}}{\beta_t}\,x_t + \frac{\sqrt{\bar\alpha_{t-1}}}{1-\bar\alpha_{t-1}}\,x_0 ,$$
#
# using $\alpha_t(1-\bar\alpha_{t-1}) + \beta_t = \alpha_t - \bar\alpha_t + 1 - \alpha_t = 1-\bar\alpha_t$. A Gaussian, then, with
# variance $1/A$ and mean $B/A$. Each step on the example above (code $t = 20$):

# %%
k = t  # the code step of the example above (paper t = k + 1)
alpha, beta = schedule.alpha[k], schedule.beta[k]
alpha_bar, alpha_bar_prev = schedule.alpha_bar[k], schedule.alpha_bar_prev[k]
A = alpha / beta + 1 / (1 - alpha_bar_prev)
B = alpha.sqrt() / beta * x_t + alpha_bar_prev.sqrt() / (1 - alpha_bar_prev) * x0_point
quadratic = -0.5 * (A * grid**2 - 2 * B * grid)  # (N, 1): log q up to a constant, as a quadratic in x_{t-1}
square = -0.5 * A * (grid - B / A) ** 2  # the completed square
print(f"the bracket, expanded in x_{{t-1}} (up to a constant):  {agree((log_bayes - quadratic).std(), digits=10)}")
print(f"the completed square (up to a constant):               {agree((quadratic - square).std(), digits=10)}")
print(f"alpha_t (1 - alpha_bar_t-1) + beta_t = 1 - alpha_bar_t:  {agree(alpha * (1 - alpha_bar_prev) + beta - (1 - alpha_bar))}")
print(f"1 / A = beta_tilde:                                    {agree(1 / A - beta_tilde)}")

# %% [markdown]
# Multiplying $B$ by $1/A = \tilde\beta_t$ gives the mean
# (Ho et al. eqs. 6–7; Luo section *Variational Diffusion Models*)
#
# $$q(x_{t-1}\mid x_t, x_0) = \mathcal N\big(x_{t-1};\ \tilde\mu_t(x_t, x_0),\ \tilde\beta_t I\big),\qquad
# \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0 + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,\qquad
# \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .$$

# %%
print(f"B / A = mu_tilde:                          {agree(B / A - mu_tilde)}")
print(f"log Bayes and log closed form on the grid: {agree(log_bayes - log_closed, digits=10)}")
print(f"mu_tilde = {mu_tilde.item():.5f}, beta_tilde = {beta_tilde.item():.3e}")
show_code(forward.q_posterior)

# %% [markdown] tags=["exercise"]
# **Exercise 1.1 · The posterior.** Write `my_q_posterior(schedule, x0, x_t, t)` that returns $(\tilde\mu_t, \tilde\beta_t)$ of the formula above
# for a batch: `x0` and `x_t` of shape `(B, D)`, `t` a `(B,)` tensor of code indices. `broadcast(schedule.alpha_bar, t, x0)`
# picks each row's $\bar\alpha_t$ as a `(B, 1)` column; $\bar\alpha_{t-1}$ is `schedule.alpha_bar_prev` (1 at code `t = 0`).
# The next cell checks your function against `forward.q_posterior` and names the mistake if it finds one. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_q_posterior(schedule, x0, x_t, t):
    """mu_tilde (B, D) and beta_tilde (B, 1) of q(x_{t-1} | x_t, x_0), Ho et al. eq. 7."""
    ### BEGIN SOLUTION
    alpha_bar = broadcast(schedule.alpha_bar, t, x0)  # (B, 1)
    alpha_bar_prev = broadcast(schedule.alpha_bar_prev, t, x0)
    alpha = broadcast(schedule.alpha, t, x0)
    beta = broadcast(schedule.beta, t, x0)
    mu_tilde = (alpha_bar_prev.sqrt() * beta * x0 + alpha.sqrt() * (1 - alpha_bar_prev) * x_t) / (1 - alpha_bar)
    beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta
    return mu_tilde, beta_tilde
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_q_posterior(my_q_posterior)

# %% [markdown]
# ## 6. The KL is a weighted MSE — on $x_0$, then on $\epsilon$
#
# We fix the decoder's variance to $\sigma_t^2 = \tilde\beta_t$ and give it the posterior's mean with
# $x_0$ replaced by a prediction $\hat x_\theta(x_t, t)$ (`reverse.p_mean_variance`). Two Gaussians
# with one variance differ only in the mean, so (Ho et al. eq. 8; `losses.weighted_x0_mse_coefficient`)
#
# $$D_\mathrm{KL}\big(q(x_{t-1}\mid x_t,x_0)\,\|\,p_\theta(x_{t-1}\mid x_t)\big)
# = \frac{\|\tilde\mu_t(x_t,x_0) - \tilde\mu_t(x_t,\hat x_\theta)\|^2}{2\sigma_t^2}
# = \frac{\bar\alpha_{t-1}\beta_t^2}{2\sigma_t^2(1-\bar\alpha_t)^2}\,\|x_0 - \hat x_\theta\|^2
# = \tfrac12\big(\mathrm{SNR}(t-1) - \mathrm{SNR}(t)\big)\,\|x_0 - \hat x_\theta\|^2 ,$$
#
# with $\mathrm{SNR}(t) = \bar\alpha_t/(1-\bar\alpha_t)$. Writing $x_0$ and $\hat x_\theta$ through the
# noise, $x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$, turns it into an MSE on
# $\epsilon$ (Ho et al. eq. 12, `losses.weighted_eps_mse_coefficient`):
#
# $$D_\mathrm{KL} = \frac{\beta_t^2}{2\sigma_t^2\,\alpha_t\,(1-\bar\alpha_t)}\,\|\epsilon - \hat\epsilon_\theta(x_t, t)\|^2 .$$
#
# Check with a deliberately imperfect predictor (the optimal one plus 0.3) at code step 300: the KL
# from `gaussian.normal_kl` and the two weighted MSEs agree for every sample.

# %%
t = torch.full((5,), 300)
x0_batch = mixture.sample((5, 1), generator=torch.Generator().manual_seed(2))  # (5, 1)
eps = torch.randn((5, 1), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
x_t = forward.q_sample(schedule, x0_batch, t, eps)
eps_pred = mixture.optimal_eps(schedule, x_t, t) + 0.3

mu_tilde, beta_tilde = forward.q_posterior(schedule, x0_batch, x_t, t)
p = reverse.p_mean_variance(schedule, x_t, t, eps_pred, variance_type="fixed_small")
kl = gaussian.normal_kl(mu_tilde, beta_tilde.log(), p.mean, p.log_variance)
x0_form = losses.weighted_x0_mse_coefficient(schedule)[300] * (x0_batch - p.x0_pred) ** 2
eps_form = losses.weighted_eps_mse_coefficient(schedule)[300] * (eps - eps_pred) ** 2
for row in torch.cat([kl, x0_form, eps_form], dim=1):
    print("KL {:.6f}   x0-MSE form {:.6f}   eps-MSE form {:.6f}".format(*row.tolist()))

# %% [markdown]
# **The two steps, written out.** *The KL of two Gaussians with one variance.* Per dimension, the normalisers
# cancel, and with $x - \mu_p = (x-\mu_q) + (\mu_q-\mu_p)$,
#
# $$D_\mathrm{KL}\big(\mathcal N(\mu_q,\sigma^2)\,\|\,\mathcal N(\mu_p,\sigma^2)\big)
# = \mathbb E_q\!\left[\frac{(x-\mu_p)^2 - (x-\mu_q)^2}{2\sigma^2}\right]
# = \mathbb E_q\!\left[\frac{2(x-\mu_q)(\mu_q-\mu_p) + (\mu_q-\mu_p)^2}{2\sigma^2}\right]
# = \frac{(\mu_q-\mu_p)^2}{2\sigma^2},$$
#
# since $\mathbb E_q[x-\mu_q] = 0$. The expectations are of polynomials in $x$, so Gauss–Hermite quadrature with
# 5 nodes computes them exactly; against the closed form and `gaussian.normal_kl`, on the five samples above:

# %%
nodes, node_weights = (torch.from_numpy(a) for a in hermegauss(5))  # E_N(0,1)[f] = sum w f(z) / sqrt(2 pi)
sigma_sq = beta_tilde  # (5, 1): both Gaussians have it
x = mu_tilde + sigma_sq.sqrt() * nodes  # (5, 5): the nodes for each sample


def expect(f):  # (5, 5) values at the nodes -> (5, 1) expectations under q
    return (node_weights * f).sum(dim=1, keepdim=True) / (2 * torch.pi) ** 0.5


kl_by_quadrature = expect(((x - p.mean) ** 2 - (x - mu_tilde) ** 2) / (2 * sigma_sq))
print(f"E_q[x - mu_q] = 0:                 {agree(expect(x - mu_tilde))}")
print(f"quadrature and (mu_q - mu_p)^2 / 2 sigma^2: {agree(kl_by_quadrature - (mu_tilde - p.mean) ** 2 / (2 * sigma_sq))}")
print(f"quadrature and gaussian.normal_kl:  {agree(kl_by_quadrature - kl)}")

# %% [markdown]
# *From $x_0$ to $\epsilon$* (Ho et al. eq. 11). Put $x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$ into $\tilde\mu_t$ and
# use $\sqrt{\bar\alpha_{t-1}}/\sqrt{\bar\alpha_t} = 1/\sqrt{\alpha_t}$ and, from section 5, $\beta_t + \alpha_t(1-\bar\alpha_{t-1}) = 1-\bar\alpha_t$:
#
# $$\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,\frac{x_t - \sqrt{1-\bar\alpha_t}\,\epsilon}{\sqrt{\bar\alpha_t}}
# + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t
# = \frac{\beta_t + \alpha_t(1-\bar\alpha_{t-1})}{\sqrt{\alpha_t}\,(1-\bar\alpha_t)}\,x_t - \frac{\beta_t}{\sqrt{\alpha_t}\sqrt{1-\bar\alpha_t}}\,\epsilon
# = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\epsilon\Big).$$
#
# The model's mean has the same form with $\hat\epsilon_\theta$, so $\tilde\mu_t - \mu_\theta = -\frac{\beta_t}{\sqrt{\alpha_t}\sqrt{1-\bar\alpha_t}}(\epsilon - \hat\epsilon_\theta)$,
# and squaring over $2\sigma_t^2$ gives the weight $\beta_t^2/(2\sigma_t^2\alpha_t(1-\bar\alpha_t))$. Checked on the same samples
# (code $t = 300$):

# %%
alpha, beta, alpha_bar = schedule.alpha[300], schedule.beta[300], schedule.alpha_bar[300]


def noise_form(e):  # Ho et al. eq. 11, the right-hand side above
    return (x_t - beta / (1 - alpha_bar).sqrt() * e) / alpha.sqrt()


print(f"mu_tilde(x_t, x_0) and eq. 11 with the true eps:  {agree(mu_tilde - noise_form(eps))}")
print(f"model mean and eq. 11 with eps_pred:               {agree(p.mean - noise_form(eps_pred))}")
print(f"mean difference and -beta (eps - eps_pred) / (sqrt(alpha) sqrt(1 - alpha_bar)): "
      f"{agree(mu_tilde - p.mean + beta / (alpha * (1 - alpha_bar)).sqrt() * (eps - eps_pred))}")

# %% [markdown] tags=["exercise"]
# **Exercise 1.2 · The KL of two Gaussians with one variance.** Write `my_gaussian_kl(mu_q, mu_p, var)`: $D_\mathrm{KL}\big(\mathcal N(\mu_q, \sigma^2)\,\|\,\mathcal N(\mu_p, \sigma^2)\big)$
# elementwise, in nats, where `var` is $\sigma^2$ (all three tensors have one shape). Start from the general
# formula in `gaussian.normal_kl` and see what is left when the variances are equal. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_gaussian_kl(mu_q, mu_p, var):
    """KL(N(mu_q, var) || N(mu_p, var)), elementwise, in nats."""
    ### BEGIN SOLUTION
    return (mu_q - mu_p) ** 2 / (2 * var)
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_gaussian_kl(my_gaussian_kl)

# %% [markdown] tags=["exercise"]
# **Exercise 1.3 · The weight that turns the KL into an MSE on $\epsilon$.** Write `my_eps_mse_weight(schedule, t)`: the weight $\beta_t^2 / \big(2\sigma_t^2\,\alpha_t\,(1-\bar\alpha_t)\big)$ with
# $\sigma_t^2 = \tilde\beta_t$ (`schedule.beta_tilde`), for a `(B,)` tensor of code indices `t` $\ge 1$; it returns `(B,)`.
# The schedule's tables are `(T,)` tensors, so `table[t]` picks the entries. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_eps_mse_weight(schedule, t):
    """beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)) with sigma_t^2 = beta_tilde_t (Ho et al. eq. 12); (B,)."""
    ### BEGIN SOLUTION
    s = schedule
    return (s.beta**2 / (2 * s.beta_tilde * s.alpha * (1 - s.alpha_bar)))[t]
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_eps_mse_weight(my_eps_mse_weight)

# %% [markdown]
# ## 7. The simplified loss $L_\text{simple}$
#
# Ho et al. (eq. 14) drop the weight and train on
#
# $$L_\text{simple} = \mathbb E_{t, x_0, \epsilon}\big[\|\epsilon - \hat\epsilon_\theta(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t)\|^2\big],
# \qquad t\sim\mathcal U\{1,\dots,T\}.$$
#
# The weights it drops are near 1 only at code $t = 0$ and $1$, fall below 0.1 within a few steps and are about
# 0.005 to 0.01 over most of the chain. The $t = 0$ point is the decoder term and uses a clipped variance: $\tilde\beta_1 = 0$,
# so $\sigma_1^2$ is replaced by $\tilde\beta$ of code $t = 1$ (`reverse.log_sigma2`, as in improved-diffusion).
# So, compared with the ELBO, $L_\text{simple}$ down-weights the first, least noisy steps and
# emphasises the harder, noisier ones, which Ho et al. found gives better samples:

# %%
weights = losses.weighted_eps_mse_coefficient(schedule)  # (T,), code t
steps = torch.arange(schedule.T, dtype=torch.float64)
plot_curves.density_curves(steps, {"ELBO weight of ||eps - eps_pred||^2": weights, "--L_simple: 1": torch.ones_like(weights)},
                        xlabel="t (code index)", yscale="log", title="per-step weights, linear T=1000")
first_below = (weights < 0.1).nonzero()[0].item()  # first code t with weight below 0.1
plt.annotate(f"near 1 only at t = 0 ({weights[0]:.2f}, clipped beta_tilde) and t = 1 ({weights[1]:.2f});\n"
             f"below 0.1 from t = {first_below}", (0, weights[0].item()), xytext=(60, 0.15),
             arrowprops={"arrowstyle": "->"}, fontsize=8)
plt.show()
print(f"weight at t=0 (clipped beta_tilde): {weights[0]:.3f}, t=1: {weights[1]:.3f}, t=2: {weights[2]:.3f}, "
      f"t=10: {weights[10]:.3f}, t=500: {weights[500]:.4f}, t=999: {weights[999]:.4f}")
print(f"first code t with weight below 0.1: {first_below}")
show_code(losses.l_simple)

# %% [markdown]
# For the optimal predictor $L_\text{simple}$ is well below 1, the value of always predicting $\hat\epsilon = 0$:

# %%
g = torch.Generator().manual_seed(4)
x0_batch = mixture.sample((20_000, 1), generator=g)
t = torch.randint(0, schedule.T, (20_000,), generator=g)
eps = torch.randn(x0_batch.shape, generator=g, dtype=torch.float64)
x_t = forward.q_sample(schedule, x0_batch, t, eps)
print(f"L_simple, optimal predictor: {losses.l_simple(eps, mixture.optimal_eps(schedule, x_t, t)):.4f}")
print(f"L_simple, predicting zero:   {losses.l_simple(eps, torch.zeros_like(eps)):.4f}")

# %% [markdown]
# ## 8. Three equivalent predictions: $x_0$, $\epsilon$ and the score
#
# Since $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$, a network that predicts
# any one of $x_0$, $\epsilon$ or the score $\nabla_{x_t}\log q(x_t)$ predicts all three (Luo, section
# *Three Equivalent Interpretations*). For the toy we know the optimal ones. Picture first: at code
# step 300, the best guess of $x_0$ given $x_t$, computed two ways — by Tweedie's formula from the
# score, and by brute-force integration of the posterior $p(x_0\mid x_t)\propto p(x_0)\,q(x_t\mid x_0)$
# on a grid:

# %%
t_code = 300
x_t = torch.linspace(-2.5, 2.5, 201, dtype=torch.float64)[:, None]  # (M, 1) grid of x_t
t = torch.full((x_t.shape[0],), t_code)

eps_opt = mixture.optimal_eps(schedule, x_t, t)  # E[eps | x_t]
x0_from_eps = forward.x0_from_eps(schedule, x_t, t, eps_opt)
score = forward.score_from_eps(schedule, t, eps_opt)
x0_tweedie = forward.x0_from_score(schedule, x_t, t, score)

# Brute force on a grid of x0: E[x0 | x_t] = sum_k x0_k w_k / sum_k w_k, w_k = p(x0_k) q(x_t | x0_k).
x0_grid = torch.linspace(-3.0, 3.0, 6001, dtype=torch.float64)[:, None]  # (K, 1)
mean, var = forward.q_mean_variance(schedule, x0_grid, torch.full((x0_grid.shape[0],), t_code))  # (K, 1)
log_joint = mixture.log_prob(x0_grid)[None, :] + gaussian.gaussian_log_likelihood(x_t, mean.T, var.log().T)  # (M, K)
x0_brute = (torch.softmax(log_joint, dim=1) @ x0_grid)  # (M, 1)

plot_curves.density_curves(x_t[:, 0], {"E[x0 | x_t], Tweedie (from the score)": x0_tweedie[:, 0],
                                    "--E[x0 | x_t], integration over x0": x0_brute[:, 0]},
                        xlabel="x_t (code t = 300)", title="the optimal x0 prediction")
plt.show()

# %% [markdown]
# The formulas (`forward.x0_from_eps`, `score_from_eps`, `x0_from_score`):
#
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon}{\sqrt{\bar\alpha_t}},\qquad
# \nabla_{x_t}\log q(x_t) = -\frac{\hat\epsilon}{\sqrt{1-\bar\alpha_t}},\qquad
# \mathbb E[x_0\mid x_t] = \frac{x_t + (1-\bar\alpha_t)\,\nabla_{x_t}\log q(x_t)}{\sqrt{\bar\alpha_t}}\quad\text{(Tweedie)}.$$
#
# Checks: the $x_0$ from $\epsilon$ equals the $x_0$ from the score; the score from $\epsilon$ equals
# the gradient of the exact $\log q(x_t)$ by autograd; and Tweedie equals the brute-force posterior mean.

# %%
x_t_leaf = x_t.clone().requires_grad_(True)
autograd_score, = torch.autograd.grad(mixture.noised_log_prob(schedule, x_t_leaf, t).sum(), x_t_leaf)
# Residuals are round-off (float64): printed as shared digits, which hold on every CPU.
print(f"x0 from eps and x0 from score:        {agree(x0_from_eps - x0_tweedie)}")
print(f"score from eps and autograd score:    {agree(score - autograd_score)}")
print(f"Tweedie and brute-force E[x0 | x_t]:  {agree(x0_tweedie - x0_brute)}")

# %% [markdown]
# ## 9. Both ELBO forms by Monte Carlo
#
# Now the two forms of the ELBO for one data point, $x_0 = 0.6$, with the optimal denoiser as the
# model, $\sigma_t^2 = \tilde\beta_t$ and $T = 1000$. We draw 5 000 forward trajectories and evaluate
# both forms on the same ones with `elbo.elbo_consistency_form` and `elbo.elbo_denoising_form`;
# each returns one estimate per trajectory, in nats, and its terms.

# %%
B = 5000
x0_point = torch.full((B, 1), 0.6, dtype=torch.float64)
trajectory = forward.q_trajectory(schedule, x0_point, generator=torch.Generator().manual_seed(5))  # (T + 1, B, 1)
model = mixture.eps_model(schedule)  # the optimal denoiser, model(x_t, t) -> eps_pred
consistency = elbo.elbo_consistency_form(schedule, trajectory, model)
denoising = elbo.elbo_denoising_form(schedule, trajectory, model)
log_px = mixture.log_prob(x0_point[:1]).item()

print(f"{'form':12s} {'ELBO mean':>10s} {'+- s.e.':>8s} {'std':>6s} {'reconstr.':>10s} {'prior m.':>9s} {'sum of T-1 terms':>17s}")
for name, est, middle in (("consistency", consistency, consistency.consistency),
                          ("denoising", denoising, denoising.denoising_matching)):
    print(f"{name:12s} {est.elbo.mean():10.4f} {est.elbo.std() / B**0.5:8.4f} {est.elbo.std():6.3f} "
          f"{est.reconstruction.mean():10.4f} {est.prior_matching.mean():9.4f} {middle.sum(1).mean():17.4f}")
diff = consistency.elbo - denoising.elbo
print(f"paired difference of the two estimates: {diff.mean():+.4f} +- {diff.std() / B**0.5:.4f} (s.e.)")
print(f"exact log p(x0) = {log_px:.4f}")

# %% [markdown]
# **Same mean.** The two forms agree within Monte Carlo error, although their terms are split very
# differently: the consistency form's prior term $\mathbb E[D_\mathrm{KL}(q(x_T\mid x_{T-1})\,\|\,\mathcal N(0,1))]$
# is about 2 nats (one step of variance $\beta_T = 0.02$ is far from $\mathcal N(0,1)$), while
# $D_\mathrm{KL}(q(x_T\mid x_0)\,\|\,\mathcal N(0,1))$ is almost 0; the middle terms make up the difference.
#
# **Variance, term by term.** Luo's argument: a consistency term depends on two random variables
# $(x_{t-1}, x_{t+1})$, a denoising term on one ($x_t$), so each consistency term should be noisier.
# The variance of every term over the 5 000 trajectories, at the paper steps $t = 2..999$ both forms have:

# %%
var_consistency = consistency.consistency[:, 1:].var(dim=0)  # paper t = 2..T-1
var_denoising = denoising.denoising_matching[:, :-1].var(dim=0)  # paper t = 2..T-1
paper_t = torch.arange(2, schedule.T, dtype=torch.float64)
plot_curves.density_curves(paper_t, {"consistency term": var_consistency, "denoising term": var_denoising},
                        xlabel="paper step t", ylabel="variance over trajectories", yscale="log",
                        title="variance of each term of the ELBO")
plt.show()
share = (var_consistency > var_denoising).double().mean().item()
print(f"the consistency term has the larger variance at {100 * share:.0f} % of the steps")
print(f"sum over steps of the per-term variances: consistency {var_consistency.sum():.3f}, denoising {var_denoising.sum():.3f}")

# %% [markdown]
# So term by term Luo is right. The variance of the *whole* estimate also depends on how the terms
# covary. If every term gets its own independent trajectory (we shuffle each column of the term
# tables across trajectories), the variances simply add and the consistency form is the noisier one.
# Along *one shared* trajectory it is the other way round for this toy: all denoising terms depend on
# how far that one path strayed, so they are positively correlated and their sum spreads more.

# %%
g = torch.Generator().manual_seed(6)

def shuffled_columns(terms: torch.Tensor) -> torch.Tensor:
    # Each column (one term) gets an independent random order of the trajectories.
    order = torch.rand(terms.shape, generator=g, dtype=torch.float64).argsort(dim=0)
    return terms.gather(0, order)

independent = {
    "consistency": consistency.reconstruction - consistency.prior_matching
    - shuffled_columns(consistency.consistency).sum(1),
    "denoising": denoising.reconstruction - denoising.prior_matching
    - shuffled_columns(denoising.denoising_matching).sum(1),
}
print(f"{'form':12s} {'std, independent trajectory per term':>37s} {'std, one shared trajectory':>27s}")
for name, shared in (("consistency", consistency.elbo), ("denoising", denoising.elbo)):
    print(f"{name:12s} {independent[name].std():37.3f} {shared.std():27.3f}")

# %% [markdown]
# **The bound.** The distributions of the per-trajectory estimates (shared trajectories), their means
# (dashed) and the exact $\log p(x_0)$ of the toy (black):

# %%
plot_curves.elbo_distributions({"consistency form": consistency.elbo, "denoising form": denoising.elbo},
                            log_px=log_px, xlabel="ELBO estimate for x0 = 0.6 (nats)")
plt.show()
for name, est in (("consistency", consistency.elbo), ("denoising", denoising.elbo)):
    above = (est > log_px).double().mean().item()
    print(f"{name:12s}: mean ELBO - log p(x0) = {est.mean() - log_px:+.3f} nats; "
          f"single estimates above log p(x0): {100 * above:.0f} %")

# %% [markdown]
# The *mean* lies below $\log p(x_0)$, by about 0.55 nats, although the model is the optimal denoiser. Single
# estimates lie above it about half of the time: the bound holds for the expectation, not for one Monte Carlo
# draw. Where the gap comes from is measured below, after one more step.
#
# Strictly, the ELBO bounds the *model's* $\log p_\theta(x_0)$, and our model only approximates the toy.
# Averaged over data $x_0\sim p$, though, $\mathbb E[\text{ELBO}] \le \mathbb E[\log p_\theta(x_0)] \le \mathbb E[\log p(x_0)]$
# (the second step is Gibbs' inequality), so the comparison with the true density is rigorous on average:

# %%
x0_data = mixture.sample((2000, 1), generator=torch.Generator().manual_seed(7))
data_trajectory = forward.q_trajectory(schedule, x0_data, generator=torch.Generator().manual_seed(8))
elbo_data = elbo.elbo_denoising_form(schedule, data_trajectory, model).elbo
gap = mixture.log_prob(x0_data) - elbo_data
print(f"E[log p(x0)] = {mixture.log_prob(x0_data).mean():.4f},  E[ELBO] = {elbo_data.mean():.4f},  "
      f"gap {gap.mean():.3f} +- {gap.std() / 2000**0.5:.3f} nats")

# %% [markdown]
# **Where the gap comes from.** The decoder steps are Gaussians; the true reverse step $q(x_{t-1}\mid x_t)$ of a
# mixture is not, but it becomes Gaussian as the steps get small. If the gap is mostly that, it must shrink as $T$
# grows. The same data-averaged gap for shorter chains (linear schedules rescaled to $T$ steps, optimal denoiser each):

# %%
for T in (25, 50, 200):
    schedule_T = linear_schedule(T, rescale=True)
    trajectory_T = forward.q_trajectory(schedule_T, x0_data, generator=torch.Generator().manual_seed(10))
    gap_T = mixture.log_prob(x0_data) - elbo.elbo_denoising_form(schedule_T, trajectory_T, mixture.eps_model(schedule_T)).elbo
    print(f"T = {T:4d}: gap {gap_T.mean():.2f} +- {gap_T.std() / 2000**0.5:.2f} nats")
print(f"T = 1000: gap {gap.mean():.2f} +- {gap.std() / 2000**0.5:.2f} nats (above)")

# %% [markdown]
# The gap falls from about 2.4 nats at $T = 25$ to 0.7 at $T = 200$ and then only slowly: at the step sizes of short
# chains it is mostly a finite-$T$ effect, Gaussian steps too big for a non-Gaussian reverse process. This notebook
# does not split up the 0.55 nats left at $T = 1000$.

# %% [markdown] tags=["exercise"]
# **Exercise 1.4 · One denoising-matching term by Monte Carlo.** Estimate one term of the second ELBO form,
# $\mathbb E_{q(x_t\mid x_0)}\big[D_\mathrm{KL}(q(x_{t-1}\mid x_t, x_0)\,\|\,p_\theta(x_{t-1}\mid x_t))\big]$, in nats. Write
# `my_denoising_term(schedule, model, x0, t, eps)`: `x0` and `eps` are `(B, D)`, `t` is `(B,)`; row $b$ gives one draw
# $x_t$ from `x0[b]` and `eps[b]`. Use the package: `forward.q_sample`, `forward.q_posterior`,
# `reverse.p_mean_variance` (with the model's `eps_pred = model(x_t, t)`; $\sigma_t^2 = \tilde\beta_t$) and
# `gaussian.normal_kl`. Sum the KL over the $D$ dimensions of a sample, then average over the $B$ draws. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_denoising_term(schedule, model, x0, t, eps):
    """Monte Carlo estimate of E_q(x_t | x_0) KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)), in nats."""
    ### BEGIN SOLUTION
    x_t = forward.q_sample(schedule, x0, t, eps)  # (B, D): one draw of x_t per row
    mu_tilde, beta_tilde = forward.q_posterior(schedule, x0, x_t, t)
    p = reverse.p_mean_variance(schedule, x_t, t, model(x_t, t))  # sigma_t^2 = beta_tilde_t
    kl = gaussian.normal_kl(mu_tilde, beta_tilde.log(), p.mean, p.log_variance)  # (B, D)
    return kl.sum(dim=1).mean()
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_denoising_term(my_denoising_term)

# %% [markdown]
# **Luo's eq. 45 as printed** (the remark in section 3). `elbo.consistency_terms_as_printed` evaluates the printed
# term $D_\mathrm{KL}(q(x_t\mid x_{t-1})\,\|\,p_\theta(x_t\mid x_{t+1}))$ on 1 000 of the same trajectories at every step;
# its excess over the correct term, against the closed form $\tfrac12(2a-\ln a)$, $a = \beta_t/\tilde\beta_{t+1}$
# (`elbo.printed_excess_closed_form`):

# %%
n = 1000  # of the B trajectories
printed = elbo.consistency_terms_as_printed(schedule, trajectory[:, :n], model)  # (n, T - 1), paper t = 1..T-1
excess = (printed - consistency.consistency[:n]).mean(dim=0)  # (T - 1,)
closed_form = elbo.printed_excess_closed_form(schedule)  # (T - 1,), per dimension (the toy has one)
paper_t = torch.arange(1, schedule.T, dtype=torch.float64)
plot_curves.density_curves(paper_t, {"printed - correct term, measured": excess, "--1/2 (2a - ln a)": closed_form},
                           xlabel="paper step t", ylabel="nats", yscale="log",
                           title="excess of eq. 45's printed consistency term, linear T = 1000")
plt.show()
for t_paper in (1, 2, 250, 500, 999):
    print(f"paper t = {t_paper:3d}: printed {printed[:, t_paper - 1].mean():.4f}, correct "
          f"{consistency.consistency[:n, t_paper - 1].mean():+.4f}, excess {excess[t_paper - 1]:.3f} "
          f"(closed form {closed_form[t_paper - 1]:.3f}) nats")
print(f"mean excess per step: measured {excess.mean():.3f}, closed form {closed_form.mean():.3f} nats per dimension; "
      f"x 784 dimensions of MNIST: {784 * excess.mean():.0f} nats per step")

# %% [markdown]
# The closed form follows the measurement, within Monte Carlo noise and on average over the steps, except at the
# first few steps, where a step is not small against the data's spread. The excess depends on the schedule and the model. With 25 big steps (the rescaled linear schedule)
# the optimal denoiser of the toy is far from the posterior-shaped Gaussian the closed form assumes:

# %%
schedule_25 = linear_schedule(25, rescale=True)
trajectory_25 = forward.q_trajectory(schedule_25, x0_point[:n], generator=torch.Generator().manual_seed(9))
model_25 = mixture.eps_model(schedule_25)
excess_25 = (elbo.consistency_terms_as_printed(schedule_25, trajectory_25, model_25)
             - elbo.elbo_consistency_form(schedule_25, trajectory_25, model_25).consistency).mean(dim=0)
print(f"T = 25: mean excess per step {excess_25.mean():.2f} nats measured, "
      f"{elbo.printed_excess_closed_form(schedule_25).mean():.2f} by the closed form")

# %% [markdown]
# > ### Errata — the seed lecture's notes
# >
# > Slide titles in quotes, so that each slip can be found in the notes.
# >
# > 1. **Decoder index.** The decoder walks *down* the chain, $p_\theta(x_{t-1}\mid x_t)$ for $t = T,\dots,1$ (equivalently
# >    $p_\theta(h_t\mid h_{t+1})$: the same object, shifted by one), and only the encoder goes up, $q(x_t\mid x_{t-1})$.
# >    The notes get this right on "Mathematical representation" and "Third assumption" (and the figure caption's
# >    "generated only from the previous latent $h_{t+1}$" is right too), but slip three times:
# >    * "Equation for the Markovian hierarchical VAE" writes the decoder as $\prod_{t=2}^T p_\theta(h_t\mid h_{t-1})$,
# >      an encoder-direction factor; it should be $\prod_{t=2}^T p_\theta(h_{t-1}\mid h_t)$;
# >    * "Chains of VAEs" says "we decode each latent set of variables $h_t$ in terms of the previous latent variable
# >      $h_{t-1}$"; decoding goes from $h_{t+1}$ to $h_t$ (the "previous" latent of the *decoder* is the deeper one);
# >    * "Continues" writes $\prod_{t=1}^{T-1} p_\theta(x_t\mid x_{t-1})/q(x_t\mid x_{t-1})$ on every line, although the
# >      slide before it ("Optimizing the variational diffusion model") had reached $\prod_{t=1}^{T-1} p_\theta(x_t\mid x_{t+1})$;
# >      it should be $p_\theta(x_t\mid x_{t+1})/q(x_t\mid x_{t-1})$ (section 3).
# > 2. **"$\log p(x) =$" must stay "$\log p(x) \ge$".** "Continues" starts with $\log p(x) =$. After Jensen's inequality
# >    (section 3) every line is a lower bound; equality holds only if $q(x_{1:T}\mid x_0)$ equals the model's posterior.
# > 3. **The expectation of the consistency sum.** On the last line of "Continues" each term of the sum over $t$ is taken
# >    under $\mathbb E_{q(x_{T-1}, x_T\mid x_0)}$, the variables of the *prior* term; the $t$-th term involves $x_{t-1}, x_t, x_{t+1}$,
# >    so it is $\mathbb E_{q(x_{t-1}, x_t, x_{t+1}\mid x_0)}$.
# > 4. **The missing step from log-ratios to $-D_\mathrm{KL}$.** Between "Continues" and "Interpretations" the log-ratios
# >    become KL divergences without a word. Write the joint expectation as an outer expectation over the conditioning
# >    variables and an inner one over the variable the densities are about, *taken under that variable's conditional
# >    given the outer ones*; only the inner expectation is a $-D_\mathrm{KL}$. For a denoising term:
# >    $$\mathbb E_{q(x_{t-1},x_t\mid x_0)}\Big[\log\tfrac{p_\theta(x_{t-1}\mid x_t)}{q(x_{t-1}\mid x_t,x_0)}\Big] = \mathbb E_{q(x_t\mid x_0)}\Big[\mathbb E_{q(x_{t-1}\mid x_t,x_0)}\big[\log\tfrac{p_\theta(x_{t-1}\mid x_t)}{q(x_{t-1}\mid x_t,x_0)}\big]\Big] = -\mathbb E_{q(x_t\mid x_0)}\big[D_\mathrm{KL}(q(x_{t-1}\mid x_t,x_0)\,\|\,p_\theta(x_{t-1}\mid x_t))\big].$$
# >    For a consistency term the inner conditional is $r = q(x_t\mid x_{t-1}, x_{t+1})$, not $q(x_t\mid x_{t-1})$, so the
# >    consistency KL on "The last term" (Luo's eq. 45) is not equal to the term it replaces (sections 3 and 9).
# > 5. **Encoder mean: notation, not an error.** "Parameterizing Gaussian encoder" writes $\mu_t(x_t) = \sqrt{\alpha_t}\,x_{t-1}$.
# >    The mean is right: it scales the *previous* latent $x_{t-1}$ (section 2 measured the slope). The argument $x_t$
# >    is Luo's own label (his eqs. 27–28) for "the mean of the distribution of $x_t$", not the variable the mean
# >    depends on; a student may read it as $\sqrt{\alpha_t}$ times a function of $x_t$, so say it once in the lecture.
# > 6. **"Train a network to introduce noise."** ("How diffusion models work".) The forward (noising) process is fixed,
# >    not learned (restriction 2). The network learns to *remove* noise: it predicts $\epsilon$ (equivalently $x_0$ or
# >    the score) from $x_t$, which defines the decoder $p_\theta(x_{t-1}\mid x_t)$.
# > 7. **"Cheaply evaluated" is a bound.** "Diffusion models" lists "the model log likelihood, and the probability of
# >    individual states, to be cheaply evaluated". What is cheap is the ELBO, a *lower bound* on $\log p_\theta(x_0)$
# >    (section 9: 0.55 nats below $\log p(x_0)$ on the toy even with the optimal denoiser); the exact
# >    $\log p_\theta(x_0)$ of a diffusion model has no closed form.

# %% [markdown]
# ## Summary
#
# * A diffusion model is a Markovian hierarchical VAE with a fixed Gaussian encoder whose last latent is $\mathcal N(0, I)$.
# * It is normalised by construction (Sohl-Dickstein et al. 2015), unlike a Boltzmann density $e^{-E}/Z$, whose $Z$ is
#   an integral a grid would need $10^{1568}$ evaluations for on MNIST (100 points per axis).
# * Its ELBO can be written with consistency terms (each integrated under $q(x_t\mid x_{t-1}, x_{t+1})$) or with
#   denoising-matching terms; both have the same expectation. At almost every step the denoising term, with one
#   random variable, has the smaller variance, but along one shared trajectory the whole denoising-form estimate
#   is the noisier one here (std 3.19 against 1.74 nats, section 9), because its terms are positively correlated.
# * Luo's eq. 45 as printed, with $q(x_t\mid x_{t-1})$ in the KL, is a false identity: about
#   $\tfrac12(2a-\ln a)\approx 1$ nat per dimension per step too large for $T = 1000$ (784 nats per step on MNIST),
#   less for big steps. Luo moves on to eq. 58, so DDPM and $L_\text{simple}$ are unaffected.
# * Each denoising term is a KL between Gaussians, i.e. a weighted MSE on $x_0$, on $\epsilon$, or on the score;
#   $L_\text{simple}$ drops the weights.
# * The optimal predictions are posterior means (Tweedie), which the toy let us check exactly.

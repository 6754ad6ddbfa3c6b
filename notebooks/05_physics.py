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
# # 5 · The physics of diffusion: Langevin dynamics, SDEs, the probability-flow ODE, likelihoods
#
# **Runtime:** about 40 s on 2 CPU cores.
#
# Diffusion models were introduced by analogy with non-equilibrium thermodynamics
# (Sohl-Dickstein et al. 2015). This notebook makes the analogy exact and computes every step of it,
# first on the toy mixture of notebook 1 (its score is known in closed form) and then on the shipped
# MNIST model:
#
# 1. **Langevin dynamics** samples a density from its score alone; its step size biases it.
# 2. **The forward process is an SDE**, an Ornstein–Uhlenbeck process; its density obeys a
#    Fokker–Planck equation, which we solve on a grid.
# 3. **Reversing time** gives another SDE, driven by the score: a sampler.
# 4. **The probability-flow ODE** has the same marginals and no noise; DDIM is Euler's method for it.
# 5. **Exact likelihoods**: the ODE is a continuous normalising flow, so $\log p(x_0)$ is an integral; beside it,
#    the ELBO's bits/dim term by term, its discretised decoder, and what a learned variance would change.
# 6. **Thermodynamics**: the prior is a Boltzmann distribution, the forward process relaxes to it, and
#    the entropy production is computed.
#
# References: Song et al. 2021, *Score-based generative modeling through SDEs* (arXiv:2011.13456);
# Song & Ermon 2019 (arXiv:1907.05600); Chen et al. 2018, *Neural ODEs* (arXiv:1806.07366); Anderson
# 1982, *Reverse-time diffusion equation models*.

# %%
import math

import matplotlib.pyplot as plt
import torch

from course_ddpm import bound, load_pretrained, plot_curves, results
from course_ddpm.checkpoints import schedule_from_card
from course_ddpm.data import load_mnist
from course_ddpm.evaluation import decoder_floor_bpd, mean_confidence
from course_ddpm.forward import q_sample, x0_from_eps
from course_ddpm.fokker_planck import fokker_planck_operator, fokker_planck_solve, kl_on_grid, relative_fisher_on_grid
from course_ddpm.langevin import annealed_langevin_sample, langevin_sample, ula_gaussian_variance
from course_ddpm.likelihood import ode_bits_per_dim, ode_log_likelihood
from course_ddpm.notebook import agree, setup, show_code
from course_ddpm.ode import ode_drift, ode_sample, solve_flow
from course_ddpm.plot_images import image_grid
from course_ddpm.reverse import log_sigma2, p_mean_variance
from course_ddpm.sampling import sample
from course_ddpm.sde import VPSDE, reverse_sde_sample, score_from_model, score_of_mixture
from course_ddpm.toy import GaussianMixture

setup(seed=0)

# %% [markdown]
# The shipped model, its schedule, and the schedule's continuous-time SDE (`course_ddpm.sde`):

# %%
model, card = load_pretrained("unet")
schedule = schedule_from_card(card)
sde = VPSDE.from_schedule(schedule)
print(schedule.name, "| beta(t) at t = 0, 0.5, 1:", [round(b, 3) for b in sde.beta(torch.tensor([0.0, 0.5, 1.0])).tolist()])


# %% [markdown]
# ## 1. Langevin dynamics
#
# A particle in the potential $U(x) = -\log p(x)$ at unit temperature, kicked by noise, obeys
# $$dx = \nabla\log p(x)\,dt + \sqrt2\,dW .$$
# Its stationary density is $p$, and only the **score** $\nabla\log p$ enters: the normalising constant
# is never needed. Euler–Maruyama with step $h$ is the unadjusted Langevin algorithm (ULA):
# $x \leftarrow x + h\nabla\log p(x) + \sqrt{2h}\,z$.

# %%
show_code(langevin_sample)

# %% [markdown]
# A two-component mixture, its exact score (`GaussianMixture.score_at`), 5,000 chains from
# $\mathcal N(0,1)$, 3,000 steps of $h = 0.005$:

# %%
mixture = GaussianMixture((0.3, 0.7), (-0.8, 0.6), (0.4, 0.4))


def clean_score(m):
    """grad log p of the clean data: the noised score at alpha_bar = 1."""
    return lambda x: m.score_at(x, torch.ones(x.shape[0], 1, dtype=x.dtype))


g = torch.Generator().manual_seed(0)
x = langevin_sample(clean_score(mixture), torch.randn(5000, 1, generator=g, dtype=torch.float64), 0.005, 3000, generator=g)
grid = torch.linspace(-2.5, 2.5, 501, dtype=torch.float64)
density = mixture.log_prob(grid[:, None]).exp()
left = sum(w * 0.5 * math.erfc(m / (s * math.sqrt(2))) for w, m, s in zip(mixture.weights, mixture.means, mixture.stds))
print(f"P(x < 0): Langevin {(x < 0).double().mean().item():.3f}, exact {left:.3f}; "
      f"mean: Langevin {x.mean().item():.3f}, exact {sum(w * m for w, m in zip(mixture.weights, mixture.means)):.3f}")
plt.hist(x.squeeze().numpy(), bins=80, density=True, alpha=0.5, label="Langevin, 3000 steps")
plt.plot(grid, density, "k", label="p(x)")
plt.legend(); plt.xlabel("x"); plt.show()

# %% [markdown]
# **The step size biases the result.** Without a Metropolis correction, ULA samples a slightly wrong
# density. For a Gaussian $\mathcal N(m, s^2)$ the chain $x' = (1 - h/s^2)x + \dots + \sqrt{2h}z$ is
# linear, and its stationary variance is exactly $s^2/(1 - h/2s^2)$ (`ula_gaussian_variance`), not $s^2$:

# %%
gaussian = GaussianMixture.gaussian(0.0, 0.5)
g = torch.Generator().manual_seed(1)
print(f"{'h':>6}{'measured var':>14}{'s^2/(1-h/2s^2)':>16}{'s^2':>6}")
for h in (0.01, 0.05, 0.1, 0.2):
    x_h = langevin_sample(clean_score(gaussian), torch.zeros(20_000, 1, dtype=torch.float64), h, 300, generator=g)
    print(f"{h:>6}{x_h.var().item():>14.3f}{ula_gaussian_variance(0.5, h):>16.3f}{0.25:>6}")

# %% [markdown]
# **Annealed Langevin** (Song & Ermon 2019, Algorithm 1). With narrow, separated modes ULA is stuck in
# whichever mode is nearest to its start: the *weights* come out wrong. Running it first on the noised
# densities $q(x_t)$ at decreasing noise levels (whose modes overlap) lets chains cross. Here on the
# three-mode toy of notebook 1, with the VP noise levels of the schedule:

# %%
toy = GaussianMixture((0.2, 0.5, 0.3), (-0.6, 0.1, 0.7), (0.1, 0.2, 0.05))
g = torch.Generator().manual_seed(2)
x_start = torch.randn(4000, 1, generator=g, dtype=torch.float64)
plain = langevin_sample(clean_score(toy), x_start, 2e-4, 1000, generator=g)
levels = torch.tensor([0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.0], dtype=torch.float64)  # continuous times t
alpha_bar = sde.alpha_bar(levels)


def noised_score(x, i):
    return toy.score_at(x, torch.full((x.shape[0], 1), float(alpha_bar[i]), dtype=x.dtype))


variances = (1 - alpha_bar).clamp_min(1e-3).tolist()  # the clean level gets the smallest step
annealed = annealed_langevin_sample(noised_score, x_start, variances, 150, 2e-4, generator=g)
edges = torch.tensor([-10.0, -0.3, 0.45, 10.0], dtype=torch.float64)  # the three basins
print(f"{'mode':<6}{'weight':>8}{'ULA':>8}{'annealed':>10}")
for k, w in enumerate(toy.weights):
    in_mode = lambda s: ((s >= edges[k]) & (s < edges[k + 1])).double().mean().item()  # noqa: E731
    print(f"{k:<6}{w:>8.2f}{in_mode(plain):>8.3f}{in_mode(annealed):>10.3f}")

# %% [markdown]
# ## 2. The forward process as an SDE
#
# One DDPM step is $x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,z$. With $\beta_t = \beta(t)\,\Delta t$,
# $\Delta t = 1/T$, and $\sqrt{1-\beta} = 1 - \beta/2 + O(\beta^2)$ this is one Euler–Maruyama step of
# the **variance-preserving SDE** (Song et al. eq. 11)
# $$dx = -\tfrac12\beta(t)\,x\,dt + \sqrt{\beta(t)}\,dW ,$$
# an Ornstein–Uhlenbeck process (a particle on a spring, in a heat bath) with a time-dependent rate.
# Its transition density is Gaussian, $x_t\mid x_0 \sim \mathcal N(\sqrt{\bar\alpha(t)}\,x_0, (1-\bar\alpha(t))I)$ with
# $\bar\alpha(t) = e^{-\int_0^t\beta}$. The package's $\beta(t)$ runs through $T\beta_k$ in the middle
# of step $k$, so $\bar\alpha(t_k) = e^{-\sum_{j\le k}\beta_j}$, while the chain has $\prod_{j\le k}(1-\beta_j)$:
# equal to first order in $\beta$; the gap is $\sum\beta_j^2/2$:

# %%
show_code(VPSDE.forward_step)
k = torch.tensor([0, 99, 499, 999])
ab_sde = sde.alpha_bar(sde.time_of_index(k))
gap = ab_sde.log() - schedule.alpha_bar[k].log()
second_order = torch.cumsum(schedule.beta**2, 0)[k] / 2
print(f"{'k':>5}{'chain alpha_bar':>17}{'SDE alpha_bar(t_k)':>20}{'log gap':>10}{'sum beta^2/2':>14}")
for i in range(4):
    print(f"{int(k[i]):>5}{schedule.alpha_bar[k[i]].item():>17.5g}{ab_sde[i].item():>20.5g}{gap[i].item():>10.4f}{second_order[i].item():>14.4f}")

# %% [markdown]
# **Fokker–Planck.** The density $p_t$ of the SDE obeys
# $\partial_t p = \tfrac12\beta(t)\,\partial_x\!\big(x p + \partial_x p\big)$. `fokker_planck_solve`
# discretises the right-hand side by finite volumes on a grid (mass-conserving) and applies a matrix
# exponential; nothing in it knows about Gaussians. Against the closed-form noised mixture $q(x_t)$ of
# `GaussianMixture.log_prob_at`:

# %%
x_grid = torch.linspace(-3, 3, 601, dtype=torch.float64)
dx = float(x_grid[1] - x_grid[0])


def toy_density(t, x=x_grid):
    """The closed-form noised toy density q(x_t) at continuous time t, on a grid."""
    return toy.log_prob_at(x[:, None], torch.full((len(x), 1), float(sde.alpha_bar(t)), dtype=torch.float64)).exp()


for t in (0.0, 0.02, 0.1, 0.4):
    p_t = fokker_planck_solve(sde, toy_density(0.0), x_grid, t)
    error = (p_t - toy_density(t)).abs().max() / toy_density(t).max()
    print(f"t = {t:<5} max |grid - closed form| / max p_t = {error.item():.1e}   mass {p_t.sum().item() * dx:.6f}")
    plt.plot(x_grid, p_t, label=f"t = {t}")
plt.legend(); plt.xlabel("x"); plt.title("Fokker-Planck on a grid: the toy density relaxes to N(0, 1)"); plt.show()

# %% [markdown]
# ## 3. Reversing time
#
# Anderson (1982): a diffusion run backwards in time is again a diffusion, with the drift corrected by
# the score (Song et al. eq. 6),
# $$dx = \big[f(x,t) - g(t)^2\,\nabla\log p_t(x)\big]dt + g(t)\,d\bar W ,$$
# integrated from $t=1$ down to $0$. The network gives the score by Tweedie's formula,
# $\nabla\log p_t(x) = -\epsilon_\theta(x,t)/\sqrt{1-\bar\alpha(t)}$ (`score_from_model`). On the toy with
# the exact score, 500 Euler–Maruyama steps from $\mathcal N(0,1)$:

# %%
show_code(VPSDE.reverse_step)
g = torch.Generator().manual_seed(3)
x_rev = reverse_sde_sample(sde, score_of_mixture(sde, toy), torch.randn(20_000, 1, generator=g, dtype=torch.float64), 500, generator=g)
fine = torch.linspace(-3, 3, 601, dtype=torch.float64)
hist = torch.histc(x_rev.squeeze(), bins=60, min=-1.5, max=1.5) / (20_000 * 0.05)
centres = torch.linspace(-1.5 + 0.025, 1.5 - 0.025, 60, dtype=torch.float64)
exact_cdf = sum(w * torch.special.ndtr((fine - m) / s) for w, m, s in zip(toy.weights, toy.means, toy.stds))
cdf_gap = (torch.searchsorted(x_rev.squeeze().sort().values, fine).double() / 20_000 - exact_cdf).abs().max()
print(f"Kolmogorov-Smirnov distance to the toy's CDF: {cdf_gap.item():.3f}; "
      f"95 % of exact samples of this size stay below {1.36 / math.sqrt(20_000):.3f}")
plt.bar(centres, hist, width=0.05, alpha=0.5, label="reverse SDE"); plt.plot(fine, toy.log_prob(fine[:, None]).exp(), "k", label="p(x)")
plt.xlim(-1.5, 1.5); plt.legend(); plt.show()

# %% [markdown]
# The same sampler on MNIST with the shipped network: 8 digits, 250 Euler–Maruyama steps from $t = 1$ to
# $t_0 = 1/T$ (the network's last noise level), then Tweedie's $\hat x_0$ at code index 0. The shipped
# classifier's mean confidence tells whether they are digits (MNIST test images: about 0.99):

# %%
g = torch.Generator().manual_seed(4)
x_T = torch.randn(8, 1, 28, 28, generator=g)
with torch.no_grad():
    x_eps = reverse_sde_sample(sde, score_from_model(sde, model), x_T, 250, t_end=float(sde.time_of_index(0)), generator=g)
    k0 = torch.zeros(8, dtype=torch.long)
    digits_sde = x0_from_eps(schedule, x_eps, k0, model(x_eps, k0)).clamp(-1, 1)
print(f"mean classifier confidence: {mean_confidence(digits_sde):.2f}")
image_grid(digits_sde, ncols=8, suptitle="reverse SDE, 250 Euler-Maruyama steps"); plt.show()

# %% [markdown]
# ## 4. The probability-flow ODE
#
# Drop the noise and halve the score term: the ODE (Song et al. eq. 13)
# $$\frac{dx}{dt} = f(x,t) - \tfrac12 g(t)^2\,\nabla\log p_t(x)$$
# moves every density $p_t$ into $p_{t'}$ exactly like the SDE does, but deterministically. For a
# Gaussian $\mathcal N(m, s^2)$ its flow is the affine map between the marginals; for the toy the flow
# sends $\mathcal N(0,1)$ to the mixture:

# %%
show_code(ode_drift)
x1 = torch.linspace(-2.5, 2.5, 41, dtype=torch.float64)[:, None]
flow = solve_flow(sde, score_of_mixture(sde, toy), x1, 1.0, 0.0, rtol=1e-8, atol=1e-8)
print(f"41 starting points, RK45 at rtol 1e-8: {flow.nfe} evaluations; the endpoints sit in the modes:",
      [round(v, 2) for v in flow.x.squeeze()[::5].tolist()])

# %% [markdown]
# **DDIM is Euler's method for this ODE** (Song et al., DDIM eq. 14). In the variables
# $\bar x = x/\sqrt{\bar\alpha}$ and $\sigma = \sqrt{1-\bar\alpha}/\sqrt{\bar\alpha}$ the ODE reads
# $d\bar x/d\sigma = \epsilon(x,t)$, and a DDIM step with $\eta = 0$ is $\bar x_{t'} = \bar x_t + (\sigma_{t'}-\sigma_t)\,\epsilon_\theta(x_t,t)$.
# So with more steps DDIM converges to the ODE's endpoint from the same $x_T$, the error falling like $1/K$:

# %%
x_T_toy = torch.randn(500, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
exact = solve_flow(sde, score_of_mixture(sde, toy), x_T_toy, 1.0, 0.0, rtol=1e-9, atol=1e-9)
for K in (10, 50, 200, 1000):
    ddim = sample(toy.eps_model(schedule), schedule, x_T_toy.shape, num_inference_steps=K, x_T=x_T_toy,
                  clip_x0=False, progress=False, dtype=torch.float64).samples  # fmt: skip
    print(f"DDIM K = {K:>4}: max |x0_DDIM - x0_ODE| = {(ddim - exact.x).abs().max().item():.4f}")

# %% [markdown]
# On MNIST: the ODE sampler (`ode_sample`: RK45 from $t=1$ to $t_0$, then Tweedie's $\hat x_0$) and DDIM
# with 100 steps from the same 8 noises give nearly the same digits:

# %%
show_code(ode_sample)
ode_digits = ode_sample(model, sde, x_T.shape, x_T=x_T, rtol=1e-3, atol=1e-3)
ddim_digits = sample(model, schedule, x_T.shape, num_inference_steps=100, x_T=x_T, progress=False).samples
print(f"ODE: {ode_digits.nfe} network calls; mean |ODE - DDIM(100)| per pixel = "
      f"{(ode_digits.x - ddim_digits).abs().mean().item():.2f} (pixels in [-1, 1])")
image_grid(torch.cat([ode_digits.x, ddim_digits]), ncols=8, suptitle="top: probability-flow ODE; bottom: DDIM, 100 steps"); plt.show()

# %% [markdown]
# **NFE against quality.** `benchmarks/ode_likelihood.py` sampled 300 digits with each sampler from the
# same noises and scored them with MNIST-FID (floor: 300 real training images). The committed JSON:

# %%
bench = results.load_result("ode_likelihood")
rows, ref = bench["sampling"]["rows"], bench["sampling"]["fid_reference"]
for name, marker in (("ode", "o-"), ("ddim", "s-")):
    pts = [(r["nfe"], r["fid"]) for r in rows if r["sampler"] == name]
    plt.plot(*zip(*pts), marker, label=name.upper())
plt.axhline(ref["floor"], color="gray", ls="--", label="floor (real images)")
plt.xscale("log"); plt.xlabel("network evaluations per image (NFE)"); plt.ylabel(f"MNIST-FID, n = {bench['sampling']['n']}")
plt.legend(); plt.show()
for r in rows:
    setting = f"rtol {r['tol']:g}" if r["sampler"] == "ode" else f"{r['steps']} steps"
    print(f"{r['sampler']:<5}{setting:<12} NFE {r['nfe']:6.1f}   FID {r['fid']:6.2f}")

# %% [markdown]
# ## 5. Exact likelihood
#
# The ODE is a continuous normalising flow, so the density along a trajectory changes by the
# divergence of the vector field (Chen et al. 2018, Theorem 1):
# $$\frac{d\log p_t(x(t))}{dt} = -\nabla\cdot v(x(t),t), \qquad \log p_0(x_0) = \log p_1(x(1)) + \int_0^1 \nabla\cdot v\,dt .$$
# `ode_log_likelihood` solves for $x$ and the integral together. On the toy (exact divergence, exact
# prior $p_1$) it reproduces the closed-form $\log p(x_0)$:

# %%
show_code(ode_log_likelihood)
x0_toy = toy.sample((8, 1), generator=torch.Generator().manual_seed(6))
ab1 = float(sde.alpha_bar(1.0))
prior = lambda x: toy.log_prob_at(x, torch.full((x.shape[0], 1), ab1, dtype=x.dtype))  # noqa: E731
lik = ode_log_likelihood(sde, score_of_mixture(sde, toy), x0_toy, t_start=0.0, rtol=1e-8, atol=1e-8, prior_log_prob=prior)
print("ODE log p and the closed form", agree(lik.log_p - toy.log_prob(x0_toy), digits=4), f"({lik.nfe} evaluations)")

# %% [markdown]
# On images a full Jacobian trace would take 784 backward passes per evaluation. Hutchinson's
# estimator $\operatorname{tr}J = \mathbb E_z[z^\top J z]$ (Rademacher $z$) needs one; it makes each $\log p$ an
# unbiased random estimate. Bits/dim use the ELBO's discretisation: uniform dequantisation into the
# bins of width $2/255$, so both numbers are upper bounds on a discrete $-\log_2 P(x_0)/D$ over the same
# bins, with the network read as a flow (ODE) or as a Markov chain (ELBO).
# Two MNIST test digits here, at a looser tolerance than the benchmark's 1e-5 (about 10 s):

# %%
x_test, _ = load_mnist(train=False)
bpd, nfe = ode_bits_per_dim(model, sde, x_test[:2], generator=torch.Generator().manual_seed(7), rtol=1e-4, atol=1e-4)
print(f"bits/dim by the ODE: {[round(b, 2) for b in bpd.tolist()]}")

# %% [markdown]
# The number of evaluations the adaptive solver needed. It differs by a few between CPUs: the step-size
# control compares error estimates with the tolerance, and the backward pass's round-off moves them.

# %% tags=["nbval-ignore-output"]
print(f"{nfe} evaluations of the vector field and its divergence")

# %% [markdown]
# The benchmark on 50 test digits, with standard errors over digits, beside the ELBO (Ho et al.'s
# variational bound, all 1000 terms) of the same digits. Song et al. found the ODE likelihood tighter
# than the bound on CIFAR-10; on MNIST with the shipped model:

# %%
lk = bench["likelihood"]
print(f"n = {lk['n']} MNIST test digits\n  ODE (Hutchinson, RK45 rtol {lk['rtol']:g}): {lk['ode_bpd']:.3f} ± {lk['ode_bpd_stderr']:.3f} bits/dim"
      f"\n  ELBO bound:                         {lk['elbo_bpd']:.3f} bits/dim, of which the discrete decoder L_0 {lk['elbo']['decoder']:.3f}"
      f"\n  ELBO - ODE = {(lk['elbo_bpd'] - lk['ode_bpd']) / lk['ode_bpd_stderr']:.1f} standard errors")
plt.hist(lk["ode_bpd_per_image"], bins=15, alpha=0.6, label="ODE, per digit")
plt.axvline(lk["elbo_bpd"], color="k", ls="--", label="ELBO (mean)"); plt.xlabel("bits/dim"); plt.legend(); plt.show()

# %% [markdown]
# ### The bound's bits/dim and its discretised decoder
#
# The ELBO's 1.60 bits/dim splits into the terms of Ho et al. eq. 5. From the shipped model's evaluation
# (`course-ddpm evaluate --checkpoint pretrained --n 10000 --sampler ddim --steps 50 --bpd-subset 100`, which
# calls `evaluation.bits_per_dim`; stored as `course_ddpm/measurements/evaluation_10000.json`):

# %%
vb = results.load_result("evaluation_10000")["bpd"]
print(f"first {vb['n']} MNIST test digits: total {vb['total']:.2f} bits/dim = decoder L_0 {vb['decoder']:.2f} "
      f"+ diffusion L_1..L_(T-1) {vb['diffusion']:.2f} + prior L_T {vb['prior']:.5f};  decoder floor {vb['decoder_floor']:.3f}")

# %% [markdown]
# The data are 8-bit, so the decoder gives each pixel a **probability**, not a density (Ho et al. eq. 13):
#
# $$p_\theta(x_0\mid x_1) = \prod_{i=1}^{D}\int_{\delta_-(x_0^i)}^{\delta_+(x_0^i)} \mathcal N\big(x;\ \mu_\theta^i(x_1, 1),\ \sigma_1^2\big)\,dx,
# \qquad \delta_\pm(x) = \begin{cases}\pm\infty & x = \pm 1\\ x \pm \tfrac{1}{255} & \text{otherwise.}\end{cases}$$
#
# Each level of $[-1, 1]$ owns a bin of width $2/255$; the two outer bins reach $\pm\infty$. The variance is fixed:
# $\sigma_1^2 = \tilde\beta_2$ (the posterior variance $\tilde\beta_1$ is 0, `reverse.log_sigma2` takes the next one).
# Live, the decoder term of the same 100 test digits, with one call of the network at $t = 1$ (a new draw of $x_1$):

# %%
sigma_1 = log_sigma2(schedule, "fixed_small")[0].exp().sqrt().item()
x0_bits = x_test[:100].double()  # (100, 1, 28, 28)
t_first = torch.zeros(100, dtype=torch.long)  # code t = 0 is paper t = 1
x_1 = q_sample(schedule, x0_bits, t_first, torch.randn(x0_bits.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64))
with torch.no_grad():
    eps_first = model(x_1.float(), t_first).double()
decoder_mean = p_mean_variance(schedule, x_1, t_first, eps_first).mean  # mu_theta(x_1, 1), (100, 1, 28, 28)
print(f"sigma_1 = {sigma_1:.5f}, {sigma_1 * 255:.2f} half-bins (1/255)")
print(f"decoder L_0 of the shipped model: {bound.decoder_bpd(x0_bits, decoder_mean, sigma_1).mean():.3f} bits/dim")

# %% [markdown]
# One background pixel and one pixel on a stroke of the first digit, with the model's Gaussian over their bins;
# the shaded area is the probability of the true level:

# %%
flat_x0, flat_mean = x0_bits[0].flatten(), decoder_mean[0].flatten()  # (784,)
ink = int((flat_x0 - 0.2).abs().argmin())  # a grey pixel on a stroke
plot_curves.decoder_bins([(flat_x0[0].item(), flat_mean[0].item(), "background pixel (x0 = -1): its bin reaches -inf"),
                          (flat_x0[ink].item(), flat_mean[ink].item(), f"stroke pixel (x0 = {flat_x0[ink]:.3f})")], sigma_1)
plt.show()

# %% [markdown]
# **The floor.** Even a perfect model, $\mu_\theta = x_0$, pays for the width of $\sigma_1$: an inner pixel gets
# $P = 2\Phi(h/\sigma_1) - 1$ and an outer one $P = \Phi(h/\sigma_1)$, with $h = 1/255$ the half bin
# (`bound.decoder_floor_closed_form`; `evaluation.decoder_floor_bpd` gets it through the model's code path):

# %%
outer_bits, inner_bits = bound.perfect_mean_pixel_bits(sigma_1)
print(f"outer pixel (x0 = -1 or 1): -log2 Phi(h/sigma_1) = {outer_bits:.2f} bits; "
      f"inner pixel: -log2(2 Phi - 1) = {inner_bits:.2f} bits")
print(f"share of outer pixels in these digits: {(x0_bits.abs() > 0.999).double().mean():.0%}")
print(f"floor, closed form: {bound.decoder_floor_closed_form(x0_bits, sigma_1).mean():.3f} bits/dim; "
      f"through the model's code path: {decoder_floor_bpd(schedule, x_test[:100]):.3f}")

# %% [markdown]
# So 0.65 of the 1.60 bits/dim is the price of the fixed $\sigma_1$ for a perfect noise predictor; the shipped
# network's own errors add the rest of the decoder term. It is a floor for models that get the mean right, not
# for every model: the outer bins reach $\pm\infty$, so a mean *beyond* the outer level pays less there:

# %%
overshoot = torch.where(x0_bits < -0.999, x0_bits - 3 * sigma_1, torch.where(x0_bits > 0.999, x0_bits + 3 * sigma_1, x0_bits))
print(f"perfect mean, moved 3 sigma_1 beyond the outer levels on outer pixels: {bound.decoder_bpd(x0_bits, overshoot, sigma_1).mean():.3f} bits/dim")

# %% [markdown]
# The noise-prediction loss never asks for that (it wants $\hat x_0 = x_0$), but the bound would reward it.
#
# **What a learned variance would change.** Nichol & Dhariwal 2021 (*Improved denoising diffusion probabilistic
# models*, arXiv:2102.09672, section 3.1) let the network output $\Sigma_\theta$, an interpolation between $\beta_t$ and
# $\tilde\beta_t$ per dimension, trained on the bound. Two things it can change, measured here without training:
#
# 1. *The decoder's width.* The best single $\sigma$ for the shipped model's means, and the floor at each $\sigma$:

# %%
sigmas = torch.logspace(-3, -1, 81, dtype=torch.float64)  # decoder std from 0.001 to 0.1
model_bits = torch.stack([bound.decoder_bpd(x0_bits, decoder_mean, s.item()).mean() for s in sigmas])
floor_bits = torch.stack([bound.decoder_floor_closed_form(x0_bits, s.item()).mean() for s in sigmas])
best = int(model_bits.argmin())
print(f"best scalar sigma {sigmas[best]:.4f} ({sigmas[best] / sigma_1:.2f} sigma_1): decoder {model_bits[best]:.3f} bits/dim, "
      f"floor there {floor_bits[best]:.3f}")
plt.figure(figsize=(5, 3))
plt.semilogx(sigmas, model_bits, label="shipped model's means"); plt.semilogx(sigmas, floor_bits, "--", label="perfect means (floor)")
plt.axvline(sigma_1, color="k", lw=0.8, label="fixed sigma_1"); plt.xlabel("decoder sigma"); plt.ylabel("L_0 [bits/dim]")
plt.legend(fontsize=8); plt.show()

# %% [markdown]
# A narrower decoder saves only a few hundredths of a bit: below $\sigma \approx 0.006$ the network's own errors
# cost more than the narrower bins save. A variance that differs between pixels, as Nichol & Dhariwal's does,
# could go further where the mean is sure (the black background); how far needs a trained model.
#
# 2. *The other fixed choice.* Ho et al. (section 3.2) tried $\sigma_t^2 = \beta_t$ and $\sigma_t^2 = \tilde\beta_t$ and found
# similar samples. The bound is not indifferent: for a perfect mean, $L_{t-1} = \tfrac12(r - 1 - \ln r)$ per dimension with
# $r = \tilde\beta_t/\sigma_t^2$, zero for $\tilde\beta_t$ and positive for $\beta_t$ (`bound.variance_excess_bpd`):

# %%
excess = bound.variance_excess_bpd(schedule, "fixed_large")  # (T,) bits/dim per term
print(f"sigma_t^2 = beta_t instead of beta_tilde_t: +{excess.sum():.2f} bits/dim for a perfect mean, "
      f"{excess[1:3].sum() / excess.sum():.0%} of it in the first two terms L_1, L_2")
ratio = schedule.beta_tilde / schedule.beta  # (T,)
print(f"beta_tilde / beta at paper t = 2, 3, 10, 100: {', '.join(f'{ratio[t]:.2f}' for t in (1, 2, 9, 99))}")

# %% [markdown]
# Near $t = 1$, $\tilde\beta_t$ is well below $\beta_t$, and that is where the bound is decided: Nichol & Dhariwal's
# learned $\Sigma_\theta$ is free to follow $\tilde\beta_t$ there and to move between the two elsewhere.

# %% [markdown]
# ## 6. Thermodynamics
#
# **The prior is a Boltzmann distribution.** The forward drift $-\tfrac12\beta x = -\tfrac12\beta\,\nabla U$ comes
# from the harmonic potential $U(x) = x^2/2$, and the noise is a heat bath at $k_BT = 1$. The
# equilibrium is $p_{\text{eq}} = e^{-U}/Z$ with $Z = \int e^{-U} = \sqrt{2\pi}$: the prior $\mathcal N(0, I)$.
# On the grid, the Fokker–Planck operator annihilates it (and conserves mass):

# %%
x_wide = torch.linspace(-6, 6, 1201, dtype=torch.float64)  # wide enough for the Gaussian's tails
phi = torch.exp(-x_wide**2 / 2)  # e^{-U}
Z = phi.sum().item() * dx
boltzmann = phi / Z
L = fokker_planck_operator(x_wide)
ratio = (L @ boltzmann).abs().max() / (L @ toy_density(0.0, x_wide)).abs().max()
print(f"Z = {Z:.4f}, sqrt(2 pi) = {math.sqrt(2 * math.pi):.4f}; L p_eq = 0 on the grid: |L p_eq| / |L p_0| < 1e-7 is {bool(ratio < 1e-7)}")

# %% [markdown]
# **Relaxation and entropy production.** The KL divergence to equilibrium is the free-energy excess in
# units of $k_BT$, $\mathrm{KL}(p_t\,\|\,p_{\text{eq}}) = (F[p_t] - F_{\text{eq}})/k_BT$. Along the forward
# process it can only fall, at the rate of the entropy production,
# $\frac{d}{dt}\mathrm{KL} = -\tfrac12\beta(t)\, I(p_t\,\|\,p_{\text{eq}})$ with $I$ the relative Fisher information:

# %%
ts = torch.linspace(0, 1, 51, dtype=torch.float64)
kl = torch.stack([kl_on_grid(toy_density(float(t), x_wide), boltzmann, dx) for t in ts])
print("KL(p_t || p_eq) decreases at every one of the 50 steps:", bool((kl[1:] < kl[:-1]).all()))
for t in (0.05, 0.2, 0.5):
    h = 1e-4
    kl_plus, kl_minus = (kl_on_grid(toy_density(s, x_wide), boltzmann, dx) for s in (t + h, t - h))
    rate = (kl_plus - kl_minus) / (2 * h)
    production = 0.5 * sde.beta(t) * relative_fisher_on_grid(toy_density(t, x_wide), boltzmann, x_wide)
    print(f"t = {t}: dKL/dt = {rate.item():.4f}, entropy production -beta(t)/2 I(p_t || p_eq) = {-production.item():.4f}")
plt.semilogy(ts, kl); plt.xlabel("t"); plt.ylabel("KL(p_t || p_eq) [nats]"); plt.title("relaxation to equilibrium"); plt.show()

# %% [markdown]
# **The $p = \varphi/Z$ argument.** A Boltzmann density $p = \varphi/Z$, $\varphi = e^{-U}$, needs the partition
# function $Z$, an integral over all of space: hopeless for images. The score does not:
# $\nabla\log p = \nabla\log\varphi - \nabla\log Z = \nabla\log\varphi$, since $Z$ does not depend on $x$. Every
# sampler above (Langevin, reverse SDE, ODE) uses only the score, which is why a network can learn it
# by denoising without ever normalising (notebook 1 shows the other way around $Z$, Sohl-Dickstein et al.'s: a chain
# of normalised Gaussian steps, and what a grid for $Z$ would cost). Checked with autograd on the toy's unnormalised $\varphi = 7\,p$:

# %%
x_check = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None].requires_grad_(True)
(grad_phi,) = torch.autograd.grad((toy.log_prob(x_check) + math.log(7.0)).sum(), x_check)
print("grad log phi and the exact score", agree(grad_phi - clean_score(toy)(x_check.detach()), digits=10))

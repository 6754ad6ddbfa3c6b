"""Exercises of notebook 01 (the ELBO): the Gaussian KL, the posterior, the KL as a weighted MSE, one ELBO term.

Each ``check_*`` takes the student's function and returns a :class:`~course_ddpm.exercises._check.CheckResult`.
References are the package's functions; every :class:`Mistake` is a wrong version with the hint that names it.
Code t = paper t - 1 (see :mod:`course_ddpm.schedules`).
"""

from __future__ import annotations

import math

import torch

from course_ddpm.bound import vb_term_bpd
from course_ddpm.exercises._check import Case, Exercise, Mistake, randn
from course_ddpm.forward import q_posterior, q_sample
from course_ddpm.gaussian import normal_kl
from course_ddpm.losses import weighted_eps_mse_coefficient
from course_ddpm.reverse import p_mean_variance
from course_ddpm.schedules import broadcast, cosine_schedule, linear_schedule
from course_ddpm.toy import GaussianMixture


_randn = randn


# --- 1. KL between two Gaussians with the same variance --------------------------------------
def _kl_reference(mu_q, mu_p, var):
    return normal_kl(mu_q, var.log(), mu_p, var.log())


def _kl_cases() -> list[Case]:
    var = 0.05 + _randn(5, 3, seed=2).abs()
    return [
        Case("random means and variances (5, 3)", (_randn(5, 3, seed=0), _randn(5, 3, seed=1), var)),
        Case("equal means (KL = 0)", (_randn(4, 2, seed=3), _randn(4, 2, seed=3), 0.5 + _randn(4, 2, seed=4).abs())),
    ]


GAUSSIAN_KL = Exercise(
    name="my_gaussian_kl",
    reference=_kl_reference,
    reference_name="course_ddpm.gaussian.normal_kl with equal log-variances",
    cases=_kl_cases,
    mistakes=(
        Mistake("the factor 1/2 is missing: KL = (mu_q - mu_p)^2 / (2 var)",
                lambda mu_q, mu_p, var: (mu_q - mu_p) ** 2 / var),
        Mistake("divide by the variance var = sigma^2, not by the standard deviation sqrt(var)",
                lambda mu_q, mu_p, var: (mu_q - mu_p) ** 2 / (2 * var.sqrt())),
        Mistake("the difference of the means must be squared: (mu_q - mu_p)^2",
                lambda mu_q, mu_p, var: (mu_q - mu_p) / (2 * var)),
        Mistake("the variance divides, it does not multiply: (mu_q - mu_p)^2 / (2 var)",
                lambda mu_q, mu_p, var: (mu_q - mu_p) ** 2 * var / 2),
    ),
)


# --- 2. the posterior q(x_{t-1} | x_t, x_0) ---------------------------------------------------
def _posterior(schedule, x0, x_t, t, ab_prev=None, sqrt_a=None, sqrt_ab_prev=None, var=None, swap=False):
    """Ho et al. eq. 7 with one ingredient replaced (for the mistakes)."""
    s = schedule
    ab_prev = s.alpha_bar_prev if ab_prev is None else ab_prev
    sqrt_a = s.alpha.sqrt() if sqrt_a is None else sqrt_a
    sqrt_ab_prev = ab_prev.sqrt() if sqrt_ab_prev is None else sqrt_ab_prev
    coef_x0 = sqrt_ab_prev * s.beta / (1 - s.alpha_bar)
    coef_xt = sqrt_a * (1 - ab_prev) / (1 - s.alpha_bar)
    if swap:
        coef_x0, coef_xt = coef_xt, coef_x0
    var = (1 - ab_prev) / (1 - s.alpha_bar) * s.beta if var is None else var
    return broadcast(coef_x0, t, x0) * x0 + broadcast(coef_xt, t, x0) * x_t, broadcast(var, t, x0)


def _posterior_cases() -> list[Case]:
    linear = linear_schedule(1000)
    t = torch.tensor([1, 7, 150, 600, 999])
    return [
        Case("a random batch, linear T = 1000", (linear, _randn(5, 3, seed=0), _randn(5, 3, seed=1), t)),
        Case("code t = 0 (mu_tilde = x0, beta_tilde = 0)",
             (linear, _randn(2, 3, seed=2), _randn(2, 3, seed=3), torch.tensor([0, 0]))),
        Case("cosine T = 50",
             (cosine_schedule(50), _randn(3, 2, seed=4), _randn(3, 2, seed=5), torch.tensor([3, 25, 49]))),
    ]


Q_POSTERIOR = Exercise(
    name="my_q_posterior",
    reference=q_posterior,
    reference_name="course_ddpm.forward.q_posterior",
    cases=_posterior_cases,
    output_names=("mu_tilde", "beta_tilde"),
    mistakes=(
        Mistake("the x_t coefficient has sqrt(alpha_t) of one step, not sqrt(alpha_bar_t) (the product)",
                lambda s, x0, x_t, t: _posterior(s, x0, x_t, t, sqrt_a=s.alpha_bar.sqrt())),
        Mistake("t off by one: alpha_bar_{t-1} is schedule.alpha_bar_prev (alpha_bar is alpha_bar_t)",
                lambda s, x0, x_t, t: _posterior(s, x0, x_t, t, ab_prev=s.alpha_bar)),
        Mistake("a square root is missing: the x0 coefficient has sqrt(alpha_bar_{t-1})",
                lambda s, x0, x_t, t: _posterior(s, x0, x_t, t, sqrt_ab_prev=s.alpha_bar_prev)),
        Mistake("the variance is beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t, not beta_t",
                lambda s, x0, x_t, t: _posterior(s, x0, x_t, t, var=s.beta)),
        Mistake("the coefficients of x0 and x_t are swapped",
                lambda s, x0, x_t, t: _posterior(s, x0, x_t, t, swap=True)),
    ),
)


# --- 3. the weight that turns the KL into an MSE on eps -----------------------------------
def _weight_reference(schedule, t):
    return weighted_eps_mse_coefficient(schedule)[t]


def _weight(schedule, t, alpha=None, beta_power=2, sigma_sq=None, half=0.5, one_minus=None):
    s = schedule
    alpha = s.alpha if alpha is None else alpha
    sigma_sq = s.beta_tilde if sigma_sq is None else sigma_sq
    one_minus = 1 - s.alpha_bar if one_minus is None else one_minus
    return (half * s.beta**beta_power / (sigma_sq * alpha * one_minus))[t]


def _weight_cases() -> list[Case]:
    return [
        Case("linear T = 1000, t = 1, 10, 500, 999", (linear_schedule(1000), torch.tensor([1, 10, 500, 999]))),
        Case("cosine T = 100, t = 1, 50, 98", (cosine_schedule(100), torch.tensor([1, 50, 98]))),
    ]


EPS_MSE_WEIGHT = Exercise(
    name="my_eps_mse_weight",
    reference=_weight_reference,
    reference_name="course_ddpm.losses.weighted_eps_mse_coefficient",
    cases=_weight_cases,
    mistakes=(
        Mistake("alpha_t (one step) belongs in the denominator, not alpha_bar_t",
                lambda s, t: _weight(s, t, alpha=s.alpha_bar)),
        Mistake("beta_t must be squared: beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))",
                lambda s, t: _weight(s, t, beta_power=1)),
        Mistake("sigma_t^2 is beta_tilde_t here (the variance of the posterior), not beta_t",
                lambda s, t: _weight(s, t, sigma_sq=s.beta)),
        Mistake("the factor 1/2 is missing (it comes from the Gaussian KL)", lambda s, t: _weight(s, t, half=1.0)),
        Mistake("(1 - alpha_bar_t) belongs in the denominator, not (1 - alpha_t) = beta_t",
                lambda s, t: _weight(s, t, one_minus=s.beta)),
    ),
)


# --- 4. a Monte Carlo estimate of one denoising-matching term on the toy ---------------------
_MIXTURE = GaussianMixture(weights=(0.3, 0.7), means=(-1.0, 0.6), stds=(0.15, 0.3))


def _term_reference(schedule, model, x0, t, eps):
    x_t = q_sample(schedule, x0, t, eps)
    nats = vb_term_bpd(schedule, x0, x_t, t, model(x_t, t)) * math.log(2.0) * x0[0].numel()  # (B,) bits/dim -> nats
    return nats.mean()


def _term(schedule, model, x0, t, eps, model_input=None, variance_type="fixed_small", reduce="mean"):
    x_t = q_sample(schedule, x0, t, eps)
    mu_tilde, beta_tilde = q_posterior(schedule, x0, x_t, t)
    p = p_mean_variance(schedule, x_t, t, model(x_t if model_input is None else model_input, t), variance_type)
    kl = normal_kl(mu_tilde, beta_tilde.log(), p.mean, p.log_variance)  # (B, D)
    return {"mean": kl.sum(1).mean(), "all": kl.mean(), "none": kl.sum(1)}[reduce]


def _term_cases() -> list[Case]:
    schedule = linear_schedule(1000)
    model = _MIXTURE.eps_model(schedule)
    g = torch.Generator().manual_seed(0)
    x0 = _MIXTURE.sample((64, 2), generator=g)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    return [
        Case("64 draws of x_t at code t = 300, toy x0 of shape (64, 2)",
             (schedule, model, x0, torch.full((64,), 300), eps)),
        Case("code t = 1", (schedule, model, x0[:8], torch.ones(8, dtype=torch.long), eps[:8])),
    ]


def _l_simple_mistake(schedule, model, x0, t, eps):
    eps_pred = model(q_sample(schedule, x0, t, eps), t)
    return ((eps - eps_pred) ** 2).sum(1).mean()


DENOISING_TERM = Exercise(
    name="my_denoising_term",
    reference=_term_reference,
    reference_name="course_ddpm.bound.vb_term_bpd (in nats, summed over dimensions)",
    cases=_term_cases,
    mistakes=(
        Mistake("the model sees the noisy x_t = q_sample(schedule, x0, t, eps), not x0",
                lambda s, m, x0, t, eps: _term(s, m, x0, t, eps, model_input=x0)),
        Mistake("sum the KL over the dimensions of each sample, then average over the samples "
                "(you averaged over everything)", lambda s, m, x0, t, eps: _term(s, m, x0, t, eps, reduce="all")),
        Mistake("average over the Monte Carlo samples: return one number, not one KL per sample",
                lambda s, m, x0, t, eps: _term(s, m, x0, t, eps, reduce="none")),
        Mistake("this is L_simple, not the KL: the KL weights ||eps - eps_pred||^2 by "
                "beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))", _l_simple_mistake),
        Mistake("sigma_t^2 = beta_tilde_t ('fixed_small'), not beta_t ('fixed_large')",
                lambda s, m, x0, t, eps: _term(s, m, x0, t, eps, variance_type="fixed_large")),
    ),
)

EXERCISES = (Q_POSTERIOR, GAUSSIAN_KL, EPS_MSE_WEIGHT, DENOISING_TERM)  # in the order of notebook 01
check_gaussian_kl = GAUSSIAN_KL.check
check_q_posterior = Q_POSTERIOR.check
check_eps_mse_weight = EPS_MSE_WEIGHT.check
check_denoising_term = DENOISING_TERM.check

"""Luo 2022's two ways of writing the same ELBO, for continuous data, in nats.

Luo 2022 (arXiv:2208.11970, section "Variational Diffusion Models") writes the ELBO of a
diffusion model with consistency terms (his eqs. 44-45, :func:`elbo_consistency_form`)
and with denoising matching terms (his eq. 58, :func:`elbo_denoising_form`, which is
Ho et al.'s eq. 5). Both estimate the same expectation from one forward trajectory
(eq. 45 as printed does not; see :func:`elbo_consistency_form`).

Both are written for continuous data (the toy of :mod:`course_ddpm.toy`): the
reconstruction term is a Gaussian density where :mod:`course_ddpm.bound`, for 8-bit
images, has Ho et al.'s discretised decoder (eq. 13).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_ddpm.forward import q_mean_variance, q_posterior, q_step_mean_variance
from course_ddpm.gaussian import gaussian_log_likelihood, normal_kl
from course_ddpm.losses import EpsModel
from course_ddpm.reverse import VarianceType, p_mean_variance
from course_ddpm.schedules import Schedule, broadcast
from course_ddpm.validation import check_eps_pred, check_float


def _sum_over_dims(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(dim=1)  # (B,)


@dataclass(frozen=True)
class ConsistencyFormELBO:
    """Per-example Monte Carlo estimate of the ELBO in Luo 2022's first form (eqs. 44-45), in nats.

    elbo = reconstruction - prior_matching - consistency.sum(1).

    Attributes:
        elbo: ``(B,)``.
        reconstruction: ``(B,)`` log p_theta(x_0 | x_1).
        prior_matching: ``(B,)`` KL(q(x_T | x_{T-1}) || p(x_T)).
        consistency: ``(B, T - 1)``; column j is paper step t = j + 1,
            E[log q(x_t | x_{t-1}) - log p_theta(x_t | x_{t+1}) | x_{t-1}, x_{t+1}].
    """

    elbo: torch.Tensor
    reconstruction: torch.Tensor
    prior_matching: torch.Tensor
    consistency: torch.Tensor


@dataclass(frozen=True)
class DenoisingFormELBO:
    """Per-example Monte Carlo estimate of Luo 2022 eq. 58, in nats.

    elbo = reconstruction - prior_matching - denoising_matching.sum(1).

    Attributes:
        elbo: ``(B,)``.
        reconstruction: ``(B,)`` log p_theta(x_0 | x_1).
        prior_matching: ``(B,)`` KL(q(x_T | x_0) || p(x_T)), exact.
        denoising_matching: ``(B, T - 1)``; column j is paper step t = j + 2 (code t = j + 1),
            KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)).
    """

    elbo: torch.Tensor
    reconstruction: torch.Tensor
    prior_matching: torch.Tensor
    denoising_matching: torch.Tensor


def _check_trajectory(schedule: Schedule, trajectory: torch.Tensor) -> int:
    check_float("trajectory", trajectory)
    if trajectory.ndim < 3 or trajectory.shape[0] != schedule.T + 1:
        raise ValueError(
            f"trajectory must have shape (T + 1, B, ...) = ({schedule.T + 1}, B, ...) as q_trajectory "
            f"returns, got {tuple(trajectory.shape)}"
        )
    return trajectory.shape[1]


def _code_t(step: int, batch: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((batch,), step, dtype=torch.long, device=like.device)


def _eps_pred(model: EpsModel, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return check_eps_pred(model(x_t, t), x_t.shape)


def _reconstruction(
    schedule: Schedule, x0: torch.Tensor, x1: torch.Tensor, model: EpsModel, variance_type: VarianceType
) -> torch.Tensor:
    """log p_theta(x_0 | x_1) = log N(x_0; mu_theta(x_1), sigma_1^2 I), summed over dimensions.

    Continuous data, so a Gaussian density replaces Ho et al.'s discretised decoder (eq. 13);
    sigma_1^2 = exp(log_variance) at code t = 0 (beta_tilde of paper step 2, see
    :func:`reverse.log_sigma2`), since beta_tilde_1 = 0.
    """
    t0 = _code_t(0, x0.shape[0], x0)
    p = p_mean_variance(schedule, x1, t0, _eps_pred(model, x1, t0), variance_type)
    return _sum_over_dims(gaussian_log_likelihood(x0, p.mean, p.log_variance))


def _q_middle_mean_variance(
    schedule: Schedule, x_prev: torch.Tensor, x_next: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """q(x_t | x_{t-1}, x_{t+1}) of the forward chain: the middle point given both neighbours.

    Bayes' rule, q(x_t | x_{t-1}, x_{t+1}) ∝ q(x_t | x_{t-1}) q(x_{t+1} | x_t), a product of two
    Gaussians in x_t (the same algebra as Ho et al. eq. 7):

        1 / var = 1 / beta_t + alpha_{t+1} / beta_{t+1}
        mean    = var * (sqrt(alpha_t) x_{t-1} / beta_t + sqrt(alpha_{t+1}) x_{t+1} / beta_{t+1})

    Symbols are the paper's; ``t`` is the code index of the forward step that makes x_t
    (paper t = code t + 1), and code ``t + 1`` must exist.

    Returns:
        mean ``(B, ...)`` and variance ``(B, 1, ..., 1)``.
    """
    s = schedule
    step_in_mean, beta_in = q_step_mean_variance(s, x_prev, t)  # sqrt(alpha_t) x_{t-1}, beta_t
    alpha_out = broadcast(s.alpha, t + 1, x_next)
    beta_out = broadcast(s.beta, t + 1, x_next)
    var = 1.0 / (1.0 / beta_in + alpha_out / beta_out)
    mean = var * (step_in_mean / beta_in + alpha_out.sqrt() * x_next / beta_out)
    return mean, var


def elbo_consistency_form(
    schedule: Schedule, trajectory: torch.Tensor, model: EpsModel, variance_type: VarianceType = "fixed_small"
) -> ConsistencyFormELBO:
    """The ELBO as reconstruction, prior matching and consistency terms (Luo 2022, eqs. 44-45).

        ELBO = E_{q(x_1|x_0)}[log p_theta(x_0 | x_1)]                             reconstruction
             - E_{q(x_{T-1}|x_0)}[KL(q(x_T | x_{T-1}) || p(x_T))]                  prior matching
             - sum_{t=1}^{T-1} E_{q(x_{t-1}, x_t, x_{t+1}|x_0)}[log q(x_t | x_{t-1}) - log p_theta(x_t | x_{t+1})]
                                                                                     consistency

    Each consistency term is evaluated analytically given the sampled neighbours x_{t-1}
    and x_{t+1}: x_t is integrated out under q(x_t | x_{t-1}, x_{t+1}) (a Gaussian, see
    :func:`_q_middle_mean_variance`), which gives

        consistency_t = KL(r || p_theta(x_t | x_{t+1})) - KL(r || q(x_t | x_{t-1})),
        r = q(x_t | x_{t-1}, x_{t+1}).

    Caution: Luo's eq. 45 writes this term as KL(q(x_t | x_{t-1}) || p_theta(x_t | x_{t+1}))
    averaged over q(x_{t-1}, x_{t+1} | x_0). That integrates x_t under q(x_t | x_{t-1}) as if
    it were independent of x_{t+1}, which it is not: eq. 45 as printed is a false identity,
    not a (biased) estimator of the ELBO. :func:`consistency_terms_as_printed` evaluates it,
    :func:`printed_excess_closed_form` gives its excess for a near-optimal model (about
    1 nat per dimension per step for the linear T = 1000 schedule; schedule- and
    model-dependent: 0.54 nats per step at T = 25 on the toy, tests/test_elbo.py).
    The prior matching KL is exact, since nothing after x_T depends on it.

    For continuous data the reconstruction term is the Gaussian density
    log N(x_0; mu_theta(x_1), sigma_1^2) with sigma_1^2 = exp(log_variance at code t = 0)
    of :func:`reverse.p_mean_variance`, in place of Ho et al.'s discretised decoder.

    Args:
        trajectory: ``(T + 1, B, ...)`` from :func:`forward.q_trajectory`; entry k is paper x_k.
        model: ``model(x_t, t) -> eps_pred`` with code t (e.g. ``GaussianMixture.eps_model``).
        variance_type: sigma_t^2 of the reverse steps.

    Returns:
        :class:`ConsistencyFormELBO`, per example, in nats.
    """
    batch = _check_trajectory(schedule, trajectory)
    T = schedule.T
    x0 = trajectory[0]
    reconstruction = _reconstruction(schedule, x0, trajectory[1], model, variance_type)

    # Prior matching: the forward step into paper x_T (code T - 1), from the sampled x_{T-1}.
    q_mean, q_var = q_step_mean_variance(schedule, trajectory[T - 1], _code_t(T - 1, batch, x0))
    prior_matching = _sum_over_dims(normal_kl(q_mean, q_var.log(), 0.0, 0.0))

    consistency = []
    for t in range(1, T):  # paper t
        into = _code_t(t - 1, batch, x0)  # the forward step x_{t-1} -> x_t
        q_mean, q_var = q_step_mean_variance(schedule, trajectory[t - 1], into)  # q(x_t | x_{t-1})
        r_mean, r_var = _q_middle_mean_variance(schedule, trajectory[t - 1], trajectory[t + 1], into)
        code = _code_t(t, batch, x0)  # the reverse step from paper x_{t+1}
        p = p_mean_variance(schedule, trajectory[t + 1], code, _eps_pred(model, trajectory[t + 1], code), variance_type)
        term = normal_kl(r_mean, r_var.log(), p.mean, p.log_variance) - normal_kl(
            r_mean, r_var.log(), q_mean, q_var.log()
        )  # (B, ...)
        consistency.append(_sum_over_dims(term))
    consistency = torch.stack(consistency, dim=1) if consistency else x0.new_zeros(batch, 0)  # (B, T - 1)

    elbo = reconstruction - prior_matching - consistency.sum(dim=1)
    return ConsistencyFormELBO(elbo, reconstruction, prior_matching, consistency)


def consistency_terms_as_printed(
    schedule: Schedule, trajectory: torch.Tensor, model: EpsModel, variance_type: VarianceType = "fixed_small"
) -> torch.Tensor:
    """Luo 2022's eq. 45 read literally: KL(q(x_t | x_{t-1}) || p_theta(x_t | x_{t+1})) per step, in nats.

    Not a term of the ELBO (see :func:`elbo_consistency_form`); for comparison only.

    Returns:
        ``(B, T - 1)``; column j is paper step t = j + 1, summed over dimensions, like
        :attr:`ConsistencyFormELBO.consistency`.
    """
    batch = _check_trajectory(schedule, trajectory)
    terms = []
    for t in range(1, schedule.T):  # paper t
        q_mean, q_var = q_step_mean_variance(schedule, trajectory[t - 1], _code_t(t - 1, batch, trajectory))
        code = _code_t(t, batch, trajectory)  # the reverse step from paper x_{t+1}
        p = p_mean_variance(schedule, trajectory[t + 1], code, _eps_pred(model, trajectory[t + 1], code), variance_type)
        terms.append(_sum_over_dims(normal_kl(q_mean, q_var.log(), p.mean, p.log_variance)))
    return torch.stack(terms, dim=1) if terms else trajectory.new_zeros(batch, 0)  # (B, T - 1)


def printed_excess_closed_form(schedule: Schedule) -> torch.Tensor:
    """How much eq. 45's printed KL exceeds the true consistency term, per dimension, near the optimum.

    With p_theta(x_t | x_{t+1}) = N(m_p, beta_tilde_{t+1}) close to the true reverse step, the
    printed KL(N(m_q, beta_t) || N(m_p, beta_tilde_{t+1})) = 1/2 (a - 1 - ln a + (m_q - m_p)^2 / beta_tilde_{t+1}),
    a = beta_t / beta_tilde_{t+1}; m_q - m_p spans the forward noise into x_t (variance beta_t) and the
    reverse residual of x_t (variance beta_tilde_{t+1}), so E (m_q - m_p)^2 / beta_tilde_{t+1} ~ a + 1, while
    the true term is ~0. Excess ~ 1/2 (2a - ln a) nats per dimension.

    Returns:
        ``(T - 1,)`` float64; entry j is paper step t = j + 1 (beta_t is code t - 1, beta_tilde_{t+1} code t).
    """
    a = schedule.beta[:-1] / schedule.beta_tilde[1:]
    return 0.5 * (2 * a - a.log())


def elbo_denoising_form(
    schedule: Schedule, trajectory: torch.Tensor, model: EpsModel, variance_type: VarianceType = "fixed_small"
) -> DenoisingFormELBO:
    """The ELBO as reconstruction, prior matching and denoising matching terms (Luo 2022, eq. 58).

        ELBO = E_{q(x_1|x_0)}[log p_theta(x_0 | x_1)]                                 reconstruction
             - KL(q(x_T | x_0) || p(x_T))                                              prior matching
             - sum_{t=2}^{T} E_{q(x_t|x_0)}[KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))]
                                                                                         denoising matching

    This is Ho et al.'s eq. 5 with the signs flipped: -ELBO = L_0 + sum L_{t-1} + L_T.
    Each term depends on one random x_t only (the prior term on none), which is why its
    Monte Carlo estimate has a smaller variance than :func:`elbo_consistency_form`. The x_t
    are the entries of the given trajectory (each is a draw from q(x_t | x_0)), so both
    forms can be evaluated on the same draws. The reconstruction term is the continuous
    Gaussian density described in :func:`elbo_consistency_form`.

    Args:
        trajectory: ``(T + 1, B, ...)`` from :func:`forward.q_trajectory`; entry k is paper x_k.
        model: ``model(x_t, t) -> eps_pred`` with code t.
        variance_type: sigma_t^2 of the reverse steps.

    Returns:
        :class:`DenoisingFormELBO`, per example, in nats.
    """
    batch = _check_trajectory(schedule, trajectory)
    T = schedule.T
    x0 = trajectory[0]
    reconstruction = _reconstruction(schedule, x0, trajectory[1], model, variance_type)

    q_mean, q_var = q_mean_variance(schedule, x0, _code_t(T - 1, batch, x0))
    prior_matching = _sum_over_dims(normal_kl(q_mean, q_var.log(), 0.0, 0.0))

    denoising = []
    for t in range(2, T + 1):  # paper t; the reverse step from x_t is code t - 1
        code = _code_t(t - 1, batch, x0)
        x_t = trajectory[t]
        mu_tilde, beta_tilde = q_posterior(schedule, x0, x_t, code)
        p = p_mean_variance(schedule, x_t, code, _eps_pred(model, x_t, code), variance_type)
        denoising.append(_sum_over_dims(normal_kl(mu_tilde, beta_tilde.log(), p.mean, p.log_variance)))
    denoising = torch.stack(denoising, dim=1) if denoising else x0.new_zeros(batch, 0)  # (B, T - 1)

    elbo = reconstruction - prior_matching - denoising.sum(dim=1)
    return DenoisingFormELBO(elbo, reconstruction, prior_matching, denoising)

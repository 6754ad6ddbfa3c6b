"""Training loss and variational bound (ELBO) of a diffusion model.

Two objectives come from the same model:

* ``l_simple``: the mean squared error between the true and the predicted noise, the
  loss Ho et al. train with (eq. 14). It drops the weights of the true bound.
* the variational bound, in bits per dimension, that likelihoods are reported in
  (Ho et al. eq. 5):

      -log p(x_0) <= L_T + sum_{t=2}^{T} L_{t-1} + L_0
      L_T     = KL(q(x_T | x_0) || p(x_T))                        prior term, no parameters
      L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))  one per step
      L_0     = -log p_theta(x_0 | x_1)                           discrete decoder (eq. 13)

  In code indices (see :mod:`course_ddpm.schedules`) the term of code step t is
  L_{t-1} of paper step t + 1 for t >= 1, and the decoder L_0 for t = 0.

Luo 2022 (arXiv:2208.11970, section "Variational Diffusion Models") writes the same
ELBO in two ways: with consistency terms (his eqs. 44-45, :func:`elbo_consistency_form`)
and with denoising matching terms (his eq. 58, :func:`elbo_denoising_form`, which is
Ho et al.'s eq. 5). Both estimate the same expectation from one forward trajectory
(eq. 45 as printed does not; see :func:`elbo_consistency_form`).
Both are written for continuous data (the toy of :mod:`course_ddpm.toy`), in nats.

Units: a KL or log-likelihood of a whole example in nats, divided by D ln 2 with D the
number of dimensions of one example, is in bits per dimension ("bits/dim", "bpd").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from course_ddpm.forward import q_mean_variance, q_posterior, q_sample, q_step_mean_variance
from course_ddpm.reverse import VarianceType, log_sigma2, p_mean_variance
from course_ddpm.schedules import Schedule, broadcast
from course_ddpm.validation import check_float, check_same_shape

#: ``model(x_t, t) -> eps_pred`` (or ``model(x_t, t, y)``), like a trained network.
EpsModel = Callable[..., torch.Tensor]

#: Number of levels of 8-bit data, mapped to [-1, 1] with bin width 2 / 255.
NUM_LEVELS = 256


# --- Training loss ----------------------------------------------------------------


def l_simple(eps: torch.Tensor, eps_pred: torch.Tensor) -> torch.Tensor:
    """L_simple = E ||eps - eps_theta(x_t, t)||^2, as a mean over all entries (Ho et al. eq. 14).

    Args:
        eps: ``(B, ...)`` the noise that made x_t from x_0.
        eps_pred: ``(B, ...)`` the network's prediction of it.

    Returns:
        A scalar tensor: the mean of (eps - eps_pred)^2 over batch and dimensions.
    """
    check_float("eps", eps)
    check_float("eps_pred", eps_pred)
    check_same_shape(eps=eps, eps_pred=eps_pred)
    return ((eps - eps_pred) ** 2).mean()


def weighted_eps_mse_coefficient(schedule: Schedule, variance: VarianceType = "fixed_small") -> torch.Tensor:
    """Weight that turns each term of the bound into a weighted noise MSE (Ho et al. eq. 12).

        L_{t-1} = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)) ||eps - eps_theta||^2 + C_t

    summed over dimensions. C_t = 0 when sigma_t^2 = beta_tilde_t ("fixed_small");
    for "fixed_large" it is the KL between two zero-mean Gaussians of variances
    beta_tilde_t and beta_t. L_simple sets every weight to 1.

    At code t = 0 the term is the decoder, and sigma_1^2 is the finite stand-in of
    :func:`reverse.log_sigma2`; there the weight is that of a continuous Gaussian decoder,
    -log N(x_0; mu_theta(x_1), sigma_1^2) = weight * ||eps - eps_theta||^2 + const.

    Returns:
        ``(T,)`` float64, indexed by code t.
    """
    s = schedule
    sigma_sq = log_sigma2(s, variance).exp()
    return s.beta**2 / (2.0 * sigma_sq * s.alpha * (1.0 - s.alpha_bar))


def weighted_x0_mse_coefficient(schedule: Schedule) -> torch.Tensor:
    """Weight that turns each KL term into a weighted MSE on x_0, for sigma_t^2 = beta_tilde_t.

        L_{t-1} = 1/2 (SNR(t-1) - SNR(t)) ||x_0 - x0_theta(x_t, t)||^2

    with SNR(t) = alpha_bar_t / (1 - alpha_bar_t) (Kingma et al. 2021, "Variational
    Diffusion Models", eq. 13; Luo 2022, the x_0-prediction form of the denoising
    matching term). It follows from Ho et al. eq. 8 with mu_tilde written in x_0.

    Returns:
        ``(T,)`` float64 indexed by code t; entry 0 is inf (SNR(0) of clean data), where
        the decoder term replaces the KL.
    """
    s = schedule
    snr_prev = s.alpha_bar_prev / (1.0 - s.alpha_bar_prev)  # inf at code t = 0
    return 0.5 * (snr_prev - s.snr)


# --- Gaussians ----------------------------------------------------------------------


def normal_kl(
    mean1: torch.Tensor | float,
    logvar1: torch.Tensor | float,
    mean2: torch.Tensor | float,
    logvar2: torch.Tensor | float,
) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats.

        KL = 0.5 * (logvar2 - logvar1 + exp(logvar1 - logvar2)
                    + (mean1 - mean2)^2 exp(-logvar2) - 1)

    Arguments broadcast against each other; floats are allowed, but at least one must be
    a tensor (its dtype and device are used). Same as improved-diffusion's ``normal_kl``.
    """
    like = next((a for a in (mean1, logvar1, mean2, logvar2) if isinstance(a, torch.Tensor)), None)
    if like is None:
        raise TypeError("normal_kl needs at least one torch.Tensor argument")
    mean1, logvar1, mean2, logvar2 = (
        torch.as_tensor(a, dtype=like.dtype, device=like.device) for a in (mean1, logvar1, mean2, logvar2)
    )
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(log_variance)), elementwise, in nats (a density, for continuous data).

        log N = -0.5 * (log(2 pi) + log_variance + (x - mean)^2 / exp(log_variance))
    """
    check_float("x", x)
    return -0.5 * (math.log(2 * math.pi) + log_variance + (x - mean) ** 2 * torch.exp(-log_variance))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x) ~= 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the approximation of Ho et al.'s code.

    Monotone, with limits 0 and 1, so probabilities of adjacent bins still sum to exactly
    1; its largest absolute error against the exact Phi is about 2e-4.
    """
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """log P(x) of 8-bit data under a Gaussian discretised to 256 bins: the decoder L_0 (Ho et al. eq. 13).

        P(x) = integral_{delta_-(x)}^{delta_+(x)} N(z; mean, scale^2) dz
        delta_+(x) = +inf if x = 1  else x + 1/255
        delta_-(x) = -inf if x = -1 else x - 1/255

    The bins have width 2/255 and are centred on the 256 levels of [-1, 1]; the outer two
    extend to +-inf, so the probabilities of all 256 bins sum to 1.

    Args:
        x: ``(B, ...)`` data on the 256-level grid of [-1, 1] (uint8 / 127.5 - 1).
        means: ``(B, ...)`` decoder means mu_theta(x_1, 1).
        log_scales: log standard deviations, broadcastable to ``x`` (e.g. ``(B, 1, 1, 1)``).

    Returns:
        ``(B, ...)`` log-probabilities in nats (each <= 0).
    """
    check_float("x", x)
    check_same_shape(x=x, means=means)
    if x.numel() and (x.min().item() < -1.0 - 1e-6 or x.max().item() > 1.0 + 1e-6):
        raise ValueError(f"x must lie in [-1, 1], got values in [{x.min().item():.4g}, {x.max().item():.4g}]")
    levels = (x + 1.0) * (NUM_LEVELS - 1) / 2.0
    if x.numel() and (levels - levels.round()).abs().max().item() > 1e-3:
        raise ValueError("x must lie on the 256-level grid of [-1, 1] (uint8 / 127.5 - 1); got other values")
    half_bin = 1.0 / (NUM_LEVELS - 1)
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered_x + half_bin))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered_x - half_bin))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))  # bottom bin: P = Phi(delta_+)
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))  # top bin: P = 1 - Phi(delta_-)
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))  # inner bins
    return torch.where(
        x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta)
    )  # (B, ...)


# --- Terms of the variational bound, in bits per dimension ------------------------------


def _mean_over_dims(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1)  # (B,)


def _sum_over_dims(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(dim=1)  # (B,)


def prior_bpd(schedule: Schedule, x0: torch.Tensor) -> torch.Tensor:
    """Prior term L_T = KL(q(x_T | x_0) || N(0, I)) in bits/dim (Ho et al. eq. 5; Luo 2022 eq. 58).

    q(x_T | x_0) = N(sqrt(alpha_bar_T) x_0, (1 - alpha_bar_T) I) (Ho et al. eq. 4). It has
    no parameters; a good schedule makes it nearly 0.

    Args:
        x0: ``(B, ...)`` data.

    Returns:
        ``(B,)`` bits per dimension.
    """
    check_float("x0", x0)
    t_last = torch.full((x0.shape[0],), schedule.T - 1, dtype=torch.long, device=x0.device)
    mean, var = q_mean_variance(schedule, x0, t_last)
    kl = normal_kl(mean, var.log(), 0.0, 0.0)  # (B, ...)
    return _mean_over_dims(kl) / math.log(2.0)


def vb_term_bpd(
    schedule: Schedule,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    eps_pred: torch.Tensor,
    variance: VarianceType = "fixed_small",
) -> torch.Tensor:
    """One term of the bound for each example, in bits/dim (Ho et al. eq. 5).

    For code t >= 1 (paper step t + 1), the KL of the reverse step to the forward posterior

        L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))        (Ho et al. eq. 5)

    with q(x_{t-1} | x_t, x_0) of Ho et al. eq. 7 and p_theta of :func:`reverse.p_mean_variance`.
    For code t = 0, the decoder negative log-likelihood L_0 = -log p_theta(x_0 | x_1) under
    the discretised Gaussian of eq. 13, with mean mu_theta(x_1) and variance sigma_1^2 =
    exp(log_variance) (finite, see :func:`reverse.log_sigma2`). ``t`` may mix both cases.

    Args:
        x0: ``(B, ...)`` data; rows with t = 0 must be on the 256-level grid of [-1, 1].
        x_t: ``(B, ...)`` a draw from q(x_t | x_0) (paper x_{t+1}).
        t: ``(B,)`` code time indices; on the CPU, or on x0's device (then read once, to
            find the rows with t = 0).
        eps_pred: ``(B, ...)`` the model's noise prediction at (x_t, t).
        variance: sigma_t^2 of the reverse step, "fixed_small" or "fixed_large".

    Returns:
        ``(B,)`` bits per dimension.
    """
    check_float("x0", x0)
    check_float("x_t", x_t)
    check_float("eps_pred", eps_pred)
    check_same_shape(x0=x0, x_t=x_t, eps_pred=eps_pred)
    mu_tilde, _ = q_posterior(schedule, x0, x_t, t)
    # log beta_tilde, made finite at t = 0 (that row is replaced by the decoder term below).
    true_log_variance = broadcast(log_sigma2(schedule, "fixed_small"), t, x0)  # (B, 1, ..., 1)
    p = p_mean_variance(schedule, x_t, t, eps_pred, variance)
    kl = normal_kl(mu_tilde, true_log_variance, p.mean, p.log_variance)  # (B, ...)
    out = _mean_over_dims(kl) / math.log(2.0)  # (B,)

    first = t == 0
    if bool(first.any()):
        log_px0 = discretized_gaussian_log_likelihood(
            x0[first], means=p.mean[first], log_scales=0.5 * p.log_variance[first]
        )  # (B0, ...)
        out = out.clone()
        out[first] = -_mean_over_dims(log_px0) / math.log(2.0)
    return out


@dataclass(frozen=True)
class VariationalBound:
    """The variational bound of each example, in bits/dim, term by term (Ho et al. eq. 5).

    Attributes:
        total_bpd: ``(B,)`` prior_bpd + terms_bpd.sum(1), an upper bound on -log2 p(x_0) / D.
        prior_bpd: ``(B,)`` L_T.
        decoder_bpd: ``(B,)`` L_0, equal to ``terms_bpd[:, 0]``.
        terms_bpd: ``(B, T)``; column t is the term of code t (L_0 for t = 0, else L_t).
    """

    total_bpd: torch.Tensor
    prior_bpd: torch.Tensor
    decoder_bpd: torch.Tensor
    terms_bpd: torch.Tensor


def variational_bound(
    model: EpsModel,
    schedule: Schedule,
    x0: torch.Tensor,
    *,
    variance: VarianceType = "fixed_small",
    generator: torch.Generator | None = None,
    progress: bool = False,
    y: torch.Tensor | None = None,
) -> VariationalBound:
    """Evaluate every term of the bound, L_T + sum_t L_{t-1} + L_0, for a batch of 8-bit data.

    Each of the T terms is an expectation over x_t ~ q(x_t | x_0); it is estimated with one
    draw of x_t per example and step (T network calls, each on the whole batch), as in
    improved-diffusion's ``calc_bpd_loop``. The KLs themselves are exact.

    Args:
        model: ``model(x_t, t) -> eps_pred`` (``model(x_t, t, y)`` when ``y`` is given);
            put a network in eval mode first.
        x0: ``(B, ...)`` data on the 256-level grid of [-1, 1].
        variance: sigma_t^2 of the reverse steps.
        generator: for the noise draws.
        progress: show a tqdm bar over the T steps.
        y: ``(B,)`` class labels for a conditional model.

    Returns:
        :class:`VariationalBound` with tensors on ``x0``'s device.
    """
    check_float("x0", x0)
    batch = x0.shape[0]
    terms = torch.zeros(batch, schedule.T, dtype=x0.dtype, device=x0.device)  # (B, T)
    with torch.no_grad():
        for step in tqdm(range(schedule.T - 1, -1, -1), desc="variational bound", disable=not progress):
            # t on the CPU indexes the schedule (and picks the decoder rows) without reading the device
            t = torch.full((batch,), step, dtype=torch.long)  # (B,)
            t_model = torch.full((batch,), step, dtype=torch.long, device=x0.device)  # (B,) the same, for the model
            eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
            x_t = q_sample(schedule, x0, t, eps)
            eps_pred = model(x_t, t_model) if y is None else model(x_t, t_model, y)
            if eps_pred.shape != x0.shape:
                raise ValueError(f"model returned shape {tuple(eps_pred.shape)}, expected {tuple(x0.shape)}")
            terms[:, step] = vb_term_bpd(schedule, x0, x_t, t, eps_pred, variance)
        prior = prior_bpd(schedule, x0)
    return VariationalBound(
        total_bpd=prior + terms.sum(dim=1), prior_bpd=prior, decoder_bpd=terms[:, 0], terms_bpd=terms
    )


# --- Luo 2022: two ways of writing the same ELBO (continuous data, nats) ----------------


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
    eps_pred = model(x_t, t)
    if eps_pred.shape != x_t.shape:
        raise ValueError(f"model returned shape {tuple(eps_pred.shape)}, expected {tuple(x_t.shape)}")
    return eps_pred


def _reconstruction(
    schedule: Schedule, x0: torch.Tensor, x1: torch.Tensor, model: EpsModel, variance: VarianceType
) -> torch.Tensor:
    """log p_theta(x_0 | x_1) = log N(x_0; mu_theta(x_1), sigma_1^2 I), summed over dimensions.

    Continuous data, so a Gaussian density replaces Ho et al.'s discretised decoder (eq. 13);
    sigma_1^2 = exp(log_variance) at code t = 0 (beta_tilde of paper step 2, see
    :func:`reverse.log_sigma2`), since beta_tilde_1 = 0.
    """
    t0 = _code_t(0, x0.shape[0], x0)
    p = p_mean_variance(schedule, x1, t0, _eps_pred(model, x1, t0), variance)
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
    schedule: Schedule, trajectory: torch.Tensor, model: EpsModel, variance: VarianceType = "fixed_small"
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
    it were independent of x_{t+1}, which it is not, and it is no longer the ELBO: on the
    toy mixture it is lower by about 1 nat per step (tests/test_losses.py checks both).
    The prior matching KL is exact, since nothing after x_T depends on it.

    For continuous data the reconstruction term is the Gaussian density
    log N(x_0; mu_theta(x_1), sigma_1^2) with sigma_1^2 = exp(log_variance at code t = 0)
    of :func:`reverse.p_mean_variance`, in place of Ho et al.'s discretised decoder.

    Args:
        trajectory: ``(T + 1, B, ...)`` from :func:`forward.q_trajectory`; entry k is paper x_k.
        model: ``model(x_t, t) -> eps_pred`` with code t (e.g. ``GaussianMixture.eps_model``).
        variance: sigma_t^2 of the reverse steps.

    Returns:
        :class:`ConsistencyFormELBO`, per example, in nats.
    """
    batch = _check_trajectory(schedule, trajectory)
    T = schedule.T
    x0 = trajectory[0]
    reconstruction = _reconstruction(schedule, x0, trajectory[1], model, variance)

    # Prior matching: the forward step into paper x_T (code T - 1), from the sampled x_{T-1}.
    q_mean, q_var = q_step_mean_variance(schedule, trajectory[T - 1], _code_t(T - 1, batch, x0))
    prior_matching = _sum_over_dims(normal_kl(q_mean, q_var.log(), 0.0, 0.0))

    consistency = []
    for t in range(1, T):  # paper t
        into = _code_t(t - 1, batch, x0)  # the forward step x_{t-1} -> x_t
        q_mean, q_var = q_step_mean_variance(schedule, trajectory[t - 1], into)  # q(x_t | x_{t-1})
        r_mean, r_var = _q_middle_mean_variance(schedule, trajectory[t - 1], trajectory[t + 1], into)
        code = _code_t(t, batch, x0)  # the reverse step from paper x_{t+1}
        p = p_mean_variance(schedule, trajectory[t + 1], code, _eps_pred(model, trajectory[t + 1], code), variance)
        term = normal_kl(r_mean, r_var.log(), p.mean, p.log_variance) - normal_kl(
            r_mean, r_var.log(), q_mean, q_var.log()
        )  # (B, ...)
        consistency.append(_sum_over_dims(term))
    consistency = torch.stack(consistency, dim=1) if consistency else x0.new_zeros(batch, 0)  # (B, T - 1)

    elbo = reconstruction - prior_matching - consistency.sum(dim=1)
    return ConsistencyFormELBO(elbo, reconstruction, prior_matching, consistency)


def elbo_denoising_form(
    schedule: Schedule, trajectory: torch.Tensor, model: EpsModel, variance: VarianceType = "fixed_small"
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
        variance: sigma_t^2 of the reverse steps.

    Returns:
        :class:`DenoisingFormELBO`, per example, in nats.
    """
    batch = _check_trajectory(schedule, trajectory)
    T = schedule.T
    x0 = trajectory[0]
    reconstruction = _reconstruction(schedule, x0, trajectory[1], model, variance)

    q_mean, q_var = q_mean_variance(schedule, x0, _code_t(T - 1, batch, x0))
    prior_matching = _sum_over_dims(normal_kl(q_mean, q_var.log(), 0.0, 0.0))

    denoising = []
    for t in range(2, T + 1):  # paper t; the reverse step from x_t is code t - 1
        code = _code_t(t - 1, batch, x0)
        x_t = trajectory[t]
        mu_tilde, beta_tilde = q_posterior(schedule, x0, x_t, code)
        p = p_mean_variance(schedule, x_t, code, _eps_pred(model, x_t, code), variance)
        denoising.append(_sum_over_dims(normal_kl(mu_tilde, beta_tilde.log(), p.mean, p.log_variance)))
    denoising = torch.stack(denoising, dim=1) if denoising else x0.new_zeros(batch, 0)  # (B, T - 1)

    elbo = reconstruction - prior_matching - denoising.sum(dim=1)
    return DenoisingFormELBO(elbo, reconstruction, prior_matching, denoising)

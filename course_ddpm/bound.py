"""The variational bound of a diffusion model on 8-bit data, in bits per dimension.

Likelihoods are reported as this bound (Ho et al. 2020, arXiv:2006.11239, eq. 5):

    -log p(x_0) <= L_T + sum_{t=2}^{T} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || p(x_T))                        prior term, no parameters
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))  one per step
    L_0     = -log p_theta(x_0 | x_1)                           discrete decoder (eq. 13)

In code indices (see :mod:`course_ddpm.schedules`) the term of code step t is L_{t-1} of
paper step t + 1 for t >= 1, and the decoder L_0 for t = 0.

Units: a KL or log-likelihood of a whole example in nats, divided by D ln 2 with D the
number of dimensions of one example, is in bits per dimension ("bits/dim", "bpd").
The Gaussian pieces are those of :mod:`course_ddpm.gaussian`; the same bound for
continuous data, in nats and in Luo's two forms, is :mod:`course_ddpm.elbo`.

What the fixed variances cost: :func:`decoder_bpd` (L_0 at any decoder std),
:func:`decoder_floor_closed_form` (L_0 of a perfect mean) and :func:`variance_excess_bpd`
(the L_{t-1} of a perfect mean with sigma_t^2 = beta_t instead of beta_tilde_t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from course_ddpm.forward import q_mean_variance, q_posterior, q_sample
from course_ddpm.gaussian import discretized_gaussian_log_likelihood, normal_kl
from course_ddpm.losses import EpsModel
from course_ddpm.reverse import VarianceType, log_sigma2, p_mean_variance
from course_ddpm.schedules import Schedule, broadcast
from course_ddpm.validation import check_eps_pred, check_float, check_same_shape


def _mean_over_dims(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1)  # (B,)


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
    variance_type: VarianceType = "fixed_small",
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
        variance_type: sigma_t^2 of the reverse step, "fixed_small" or "fixed_large".

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
    p = p_mean_variance(schedule, x_t, t, eps_pred, variance_type)
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
    variance_type: VarianceType = "fixed_small",
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
        variance_type: sigma_t^2 of the reverse steps.
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
            eps_pred = check_eps_pred(model(x_t, t_model) if y is None else model(x_t, t_model, y), x_t.shape)
            terms[:, step] = vb_term_bpd(schedule, x0, x_t, t, eps_pred, variance_type)
        prior = prior_bpd(schedule, x0)
    return VariationalBound(
        total_bpd=prior + terms.sum(dim=1), prior_bpd=prior, decoder_bpd=terms[:, 0], terms_bpd=terms
    )


# ------------------------------------------------------------------ the decoder's variance
def decoder_bpd(x0: torch.Tensor, mean: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """The decoder term L_0 = -log p(x_0 | x_1) in bits/dim for a decoder std ``sigma`` of your choice (Ho et al. eq. 13).

    :func:`vb_term_bpd` uses the schedule's fixed sigma_1; this takes any sigma (a float, or a
    tensor broadcastable to ``x0``), to see what another or a learned variance would pay.

    Args:
        x0: ``(B, ...)`` data on the 256-level grid of [-1, 1].
        mean: ``(B, ...)`` the decoder mean mu_theta(x_1, 1).
        sigma: the decoder's standard deviation, > 0.

    Returns:
        ``(B,)`` bits per dimension.
    """
    check_float("x0", x0)
    check_same_shape(x0=x0, mean=mean)
    log_scale = torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device).log()
    if not bool(torch.isfinite(log_scale).all()):
        raise ValueError("sigma must be positive")
    log_px0 = discretized_gaussian_log_likelihood(x0, mean, log_scale.expand_as(x0))  # (B, ...)
    return -_mean_over_dims(log_px0) / math.log(2.0)


def decoder_floor_closed_form(x0: torch.Tensor, sigma: float) -> torch.Tensor:
    """The decoder term of a perfect mean (mu_theta = x_0) in bits/dim, in closed form (Ho et al. eq. 13).

    With the mean on the pixel's level, the bin [x_0 - 1/255, x_0 + 1/255] holds

        P = 2 Phi(h / sigma) - 1    inside (-1 < x_0 < 1),   h = 1/255 the half bin width,
        P = Phi(h / sigma)          at x_0 = -1 or +1, whose bin extends to -inf or +inf,

    of N(x_0, sigma^2), and the pixel costs -log2 P bits. A black MNIST background pixel
    (x_0 = -1) thus costs at most 1 bit, however wide sigma is. This uses the exact Phi;
    :func:`course_ddpm.evaluation.decoder_floor_bpd` gets the same number through Ho et al.'s
    tanh approximation of Phi and the model's own code path.

    Args:
        x0: ``(B, ...)`` data on the 256-level grid of [-1, 1].
        sigma: the decoder std, > 0.

    Returns:
        ``(B,)`` bits per dimension.
    """
    check_float("x0", x0)
    outer, inner = perfect_mean_pixel_bits(sigma)
    edge = x0.abs() > 0.999  # (B, ...) pixels at -1 or +1
    bits = torch.where(edge, outer, inner).to(x0.dtype)  # (B, ...)
    return _mean_over_dims(bits)


def perfect_mean_pixel_bits(sigma: float) -> tuple[float, float]:
    """Bits one pixel costs a perfect decoder mean of std ``sigma``: ``(outer, inner)`` (Ho et al. eq. 13).

    outer = -log2 Phi(h / sigma) for x_0 = -1 or +1 (the bin reaches -inf or +inf), inner =
    -log2(2 Phi(h / sigma) - 1) for the other levels; h = 1/255 is the half bin width.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    phi = 0.5 * (1.0 + math.erf(1.0 / 255.0 / sigma / math.sqrt(2.0)))  # Phi(h / sigma)
    return -math.log2(phi), -math.log2(2.0 * phi - 1.0)


def variance_excess_bpd(schedule: Schedule, variance_type: VarianceType) -> torch.Tensor:
    """What each L_{t-1} costs a perfect mean because sigma_t^2 is not beta_tilde_t, in bits/dim: ``(T,)``.

    With mu_theta = mu_tilde the term is a KL between two Gaussians of equal mean,

        KL(N(mu, beta_tilde_t) || N(mu, sigma_t^2)) = 1/2 (r - 1 - ln r),   r = beta_tilde_t / sigma_t^2,

    per dimension (Ho et al. eq. 5 and section 3.2, where both sigma_t^2 = beta_t and
    sigma_t^2 = beta_tilde_t are tried). It is 0 for "fixed_small" (t >= 1) and > 0 for
    "fixed_large". Entry 0 (the decoder, whose sigma_1 both choices share) is 0.
    """
    beta_tilde = schedule.beta_tilde.to(torch.float64)
    log_s2 = log_sigma2(schedule, variance_type).to(torch.float64)
    kl = normal_kl(0.0, beta_tilde[1:].log(), 0.0, log_s2[1:])  # (T - 1,) nats per dimension
    return torch.cat([torch.zeros(1, dtype=torch.float64), kl / math.log(2.0)])

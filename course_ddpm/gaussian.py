"""Gaussian log-densities and KLs: the small pure functions the bound is built from.

* :func:`normal_kl` -- KL between two diagonal Gaussians, in closed form;
* :func:`gaussian_log_likelihood` -- log N(x; mean, var), for continuous data;
* :func:`approx_standard_normal_cdf` -- the tanh approximation of Phi of Ho et al.'s code;
* :func:`discretized_gaussian_log_likelihood` -- the decoder L_0 for 8-bit data
  (Ho et al. 2020, arXiv:2006.11239, eq. 13).

They are improved-diffusion's ``normal_kl`` and ``discretized_gaussian_log_likelihood``
(openai/improved-diffusion, ``losses.py``), elementwise, in nats; :mod:`course_ddpm.bound`
sums them into the variational bound and :mod:`course_ddpm.elbo` into Luo's two ELBO forms.
"""

from __future__ import annotations

import math

import torch

from course_ddpm.validation import check_float, check_same_shape

#: Number of levels of 8-bit data, mapped to [-1, 1] with bin width 2 / 255.
NUM_LEVELS = 256


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

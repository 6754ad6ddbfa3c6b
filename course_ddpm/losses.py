"""The training loss L_simple and the weights that turn the bound's terms into MSEs.

Two objectives come from the same model:

* ``l_simple``: the mean squared error between the true and the predicted noise, the
  loss Ho et al. 2020 (arXiv:2006.11239) train with (eq. 14). It drops the weights of
  the true bound.
* the variational bound (Ho et al. eq. 5), a sum of KLs: :mod:`course_ddpm.bound` in
  bits/dim, :mod:`course_ddpm.elbo` in Luo's two forms. Each KL term is a weighted MSE
  on eps (:func:`weighted_eps_mse_coefficient`, Ho et al. eq. 12) or on x_0
  (:func:`weighted_x0_mse_coefficient`); L_simple sets every weight to 1.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from course_ddpm.reverse import VarianceType, log_sigma2
from course_ddpm.schedules import Schedule
from course_ddpm.validation import check_float, check_same_shape

#: ``model(x_t, t) -> eps_pred`` (or ``model(x_t, t, y)``), like a trained network.
EpsModel = Callable[..., torch.Tensor]


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


def weighted_eps_mse_coefficient(schedule: Schedule, variance_type: VarianceType = "fixed_small") -> torch.Tensor:
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
    sigma_sq = log_sigma2(s, variance_type).exp()
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
    snr_prev = torch.cat([torch.full((1,), math.inf, dtype=s.snr.dtype), s.snr[:-1]])  # SNR(t-1); inf at code t = 0
    return 0.5 * (snr_prev - s.snr)

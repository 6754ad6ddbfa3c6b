"""Deliberate sampler mistakes, for the playground's gallery of "the loss converged but the samples are noise".

Each function turns the right thing into one classic wrong one, so that the package's own,
tested sampler (:func:`course_ddpm.sampling.sample`) runs the mistake and nothing is
re-implemented. The other failure modes of the gallery need no code: data not scaled like
the noise (multiply it), a schedule that leaves signal at x_T (``linear_schedule(50)``), no
EMA (sample ``state.model`` instead of ``state.ema_model``).

* :func:`variance_for_std` -- x_{t-1} = mu + sigma_t^2 z where Algorithm 2 has sigma_t z;
* :func:`alpha_for_alpha_bar` -- alpha_t where alpha_bar_t belongs in Ho et al. eq. 11.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from course_ddpm.schedules import Schedule, broadcast


def variance_for_std(schedule: Schedule) -> Schedule:
    """The schedule a sampler sees when it multiplies z by the variance sigma_t^2 instead of the std.

    Algorithm 2 (Ho et al. 2020): x_{t-1} = mu_theta + sigma_t z, with sigma_t^2 = beta_tilde_t
    (section 3.2). The mistake adds sigma_t^2 z, i.e. noise of std beta_tilde_t: a sampler
    with sigma_t'^2 = beta_tilde_t^2. So this is ``schedule`` with beta_tilde squared, and
    ``sample(..., variance_type="fixed_small")`` on it makes exactly that mistake.
    """
    return dataclasses.replace(schedule, beta_tilde=schedule.beta_tilde**2, name=f"{schedule.name}, sigma^2 for sigma")


def alpha_for_alpha_bar(model: Callable[..., torch.Tensor], schedule: Schedule) -> Callable[..., torch.Tensor]:
    """A model whose samples are those of eq. 11 written with alpha_t where alpha_bar_t belongs.

    Right (Ho et al. eq. 11):  mu = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)
    Wrong:                     mu = (x_t - beta_t / sqrt(1 - alpha_t) eps) / sqrt(alpha_t)

    The wrong mean is the right one with eps scaled by sqrt((1 - alpha_bar_t) / (1 - alpha_t)),
    so this returns ``model`` with its eps_pred scaled so (at code t = 0 the factor is 1, at
    large t it is 1 / sqrt(beta_t)): the package's sampler then makes the mistake, unchanged.
    """
    factor = ((1.0 - schedule.alpha_bar) / (1.0 - schedule.alpha)).sqrt()  # (T,) float64

    def wrong_model(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return broadcast(factor, t, x_t) * model(x_t, t, y)

    return wrong_model

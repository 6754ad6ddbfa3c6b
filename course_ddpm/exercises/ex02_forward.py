"""Exercises of notebook 02 (forward noising): alpha_bar, q_sample, the SNR, the cosine schedule, the signal left.

References are the package's (:mod:`course_ddpm.forward`, :mod:`course_ddpm.schedules`); each
:class:`Mistake` is a wrong version with the hint that names it. Code t = paper t - 1.
"""

from __future__ import annotations

import functools

import math

import torch

from course_ddpm.exercises._check import Case, Exercise, Mistake, randn
from course_ddpm.forward import q_sample
from course_ddpm.schedules import Schedule, broadcast, cosine_schedule, first_step_below, linear_schedule


_randn = functools.partial(randn, dtype=torch.float32)


# --- 1. q_sample -----------------------------------------------------------------------------
def _q_sample(schedule, x0, t, eps, signal=None, noise=None):
    """x_t = signal_t x0 + noise_t eps with the two (T,) coefficient tables given (for the mistakes)."""
    signal = schedule.alpha_bar.sqrt() if signal is None else signal
    noise = (1 - schedule.alpha_bar).sqrt() if noise is None else noise
    return broadcast(signal, t, x0) * x0 + broadcast(noise, t, x0) * eps


def _q_sample_cases() -> list[Case]:
    linear = linear_schedule(1000)
    return [
        Case("a random batch of (4, 1, 5, 5) images", (linear, _randn(4, 1, 5, 5, seed=0).clamp(-1, 1),
                                                       torch.tensor([0, 10, 500, 999]), _randn(4, 1, 5, 5, seed=1))),
        Case("code t = 0 (almost no noise)",
             (linear, _randn(2, 3, seed=2), torch.tensor([0, 0]), _randn(2, 3, seed=3))),
        Case("code t = T - 1 (almost pure noise)", (linear, _randn(2, 3, seed=4), torch.tensor([999, 999]),
                                                    _randn(2, 3, seed=5))),
        Case("cosine T = 50",
             (cosine_schedule(50), _randn(3, 4, seed=6), torch.tensor([1, 20, 49]), _randn(3, 4, seed=7))),
    ]


Q_SAMPLE = Exercise(
    name="my_q_sample",
    reference=q_sample,
    reference_name="course_ddpm.forward.q_sample",
    cases=_q_sample_cases,
    mistakes=(
        Mistake("alpha_t (one step) where alpha_bar_t (the product over all steps so far) belongs",
                lambda s, x0, t, eps: _q_sample(s, x0, t, eps, s.alpha.sqrt(), (1 - s.alpha).sqrt())),
        Mistake("square roots are missing: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps",
                lambda s, x0, t, eps: _q_sample(s, x0, t, eps, s.alpha_bar, 1 - s.alpha_bar)),
        Mistake("the noise is scaled by its standard deviation sqrt(1 - alpha_bar_t), not by the variance "
                "1 - alpha_bar_t", lambda s, x0, t, eps: _q_sample(s, x0, t, eps, noise=1 - s.alpha_bar)),
        Mistake("t off by one: schedule.alpha_bar[t] is alpha_bar_t of code t (alpha_bar_prev is one step earlier)",
                lambda s, x0, t, eps: _q_sample(s, x0, t, eps, s.alpha_bar_prev.sqrt(), (1 - s.alpha_bar_prev).sqrt())),
        Mistake("the coefficients are swapped: sqrt(alpha_bar_t) multiplies x0, sqrt(1 - alpha_bar_t) multiplies eps",
                lambda s, x0, t, eps: _q_sample(s, x0, t, eps, (1 - s.alpha_bar).sqrt(), s.alpha_bar.sqrt())),
    ),
)


# --- 2. alpha_bar from beta ----------------------------------------------------------------
def _alpha_bar_reference(beta):
    return Schedule.from_beta(beta, warn=False).alpha_bar


def _alpha_bar_cases() -> list[Case]:
    beta = 0.01 + 0.4 * torch.rand(20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [
        Case("the linear betas of T = 1000", (linear_schedule(1000).beta.clone(),)),
        Case("20 random betas in (0.01, 0.41)", (beta,)),
        Case("T = 1", (torch.tensor([0.3], dtype=torch.float64),)),
    ]


ALPHA_BAR = Exercise(
    name="my_alpha_bar",
    reference=_alpha_bar_reference,
    reference_name="course_ddpm.schedules.Schedule.from_beta(beta).alpha_bar",
    cases=_alpha_bar_cases,
    mistakes=(
        Mistake("the product is over alpha_s = 1 - beta_s, not over beta_s", lambda beta: torch.cumprod(beta, 0)),
        Mistake("alpha_bar is a product (torch.cumprod) of the alphas, not 1 minus a sum of the betas",
                lambda beta: 1 - torch.cumsum(beta, 0)),
        Mistake("alpha_bar_t is the product of all alphas up to t (torch.cumprod), not alpha_t alone",
                lambda beta: 1 - beta),
        Mistake("shifted by one step: alpha_bar[t] includes alpha_t itself (yours starts with 1)",
                lambda beta: torch.cat([torch.ones(1, dtype=beta.dtype), torch.cumprod(1 - beta, 0)[:-1]])),
        Mistake("that is sqrt(alpha_bar), the signal's scale; alpha_bar itself has no square root",
                lambda beta: torch.cumprod(1 - beta, 0).sqrt()),
    ),
)


# --- 3. the signal-to-noise ratio ------------------------------------------------------------
def _snr_reference(schedule, t):
    return schedule.snr[t]


def _snr_cases() -> list[Case]:
    return [
        Case("linear T = 1000, t = 0, 1, 250, 999", (linear_schedule(1000), torch.tensor([0, 1, 250, 999]))),
        Case("cosine T = 100", (cosine_schedule(100), torch.tensor([3, 50, 97]))),
    ]


SNR = Exercise(
    name="my_snr",
    reference=_snr_reference,
    reference_name="course_ddpm.schedules.Schedule.snr",
    cases=_snr_cases,
    mistakes=(
        Mistake("the SNR is a ratio of variances, alpha_bar_t / (1 - alpha_bar_t), not of standard deviations",
                lambda s, t: (s.alpha_bar / (1 - s.alpha_bar)).sqrt()[t]),
        Mistake("upside down: that is the noise-to-signal ratio (1 - alpha_bar_t) / alpha_bar_t",
                lambda s, t: ((1 - s.alpha_bar) / s.alpha_bar)[t]),
        Mistake("alpha_t (one step) where alpha_bar_t (the product) belongs",
                lambda s, t: (s.alpha / (1 - s.alpha))[t]),
        Mistake("t off by one: use schedule.alpha_bar[t], not alpha_bar_prev",
                lambda s, t: (s.alpha_bar_prev / (1 - s.alpha_bar_prev))[t]),
    ),
)


# --- 4. the cosine schedule ------------------------------------------------------------------
def _cosine_reference(T, s=0.008, max_beta=0.999):
    return cosine_schedule(T, s=s, max_beta=max_beta, warn=False).beta


def _cosine(T, s=0.008, max_beta=0.999, power=2, shift=0, offset=True, ratio=True, clip=True):
    def f(t):
        u = (t / T + s) / (1 + s) if offset else t / T
        return torch.cos(u * math.pi / 2) ** power

    steps = torch.arange(T, dtype=torch.float64) + shift
    beta = 1 - f(steps + 1) / (f(steps) if ratio else f(torch.zeros(1, dtype=torch.float64)))
    return beta.clamp(max=max_beta) if clip else beta


def _cosine_cases() -> list[Case]:
    return [Case("T = 1000", (1000,)), Case("T = 10", (10,)), Case("T = 50, s = 0.02, max_beta = 0.5", (50, 0.02, 0.5))]


COSINE_BETA = Exercise(
    name="my_cosine_beta",
    reference=_cosine_reference,
    reference_name="course_ddpm.schedules.cosine_schedule(T).beta",
    cases=_cosine_cases,
    mistakes=(
        Mistake("the betas are clipped at max_beta (the last would be 1: alpha_bar_T = 0)",
                lambda T, s=0.008, max_beta=0.999: _cosine(T, s, max_beta, clip=False)),
        Mistake("the offset s is missing: f(t) = cos^2((t/T + s) / (1 + s) * pi/2)",
                lambda T, s=0.008, max_beta=0.999: _cosine(T, s, max_beta, offset=False)),
        Mistake("f(t) is cos squared, not cos", lambda T, s=0.008, max_beta=0.999: _cosine(T, s, max_beta, power=1)),
        Mistake("t off by one: the beta of code t is 1 - f(t + 1) / f(t), for t = 0..T-1",
                lambda T, s=0.008, max_beta=0.999: _cosine(T, s, max_beta, shift=-1)),
        Mistake("beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} = 1 - f(t + 1) / f(t): a ratio of neighbours, "
                "not 1 - alpha_bar_t", lambda T, s=0.008, max_beta=0.999: _cosine(T, s, max_beta, ratio=False)),
    ),
)


# --- 5. when does the signal drop below a fraction? --------------------------------------------
def _first_below(schedule, fraction, table=None, sqrt=True, shift=0, never=None):
    signal = schedule.alpha_bar if table is None else table
    signal = signal.sqrt() if sqrt else signal
    below = [t for t in range(schedule.T) if signal[t] < fraction]
    return below[0] + shift if below else never


def _signal_cases() -> list[Case]:
    return [
        Case("linear T = 1000, 99.5 %", (linear_schedule(1000), 0.995)),
        Case("linear T = 1000, 1 %", (linear_schedule(1000), 0.01)),
        Case("the lecture's linear T = 300, 1 % (never)", (linear_schedule(300, warn=False), 0.01)),
        Case("linear T = 300 rescaled, 1 %", (linear_schedule(300, rescale=True), 0.01)),
        Case("cosine T = 1000, 10 %", (cosine_schedule(1000), 0.1)),
    ]


SIGNAL_BELOW = Exercise(
    name="my_first_step_below",
    reference=first_step_below,
    reference_name="course_ddpm.schedules.first_step_below",
    cases=_signal_cases,
    mistakes=(
        Mistake("the signal left is sqrt(alpha_bar_t), the scale of x0 in x_t; alpha_bar_t is its square",
                lambda s, f: _first_below(s, f, sqrt=False)),
        Mistake("alpha_t (one step) where alpha_bar_t (the product) belongs", lambda s, f: _first_below(s, f, s.alpha)),
        Mistake("return the code index t (the tables' entry), not the paper's step t + 1",
                lambda s, f: _first_below(s, f, shift=1)),
        Mistake("return the first step below the fraction, not the last one above it",
                lambda s, f: _first_below(s, f, shift=-1)),
        Mistake("when no step is below the fraction, return None (not T)",
                lambda s, f: _first_below(s, f, never=s.T)),
    ),
)

EXERCISES = (ALPHA_BAR, Q_SAMPLE, SNR, COSINE_BETA, SIGNAL_BELOW)  # in the order of notebook 02
check_q_sample = Q_SAMPLE.check
check_alpha_bar = ALPHA_BAR.check
check_snr = SNR.check
check_cosine_beta = COSINE_BETA.check
check_first_step_below = SIGNAL_BELOW.check

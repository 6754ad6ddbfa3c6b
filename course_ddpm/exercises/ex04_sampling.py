"""Exercises of notebook 04 (sampling): x0 from eps, the DDPM step, the DDIM step with eta, slerp.

References are the package's (:mod:`course_ddpm.forward`, :mod:`course_ddpm.ddpm`,
:mod:`course_ddpm.ddim`), called without clipping x0; each :class:`Mistake` is a wrong
version with the hint that names it. Code t = paper t - 1; DDIM's t_prev = -1 is the clean end.
"""

from __future__ import annotations

import torch

from course_ddpm.ddim import ddim_step, slerp
from course_ddpm.ddpm import ddpm_step
from course_ddpm.exercises._check import Case, Exercise, Mistake, randn
from course_ddpm.forward import x0_from_eps
from course_ddpm.schedules import broadcast, cosine_schedule, linear_schedule


# float64: the package's step computes x0_pred first, eq. 11 does not, and in float32 the two orders
# differ by ~1e-5 near t = T - 1 (x0_pred divides by sqrt(alpha_bar_T) = 0.006).
_randn = randn


# --- 1. x0 from the predicted noise ----------------------------------------------------------
def _x0(schedule, x_t, t, eps, signal=None, noise=None, sign=-1, divide=True):
    signal = schedule.alpha_bar.sqrt() if signal is None else signal
    noise = (1 - schedule.alpha_bar).sqrt() if noise is None else noise
    numerator = x_t + sign * broadcast(noise, t, x_t) * eps
    return numerator / broadcast(signal, t, x_t) if divide else numerator * broadcast(signal, t, x_t)


def _x0_cases() -> list[Case]:
    linear = linear_schedule(1000)
    return [
        Case("a random batch, t = 0, 10, 500, 999",
             (linear, _randn(4, 1, 3, 3, seed=0), torch.tensor([0, 10, 500, 999]), _randn(4, 1, 3, 3, seed=1))),
        Case("cosine T = 50",
             (cosine_schedule(50), _randn(3, 2, seed=2), torch.tensor([1, 25, 40]), _randn(3, 2, seed=3))),
    ]


X0_FROM_EPS = Exercise(
    name="my_x0_from_eps",
    reference=x0_from_eps,
    reference_name="course_ddpm.forward.x0_from_eps",
    cases=_x0_cases,
    mistakes=(
        Mistake("wrong sign: the noise is subtracted, x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)",
                lambda s, x_t, t, eps: _x0(s, x_t, t, eps, sign=+1)),
        Mistake("square roots are missing: sqrt(1 - alpha_bar_t) and sqrt(alpha_bar_t)",
                lambda s, x_t, t, eps: _x0(s, x_t, t, eps, s.alpha_bar, 1 - s.alpha_bar)),
        Mistake("divide by sqrt(alpha_bar_t) (x_t = sqrt(alpha_bar_t) x0 + ... solved for x0), do not multiply",
                lambda s, x_t, t, eps: _x0(s, x_t, t, eps, divide=False)),
        Mistake("alpha_t (one step) where alpha_bar_t (the product) belongs",
                lambda s, x_t, t, eps: _x0(s, x_t, t, eps, s.alpha.sqrt(), (1 - s.alpha).sqrt())),
        Mistake("the noise is scaled by its standard deviation sqrt(1 - alpha_bar_t), not the variance",
                lambda s, x_t, t, eps: _x0(s, x_t, t, eps, noise=1 - s.alpha_bar)),
    ),
)


# --- 2. one DDPM step (Ho et al. Algorithm 2, sigma_t^2 = beta_t) -----------------------------
def _ddpm_reference(schedule, x_t, t, eps_pred, z):
    return ddpm_step(schedule, x_t, t, eps_pred, variance_type="fixed_large", noise=z, clip_x0=False).x_prev


def _ddpm(schedule, x_t, t, eps_pred, z, alpha=None, noise=None, sigma=None, last_step_zero=True, sign=-1):
    s = schedule
    alpha = s.alpha if alpha is None else alpha
    noise = (1 - s.alpha_bar).sqrt() if noise is None else noise
    sigma = s.beta.sqrt() if sigma is None else sigma
    mean = (x_t + sign * broadcast(s.beta / noise, t, x_t) * eps_pred) / broadcast(alpha.sqrt(), t, x_t)
    if last_step_zero:
        z = z * (t > 0).to(z.dtype).reshape(-1, *([1] * (z.ndim - 1)))
    return mean + broadcast(sigma, t, x_t) * z


def _ddpm_cases() -> list[Case]:
    linear = linear_schedule(1000)
    return [
        Case("a batch at t = 999, 500, 10, 1", (linear, _randn(4, 1, 3, 3, seed=0), torch.tensor([999, 500, 10, 1]),
                                                _randn(4, 1, 3, 3, seed=1), _randn(4, 1, 3, 3, seed=2))),
        Case("the last step, t = 0 (z = 0)", (linear, _randn(2, 3, seed=3), torch.tensor([0, 0]), _randn(2, 3, seed=4),
                                              _randn(2, 3, seed=5))),
    ]


DDPM_STEP = Exercise(
    name="my_ddpm_step",
    reference=_ddpm_reference,
    reference_name="course_ddpm.ddpm.ddpm_step (variance_type='fixed_large', clip_x0=False)",
    cases=_ddpm_cases,
    mistakes=(
        Mistake("z = 0 at the last step (code t = 0): Algorithm 2 adds no noise when it returns x_0",
                lambda s, x_t, t, e, z: _ddpm(s, x_t, t, e, z, last_step_zero=False)),
        Mistake("sigma_t z uses the standard deviation sigma_t = sqrt(beta_t), not the variance beta_t",
                lambda s, x_t, t, e, z: _ddpm(s, x_t, t, e, z, sigma=s.beta)),
        Mistake("1 / sqrt(alpha_t) of one step scales the mean, not 1 / sqrt(alpha_bar_t)",
                lambda s, x_t, t, e, z: _ddpm(s, x_t, t, e, z, alpha=s.alpha_bar)),
        Mistake("a square root is missing: beta_t / sqrt(1 - alpha_bar_t) multiplies eps_pred",
                lambda s, x_t, t, e, z: _ddpm(s, x_t, t, e, z, noise=1 - s.alpha_bar)),
        Mistake("sigma_t^2 = beta_t in this exercise (Algorithm 2's first choice), not beta_tilde_t",
                lambda s, x_t, t, e, z: _ddpm(s, x_t, t, e, z, sigma=s.beta_tilde.sqrt())),
        Mistake("wrong sign: the predicted noise is subtracted, x_t - beta_t / sqrt(1 - alpha_bar_t) eps_pred",
                lambda s, x_t, t, e, z: _ddpm(s, x_t, t, e, z, sign=+1)),
    ),
)


# --- 3. one DDIM step with eta -----------------------------------------------------------------
def _ddim_reference(schedule, x_t, t, t_prev, eps_pred, eta, z):
    return ddim_step(schedule, x_t, t, t_prev, eps_pred, eta=eta, noise=z, clip_x0=False).x_prev


def _ddim(schedule, x_t, t, t_prev, eps_pred, eta, z, table=None, wrap=False, sigma_in_dir=True, eta_used=True,
          sqrt_second=True):
    ab = schedule.alpha_bar if table is None else table
    ab_t = ab[t]
    if t_prev >= 0 or wrap:
        ab_prev = ab[t_prev]
    else:
        ab_prev = torch.ones((), dtype=ab.dtype)
    x0_pred = (x_t - (1 - ab_t).sqrt() * eps_pred) / ab_t.sqrt()
    second = 1 - ab_t / ab_prev
    eta = eta if eta_used else 1.0
    sigma = eta * ((1 - ab_prev) / (1 - ab_t)).sqrt() * (second.sqrt() if sqrt_second else second)
    direction = (1 - ab_prev - (sigma**2 if sigma_in_dir else 0)).clamp(min=0).sqrt()
    return (ab_prev.sqrt() * x0_pred + direction * eps_pred + sigma * z).to(x_t.dtype)


def _ddim_cases() -> list[Case]:
    linear = linear_schedule(1000)
    x_t, eps, z = _randn(3, 1, 3, 3, seed=0), _randn(3, 1, 3, 3, seed=1), _randn(3, 1, 3, 3, seed=2)
    return [
        Case("t = 500 -> 480, eta = 0", (linear, x_t, 500, 480, eps, 0.0, z)),
        Case("t = 500 -> 480, eta = 1", (linear, x_t, 500, 480, eps, 1.0, z)),
        Case("the last step t = 20 -> -1 (the clean end, alpha_bar = 1), eta = 0", (linear, x_t, 20, -1, eps, 0.0, z)),
        Case("cosine T = 100, t = 60 -> 30, eta = 0.5", (cosine_schedule(100), x_t, 60, 30, eps, 0.5, z)),
    ]


DDIM_STEP = Exercise(
    name="my_ddim_step",
    reference=_ddim_reference,
    reference_name="course_ddpm.ddim.ddim_step (clip_x0=False)",
    cases=_ddim_cases,
    mistakes=(
        Mistake("DDIM's alpha_t is our alpha_bar_t (Song et al. write alpha for the product): use schedule.alpha_bar",
                lambda s, x_t, t, tp, e, eta, z: _ddim(s, x_t, t, tp, e, eta, z, table=s.alpha)),
        Mistake("t_prev = -1 is the clean end, alpha_bar = 1; schedule.alpha_bar[-1] is Python's last entry, "
                "alpha_bar_T (use schedule.alpha_bar_or_one[t_prev + 1])",
                lambda s, x_t, t, tp, e, eta, z: _ddim(s, x_t, t, tp, e, eta, z, wrap=True)),
        Mistake("the direction term is sqrt(1 - alpha_bar_prev - sigma^2) eps_pred: sigma^2 is missing",
                lambda s, x_t, t, tp, e, eta, z: _ddim(s, x_t, t, tp, e, eta, z, sigma_in_dir=False)),
        Mistake("eta scales sigma (eq. 16): eta = 0 gives sigma = 0 and no noise",
                lambda s, x_t, t, tp, e, eta, z: _ddim(s, x_t, t, tp, e, eta, z, eta_used=False)),
        Mistake("a square root is missing in sigma: sqrt(1 - alpha_bar_t / alpha_bar_prev)",
                lambda s, x_t, t, tp, e, eta, z: _ddim(s, x_t, t, tp, e, eta, z, sqrt_second=False)),
    ),
)


# --- 4. slerp ----------------------------------------------------------------------------------
def _slerp(x_a, x_b, lam, kind="slerp"):
    va, vb = x_a.reshape(-1).double(), x_b.reshape(-1).double()
    if kind == "lerp":
        return (1 - lam) * x_a + lam * x_b
    dot = va @ vb if kind == "unnormalised" else (va @ vb) / (va.norm() * vb.norm())
    theta = torch.arccos(dot)
    w_a, w_b = torch.sin((1 - lam) * theta), torch.sin(lam * theta)
    if kind != "no_division":
        w_a, w_b = w_a / torch.sin(theta), w_b / torch.sin(theta)
    return (w_a * x_a.double() + w_b * x_b.double()).to(x_a.dtype)


def _slerp_cases() -> list[Case]:
    x_a, x_b = _randn(1, 4, 4, seed=0, dtype=torch.float32), _randn(1, 4, 4, seed=1, dtype=torch.float32)
    return [
        Case("two (1, 4, 4) noises, lam = 0.3", (x_a, x_b, 0.3)),
        Case("lam = 0 (gives x_a)", (x_a, x_b, 0.0)),
        Case("lam = 1 (gives x_b)", (x_a, x_b, 1.0)),
        Case("float64 noises of shape (64,), lam = 0.5", (_randn(64, seed=2, dtype=torch.float64),
                                                          _randn(64, seed=3, dtype=torch.float64), 0.5)),
    ]


SLERP = Exercise(
    name="my_slerp",
    reference=slerp,
    reference_name="course_ddpm.ddim.slerp",
    cases=_slerp_cases,
    mistakes=(
        Mistake("that is the straight line (1 - lam) x_a + lam x_b; slerp walks along the sphere with sin weights",
                lambda a, b, lam: _slerp(a, b, lam, "lerp")),
        Mistake("lam = 0 must give x_a: swap the two weights (sin((1 - lam) theta) goes with x_a)",
                lambda a, b, lam: _slerp(a, b, 1 - lam)),
        Mistake("both weights are divided by sin(theta)", lambda a, b, lam: _slerp(a, b, lam, "no_division")),
        Mistake("theta = arccos of the cosine: divide the dot product by both norms (|x_a| |x_b|)",
                lambda a, b, lam: _slerp(a, b, lam, "unnormalised")),
    ),
)

EXERCISES = (X0_FROM_EPS, DDPM_STEP, DDIM_STEP, SLERP)  # in the order of notebook 04
check_x0_from_eps = X0_FROM_EPS.check
check_ddpm_step = DDPM_STEP.check
check_ddim_step = DDIM_STEP.check
check_slerp = SLERP.check

"""The forward process as relaxation to equilibrium: the Fokker--Planck equation on a 1-D grid.

The density p_t of the VP-SDE dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW (:mod:`course_ddpm.sde`)
obeys the Fokker--Planck equation (Song et al. 2021, arXiv:2011.13456, eq. 47 of appendix D.1,
for this f and g)

    dp/dt = 1/2 beta(t) d/dx [x p + dp/dx] = -dJ/dx,    J = -1/2 beta(t) (x p + dp/dx),

the Smoluchowski equation of a particle in the harmonic potential U(x) = x^2/2 at unit
temperature. Its equilibrium (J = 0) is the Boltzmann distribution exp(-U)/Z = N(0, 1), the
prior. beta(t) only sets the clock: with tau(t) = 1/2 int_0^t beta, dp/dtau = L p with a fixed
operator L, so p_t = exp(tau(t) L) p_0.

:func:`fokker_planck_solve` discretises L by finite volumes (zero flux at the ends, so mass is
conserved) and applies the matrix exponential: an independent check of the closed-form
q(x_t) of the toy mixture (:meth:`course_ddpm.toy.GaussianMixture.log_prob_at`).

Relaxation is monotone: the KL divergence to equilibrium (the free-energy excess, in units
of kT) decreases, at the rate of the entropy production,

    d/dt KL(p_t || pi) = -1/2 beta(t) I(p_t || pi),   I(p || pi) = E_p[(d/dx log(p / pi))^2],

the relative Fisher information (Risken 1989, ch. 6.1; Jordan, Kinderlehrer & Otto 1998).
"""

from __future__ import annotations

import torch

from course_ddpm.sde import VPSDE
from course_ddpm.validation import check_float


def fokker_planck_operator(x: torch.Tensor) -> torch.Tensor:
    """Finite-volume matrix L of dp/dtau = d/dx (x p + dp/dx) on a uniform grid, zero flux at the ends.

    The flux between cells i and i+1 is -(x_{i+1/2} (p_i + p_{i+1}) / 2 + (p_{i+1} - p_i) / dx),
    and dp_i/dtau = (F_{i-1/2} - F_{i+1/2}) / dx: every column of L sums to 0 (mass is conserved).

    Args:
        x: ``(G,)`` uniform grid, float64.
    Returns:
        ``(G, G)`` float64.
    """
    check_float("x", x)
    G = x.shape[0]
    dx = float(x[1] - x[0])
    x_face = (x[:-1] + x[1:]) / 2  # (G - 1,) cell faces
    # flux through face i+1/2 (positive to the right): -(x_face (p_i + p_{i+1}) / 2 + (p_{i+1} - p_i) / dx)
    flux = torch.zeros(G - 1, G, dtype=torch.float64)
    idx = torch.arange(G - 1)
    flux[idx, idx] = -(x_face / 2 - 1 / dx)
    flux[idx, idx + 1] = -(x_face / 2 + 1 / dx)
    L = torch.zeros(G, G, dtype=torch.float64)
    L[:-1] -= flux / dx  # outflow to the right of cell i
    L[1:] += flux / dx  # inflow from the left of cell i+1
    return L


def fokker_planck_solve(sde: VPSDE, p0: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
    """p_t on the grid from p_0 by the matrix exponential: p_t = exp(tau(t) L) p_0, tau = 1/2 int_0^t beta.

    Args:
        p0: ``(G,)`` density values at the grid points ``x`` ``(G,)`` (uniform, wide enough that
            p is negligible at the ends). t: time in [0, 1].
    Returns:
        ``(G,)`` float64 density at time t.
    """
    tau = 0.5 * float(sde.integral(t))
    return torch.linalg.matrix_exp(tau * fokker_planck_operator(x.double())) @ p0.double()


def kl_on_grid(p: torch.Tensor, q: torch.Tensor, dx: float) -> torch.Tensor:
    """KL(p || q) = int p log(p / q) dx by the rectangle rule (0 log 0 = 0); densities ``(..., G)`` -> ``(...)``."""
    ratio = torch.where(p > 0, p / q, torch.ones_like(p))
    return (p * ratio.log()).sum(-1) * dx


def relative_fisher_on_grid(p: torch.Tensor, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """I(p || q) = int p (d/dx log(p / q))^2 dx, the derivative by central differences: ``(..., G)`` -> ``(...)``."""
    dx = float(x[1] - x[0])
    log_ratio = p.clamp_min(1e-300).log() - q.log()
    grad = torch.gradient(log_ratio, spacing=dx, dim=-1)[0]
    return (p * grad**2).sum(-1) * dx

"""Energy-based densities p = phi / Z and why their normaliser Z is the obstacle.

An energy-based model writes a density as a Boltzmann distribution

    p(x) = phi(x) / Z,   phi(x) = exp(-E(x)),   Z = integral exp(-E(x)) dx,

so log p(x) = -E(x) - log Z. E is cheap to evaluate at a point; Z is an integral over all of
R^D. In one dimension a quadrature rule gets it to many digits (:func:`log_partition_1d`); a
tensor-product rule with n points per axis needs n^D evaluations in D dimensions
(:func:`log10_grid_points`), 10^1568 for n = 100 and D = 784. Without Z neither log p nor
its gradient in the parameters is available, so the likelihood cannot be evaluated or
maximised directly.

Sohl-Dickstein et al. 2015 (*Deep unsupervised learning using nonequilibrium
thermodynamics*, arXiv:1503.03585) state this trade-off in their section 1 (p(x) = phi(x) / Z,
"computing this normalization constant is generally intractable") and avoid Z altogether
(section 2): the model is a Markov chain from a tractable equilibrium p(x_T) = N(0, I) back to
the data, each step a normalised Gaussian, so p_theta(x_0) = integral p(x_T) prod_t
p_theta(x_{t-1} | x_t) dx_{1:T} is normalised by construction and its log-likelihood has a lower
bound that can be estimated by sampling (Ho et al. 2020 eq. 5). Notebook 5 (section 6) reads the same p = phi / Z from
the score's side: grad log p = grad log phi does not need Z either.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from course_ddpm.validation import check_count


def double_well(x: torch.Tensor, barrier: float = 4.0) -> torch.Tensor:
    """E(x) = barrier * (x^2 - 1)^2, elementwise: two minima at x = +-1, a barrier of height ``barrier`` at 0."""
    return barrier * (x**2 - 1.0) ** 2


def log_partition_1d(energy: Callable[[torch.Tensor], torch.Tensor], lo: float, hi: float, n: int) -> float:
    """log Z = log integral_lo^hi exp(-E(x)) dx by the trapezoid rule on n equally spaced points, float64.

        Z ~= dx * (sum_i exp(-E(x_i)) - (exp(-E(x_0)) + exp(-E(x_{n-1}))) / 2),   dx = (hi - lo) / (n - 1)

    summed as a log-sum-exp, so that large energies do not underflow. For a smooth E whose
    exp(-E) is negligible at lo and hi, the error falls faster than any power of dx.

    Args:
        energy: E, elementwise on a ``(n,)`` float64 tensor.
        lo, hi: the interval, wide enough for exp(-E) to vanish at its ends.
        n: number of points, >= 2.
    """
    check_count("n", n, 2)
    if not hi > lo:
        raise ValueError(f"need hi > lo, got lo={lo}, hi={hi}")
    x = torch.linspace(lo, hi, n, dtype=torch.float64)  # (n,)
    log_phi = -energy(x)  # (n,)
    log_w = torch.full_like(x, math.log((hi - lo) / (n - 1)))
    log_w[[0, -1]] -= math.log(2.0)  # trapezoid weights dx/2 at the ends
    return float(torch.logsumexp(log_phi + log_w, dim=0))


def log10_grid_points(n: int, dim: int) -> float:
    """log10 of n^D, the number of energy evaluations of a tensor-product grid with n points per axis in D dimensions."""
    check_count("n", n)
    check_count("dim", dim)
    return dim * math.log10(n)

"""The sliced Wasserstein distance between two point sets: how close samples are to the data.

Two sets of N points in R^D, projected on a unit direction theta, are two sets of N numbers;
the 2-Wasserstein distance between those 1-D empirical distributions pairs them in sorted
order: W_2^2 = (1/N) sum_i (a_(i) - b_(i))^2. Averaging over directions gives

    SW_2(x, y) = ( E_theta [ W_2^2(theta . x, theta . y) ] )^(1/2)

(Rabin et al. 2011; Bonneel et al. 2015). It is 0 for identical sets, and for y = x + d
(a shift) every projection is shifted by theta . d, so SW_2 = (E_theta[(theta . d)^2])^(1/2)
= |d| / sqrt(D) for theta uniform on the sphere. In 2-D the directions here are P evenly
spaced angles in [0, pi), an exact rule for E[cos^2] (P >= 2), so the shift gives |d| / sqrt(2)
exactly and the distance needs no random numbers.

Two independent samples of the same distribution are not at distance 0: the distance of a
second draw of true data to the data is the *floor* a perfect sampler would reach at this N.
"""

from __future__ import annotations

import math

import torch

from course_ddpm.validation import check_count, check_float


def directions(n_projections: int, dim: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(P, D)`` float64 unit vectors: P evenly spaced angles pi k / P in 2-D; else normalised
    Gaussian draws (uniform on the sphere) from ``generator``."""
    check_count("n_projections", n_projections)
    check_count("dim", dim)
    if dim == 2:
        angle = math.pi * torch.arange(n_projections, dtype=torch.float64) / n_projections  # (P,)
        return torch.stack([angle.cos(), angle.sin()], dim=1)  # (P, 2)
    theta = torch.randn((n_projections, dim), generator=generator, dtype=torch.float64)
    return theta / theta.norm(dim=1, keepdim=True)  # (P, D)


def sliced_wasserstein(
    x: torch.Tensor, y: torch.Tensor, n_projections: int = 64, generator: torch.Generator | None = None
) -> float:
    """SW_2 between two point sets ``(N, D)`` and ``(M, D)`` (see the module docstring), in float64.

    One of N, M must be a multiple of the other, say M = k N: then each of the N sorted
    projections of x pairs with k consecutive sorted projections of y, which is the exact
    1-D W_2 between the two empirical distributions (their quantile functions match on the
    same M intervals). A small sample against a large reference set (k > 1) measures the
    sample's error, not the reference's.

    Args:
        x: ``(N, D)`` points. y: ``(M, D)`` points.
        n_projections: P directions (:func:`directions`).
        generator: for the random directions when D != 2.
    """
    check_float("x", x)
    check_float("y", y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have shapes (N, D) and (M, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = x.shape[0], y.shape[0]
    if max(n, m) % min(n, m):
        raise ValueError(f"one point count must be a multiple of the other, got N={n} and M={m}")
    theta = directions(n_projections, x.shape[1], generator)  # (P, D)
    a = torch.sort(x.double() @ theta.T, dim=0).values  # (N, P) sorted projections
    b = torch.sort(y.double() @ theta.T, dim=0).values  # (M, P)
    L = max(n, m)
    a = a.repeat_interleave(L // n, dim=0)  # (L, P): each quantile interval of width 1/L
    b = b.repeat_interleave(L // m, dim=0)  # (L, P)
    return ((a - b) ** 2).mean().sqrt().item()

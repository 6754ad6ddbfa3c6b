"""2-D data sets for the playground, scaled like the noise: every coordinate has mean 0 and variance 1.

A diffusion model adds N(0, I) noise, so its data should have about unit variance (images
in [-1, 1] do; :mod:`course_ddpm.data`). Both data sets here are standardised with their
*closed-form* mean and variance, not with the sample's, so that the scaling is exact:

* :class:`GaussianMixture2D` -- K isotropic Gaussians, with a known density, so samples can
  be scored by their log-likelihood; :func:`ring_mixture` puts 8 of them on a circle, the
  classic 2-D test whose failure modes (merged or missing modes, blur) are easy to see.
* :func:`two_moons` -- two interleaved half circles (as scikit-learn's ``make_moons``).

Points are ``(N, 2)`` float32 tensors, the ``(B, D)`` data of :class:`course_ddpm.mlp.MLP`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from course_ddpm.validation import check_count, check_float


@dataclass(frozen=True)
class GaussianMixture2D:
    """p(x) = sum_k w_k N(x; m_k, s^2 I) in 2-D: K isotropic components of one std s.

    Attributes:
        weights: w_k, positive, summing to 1. means: the m_k as (x, y) pairs. std: s > 0.
    """

    weights: tuple[float, ...]
    means: tuple[tuple[float, float], ...]
    std: float

    def __post_init__(self) -> None:
        if len(self.weights) == 0 or len(self.means) != len(self.weights):
            raise ValueError("weights and means must be non-empty and of equal length")
        if any(w <= 0 for w in self.weights) or abs(sum(self.weights) - 1.0) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {self.weights}")
        if any(len(m) != 2 for m in self.means):
            raise ValueError(f"every mean must be an (x, y) pair, got {self.means}")
        if not self.std > 0:
            raise ValueError(f"std must be positive, got {self.std}")

    def _w_m(self, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.weights, dtype=dtype), torch.tensor(self.means, dtype=dtype)  # (K,), (K, 2)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, 2)`` float32 points: a component k ~ w, then m_k + s z with z ~ N(0, I)."""
        check_count("n", n)
        w, m = self._w_m()
        k = torch.multinomial(w, n, replacement=True, generator=generator)  # (n,)
        z = torch.randn((n, 2), generator=generator, dtype=torch.float64)  # (n, 2)
        return (m[k] + self.std * z).float()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats, ``(N, 2)`` -> ``(N,)``:
        logsumexp_k [log w_k - |x - m_k|^2 / (2 s^2) - log(2 pi s^2)]."""
        check_float("x", x)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"x must have shape (N, 2), got {tuple(x.shape)}")
        w, m = self._w_m(x.dtype)
        sq = ((x[:, None, :] - m[None, :, :]) ** 2).sum(-1)  # (N, K)
        log_comp = w.log() - sq / (2 * self.std**2) - math.log(2 * math.pi * self.std**2)  # (N, K)
        return torch.logsumexp(log_comp, dim=1)  # (N,)

    def mean(self) -> torch.Tensor:
        """E[x] = sum_k w_k m_k, ``(2,)`` float64."""
        w, m = self._w_m()
        return w @ m

    def covariance(self) -> torch.Tensor:
        """Cov[x] = s^2 I + sum_k w_k (m_k - mu)(m_k - mu)^T (law of total covariance), ``(2, 2)`` float64."""
        w, m = self._w_m()
        d = m - self.mean()  # (K, 2)
        return self.std**2 * torch.eye(2, dtype=torch.float64) + (w[:, None] * d).T @ d


def ring_mixture(k: int = 8, std: float = 0.1) -> GaussianMixture2D:
    """k equal Gaussians of std s on a circle of radius r = sqrt(2 (1 - s^2)), so Cov = I.

    Evenly spaced means on a circle of radius r have covariance r^2 / 2 I (k >= 3); with the
    components' s^2 I the total is (r^2 / 2 + s^2) I = I: unit variance, like the noise.
    """
    check_count("k", k, low=3)
    if not 0 < std < 1:
        raise ValueError(f"std must lie in (0, 1) for a unit-variance ring, got {std}")
    r = math.sqrt(2 * (1 - std**2))
    angles = [2 * math.pi * i / k for i in range(k)]
    return GaussianMixture2D((1.0 / k,) * k, tuple((r * math.cos(a), r * math.sin(a)) for a in angles), std)


#: Closed-form moments of the noise-free moons before scaling (theta ~ U[0, pi], half the points
#: on each moon): E[x] = 1/2, E[y] = 1/4, Var[x] = 3/4, Var[y] = 9/16 - 1/pi.
MOONS_MEAN = (0.5, 0.25)
MOONS_VAR = (0.75, 9 / 16 - 1 / math.pi)


def two_moons(n: int, noise: float = 0.05, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(n, 2)`` float32 points on two interleaved half circles, scaled to mean 0 and variance 1.

    Upper moon (cos theta, sin theta), lower moon (1 - cos theta, 1/2 - sin theta), theta ~ U[0, pi]
    (scikit-learn's ``make_moons``), plus N(0, noise^2 I); then each coordinate is standardised
    with its closed-form mean and variance (:data:`MOONS_MEAN`, :data:`MOONS_VAR` + noise^2).
    """
    check_count("n", n)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    theta = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)  # (n,)
    lower = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5  # (n,) which moon
    x = torch.where(lower, 1 - theta.cos(), theta.cos())
    y = torch.where(lower, 0.5 - theta.sin(), theta.sin())
    points = torch.stack([x, y], dim=1) + noise * torch.randn((n, 2), generator=generator, dtype=torch.float64)
    mean = torch.tensor(MOONS_MEAN, dtype=torch.float64)
    std = (torch.tensor(MOONS_VAR, dtype=torch.float64) + noise**2).sqrt()
    return ((points - mean) / std).float()  # (n, 2)

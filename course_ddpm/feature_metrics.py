"""Sample-quality measures in a feature space besides the Fréchet distance: KID, precision, recall.

An FID compresses two sets of features into two Gaussians and compares those; what it
rewards depends on the features (:mod:`course_ddpm.fid` uses the course classifier's) and on
the Gaussian summary. The measures here see the same features differently:

* :func:`kernel_distance` -- KID (Bińkowski et al. 2018, arXiv:1801.01401): the squared
  maximum mean discrepancy with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3,
  unbiased, so it has no floor that grows as N shrinks (FID's does). torchmetrics computes it.
* :func:`precision_recall` -- Kynkäänniemi et al. 2019 (arXiv:1904.06991): each set's
  support is the union of balls around its points, of radius the distance to the k-th
  nearest neighbour in the same set. **Precision** = the fraction of samples inside the
  real data's support (fidelity: are samples realistic?); **recall** = the fraction of real
  images inside the samples' support (coverage: is all of the data's variety produced?).
  FID mixes the two into one number.
"""

from __future__ import annotations

import warnings

import torch

from course_ddpm.rng import global_rng_kept
from course_ddpm.validation import check_count


def _check_features(features_a: torch.Tensor, features_b: torch.Tensor) -> None:
    for name, f in (("features_a", features_a), ("features_b", features_b)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"{name} must have shape (N, d) with N >= 2, got {tuple(f.shape)}")
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"feature widths differ: {features_a.shape[1]} vs {features_b.shape[1]}")


def kernel_distance(features_a: torch.Tensor, features_b: torch.Tensor, subset_size: int | None = None,
                    subsets: int = 100, seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """KID between two feature sets ``(N, d)`` and ``(M, d)``: mean and std over random subsets.

    Each of ``subsets`` subsets holds ``subset_size`` (default min(N, M, 1000)) vectors of each
    set; the unbiased MMD^2 estimate of each is averaged (torchmetrics' KernelInceptionDistance
    with these features in place of Inception's).
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    from course_ddpm.fid import _PassThrough

    _check_features(features_a, features_b)
    size = min(len(features_a), len(features_b), 1000) if subset_size is None else subset_size
    check_count("subset_size", size, 2, min(len(features_a), len(features_b)))
    with warnings.catch_warnings(), global_rng_kept(torch.device("cpu")):
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer")
        torch.manual_seed(seed)  # torchmetrics draws the subsets from the global generator (restored after)
        metric = KernelInceptionDistance(feature=_PassThrough(features_a.shape[1]), subsets=subsets,
                                         subset_size=size, normalize=False)  # fmt: skip
        metric.update(features_b.detach().cpu().double(), real=True)
        metric.update(features_a.detach().cpu().double(), real=False)
        mean, std = metric.compute()
    return float(mean), float(std)


def _radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """``(N,)`` distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    distances = torch.cdist(features, features)  # (N, N)
    return distances.kthvalue(k + 1, dim=1).values  # the 0th is the point itself


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """``(P,)`` bool: is each point within radius of at least one centre?"""
    return (torch.cdist(points, centres) <= radii[None, :]).any(dim=1)


def precision_recall(samples: torch.Tensor, real: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, eq. 1-2) of feature sets ``(N, d)``, ``(M, d)``.

    Returns:
        precision: fraction of ``samples`` inside the k-NN support of ``real``;
        recall: fraction of ``real`` inside the k-NN support of ``samples``.
    """
    _check_features(samples, real)
    check_count("k", k, 1, min(len(samples), len(real)) - 1)
    samples, real = samples.detach().double(), real.detach().double()
    precision = _inside(samples, real, _radii(real, k)).double().mean()
    recall = _inside(real, samples, _radii(samples, k)).double().mean()
    return float(precision), float(recall)

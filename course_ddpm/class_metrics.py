"""Measures of class-conditional samples: what guidance trades (Ho & Salimans 2022, Fig. 1).

Classifier-free guidance with a larger scale s makes samples look more like their class and
less like each other. Each function below measures one side of that trade, on MNIST digits
``(N, 1, 28, 28)`` in [-1, 1] with the labels y ``(N,)`` they were generated for:

* :func:`per_class_fid` -- MNIST-FID of the samples of each digit against the test images
  of that digit, with the floor: as many real *training* images of the digit, against the
  same test images (:func:`course_ddpm.fid.frechet_distance` on the classifier's features).
* :func:`feature_spread` -- how varied the samples of each digit are: the trace of their
  feature covariance over that of the test images of the digit (1 = as varied as MNIST).
* :func:`pixel_statistics` -- how much ink and how many grey pixels: guidance pushes pixels
  to the ends of [-1, 1] (bold, saturated strokes).
"""

from __future__ import annotations

import torch

from course_ddpm.fid import frechet_distance
from course_ddpm.validation import check_count

#: Pixels above this are "white ink"; between -GREY and GREY "grey" (anti-aliased edges).
INK, GREY = 0.0, 0.9


def _check_labelled(features: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(
            f"{name}: features must be (N, d) and labels (N,), got {tuple(features.shape)} and {tuple(labels.shape)}"
        )


def per_class_fid(
    features: torch.Tensor,
    labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    num_classes: int = 10,
    seed: int = 0,
) -> tuple[list[float], list[float]]:
    """FID of each class's samples against the test images of the class, and its floor.

    For class k with n_k samples, the floor is the FID of n_k random training images of class
    k (drawn with ``seed``) against the same test images: what a perfect model scores at that n.

    Args:
        features, labels: ``(N, d)`` classifier features of the samples, ``(N,)`` their classes.
        test_features, test_labels: the same for the reference (MNIST test) images.
        train_features, train_labels: the same for the images the floor is drawn from.

    Returns:
        two lists of ``num_classes`` floats: the FIDs and the floors.
    """
    for name, f, y in (("samples", features, labels), ("test", test_features, test_labels),
                       ("train", train_features, train_labels)):  # fmt: skip
        _check_labelled(f, y, name)
    generator = torch.Generator().manual_seed(seed)
    fids, floors = [], []
    for k in range(num_classes):
        mine, test, train = features[labels == k], test_features[test_labels == k], train_features[train_labels == k]
        check_count(f"samples of class {k}", len(mine), 2, len(train))
        real = train[torch.randperm(len(train), generator=generator)[: len(mine)]]  # (n_k, d)
        fids.append(frechet_distance(mine, test))
        floors.append(frechet_distance(real, test))
    return fids, floors


def feature_spread(
    features: torch.Tensor, labels: torch.Tensor, test_features: torch.Tensor, test_labels: torch.Tensor,
    *, num_classes: int = 10,
) -> list[float]:  # fmt: skip
    """tr Cov(features of class k) / tr Cov(test features of class k), for each class k.

    1 means the samples of a digit vary as much as MNIST's test images of that digit (in the
    classifier's feature space); guidance pulls it below 1.
    """
    _check_labelled(features, labels, "samples")
    _check_labelled(test_features, test_labels, "test")

    def total_variance(f: torch.Tensor) -> float:  # f: (n, d)
        return float(f.double().var(dim=0).sum())

    spread = []
    for k in range(num_classes):
        mine = features[labels == k]
        check_count(f"samples of class {k}", len(mine), 2)
        spread.append(total_variance(mine) / total_variance(test_features[test_labels == k]))
    return spread


def pixel_statistics(x: torch.Tensor) -> dict[str, float]:
    """Pixel statistics of images in [-1, 1], any shape ``(N, ...)``.

    Returns:
        ``ink``: fraction of pixels > 0 (the stroke); ``grey``: fraction with |x| < 0.9
        (anti-aliased edges: guidance makes them rare); ``mean``: mean of (x + 1) / 2, the
        average brightness in [0, 1].
    """
    x = x.detach().double()
    return {
        "ink": float((x > INK).double().mean()),
        "grey": float((x.abs() < GREY).double().mean()),
        "mean": float(((x + 1) / 2).mean()),
    }


def recommended_guidance(rows: list[dict], min_accuracy: float = 0.97) -> dict:
    """The row of a guidance sweep the course recommends: the lowest MNIST-FID among the
    scales at which every digit is classified as requested at least ``min_accuracy`` of the time.

    Args:
        rows: the ``results`` of ``benchmarks/guidance_sweep.py``'s JSON (keys ``fid``,
            ``accuracy_per_digit``, ``guidance_scale``).
    """
    good = [r for r in rows if min(r["accuracy_per_digit"]) >= min_accuracy]
    if not good:
        raise ValueError(f"no scale reaches {min_accuracy:.0%} for every digit")
    return min(good, key=lambda r: r["fid"])

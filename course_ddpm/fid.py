"""MNIST-FID: do samples look like MNIST digits? Offline, with the course's own classifier.

The Fréchet distance between Gaussians fitted to the penultimate-layer features of the
course's digit classifier (:mod:`course_ddpm.classifier`, shipped in
``course_ddpm/weights/``) for the samples and for the 10,000 MNIST test images (Heusel
et al. 2017, "GANs trained by a two time-scale update rule...", arXiv:1706.08500, which
used Inception-v3 features)::

    FD = ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

FID falls with the number of samples N even for perfect samples, so a value means
little alone: :func:`fid_reference_points` gives the *floor* (N real training images)
and the *ceiling* (N images of uniform noise) at the same N; with the shipped
classifier the floor is about 87 at N = 100, 10 at N = 1000 and 3.4 at N = 5000, the
ceiling about 19,000. MNIST-FID numbers are not comparable with Inception-FID numbers
in papers.

The matrix square root comes from ``torchmetrics``' ``FrechetInceptionDistance``, given
the features through a pass-through extractor (:func:`frechet_distance`). The same
classifier's probabilities give the digit histogram of :mod:`course_ddpm.evaluation`.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from course_ddpm.validation import check_count


# --------------------------------------------------------------------------- classifier
@lru_cache(maxsize=1)
def default_classifier() -> nn.Module:
    """The shipped classifier (``load_pretrained("classifier")``), loaded once, on the CPU."""
    from course_ddpm.pretrained import load_pretrained

    model, _ = load_pretrained("classifier")
    return model


def _check_images(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = getattr(x, "dtype", type(x).__name__)
        raise TypeError(f"{name} must be a float tensor of images in [-1, 1], got {got}")
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"{name} must have shape (N, 1, 28, 28), got {tuple(x.shape)}")


@torch.no_grad()
def classifier_outputs(
    images: torch.Tensor, classifier: nn.Module | None = None, *, batch_size: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features and class probabilities of images, on the CPU.

    Images are clamped to [-1, 1] first (samples overshoot it slightly; the classifier
    was trained on [-1, 1]).

    Args:
        images: ``(N, 1, 28, 28)`` in [-1, 1].
        classifier: an :class:`~course_ddpm.classifier.MNISTClassifier`; default the shipped one.
    Returns:
        features ``(N, d)`` float64 and probabilities ``(N, 10)`` float64 (softmax of the logits).
    """
    _check_images("images", images)
    classifier = default_classifier() if classifier is None else classifier
    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    features, probs = [], []
    for batch in images.split(batch_size):
        x = batch.to(device=device, dtype=torch.float32).clamp(-1, 1)
        h = classifier.features(x)  # (b, d)
        logits = classifier.logits_from_features(h)  # (b, 10)
        features.append(h.cpu().double())  # to the CPU first: float64 never on the device (MPS has none)
        probs.append(logits.cpu().double().softmax(dim=1))
    classifier.train(was_training)
    return torch.cat(features), torch.cat(probs)


# ------------------------------------------------------------------ Fréchet distance
class _PassThrough(nn.Module):
    """A "feature extractor" for torchmetrics that returns its input features unchanged.

    ``num_features`` stops torchmetrics from probing it with a (1, 3, 299, 299) image.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors.

    FD = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), with the sample means mu
    and unbiased sample covariances S (divisor N - 1), in float64. The square root is
    torchmetrics' (sum of square roots of the eigenvalues of S_a S_b).

    Args:
        features_a: ``(N, d)``, N >= 2.
        features_b: ``(M, d)``, M >= 2.
    Returns:
        the distance (>= 0 up to rounding), a float.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    for name, f in (("features_a", features_a), ("features_b", features_b)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"{name} must have shape (N, d) with N >= 2, got {tuple(f.shape)}")
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"feature widths differ: {features_a.shape[1]} vs {features_b.shape[1]}")
    metric = FrechetInceptionDistance(feature=_PassThrough(features_a.shape[1]), normalize=False)
    metric.update(features_b.detach().cpu().double(), real=True)
    metric.update(features_a.detach().cpu().double(), real=False)
    return float(metric.compute())


@lru_cache(maxsize=2)
def mnist_test_outputs(classifier: nn.Module, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`classifier_outputs` of the 10,000 MNIST test images (cached per classifier object).

    Returns:
        features ``(10000, d)`` and probabilities ``(10000, 10)``, float64 on the CPU.
    """
    from course_ddpm.data import load_mnist

    x_test, _ = load_mnist(train=False)
    return classifier_outputs(x_test, classifier, batch_size=batch_size)


def mnist_fid(
    samples: torch.Tensor,
    reference: torch.Tensor | None = None,
    *,
    classifier: nn.Module | None = None,
    batch_size: int = 500,
) -> float:
    """MNIST-FID: Fréchet distance of classifier features, samples vs reference images.

    Args:
        samples: ``(N, 1, 28, 28)`` in [-1, 1], N >= 2.
        reference: ``(M, 1, 28, 28)`` in [-1, 1]; default the 10,000 MNIST test images.
        classifier: default the shipped one.
    Returns:
        the distance; compare it with :func:`fid_reference_points` at the same N.
    """
    classifier = default_classifier() if classifier is None else classifier
    features = classifier_outputs(samples, classifier, batch_size=batch_size)[0]
    if reference is None:
        reference_features = mnist_test_outputs(classifier, batch_size)[0]
    else:
        reference_features = classifier_outputs(reference, classifier, batch_size=batch_size)[0]
    return frechet_distance(features, reference_features)


def fid_reference_points(
    n: int, *, classifier: nn.Module | None = None, seed: int = 0, batch_size: int = 500
) -> dict[str, float]:
    """MNIST-FID of two yardsticks with ``n`` images each, against the MNIST test set.

    - ``floor``: ``n`` random MNIST *training* images -- what a perfect model scores at this n;
    - ``ceiling``: ``n`` images of uniform noise U(-1, 1) per pixel -- what no model at all scores.

    Returns:
        ``{"floor": float, "ceiling": float, "n": n}``.
    """
    from course_ddpm.data import load_mnist

    check_count("n", n, 2, 60_000)
    classifier = default_classifier() if classifier is None else classifier
    generator = torch.Generator().manual_seed(seed)
    x_train, _ = load_mnist(train=True)
    real = x_train[torch.randperm(len(x_train), generator=generator)[:n]]
    noise = torch.rand(n, 1, 28, 28, generator=generator) * 2 - 1
    return {
        "floor": mnist_fid(real, classifier=classifier, batch_size=batch_size),
        "ceiling": mnist_fid(noise, classifier=classifier, batch_size=batch_size),
        "n": n,
    }

"""Tests for course_ddpm.fid: Fréchet distance, classifier features, MNIST-FID and its yardsticks.

The Fréchet distance is checked against the closed form for Gaussians whose sample
means and covariances are set exactly, and against scipy's matrix square root, so the
torchmetrics wiring is tested by code that shares nothing with it.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from conftest import require_or_skip
from course_ddpm.classifier import ClassifierConfig, MNISTClassifier
from course_ddpm.fid import classifier_outputs, fid_reference_points, frechet_distance, mnist_fid
from course_ddpm.pretrained import list_pretrained


@pytest.fixture
def shipped_classifier() -> None:
    """The tests that use the shipped classifier: skipped without its weights, failed in CI."""
    if "classifier" not in list_pretrained():
        require_or_skip("the classifier's weights are not shipped in course_ddpm/weights/")


def exact_gaussian_sample(mu: torch.Tensor, cov: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n points (n, d) whose sample mean is exactly mu and unbiased sample covariance exactly cov."""
    z = torch.randn(n, len(mu), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = z - z.mean(0)
    whiten = torch.linalg.cholesky(z.T @ z / (n - 1))  # sample cov of z = whiten whiten^T
    z = torch.linalg.solve_triangular(whiten, z.T, upper=False).T  # sample cov now I
    return mu + z @ torch.linalg.cholesky(cov).T


def closed_form_fd_commuting(mu1, d1, mu2, d2) -> float:
    """FD for covariances with common eigenvectors and eigenvalues d1, d2: elementwise sqrt."""
    return float(((mu1 - mu2) ** 2).sum() + ((d1.sqrt() - d2.sqrt()) ** 2).sum())


def test_fd_of_diagonal_gaussians_matches_closed_form():
    d = 6
    mu1, mu2 = torch.linspace(-1, 1, d, dtype=torch.float64), torch.linspace(0, 3, d, dtype=torch.float64)
    v1, v2 = torch.linspace(0.5, 2, d, dtype=torch.float64), torch.linspace(3, 0.1, d, dtype=torch.float64)
    a = exact_gaussian_sample(mu1, torch.diag(v1), 200, seed=0)
    b = exact_gaussian_sample(mu2, torch.diag(v2), 300, seed=1)
    expected = closed_form_fd_commuting(mu1, v1, mu2, v2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-8)


def test_fd_of_rotated_commuting_gaussians_matches_closed_form():
    d = 5
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    v1 = torch.tensor([0.2, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    v2 = torch.tensor([1.0, 1.0, 0.3, 5.0, 0.05], dtype=torch.float64)
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.full((d,), 0.5, dtype=torch.float64)
    a = exact_gaussian_sample(mu1, q @ torch.diag(v1) @ q.T, 100, seed=4)
    b = exact_gaussian_sample(mu2, q @ torch.diag(v2) @ q.T, 100, seed=5)
    assert frechet_distance(a, b) == pytest.approx(closed_form_fd_commuting(mu1, v1, mu2, v2), rel=1e-7)


def test_fd_matches_scipy_sqrtm_for_general_covariances():
    gen = torch.Generator().manual_seed(7)
    a = torch.randn(400, 8, generator=gen, dtype=torch.float64) @ torch.randn(8, 8, generator=gen, dtype=torch.float64)
    b = torch.randn(300, 8, generator=gen, dtype=torch.float64) @ torch.randn(8, 8, generator=gen, dtype=torch.float64)
    a_np, b_np = a.numpy(), b.numpy()
    s1, s2 = np.cov(a_np, rowvar=False), np.cov(b_np, rowvar=False)
    expected = ((a_np.mean(0) - b_np.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_fd_of_a_set_with_itself_is_zero_and_input_checks():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    assert abs(frechet_distance(x, x)) < 1e-8
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(x[:1], x)
    with pytest.raises(ValueError, match="widths differ"):
        frechet_distance(x, x[:, :3])


def _biased_classifier(digit: int) -> MNISTClassifier:
    """A tiny classifier whose logits always favour ``digit`` by 100 (untrained weights ~ 0)."""
    model = MNISTClassifier(ClassifierConfig(channels=(4, 8), hidden=16)).eval()
    with torch.no_grad():
        model.fc2.weight.zero_()
        model.fc2.bias.zero_()
        model.fc2.bias[digit] = 100.0
    return model


def test_classifier_outputs_checks_shape_and_clamps():
    model = _biased_classifier(1)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        classifier_outputs(torch.zeros(3, 28, 28), model)
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 4 - 2  # overshoots [-1, 1]
    f_raw, p_raw = classifier_outputs(x, model, batch_size=4)
    f_clamped, _ = classifier_outputs(x.clamp(-1, 1), model, batch_size=4)
    torch.testing.assert_close(f_raw, f_clamped, rtol=0, atol=0)
    torch.testing.assert_close(f_raw, model.features(x.clamp(-1, 1)).double(), rtol=1e-5, atol=1e-6)
    assert f_raw.dtype == p_raw.dtype == torch.float64
    torch.testing.assert_close(p_raw.sum(1), torch.ones(6, dtype=torch.float64))


def test_mnist_fid_of_a_set_against_itself_is_zero(shipped_classifier):
    x = torch.rand(300, 1, 28, 28) * 2 - 1
    assert abs(mnist_fid(x, x)) < 1e-6
    y = torch.rand(300, 1, 28, 28) * 2 - 1
    assert mnist_fid(x, y) > 0


@pytest.mark.mnist
def test_noise_is_far_above_the_floor_and_real_digits_are_near_it(shipped_classifier):
    from course_ddpm.data import load_mnist

    points = fid_reference_points(500)
    assert points["n"] == 500
    assert 0 < points["floor"] < points["ceiling"] / 20
    # A class-imbalanced set of real digits (only 0s and 1s) lies between the two.
    x, y = load_mnist(train=True)
    zeros_and_ones = x[(y <= 1)][:500]
    fid_01 = mnist_fid(zeros_and_ones)
    assert points["floor"] * 5 < fid_01 < points["ceiling"]

"""Tests for course_ddpm.feature_metrics: KID against a direct MMD computation, precision and
recall on sets whose supports are known."""

from __future__ import annotations

import pytest
import torch

from course_ddpm.feature_metrics import kernel_distance, precision_recall


def _mmd2_unbiased(a: torch.Tensor, b: torch.Tensor) -> float:
    """The unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, written out (Bińkowski et al. eq. 3)."""
    d = a.shape[1]

    def k(x, y):
        return (x @ y.T / d + 1) ** 3

    m, n = len(a), len(b)
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    return float((kaa.sum() - kaa.trace()) / (m * (m - 1)) + (kbb.sum() - kbb.trace()) / (n * (n - 1))
                 - 2 * kab.mean())  # fmt: skip


def test_kid_with_one_full_subset_is_the_unbiased_mmd():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(60, 4, generator=g, dtype=torch.float64)
    b = torch.randn(60, 4, generator=g, dtype=torch.float64) + 0.5
    mean, std = kernel_distance(a, b, subset_size=60, subsets=3)
    assert mean == pytest.approx(_mmd2_unbiased(a, b), rel=1e-6)  # every subset is the whole set
    assert std == pytest.approx(0.0, abs=1e-9)
    same, _ = kernel_distance(a, torch.randn(60, 4, generator=g, dtype=torch.float64), subset_size=60, subsets=1)
    assert abs(same) < mean / 5  # two draws of one distribution: near 0, unbiased (either sign)


def test_precision_and_recall_see_fidelity_and_coverage_apart():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    # mode collapse: samples only from the real data's left half -> precise, but half the data uncovered
    collapsed = real[real[:, 0] < 0][:500] + 0.01 * torch.randn(500, 2, generator=g, dtype=torch.float64)
    precision, recall = precision_recall(collapsed, real)
    assert precision > 0.95 and 0.35 < recall < 0.65
    # far away samples: neither realistic nor covering
    precision, recall = precision_recall(real[:500] + 10.0, real)
    assert precision == 0.0 and recall == 0.0
    # a fresh draw of the same distribution: both high
    precision, recall = precision_recall(torch.randn(2000, 2, generator=g, dtype=torch.float64), real)
    assert precision > 0.9 and recall > 0.9


def test_bad_feature_sets_give_clear_errors():
    with pytest.raises(ValueError, match="feature widths differ"):
        precision_recall(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"must have shape \(N, d\)"):
        kernel_distance(torch.zeros(5), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="k"):
        precision_recall(torch.zeros(3, 2), torch.zeros(5, 2), k=3)


def test_kid_leaves_the_global_random_state_alone():
    a, b = torch.randn(20, 2), torch.randn(20, 2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    kernel_distance(a, b, subset_size=10, subsets=5)
    assert torch.equal(torch.rand(3), expected)

"""Tests for course_ddpm.class_metrics: per-class FID and its floor, feature spread, pixel statistics."""

from __future__ import annotations

import pytest
import torch

from course_ddpm.class_metrics import feature_spread, per_class_fid, pixel_statistics
from course_ddpm.fid import frechet_distance


def _features(n_per_class, shift=0.0, scale=1.0, seed=0, d=3, classes=2):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)  # (N,)
    f = scale * torch.randn(len(labels), d, generator=g, dtype=torch.float64) + 5.0 * labels[:, None] + shift
    return f, labels


def test_per_class_fid_compares_each_class_with_its_own_test_images():
    test, y_test = _features(400, seed=1)
    train, y_train = _features(400, seed=2)
    mine, y = _features(300, seed=3, shift=torch.tensor([1.0, 0.0, 0.0]))
    fids, floors = per_class_fid(mine, y, test, y_test, train, y_train, num_classes=2)
    for k in range(2):  # the same distance, computed class by class by hand
        assert fids[k] == pytest.approx(frechet_distance(mine[y == k], test[y_test == k]))
        assert fids[k] == pytest.approx(1.0, abs=0.2)  # a unit mean shift: FD = 1 + sampling noise
        assert floors[k] < 0.2  # real images of the class, the same n: only the sampling noise
    # the classes are 5 apart: comparing with all test images would be far worse
    assert frechet_distance(mine[y == 0], test) > 5


def test_feature_spread_is_the_ratio_of_total_variances():
    test, y_test = _features(2000, seed=1)
    mine, y = _features(2000, seed=3, scale=0.5)
    spread = feature_spread(mine, y, test, y_test, num_classes=2)
    assert spread == pytest.approx([0.25, 0.25], rel=0.1)


def test_pixel_statistics_on_known_images():
    x = torch.full((2, 1, 2, 2), -1.0)
    x[0, 0, 0, 0] = 1.0  # one white pixel of 8
    x[1, 0, 0, 0] = 0.5  # one grey pixel, on the ink side
    stats = pixel_statistics(x)
    assert stats == pytest.approx({"ink": 2 / 8, "grey": 1 / 8, "mean": (1.0 + 0.75) / 8})


def test_bad_inputs_give_clear_errors():
    f, y = _features(10)
    with pytest.raises(ValueError, match="labels"):
        feature_spread(f, y[:-1], f, y)
    with pytest.raises(ValueError, match="samples of class 1"):
        feature_spread(f[:11], y[:11], f, y)


def test_recommended_guidance_is_the_best_fid_among_accurate_scales():
    from course_ddpm.class_metrics import recommended_guidance

    rows = [
        {"guidance_scale": 1.0, "fid": 20.0, "accuracy_per_digit": [0.99] * 9 + [0.90]},  # best FID, one digit fails
        {"guidance_scale": 2.0, "fid": 30.0, "accuracy_per_digit": [0.98] * 10},
        {"guidance_scale": 3.0, "fid": 60.0, "accuracy_per_digit": [1.0] * 10},
    ]
    assert recommended_guidance(rows)["guidance_scale"] == 2.0
    assert recommended_guidance(rows, min_accuracy=0.9)["guidance_scale"] == 1.0
    with pytest.raises(ValueError, match="no scale reaches"):
        recommended_guidance(rows[:1])

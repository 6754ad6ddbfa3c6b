"""course_ddpm.sliced_wasserstein: zero for equal sets, |d|/sqrt(2) for a shift, and the 1-D W_2
of each projection against an exact optimal assignment (scipy)."""

from __future__ import annotations

import math

import pytest
import torch

from course_ddpm.sliced_wasserstein import directions, sliced_wasserstein


def test_identical_sets_are_at_distance_zero_in_any_order():
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    assert sliced_wasserstein(x, x[torch.randperm(300)]) == 0.0


@pytest.mark.parametrize("d", [(1.0, 0.0), (0.3, -0.4), (2.0, 5.0)])
def test_a_shift_d_gives_its_closed_form(d):
    """Every projection moves by theta . d, so SW_2^2 = mean over theta of (theta . d)^2 = |d|^2 / 2."""
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    shift = torch.tensor(d, dtype=torch.float64)
    sw = sliced_wasserstein(x, x + shift, n_projections=7)
    assert abs(sw - shift.norm().item() / math.sqrt(2)) < 1e-12


def test_the_shift_holds_in_three_dimensions_on_average():
    """Random directions: E[(theta . d)^2] = |d|^2 / 3 for theta uniform on the sphere."""
    x = torch.randn(100, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    shift = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)
    sw = sliced_wasserstein(x, x + shift, n_projections=20_000, generator=torch.Generator().manual_seed(3))
    assert abs(sw - 3.0 / math.sqrt(3)) < 0.02


def test_each_projection_is_the_exact_one_dimensional_w2():
    """Against scipy's optimal assignment (the W_2 coupling of two equal-sized sets), one direction at a time."""
    optimize = pytest.importorskip("scipy.optimize")
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(40, 2, generator=g, dtype=torch.float64), 2 * torch.rand(40, 2, generator=g, dtype=torch.float64)
    theta = directions(5)
    costs = []
    for th in theta:
        a, b = x @ th, y @ th
        cost = (a[:, None] - b[None, :]) ** 2
        rows, cols = optimize.linear_sum_assignment(cost.numpy())
        costs.append(cost[rows, cols].mean().item())
    assert abs(sliced_wasserstein(x, y, n_projections=5) - math.sqrt(sum(costs) / len(costs))) < 1e-12


def test_a_set_against_a_k_times_larger_one_is_the_set_repeated():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(30, 2, generator=g), torch.randn(30, 2, generator=g)
    big = torch.cat([y, y, y])  # the same empirical distribution as y
    assert abs(sliced_wasserstein(x, big) - sliced_wasserstein(x, y)) < 1e-12
    assert abs(sliced_wasserstein(big, x) - sliced_wasserstein(x, y)) < 1e-12


def test_directions_are_unit_vectors_evenly_spaced_in_2d():
    theta = directions(4)
    torch.testing.assert_close(theta.norm(dim=1), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(torch.atan2(theta[:, 1], theta[:, 0]), torch.tensor([0, 1, 2, 3]) * math.pi / 4,
                               check_dtype=False)  # fmt: skip


def test_sizes_that_do_not_divide_are_refused():
    with pytest.raises(ValueError, match="multiple"):
        sliced_wasserstein(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="shapes"):
        sliced_wasserstein(torch.zeros(3, 2), torch.zeros(3, 3))

"""Tests for course_ddpm.energy: the partition function by quadrature and the cost of a grid."""

import math

import pytest
import torch

from course_ddpm.energy import double_well, log10_grid_points, log_partition_1d


def test_gaussian_energy_gives_sqrt_two_pi():
    """E = x^2 / 2: Z = sqrt(2 pi) in closed form, the prior's normaliser."""
    log_z = log_partition_1d(lambda x: x**2 / 2, -12.0, 12.0, 2001)
    assert log_z == pytest.approx(0.5 * math.log(2 * math.pi), abs=1e-12)


def test_double_well_partition_function_against_scipy_and_bessel():
    """Z = int exp(-a (x^2 - 1)^2) dx = (pi / 2) e^{-a/2} [I_{-1/4}(a/2) + I_{1/4}(a/2)] (a > 0; x^2 = u gives a Bessel integral)."""
    special = pytest.importorskip("scipy.special")
    integrate = pytest.importorskip("scipy.integrate")
    a = 4.0
    closed = math.pi / 2 * math.exp(-a / 2) * (special.iv(-0.25, a / 2) + special.iv(0.25, a / 2))
    quad, _ = integrate.quad(lambda x: math.exp(-a * (x * x - 1) ** 2), -math.inf, math.inf)
    assert quad == pytest.approx(closed, rel=1e-10)
    log_z = log_partition_1d(lambda x: double_well(x, a), -3.0, 3.0, 601)
    assert log_z == pytest.approx(math.log(closed), abs=1e-10)
    # too few points miss it: the rule converges, it is not exact
    assert abs(log_partition_1d(lambda x: double_well(x, a), -3.0, 3.0, 7) - math.log(closed)) > 1e-3


def test_log_partition_survives_huge_energies():
    """exp(-E) underflows to 0 for E = 1000 + x^2/2; the log-sum-exp does not: log Z = -1000 + log sqrt(2 pi)."""
    log_z = log_partition_1d(lambda x: 1000.0 + x**2 / 2, -12.0, 12.0, 2001)
    assert log_z == pytest.approx(-1000.0 + 0.5 * math.log(2 * math.pi), abs=1e-10)


def test_double_well_shape():
    x = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(double_well(x, 3.0), torch.tensor([0.0, 3.0, 0.0], dtype=torch.float64))


def test_grid_points():
    assert log10_grid_points(10, 3) == pytest.approx(3.0)
    assert log10_grid_points(100, 784) == pytest.approx(1568.0)
    assert log10_grid_points(256, 784) == pytest.approx(784 * 8 * math.log10(2))


def test_bad_arguments():
    with pytest.raises(ValueError, match="n"):
        log_partition_1d(double_well, -1.0, 1.0, 1)
    with pytest.raises(ValueError, match="hi > lo"):
        log_partition_1d(double_well, 1.0, -1.0, 10)
    with pytest.raises(ValueError, match="dim"):
        log10_grid_points(10, 0)

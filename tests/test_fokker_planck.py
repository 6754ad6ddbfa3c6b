"""Tests for course_ddpm.fokker_planck: the grid solution against the closed-form q(x_t), equilibrium, entropy production."""

import math

import pytest
import torch

from course_ddpm.fokker_planck import fokker_planck_operator, fokker_planck_solve, kl_on_grid, relative_fisher_on_grid
from course_ddpm.schedules import linear_schedule
from course_ddpm.sde import VPSDE
from course_ddpm.toy import GaussianMixture

pytestmark = pytest.mark.usefixtures("one_thread")

SDE = VPSDE.from_schedule(linear_schedule(1000))
MIXTURE = GaussianMixture((0.2, 0.5, 0.3), (-0.6, 0.1, 0.7), (0.1, 0.2, 0.05))
X = torch.linspace(-4, 4, 801, dtype=torch.float64)
DX = float(X[1] - X[0])


def density(t: float) -> torch.Tensor:
    ab = torch.full((X.shape[0], 1), float(SDE.alpha_bar(t)), dtype=torch.float64)
    return MIXTURE.log_prob_at(X[:, None], ab).exp()


def test_grid_solution_matches_the_closed_form_noised_mixture():
    p0 = density(0.0)
    for t in (0.05, 0.2, 0.6):
        p_t = fokker_planck_solve(SDE, p0, X, t)
        assert float((p_t - density(t)).abs().max()) < 2e-3 * float(density(t).max())
        assert float(p_t.sum()) * DX == pytest.approx(1.0, abs=1e-9)


def test_operator_conserves_mass_and_has_the_boltzmann_distribution_as_equilibrium():
    L = fokker_planck_operator(X)
    assert float(L.sum(0).abs().max()) < 1e-9  # columns sum to 0
    boltzmann = torch.exp(-(X**2) / 2) / math.sqrt(2 * math.pi)  # exp(-U) / Z, U = x^2 / 2
    assert float((L @ boltzmann).abs().max()) < 1e-4 * float((L @ density(0.0)).abs().max())


def test_kl_to_equilibrium_decreases_at_the_rate_of_entropy_production():
    """d/dt KL(p_t || pi) = -1/2 beta(t) I(p_t || pi), and KL falls monotonically."""
    pi = torch.exp(-(X**2) / 2) / math.sqrt(2 * math.pi)
    ts = torch.linspace(0.0, 1.0, 41, dtype=torch.float64)
    kl = torch.stack([kl_on_grid(density(float(t)), pi, DX) for t in ts])
    assert bool((kl[1:] < kl[:-1]).all())
    assert float(kl[-1]) < 1e-3
    for t in (0.1, 0.3):
        h = 1e-4
        rate = (kl_on_grid(density(t + h), pi, DX) - kl_on_grid(density(t - h), pi, DX)) / (2 * h)
        production = 0.5 * SDE.beta(t) * relative_fisher_on_grid(density(t), pi, X)
        assert float(rate) == pytest.approx(-float(production), rel=1e-3)

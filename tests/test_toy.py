"""Tests for course_ddpm.toy: the Gaussian mixture with a known density and optimal denoiser.

Checked against independent computations: autograd, moments from the formula, numerical
quadrature over x_0, a histogram of draws, and the closed form for one Gaussian.
"""

import math

import pytest
import torch

from course_ddpm.forward import q_sample
from course_ddpm.schedules import cosine_schedule, linear_schedule
from course_ddpm.toy import GaussianMixture


pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops (tests/conftest.py)


MIXTURE = GaussianMixture((0.2, 0.5, 0.3), (-0.6, 0.1, 0.7), (0.1, 0.2, 0.05))
SCHEDULE = linear_schedule(200, rescale=True)


def standard_error(x: torch.Tensor) -> float:
    return (x.std() / math.sqrt(x.numel())).item()


def full_t(step: int, batch: int) -> torch.Tensor:
    return torch.full((batch,), step, dtype=torch.long)


def posterior_mean_x0_by_quadrature(mixture: GaussianMixture, x_t: torch.Tensor, ab: float) -> torch.Tensor:
    """E[x0 | x_t] = ∫ x0 p(x0) q(x_t|x0) dx0 / ∫ p(x0) q(x_t|x0) dx0, on a fine grid (1-D x_t)."""
    grid = torch.linspace(-3.0, 3.0, 24_001, dtype=torch.float64)  # (G,)
    log_prior = mixture.log_prob(grid[:, None])  # (G,)
    log_lik = -0.5 * (x_t[:, None] - math.sqrt(ab) * grid) ** 2 / (1 - ab)  # (N, G)
    weights = torch.softmax(log_prior + log_lik, dim=1)
    return (weights * grid).sum(1)


# --- Construction and validation ------------------------------------------------------


@pytest.mark.parametrize(
    "weights, means, stds, match",
    [
        ((), (), (), "non-empty"),
        ((0.5, 0.5), (0.0,), (1.0, 1.0), "equal length"),
        ((0.5, 0.4), (0.0, 1.0), (1.0, 1.0), "sum to 1"),
        ((1.5, -0.5), (0.0, 1.0), (1.0, 1.0), "positive"),
        ((1.0,), (0.0,), (0.0,), "stds"),
    ],
)
def test_invalid_mixtures_are_rejected(weights, means, stds, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(weights, means, stds)


def test_bad_arguments_raise_clear_errors():
    x = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="x must be a float tensor"):
        MIXTURE.log_prob(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="x_t"):
        MIXTURE.score(SCHEDULE, torch.zeros(3, 2, dtype=torch.long), full_t(0, 3))
    with pytest.raises(TypeError, match="integer"):
        MIXTURE.noised_log_prob(SCHEDULE, x, torch.zeros(3))
    with pytest.raises(ValueError, match=r"\[0, T\)"):
        MIXTURE.optimal_eps(SCHEDULE, x, full_t(200, 3))
    with pytest.raises(ValueError, match="batch size"):
        MIXTURE.score(SCHEDULE, x, full_t(0, 4))


def test_noised_log_prob_rejects_integer_data():
    with pytest.raises(TypeError, match="x_t"):
        MIXTURE.noised_log_prob(SCHEDULE, torch.zeros(3, 2, dtype=torch.long), full_t(0, 3))


def test_gaussian_is_the_one_component_mixture():
    single = GaussianMixture.gaussian(0.3, 0.5)
    assert (single.weights, single.means, single.stds) == ((1.0,), (0.3,), (0.5,))


# --- Density and samples ----------------------------------------------------------------


def test_log_prob_matches_an_independent_density_and_sums_over_dimensions():
    x = torch.tensor([[-0.6, 0.0], [0.7, 2.0], [0.1, -1.0]], dtype=torch.float64)
    density = sum(
        w * torch.distributions.Normal(torch.tensor(m, dtype=torch.float64), s).log_prob(x).exp()
        for w, m, s in zip(MIXTURE.weights, MIXTURE.means, MIXTURE.stds)
    )
    torch.testing.assert_close(MIXTURE.log_prob(x), density.log().sum(1))


def test_sample_moments_match_the_formula():
    n = 400_000
    x = MIXTURE.sample((n, 1), generator=torch.Generator().manual_seed(0))
    assert x.shape == (n, 1) and x.dtype == torch.float64
    w, m, s = (torch.tensor(v, dtype=torch.float64) for v in (MIXTURE.weights, MIXTURE.means, MIXTURE.stds))
    mean = (w * m).sum().item()
    var = (w * (s**2 + m**2)).sum().item() - mean**2
    assert abs(x.mean().item() - mean) < 4 * math.sqrt(var / n)
    assert x.var().item() == pytest.approx(var, rel=0.01)
    # The CDF at a point, P(x < -0.3) = sum_k w_k Phi((-0.3 - m_k) / s_k), checks the component shares.
    cdf = (w * torch.special.ndtr((-0.3 - m) / s)).sum().item()
    assert abs((x < -0.3).double().mean().item() - cdf) < 4 * math.sqrt(cdf * (1 - cdf) / n)
    again = MIXTURE.sample((n, 1), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, again)


@pytest.mark.parametrize("step", [0, 20, 100, 199])
def test_noised_log_prob_is_the_density_of_q_sample_draws(step):
    """A histogram of x_t = q_sample(x0 ~ p) matches exp(noised_log_prob) bin by bin."""
    g = torch.Generator().manual_seed(1 + step)
    n = 200_000
    x0 = MIXTURE.sample((n, 1), generator=g)
    x_t = q_sample(SCHEDULE, x0, full_t(step, n), torch.randn(x0.shape, generator=g, dtype=torch.float64))

    edges = torch.linspace(-5.0, 5.0, 201, dtype=torch.float64)
    counts = torch.histogram(x_t.flatten(), bins=edges).hist
    # Expected counts: the density integrated over each bin (Simpson's rule, 3 points).
    left, right = edges[:-1], edges[1:]
    points = torch.stack([left, (left + right) / 2, right], dim=1).reshape(-1, 1)  # (3 * bins, 1)
    density = MIXTURE.noised_log_prob(SCHEDULE, points, full_t(step, points.shape[0])).exp().reshape(-1, 3)
    expected = n * (right - left) * (density[:, 0] + 4 * density[:, 1] + density[:, 2]) / 6
    assert expected.sum().item() == pytest.approx(n, rel=1e-4)  # the density integrates to 1
    assert bool(((counts - expected).abs() <= 5 * expected.sqrt() + 5).all())


def test_noised_log_prob_of_a_single_gaussian_has_the_closed_form():
    """x0 ~ N(m, s^2) gives q(x_t) = N(sqrt(ab) m, ab s^2 + 1 - ab) (Gaussian convolution)."""
    m, s = -0.2, 0.4
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]
    for step in (0, 50, 199):
        ab = SCHEDULE.alpha_bar[step].item()
        mean = torch.tensor(math.sqrt(ab) * m, dtype=torch.float64)
        normal = torch.distributions.Normal(mean, math.sqrt(ab * s**2 + 1 - ab))
        got = GaussianMixture.gaussian(m, s).noised_log_prob(SCHEDULE, x, full_t(step, 13))
        torch.testing.assert_close(got, normal.log_prob(x[:, 0]))


# --- Score and optimal denoiser -----------------------------------------------------------


@pytest.mark.parametrize("step", [0, 7, 120, 199])
def test_score_is_the_gradient_of_noised_log_prob(step):
    g = torch.Generator().manual_seed(10 + step)
    x_t = torch.randn(16, 2, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    t = full_t(step, 16)
    (grad,) = torch.autograd.grad(MIXTURE.noised_log_prob(SCHEDULE, x_t, t).sum(), x_t)
    torch.testing.assert_close(MIXTURE.score(SCHEDULE, x_t.detach(), t), grad)


def test_optimal_eps_of_a_single_gaussian_has_the_closed_form():
    """For x0 ~ N(m, s^2): E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) m) / (ab s^2 + 1 - ab)."""
    m, s = 0.4, 0.3
    single = GaussianMixture.gaussian(m, s)
    schedule = cosine_schedule(50)
    x_t = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]
    for step in (0, 25, 49):
        ab = schedule.alpha_bar[step].item()
        expected = math.sqrt(1 - ab) * (x_t - math.sqrt(ab) * m) / (ab * s**2 + 1 - ab)
        torch.testing.assert_close(single.optimal_eps(schedule, x_t, full_t(step, 13)), expected)


@pytest.mark.parametrize("step", [5, 60, 150])
def test_optimal_eps_matches_quadrature_over_x0(step):
    """E[eps | x_t] = (x_t - sqrt(ab) E[x0 | x_t]) / sqrt(1 - ab), with E[x0 | x_t] by quadrature."""
    ab = SCHEDULE.alpha_bar[step].item()
    x_t = torch.linspace(-2.5, 2.5, 41, dtype=torch.float64)
    x0_mean = posterior_mean_x0_by_quadrature(MIXTURE, x_t, ab)
    expected = (x_t - math.sqrt(ab) * x0_mean) / math.sqrt(1 - ab)
    got = MIXTURE.optimal_eps(SCHEDULE, x_t[:, None], full_t(step, 41))[:, 0]
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)


def test_optimal_eps_is_the_regression_of_eps_on_x_t():
    """E[eps | x_t] leaves a residual orthogonal to any function of x_t, so no predictor beats its MSE."""
    g = torch.Generator().manual_seed(20)
    n, step = 200_000, 30
    x0 = MIXTURE.sample((n, 1), generator=g)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = q_sample(SCHEDULE, x0, full_t(step, n), eps)
    eps_pred = MIXTURE.optimal_eps(SCHEDULE, x_t, full_t(step, n))
    residual = eps - eps_pred

    for test_function in (torch.ones_like(x_t), x_t, torch.tanh(3 * x_t), x_t**2):
        product = residual * test_function
        assert abs(product.mean().item()) < 4 * standard_error(product)

    mse = (residual**2).mean().item()
    for perturbed in (eps_pred + 0.05, 1.1 * eps_pred, eps_pred + 0.1 * torch.tanh(3 * x_t), 0.9 * x_t):
        assert ((eps - perturbed) ** 2).mean().item() > mse


def test_eps_model_is_the_closed_form_denoiser_and_ignores_labels():
    """The callable, like a network, gives E[eps | x_t] of x0 ~ N(m, s^2) in closed form, whatever the labels."""
    m, s = -0.3, 0.6
    model = GaussianMixture.gaussian(m, s).eps_model(SCHEDULE)
    x_t = torch.randn(5, 3, generator=torch.Generator().manual_seed(21), dtype=torch.float64)
    t = torch.tensor([0, 1, 50, 100, 199])
    ab = SCHEDULE.alpha_bar[t][:, None]
    expected = (1 - ab).sqrt() * (x_t - ab.sqrt() * m) / (ab * s**2 + 1 - ab)
    torch.testing.assert_close(model(x_t, t), expected)
    torch.testing.assert_close(model(x_t, t, torch.arange(5)), expected)


# ------------------------------------------------------------- classes and guidance
def test_conditional_eps_model_is_each_components_denoiser_and_the_null_label_the_mixtures():
    model = MIXTURE.conditional_eps_model(SCHEDULE)
    assert model.config.num_classes == 3  # the null label
    x_t = torch.linspace(-2, 2, 8, dtype=torch.float64).reshape(8, 1)
    t = torch.tensor([0, 10, 50, 100, 150, 199, 30, 70])
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    eps = model(x_t, t, y)
    for i in range(8):
        k = int(y[i])
        data = MIXTURE if k == 3 else GaussianMixture((1.0,), (MIXTURE.means[k],), (MIXTURE.stds[k],))
        expected = data.optimal_eps(SCHEDULE, x_t[i : i + 1], t[i : i + 1])
        torch.testing.assert_close(eps[i : i + 1], expected)
    torch.testing.assert_close(model(x_t, t), MIXTURE.optimal_eps(SCHEDULE, x_t, t))  # y = None: unconditional
    with pytest.raises(ValueError, match="k must lie"):
        MIXTURE.component(3)


def test_guided_log_density_is_the_tilted_mixture():
    x = torch.linspace(-1.5, 1.5, 7, dtype=torch.float64).reshape(7, 1)
    for s in (0.0, 1.0, 3.0):
        got = MIXTURE.guided_log_density(x, 2, s)
        log_p_y = MIXTURE.component(2).log_prob(x) + math.log(MIXTURE.weights[2]) - MIXTURE.log_prob(x)  # Bayes
        expected = MIXTURE.component(2).log_prob(x) + (s - 1) * log_p_y  # p(x|y) p(y|x)^(s-1), up to a constant
        diff = got - expected
        torch.testing.assert_close(diff, diff[:1].expand_as(diff))  # equal up to one constant


def test_correlated_gaussian_denoiser_is_tweedie_of_its_noised_density():
    from course_ddpm.toy import CorrelatedGaussian

    data = CorrelatedGaussian((0.5, -0.2), ((1.0, 0.6), (0.6, 0.5)))
    x_t = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    t = torch.tensor([0, 20, 60, 120, 199])
    m, S = torch.tensor(data.mean, dtype=torch.float64), torch.tensor(data.cov, dtype=torch.float64)
    ab = SCHEDULE.alpha_bar[t].reshape(5, 1, 1)
    noised = torch.distributions.MultivariateNormal(ab[:, :, 0].sqrt() * m, ab * S + (1 - ab) * torch.eye(2))
    (score,) = torch.autograd.grad(noised.log_prob(x_t).sum(), x_t)
    expected = -(1 - ab[:, :, 0]).sqrt() * score  # eps = -sqrt(1 - alpha_bar) grad log q(x_t)
    torch.testing.assert_close(data.eps_model(SCHEDULE)(x_t.detach(), t), expected)
    x = data.sample(200_000, torch.Generator().manual_seed(1))
    torch.testing.assert_close(torch.cov(x.T), S, atol=1e-2, rtol=0)
    mean, cov = data.conditional(torch.tensor([True, False]), torch.tensor([1.5]))
    near = x[(x[:, 0] - 1.5).abs() < 0.02, 1]  # draws with x_1 close to 1.5
    assert float(mean) == pytest.approx(near.mean().item(), abs=0.03)
    assert float(cov) == pytest.approx(near.var().item(), rel=0.1)


def test_x0_law_from_standard_normal_start_matches_the_ddpm_sampler():
    """The closed form against Ho et al.'s Algorithm 2 run with the exact denoiser of N(m, s^2)."""
    import warnings

    from course_ddpm.sampling import sample
    from course_ddpm.toy import x0_law_from_standard_normal_start

    m, s = 3.0, 1.5
    assert x0_law_from_standard_normal_start(m, s, 0.0) == (m, s)  # pure noise at T: no bias
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # linear T=300 keeps signal in x_T: the point of the test
        schedule = linear_schedule(300)
    data = GaussianMixture.gaussian(m, s)
    n = 20_000
    x = sample(data.eps_model(schedule), schedule, (n, 1), sampler="ddpm", clip_x0=False, dtype=torch.float64,
               progress=False, generator=torch.Generator().manual_seed(0)).samples  # fmt: skip
    mean, std = x0_law_from_standard_normal_start(m, s, schedule.alpha_bar[-1].item())
    assert m - mean > 0.2  # the bias is large here ...
    assert x.mean().item() == pytest.approx(mean, abs=4 * std / math.sqrt(n))  # ... and the formula predicts it
    assert x.std().item() == pytest.approx(std, rel=0.03)  # Algorithm 2's beta_tilde steps: a slightly narrow chain
    # started from the right q(x_T) instead, the same chain has no bias: the start is the cause
    x_T = q_sample(schedule, data.sample((n, 1), torch.Generator().manual_seed(1)), full_t(299, n),
                   torch.randn(n, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))  # fmt: skip
    y = sample(data.eps_model(schedule), schedule, (n, 1), sampler="ddpm", clip_x0=False, x_T=x_T, progress=False,
               generator=torch.Generator().manual_seed(3)).samples  # fmt: skip
    assert y.mean().item() == pytest.approx(m, abs=4 * s / math.sqrt(n))


def test_x0_law_from_standard_normal_start_rejects_bad_arguments():
    from course_ddpm.toy import x0_law_from_standard_normal_start

    with pytest.raises(ValueError, match="alpha_bar_T"):
        x0_law_from_standard_normal_start(0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="std"):
        x0_law_from_standard_normal_start(0.0, 0.0, 0.5)

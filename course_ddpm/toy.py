"""Toy data with a known density and a known optimal denoiser: a 1-D Gaussian mixture.

Each coordinate of x_0 is drawn independently from

    p(x_0) = sum_k w_k N(x_0; m_k, s_k^2).

Noising by q(x_t | x_0) keeps it a Gaussian mixture (a Gaussian convolved with a
Gaussian), with means sqrt(alpha_bar_t) m_k and variances alpha_bar_t s_k^2 + 1 - alpha_bar_t.
So the score grad log q(x_t) is known in closed form, and with it the optimal noise
predictor E[eps | x_t] = -sqrt(1 - alpha_bar_t) grad log q(x_t) (Tweedie; Luo 2022,
"Three Equivalent Interpretations"). Tests and the ELBO notebook use it as an exact
"trained network", so every formula can be checked without training anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from course_ddpm.schedules import Schedule, broadcast
from course_ddpm.validation import check_float


@dataclass(frozen=True)
class GaussianMixture:
    """A 1-D Gaussian mixture applied to every coordinate independently.

    Attributes:
        weights: mixture weights w_k (positive, summing to 1).
        means: component means m_k.
        stds: component standard deviations s_k > 0.
    """

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.weights)
        if k == 0 or len(self.means) != k or len(self.stds) != k:
            raise ValueError("weights, means and stds must be non-empty and of equal length")
        if any(w <= 0 for w in self.weights) or abs(sum(self.weights) - 1.0) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {self.weights}")
        if any(s <= 0 for s in self.stds):
            raise ValueError(f"stds must be positive, got {self.stds}")

    @classmethod
    def gaussian(cls, mean: float = 0.0, std: float = 1.0) -> "GaussianMixture":
        """The one-component case N(mean, std^2)."""
        return cls((1.0,), (float(mean),), (float(std),))

    def _params(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kw = dict(dtype=like.dtype, device=like.device)
        return torch.tensor(self.weights, **kw), torch.tensor(self.means, **kw), torch.tensor(self.stds, **kw)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x_0 of the given shape, float64, each entry independently."""
        w, m, s = self._params(torch.empty(0, dtype=torch.float64))
        k = torch.multinomial(w, math.prod(shape), replacement=True, generator=generator).reshape(shape)
        z = torch.randn(shape, generator=generator, dtype=torch.float64)
        return m[k] + s[k] * z

    def _log_components(
        self, x: torch.Tensor, alpha_bar: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log w_k + log N(x; mu_k, v_k) for every component k, elementwise: ``(B, ...)`` -> ``(B, ..., K)``.

        Without ``alpha_bar`` the components are the data's, mu_k = m_k and v_k = s_k^2; with
        ``alpha_bar`` ``(B, 1, ..., 1)`` they are those of q(x_t) (a Gaussian convolved with the
        forward kernel of Ho et al. eq. 4): mu_k = sqrt(alpha_bar) m_k, v_k = alpha_bar s_k^2 + 1 - alpha_bar.

        Returns:
            the log-terms ``(B, ..., K)``, and mu and v (broadcastable to them).
        """
        w, m, s = self._params(x)
        if alpha_bar is None:
            mu, v = m, s**2  # (K,)
        else:
            ab = alpha_bar.unsqueeze(-1)  # (B, 1, ..., 1, 1)
            mu = ab.sqrt() * m  # (B, 1, ..., K)
            v = ab * s**2 + 1.0 - ab  # (B, 1, ..., K)
        x = x.unsqueeze(-1)  # (B, ..., 1)
        log_comp = w.log() - 0.5 * (x - mu) ** 2 / v - 0.5 * torch.log(2 * math.pi * v)  # (B, ..., K)
        return log_comp, mu, v

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) summed over all but the batch dimension: ``(B, ...)`` -> ``(B,)``, in nats."""
        check_float("x", x)
        log_comp, _, _ = self._log_components(x)
        return torch.logsumexp(log_comp, dim=-1).flatten(1).sum(1)

    def noised_log_prob(self, schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log q(x_t) of the noised data, ``(B, ...)`` -> ``(B,)`` (Gaussian convolution, closed form)."""
        check_float("x_t", x_t)
        return self.log_prob_at(x_t, broadcast(schedule.alpha_bar, t, x_t))

    def log_prob_at(self, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """log q(x_t) at any noise level alpha_bar (continuous time, :mod:`course_ddpm.sde`).

        Args:
            x_t: ``(B, ...)``. alpha_bar: ``(B, 1, ..., 1)`` in (0, 1].
        Returns:
            ``(B,)`` in nats.
        """
        check_float("x_t", x_t)
        log_comp, _, _ = self._log_components(x_t, alpha_bar.to(x_t.dtype))
        return torch.logsumexp(log_comp, dim=-1).flatten(1).sum(1)

    def score(self, schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log q(x_t), elementwise, ``(B, ...)``.

        For a mixture, grad log q = sum_k r_k(x) * (-(x - mu_k) / v_k) with responsibilities
        r_k = w_k N(x; mu_k, v_k) / q(x), mu_k = sqrt(alpha_bar) m_k, v_k = alpha_bar s_k^2 + 1 - alpha_bar.
        """
        check_float("x_t", x_t)
        return self.score_at(x_t, broadcast(schedule.alpha_bar, t, x_t))

    def score_at(self, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """grad_x log q(x_t) at any noise level alpha_bar ``(B, 1, ..., 1)`` in (0, 1]: ``(B, ...)``.

        The exact score of the continuous-time process of :mod:`course_ddpm.sde`; at
        alpha_bar = 1 it is the data's own score grad log p(x).
        """
        check_float("x_t", x_t)
        log_comp, mu, v = self._log_components(x_t, alpha_bar.to(x_t.dtype))  # (B, ..., K)
        r = torch.softmax(log_comp, dim=-1)
        return (r * (-(x_t.unsqueeze(-1) - mu) / v)).sum(-1)

    def optimal_eps(self, schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """E[eps | x_t] = -sqrt(1 - alpha_bar_t) grad log q(x_t): the minimiser of L_simple."""
        return -broadcast((1.0 - schedule.alpha_bar).sqrt(), t, x_t) * self.score(schedule, x_t, t)

    def eps_model(self, schedule: Schedule):
        """The optimal denoiser as a callable ``model(x_t, t) -> eps_pred``, like a trained network."""

        def model(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            return self.optimal_eps(schedule, x_t, t)

        return model

    # ------------------------------------------------ classes: component k = label y = k
    def component(self, k: int) -> "GaussianMixture":
        """p(x_0 | y = k): component k alone, the class-conditional density when the label is the component."""
        if not 0 <= k < len(self.weights):
            raise ValueError(f"k must lie in [0, {len(self.weights)}), got {k}")
        return GaussianMixture((1.0,), (self.means[k],), (self.stds[k],))

    def conditional_eps_model(self, schedule: Schedule):
        """The optimal class-conditional denoiser, ``model(x_t, t, y) -> eps_pred``, like a trained one.

        Label y = k predicts the noise of component k, E[eps | x_t, y = k]; the null label
        y = K (the number of components, ``model.config.num_classes``) and y = None that of the
        whole mixture, E[eps | x_t]: what classifier-free training teaches one network.
        """
        K = len(self.weights)
        per_label = [self.component(k).eps_model(schedule) for k in range(K)] + [self.eps_model(schedule)]

        def model(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            y = torch.full_like(t, K) if y is None else y  # (B,)
            eps = torch.zeros_like(x_t)
            for k, eps_model in enumerate(per_label):
                chosen = (y == k).reshape(-1, *[1] * (x_t.ndim - 1))  # (B, 1, ...)
                eps = torch.where(chosen, eps_model(x_t, t), eps)
            return eps

        model.config = SimpleNamespace(num_classes=K)
        return model

    def guided_log_density(self, x: torch.Tensor, k: int, guidance_scale: float) -> torch.Tensor:
        """Unnormalised log of p(x | y=k)^s p(x)^(1-s) = p(x | y=k) p(y=k | x)^(s-1) (up to a constant).

        The density classifier-free guidance with scale s aims at when applied to clean data
        (Ho & Salimans 2022, eq. 6 at t = 0); at t > 0 the sampler guides the *noised*
        densities, so its samples only approximate it. ``(B, ...)`` -> ``(B,)``, like :meth:`log_prob`.
        """
        s = guidance_scale
        return s * self.component(k).log_prob(x) + (1.0 - s) * self.log_prob(x)



@dataclass(frozen=True)
class CorrelatedGaussian:
    """Data x_0 ~ N(m, S) in d dimensions: the simplest data whose coordinates depend on each other.

    Its noised density stays Gaussian, q(x_t) = N(sqrt(alpha_bar) m, alpha_bar S + (1 - alpha_bar) I),
    so the optimal denoiser is known, E[eps | x_t] = sqrt(1 - alpha_bar) C^-1 (x_t - sqrt(alpha_bar) m)
    with C that covariance, and so is every conditional p(x_B | x_A) (Schur complement): the
    exact answer an inpainting sampler should reproduce.

    Attributes:
        mean: ``(d,)`` m.  cov: ``(d, d)`` S, symmetric positive definite.
    """

    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]

    def _m_S(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.mean, dtype=torch.float64), torch.tensor(self.cov, dtype=torch.float64)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, d)`` float64 draws of x_0."""
        m, S = self._m_S()
        z = torch.randn(n, len(m), generator=generator, dtype=torch.float64)
        return m + z @ torch.linalg.cholesky(S).T

    def eps_model(self, schedule: Schedule):
        """The optimal denoiser ``model(x_t, t) -> eps_pred`` for x_t ``(B, d)``."""
        m, S = self._m_S()

        def model(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            alpha_bar = schedule.alpha_bar.to(torch.float64)[t].reshape(-1, 1, 1)  # (B, 1, 1)
            C = alpha_bar * S + (1.0 - alpha_bar) * torch.eye(len(m), dtype=torch.float64)  # (B, d, d)
            r = (x_t.double() - alpha_bar[:, :, 0].sqrt() * m).unsqueeze(-1)  # (B, d, 1)
            eps = (1.0 - alpha_bar).sqrt() * torch.linalg.solve(C, r)  # (B, d, 1)
            return eps.squeeze(-1).to(x_t.dtype)

        return model

    def conditional(self, known: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(u,)`` and covariance ``(u, u)`` of the unknown coordinates given x_0[known] = values.

        mu_U + S_UA S_AA^-1 (values - mu_A) and S_UU - S_UA S_AA^-1 S_AU, with A = ``known``
        (a ``(d,)`` bool mask) and U the rest.
        """
        m, S = self._m_S()
        A, U = known, ~known
        gain = S[U][:, A] @ torch.linalg.inv(S[A][:, A])  # (u, a)
        return m[U] + gain @ (values.double() - m[A]), S[U][:, U] - gain @ S[A][:, U]


def x0_law_from_standard_normal_start(mean: float, std: float, alpha_bar_T: float) -> tuple[float, float]:
    """Mean and std of the samples when the exact reverse chain of Gaussian data starts from N(0, 1).

    For data x_0 ~ N(m, s^2) the chain's last latent is q(x_T) = N(sqrt(alpha_bar_T) m,
    alpha_bar_T s^2 + 1 - alpha_bar_T) (Ho et al. 2020 eq. 4), and (x_0, x_T) are jointly Gaussian,
    so the exact reverse chain from x_T ends in

        q(x_0 | x_T) = N(m + k (x_T - sqrt(alpha_bar_T) m),  s^2 - k sqrt(alpha_bar_T) s^2),
        k = sqrt(alpha_bar_T) s^2 / (alpha_bar_T s^2 + 1 - alpha_bar_T)

    (Bayes' rule for two Gaussians, the regression of x_0 on x_T). A sampler starts from
    x_T ~ N(0, 1) instead of q(x_T); averaging q(x_0 | x_T) over that start gives samples with

        mean = m (1 - k sqrt(alpha_bar_T)),   variance = s^2 (1 - k sqrt(alpha_bar_T)) + k^2.

    With alpha_bar_T -> 0 (k -> 0) they are the data's m and s^2: only a schedule that ends in
    pure noise is sampled without bias, whatever the denoiser.

    Args:
        mean, std: m and s of the data. alpha_bar_T: alpha_bar of the last step, in [0, 1).

    Returns:
        (mean, std) of the samples.
    """
    if not 0.0 <= alpha_bar_T < 1.0:
        raise ValueError(f"alpha_bar_T must lie in [0, 1), got {alpha_bar_T}")
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    root = math.sqrt(alpha_bar_T)
    k = root * std**2 / (alpha_bar_T * std**2 + 1.0 - alpha_bar_T)  # regression slope of x_0 on x_T
    return mean * (1.0 - k * root), math.sqrt(std**2 * (1.0 - k * root) + k**2)

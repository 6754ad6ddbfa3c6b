"""Exact log-likelihoods from the probability-flow ODE: the diffusion as a continuous flow.

The ODE dx/dt = v(x, t) of :mod:`course_ddpm.ode` is a continuous normalising flow, so the
density along a solution obeys the instantaneous change of variables (Chen et al. 2018,
arXiv:1806.07366, Theorem 1; Song et al. 2021, arXiv:2011.13456, eq. 39 of appendix D.2):

    d log p_t(x(t)) / dt = -div v(x(t), t)
    =>  log p_0(x(0)) = log p_1(x(1)) + int_0^1 div v(x(t), t) dt,

with p_1 the prior N(0, I). The divergence is the trace of the Jacobian dv/dx:

* :func:`divergence_exact` -- D backward passes, for low-dimensional data (the toy);
* :func:`divergence_hutchinson` -- one: E_z[z^T (dv/dx) z] = tr(dv/dx) for any z with
  E[z z^T] = I (Hutchinson 1989; FFJORD, Grathwohl et al. 2019, arXiv:1810.01367), with
  Rademacher z held fixed along one solve. The estimate of log p is then unbiased.

Bits/dim of 8-bit images
------------------------
The ELBO of :mod:`course_ddpm.bound` scores the 256-level grid of [-1, 1] with bins of width
2/255 around each level (Ho et al. eq. 13). The same discrete probability is bounded here
by uniform dequantisation, y = x0 + u with u ~ U(-1/255, 1/255)^D: by Jensen,

    -log P(x0) <= E_u[-log p(x0 + u)] - D log(2/255),

so bits/dim = -log p(y) / (D ln 2) + log2(255/2) (:func:`bits_per_dim_of_density`), comparable
with :func:`course_ddpm.evaluation.bits_per_dim`: both are upper bounds on -log2 P(x0) / D over the
same bins, of the network read as a flow here and as a Markov chain there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from course_ddpm.ode import ode_drift, solve
from course_ddpm.sde import VPSDE, ScoreFn, score_from_model
from course_ddpm.validation import check_choice, check_count, check_float

#: bins of width 2/255 around the 256 levels of [-1, 1] (Ho et al. eq. 13)
BIN_WIDTH = 2.0 / 255.0


@dataclass(frozen=True, eq=False)
class Likelihood:
    """Result of :func:`ode_log_likelihood`; all ``(B,)`` float64 except ``nfe``.

    log_p: log p_0(x0) in nats. log_prior: log p_1(x(1)). delta: int div v dt. nfe: function evaluations.
    """

    log_p: torch.Tensor
    log_prior: torch.Tensor
    delta: torch.Tensor
    nfe: int


def divergence_exact(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """fn(x) and tr(d fn / dx) of a per-sample map ``(B, ...)`` -> ``(B, ...)``, one backward pass per dimension.

    Returns:
        fn(x) ``(B, ...)`` (detached) and the divergence ``(B,)``.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x).flatten(1)  # (B, D)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(out.shape[1]):
            (grad,) = torch.autograd.grad(out[:, i].sum(), x, retain_graph=i + 1 < out.shape[1])
            div = div + grad.flatten(1)[:, i]
    return out.detach().reshape(x.shape), div


def divergence_hutchinson(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """fn(x) and Hutchinson's estimate z^T (d fn / dx) z of its divergence, one vector-Jacobian product.

    Args:
        z: ``(B, ...)`` probe with E[z z^T] = I (e.g. :func:`rademacher`).

    Returns:
        fn(x) ``(B, ...)`` (detached) and the estimate ``(B,)``.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x)
        (vjp,) = torch.autograd.grad(out, x, z)  # z^T d fn/dx, (B, ...)
    return out.detach(), (vjp * z).flatten(1).sum(1)


def rademacher(shape: tuple[int, ...], generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
    """Entries +1 or -1 with probability 1/2 each (E[z z^T] = I, the lowest-variance Hutchinson probe)."""
    return torch.randint(0, 2, shape, generator=generator).to(dtype) * 2 - 1


def standard_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I) summed over all but the batch dimension: ``(B, ...)`` -> ``(B,)``."""
    flat = x.flatten(1).double()
    return -0.5 * (flat**2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


def ode_log_likelihood(
    sde: VPSDE,
    score_fn: ScoreFn,
    x0: torch.Tensor,
    *,
    divergence: str = "exact",
    t_start: float = 1e-5,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
    prior_log_prob: Callable[[torch.Tensor], torch.Tensor] = standard_normal_log_prob,
) -> Likelihood:
    """log p(x0) under the probability-flow ODE (Chen et al. 2018, Thm 1; Song et al. eq. 39).

    Solves the augmented system d/dt [x, delta] = [v(x, t), div v(x, t)] from t_start to 1,
    then log p(x0) = prior_log_prob(x(1)) + delta(1).

    Args:
        x0: ``(B, ...)`` data (placed at t = t_start).
        divergence: "exact" (one backward pass per dimension) or "hutchinson" (one Rademacher
            probe per example, drawn from ``generator`` and fixed along the solve).
        t_start: start time; Song et al. use 1e-5, where 1 - alpha_bar(t) stays > 0. 0 is fine for
            an exact score of a density with no point masses.
        prior_log_prob: log p_1 ``(B, ...)`` -> ``(B,)``; N(0, I) by default.
    """
    check_float("x0", x0)
    check_choice("divergence", divergence, ("exact", "hutchinson"))
    shape, B = x0.shape, x0.shape[0]
    D = x0[0].numel()
    z = rademacher(tuple(shape), generator, x0.dtype).to(x0.device) if divergence == "hutchinson" else None

    def rhs(t: float, state: torch.Tensor) -> torch.Tensor:
        x = state[:, :D].reshape(shape)
        t_vec = torch.full((B,), t, dtype=torch.float64)

        def v(x_: torch.Tensor) -> torch.Tensor:
            return ode_drift(sde, score_fn, x_, t_vec)

        dx, div = divergence_exact(v, x) if z is None else divergence_hutchinson(v, x, z)
        return torch.cat([dx.flatten(1), div[:, None]], dim=1)  # (B, D + 1)

    state0 = torch.cat([x0.flatten(1), torch.zeros(B, 1, dtype=x0.dtype, device=x0.device)], dim=1)
    end = solve(rhs, state0, (t_start, 1.0), rtol=rtol, atol=atol)
    x1, delta = end.x[:, :D].reshape(shape), end.x[:, D].double()
    log_prior = prior_log_prob(x1).double()
    return Likelihood(log_p=log_prior + delta, log_prior=log_prior, delta=delta, nfe=end.nfe)


def dequantise(x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """y = x0 + u, u ~ U(-1/255, 1/255): uniform over each pixel's bin of width 2/255 (``(B, ...)``)."""
    check_float("x0", x0)
    u = (torch.rand(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device) - 0.5) * BIN_WIDTH
    return x0 + u


def bits_per_dim_of_density(log_p: torch.Tensor, num_dims: int) -> torch.Tensor:
    """Bits/dim of the 256-level data from the density of its dequantised copy: -log p / (D ln 2) + log2(255/2)."""
    return -log_p / (num_dims * math.log(2.0)) - math.log2(BIN_WIDTH)


def ode_bits_per_dim(
    model: Callable[..., torch.Tensor],
    sde: VPSDE,
    x0: torch.Tensor,
    *,
    t_start: float = 1e-5,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """Bits/dim of 8-bit images under a noise predictor's probability-flow ODE, one per image.

    Dequantises x0 (:func:`dequantise`), then :func:`ode_log_likelihood` with the network's
    score (:func:`course_ddpm.sde.score_from_model`) and Hutchinson's divergence, then
    :func:`bits_per_dim_of_density`. Both the dequantisation and the probe are random: the
    per-image values are unbiased draws of an upper bound on -log2 P(x0) / D.

    Args:
        x0: ``(B, C, H, W)`` on the 256-level grid of [-1, 1].

    Returns:
        bits/dim ``(B,)`` float64 and the NFE of the solve.
    """
    y = dequantise(x0, generator)
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    try:
        result = ode_log_likelihood(
            sde, score_from_model(sde, model), y, divergence="hutchinson", t_start=t_start, rtol=rtol, atol=atol,
            generator=generator,
        )  # fmt: skip
    finally:
        if was_training:
            model.train()
    return bits_per_dim_of_density(result.log_p, x0[0].numel()), result.nfe


def mnist_ode_bits_per_dim(
    model: Callable[..., torch.Tensor],
    sde: VPSDE,
    n: int,
    *,
    batch_size: int = 10,
    seed: int = 0,
    rtol: float = 1e-5,
    device: str | torch.device = "cpu",
) -> dict:
    """:func:`ode_bits_per_dim` of the first ``n`` MNIST test images, with the standard error over images.

    Each batch of ``batch_size`` images is one ODE solve (one step size for all). The seed
    draws the dequantisation and the Hutchinson probes.

    Returns:
        ``{"n", "bpd" (mean), "stderr" (std / sqrt(n); 0 for n = 1), "per_image" (list), "nfe" (per batch, list),
        "batch_size", "rtol", "atol", "t_start", "seed"}``.
    """
    from course_ddpm.data import load_mnist

    x_test, _ = load_mnist(train=False)
    check_count("n", n, 1, len(x_test))
    check_count("batch_size", batch_size)
    generator = torch.Generator().manual_seed(seed)
    bpd, nfe = [], []
    for x0 in x_test[:n].split(batch_size):
        b, k = ode_bits_per_dim(model, sde, x0.to(device), rtol=rtol, atol=rtol, generator=generator)
        bpd.append(b.cpu())
        nfe.append(k)
    bpd = torch.cat(bpd)
    stderr = float(bpd.std() / math.sqrt(n)) if n > 1 else 0.0
    return {"n": n, "bpd": float(bpd.mean()), "stderr": stderr, "per_image": [float(b) for b in bpd], "nfe": nfe,
            "batch_size": batch_size, "rtol": rtol, "atol": rtol, "t_start": 1e-5, "seed": seed}  # fmt: skip

"""The probability-flow ODE: a deterministic flow with the marginals of the diffusion.

Song et al. 2021 (arXiv:2011.13456, eq. 13): every diffusion dx = f dt + g dW has an ODE

    dx/dt = f(x, t) - 1/2 g(t)^2 grad log p_t(x)

whose solutions, started from x_1 ~ p_1, have the same marginals p_t at every t. For the
VP-SDE of :mod:`course_ddpm.sde`, with the score -eps / sqrt(1 - alpha_bar(t)),

    dx/dt = -1/2 beta(t) [x - eps(x, t) / sqrt(1 - alpha_bar(t))].

DDIM with eta = 0 is Euler's method for this ODE in other variables (Song et al. DDIM,
arXiv:2010.02502, eq. 14): with x_bar = x / sqrt(alpha_bar) and sigma = sqrt(1 - alpha_bar) /
sqrt(alpha_bar) the ODE reads d x_bar / d sigma = eps(x, t), and a DDIM step from t to
t_prev is x_bar_prev = x_bar + (sigma_prev - sigma) eps (:func:`ddim_variables`).

Solver: ``scipy.integrate.solve_ivp`` (RK45, Dormand--Prince 5(4) with an error estimate
and adaptive steps, as Song et al.'s own code uses), on the whole batch as one float64
system; it counts the function evaluations, so NFE is the number of network calls.
scipy rather than torchdiffeq: scipy is already installed with the course, is maintained
with numpy, and its ``nfev`` is the number a sampler comparison needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from course_ddpm.forward import x0_from_eps
from course_ddpm.sde import VPSDE, ScoreFn, per_sample, score_from_model
from course_ddpm.validation import check_count, check_eps_pred, check_float, check_shape


@dataclass(frozen=True, eq=False)
class ODESolution:
    """End of an ODE solve: ``x`` ``(B, ...)`` at the end time, and ``nfe`` (function evaluations)."""

    x: torch.Tensor
    nfe: int


def ode_drift(sde: VPSDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The probability-flow vector field f(x, t) - 1/2 g(t)^2 score(x, t) (Song et al. eq. 13), ``(B, ...)``."""
    g2 = per_sample(sde.beta(t), x)  # g(t)^2 = beta(t)
    return sde.drift(x, t) - 0.5 * g2 * score_fn(x, t)


def solve(
    rhs: Callable[[float, torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    t_span: tuple[float, float],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "RK45",
) -> ODESolution:
    """Integrate dy/dt = rhs(t, y) over ``t_span`` with ``scipy.integrate.solve_ivp``.

    Args:
        rhs: ``rhs(t, y)`` with t a float and y ``y0``'s shape and dtype -> dy/dt, same shape.
        y0: the start, any shape; solved in float64 on the CPU, returned in y0's dtype and device.
        t_span: (start, end); end < start integrates backwards in time.
        rtol, atol: solve_ivp's tolerances.
    """
    from scipy.integrate import solve_ivp

    check_float("y0", y0)
    shape, dtype, device = y0.shape, y0.dtype, y0.device

    def fun(t: float, y):
        y_t = torch.from_numpy(y).reshape(shape).to(dtype=dtype, device=device)
        return rhs(float(t), y_t).detach().to("cpu", torch.float64).reshape(-1).numpy()

    y_start = y0.detach().to("cpu", torch.float64).reshape(-1).numpy()
    sol = solve_ivp(fun, t_span, y_start, method=method, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    y_end = torch.from_numpy(sol.y[:, -1].copy()).reshape(shape).to(dtype=dtype, device=device)
    return ODESolution(x=y_end, nfe=int(sol.nfev))


def solve_flow(
    sde: VPSDE, score_fn: ScoreFn, x: torch.Tensor, t_start: float, t_end: float, *, rtol: float = 1e-5, atol: float = 1e-5
) -> ODESolution:
    """Carry ``x`` ``(B, ...)`` from t_start to t_end along the probability-flow ODE (either direction)."""
    check_float("x", x)

    def rhs(t: float, x_t: torch.Tensor) -> torch.Tensor:
        return ode_drift(sde, score_fn, x_t, torch.full((x_t.shape[0],), t, dtype=torch.float64))

    return solve(rhs, x, (t_start, t_end), rtol=rtol, atol=atol)


def ode_sample(
    model: Callable[..., torch.Tensor],
    sde: VPSDE,
    shape: Sequence[int],
    *,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    clip_x0: bool = True,
) -> ODESolution:
    """Sample with the probability-flow ODE and a noise predictor.

    x_1 ~ N(0, I), the ODE from t = 1 to t_0 = 1/T (code index 0, where the network's last
    noise level sits), then Tweedie's x0 = (x - sqrt(1 - alpha_bar_0) eps) / sqrt(alpha_bar_0)
    at code index 0 (:func:`course_ddpm.forward.x0_from_eps`), the step DDIM ends with.

    Args:
        shape: ``(B, C, H, W)``. rtol, atol: the solver's tolerances (looser: fewer NFE).
        x_T: ``(B, ...)`` starting noise; drawn from ``generator`` when None.
        y: ``(B,)`` class labels for a conditional model.
        clip_x0: clip the final x0 to [-1, 1] (images).

    Returns:
        :class:`ODESolution` with the samples ``(B, ...)`` and the NFE (the solve's, plus 1).
    """
    shape = check_shape(shape)
    if x_T is None:
        x_T = torch.randn(shape, generator=generator)
    check_float("x_T", x_T)
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    try:
        with torch.no_grad():
            path = solve_flow(sde, score_from_model(sde, model, y), x_T, 1.0, float(sde.time_of_index(0)), rtol=rtol, atol=atol)
            k0 = torch.zeros(shape[0], dtype=torch.long, device=x_T.device)
            eps_pred = check_eps_pred(model(path.x, k0) if y is None else model(path.x, k0, y), path.x.shape)
            x0 = x0_from_eps(sde.schedule, path.x, k0, eps_pred)
    finally:
        if was_training:
            model.train()
    return ODESolution(x=x0.clamp(-1.0, 1.0) if clip_x0 else x0, nfe=path.nfe + 1)


def ode_generate(
    model: Callable[..., torch.Tensor],
    sde: VPSDE,
    n: int,
    image_shape: Sequence[int] = (1, 28, 28),
    *,
    rtol: float = 1e-3,
    seed: int = 0,
    batch_size: int = 250,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, float]:
    """``n`` images from :func:`ode_sample` in batches (x_T of all n drawn first, from ``seed``).

    Returns:
        samples ``(n, C, H, W)`` on the CPU and the mean NFE per image.
    """
    check_count("n", n)
    check_count("batch_size", batch_size)
    x_T = torch.randn((n, *image_shape), generator=torch.Generator().manual_seed(seed))
    parts = [ode_sample(model, sde, x.shape, rtol=rtol, atol=rtol, x_T=x.to(device)) for x in x_T.split(batch_size)]
    return torch.cat([p.x.cpu() for p in parts]), sum(p.nfe * len(p.x) for p in parts) / n


def ddim_variables(sde: VPSDE, x: torch.Tensor, t: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x_bar = x / sqrt(alpha_bar(t)) and sigma = sqrt(1 - alpha_bar(t)) / sqrt(alpha_bar(t)) (DDIM eq. 14).

    In these variables the probability-flow ODE is d x_bar / d sigma = eps, and DDIM (eta = 0)
    is its Euler method. Returns x_bar ``(B, ...)`` and sigma (float64, shaped like t).
    """
    alpha_bar = sde.alpha_bar(t)
    return x / per_sample(alpha_bar.sqrt(), x), ((1.0 - alpha_bar) / alpha_bar).sqrt()

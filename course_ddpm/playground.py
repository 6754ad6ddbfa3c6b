"""The 2-D playground: train a noise predictor in seconds, sample it, and measure the samples.

Everything here is the package's MNIST machinery on ``(N, 2)`` points instead of images:

* :func:`train` (= :func:`start` + :func:`train_steps`) -- :data:`PLAYGROUND_CONFIG`'s steps of
  Algorithm 1 (Ho et al. 2020), each batch drawn by :func:`course_ddpm.training_step.draw_batch`
  and taken by ``step`` (the package's :func:`~course_ddpm.training_step.train_step`, with its
  AdamW, clipping and EMA, unless a student's step is passed in), on an :class:`~course_ddpm.mlp.MLP`;
* :func:`draw` -- samples through :func:`course_ddpm.sampling.sample` (Algorithm 2 for
  ``sampler="ddpm"``), with ``clip_x0=False``: the points are not images in [-1, 1];
* :func:`playground_data`, :func:`evaluate` -- the data sets and one draw-and-score;
* :func:`score` -- the sliced Wasserstein distance of samples to the data, beside its *floor*
  (the distance of a second, independent draw of true data), and, for a mixture with a known
  density, the mean log-likelihood beside that of true data.

The playground computes in float64. Training is chaotic: a difference in the last digit
(another CPU's vector unit, another thread count) grows from step to step. In float64 it
starts 10^9 times smaller than in float32 and stays below the digits notebook 07 prints
(``make check-cpu`` reruns it with torch's plain kernels on one thread and compares). The
network is so small that float64 costs little time.

The numbers of one run on this machine are ``benchmarks/playground.py``'s
(``course_ddpm/measurements/playground.json``); notebook 07 trains and shows the playground.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from course_ddpm.mlp import MLP, MLPConfig
from course_ddpm.sampling import SamplerName, sample
from course_ddpm.schedules import Schedule, make_schedule
from course_ddpm.sliced_wasserstein import sliced_wasserstein
from course_ddpm.toy2d import GaussianMixture2D, ring_mixture
from course_ddpm.training_config import TrainConfig
from course_ddpm.training_step import Batch, TrainState, draw_batch, train_step
from course_ddpm.validation import check_count

#: The playground's run: linear schedule with T = 200 steps, its betas rescaled by 1000 / T
#: (``linear_schedule(200, rescale=True)``: alpha_bar_T = 4e-5, as Ho et al.'s T = 1000, at a
#: fifth of the sampling cost), batches of 256, AdamW at lr 5e-3 after 100 warm-up steps,
#: EMA 0.995 (an average over ~200 steps: the run is short), 2000 steps.
PLAYGROUND_CONFIG = TrainConfig(
    schedule="linear", T=200, rescale=True, batch_size=256, lr=5e-3, warmup_steps=100, steps=2000,
    ema_decay=0.995, grad_clip=1.0, seed=0, out_dir="runs/playground",
)  # fmt: skip

#: ``step(state, batch, schedule, config) -> loss``: the signature of :func:`train_step`.
StepFn = Callable[[TrainState, Batch, Schedule, TrainConfig], float]


@dataclass(eq=False)
class PlaygroundRun:
    """What :func:`train` returns: the state (``state.model`` raw, ``state.ema_model`` EMA
    weights), the schedule it trained with, and the loss of every step."""

    state: TrainState
    schedule: Schedule
    config: TrainConfig
    losses: list[float] = field(default_factory=list)


def playground_schedule(config: TrainConfig = PLAYGROUND_CONFIG, warn: bool = True) -> Schedule:
    """``make_schedule(config.schedule, config.T, config.rescale)``."""
    return make_schedule(config.schedule, config.T, config.rescale, warn=warn)


def start(
    x0: torch.Tensor, config: TrainConfig = PLAYGROUND_CONFIG, *, mlp_config: MLPConfig = MLPConfig(),
    schedule: Schedule | None = None,
) -> PlaygroundRun:  # fmt: skip
    """A fresh run on the points ``x0`` ``(N, D)``: an :class:`MLP` and its EMA, AdamW, the data
    order and the t/eps stream, all seeded by ``config.seed`` (:meth:`TrainState.start`).

    Args:
        x0: ``(N, D)`` training points (scaled like the noise, :mod:`course_ddpm.toy2d`).
        config: batch_size, lr, warmup_steps, ema_decay, grad_clip, seed; schedule and T
            unless ``schedule`` is given.
        mlp_config: the network's size (``dim`` must be D).
        schedule: the noise schedule; default :func:`playground_schedule` of ``config``.
    """
    if x0.ndim != 2 or x0.shape[1] != mlp_config.dim:
        raise ValueError(f"x0 must have shape (N, {mlp_config.dim}), got {tuple(x0.shape)}")
    schedule = playground_schedule(config) if schedule is None else schedule
    if schedule.T != config.T:
        raise ValueError(f"the schedule has T={schedule.T} but config.T={config.T} (t is drawn from config.T)")
    state = TrainState.start(config, x0.shape[0], build=lambda _config: MLP(mlp_config).double())
    return PlaygroundRun(state, schedule, config)


def train_steps(run: PlaygroundRun, x0: torch.Tensor, n_steps: int, step: StepFn = train_step) -> PlaygroundRun:
    """``n_steps`` more steps of Algorithm 1 on ``x0``: each batch drawn by :func:`draw_batch`
    (x0, t, eps), then ``step(state, batch, schedule, config)`` (default the package's
    :func:`train_step`: L_simple, clipping, AdamW, EMA). Appends the losses; returns ``run``."""
    check_count("n_steps", n_steps, low=0)
    x0 = x0.double()  # float64: see the module docstring
    for _ in range(n_steps):
        batch = draw_batch(x0, None, run.state.sampler, run.state.noise_generator, run.config, null_label=None)
        run.losses.append(step(run.state, batch, run.schedule, run.config))
    return run


def train(
    x0: torch.Tensor, config: TrainConfig = PLAYGROUND_CONFIG, *, mlp_config: MLPConfig = MLPConfig(),
    step: StepFn = train_step, schedule: Schedule | None = None,
) -> PlaygroundRun:  # fmt: skip
    """:func:`start` a run and take ``config.steps`` :func:`train_steps`; seeded by ``config.seed``,
    so a rerun gives the same weights (see the module docstring for other machines)."""
    run = start(x0, config, mlp_config=mlp_config, schedule=schedule)
    return train_steps(run, x0, config.steps, step=step)


def draw(
    model: Callable[..., torch.Tensor], schedule: Schedule, n: int, *, seed: int = 0, dim: int = 2,
    sampler: SamplerName = "ddpm", **sample_kwargs,
) -> torch.Tensor:  # fmt: skip
    """``(n, dim)`` float64 samples: :func:`~course_ddpm.sampling.sample` with ``clip_x0=False`` and
    no progress bar, seeded by ``seed``; ``sample_kwargs`` go to it (``num_inference_steps``, ``eta``, ...)."""
    generator = torch.Generator().manual_seed(seed)
    return sample(
        model, schedule, (n, dim), sampler=sampler, generator=generator, dtype=torch.float64, clip_x0=False,
        progress=False, **sample_kwargs,
    ).samples  # fmt: skip


@dataclass(frozen=True)
class Score:
    """How close samples are to the data, each number beside what true data scores.

    swd: SW_2(samples, data). swd_floor: SW_2(second true draw, data), the best reachable at
    this N. log_likelihood, log_likelihood_true: mean log p of the samples and of the second
    true draw (nats; None without a known density).
    """

    swd: float
    swd_floor: float
    log_likelihood: float | None = None
    log_likelihood_true: float | None = None

    def __str__(self) -> str:
        text = f"sliced Wasserstein {self.swd:.3f} (true data: {self.swd_floor:.3f})"
        if self.log_likelihood is not None:
            text += f", mean log p {self.log_likelihood:.2f} nats (true data: {self.log_likelihood_true:.2f})"
        return text


def score(
    samples: torch.Tensor, data: torch.Tensor, true_draw: torch.Tensor, density: GaussianMixture2D | None = None,
    n_projections: int = 64,
) -> Score:  # fmt: skip
    """:class:`Score` of ``samples`` against ``data``, with ``true_draw`` (an independent draw of the
    same size) as the floor. NaN or infinite samples score inf (a diverged sampler)."""
    if not bool(torch.isfinite(samples).all()):
        return Score(float("inf"), sliced_wasserstein(true_draw, data, n_projections), float("-inf"),
                     None if density is None else density.log_prob(true_draw.double()).mean().item())  # fmt: skip
    swd = sliced_wasserstein(samples, data, n_projections)
    floor = sliced_wasserstein(true_draw, data, n_projections)
    if density is None:
        return Score(swd, floor)
    ll = density.log_prob(samples.double()).mean().item()
    ll_true = density.log_prob(true_draw.double()).mean().item()
    return Score(swd, floor, ll, ll_true)


@dataclass(frozen=True, eq=False)
class PlaygroundData:
    """The playground's points, all drawn from ``density`` (float32, ``(N, 2)`` each).

    train: what the model learns from. reference: a larger held-out draw that samples are
    compared with. true_draw: one more draw, of the size of a sample, whose distance to
    ``reference`` is the floor (:func:`score`).
    """

    train: torch.Tensor
    reference: torch.Tensor
    true_draw: torch.Tensor
    density: GaussianMixture2D


def playground_data(
    n_train: int = 10_000, n_samples: int = 1000, n_reference: int = 10_000, seed: int = 0,
    density: GaussianMixture2D | None = None,
) -> PlaygroundData:  # fmt: skip
    """Draw :class:`PlaygroundData` from ``density`` (default :func:`~course_ddpm.toy2d.ring_mixture`),
    in the order train, reference, true_draw, from one generator seeded by ``seed``."""
    density = ring_mixture() if density is None else density
    generator = torch.Generator().manual_seed(seed)
    train_x = density.sample(n_train, generator)
    reference = density.sample(n_reference, generator)
    return PlaygroundData(train_x, reference, density.sample(n_samples, generator), density)


def evaluate(
    model: Callable[..., torch.Tensor], schedule: Schedule, data: PlaygroundData, *, seed: int = 0,
    **sample_kwargs,
) -> tuple[torch.Tensor, Score]:  # fmt: skip
    """Draw as many samples as ``data.true_draw`` holds (:func:`draw`) and :func:`score` them
    against ``data.reference``; returns the samples ``(n, 2)`` and their :class:`Score`."""
    samples = draw(model, schedule, data.true_draw.shape[0], seed=seed, **sample_kwargs)
    return samples, score(samples, data.reference, data.true_draw, data.density)

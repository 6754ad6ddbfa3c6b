"""Networks trained side by side: one recipe, one seed, the same batches, taking turns step by step.

Shared by ``bench_networks.py`` (throughput, and which UNet size learns most per CPU-second)
and ``budget_study.py`` (MNIST-FID after the same CPU time). Every network is a
:class:`Trainee`: a :class:`course_ddpm.training_step.TrainState` started as
:func:`course_ddpm.training.train` starts one (same seed, so the same data order, t and eps
draws for every network), with its own clocks. A step is the package's own
:func:`~course_ddpm.training_step.train_step`: L_simple = ||eps - eps_theta(x_t, t)||^2 (Ho et
al. 2020, arXiv:2006.11239, Algorithm 1 and eq. 14), AdamW, warm-up, gradient clipping, EMA.

The networks take turns, so that load from other processes on the machine hits all of them
alike: :func:`train_for_budget` gives the next step to the one with the least CPU time
(``time.process_time``: all threads of this process, so the budget measures work done even
when other jobs share the cores).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from course_ddpm.schedules import Schedule
from course_ddpm.training_config import TrainConfig
from course_ddpm.training_step import TrainingDiverged, TrainState, draw_batch, train_step


class DiffusersUNet(nn.Module):
    """diffusers' UNet2DModel in the HF diffusion course's MNIST setup, called as model(x_t, t)."""

    def __init__(self):
        super().__init__()
        from diffusers import UNet2DModel

        self.unet = UNet2DModel(
            sample_size=28, in_channels=1, out_channels=1, layers_per_block=2,
            block_out_channels=(32, 64, 64),
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        )  # fmt: skip

    def forward(self, x_t, t, y=None):
        return self.unet(x_t, t).sample  # eps


@dataclass(eq=False)
class Trainee:
    """One network in training: its state and its clocks. ``cpu_s``/``wall_s`` count training
    steps only; ``losses`` and ``step_wall_s`` hold each step's loss and wall seconds."""

    key: str
    label: str
    state: TrainState
    cpu_s: float = 0.0
    wall_s: float = 0.0
    losses: list[float] = field(default_factory=list)
    step_wall_s: list[float] = field(default_factory=list)


def start_trainee(key: str, label: str, build: Callable[[TrainConfig], nn.Module], config: TrainConfig,
                  n_data: int) -> Trainee:  # fmt: skip
    """A fresh network ``build(config)``, started as :func:`course_ddpm.training.train` starts one."""
    return Trainee(key, label, TrainState.start(config, n_data, build=build))


def warm_up(trainee: Trainee, x: torch.Tensor, config: TrainConfig) -> None:
    """One forward and backward pass, thrown away, so lazy initialisation is not charged to the clocks.

    Draws nothing from the trainee's random streams and changes no weights.
    """
    B = min(config.batch_size, len(x))
    trainee.state.model(x[:B], torch.zeros(B, dtype=torch.long)).mean().backward()
    trainee.state.model.zero_grad(set_to_none=True)


def take_step(trainee: Trainee, schedule: Schedule, x: torch.Tensor, config: TrainConfig) -> float:
    """Draw the trainee's next batch of ``x`` and take one training step, on its clocks; returns the loss."""
    cpu, wall = time.process_time(), time.perf_counter()
    batch = draw_batch(x, None, trainee.state.sampler, trainee.state.noise_generator, config, None)
    try:
        loss = train_step(trainee.state, batch, schedule, config)
    except TrainingDiverged as e:
        raise TrainingDiverged(f"{trainee.label}: {e}") from None
    trainee.cpu_s += time.process_time() - cpu
    trainee.step_wall_s.append(time.perf_counter() - wall)
    trainee.wall_s += trainee.step_wall_s[-1]
    trainee.losses.append(loss)
    return loss


def train_for_budget(
    trainees: list[Trainee], schedule: Schedule, x: torch.Tensor, config: TrainConfig, budget_s: float,
    progress: bool = True, after_step: Callable[[Trainee], None] | None = None,
) -> None:  # fmt: skip
    """Train until every trainee has used ``budget_s`` CPU seconds; the one behind takes the next step.

    ``after_step(trainee)`` runs after each step, off the clocks (e.g. a held-out evaluation).
    """
    if not budget_s > 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s}")
    for trainee in trainees:
        warm_up(trainee, x, config)
    bar = tqdm(total=round(budget_s * len(trainees)), desc="train", unit="CPU-s", disable=not progress)
    try:
        while True:
            active = [tr for tr in trainees if tr.cpu_s < budget_s]
            if not active:
                break
            trainee = min(active, key=lambda tr: tr.cpu_s)
            cpu_before = trainee.cpu_s
            take_step(trainee, schedule, x, config)
            bar.update(trainee.cpu_s - cpu_before)
            if after_step is not None:
                after_step(trainee)
    finally:
        bar.close()

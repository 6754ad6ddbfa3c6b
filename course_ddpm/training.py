"""A training run: Ho et al. 2020 (arXiv:2006.11239), Algorithm 1, reproducibly and without losing work.

:func:`train` repeats :func:`course_ddpm.training_step.train_step` (L_simple, eq. 14, with
AdamW, gradient clipping and an EMA of the weights) for ``config.steps`` steps of a
:class:`course_ddpm.training_config.TrainConfig`, and around the steps keeps the run:

* **Deterministic.** Data order (a fresh permutation per epoch), t, eps and label
  drop-outs come from two seeded ``torch.Generator`` streams on the CPU; the same config
  on the CPU gives bit-identical weights.
* **Resumable exactly.** ``last.pt`` holds model, EMA, optimizer, both generators, the
  global RNG (dropout) and the step, written atomically; a run killed at any moment and
  resumed with ``resume=True`` ends with the same weights as one never stopped.
* **Safe to stop.** Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes a
  checkpoint and raises :class:`TrainingInterrupted` (a KeyboardInterrupt); a second
  Ctrl-C stops at once. A NaN/inf loss or gradient raises
  :class:`~course_ddpm.training_step.TrainingDiverged` before the bad update, so
  ``last.pt`` stays the last good state.
* **Multi-process.** Under ``torchrun`` every rank draws the same global batch and
  trains on its slice (see :mod:`course_ddpm.distributed`); only rank 0 writes files.
* **No side effects on the caller's randomness.** The run seeds the global RNG (initial
  weights, dropout) of the CPU and of its device only, and :func:`train` puts back the
  state it found (:mod:`course_ddpm.rng`), so unseeded code after it (a notebook's next
  cell) draws as if it had not run.
* **Any device.** Nothing in float64 reaches the device (MPS has none), and a step reads
  the device only for the loss and gradient norm that the NaN guard needs.

Files in ``out_dir``: ``config.json``; ``log.jsonl`` (one JSON object per ``log_every``
steps: step, loss, lr, images_per_s, wall_time); ``samples/step_NNNNNN.png`` (EMA
model, DDIM, the same noise every time); ``last.pt`` (full state, resume);
``ema.safetensors`` + ``ema.json`` (EMA weights and card, for sampling);
``final.safetensors`` + ``final.json`` at the end; ``sessions.jsonl`` (one line per start or
resume: the step it started from, torch version, CPU and its vector unit, threads, device),
which the cards copy as ``trained_with``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from course_ddpm import distributed, environment
from course_ddpm.checkpoints import atomic_write_text, load_state, save_model, save_state, schedule_card
from course_ddpm.networks import model_to_config_dict
from course_ddpm.rng import derive_seed, get_rng_state, global_rng_kept, set_rng_state
from course_ddpm.schedules import Schedule, make_schedule
from course_ddpm.training_config import TrainConfig, check_resumable
from course_ddpm.training_step import TrainingDiverged, TrainState, draw_batch, lr_at, train_step

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the run stopped after writing a checkpoint at ``step``."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"interrupted at step {step}; checkpoint written to {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What :func:`train` returns.

    model: the trained weights (eval mode); ema_model: their EMA (sample from this one).
    step: steps done in total; losses: the global-batch loss of each step run by this
    call; out_dir; final_path: ``final.safetensors`` (None on ranks other than 0);
    wall_time: seconds of training over all sessions of the run.
    """

    config: TrainConfig
    model: nn.Module
    ema_model: nn.Module
    schedule: Schedule
    step: int
    losses: tuple[float, ...]
    out_dir: Path
    final_path: Path | None
    wall_time: float


def train(
    config: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    data: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> TrainResult:
    """Train a diffusion model as ``config`` says (Ho et al. 2020, Algorithm 1).

    Args:
        config: the run. Its ``out_dir`` must not already hold a run unless ``resume``.
        resume: continue from ``out_dir/last.pt`` (start fresh, with a warning, if absent).
        progress: show a tqdm bar (rank 0 only).
        data: ``(x (N, C, H, W) float in [-1, 1], y (N,) long or None)``; default MNIST
            from ``config.data_root``.

    Raises:
        TrainingDiverged: NaN/inf loss or gradient (``last.pt`` keeps the last good state).
        TrainingInterrupted: Ctrl-C / SIGTERM, after writing ``last.pt``.
        FileExistsError: ``out_dir`` holds a run and ``resume`` is False.
    """
    info = distributed.setup(config.device)
    threads_before = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        with global_rng_kept(info.device):  # the run reseeds the global RNG; the caller gets theirs back
            return _train(config, resume, progress, data, info)
    finally:
        torch.set_num_threads(threads_before)
        distributed.teardown(info)


def _train(config: TrainConfig, resume: bool, progress: bool, data, info: distributed.DistInfo) -> TrainResult:
    device, out_dir = info.device, Path(config.out_dir)
    last = out_dir / "last.pt"
    x, y = _prepare_data(config, data)
    schedule = make_schedule(config.schedule, config.T, config.rescale)
    rows = distributed.rank_slice(config.batch_size, info)
    state = TrainState.start(config, x.shape[0], in_channels=x.shape[1], device=device, rank=info.rank)
    null_label = getattr(state.model.config, "num_classes", None)
    if config.conditional and int(y.max()) >= null_label:
        raise ValueError(f"labels go up to {int(y.max())} but the model has num_classes={null_label}")
    fingerprint = _fingerprint(x, y)
    wall_before = _resume(state, config, resume, last, fingerprint, info)  # training seconds of earlier sessions
    sessions: list[dict] = []
    if info.is_main:
        atomic_write_text(out_dir / "config.json", config.to_json() + "\n")
        _truncate_log(out_dir, state.step)  # drop entries written after the checkpoint we start from
        sessions = _record_session(out_dir, state.step, device, info.world_size)

    net = state.model
    if info.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(state.model, device_ids=device_ids)
    card = {"schedule": schedule_card(config.schedule, config.T, config.rescale), "image_shape": list(x.shape[1:]),
            "weights": "ema", "training": config.to_dict(), "trained_with": sessions}  # fmt: skip

    def checkpoint(recent_loss: float | None, final: bool) -> None:
        rng = distributed.all_gather_objects(get_rng_state(device), info)  # every rank's dropout RNG
        if not info.is_main:
            return
        model_card = {**card, "step": state.step, "metrics": {"loss": recent_loss}}
        save_model(out_dir / "ema.safetensors", state.ema_model, model_card)
        if final:
            save_model(out_dir / "final.safetensors", state.ema_model, model_card)
        saved = {**state.state_dict(), "rng": rng, "wall_time": wall_before + time.perf_counter() - session_start,
                 "config": config.to_dict(), "model_config": model_to_config_dict(state.model),
                 "schedule": card["schedule"], "image_shape": card["image_shape"], "world_size": info.world_size,
                 "data": fingerprint}  # fmt: skip
        save_state(last, saved)  # written last: the commit point of a checkpoint
        logger.info("step %d: checkpoint %s", state.step, last)

    def every(n: int) -> bool:
        return n > 0 and state.step % n == 0

    losses: list[float] = []
    window: list[float] = []  # losses since the last log line
    start_step = state.step
    session_start = tick = time.perf_counter()
    bar = tqdm(total=config.steps, initial=state.step, desc="train", unit="step",
               disable=not (progress and info.is_main))
    try:
        with _StopRequest() as stop:
            while state.step < config.steps:
                batch = draw_batch(x, y, state.sampler, state.noise_generator, config, null_label).slice(rows, device)
                lr = lr_at(config, state.step)
                try:
                    loss_value = train_step(state, batch, schedule, config, net=net, info=info)
                except TrainingDiverged as e:
                    good = last if last.exists() else "(none written yet)"
                    raise TrainingDiverged(f"{e} The last good checkpoint is {good}.") from None
                stop_now = _on_any_rank(stop.requested, info)
                losses.append(loss_value)
                window.append(loss_value)
                bar.update(1)
                done = state.step == config.steps
                if every(config.log_every) or done:
                    now = time.perf_counter()
                    entry = {"step": state.step, "loss": sum(window) / len(window), "lr": lr,
                             "images_per_s": len(window) * config.batch_size / max(now - tick, 1e-9),
                             "wall_time": wall_before + now - session_start}  # fmt: skip
                    if info.is_main:
                        with open(out_dir / "log.jsonl", "a", encoding="utf-8") as f:
                            f.write(json.dumps(entry) + "\n")
                    bar.set_postfix(loss=f"{entry['loss']:.4f}", img_s=f"{entry['images_per_s']:.0f}", refresh=False)
                    tick, window = now, []
                if info.is_main and (every(config.sample_every) or (done and config.sample_every)):
                    path = out_dir / "samples" / f"step_{state.step:06d}.png"
                    save_sample_grid(state.ema_model, schedule, path, config, x.shape[1:], device)
                if info.is_main and every(config.keep_every):
                    snapshot = {**card, "step": state.step, "metrics": {"loss": loss_value}}
                    save_model(out_dir / "snapshots" / f"ema_{state.step:06d}.safetensors", state.ema_model, snapshot)
                if every(config.checkpoint_every) or done or stop_now:
                    checkpoint(loss_value, final=done)
                if stop_now:
                    raise TrainingInterrupted(state.step, last)
            if start_step >= config.steps:
                checkpoint(None, final=True)  # resumed a run that had already finished
    finally:
        bar.close()
    wall_time = wall_before + time.perf_counter() - session_start
    final_path = out_dir / "final.safetensors" if info.is_main else None
    return TrainResult(config, state.model.eval(), state.ema_model, schedule, state.step, tuple(losses), out_dir,
                       final_path, wall_time)  # fmt: skip


def _resume(
    state: TrainState, config: TrainConfig, resume: bool, last: Path, fingerprint: dict, info: distributed.DistInfo
) -> float:
    """Load ``last`` into ``state`` and the global RNG when resuming; returns the earlier sessions' seconds."""
    if not resume:
        if last.exists():
            raise FileExistsError(f"{last.parent} already holds a run ({last}); resume it, or choose another out_dir")
        return 0.0
    if not last.exists():
        logger.warning("resume asked for, but %s does not exist: starting a new run", last)
        return 0.0
    saved = load_state(last)
    check_resumable(saved["config"], config)
    if saved["data"] != fingerprint:
        logger.warning("resuming on other data than the checkpoint's: the run will not match an unbroken one")
    state.load_state_dict(saved)
    if len(saved["rng"]) == info.world_size:
        set_rng_state(saved["rng"][info.rank], info.device)
    else:
        logger.warning("checkpoint of %d processes, now %d: dropout noise is reseeded", len(saved["rng"]),
                       info.world_size)  # fmt: skip
    logger.info("resumed %s at step %d", last, state.step)
    return saved["wall_time"]


def _on_any_rank(flag: bool, info: distributed.DistInfo) -> bool:
    """True on every rank if ``flag`` is True on any (a stop request seen by one process)."""
    return distributed.all_reduce_sum(torch.tensor([float(flag)], dtype=torch.float32), info).item() > 0


# -------------------------------------------------------------------------- helpers
class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag read at the end of a step; a second SIGINT stops at once."""

    def __init__(self):
        self.requested, self._previous = False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now, no checkpoint
        self.requested = True
        logger.warning("stop requested (signal %d): finishing this step and writing a checkpoint", signum)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _record_session(out_dir: Path, step: int, device: torch.device, world_size: int) -> list[dict]:
    """Append this session's machine (torch, CPU, vector unit, threads, device) to
    ``sessions.jsonl``, keeping only sessions that started before ``step``; returns them all."""
    path = out_dir / "sessions.jsonl"
    kept = [row for row in read_log(path) if row["from_step"] < step]
    now = {"from_step": step, "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "processes": world_size, **environment.describe(device)}  # fmt: skip
    rows = kept + [now]
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
    return rows


def _truncate_log(out_dir: Path, step: int) -> None:
    kept = [e for e in read_log(out_dir) if e.get("step", 0) <= step]
    atomic_write_text(out_dir / "log.jsonl", "".join(json.dumps(e) + "\n" for e in kept))


def read_log(out_dir: str | Path) -> list[dict]:
    """The entries of a training log: ``out_dir/log.jsonl``, or a ``.jsonl`` file itself (e.g. the
    loss log shipped beside pretrained weights). An unfinished last line is skipped."""
    path = Path(out_dir)
    if path.suffix != ".jsonl":
        path = path / "log.jsonl"
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def _prepare_data(config: TrainConfig, data) -> tuple[torch.Tensor, torch.Tensor | None]:
    if data is None:
        from course_ddpm.data import load_mnist

        data = load_mnist(train=True, root=config.data_root)
    x, y = data
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4:
        raise ValueError(f"data x must be a float tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],)):
        raise ValueError(f"data y must be a tensor of shape ({x.shape[0]},), got {getattr(y, 'shape', type(y))}")
    if config.conditional:
        if y is None:
            raise ValueError("conditional=True needs labels y")
        y = y.long()
    if float(x.min()) >= 0.0:
        logger.warning("the data lies in [%.2g, %.2g]: pixels in [0, 1]? The model expects [-1, 1] "
                       "(course_ddpm.data.from_pixels)", float(x.min()), float(x.max()))  # fmt: skip
    return x.float().contiguous().cpu(), (None if y is None else y.cpu())


def _fingerprint(x: torch.Tensor, y: torch.Tensor | None) -> dict:
    digest = hashlib.sha256(x.view(torch.uint8).numpy())  # no copy
    if y is not None:
        digest.update(y.contiguous().view(torch.uint8).numpy())
    return {"n": x.shape[0], "shape": list(x.shape[1:]), "sha256": digest.hexdigest()}


def save_sample_grid(
    ema_model: nn.Module, schedule: Schedule, path: Path, config: TrainConfig, image_shape, device
) -> Path:
    """A grid of ``config.sample_n`` DDIM samples (``sample_steps`` steps, eta 0) from the EMA model.

    The noise comes from a generator seeded with ``config.seed`` every time, so grids of
    successive steps show the same starting noise. The global RNG is left untouched.
    """
    from torchvision.utils import save_image

    from course_ddpm.data import to_pixels
    from course_ddpm.sampling import sample

    num_classes = getattr(ema_model.config, "num_classes", None)
    y = None if num_classes is None else (torch.arange(config.sample_n) % num_classes).to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        generator = torch.Generator(device=device).manual_seed(derive_seed(config.seed, "sample grid"))
        result = sample(ema_model, schedule, (config.sample_n, *image_shape), sampler="ddim",
                        num_inference_steps=min(config.sample_steps, config.T), eta=0.0, generator=generator,
                        device=device, y=y, progress=False)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(to_pixels(result.samples.float().cpu()), path, nrow=math.ceil(math.sqrt(config.sample_n)))
    return path

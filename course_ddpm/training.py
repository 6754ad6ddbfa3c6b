"""Training a noise predictor eps_theta with L_simple, reproducibly and without losing work.

The algorithm is Ho et al. 2020 (arXiv:2006.11239), Algorithm 1. One step:

    x0 ~ data,  t ~ Uniform{0, ..., T-1} (code index),  eps ~ N(0, I)
    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps            (eq. 4)
    take a gradient step on  || eps - eps_theta(x_t, t) ||^2         (eq. 14, L_simple)

with AdamW, gradient clipping and an exponential moving average (EMA) of the weights,
which is what gets sampled from (Ho et al. 2020, appendix B: EMA decay 0.9999).
For classifier-free guidance (Ho & Salimans 2022) the label is replaced by the null
label ``num_classes`` with probability ``label_dropout``.

What the run guarantees:

* **Deterministic.** Data order (a fresh permutation per epoch), t, eps and label
  drop-outs come from two seeded ``torch.Generator`` streams on the CPU; the same config
  on the CPU gives bit-identical weights.
* **Resumable exactly.** ``last.pt`` holds model, EMA, optimizer, both generators, the
  global RNG (dropout) and the step, written atomically; a run killed at any moment and
  resumed with ``resume=True`` ends with the same weights as one never stopped.
* **Safe to stop.** Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes a
  checkpoint and raises :class:`TrainingInterrupted` (a KeyboardInterrupt); a second
  Ctrl-C stops at once. A NaN/inf loss or gradient raises :class:`TrainingDiverged`
  before the bad update, so ``last.pt`` stays the last good state.
* **Multi-process.** Under ``torchrun`` every rank draws the same global batch and
  trains on its slice (see :mod:`course_ddpm.distributed`); only rank 0 writes files.
* **No side effects on the caller's randomness.** The run seeds the global RNG (initial
  weights, dropout) of the CPU and of its device only, and :func:`train` puts back the
  state it found, so unseeded code after it (a notebook's next cell) draws as if it had
  not run.
* **Any device.** Nothing in float64 reaches the device (MPS has none), and a step reads
  the device only for the loss and gradient norm that the NaN guard needs.

Files in ``out_dir``: ``config.json``; ``log.jsonl`` (one JSON object per ``log_every``
steps: step, loss, lr, images_per_s, wall_time); ``samples/step_NNNNNN.png`` (EMA
model, DDIM, the same noise every time); ``last.pt`` (full state, resume);
``ema.safetensors`` + ``ema.json`` (EMA weights and card, for sampling);
``final.safetensors`` + ``final.json`` at the end.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import logging
import math
import signal
import threading
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from course_ddpm import distributed
from course_ddpm.checkpoints import atomic_write_text, load_state, save_model, save_state, schedule_card
from course_ddpm.forward import q_sample
from course_ddpm.losses import l_simple
from course_ddpm.networks import build_model, model_to_config_dict
from course_ddpm.schedules import Schedule, make_schedule

logger = logging.getLogger(__name__)

#: Config fields that may change when a run is resumed (they do not change the maths).
RESUMABLE_CHANGES = frozenset(
    {"steps", "out_dir", "log_every", "sample_every", "checkpoint_every", "keep_every", "sample_n",
     "sample_steps", "data_root", "device", "num_threads"}
)  # fmt: skip
MNIST_CLASSES = 10


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; no update was made with it."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the run stopped after writing a checkpoint at ``step``."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"interrupted at step {step}; checkpoint written to {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


# --------------------------------------------------------------------------- config
def _freeze(value: Any) -> Any:
    """Lists (from JSON) -> tuples, dicts -> sorted tuples of pairs, so configs hash."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; JSON round trip with to_json/from_json.

    model, model_kwargs: ``networks.build_model(model, **model_kwargs)``; ``in_channels``
        (from the data), ``T`` (simple_unet) and ``num_classes`` (10 when conditional) are
        filled in when not given. Pass a dict; it is stored as sorted (key, value) pairs.
    schedule, T, rescale: ``schedules.make_schedule(schedule, T, rescale)``.
    batch_size: global batch (split evenly over processes). lr, weight_decay: AdamW.
    warmup_steps: lr rises linearly over the first warmup_steps steps. steps: total steps.
    ema_decay: EMA of the weights, with warm-up min(ema_decay, (1 + n) / (10 + n)); 0.999
        rather than the paper's 0.9999, which averages over ~10k steps, longer than a CPU run.
    grad_clip: max global gradient norm (None: no clipping). seed: all randomness.
    precision: "bf16" runs the network under bfloat16 autocast (loss in float32).
    conditional, label_dropout: train with labels; drop each to the null label with
        probability label_dropout (classifier-free guidance).
    out_dir: where files go. log_every, sample_every, checkpoint_every: in steps (0 = never;
        a checkpoint is always written at the end). keep_every: also keep a copy of the EMA
        weights every N steps, ``snapshots/ema_NNNNNN.safetensors`` (0 = never), for a learning
        curve of sample quality (``benchmarks/learning_curve.py``). sample_n, sample_steps: the grid.
    data_root: MNIST folder for ``data.load_mnist``. device: "auto" picks cuda, mps, cpu.
    num_threads: torch CPU threads during training (None: leave as is).
    """

    model: Literal["unet", "simple_unet"] = "unet"
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    schedule: Literal["linear", "cosine"] = "linear"
    T: int = 1000
    rescale: bool = False
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    steps: int = 10_000
    ema_decay: float = 0.999
    grad_clip: float | None = 1.0
    seed: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    conditional: bool = False
    label_dropout: float = 0.1
    out_dir: str = "runs/ddpm"
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 500
    keep_every: int = 0
    sample_n: int = 64
    sample_steps: int = 50
    data_root: str | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    num_threads: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "model_kwargs", _freeze(dict(self.model_kwargs)))
        object.__setattr__(self, "out_dir", str(self.out_dir))
        for name, allowed in _literal_choices().items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("T", "batch_size", "steps", "sample_n", "sample_steps"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("warmup_steps", "log_every", "sample_every", "checkpoint_every", "keep_every", "seed"):
            _check_int(name, getattr(self, name), minimum=0)
        if self.num_threads is not None:
            _check_int("num_threads", self.num_threads, minimum=1)
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got lr={self.lr}, weight_decay={self.weight_decay}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout must lie in [0, 1), got {self.label_dropout}")
        if self.conditional and self.model == "simple_unet":
            raise ValueError("conditional=True needs model='unet' (simple_unet takes no label)")
        if not self.conditional and dict(self.model_kwargs).get("num_classes") is not None:
            raise ValueError("model_kwargs sets num_classes but conditional=False; set conditional=True")

    def to_dict(self) -> dict:
        """Plain JSON-safe dict (model_kwargs as a dict, tuples as lists)."""
        d = dataclasses.asdict(self)
        d["model_kwargs"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_kwargs}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise a ValueError naming them."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        """The config as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        """Parse :meth:`to_json` output (or any JSON object with a subset of the fields)."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError(f"a TrainConfig JSON must be an object, got {type(d).__name__}")
        return cls.from_dict(d)

    def model_config_kwargs(self, in_channels: int = 1) -> dict:
        """``build_model`` kwargs with in_channels / T / num_classes filled in when absent."""
        kwargs = {k: v for k, v in self.model_kwargs}
        kwargs.setdefault("in_channels", in_channels)
        if self.model == "simple_unet":
            kwargs.setdefault("T", self.T)
        if self.conditional:
            kwargs.setdefault("num_classes", MNIST_CLASSES)
        return kwargs


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@functools.cache
def _literal_choices() -> dict[str, tuple]:
    """{field: allowed values} for the TrainConfig fields typed as Literal[...]."""
    hints = typing.get_type_hints(TrainConfig)
    return {name: typing.get_args(kind) for name, kind in hints.items() if typing.get_origin(kind) is Literal}


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


# -------------------------------------------------------------------- the small parts
def derive_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed for one named random stream of a run."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def lr_at(config: TrainConfig, step: int) -> float:
    """Learning rate of step ``step`` (0-based): lr * min(1, (step + 1) / warmup_steps)."""
    if config.warmup_steps == 0:
        return config.lr
    return config.lr * min(1.0, (step + 1) / config.warmup_steps)


def ema_decay_at(decay: float, num_updates: int) -> float:
    """EMA decay with warm-up, min(decay, (1 + n) / (10 + n)), so early averages forget
    the random initial weights (as TensorFlow's ExponentialMovingAverage with num_updates)."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta, in place; buffers are copied."""
    for p_ema, p in zip(ema_model.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1.0 - decay)  # p_ema + (1 - decay) (p - p_ema)
    for b_ema, b in zip(ema_model.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


class EpochSampler:
    """An endless stream of data indices: epoch after epoch, each a fresh permutation.

    A batch may run over the end of an epoch into the next one, so every image is seen
    once per epoch whatever the batch size. ``state_dict`` makes the stream resumable.
    """

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError(f"the data set is empty (n={n})")
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.pos = 0, 0
        self.perm = torch.randperm(n, generator=self.generator)

    def next(self, batch_size: int) -> torch.Tensor:
        """The next ``(batch_size,)`` long indices."""
        chunks, need = [], batch_size
        while need > 0:
            if self.pos == self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.epoch, self.pos = self.epoch + 1, 0
            take = min(need, self.n - self.pos)
            chunks.append(self.perm[self.pos : self.pos + take])
            self.pos, need = self.pos + take, need - take
        return torch.cat(chunks)

    def state_dict(self) -> dict:
        return {"n": self.n, "generator": self.generator.get_state(), "perm": self.perm, "epoch": self.epoch,
                "pos": self.pos}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n:
            raise ValueError(f"the checkpoint's data set had {state['n']} images, this one has {self.n}")
        self.generator.set_state(state["generator"])
        self.perm, self.epoch, self.pos = state["perm"], state["epoch"], state["pos"]


@dataclass(frozen=True)
class Batch:
    """One training batch: x0 ``(B, C, H, W)``, t ``(B,)``, eps like x0, y ``(B,)`` or None."""

    x0: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor
    y: torch.Tensor | None

    def slice(self, rows: slice, device: torch.device) -> "Batch":
        """These rows, moved to ``device``."""
        y = None if self.y is None else self.y[rows].to(device)
        return Batch(self.x0[rows].to(device), self.t[rows].to(device), self.eps[rows].to(device), y)


def draw_batch(
    x: torch.Tensor, y: torch.Tensor | None, sampler: EpochSampler, noise_generator: torch.Generator,
    config: TrainConfig, null_label: int | None,
) -> Batch:  # fmt: skip
    """Draw a global batch on the CPU: indices, then t, eps, label drop-outs, in this order.

    Every process draws the same global batch and keeps its slice (distributed training).
    """
    B = config.batch_size
    idx = sampler.next(B)  # (B,)
    x0 = x[idx]  # (B, C, H, W)
    t = torch.randint(0, config.T, (B,), generator=noise_generator)  # t ~ U{0..T-1}
    eps = torch.randn(x0.shape, generator=noise_generator, dtype=x0.dtype)  # eps ~ N(0, I)
    labels = None
    if config.conditional:
        drop = torch.rand(B, generator=noise_generator) < config.label_dropout  # (B,)
        labels = torch.where(drop, torch.full_like(y[idx], null_label), y[idx])
    return Batch(x0, t, eps, labels)


def diffusion_loss(model: nn.Module, schedule: Schedule, batch: Batch, precision: str = "fp32") -> torch.Tensor:
    """L_simple on one batch: x_t = q_sample(x0, t, eps) (eq. 4), mean ||eps - eps_theta||^2 (eq. 14)."""
    x_t = q_sample(schedule, batch.x0, batch.t, batch.eps)  # (B, C, H, W)
    with _autocast(batch.x0.device, precision):
        eps_pred = model(x_t, batch.t, batch.y)
    return l_simple(batch.eps, eps_pred.float())


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for precision "bf16"; for "fp32" no autocast object at all: torch
    before 2.5 refuses ``torch.autocast("mps")`` even with ``enabled=False`` (and 2.5 warns)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


# -------------------------------------------------------------------------- helpers
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


def _rng_state(device: torch.device) -> dict:
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "mps": torch.mps.get_rng_state() if device.type == "mps" else None}  # fmt: skip


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    if device.type == "mps" and state.get("mps") is not None:
        torch.mps.set_rng_state(state["mps"])


def _seed_global_rng(seed: int, device: torch.device) -> None:
    """Seed the global RNGs a run draws from: the CPU's (initial weights; dropout on the CPU) and
    ``device``'s (dropout there). Unlike ``torch.manual_seed``, other devices are left alone."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.init()
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


@contextlib.contextmanager
def _global_rng_kept(device: torch.device):
    """Put back the global RNG state of the CPU and ``device`` as it was on entry."""
    state = _rng_state(device)
    try:
        yield
    finally:
        _set_rng_state(state, device)


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


def _check_resume(saved: dict, config: TrainConfig) -> None:
    now = config.to_dict()
    changed = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v and k not in RESUMABLE_CHANGES}
    if changed:
        lines = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"cannot resume with a different config ({lines}); only {sorted(RESUMABLE_CHANGES)} may change")


def _diverged(what: str, value: float, step: int, lr: float, last: Path) -> TrainingDiverged:
    return TrainingDiverged(
        f"{what} is {value} at step {step + 1} (lr {lr:.3g}); no update was made with it. "
        f"The last good checkpoint is {last if last.exists() else '(none written yet)'}. "
        "Try a lower lr, a grad_clip, or precision fp32."
    )


def _truncate_log(out_dir: Path, step: int) -> None:
    kept = [e for e in read_log(out_dir) if e.get("step", 0) <= step]
    atomic_write_text(out_dir / "log.jsonl", "".join(json.dumps(e) + "\n" for e in kept))


# ---------------------------------------------------------------------------- train
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
        with _global_rng_kept(info.device):  # the run reseeds the global RNG; the caller gets theirs back
            return _train(config, resume, progress, data, info)
    finally:
        torch.set_num_threads(threads_before)
        distributed.teardown(info)


@dataclass(eq=False)
class _Run:
    """What changes during a run: exactly what ``last.pt`` holds and a resume restores."""

    model: nn.Module
    ema_model: nn.Module
    optimizer: torch.optim.Optimizer
    sampler: EpochSampler
    noise_generator: torch.Generator
    step: int = 0
    wall_before: float = 0.0  # training seconds of earlier sessions

    @classmethod
    def start(cls, config: TrainConfig, x: torch.Tensor, info: distributed.DistInfo) -> "_Run":
        _seed_global_rng(config.seed, info.device)  # the same initial weights on every rank
        try:
            model = build_model(config.model, **config.model_config_kwargs(in_channels=x.shape[1]))
        except TypeError as e:  # an unknown key in model_kwargs
            raise ValueError(f"model_kwargs do not fit model {config.model!r}: {e}") from None
        model = model.to(info.device).train()
        ema_model = copy.deepcopy(model).requires_grad_(False).eval()
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        sampler = EpochSampler(x.shape[0], derive_seed(config.seed, "data order"))
        noise_generator = torch.Generator().manual_seed(derive_seed(config.seed, "t, eps, labels"))
        _seed_global_rng(derive_seed(config.seed, f"dropout rank {info.rank}"), info.device)
        return cls(model, ema_model, optimizer, sampler, noise_generator)

    def state_dict(self, rng: list[dict], wall_time: float) -> dict:
        return {"step": self.step, "model": self.model.state_dict(), "ema": self.ema_model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "sampler": self.sampler.state_dict(),
                "noise_generator": self.noise_generator.get_state(), "rng": rng, "wall_time": wall_time}  # fmt: skip

    def load_state_dict(self, state: dict, info: distributed.DistInfo) -> None:
        self.model.load_state_dict(state["model"])
        self.ema_model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.noise_generator.set_state(state["noise_generator"])
        if len(state["rng"]) == info.world_size:
            _set_rng_state(state["rng"][info.rank], info.device)
        else:
            logger.warning("checkpoint of %d processes, now %d: dropout noise is reseeded", len(state["rng"]),
                           info.world_size)  # fmt: skip
        self.step, self.wall_before = state["step"], state["wall_time"]


def _train_step(
    run: _Run, net: nn.Module, schedule: Schedule, batch: Batch, config: TrainConfig, info: distributed.DistInfo,
    stop: "_StopRequest", last: Path,
) -> tuple[float, float, bool]:  # fmt: skip
    """One step of Algorithm 1 on this rank's rows; returns (global-batch loss, lr, stop on any rank)."""
    loss = diffusion_loss(net, schedule, batch, config.precision)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()  # under DDP: the mean of the ranks' gradients = gradient of the global-batch loss
    # One all-reduce gives every rank the global loss and any rank's stop request. float32, as the
    # loss itself: under nccl the sum runs on the GPU, and a device never gets float64 (MPS has none).
    totals = distributed.all_reduce_sum(torch.tensor([loss.item(), float(stop.requested)], dtype=torch.float32), info)
    loss_value, stop_now = totals[0].item() / info.world_size, totals[1].item() > 0
    lr = lr_at(config, run.step)
    if not math.isfinite(loss_value):
        raise _diverged("loss", loss_value, run.step, lr, last)
    if config.grad_clip is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip).item()
        if not math.isfinite(grad_norm):
            raise _diverged("gradient norm", grad_norm, run.step, lr, last)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.optimizer.step()
    ema_update(run.ema_model, run.model, ema_decay_at(config.ema_decay, run.step))
    run.step += 1
    return loss_value, lr, stop_now


def _train(config: TrainConfig, resume: bool, progress: bool, data, info: distributed.DistInfo) -> TrainResult:
    device, out_dir = info.device, Path(config.out_dir)
    last = out_dir / "last.pt"
    x, y = _prepare_data(config, data)
    schedule = make_schedule(config.schedule, config.T, config.rescale)
    rows = distributed.rank_slice(config.batch_size, info)
    run = _Run.start(config, x, info)
    null_label = getattr(run.model.config, "num_classes", None)
    if config.conditional and int(y.max()) >= null_label:
        raise ValueError(f"labels go up to {int(y.max())} but the model has num_classes={null_label}")
    fingerprint = _fingerprint(x, y)

    if resume and last.exists():
        state = load_state(last)
        _check_resume(state["config"], config)
        if state["data"] != fingerprint:
            logger.warning("resuming on other data than the checkpoint's: the run will not match an unbroken one")
        run.load_state_dict(state, info)
        logger.info("resumed %s at step %d", last, run.step)
    elif resume:
        logger.warning("resume asked for, but %s does not exist: starting a new run", last)
    elif last.exists():
        raise FileExistsError(f"{out_dir} already holds a run ({last}); resume it, or choose another out_dir")
    if info.is_main:
        atomic_write_text(out_dir / "config.json", config.to_json() + "\n")
        _truncate_log(out_dir, run.step)  # drop entries written after the checkpoint we start from

    net = run.model
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(run.model, device_ids=[device.index] if device.type == "cuda" else None)
    card = {"schedule": schedule_card(config.schedule, config.T, config.rescale), "image_shape": list(x.shape[1:]),
            "weights": "ema", "training": config.to_dict()}  # fmt: skip

    def checkpoint(recent_loss: float | None, final: bool) -> None:
        rng = distributed.all_gather_objects(_rng_state(device), info)  # every rank's dropout RNG
        if not info.is_main:
            return
        model_card = {**card, "step": run.step, "metrics": {"loss": recent_loss}}
        save_model(out_dir / "ema.safetensors", run.ema_model, model_card)
        if final:
            save_model(out_dir / "final.safetensors", run.ema_model, model_card)
        state = run.state_dict(rng, wall_time=run.wall_before + time.perf_counter() - session_start)
        state.update(config=config.to_dict(), model_config=model_to_config_dict(run.model), schedule=card["schedule"],
                     image_shape=card["image_shape"], world_size=info.world_size, data=fingerprint)  # fmt: skip
        save_state(last, state)  # written last: the commit point of a checkpoint
        logger.info("step %d: checkpoint %s", run.step, last)

    def every(n: int) -> bool:
        return n > 0 and run.step % n == 0

    losses: list[float] = []
    window: list[float] = []  # losses since the last log line
    start_step = run.step
    session_start = tick = time.perf_counter()
    bar = tqdm(total=config.steps, initial=run.step, desc="train", unit="step", disable=not (progress and info.is_main))
    try:
        with _StopRequest() as stop:
            while run.step < config.steps:
                batch = draw_batch(x, y, run.sampler, run.noise_generator, config, null_label).slice(rows, device)
                loss_value, lr, stop_now = _train_step(run, net, schedule, batch, config, info, stop, last)
                losses.append(loss_value)
                window.append(loss_value)
                bar.update(1)
                done = run.step == config.steps
                if every(config.log_every) or done:
                    now = time.perf_counter()
                    entry = {"step": run.step, "loss": sum(window) / len(window), "lr": lr,
                             "images_per_s": len(window) * config.batch_size / max(now - tick, 1e-9),
                             "wall_time": run.wall_before + now - session_start}  # fmt: skip
                    if info.is_main:
                        with open(out_dir / "log.jsonl", "a", encoding="utf-8") as f:
                            f.write(json.dumps(entry) + "\n")
                    bar.set_postfix(loss=f"{entry['loss']:.4f}", img_s=f"{entry['images_per_s']:.0f}", refresh=False)
                    tick, window = now, []
                if info.is_main and (every(config.sample_every) or (done and config.sample_every)):
                    path = out_dir / "samples" / f"step_{run.step:06d}.png"
                    save_sample_grid(run.ema_model, schedule, path, config, x.shape[1:], device)
                if info.is_main and every(config.keep_every):
                    snapshot = {**card, "step": run.step, "metrics": {"loss": loss_value}}
                    save_model(out_dir / "snapshots" / f"ema_{run.step:06d}.safetensors", run.ema_model, snapshot)
                if every(config.checkpoint_every) or done or stop_now:
                    checkpoint(loss_value, final=done)
                if stop_now:
                    raise TrainingInterrupted(run.step, last)
            if start_step >= config.steps:
                checkpoint(None, final=True)  # resumed a run that had already finished
    finally:
        bar.close()
    wall_time = run.wall_before + time.perf_counter() - session_start
    final_path = out_dir / "final.safetensors" if info.is_main else None
    return TrainResult(config, run.model.eval(), run.ema_model, schedule, run.step, tuple(losses), out_dir,
                       final_path, wall_time)  # fmt: skip


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

"""The configuration of a training run: every choice that defines it, checked, with a JSON round trip.

:class:`TrainConfig` is what ``course-ddpm train`` writes to ``config.json`` and what
:func:`course_ddpm.training.train` runs; :data:`RESUMABLE_CHANGES` lists the fields a
resumed run may change, and :func:`check_resumable` refuses any other change.
The algorithm the fields parameterise is Ho et al. 2020 (arXiv:2006.11239), Algorithm 1
(see :mod:`course_ddpm.training_step`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from dataclasses import dataclass
from typing import Any, Literal

#: Config fields that may change when a run is resumed (they do not change the maths).
RESUMABLE_CHANGES = frozenset(
    {"steps", "out_dir", "log_every", "sample_every", "checkpoint_every", "keep_every", "sample_n",
     "sample_steps", "data_root", "device", "num_threads"}
)  # fmt: skip
MNIST_CLASSES = 10


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


def check_resumable(saved: dict, config: TrainConfig) -> None:
    """Raise a ValueError naming every field of ``config`` that differs from the ``saved``
    config dict (a checkpoint's) outside :data:`RESUMABLE_CHANGES`."""
    now = config.to_dict()
    changed = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v and k not in RESUMABLE_CHANGES}
    if changed:
        lines = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"cannot resume with a different config ({lines}); only {sorted(RESUMABLE_CHANGES)} may change")

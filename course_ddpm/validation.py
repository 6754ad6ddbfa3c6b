"""Input checks shared by the package: a clear error where a value crosses a public boundary.

Every module imports its checks from here, so each rule (what a time index is, what a
model must return, ...) is written once. A check raises ``TypeError`` for a value of the
wrong kind and ``ValueError`` for a value of the right kind out of range; it returns the
value (converted where it says so), so a caller can write ``t = check_t(t, T, B)``.

Devices: the *values* of index tensors are checked only on the CPU. Reading a GPU tensor
waits for the GPU, and these checks run on every sampling and training step; the loops
make their indices from Python ints, which are checked before they become tensors.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


# ------------------------------------------------------------------------- tensors
def check_float(name: str, x: torch.Tensor) -> torch.Tensor:
    """Raise a clear TypeError unless x is a floating-point tensor; return x."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got dtype {x.dtype}")
    return x


def check_same_shape(**tensors: torch.Tensor) -> None:
    """Raise a ValueError naming the arguments unless all tensors have one shape."""
    shapes = {name: tuple(x.shape) for name, x in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError("shape mismatch: " + ", ".join(f"{n} {s}" for n, s in shapes.items()))


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """A batch shape such as ``(B, C, H, W)`` (any ``(B, ...)``) of positive ints, as a tuple."""
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(f"shape must be a non-empty tuple of ints such as (B, C, H, W), got {shape!r}")
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise ValueError(f"shape must hold positive ints, got {tuple(shape)}")
    return tuple(shape)


def check_eps_pred(eps_pred: object, shape: Sequence[int]) -> torch.Tensor:
    """What a noise predictor returned: a tensor of the shape of its input x_t."""
    if not isinstance(eps_pred, torch.Tensor):
        raise TypeError(f"model must return a tensor eps_pred, got {type(eps_pred).__name__}")
    if tuple(eps_pred.shape) != tuple(shape):
        raise ValueError(f"model returned eps_pred of shape {tuple(eps_pred.shape)}, expected {tuple(shape)}")
    return eps_pred


def check_count(name: str, value: int, low: int = 1, high: int | None = None) -> int:
    """A number of things (images, a batch size): an int in [low, high] (no upper bound for None)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
    return value


# -------------------------------------------------------------------- time indices
def check_T(T: int) -> int:  # noqa: N802 - the paper's symbol
    """The number of diffusion steps: an int >= 1."""
    if isinstance(T, bool) or not isinstance(T, int):
        raise TypeError(f"T must be an int, got {type(T).__name__}")
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    return T


def check_t(
    t: int | torch.Tensor, T: int, batch: int | None = None, *, low: int = 0, name: str = "t"
) -> torch.Tensor:
    """Code time indices (see :mod:`course_ddpm.schedules`) as a ``(B,)`` long tensor in [low, T).

    Args:
        t: a ``(B,)`` integer tensor; when ``batch`` is given also an int or a 0-d tensor,
            which is repeated B times.
        T: number of diffusion steps.
        batch: B, the batch size of the data t belongs to (None: any).
        low: 0 for a noisy x_t; -1 where code t = -1 stands for the clean data x_0
            (alpha_bar = 1, the end of a DDIM chain).
        name: the argument's name in error messages.

    The values are checked only for a CPU tensor (see the module docstring).
    """
    if isinstance(t, bool):
        raise TypeError(f"{name} must be an int or an integer tensor, got bool")
    if isinstance(t, int) and batch is not None:
        t = torch.full((batch,), t, dtype=torch.long)
    elif isinstance(t, torch.Tensor) and t.ndim == 0 and batch is not None:
        t = t.reshape(1).expand(batch)
    elif not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer time indices, got {type(t).__name__}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer time indices in [{low}, T), got dtype {t.dtype}")
    if t.ndim != 1:
        raise ValueError(f"{name} must have shape (B,), got {tuple(t.shape)}")
    if batch is not None and t.shape[0] != batch:
        raise ValueError(f"{name} has batch size {t.shape[0]} but the data has batch size {batch}")
    if t.numel() and t.device.type == "cpu" and (int(t.min()) < low or int(t.max()) >= T):
        raise ValueError(
            f"{name} must lie in [{low}, T) = [{low}, {T}), got values in [{int(t.min())}, {int(t.max())}]"
        )
    return t.long()


def check_t_pair(
    t: int | torch.Tensor,
    t_prev: int | torch.Tensor,
    T: int,
    batch: int | None = None,
    names: tuple[str, str] = ("t", "t_prev"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """A step from code t down to t_prev: -1 <= t_prev < t < T; both as ``(B,)`` long tensors.

    Without ``batch``, ints give shape ``(1,)`` and tensors keep theirs. The order is checked,
    like the values, only on the CPU.
    """
    if batch is None:
        batch = next((x.shape[0] for x in (t, t_prev) if isinstance(x, torch.Tensor) and x.ndim == 1), 1)
    t_ = check_t(t, T, batch, name=names[0])
    t_prev_ = check_t(t_prev, T, batch, low=-1, name=names[1])
    if t_.device.type == t_prev_.device.type == "cpu" and bool((t_prev_ >= t_).any()):
        raise ValueError(f"{names[1]} must be smaller than {names[0]} (got {t_prev} and {t})")
    return t_, t_prev_


def check_num_inference_steps(num_inference_steps: int, T: int) -> int:
    """The number K of sampling steps: an int, 1 <= K <= T."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
        raise TypeError(f"num_inference_steps must be an int, got {type(num_inference_steps).__name__}")
    if not 1 <= num_inference_steps <= T:
        raise ValueError(f"num_inference_steps must lie in [1, T] = [1, {T}], got {num_inference_steps}")
    return num_inference_steps


# -------------------------------------------------------------------------- options
def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """One of the names of a ``typing.Literal`` option."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_eta(eta: float) -> float:
    """DDIM's eta (Song et al. 2021, eq. 16): a float in [0, 1]."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)):
        raise TypeError(f"eta must be a float, got {type(eta).__name__}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(
            f"eta must lie in [0, 1], got {eta} (0: deterministic DDIM, 1: DDPM-like; Song et al. eq. 16)"
        )
    return eta


# ------------------------------------------------------------------------ labels
def check_labels(y: object, batch: int) -> torch.Tensor:
    """Class labels y: an integer tensor of shape ``(B,)``."""
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y must be an integer tensor of class labels, got {getattr(y, 'dtype', type(y).__name__)}")
    if y.shape != (batch,):
        raise ValueError(f"y must have shape (B,) = ({batch},), got {tuple(y.shape)}")
    return y


def check_guidance_scale(guidance_scale: float) -> float:
    """The classifier-free guidance scale s: a finite float."""
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
        raise TypeError(f"guidance_scale must be a float, got {type(guidance_scale).__name__}")
    if not math.isfinite(guidance_scale):
        raise ValueError(f"guidance_scale must be finite, got {guidance_scale}")
    return guidance_scale


def check_null_label(null_label: int) -> int:
    """The "no label" class of classifier-free guidance: an int >= 0."""
    if isinstance(null_label, bool) or not isinstance(null_label, int) or null_label < 0:
        raise ValueError(f"null_label must be an int >= 0, got {null_label!r}")
    return null_label


# ------------------------------------------------------------------------ networks
def check_model_inputs(
    x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, in_channels: int, num_classes: int | None,
    T: int | None = None,
) -> None:  # fmt: skip
    """Clear errors for the public ``forward(x_t, t, y)`` of every denoising network.

    Args:
        x_t: ``(B, in_channels, H, W)`` float.
        t: ``(B,)`` integer code time indices, in [0, T) when the model knows its T.
        y: ``(B,)`` integer labels in [0, num_classes] (num_classes = the null label), or None.
        in_channels: C of the model.
        num_classes: None for an unconditional model (then ``y`` must be None).
        T: number of diffusion steps, if the model has one (else only t >= 0 is checked).
    """
    check_float("x_t", x_t)
    if x_t.ndim != 4 or x_t.shape[1] != in_channels:
        raise ValueError(f"x_t must have shape (B, {in_channels}, H, W), got {tuple(x_t.shape)}")
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor of integer time indices, got {type(t).__name__}")
    check_t(t, math.inf if T is None else T, batch=x_t.shape[0])
    if y is None:
        return
    if num_classes is None:
        raise ValueError("y was given but the model is unconditional (config.num_classes is None)")
    check_labels(y, x_t.shape[0])
    if y.numel() and y.device.type == "cpu" and (int(y.min()) < 0 or int(y.max()) > num_classes):
        raise ValueError(f"y must lie in [0, {num_classes}] ({num_classes} = null label), got [{int(y.min())}, {int(y.max())}]")

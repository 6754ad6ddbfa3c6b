"""Input checks at the package's public boundaries, with errors that name the argument.

* :func:`check_model_inputs` -- what every denoising network's ``forward(x_t, t, y)`` accepts;
* :func:`check_model_output` -- a model's ``eps_pred`` has the shape of its input ``x_t``.

Values of ``t`` and ``y`` are range-checked only on the CPU: reading a GPU tensor waits for
the GPU, and these checks run on every sampling and training step.
"""

from __future__ import annotations

import torch


def _is_integer_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)


def check_model_inputs(
    x_t: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor | None,
    in_channels: int,
    num_classes: int | None,
    T: int | None = None,
) -> None:
    """Clear errors for the public ``forward(x_t, t, y)`` of every model.

    Args:
        x_t: ``(B, in_channels, H, W)`` float.
        t: ``(B,)`` integer code time indices, in [0, T) when the model knows its T.
        y: ``(B,)`` integer labels in [0, num_classes] (num_classes = the null label), or None.
        in_channels: C of the model.
        num_classes: None for an unconditional model (then ``y`` must be None).
        T: number of diffusion steps, if the model has one (else only t >= 0 is checked).
    """
    if not isinstance(x_t, torch.Tensor) or not x_t.is_floating_point():
        raise TypeError(f"x_t must be a float tensor, got {getattr(x_t, 'dtype', type(x_t).__name__)}")
    if x_t.ndim != 4 or x_t.shape[1] != in_channels:
        raise ValueError(f"x_t must have shape (B, {in_channels}, H, W), got {tuple(x_t.shape)}")
    if not _is_integer_tensor(t):
        raise TypeError(f"t must be an integer tensor of code time indices, got {getattr(t, 'dtype', type(t).__name__)}")
    if t.ndim != 1 or t.shape[0] != x_t.shape[0]:
        raise ValueError(f"t must have shape (B,) = ({x_t.shape[0]},), got {tuple(t.shape)}")
    if t.numel() and t.device.type == "cpu" and (int(t.min()) < 0 or (T is not None and int(t.max()) >= T)):
        raise ValueError(f"t must lie in [0, {T if T is not None else 'T'}), got [{int(t.min())}, {int(t.max())}]")
    if y is None:
        return
    if num_classes is None:
        raise ValueError("y was given but the model is unconditional (config.num_classes is None)")
    if not _is_integer_tensor(y):
        raise TypeError(f"y must be an integer tensor of class labels, got {getattr(y, 'dtype', type(y).__name__)}")
    if y.ndim != 1 or y.shape[0] != x_t.shape[0]:
        raise ValueError(f"y must have shape (B,) = ({x_t.shape[0]},), got {tuple(y.shape)}")
    if y.numel() and y.device.type == "cpu" and (int(y.min()) < 0 or int(y.max()) > num_classes):
        raise ValueError(f"y must lie in [0, {num_classes}] ({num_classes} = null label), got [{int(y.min())}, {int(y.max())}]")


def check_model_output(eps_pred: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """``eps_pred`` as returned, after checking it has the shape of the model's input ``x_t``."""
    if eps_pred.shape != x_t.shape:
        raise ValueError(f"model returned shape {tuple(eps_pred.shape)}, expected {tuple(x_t.shape)}")
    return eps_pred

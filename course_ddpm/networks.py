"""Denoising networks eps_theta(x_t, t[, y]): the registry, and tools to inspect them.

Two models share one interface, so that samplers, losses and training code never ask
which one they hold:

* :class:`~course_ddpm.simple_unet.SimpleUNet` (:mod:`course_ddpm.simple_unet`) -- the
  seed lecture's network, kept to show its limits: each output pixel sees 9x9 pixels.
* :class:`~course_ddpm.unet.UNet` (:mod:`course_ddpm.unet`) -- the course default, after
  Ho et al. 2020 (arXiv:2006.11239), section 4 and appendix B.

Interface (every diffusion model here):
    ``model.config`` -- its frozen config dataclass;
    ``model(x_t, t, y=None) -> eps_pred``, with x_t ``(B, C, H, W)`` float, t ``(B,)``
    integer code time indices 0..T-1 (see :mod:`course_ddpm.schedules`), y ``(B,)``
    integer labels or None; eps_pred has the shape of x_t.

Registry (a model file's card names its model, :mod:`course_ddpm.checkpoints`):
:func:`build_model`, :func:`model_to_config_dict`, :func:`model_from_config_dict`. It
also holds ``"mnist_classifier"``, the digit classifier of :mod:`course_ddpm.classifier`
(``model(x) -> logits``, no denoiser), so that it is saved and loaded as the same file
format as the diffusion models.
Inspection: :func:`count_parameters`, :func:`flops_per_image`, :func:`receptive_field`,
:func:`block_summary`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from course_ddpm.classifier import ClassifierConfig, MNISTClassifier
from course_ddpm.simple_unet import SimpleUNet, SimpleUNetConfig
from course_ddpm.unet import SelfAttention, UNet, UNetConfig

ModelName = Literal["unet", "simple_unet", "mnist_classifier"]


# ------------------------------------------------------------------------ registry
_MODELS = {
    "unet": (UNet, UNetConfig),
    "simple_unet": (SimpleUNet, SimpleUNetConfig),
    "mnist_classifier": (MNISTClassifier, ClassifierConfig),
}


def build_model(name: ModelName, **config_kwargs) -> nn.Module:
    """A fresh model by name: ``build_model("unet", num_classes=10)``."""
    if name not in _MODELS:
        raise ValueError(f"name must be one of {sorted(_MODELS)}, got {name!r}")
    model_cls, config_cls = _MODELS[name]
    return model_cls(config_cls(**config_kwargs))


def model_to_config_dict(model: nn.Module) -> dict:
    """``{"name": ..., **config}`` as JSON-safe plain types (tuples become lists)."""
    for name, (model_cls, _) in _MODELS.items():
        if type(model) is model_cls:
            d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(model.config).items()}
            return {"name": name, **d}
    raise TypeError(f"model must be one of {[c.__name__ for c, _ in _MODELS.values()]}, got {type(model).__name__}")


def model_from_config_dict(d: dict) -> nn.Module:
    """Inverse of :func:`model_to_config_dict` (a fresh, untrained model)."""
    d = dict(d)
    if "name" not in d:
        raise ValueError("config dict has no 'name' key")
    name = d.pop("name")
    return build_model(name, **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def receptive_field(model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, pixel: tuple[int, int]) -> torch.Tensor:
    """|d eps_pred[0, 0, i, j] / d x_t[0]| summed over channels, ``(H, W)``.

    Non-zero exactly on the input pixels that output pixel (i, j) depends on: the
    measured receptive field (9x9 for :class:`SimpleUNet`, the whole image for :class:`UNet`).

    Args:
        x_t: ``(1, C, H, W)`` input; t: ``(1,)`` code time index; pixel: output (i, j).
    """
    x_t = x_t.detach().clone().requires_grad_(True)
    model(x_t, t)[0, 0, pixel[0], pixel[1]].backward()
    return x_t.grad[0].abs().sum(0)  # (H, W)


@dataclass(frozen=True)
class BlockRow:
    """One top-level block of a :class:`UNet` on the path of one image: see :func:`block_summary`."""

    name: str  # attribute path, e.g. "down[2]"
    kind: str  # class name, "+attn" when it carries self-attention
    output_shape: tuple[int, ...]  # (C, H, W), or (emb_dim,) for the time MLP
    parameters: int


def block_summary(unet: UNet, image_shape: tuple[int, int, int] | None = None) -> list[BlockRow]:
    """The top-level blocks of ``unet`` in the order one image runs through them.

    One forward pass at t = 0 (and the null label on a conditional model) with forward
    hooks on time_mlp, conv_in, each down block, mid1, mid2, each up block and out records
    what each block outputs. The rows' parameters plus the class embedding's (if any)
    add up to ``count_parameters(unet)``.
    """
    if not isinstance(unet, UNet):
        raise TypeError(f"block_summary needs a UNet, got {type(unet).__name__}")
    shape = image_shape or (unet.config.in_channels, 28, 28)
    blocks = [("time_mlp", unet.time_mlp), ("conv_in", unet.conv_in)]
    blocks += [(f"down[{i}]", m) for i, m in enumerate(unet.down)] + [("mid1", unet.mid1), ("mid2", unet.mid2)]
    blocks += [(f"up[{i}]", m) for i, m in enumerate(unet.up)] + [("out", unet.out)]
    rows: list[BlockRow] = []

    def record(name: str, module: nn.Module):
        def hook(_module, _inputs, output):
            attn = " +attn" if isinstance(getattr(module, "attn", None), SelfAttention) else ""
            rows.append(BlockRow(name, type(module).__name__ + attn, tuple(output.shape[1:]), count_parameters(module)))

        return hook

    handles = [module.register_forward_hook(record(name, module)) for name, module in blocks]
    device = next(unet.parameters()).device
    try:
        with torch.no_grad():
            unet(torch.zeros(1, *shape, device=device), torch.zeros(1, dtype=torch.long, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return rows


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Module, image_shape: tuple[int, int, int] = (1, 28, 28)) -> int:
    """Forward FLOPs for one image, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    Counts matrix products and convolutions (a multiply-add = 2 FLOPs; a conv layer is
    2 * C_in * C_out * k * k * H_out * W_out); normalisation, activations, biases and
    other element-wise work are not counted (they are a few percent here). One image at
    t = 0, and y = None (the null label on a conditional model). A training step
    (forward + backward) costs about 3x this.

    Models whose forward has another signature (e.g. diffusers' UNet2DModel, which takes
    (sample, timestep)) are called as model(x, t) too, which works for that one.
    """
    device = next(model.parameters()).device
    x = torch.zeros(1, *image_shape, device=device)
    t = torch.zeros(1, dtype=torch.long, device=device)
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with counter, torch.no_grad():
            model(x, t)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())

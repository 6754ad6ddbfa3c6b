"""Denoising networks eps_theta(x_t, t[, y]) that predict the noise added to an image.

Two models share one interface, so that samplers, losses and training code never ask
which one they hold:

* :class:`SimpleUNet` -- the seed lecture's network, kept to show its limits: no
  down-sampling and no skips, so each output pixel sees only a 9x9 window of x_t.
* :class:`UNet` -- the course default, after Ho et al. 2020 (arXiv:2006.11239),
  section 4 and appendix B: a U-Net of residual blocks with GroupNorm, a sinusoidal
  embedding of t added in every block, self-attention at the lowest resolution, and
  (optionally) a class label y for classifier-free guidance (Ho & Salimans 2022,
  arXiv:2207.12598).

Interface (every model here):
    ``model.config`` -- its frozen config dataclass;
    ``model(x_t, t, y=None) -> eps_pred``, with x_t ``(B, C, H, W)`` float, t ``(B,)``
    integer code time indices 0..T-1 (see :mod:`course_ddpm.schedules`), y ``(B,)``
    integer labels or None; eps_pred has the shape of x_t.

Helpers: :func:`build_model`, :func:`model_to_config_dict`, :func:`model_from_config_dict`,
:func:`count_parameters`, :func:`flops_per_image`, :func:`receptive_field`,
:func:`block_summary`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ModelName = Literal["unet", "simple_unet"]


# --------------------------------------------------------------------------- checks
def _check_inputs(x_t, t, y, in_channels: int, num_classes: int | None, T: int | None = None) -> None:
    """Clear errors for the public forward(x_t, t, y) of every model.

    The values of t and y are range-checked only on the CPU: reading a GPU tensor waits for
    the GPU, and forward runs on every sampling and training step.
    """
    if not isinstance(x_t, torch.Tensor) or not x_t.is_floating_point():
        raise TypeError(f"x_t must be a float tensor, got {getattr(x_t, 'dtype', type(x_t).__name__)}")
    if x_t.ndim != 4 or x_t.shape[1] != in_channels:
        raise ValueError(f"x_t must have shape (B, {in_channels}, H, W), got {tuple(x_t.shape)}")
    if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must be an integer tensor of code time indices, got {getattr(t, 'dtype', type(t).__name__)}")
    if t.ndim != 1 or t.shape[0] != x_t.shape[0]:
        raise ValueError(f"t must have shape (B,) = ({x_t.shape[0]},), got {tuple(t.shape)}")
    if t.numel() and t.device.type == "cpu" and (int(t.min()) < 0 or (T is not None and int(t.max()) >= T)):
        raise ValueError(f"t must lie in [0, {T if T is not None else 'T'}), got [{int(t.min())}, {int(t.max())}]")
    if y is None:
        return
    if num_classes is None:
        raise ValueError("y was given but the model is unconditional (config.num_classes is None)")
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y must be an integer tensor of class labels, got {getattr(y, 'dtype', type(y).__name__)}")
    if y.ndim != 1 or y.shape[0] != x_t.shape[0]:
        raise ValueError(f"y must have shape (B,) = ({x_t.shape[0]},), got {tuple(y.shape)}")
    if y.numel() and y.device.type == "cpu" and (int(y.min()) < 0 or int(y.max()) > num_classes):
        raise ValueError(f"y must lie in [0, {num_classes}] ({num_classes} = null label), got [{int(y.min())}, {int(y.max())}]")


# ---------------------------------------------------------------------- SimpleUNet
@dataclass(frozen=True)
class SimpleUNetConfig:
    """Config of :class:`SimpleUNet`. T: number of diffusion steps (t is fed as t / T)."""

    T: int = 300
    in_channels: int = 1

    def __post_init__(self):
        if self.T < 1 or self.in_channels < 1:
            raise ValueError(f"T and in_channels must be >= 1, got T={self.T}, in_channels={self.in_channels}")


class SimpleUNet(nn.Module):
    """The seed lecture's "U-Net": four 3x3 convolutions at full resolution, 166k parameters.

    x_t -> Conv(C,64) -> ReLU -> Conv(64,128) -> ReLU -> (+ time_mlp(t / T)) ->
    ConvT(128,64) -> ReLU -> ConvT(64,C) -> eps_pred, all at 28x28.

    Its limits, which the course shows on purpose:
    * the "transposed" convolutions have stride 1, so they up-sample nothing and are
      plain 3x3 convolutions (with a flipped kernel); there is no down-sampling and no
      skip connection, so it is not a U-Net: each output pixel sees a 9x9 window
      (4 layers x 2 pixels + 1) of a 28x28 image and cannot know what digit it is in;
    * time enters once, as the raw scalar t / T through Linear(1,128)-ReLU-Linear(128,128),
      added (broadcast over pixels) to the 128-channel map;
    * every layer runs at 28x28 with up to 128 channels, so it costs more compute per
      image than the much stronger :class:`UNet`.

    The seed listing is cut off at the ``time_mlp`` line (completed here as
    Linear(1,128)-ReLU-Linear(128,128), which gives the listing's 166k parameters) and
    at a print statement (left out: library code does not print).
    """

    def __init__(self, config: SimpleUNetConfig = SimpleUNetConfig()):
        super().__init__()
        self.config = config
        c = config.in_channels
        self.conv1 = nn.Conv2d(c, 64, 3, padding=1)
        self.conv2 = nn.Conv2d(64, 128, 3, padding=1)
        self.time_mlp = nn.Sequential(nn.Linear(1, 128), nn.ReLU(), nn.Linear(128, 128))
        self.deconv1 = nn.ConvTranspose2d(128, 64, 3, stride=1, padding=1)
        self.deconv2 = nn.ConvTranspose2d(64, c, 3, stride=1, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_inputs(x_t, t, y, self.config.in_channels, None, T=self.config.T)
        h = F.relu(self.conv1(x_t))  # (B, 64, H, W)
        h = F.relu(self.conv2(h))  # (B, 128, H, W)
        t_in = (t.to(x_t.dtype) / self.config.T)[:, None]  # (B, 1)
        h = h + self.time_mlp(t_in)[:, :, None, None]  # (B, 128, 1, 1) broadcast over pixels
        h = F.relu(self.deconv1(h))  # (B, 64, H, W)
        return self.deconv2(h)  # (B, C, H, W)


# ---------------------------------------------------------------------------- UNet
@dataclass(frozen=True)
class UNetConfig:
    """Config of :class:`UNet`.

    in_channels: 1 (MNIST) or 3 (colour). base_channels: width at full resolution;
    level i has base_channels * channel_mults[i] channels and runs at H / 2**i.
    num_res_blocks: residual blocks per level on the way down (one more on the way up).
    attention: self-attention at the lowest resolution (7x7 for 28x28 inputs).
    num_classes: None for an unconditional model; else labels 0..num_classes-1 plus the
    null label num_classes ("no label", for classifier-free guidance).
    dropout: in every residual block. groups: GroupNorm groups.
    The default width and depth (16, 1; 0.28M parameters) gave the lowest held-out
    eps-MSE for a fixed CPU-time budget among widths 16/32 x depths 1/2 (measured in
    benchmarks/README.md); the gap to width 32 was shrinking with longer training.
    """

    in_channels: int = 1
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention: bool = True
    num_classes: int | None = None
    dropout: float = 0.0
    groups: int = 8

    def __post_init__(self):
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        if self.in_channels < 1 or self.base_channels < 1 or self.num_res_blocks < 1 or not self.channel_mults:
            raise ValueError(f"in_channels, base_channels, num_res_blocks must be >= 1 and channel_mults non-empty: {self}")
        if self.base_channels % 2:
            raise ValueError(f"base_channels must be even (it is the sinusoidal embedding size), got {self.base_channels}")
        if any(self.base_channels * m % self.groups for m in self.channel_mults):
            raise ValueError(f"base_channels * each channel_mult must be divisible by groups={self.groups}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be None or >= 1, got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoidal position embedding of t (Vaswani et al. 2017, section 3.5).

    emb[:, i] = sin(t * w_i), emb[:, dim/2 + i] = cos(t * w_i), w_i = max_period^(-i / (dim/2)),
    as used for the diffusion time in Ho et al. 2020, section 4.

    Args:
        t: ``(B,)`` time indices (any numeric dtype). dim: even embedding size.
    Returns:
        ``(B, dim)`` float32.
    """
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    w = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)  # (half,)
    angle = t.float()[:, None] * w[None, :]  # (B, half)
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)  # (B, dim)


class ResBlock(nn.Module):
    """Residual block with the time (and class) embedding added between its two convolutions.

    h = Conv(SiLU(GN(x))) + Linear(SiLU(emb)),  out = skip(x) + Conv(Dropout(SiLU(GN(h)))),
    where skip is a 1x1 conv when the widths differ, else the identity (the Wide ResNet
    block of Ho et al. 2020's U-Net, section 4 and appendix B, with GroupNorm "GN").

    Args of forward: x ``(B, in_ch, H, W)``, emb ``(B, emb_dim)``. Returns ``(B, out_ch, H, W)``.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out, H, W)
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]  # time (and class) added per channel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the H*W pixels, with a residual connection.

    out = x + Proj(softmax(Q K^T / sqrt(C)) V), where Q, K, V are ``(HW, C)`` 1x1-conv
    projections of GN(x): every pixel mixes the values of all pixels (Vaswani et al. 2017,
    eq. 1; Ho et al. 2020 use it at 16x16, section 4; here at the lowest resolution).
    """

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(2, 3).unbind(1)  # 3 x (B, HW, C)
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(C), dim=-1)  # (B, HW, HW), rows sum to 1
        h = (weights @ v).transpose(1, 2).reshape(B, C, H, W)  # (B, HW, C) -> (B, C, H, W)
        return x + self.proj(h)


class ResAttnBlock(nn.Module):
    """A ResBlock followed, if use_attention, by SelfAttention."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float, use_attention: bool):
        super().__init__()
        self.res = ResBlock(in_ch, out_ch, emb_dim, groups, dropout)
        self.attn = SelfAttention(out_ch, groups) if use_attention else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.attn(self.res(x, emb))


class UNet(nn.Module):
    """The course's noise predictor eps_theta(x_t, t, y): a small DDPM U-Net.

    Structure (Ho et al. 2020, appendix B, scaled down for 28x28 images on a CPU):
    conv_in -> per level: num_res_blocks ResBlocks (+ attention at the lowest level),
    then a stride-2 conv (28 -> 14 -> 7) -> middle ResBlock, attention, ResBlock ->
    per level upward: num_res_blocks + 1 ResBlocks, each taking the matching skip
    concatenated on channels, then nearest-neighbour up-sampling + conv -> GN, SiLU, conv_out.

    Time: emb = MLP(sinusoidal(t)) enters every ResBlock. Class: emb += Embedding(y), where
    y = num_classes is the null label; y=None on a conditional model means "all null".
    """

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = config
        cfg, base = config, config.base_channels
        emb_dim = 4 * base
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = None if cfg.num_classes is None else nn.Embedding(cfg.num_classes + 1, emb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, base, 3, padding=1)
        lowest = len(cfg.channel_mults) - 1

        def block(in_ch: int, out_ch: int, level: int) -> ResAttnBlock:
            use_attention = cfg.attention and level == lowest
            return ResAttnBlock(in_ch, out_ch, emb_dim, cfg.groups, cfg.dropout, use_attention)

        self.down = nn.ModuleList()
        skip_channels, ch = [base], base
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                self.down.append(block(ch, base * mult, level))
                ch = base * mult
                skip_channels.append(ch)
            if level != lowest:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))  # H -> H / 2
                skip_channels.append(ch)

        self.mid1 = block(ch, ch, lowest)  # ResBlock + attention (if cfg.attention)
        self.mid2 = ResBlock(ch, ch, emb_dim, cfg.groups, cfg.dropout)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(block(ch + skip_channels.pop(), base * mult, level))
                ch = base * mult
            if level != 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)))

        self.out = nn.Sequential(nn.GroupNorm(cfg.groups, ch), nn.SiLU(), nn.Conv2d(ch, cfg.in_channels, 3, padding=1))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        _check_inputs(x_t, t, y, cfg.in_channels, cfg.num_classes)
        factor = 2 ** (len(cfg.channel_mults) - 1)
        if x_t.shape[2] % factor or x_t.shape[3] % factor:
            raise ValueError(f"x_t height and width must be divisible by {factor}, got {tuple(x_t.shape[2:])}")
        emb = self.time_mlp(sinusoidal_embedding(t, cfg.base_channels).to(x_t.dtype))  # (B, 4 base)
        if self.class_emb is not None:
            y = torch.full_like(t, cfg.num_classes) if y is None else y  # None -> null label
            emb = emb + self.class_emb(y.long())

        h = self.conv_in(x_t)  # (B, base, H, W)
        skips = [h]
        for layer in self.down:
            if isinstance(layer, ResAttnBlock):
                h = layer(h, emb)
            else:  # stride-2 conv
                h = layer(h)
            skips.append(h)
        h = self.mid2(self.mid1(h, emb), emb)
        for layer in self.up:
            if isinstance(layer, ResAttnBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)  # (B, ch + skip_ch, H, W) in
            else:  # up-sample
                h = layer(h)
        return self.out(h)  # (B, C, H, W)


# ------------------------------------------------------------------------- helpers
_MODELS = {"unet": (UNet, UNetConfig), "simple_unet": (SimpleUNet, SimpleUNetConfig)}


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

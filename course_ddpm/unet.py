"""The course's noise predictor eps_theta(x_t, t, y): a small DDPM U-Net and its blocks.

After Ho et al. 2020 (arXiv:2006.11239), section 4 and appendix B: a U-Net of residual
blocks with GroupNorm, a sinusoidal embedding of t added in every block, self-attention
at the lowest resolution, and (optionally) a class label y for classifier-free guidance
(Ho & Salimans 2022, arXiv:2207.12598). Its interface is that of every model in
:mod:`course_ddpm.networks`.

Blocks: :func:`sinusoidal_embedding`, :class:`ResBlock`, :class:`SelfAttention`,
:class:`ResAttnBlock`; the network: :class:`UNetConfig`, :class:`UNet`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_ddpm.validation import check_model_inputs


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
        check_model_inputs(x_t, t, y, cfg.in_channels, cfg.num_classes)
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

"""The seed lecture's network, SimpleUNet: eps_theta(x_t, t) from four 3x3 convolutions.

Kept to show its limits (see :class:`SimpleUNet`): no down-sampling and no skips, so each
output pixel sees only a 9x9 window of x_t. The course's network is :mod:`course_ddpm.unet`;
both share the interface described in :mod:`course_ddpm.networks`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_ddpm.validation import check_model_inputs


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
        check_model_inputs(x_t, t, y, self.config.in_channels, None, T=self.config.T)
        h = F.relu(self.conv1(x_t))  # (B, 64, H, W)
        h = F.relu(self.conv2(h))  # (B, 128, H, W)
        t_in = (t.to(x_t.dtype) / self.config.T)[:, None]  # (B, 1)
        h = h + self.time_mlp(t_in)[:, :, None, None]  # (B, 128, 1, 1) broadcast over pixels
        h = F.relu(self.deconv1(h))  # (B, 64, H, W)
        return self.deconv2(h)  # (B, C, H, W)

"""A small MLP noise predictor eps_theta(x_t, t) for low-dimensional data (the 2-D playground).

The same interface as the image networks of :mod:`course_ddpm.networks`,
``model(x_t, t, y=None) -> eps_pred``, so the package's training step
(:func:`course_ddpm.training_step.train_step`) and samplers (:func:`course_ddpm.sampling.sample`)
run it unchanged; only x_t is ``(B, D)`` instead of ``(B, C, H, W)``.

Time enters as in the course UNet (Ho et al. 2020, section 4): the sinusoidal embedding of
t (:func:`course_ddpm.unet.sinusoidal_embedding`) through a two-layer MLP, added to every
hidden layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_ddpm.unet import sinusoidal_embedding
from course_ddpm.validation import check_float, check_t


@dataclass(frozen=True)
class MLPConfig:
    """Config of :class:`MLP`. dim: D of the data. hidden: width. depth: hidden layers.
    time_dim: size of the sinusoidal embedding of t (even)."""

    dim: int = 2
    hidden: int = 64
    depth: int = 3
    time_dim: int = 32

    def __post_init__(self):
        if min(self.dim, self.hidden, self.depth, self.time_dim) < 1 or self.time_dim % 2:
            raise ValueError(f"dim, hidden, depth must be >= 1 and time_dim even and >= 2, got {self}")


class MLP(nn.Module):
    """eps_theta(x_t, t) for ``(B, D)`` data: depth hidden layers, SiLU, time added to each.

        emb = Linear(SiLU(Linear(sinusoidal(t))))                      # (B, hidden)
        h_0 = Linear(x_t);  h_{i+1} = SiLU(Linear(h_i + emb))          # (B, hidden)
        eps_pred = Linear(h_depth)                                     # (B, D)
    """

    def __init__(self, config: MLPConfig = MLPConfig()):
        super().__init__()
        self.config = config
        h = config.hidden
        self.time_mlp = nn.Sequential(nn.Linear(config.time_dim, h), nn.SiLU(), nn.Linear(h, h))
        self.inp = nn.Linear(config.dim, h)
        self.hidden = nn.ModuleList(nn.Linear(h, h) for _ in range(config.depth))
        self.out = nn.Linear(h, config.dim)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_float("x_t", x_t)
        if x_t.ndim != 2 or x_t.shape[1] != self.config.dim:
            raise ValueError(f"x_t must have shape (B, {self.config.dim}), got {tuple(x_t.shape)}")
        if y is not None:
            raise ValueError("the MLP is unconditional: y must be None")
        check_t(t, float("inf"), batch=x_t.shape[0])
        emb = self.time_mlp(sinusoidal_embedding(t, self.config.time_dim).to(x_t.dtype))  # (B, hidden)
        h = self.inp(x_t)  # (B, hidden)
        for layer in self.hidden:
            h = F.silu(layer(h + emb))  # (B, hidden)
        return self.out(h)  # (B, D)

"""The random streams of a training run: named seeds, and the global RNG it seeds and puts back.

A run draws from three kinds of randomness (see :mod:`course_ddpm.training`):

* seeded ``torch.Generator`` streams on the CPU, one per job, each with its own seed
  from :func:`derive_seed` (data order; t, eps and label drop-outs; the sample grid);
* the global RNG of the CPU (initial weights, dropout on the CPU) and of the run's device
  (dropout there), which :func:`seed_global_rng` seeds;
* whatever the caller had in the global RNG, which :func:`global_rng_kept` puts back,
  so that unseeded code after a run draws as if the run had not happened.

The state of the global RNG (:func:`get_rng_state`) goes into ``last.pt``, so that a
resumed run draws the same dropout masks as one never stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch


def derive_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed for one named random stream of a run.

    The first 8 bytes of sha256("{seed}:{stream}"), little-endian, shifted right by one.
    """
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_global_rng(seed: int, device: torch.device) -> None:
    """Seed the global RNGs a run draws from: the CPU's (initial weights; dropout on the CPU) and
    ``device``'s (dropout there). Unlike ``torch.manual_seed``, other devices are left alone."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.init()
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def get_rng_state(device: torch.device) -> dict:
    """The global RNG state of the CPU and of ``device``: {"cpu", "cuda", "mps"} (None where unused)."""
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "mps": torch.mps.get_rng_state() if device.type == "mps" else None}  # fmt: skip


def set_rng_state(state: dict, device: torch.device) -> None:
    """Put back a state from :func:`get_rng_state` (the CPU's, and ``device``'s where it holds one)."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    if device.type == "mps" and state.get("mps") is not None:
        torch.mps.set_rng_state(state["mps"])


@contextlib.contextmanager
def global_rng_kept(device: torch.device) -> Iterator[None]:
    """Put back the global RNG state of the CPU and ``device`` as it was on entry."""
    state = get_rng_state(device)
    try:
        yield
    finally:
        set_rng_state(state, device)

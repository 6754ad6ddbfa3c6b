"""Measured results the course quotes, shipped with the package as JSON.

The benchmark scripts in ``benchmarks/`` write them (``--json``); they are committed under
``course_ddpm/measurements/`` so that a notebook, the README's figure script and the tests read
the same numbers wherever the notebooks are opened from, with no network and no rerun:

* ``sampler_study``: ``benchmarks/sampler_study.py`` on the shipped UNet (notebook 4);
* ``budget_study``: ``benchmarks/budget_study.py``, three networks after the same CPU time (notebook 3);
* ``learning_curve``: ``benchmarks/learning_curve.py`` on EMA snapshots of the shipped run, with a
  few samples of each snapshot (:func:`images_from_json`; notebook 3);
* ``evaluation_10000``: ``course-ddpm evaluate --n 10000`` of the shipped UNet (also in its card);
* ``networks``: ``benchmarks/bench_networks.py --mode both``, the networks' size, speed and
  held-out error after equal CPU time (the README's network tables);
* ``ode_likelihood``: ``benchmarks/ode_likelihood.py``, the probability-flow ODE's bits/dim beside
  the ELBO, and its NFE against MNIST-FID beside DDIM (notebook 5);
* ``playground``: ``benchmarks/playground.py``, the 2-D playground's wall time to good samples
  (notebook 7);
* ``guidance_sweep``: ``benchmarks/guidance_sweep.py`` on the shipped ``unet_cond``, accuracy,
  MNIST-FID, variety and saturation against the guidance scale (notebook 6);
* ``ddim_ablation``: ``benchmarks/sampler_study.py --ablation --features``, DDIM-50 with eta,
  clipping and spacing varied, beside DDPM, in two classifiers' feature spaces;
* ``interpolation_study``: ``benchmarks/interpolation_study.py``, DDIM decodes of the midpoints of
  slerp and of the straight line between many pairs of noises (notebook 4).

How each was made is in ``benchmarks/README.md``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import torch

RESULTS = ("sampler_study", "budget_study", "learning_curve", "evaluation_10000", "networks", "ode_likelihood",
           "playground", "guidance_sweep", "ddim_ablation", "interpolation_study")


def results_dir() -> Path:
    """The folder that holds the results' JSON files (inside the installed package)."""
    return Path(__file__).resolve().parent / "measurements"


def load_result(name: str) -> dict:
    """The JSON of one result by name (see :data:`RESULTS`), as a dict."""
    if name not in RESULTS:
        raise ValueError(f"name must be one of {list(RESULTS)}, got {name!r}")
    path = results_dir() / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the package was installed without its results")
    return json.loads(path.read_text(encoding="utf-8"))


def images_to_json(x: torch.Tensor) -> dict:
    """Images in model space [-1, 1], ``(K, C, H, W)``, as JSON: their 8-bit pixels, base64.

    ``round(255 * clamp((x + 1) / 2, 0, 1))``: what a PNG of them would hold, 784 bytes per MNIST digit.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"expected floating-point images (K, C, H, W), got {x.dtype} {tuple(x.shape)}")
    pixels = ((x.detach().float().cpu() + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8)  # (K, C, H, W)
    return {"shape": list(pixels.shape), "uint8_base64": base64.b64encode(pixels.numpy().tobytes()).decode("ascii")}


def images_from_json(d: dict) -> torch.Tensor:
    """:func:`images_to_json` back: float32 images in [-1, 1], ``(K, C, H, W)`` (8-bit steps of 2/255)."""
    raw = bytearray(base64.b64decode(d["uint8_base64"]))
    pixels = torch.frombuffer(raw, dtype=torch.uint8).reshape(d["shape"])
    return pixels.float() / 127.5 - 1

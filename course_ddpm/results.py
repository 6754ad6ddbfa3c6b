"""Measured results the course quotes, shipped with the package as JSON.

The benchmark scripts in ``benchmarks/`` write them (``--json``); they are committed under
``course_ddpm/measurements/`` so that a notebook, the README's figure script and the tests read
the same numbers wherever the notebooks are opened from, with no network and no rerun:

* ``sampler_study``: ``benchmarks/sampler_study.py`` on the shipped UNet (notebook 4);
* ``budget_study``: ``benchmarks/budget_study.py``, three networks after the same CPU time (notebook 3);
* ``learning_curve``: ``benchmarks/learning_curve.py`` on EMA snapshots of the shipped run;
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

import json
from pathlib import Path

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

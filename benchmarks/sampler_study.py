"""Sampler study: DDPM with all T steps against DDIM with 10-100 steps, on one trained model.

Every configuration samples from the same model, starting from the same x_T (one draw of
N(0, I) for the seed, shared by all configurations; the noise z added during sampling
comes from a fresh generator per configuration), and is measured the same way:

* seconds per sample (wall clock and CPU), and the speed-up over DDPM with
  sigma_t^2 = beta_tilde_t ("fixed_small"); the number of network calls per sample is
  the number of steps, T for DDPM and K for DDIM;
* MNIST-FID against the 10,000 MNIST test images (:func:`course_ddpm.fid.mnist_fid`),
  with the floor (N real training images) and the ceiling (N images of uniform noise)
  at the same N (:func:`course_ddpm.fid.fid_reference_points`). FID falls with N
  even for perfect samples, so FIDs at different N are not comparable;
* the digit histogram of the classifier's predictions, its KL divergence from uniform
  (nats) and the mean classifier confidence.

Configurations (``--configs`` takes comma-separated names or shell patterns):

  ddpm_small, ddpm_large    Ho et al. 2020 (arXiv:2006.11239), Algorithm 2, all T steps,
                            sigma_t^2 = beta_tilde_t or beta_t (section 3.2)
  ddimK_etaE                Song et al. 2021 (arXiv:2010.02502), eq. 12 with sigma from
                            eq. 16, K in {10, 20, 50, 100}, eta in {0, 0.5, 1}

Ablation of DDIM-50 (``--ablation``; the 14 above are the default): eta in {0, 1} x x0 clipping
on/off x "leading"/"trailing" timestep spacing, named ddim50_etaE[_noclip][_trailing], beside
ddpm_small (give it a smaller ``--ddpm-n``: it costs 20x more per sample). Every
configuration above clips x0_pred to [-1, 1] (Ho et al.'s released code, not Algorithm 2) and
uses the "leading" spacing (the first step at t = 980, not T - 1 = 999); the ablation measures
what each choice does to the FID:

  python benchmarks/sampler_study.py --ablation --features --n 1000 --ddpm-n 300 --threads 1 \
      --json course_ddpm/measurements/ddim_ablation.json

``--features`` adds, per configuration, FID, KID and improved precision/recall in two feature
spaces: the course classifier's and an independently trained second classifier's
(:func:`measure_features`), to see whether the ranking of the samplers depends on the features.

The full run of the issue (10,000 samples per configuration) takes hours on a CPU; see
benchmarks/README.md for the commands and the time each part takes.

  python benchmarks/sampler_study.py --threads 2 --json sampler_study.json
  python benchmarks/sampler_study.py --n 50 --ddpm-n 10 --configs ddpm_small,ddim50_eta0   # smoke run

On two cores, run two parts side by side (one thread each, same --n and --ddpm-n) and merge:

  python benchmarks/sampler_study.py --configs 'ddpm_small,ddim*' --json a.json &
  python benchmarks/sampler_study.py --configs ddpm_large --json b.json; wait
  python benchmarks/sampler_study.py --merge a.json b.json --json sampler_study.json
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from course_ddpm.checkpoints import load_model, schedule_from_card, state_dict_sha256
from course_ddpm.evaluation import NUM_DIGITS, digit_histogram, kl_from_uniform, mean_confidence
from course_ddpm.fid import fid_reference_points, mnist_fid
from course_ddpm.rng import derive_seed
from course_ddpm.sampling import generate
from course_ddpm.schedules import Schedule
from course_ddpm.validation import check_count

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)  # benchmarks/ is a folder of scripts, not a package
from run_info import run_meta  # noqa: E402

DDIM_STEPS = (10, 20, 50, 100)
DDIM_ETAS = (0.0, 0.5, 1.0)

PUBLISHED = (
    "Published expectation (Song et al. 2021, DDIM, arXiv:2010.02502, Table 1, CIFAR10, Inception-FID): "
    "DDIM with 50 steps reaches within 1.0-1.5x the FID of DDPM with 1000 steps, with 20x fewer network "
    "calls (the abstract: 10x to 50x faster in wall-clock time). Compare the ratio FID(ddim50_eta0) / "
    "FID(ddpm_*) at the same N (the last column when --ddpm-n differs from --n), not the numbers "
    "themselves: MNIST-FID is not Inception-FID."
)


@dataclass(frozen=True)
class SamplerConfig:
    """One sampler setting. steps=None means all T steps (DDPM); variance is DDPM's only.

    The field names are the study's JSON keys: ``steps`` is :func:`~course_ddpm.sampling.generate`'s
    ``num_inference_steps``, ``variance`` its ``variance_type``.
    """

    name: str
    sampler: Literal["ddpm", "ddim"]
    steps: int | None = None
    eta: float = 0.0
    variance: Literal["fixed_small", "fixed_large"] = "fixed_small"
    clip_x0: bool = True
    spacing: Literal["leading", "trailing"] = "leading"

    def network_calls(self, T: int) -> int:
        """Network evaluations per sample: T for DDPM, K for K-step DDIM."""
        return T if self.steps is None else self.steps


def default_configs() -> list[SamplerConfig]:
    """The 14 configurations of the study: 2 DDPM variances, 4 DDIM step counts x 3 etas."""
    configs = [
        SamplerConfig("ddpm_small", "ddpm", variance="fixed_small"),
        SamplerConfig("ddpm_large", "ddpm", variance="fixed_large"),
    ]
    for steps in DDIM_STEPS:
        for eta in DDIM_ETAS:
            configs.append(SamplerConfig(f"ddim{steps}_eta{eta:g}", "ddim", steps=steps, eta=eta))
    return configs


def ablation_configs() -> list[SamplerConfig]:
    """DDIM-50 with eta in {0, 1}, x0 clipping on and off, leading and trailing spacing: 8 configurations."""
    configs = []
    for eta in (0.0, 1.0):
        for clip_x0 in (True, False):
            for spacing in ("leading", "trailing"):
                name = f"ddim50_eta{eta:g}" + ("" if clip_x0 else "_noclip") + ("" if spacing == "leading" else "_trailing")
                configs.append(SamplerConfig(name, "ddim", steps=50, eta=eta, clip_x0=clip_x0, spacing=spacing))
    return configs


def select_configs(patterns: str | None, configs: list[SamplerConfig]) -> list[SamplerConfig]:
    """Configurations whose name matches any comma-separated name or pattern (None: all)."""
    if patterns is None:
        return list(configs)
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    unknown = [p for p in wanted if not any(fnmatch.fnmatchcase(c.name, p) for c in configs)]
    if unknown:
        raise ValueError(f"--configs: {unknown} match no configuration; known: {[c.name for c in configs]}")
    return [c for c in configs if any(fnmatch.fnmatchcase(c.name, p) for p in wanted)]


def draw_x_T(n: int, seed: int, image_shape: tuple[int, ...] = (1, 28, 28)) -> torch.Tensor:
    """The shared starting noise x_T ~ N(0, I), ``(n, *image_shape)``: the same for every configuration."""
    return torch.randn((n, *image_shape), generator=torch.Generator().manual_seed(seed))


def run_config(
    model: nn.Module,
    schedule: Schedule,
    config: SamplerConfig,
    x_T: torch.Tensor,
    *,
    seed: int,
    batch_size: int,
    progress: bool = True,
) -> tuple[torch.Tensor, float, float]:
    """Sample ``len(x_T)`` images with one configuration, in batches, from the given x_T.

    The noise z added during sampling comes from a generator seeded afresh per configuration.

    Returns:
        samples ``(N, *x_T.shape[1:])`` on the CPU, wall seconds, CPU seconds (all threads).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    samples = generate(
        model, schedule, len(x_T), x_T=x_T, sampler=config.sampler, num_inference_steps=config.steps,
        eta=config.eta, variance_type=config.variance, clip_x0=config.clip_x0, spacing=config.spacing,
        seed=derive_seed(seed, f"sampler noise {config.name}"),
        batch_size=batch_size, progress=progress,
    )  # fmt: skip
    return samples, time.perf_counter() - wall, time.process_time() - cpu


def measure(samples: torch.Tensor) -> dict:
    """MNIST-FID against the test set, digit counts and fractions, their KL from uniform, mean confidence."""
    counts, fractions = digit_histogram(samples)
    return {
        "fid": mnist_fid(samples),
        "digit_counts": [int(c) for c in counts],
        "digit_fractions": [float(f) for f in fractions],
        "kl_from_uniform": kl_from_uniform(fractions),
        "mean_confidence": mean_confidence(samples),
    }


#: The feature spaces of the ablation: the course classifier (that of every MNIST-FID) and a
#: second one, trained independently (other seed, half the width; pretrained "classifier_b").
FEATURE_SPACES = {"a": "classifier", "b": "classifier_b"}


@functools.lru_cache(maxsize=None)
def _classifier(name: str) -> nn.Module:
    """A shipped classifier, loaded (and its hashes checked) once per process."""
    from course_ddpm.pretrained import load_pretrained

    return load_pretrained(name)[0]


def measure_features(samples: torch.Tensor, real: torch.Tensor) -> dict:
    """In each feature space: FID against the 10,000 test images, KID (mean, std) and improved
    precision/recall (k = 3) against ``real``, a random subset of the test images of the samples' size."""
    from course_ddpm.feature_metrics import kernel_distance, precision_recall
    from course_ddpm.fid import classifier_outputs, frechet_distance, mnist_test_outputs

    out = {}
    for key, name in FEATURE_SPACES.items():
        classifier = _classifier(name)  # one object per space: mnist_test_outputs caches per object
        features = classifier_outputs(samples, classifier)[0]  # (N, d)
        real_features = classifier_outputs(real, classifier)[0]  # (N, d)
        kid, kid_std = kernel_distance(features, real_features)
        precision, recall = precision_recall(features, real_features)
        out[key] = {
            "fid": frechet_distance(features, mnist_test_outputs(classifier)[0]),
            "kid": kid, "kid_std": kid_std, "precision": precision, "recall": recall,
        }  # fmt: skip
    return out


def run_study(
    model: nn.Module,
    schedule: Schedule,
    configs: list[SamplerConfig],
    *,
    n: int,
    ddpm_n: int | None = None,
    seed: int = 0,
    batch_size: int = 250,
    progress: bool = True,
    features: bool = False,
) -> dict:
    """Run every configuration and measure it; a JSON-safe dict (see :func:`format_tables`).

    With ``features``, each row also holds ``features``: :func:`measure_features` of its first
    ``common_n`` samples, in the course classifier's feature space ("a") and a second one ("b").

    DDPM configurations sample ``ddpm_n`` images (default ``n``) from the first ``ddpm_n``
    of the shared x_T, DDIM ones ``n``. ``reference`` holds the FID floor and ceiling at
    each N used; ``speedup`` is relative to ``ddpm_small`` (None when it was not run).
    ``fid_common_n`` is every configuration's FID on its first ``common_n = min(n, ddpm_n)``
    samples, which start from the same x_T in all configurations: the like-for-like
    comparison when ``ddpm_n`` differs from ``n``.
    """
    ddpm_n = n if ddpm_n is None else ddpm_n
    check_count("n", n, 2, 60_000)
    check_count("ddpm_n", ddpm_n, 2, 60_000)
    if not configs:
        raise ValueError("configs is empty")
    T = schedule.T
    sizes = {c.name: ddpm_n if c.sampler == "ddpm" else n for c in configs}
    common_n = min(sizes.values())
    x_T = draw_x_T(max(sizes.values()), seed)
    reference = {N: fid_reference_points(N, seed=seed) for N in sorted(set(sizes.values()))}
    real = None
    if features:  # N real test images, drawn once, the reference of KID and precision/recall
        from course_ddpm.data import load_mnist

        x_test, _ = load_mnist(train=False)
        real = x_test[torch.randperm(len(x_test), generator=torch.Generator().manual_seed(seed))[:common_n]]
    results = []
    for config in configs:
        N = sizes[config.name]
        samples, wall, cpu = run_config(
            model, schedule, config, x_T[:N], seed=seed, batch_size=batch_size, progress=progress
        )
        results.append({
            **asdict(config), "network_calls": config.network_calls(T), "n": N, "wall_s": wall, "cpu_s": cpu,
            "wall_s_per_sample": wall / N, "cpu_s_per_sample": cpu / N, **measure(samples),
            "fid_floor": reference[N]["floor"], "fid_ceiling": reference[N]["ceiling"],
        })  # fmt: skip
        if features:
            results[-1]["features"] = measure_features(samples[:common_n], real)
        results[-1]["fid_common_n"] = results[-1]["fid"] if N == common_n else mnist_fid(samples[:common_n])
    add_speedups(results, T)
    return {
        "T": T,
        "seed": seed,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "common_n": common_n,
        "reference": {str(N): {"floor": v["floor"], "ceiling": v["ceiling"]} for N, v in reference.items()},
        "published": PUBLISHED,
        "results": results,
    }


def add_speedups(results: list[dict], T: int) -> None:
    """Set each row's speed-ups over ``ddpm_small`` (wall and CPU; None without it) and T / calls, in place."""
    base = next((r for r in results if r["name"] == "ddpm_small"), None)
    for r in results:
        r["speedup"] = None if base is None else base["wall_s_per_sample"] / r["wall_s_per_sample"]
        r["speedup_cpu"] = None if base is None else base["cpu_s_per_sample"] / r["cpu_s_per_sample"]
        r["call_ratio"] = T / r["network_calls"]


#: Settings that must agree for the parts of a study run as separate processes to be one study.
MERGE_KEYS = ("T", "seed", "batch_size", "threads")


def merge_studies(parts: list[dict]) -> dict:
    """One study from parts run side by side as separate processes (e.g. one per core).

    The parts must share the model (the sha256 of its tensors), T, seed, batch size, threads and
    ``common_n``, and name each configuration once; then their x_T are the same draws, and
    the speed-ups are recomputed over the merged rows (``ddpm_small`` may sit in any part).
    Rows keep their default order; ``meta`` keeps every part's meta under ``parts``.
    """
    if len(parts) < 2:
        raise ValueError(f"merging needs at least two study parts, got {len(parts)}")
    first = parts[0]
    for key in (*MERGE_KEYS, "common_n"):
        values = [p[key] for p in parts]
        if len(set(values)) != 1:
            raise ValueError(f"cannot merge: the parts differ in {key} ({values})")
    shas = [(p.get("meta") or {}).get("tensors_sha256") for p in parts]
    if len(set(shas)) != 1:
        raise ValueError(f"cannot merge: the parts sampled from different weights (tensor sha256 {shas})")
    results = [r for p in parts for r in p["results"]]
    names = [r["name"] for r in results]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"cannot merge: {twice} ran in more than one part")
    order = {c.name: i for i, c in enumerate(default_configs() + ablation_configs())}
    results.sort(key=lambda r: order.get(r["name"], len(order)))
    add_speedups(results, first["T"])
    reference = {}
    for p in parts:
        reference.update(p["reference"])
    metas = [p.get("meta") or {} for p in parts]
    meta = {**metas[0], "argv": [m.get("argv") for m in metas], "parts": metas,
            "total_wall_s": max(m.get("total_wall_s", 0.0) for m in metas)}  # fmt: skip
    reference = dict(sorted(reference.items(), key=lambda kv: int(kv[0])))
    return {**{k: first[k] for k in MERGE_KEYS}, "common_n": first["common_n"], "reference": reference,
            "published": first["published"], "results": results, "meta": meta}  # fmt: skip


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def format_tables(study: dict) -> str:
    """The study as two markdown tables (measures; digit histograms), the FID yardsticks and the expectation."""
    common_n = study["common_n"]
    mixed = any(r["n"] != common_n for r in study["results"])  # some FIDs at another N: add a like-for-like column
    lines = [
        f"T = {study['T']}, seed {study['seed']}, batch {study['batch_size']}, {study['threads']} thread(s); "
        "same x_T for every configuration; speed-up = DDPM fixed_small s/sample / this s/sample (wall clock).",
        "",
        "| config | sampler | steps (calls/sample) | eta | variance | N | s/sample (wall) | CPU-s/sample "
        "| speed-up (wall) | speed-up (calls) | MNIST-FID | FID floor at N | FID ceiling at N | digit KL (nats) "
        "| mean confidence |" + (f" MNIST-FID, first {common_n} samples (same x_T) |" if mixed else ""),
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if mixed else ""),
    ]
    for r in study["results"]:
        variance = r["variance"] if r["sampler"] == "ddpm" else "-"
        lines.append(
            f"| {r['name']} | {r['sampler']} | {r['network_calls']} | {r['eta']:g} | {variance} | {r['n']} "
            f"| {r['wall_s_per_sample']:.4f} | {r['cpu_s_per_sample']:.4f} | {_fmt(r['speedup'], '.1f')} "
            f"| {r['call_ratio']:.0f} | {r['fid']:.2f} | {r['fid_floor']:.2f} | {r['fid_ceiling']:.0f} "
            f"| {r['kl_from_uniform']:.4f} | {r['mean_confidence']:.4f} |"
            + (f" {r['fid_common_n']:.2f} |" if mixed else "")
        )
    lines += [
        "",
        "Digit histogram (fraction of samples the classifier assigns to each digit; uniform = 0.100):",
        "",
        "| config | N | " + " | ".join(str(k) for k in range(NUM_DIGITS)) + " |",
        "|---|---:|" + "---:|" * NUM_DIGITS,
    ]
    for r in study["results"]:
        lines.append(f"| {r['name']} | {r['n']} | " + " | ".join(f"{f:.3f}" for f in r["digit_fractions"]) + " |")
    if any(r["n"] < study["batch_size"] for r in study["results"]):
        lines += ["", "Note: some configurations ran with N below the batch size, i.e. smaller batches; "
                      "seconds per sample are then higher and the wall-clock speed-ups not like for like."]
    if all("features" in r for r in study["results"]):
        lines += ["", f"Two feature spaces (a: the course classifier, b: a second, independently trained one), first "
                      f"{common_n} samples; KID (feature units, unbiased: can be < 0); precision / recall against {common_n} test images:", "",
                  "| config | FID a | FID b | KID a | KID b | precision a | recall a | precision b | recall b |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in study["results"]:
            a, b = r["features"]["a"], r["features"]["b"]
            lines.append(f"| {r['name']} | {a['fid']:.2f} | {b['fid']:.2f} | {a['kid']:.3g} | {b['kid']:.3g} "
                         f"| {a['precision']:.3f} | {a['recall']:.3f} | {b['precision']:.3f} | {b['recall']:.3f} |")  # fmt: skip
    lines += ["", "MNIST-FID yardsticks at each N (FIDs at different N are not comparable):", ""]
    for N, ref in study["reference"].items():
        lines.append(f"- N = {N}: floor {ref['floor']:.2f} (N real training images), "
                     f"ceiling {ref['ceiling']:.0f} (N images of uniform noise)")  # fmt: skip
    lines += ["", study["published"]]
    return "\n".join(lines)


def load_checkpoint(checkpoint: str) -> tuple[nn.Module, dict]:
    """``"pretrained"``: the shipped ``load_pretrained("unet")``; else a path for :func:`load_model`."""
    if checkpoint == "pretrained":
        from course_ddpm.pretrained import REGISTRY, load_pretrained

        model, card = load_pretrained("unet")
        return model, {**card, "weights_sha256": REGISTRY["unet"].weights_sha256}
    return load_model(checkpoint)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="pretrained", help="'pretrained' (the shipped UNet) or a model file")
    p.add_argument("--n", type=int, default=10_000, help="samples per DDIM configuration (default 10000)")
    p.add_argument("--ddpm-n", type=int, default=None, help="samples per DDPM configuration (default: --n)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--configs", default=None,
                   help="comma-separated names or patterns, e.g. 'ddpm_small,ddim50_*' (default: all 14)")
    p.add_argument("--ablation", action="store_true",
                   help="the 8 DDIM-50 configurations of eta x clipping x spacing instead of the default 14")
    p.add_argument("--features", action="store_true",
                   help="also FID, KID and precision/recall in two classifiers' feature spaces (measure_features)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--merge", nargs="+", metavar="PART_JSON", default=None,
                   help="merge the JSON files of parts run in parallel (same model, seed, N) into one study; "
                        "prints its tables and writes --json; samples nothing")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Command line: run the study, print the tables, write --json; returns the JSON dict."""
    args = parse_args(argv)
    if args.merge:
        study = merge_studies([json.loads(Path(f).read_text(encoding="utf-8")) for f in args.merge])
        return _report(study, args.json, "merged " + ", ".join(args.merge))
    torch.set_num_threads(args.threads)
    configs = select_configs(args.configs, default_configs()[:1] + ablation_configs() if args.ablation else default_configs())
    model, card = load_checkpoint(args.checkpoint)
    schedule = schedule_from_card(card)
    start = time.perf_counter()
    study = run_study(
        model, schedule, configs, n=args.n, ddpm_n=args.ddpm_n, seed=args.seed, batch_size=args.batch_size,
        progress=not args.no_progress, features=args.features,
    )  # fmt: skip
    study["meta"] = {
        "checkpoint": args.checkpoint,
        "checkpoint_step": card.get("step"),
        "weights_sha256": card.get("weights_sha256"),
        "tensors_sha256": state_dict_sha256(model),
        "model": card.get("model"),
        "schedule": (card.get("schedule") or {}).get("name"),
        **run_meta(argv, start),
    }
    return _report(study, args.json, args.checkpoint)


def _report(study: dict, json_path: str | None, source: str) -> dict:
    """Write ``json_path`` (if given), then print the heading and the tables; returns ``study``."""
    meta = study["meta"]
    if json_path:  # first, so that a closed pipe (| head) cannot lose the results
        Path(json_path).write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
    load = "n/a" if meta.get("load_average") is None else f"{meta['load_average'][0]:.1f}"
    print(f"\nSampler study: {source} (step {meta.get('checkpoint_step')}, weights sha256 "
          f"{str(meta.get('weights_sha256'))[:12]}), schedule {meta.get('schedule')}, load average {load}, "
          f"{meta['total_wall_s']:.0f} s in all\n")  # fmt: skip
    print(format_tables(study))
    if json_path:
        print(f"\nwrote {json_path}")
    return study


if __name__ == "__main__":
    main()

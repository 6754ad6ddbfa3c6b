"""Guidance sweep: what the classifier-free guidance scale s buys and costs, on the shipped unet_cond.

For each scale s the shipped class-conditional UNet draws N digits (labels 0, 1, ..., 9, 0, ...,
so N/10 of each) with DDIM-50, eta = 0, from the *same* x_T, so that row i of every scale
starts from the same noise. Guidance follows Ho & Salimans 2022 (arXiv:2207.12598):

    eps = eps_uncond + s (eps_cond - eps_uncond)          (course_ddpm.guidance.predict_eps)

s = 0 is the unconditional model (sampled with the null label, one pass per step), s = 1 the
plain conditional model (one pass with y); every other s takes both passes. Measured per s:

* accuracy: the fraction of samples the course's classifier reads as the requested digit,
  overall and per digit (the issue's bar: >= 97 % for every digit at the recommended s);
* MNIST-FID of all N against the 10,000 test images, and per digit against the test images
  of that digit, each beside its floor at the same N (real training images);
* the feature spread per digit (1 = as varied as MNIST) and the pixel statistics (ink,
  grey, mean brightness) beside MNIST's: :mod:`course_ddpm.class_metrics`;
* wall seconds.

  python benchmarks/guidance_sweep.py --threads 1 --json course_ddpm/measurements/guidance_sweep.json
  python benchmarks/guidance_sweep.py --n 20 --scales 0 2 --quick      # smoke run, seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from course_ddpm.checkpoints import schedule_from_card, state_dict_sha256
from course_ddpm.class_metrics import feature_spread, per_class_fid, pixel_statistics
from course_ddpm.data import load_mnist
from course_ddpm.fid import classifier_outputs, default_classifier, fid_reference_points, frechet_distance
from course_ddpm.pretrained import REGISTRY, load_pretrained
from course_ddpm.sampling import generate
from course_ddpm.validation import check_count

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)  # benchmarks/ is a folder of scripts, not a package
from run_info import report, run_meta  # noqa: E402

SCALES = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
NUM_DIGITS = 10


def sample_at_scale(model, schedule, x_T: torch.Tensor, labels: torch.Tensor, s: float, *, steps: int,
                    batch_size: int, progress: bool) -> torch.Tensor:  # fmt: skip
    """N digits from ``x_T`` ``(N, 1, 28, 28)`` for ``labels`` ``(N,)`` at guidance scale ``s``.

    s = 0 samples with the null label (the unconditional model: eps_uncond exactly), s = 1
    with the labels and no guidance (eps_cond exactly); tests/test_guidance.py checks that
    both equal the guided formula at that s.
    """
    null_label = model.config.num_classes
    if s == 0:
        y, scale = torch.full_like(labels, null_label), None
    elif s == 1:
        y, scale = labels, None
    else:
        y, scale = labels, s
    return generate(
        model, schedule, len(x_T), x_T=x_T, labels=y, guidance_scale=scale, sampler="ddim",
        num_inference_steps=steps, eta=0.0, seed=0, batch_size=batch_size, progress=progress,
    )  # fmt: skip


def run_sweep(model, schedule, scales, *, n: int, seed: int, steps: int, batch_size: int, progress: bool) -> dict:
    """Sample and measure every scale; a JSON-safe dict (keys documented in the module docstring)."""
    check_count("n", n, 2 * NUM_DIGITS)
    classifier = default_classifier()
    labels = torch.arange(n) % NUM_DIGITS  # (n,)
    x_T = torch.randn((n, 1, 28, 28), generator=torch.Generator().manual_seed(seed))
    x_test, y_test = load_mnist(train=False)
    x_train, y_train = load_mnist(train=True)
    test_features, _ = classifier_outputs(x_test, classifier)
    train_features, _ = classifier_outputs(x_train, classifier)
    reference = fid_reference_points(n, classifier=classifier, seed=seed)
    rows = []
    for s in scales:
        start = time.perf_counter()
        samples = sample_at_scale(model, schedule, x_T, labels, s, steps=steps, batch_size=batch_size,
                                  progress=progress)  # fmt: skip
        wall = time.perf_counter() - start
        features, probs = classifier_outputs(samples, classifier)
        correct = probs.argmax(dim=1) == labels  # (n,)
        fids, floors = per_class_fid(features, labels, test_features, y_test, train_features, y_train, seed=seed)
        rows.append({
            "guidance_scale": s,
            "accuracy": float(correct.double().mean()),
            "accuracy_per_digit": [float(correct[labels == k].double().mean()) for k in range(NUM_DIGITS)],
            "fid": frechet_distance(features, test_features),
            "fid_per_digit": fids,
            "fid_floor_per_digit": floors,
            "feature_spread_per_digit": feature_spread(features, labels, test_features, y_test),
            "pixels": pixel_statistics(samples),
            "mean_confidence": float(probs.max(dim=1).values.mean()),
            "wall_s": wall,
        })  # fmt: skip
        r = rows[-1]
        print(f"s = {s:g}: accuracy {r['accuracy']:.3f} (worst digit {min(r['accuracy_per_digit']):.2f}), "
              f"FID {r['fid']:.1f} (floor {reference['floor']:.1f}), ink {r['pixels']['ink']:.3f}, "
              f"{wall:.0f} s", flush=True)  # fmt: skip
    return {
        "n": n,
        "n_per_digit": n // NUM_DIGITS,
        "seed": seed,
        "sampler": "ddim",
        "steps": steps,
        "eta": 0.0,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "fid_floor": reference["floor"],
        "fid_ceiling": reference["ceiling"],
        "mnist_pixels": pixel_statistics(x_test),
        "results": rows,
    }


def format_table(sweep: dict) -> str:
    """The sweep as a markdown table."""
    lines = [
        f"N = {sweep['n']} ({sweep['n_per_digit']} per digit), DDIM-{sweep['steps']}, eta 0, same x_T at every "
        f"scale; FID floor {sweep['fid_floor']:.1f} (N real images); MNIST test ink "
        f"{sweep['mnist_pixels']['ink']:.3f}, grey {sweep['mnist_pixels']['grey']:.3f}.",
        "",
        "| s | accuracy | worst digit | MNIST-FID | median per-digit FID (floor) | feature spread | ink | grey | s/img |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sweep["results"]:
        med = float(torch.tensor(r["fid_per_digit"]).median())
        med_floor = float(torch.tensor(r["fid_floor_per_digit"]).median())
        spread = sum(r["feature_spread_per_digit"]) / NUM_DIGITS
        lines.append(
            f"| {r['guidance_scale']:g} | {r['accuracy']:.3f} | {min(r['accuracy_per_digit']):.2f} | {r['fid']:.1f} "
            f"| {med:.1f} ({med_floor:.1f}) | {spread:.2f} | {r['pixels']['ink']:.3f} | {r['pixels']['grey']:.3f} "
            f"| {r['wall_s'] / sweep['n']:.3f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", type=float, nargs="+", default=list(SCALES))
    p.add_argument("--n", type=int, default=1000, help="samples per scale, a multiple of 10 (default 1000)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--quick", action="store_true", help="5 DDIM steps: a smoke run")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.n % NUM_DIGITS:
        raise SystemExit(f"--n must be a multiple of {NUM_DIGITS}, got {args.n}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, card = load_pretrained("unet_cond")
    sweep = run_sweep(
        model, schedule_from_card(card), args.scales, n=args.n, seed=args.seed,
        steps=5 if args.quick else args.steps, batch_size=args.batch_size, progress=not args.no_progress,
    )  # fmt: skip
    sweep["meta"] = {
        "checkpoint": "pretrained:unet_cond",
        "checkpoint_step": card.get("step"),
        "weights_sha256": REGISTRY["unet_cond"].weights_sha256,
        "tensors_sha256": state_dict_sha256(model),
        **run_meta(argv, start),
    }
    return report(sweep, args.json, format_table(sweep))


if __name__ == "__main__":
    main()

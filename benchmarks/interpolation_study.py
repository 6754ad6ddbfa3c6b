"""Interpolation study: is the straight line between two noises "the wrong path"? Measured on many midpoints.

DDIM with eta = 0 maps a noise x_T to a digit deterministically, so a path between two noises
x_a, x_b ~ N(0, I) decodes to a path between two digits. Notebook 4 compares two paths at
lambda = 0.5:

* slerp (Song et al. 2021, section 5.3; :func:`course_ddpm.ddim.slerp`): keeps the norm near
  sqrt(D) = 28, where Gaussian noise lives;
* the straight line (1 - lambda) x_a + lambda x_b: its midpoint has norm about 28 / sqrt(2) = 20.

For ``--n`` pairs (seeded), the script decodes the two midpoints and, as the reference, the
endpoints x_a, with DDIM-50 (eta = 0) from the shipped UNet, and measures each set of N digits
with the course classifier: mean confidence, MNIST-FID against the test images (floor: N real
training digits), the digit histogram's KL from uniform, and the mean pixel contrast (the std
of an image's pixels, MNIST's in the JSON beside it).

  python benchmarks/interpolation_study.py --n 500 --threads 1 --json course_ddpm/measurements/interpolation_study.json
  python benchmarks/interpolation_study.py --n 20 --steps 5     # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from course_ddpm.checkpoints import schedule_from_card, state_dict_sha256
from course_ddpm.data import load_mnist
from course_ddpm.ddim import slerp
from course_ddpm.evaluation import digit_histogram, kl_from_uniform, mean_confidence
from course_ddpm.fid import fid_reference_points, mnist_fid
from course_ddpm.pretrained import load_pretrained
from course_ddpm.sampling import generate

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)  # benchmarks/ is a folder of scripts, not a package
from run_info import report, run_meta  # noqa: E402


def midpoints(n: int, seed: int, image_shape=(1, 28, 28)) -> dict[str, torch.Tensor]:
    """``{"endpoint": x_a, "slerp": slerp(x_a, x_b, 0.5), "line": (x_a + x_b) / 2}``, each ``(n, *image_shape)``."""
    g = torch.Generator().manual_seed(seed)
    x_a, x_b = torch.randn((n, *image_shape), generator=g), torch.randn((n, *image_shape), generator=g)
    mid_slerp = torch.stack([slerp(a, b, 0.5) for a, b in zip(x_a, x_b)])  # (n, ...): slerp takes one pair
    return {"endpoint": x_a, "slerp": mid_slerp, "line": (x_a + x_b) / 2}


def contrast(x: torch.Tensor) -> float:
    """Mean over images of the std of their pixels."""
    return float(x.flatten(1).std(dim=1).mean())


def measure(samples: torch.Tensor) -> dict:
    _, fractions = digit_histogram(samples)
    return {"fid": mnist_fid(samples), "mean_confidence": mean_confidence(samples),
            "kl_from_uniform": kl_from_uniform(fractions), "contrast": contrast(samples)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500, help="pairs of noises (default 500)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, card = load_pretrained("unet")
    schedule = schedule_from_card(card)
    starts = midpoints(args.n, args.seed)
    rows = {}
    for name, x_T in starts.items():
        decoded = generate(model, schedule, args.n, x_T=x_T, num_inference_steps=args.steps, eta=0.0, progress=False)
        rows[name] = {"x_T_norm": float(x_T.flatten(1).norm(dim=1).mean()), **measure(decoded)}
    x_test, _ = load_mnist(train=False)
    result = {
        "n": args.n, "steps": args.steps, "seed": args.seed, "rows": rows,
        "fid_floor": fid_reference_points(args.n, seed=args.seed)["floor"], "mnist_contrast": contrast(x_test),
        "meta": {"tensors_sha256": state_dict_sha256(model), **run_meta(argv, start)},
    }  # fmt: skip
    lines = [f"N = {args.n} pairs, DDIM-{args.steps}, eta 0; FID floor {result['fid_floor']:.1f}, MNIST contrast "
             f"{result['mnist_contrast']:.3f}", "", "| start | |x_T| | MNIST-FID | mean confidence | digit KL | contrast |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in rows.items():
        lines.append(f"| {name} | {r['x_T_norm']:.1f} | {r['fid']:.1f} | {r['mean_confidence']:.3f} "
                     f"| {r['kl_from_uniform']:.3f} | {r['contrast']:.3f} |")  # fmt: skip
    return report(result, args.json, "\n".join(lines))


if __name__ == "__main__":
    main()

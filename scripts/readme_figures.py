"""Draw the README's pictures from the package and the shipped weights.

    python scripts/readme_figures.py                   # every figure below
    python scripts/readme_figures.py --only guided     # only docs/guided.png and guidance_tradeoff.png

Forward: one MNIST test digit noised by q(x_t | x_0) (linear schedule, T = 1000).
Reverse: one DDPM ancestral trajectory of the shipped UNet, x_t and its x_0 estimate.
Samples: 64 DDIM samples (50 steps, eta = 0) of the shipped UNet, seed 0.
Sampler study: MNIST-FID and seconds per sample against network calls, from the committed
course_ddpm/measurements/sampler_study.json (benchmarks/sampler_study.py).
Guided: digits 0-9 (one row each, 8 samples) from the shipped unet_cond, DDIM-50, at the
guidance scale the course recommends (course_ddpm.class_metrics.recommended_guidance of the
committed guidance sweep); guidance trade-off: the sweep's curves (benchmarks/guidance_sweep.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from course_ddpm import linear_schedule, load_pretrained  # noqa: E402
from course_ddpm.checkpoints import schedule_from_card  # noqa: E402
from course_ddpm.class_metrics import recommended_guidance  # noqa: E402
from course_ddpm.data import load_mnist  # noqa: E402
from course_ddpm.plot_curves import sampler_tradeoff  # noqa: E402
from course_ddpm.plot_guidance import guidance_tradeoff  # noqa: E402
from course_ddpm.plot_images import image_grid, noising_strip, trajectory_strip  # noqa: E402
from course_ddpm.results import load_result  # noqa: E402
from course_ddpm.sampling import generate, sample  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=("unconditional", "guided"), default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only != "guided":
        unconditional_figures(args.out)
    if args.only != "unconditional":
        guided_figures(args.out)


def guided_figures(out: Path) -> None:
    """docs/guided.png (digits 0-9 at the recommended scale) and docs/guidance_tradeoff.png."""
    sweep = load_result("guidance_sweep")
    s = recommended_guidance(sweep["results"])["guidance_scale"]
    model, card = load_pretrained("unet_cond")
    labels = torch.arange(10).repeat_interleave(8)  # (80,): eight of each digit, one row per digit
    samples = generate(model, schedule_from_card(card), 80, labels=labels, guidance_scale=s, seed=0, progress=False)
    fig = image_grid(samples, ncols=8, size=0.6)
    fig.savefig(out / "guided.png", dpi=100, bbox_inches="tight")
    fig = guidance_tradeoff(sweep)
    fig.suptitle(f"Guidance sweep, shipped unet_cond: {sweep['n']} DDIM-50 samples per scale (same x_T)", fontsize=9)
    fig.savefig(out / "guidance_tradeoff.png", dpi=100, bbox_inches="tight")
    print(f"wrote {out}/: guided.png (s = {s:g}), guidance_tradeoff.png")


def unconditional_figures(out: Path) -> None:
    """docs/forward.png, reverse.png, samples.png, sampler_study.png."""
    x_test, _ = load_mnist(train=False)
    fig = noising_strip(x_test[0], {"forward q(x_t | x_0)": linear_schedule(1000)},
                        fractions=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0))  # fmt: skip
    fig.savefig(out / "forward.png", dpi=100, bbox_inches="tight")

    model, card = load_pretrained("unet")
    schedule = schedule_from_card(card)
    result = sample(model, schedule, (1, 1, 28, 28), sampler="ddpm", generator=torch.Generator().manual_seed(3),
                    record=True, progress=False)  # fmt: skip
    keep = torch.linspace(0, len(result.timesteps) - 1, 8).round().long()  # 8 of the T steps
    t_shown = [result.timesteps[k] for k in keep.tolist()]
    fig = trajectory_strip(result.trajectory[keep, 0], result.x0_preds[keep, 0], t_shown)
    fig.savefig(out / "reverse.png", dpi=100, bbox_inches="tight")

    samples = generate(model, schedule, 64, sampler="ddim", num_inference_steps=50, eta=0.0, seed=0, progress=False)
    fig = image_grid(samples, ncols=16, size=0.6)
    fig.savefig(out / "samples.png", dpi=100, bbox_inches="tight")

    study = load_result("sampler_study")  # the shipped sampler study (course_ddpm.results)
    common_n = study["common_n"]
    fig = sampler_tradeoff(study["results"], fid_key="fid_common_n", floor=study["reference"][str(common_n)]["floor"])
    fig.suptitle(f"Sampler study, shipped UNet: MNIST-FID on {common_n} samples per sampler (same x_T)", fontsize=9)
    fig.savefig(out / "sampler_study.png", dpi=100, bbox_inches="tight")
    print(f"wrote {out}/: forward.png, reverse.png, samples.png, sampler_study.png")


if __name__ == "__main__":
    main()

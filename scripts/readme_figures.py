"""Draw the README's pictures from the package and the shipped weights.

    python scripts/readme_figures.py   # docs/forward.png, reverse.png, samples.png, sampler_study.png

Forward: one MNIST test digit noised by q(x_t | x_0) (linear schedule, T = 1000).
Reverse: one DDPM ancestral trajectory of the shipped UNet, x_t and its x_0 estimate.
Samples: 64 DDIM samples (50 steps, eta = 0) of the shipped UNet, seed 0.
Sampler study: MNIST-FID and seconds per sample against network calls, from the committed
course_ddpm/measurements/sampler_study.json (benchmarks/sampler_study.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from course_ddpm import linear_schedule, load_pretrained  # noqa: E402
from course_ddpm.checkpoints import schedule_from_card  # noqa: E402
from course_ddpm.data import load_mnist  # noqa: E402
from course_ddpm.plot_curves import sampler_tradeoff  # noqa: E402
from course_ddpm.plot_images import image_grid, noising_strip, trajectory_strip  # noqa: E402
from course_ddpm.results import load_result  # noqa: E402
from course_ddpm.sampling import generate, sample  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    x_test, _ = load_mnist(train=False)
    fig = noising_strip(x_test[0], {"forward q(x_t | x_0)": linear_schedule(1000)},
                        fractions=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0))  # fmt: skip
    fig.savefig(args.out / "forward.png", dpi=100, bbox_inches="tight")

    model, card = load_pretrained("unet")
    schedule = schedule_from_card(card)
    result = sample(model, schedule, (1, 1, 28, 28), sampler="ddpm", generator=torch.Generator().manual_seed(3),
                    record=True, progress=False)  # fmt: skip
    keep = torch.linspace(0, len(result.timesteps) - 1, 8).round().long()  # 8 of the T steps
    t_shown = [result.timesteps[k] for k in keep.tolist()]
    fig = trajectory_strip(result.trajectory[keep, 0], result.x0_preds[keep, 0], t_shown)
    fig.savefig(args.out / "reverse.png", dpi=100, bbox_inches="tight")

    samples = generate(model, schedule, 64, sampler="ddim", num_inference_steps=50, eta=0.0, seed=0, progress=False)
    fig = image_grid(samples, ncols=16, size=0.6)
    fig.savefig(args.out / "samples.png", dpi=100, bbox_inches="tight")

    study = load_result("sampler_study")  # the shipped sampler study (course_ddpm.results)
    common_n = study["common_n"]
    fig = sampler_tradeoff(study["results"], fid_key="fid_common_n", floor=study["reference"][str(common_n)]["floor"])
    fig.suptitle(f"Sampler study, shipped UNet: MNIST-FID on {common_n} samples per sampler (same x_T)", fontsize=9)
    fig.savefig(args.out / "sampler_study.png", dpi=100, bbox_inches="tight")
    print(f"wrote {args.out}/: forward.png, reverse.png, samples.png, sampler_study.png")


if __name__ == "__main__":
    main()

"""Training-budget study: MNIST-FID after the same CPU time of training, for three networks.

SimpleUNet, the course's default UNet and diffusers' UNet2DModel in the HF diffusion
course's MNIST configuration (built by ``side_by_side.DiffusersUNet``) each train for
``--budget-s`` CPU seconds (``time.process_time``: all threads of this process, so the
budget measures work done even when other jobs share the cores) with the same recipe:
L_simple = ||eps - eps_theta(x_t, t)||^2 (Ho et al. 2020, arXiv:2006.11239, Algorithm 1
and eq. 14), linear schedule T = 1000, AdamW, warm-up, gradient clipping and an EMA of
the weights, the same batch size, learning rate and seed, and the same batches (same
data order, t and eps draws). The models take turns, one step each (the one with the
least CPU time so far goes next), so all of them see the same load on the machine.

The training step is the package's own (``course_ddpm.training_step.train_step``, through
``side_by_side.take_step``), started as ``course_ddpm.training.train`` starts a run; ``train``
itself stops after a number of steps, not a time budget.

Then each model's EMA weights (``--weights raw`` for the trained ones) draw ``--n``
images with DDIM, 50 steps, eta = 0 (Song et al. 2021, arXiv:2010.02502), from the same
x_T for every model, and the study reports steps done, images seen, MNIST-FID against
the MNIST test set with the floor (N real training images) and ceiling (N noise images)
at the same N, the digit histogram's KL from uniform and the mean classifier confidence.

  python benchmarks/budget_study.py --threads 1 --budget-s 600 --n 1000 --json budget_study.json
  python benchmarks/budget_study.py --budget-s 10 --n 100                         # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

from course_ddpm.evaluation import NUM_DIGITS
from course_ddpm.fid import fid_reference_points
from course_ddpm.networks import build_model, count_parameters
from course_ddpm.sampling import generate
from course_ddpm.schedules import make_schedule
from course_ddpm.training_config import TrainConfig

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)  # benchmarks/ is a folder of scripts, not a package
from run_info import report, run_meta  # noqa: E402
from sampler_study import measure  # noqa: E402
from side_by_side import DiffusersUNet, start_trainee, train_for_budget  # noqa: E402

SAMPLE_STEPS = 50  # DDIM steps for the evaluation samples (Song et al. 2021, Table 1)
LOSS_WINDOW = 50  # steps per point of the recorded loss curve, and for the final loss


def _simple_unet(config: TrainConfig) -> nn.Module:
    return build_model("simple_unet", T=config.T)


def _unet(config: TrainConfig) -> nn.Module:
    return build_model("unet")


def _diffusers_unet(config: TrainConfig) -> nn.Module:
    return DiffusersUNet()  # eps = unet(x_t, t).sample


#: --models keys -> (label for the table, builder). Every model is called as model(x_t, t, y=None).
MODELS: dict[str, tuple[str, Callable[[TrainConfig], nn.Module]]] = {
    "simple_unet": ("SimpleUNet", _simple_unet),
    "unet": ("UNet (default)", _unet),
    "diffusers": ("diffusers UNet2DModel (HF course)", _diffusers_unet),
}


def _window_means(values: list[float], window: int) -> list[float]:
    return [sum(values[i : i + window]) / len(values[i : i + window]) for i in range(0, len(values), window)]


def run_budget_study(
    models: dict[str, tuple[str, Callable[[TrainConfig], nn.Module]]],
    x: torch.Tensor,
    config: TrainConfig,
    *,
    budget_s: float,
    n: int,
    weights: Literal["ema", "raw"] = "ema",
    sample_batch_size: int = 250,
    progress: bool = True,
) -> dict:
    """Train every model for ``budget_s`` CPU seconds on ``x``, then sample and measure it.

    Args:
        models: key -> (label, builder(config) -> model called as model(x_t, t, y=None)).
        x: training images ``(N, 1, 28, 28)`` in [-1, 1].
        config: batch_size, lr, weight_decay, warmup_steps, ema_decay, grad_clip, seed,
            schedule, T, rescale and precision are used; its model and steps fields are not.
        budget_s: CPU seconds of training per model.
        n: samples per model (DDIM, 50 steps, eta 0, seed ``config.seed``).
        weights: sample from the EMA weights or the trained ones.
    Returns:
        a JSON-safe dict; see :func:`format_table`.
    """
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    if not models:
        raise ValueError("models is empty")
    if config.conditional:
        raise ValueError("the budget study trains unconditional models; set conditional=False")
    schedule = make_schedule(config.schedule, config.T, config.rescale)
    trainees = [start_trainee(key, label, build, config, len(x)) for key, (label, build) in models.items()]
    train_for_budget(trainees, schedule, x, config, budget_s, progress)
    reference = fid_reference_points(n, seed=config.seed)
    results = []
    for tr in trainees:
        model = tr.state.ema_model if weights == "ema" else tr.state.model.eval()
        wall = time.perf_counter()
        samples = generate(model, schedule, n, sampler="ddim", num_inference_steps=min(SAMPLE_STEPS, config.T),
                           eta=0.0, seed=config.seed, batch_size=sample_batch_size, progress=progress)  # fmt: skip
        sample_wall = time.perf_counter() - wall
        measures = measure(samples)  # MNIST-FID, the digit histogram, its KL from uniform, mean confidence
        images = tr.state.step * config.batch_size
        last = tr.losses[-LOSS_WINDOW:]
        results.append({
            "key": tr.key, "label": tr.label, "params": count_parameters(tr.state.model), "steps": tr.state.step,
            "images_seen": images, "epochs": images / len(x), "cpu_s": tr.cpu_s, "wall_s": tr.wall_s,
            "images_per_cpu_s": images / tr.cpu_s, "final_loss": sum(last) / len(last),
            "loss_curve": _window_means(tr.losses, LOSS_WINDOW), "n": n, "sample_wall_s": sample_wall,
            "fid": measures.pop("fid"), "fid_floor": reference["floor"], "fid_ceiling": reference["ceiling"],
            **measures,  # digit_counts, digit_fractions, kl_from_uniform, mean_confidence
        })  # fmt: skip
    return {
        "budget_s": budget_s,
        "weights": weights,
        "sampler": f"ddim, {min(SAMPLE_STEPS, config.T)} steps, eta 0",
        "loss_window": LOSS_WINDOW,
        "threads": torch.get_num_threads(),
        "train_images": len(x),
        "config": config.to_dict(),
        "results": results,
    }


def format_table(study: dict) -> str:
    """The study as a markdown table with a heading line and the digit histograms."""
    c = study["config"]
    lines = [
        f"{study['budget_s']:g} CPU-s of training per model, {study['threads']} thread(s); {c['schedule']} "
        f"T={c['T']}, batch {c['batch_size']}, AdamW lr {c['lr']:g} (warm-up {c['warmup_steps']} steps), "
        f"grad clip {c['grad_clip']}, EMA {c['ema_decay']}, seed {c['seed']}, {study['train_images']} training "
        f"images; samples: {study['weights']} weights, {study['sampler']}, same x_T for every model.",
        "",
        f"| model | params | steps | images seen | epochs | CPU-s | img/CPU-s | wall-s "
        f"| final loss (last {study['loss_window']}) | N | MNIST-FID | FID floor at N | FID ceiling at N "
        "| digit KL (nats) | mean confidence | sampling s/img |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in study["results"]:
        lines.append(
            f"| {r['label']} | {r['params']:,} | {r['steps']} | {r['images_seen']:,} | {r['epochs']:.2f} "
            f"| {r['cpu_s']:.1f} | {r['images_per_cpu_s']:.0f} | {r['wall_s']:.0f} | {r['final_loss']:.4f} | {r['n']} | {r['fid']:.2f} "
            f"| {r['fid_floor']:.2f} | {r['fid_ceiling']:.0f} | {r['kl_from_uniform']:.4f} "
            f"| {r['mean_confidence']:.4f} | {r['sample_wall_s'] / r['n']:.4f} |"
        )
    lines += [
        "",
        "| model | " + " | ".join(str(k) for k in range(NUM_DIGITS)) + " |",
        "|---|" + "---:|" * NUM_DIGITS,
    ]
    for r in study["results"]:
        lines.append(f"| {r['label']} | " + " | ".join(f"{f:.3f}" for f in r["digit_fractions"]) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-s", type=float, default=600.0, help="CPU seconds of training per model (default 600)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--n", type=int, default=1000, help="samples per model for the FID (default 1000)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3, as the shipped model)")
    p.add_argument("--warmup-steps", type=int, default=TrainConfig.warmup_steps)
    p.add_argument("--ema-decay", type=float, default=TrainConfig.ema_decay)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {list(MODELS)}")
    p.add_argument("--weights", choices=("ema", "raw"), default="ema", help="sample from EMA (default) or raw weights")
    p.add_argument("--sample-batch-size", type=int, default=250)
    p.add_argument("--mnist-root", default=None, help="data folder for course_ddpm.data.load_mnist")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Command line: run the study, print the table, write --json; returns the JSON dict."""
    from course_ddpm.data import load_mnist

    args = parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown or not keys:
        raise SystemExit(f"--models: unknown {unknown or '(none given)'}; choose from {list(MODELS)}")
    torch.set_num_threads(args.threads)
    config = TrainConfig(
        schedule="linear", T=1000, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay, seed=args.seed, data_root=args.mnist_root,
    )  # fmt: skip
    x, _ = load_mnist(train=True, root=args.mnist_root)
    start = time.perf_counter()
    study = run_budget_study(
        {k: MODELS[k] for k in keys}, x, config, budget_s=args.budget_s, n=args.n, weights=args.weights,
        sample_batch_size=args.sample_batch_size, progress=not args.no_progress,
    )  # fmt: skip
    study["meta"] = run_meta(argv, start)
    heading = f"\nTraining-budget study ({study['meta']['total_wall_s']:.0f} s in all)\n"
    return report(study, args.json, f"{heading}\n{format_table(study)}")


if __name__ == "__main__":
    main()

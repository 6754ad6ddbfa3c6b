"""Benchmark the denoising networks on the CPU, and write what it measures to JSON. A script, not a test.

Every network trains with the package's own training step (``course_ddpm.training_step.
train_step``: L_simple = ||eps - eps_theta(x_t, t)||^2, Ho et al. 2020, Algorithm 1 and eq. 14;
AdamW, gradient clipping 1.0, EMA), linear schedule T = 1000, the same seed and batches for
every network (``side_by_side``), the networks taking turns one step each so that load from
other processes hits all of them alike. Two measurements (see benchmarks/README.md):

  throughput (``--mode throughput``, the default): training images/s (one step = draw a
    batch, forward, backward, clip, AdamW, EMA) of SimpleUNet, the default UNet, a base-32
    UNet and diffusers' UNet2DModel in the Hugging Face diffusion course configuration, on
    random images; the median of ``--steps`` timed steps after one untimed step. Achieved
    FLOP/s = 3 x forward FLOPs/image x images/s (backward costs ~2x forward), against the
    best float32 matmul FLOP/s (2048 x 2048) before and after, as a reference ceiling.

  study (``--mode study``): which UNet width/depth gives the best model per CPU-second.
    Candidates train on MNIST for ``--budget-s`` CPU seconds each (time.process_time, all
    threads; fairer than wall time while other processes share the cores). The score is the
    held-out eps-MSE, L_simple on MNIST test images at fixed (t, eps) draws, the same for every
    model, at 1/3, 2/3 and all of the budget: the training loss on unseen data (L_simple is a
    reweighted variational bound, Ho et al. section 3.4), a standard proxy for sample quality,
    not a sample-quality metric itself. Constant lr (``--warmup-steps 0``), as the original study.

``--mode both`` runs both into one JSON (``--json``): per network its parameters and forward
MFLOP per image (``networks.count_parameters`` / ``networks.flops_per_image``), images/s and
held-out eps-MSE, beside the matmul reference and the run's metadata (``run_info.run_meta``).

  python benchmarks/bench_networks.py --mode both --threads 1 --steps 5 --budget-s 90 \\
      --json course_ddpm/measurements/networks.json
  python benchmarks/bench_networks.py --mode both --quick                # smoke run, seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from course_ddpm.networks import build_model, count_parameters, flops_per_image
from course_ddpm.schedules import Schedule, linear_schedule
from course_ddpm.training_config import TrainConfig
from course_ddpm.training_step import Batch, diffusion_loss

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)  # benchmarks/ is a folder of scripts, not a package
from run_info import report, run_meta  # noqa: E402
from side_by_side import DiffusersUNet, Trainee, start_trainee, take_step, train_for_budget  # noqa: E402

T = 1000
#: --networks keys -> (label, model name for networks.build_model or "diffusers", its kwargs).
NETWORKS: dict[str, tuple[str, str, dict]] = {
    "simple": ("SimpleUNet", "simple_unet", {"T": T}),
    "16x1": ("UNet base 16, 1 res (default)", "unet", {"base_channels": 16, "num_res_blocks": 1}),
    "16x2": ("UNet base 16, 2 res", "unet", {"base_channels": 16, "num_res_blocks": 2}),
    "32x1": ("UNet base 32, 1 res", "unet", {"base_channels": 32, "num_res_blocks": 1}),
    "32x2": ("UNet base 32, 2 res", "unet", {"base_channels": 32, "num_res_blocks": 2}),
    "diffusers": ("diffusers UNet2DModel (HF course)", "diffusers", {}),
}
DEFAULT_NETWORKS = {"throughput": ("simple", "16x1", "32x1", "diffusers"),
                    "study": ("simple", "16x1", "16x2", "32x1", "32x2")}  # fmt: skip
T_BUCKETS = ((0, 100), (100, 500), (500, 1000))  # code t ranges for the per-t breakdown
QUICK = {"steps": 1, "batch_size": 4, "budget_s": 0.3, "eval_images": 8, "matmul_n": 256}


def build_network(key: str) -> nn.Module:
    """The network of ``NETWORKS[key]``, built with the global RNG as it stands."""
    _, name, kwargs = NETWORKS[key]
    return DiffusersUNet() if name == "diffusers" else build_model(name, **kwargs)


def matmul_flops_per_s(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 FLOP/s of an n x n matmul (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _start(keys: list[str], config: TrainConfig, n_data: int) -> list[Trainee]:
    return [start_trainee(k, NETWORKS[k][0], lambda c, k=k: build_network(k), config, n_data) for k in keys]


def throughput(keys: list[str], config: TrainConfig, steps: int) -> dict[str, dict]:
    """Seconds per training step of each network, side by side: one untimed round, then ``steps`` timed ones."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(config.batch_size, 1, 28, 28, generator=g) * 2 - 1  # random images: speed only
    schedule = linear_schedule(T)
    trainees = _start(keys, config, len(x))
    for _ in range(steps + 1):
        for trainee in trainees:
            take_step(trainee, schedule, x, config)
    rows = {}
    for tr in trainees:
        times = tr.step_wall_s[1:]  # the first step is a warm-up
        median = statistics.median(times)
        rows[tr.key] = {"s_per_step_median": median, "s_per_step_best": min(times),
                        "images_per_s": config.batch_size / median}  # fmt: skip
    return rows


@torch.no_grad()
def held_out_mse(model: nn.Module, schedule: Schedule, held_out: Batch, chunk: int = 250) -> dict:
    """L_simple (eps-MSE per pixel) on the held-out batch: over all of it, and within each range of T_BUCKETS."""
    model.eval()
    out, total = {}, 0.0
    for lo, hi in T_BUCKETS:  # they partition 0..T-1
        rows = torch.nonzero((held_out.t >= lo) & (held_out.t < hi)).flatten()
        loss_sum = 0.0
        for i in range(0, len(rows), chunk):
            part = rows[i : i + chunk]
            batch = Batch(held_out.x0[part], held_out.t[part], held_out.eps[part], None)
            loss_sum += diffusion_loss(model, schedule, batch).item() * len(part)
        out[f"t in [{lo}, {hi})"] = loss_sum / len(rows) if len(rows) else None
        total += loss_sum
    model.train()
    return {"all": total / len(held_out.t), **out}


def study_checkpoints(budget_s: float) -> list[float]:
    """CPU seconds at which the study scores each network: 1/3, 2/3 and all of the budget."""
    return [budget_s * f for f in (1 / 3, 2 / 3, 1.0)]


def study(keys: list[str], config: TrainConfig, budget_s: float, eval_images: int, mnist_root: str | None,
          progress: bool) -> dict[str, dict]:  # fmt: skip
    """Train each network on MNIST for ``budget_s`` CPU seconds, side by side; held-out eps-MSE at 1/3, 2/3, 1."""
    from course_ddpm.data import load_mnist

    schedule = linear_schedule(T)
    x, _ = load_mnist(train=True, root=mnist_root)  # (60000, 1, 28, 28) in [-1, 1]
    test = load_mnist(train=False, root=mnist_root)[0][:eval_images]
    g = torch.Generator().manual_seed(1234)  # fixed (t, eps) draws, shared by all models
    t_eval = torch.randint(0, T, (len(test),), generator=g)
    held_out = Batch(test, t_eval, torch.randn(test.shape, generator=g), None)
    checkpoints = study_checkpoints(budget_s)
    evals: dict[str, list[dict]] = {k: [] for k in keys}

    def evaluate_at_checkpoints(trainee: Trainee) -> None:
        done = evals[trainee.key]
        passed = sum(trainee.cpu_s >= c for c in checkpoints) - len(done)  # one step may pass two
        if passed > 0:
            score = {"cpu_s": trainee.cpu_s, "step": trainee.state.step,
                     **held_out_mse(trainee.state.model, schedule, held_out)}  # fmt: skip
            done.extend([score] * passed)

    trainees = _start(keys, config, len(x))
    train_for_budget(trainees, schedule, x, config, budget_s, progress, after_step=evaluate_at_checkpoints)
    return {tr.key: {"steps": tr.state.step, "cpu_s": tr.cpu_s, "wall_s": tr.wall_s,
                     "images_per_cpu_s": tr.state.step * config.batch_size / tr.cpu_s,
                     "images_per_wall_s": tr.state.step * config.batch_size / tr.wall_s,
                     "eps_mse": evals[tr.key]} for tr in trainees}  # fmt: skip


def run(args: argparse.Namespace) -> dict:
    """The measurements ``args`` ask for, as the JSON-safe dict that ``--json`` writes."""
    modes = ("throughput", "study") if args.mode == "both" else (args.mode,)
    keys = {m: args.networks.split(",") if args.networks else list(DEFAULT_NETWORKS[m]) for m in modes}
    unknown = sorted({k for ks in keys.values() for k in ks} - set(NETWORKS))
    if unknown:
        raise SystemExit(f"--networks: unknown {unknown}; choose from {list(NETWORKS)}")
    config = TrainConfig(schedule="linear", T=T, batch_size=args.batch_size, lr=1e-3, warmup_steps=args.warmup_steps,
                         grad_clip=1.0, seed=0)  # fmt: skip
    networks = {}
    for key in [k for k in NETWORKS if any(k in ks for ks in keys.values())]:
        label, name, kwargs = NETWORKS[key]
        model = build_network(key)
        networks[key] = {"key": key, "label": label, "model": name, "model_kwargs": kwargs,
                         "params": count_parameters(model), "mflop_per_image": flops_per_image(model) / 1e6,
                         **{m: None for m in modes}}  # fmt: skip
    matmul = matmul_flops_per_s(args.matmul_n)
    if "throughput" in modes:
        speed = throughput(keys["throughput"], config, args.steps)
        matmul = max(matmul, matmul_flops_per_s(args.matmul_n))  # the best before and after
        for key, row in speed.items():
            achieved = 3 * networks[key]["mflop_per_image"] * 1e6 * row["images_per_s"]  # training = 3x forward
            networks[key]["throughput"] = {**row, "train_gflop_per_s": achieved / 1e9,
                                           "percent_of_matmul": 100 * achieved / matmul}  # fmt: skip
    if "study" in modes:
        scores = study(keys["study"], config, args.budget_s, args.eval_images, args.mnist_root, not args.no_progress)
        for key, row in scores.items():
            networks[key]["study"] = row
    return {
        "modes": list(modes), "threads": torch.get_num_threads(), "batch_size": args.batch_size, "T": T,
        "matmul": {"n": args.matmul_n, "gflop_per_s": matmul / 1e9},
        "throughput": {"steps": args.steps} if "throughput" in modes else None,
        "study": {"budget_s": args.budget_s, "checkpoints_cpu_s": study_checkpoints(args.budget_s),
                  "eval_images": args.eval_images, "t_buckets": [list(b) for b in T_BUCKETS]}
        if "study" in modes else None,
        "config": config.to_dict(), "networks": list(networks.values()),
    }  # fmt: skip


def format_tables(result: dict) -> str:
    """The measurements as markdown tables, each under a heading line."""
    lines, rows = [], result["networks"]
    head = f"threads={result['threads']} batch={result['batch_size']}"
    if result["throughput"] is not None:
        lines += [
            f"{head} steps={result['throughput']['steps']} (median step time); float32 matmul "
            f"({result['matmul']['n']}x{result['matmul']['n']}, best before/after): "
            f"{result['matmul']['gflop_per_s']:.1f} GFLOP/s", "",
            "| model | params | fwd MFLOP/img | s/step median (best) | img/s | train GFLOP/s (3x fwd) | % of matmul |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]  # fmt: skip
        for r in rows:
            if (s := r["throughput"]) is not None:
                lines.append(f"| {r['label']} | {r['params']:,} | {r['mflop_per_image']:.0f} | "
                             f"{s['s_per_step_median']:.2f} ({s['s_per_step_best']:.2f}) | {s['images_per_s']:.0f} | "
                             f"{s['train_gflop_per_s']:.1f} | {s['percent_of_matmul']:.0f}% |")  # fmt: skip
        lines.append("")
    if result["study"] is not None:
        study, buckets = result["study"], [f"t in [{lo}, {hi})" for lo, hi in result["study"]["t_buckets"]]
        at = [f"{c:.3g} CPU-s" for c in study["checkpoints_cpu_s"]]
        lines += [
            f"{head} budget={study['budget_s']:g} CPU-s/model, {study['eval_images']} test images, T={result['T']} "
            f"linear, AdamW lr {result['config']['lr']:g}", "",
            "| model | params | fwd MFLOP/img | steps | img/CPU-s | img/s (wall) | "
            + " | ".join([f"eps-MSE at {a}" for a in at] + [f"final, {b}" for b in buckets])
            + " |",
            "|---|---:|---:|---:|---:|---:|" + "---:|" * (len(at) + len(buckets)),
        ]  # fmt: skip
        for r in rows:
            if (s := r["study"]) is not None:
                evals = s["eps_mse"]
                mses = [f"{e['all']:.4f}" for e in evals] + [f"{_fmt(evals[-1][b]) if evals else '-'}" for b in buckets]
                lines.append(f"| {r['label']} | {r['params']:,} | {r['mflop_per_image']:.0f} | {s['steps']} | "
                             f"{s['images_per_cpu_s']:.0f} | {s['images_per_wall_s']:.0f} | {' | '.join(mses)} |")
    return "\n".join(lines).rstrip()


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("throughput", "study", "both"), default="throughput")
    p.add_argument("--study", action="store_const", const="study", dest="mode", help="same as --mode study")
    p.add_argument("--networks", "--candidates", default=None,
                   help=f"comma-separated keys of {list(NETWORKS)} (default: {DEFAULT_NETWORKS})")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed training steps per network (throughput)")
    p.add_argument("--matmul-n", type=int, default=2048, help="size of the reference matmul")
    p.add_argument("--budget-s", type=float, default=90.0, help="training CPU-seconds per network (study)")
    p.add_argument("--warmup-steps", type=int, default=0, help="lr warm-up steps (default 0: constant lr 1e-3)")
    p.add_argument("--eval-images", type=int, default=500, help="MNIST test images for the eps-MSE (study)")
    p.add_argument("--mnist-root", default=None, help="data folder for course_ddpm.data.load_mnist (study)")
    p.add_argument("--quick", action="store_true", help=f"a smoke run in seconds: {QUICK}")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Command line: measure, write --json, print the tables; returns the JSON dict."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    result = {**run(args), "meta": run_meta(argv, start)}
    return report(result, args.json, format_tables(result))


if __name__ == "__main__":
    main()

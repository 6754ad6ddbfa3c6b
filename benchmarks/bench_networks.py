"""Benchmark the denoising networks on the CPU. A script, not a test.

Two modes (see benchmarks/README.md for results):

  throughput (default): training images/s (forward + backward + AdamW step on random
    data) of SimpleUNet, the default UNet, a base-32 UNet and diffusers' UNet2DModel in
    the Hugging Face diffusion course configuration, measured side by side (the models take turns, one
    step each, so load from other processes hits all of them alike); achieved FLOP/s
    = 3 x forward FLOPs/image x images/s (backward costs ~2x forward), against the
    measured float32 matmul FLOP/s (2048 x 2048) as the ceiling.

      python benchmarks/bench_networks.py --threads 2 --steps 5 --batch-size 128

  study (--study): which UNet width/depth gives the best model per CPU-minute.
    Candidates train on MNIST for the same budget of CPU time each (time.process_time,
    all threads; it is fairer than wall time while other processes share the cores),
    taking turns step by step, with L_simple = ||eps - eps_theta(x_t, t)||^2 (Ho et al.
    2020, eq. 14), linear schedule T=1000, AdamW lr 1e-3. The score is the held-out
    eps-MSE on MNIST test images at fixed (t, eps) draws, the same for every model: the
    training loss on unseen data (L_simple is a reweighted variational bound, Ho et al.
    section 3.4), a standard proxy for sample quality, not a sample-quality metric itself.
    One thread: per-thread CPU time stays honest when other processes load the cores.

      python benchmarks/bench_networks.py --study --threads 1 --budget-s 90
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from course_ddpm.data import load_mnist
from course_ddpm.forward import q_sample
from course_ddpm.networks import build_model, count_parameters, flops_per_image
from course_ddpm.schedules import linear_schedule


class DiffusersUNet(nn.Module):
    """diffusers' UNet2DModel in the HF diffusion course's MNIST setup, called as model(x_t, t)."""

    def __init__(self):
        super().__init__()
        from diffusers import UNet2DModel

        self.unet = UNet2DModel(
            sample_size=28, in_channels=1, out_channels=1, layers_per_block=2,
            block_out_channels=(32, 64, 64),
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        )

    def forward(self, x_t, t, y=None):
        return self.unet(x_t, t).sample


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


def train_step(model, opt, x0, t, eps, schedule) -> float:
    x_t = q_sample(schedule, x0, t, eps)
    loss = (model(x_t, t) - eps).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


def throughput(args) -> None:
    schedule = linear_schedule(1000)
    models = {
        "SimpleUNet": build_model("simple_unet", T=1000),
        "UNet (default)": build_model("unet"),
        "UNet base 32": build_model("unet", base_channels=32),
        "diffusers UNet2DModel (HF course)": DiffusersUNet(),
    }
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}
    flops = {k: flops_per_image(m) for k, m in models.items()}
    g = torch.Generator().manual_seed(0)
    B = args.batch_size
    x0 = torch.rand(B, 1, 28, 28, generator=g) * 2 - 1
    t = torch.randint(0, 1000, (B,), generator=g)
    eps = torch.randn(B, 1, 28, 28, generator=g)
    ceiling = matmul_flops_per_s()
    times = {k: [] for k in models}
    for step in range(args.steps + 1):  # step 0 is a warm-up
        for k, m in models.items():
            start = time.perf_counter()
            train_step(m, opts[k], x0, t, eps, schedule)
            if step:
                times[k].append(time.perf_counter() - start)
    ceiling = max(ceiling, matmul_flops_per_s())
    print(f"threads={torch.get_num_threads()} batch={B} steps={args.steps} (median step time); "
          f"float32 matmul ceiling (2048x2048, best of 5, before/after): {ceiling / 1e9:.1f} GFLOP/s")
    print("| model | params | fwd MFLOP/img | s/step median (best) | img/s | train GFLOP/s (3x fwd) | % of matmul |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, m in models.items():
        s = statistics.median(times[k])
        achieved = 3 * flops[k] * B / s
        print(f"| {k} | {count_parameters(m):,} | {flops[k] / 1e6:.0f} | {s:.2f} ({min(times[k]):.2f}) | {B / s:.0f} | "
              f"{achieved / 1e9:.1f} | {100 * achieved / ceiling:.0f}% |")


CANDIDATES = {  # --candidates keys -> (model name, config)
    "simple": ("simple_unet", dict(T=1000)),
    "16x1": ("unet", dict(base_channels=16, num_res_blocks=1)),
    "16x2": ("unet", dict(base_channels=16, num_res_blocks=2)),
    "32x1": ("unet", dict(base_channels=32, num_res_blocks=1)),
    "32x2": ("unet", dict(base_channels=32, num_res_blocks=2)),
}
T_BUCKETS = ((0, 100), (100, 500), (500, 1000))  # code t ranges for the per-t breakdown


@torch.no_grad()
def held_out_mse(model, x0, t, eps, schedule, chunk: int = 250) -> dict:
    """Mean eps-MSE per pixel over all images, and within each range of T_BUCKETS."""
    model.eval()
    per_image = []
    for i in range(0, len(x0), chunk):
        x_t = q_sample(schedule, x0[i:i + chunk], t[i:i + chunk], eps[i:i + chunk])
        per_image.append((model(x_t, t[i:i + chunk]) - eps[i:i + chunk]).square().mean(dim=(1, 2, 3)))
    model.train()
    per_image = torch.cat(per_image)  # (N,)
    out = {"all": per_image.mean().item()}
    for lo, hi in T_BUCKETS:
        out[f"t in [{lo}, {hi})"] = per_image[(t >= lo) & (t < hi)].mean().item()
    return out


def study(args) -> None:
    schedule = linear_schedule(1000)
    train, _ = load_mnist(train=True, root=args.mnist_root)  # (60000, 1, 28, 28) in [-1, 1]
    test = load_mnist(train=False, root=args.mnist_root)[0][: args.eval_images]
    g = torch.Generator().manual_seed(1234)  # fixed (t, eps) draws, shared by all models
    t_eval = torch.randint(0, 1000, (len(test),), generator=g)
    eps_eval = torch.randn(test.shape, generator=g)
    candidates = {k: CANDIDATES[k] for k in args.candidates.split(",")}
    runs = {}
    for k, (name, kw) in candidates.items():
        torch.manual_seed(0)
        model = build_model(name, **kw)
        runs[k] = dict(model=model, opt=torch.optim.AdamW(model.parameters(), lr=1e-3),
                       gen=torch.Generator().manual_seed(0), clock=0.0, wall=0.0, steps=0, evals=[])
        model(train[:args.batch_size], torch.zeros(args.batch_size, dtype=torch.long)).mean().backward()  # warm-up
        model.zero_grad(set_to_none=True)
    checkpoints = [args.budget_s * f for f in (1 / 3, 2 / 3, 1.0)]
    B = args.batch_size
    while True:
        active = [k for k, r in runs.items() if r["clock"] < args.budget_s]
        if not active:
            break
        k = min(active, key=lambda k: runs[k]["clock"])  # the one behind takes the next step
        r = runs[k]
        idx = torch.randint(0, len(train), (B,), generator=r["gen"])
        t = torch.randint(0, 1000, (B,), generator=r["gen"])
        eps = torch.randn(B, 1, 28, 28, generator=r["gen"])
        start, start_wall = time.process_time(), time.perf_counter()
        train_step(r["model"], r["opt"], train[idx], t, eps, schedule)
        r["clock"] += time.process_time() - start  # CPU seconds of all threads
        r["wall"] += time.perf_counter() - start_wall
        r["steps"] += 1
        if len(r["evals"]) < len(checkpoints) and r["clock"] >= checkpoints[len(r["evals"])]:
            r["evals"].append(held_out_mse(r["model"], test, t_eval, eps_eval, schedule))
            print(f"  {k}: {r['clock']:.0f} CPU-s, {r['steps']} steps, held-out eps-MSE {r['evals'][-1]}", flush=True)
    buckets = [f"t in [{lo}, {hi})" for lo, hi in T_BUCKETS]
    cols = " | ".join([f"eps-MSE at {c:.0f} CPU-s" for c in checkpoints] + [f"final, {b}" for b in buckets])
    print(f"\nthreads={torch.get_num_threads()} batch={B} budget={args.budget_s:.0f} CPU-s/model, "
          f"{len(test)} test images, T=1000 linear, AdamW lr 1e-3")
    print(f"| model | params | fwd MFLOP/img | steps | img/CPU-s | img/s (wall) | {cols} |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * (len(checkpoints) + len(buckets)))
    for k, r in runs.items():
        mses = " | ".join([f"{e['all']:.4f}" for e in r["evals"]] + [f"{r['evals'][-1][b]:.4f}" for b in buckets])
        print(f"| {k} | {count_parameters(r['model']):,} | {flops_per_image(r['model']) / 1e6:.0f} | "
              f"{r['steps']} | {r['steps'] * B / r['clock']:.0f} | {r['steps'] * B / r['wall']:.0f} | {mses} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed training steps per model (throughput)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--study", action="store_true", help="train candidate configs on MNIST instead")
    p.add_argument("--budget-s", type=float, default=90.0, help="training CPU-seconds per candidate (study)")
    p.add_argument("--eval-images", type=int, default=500, help="MNIST test images for the eps-MSE (study)")
    p.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated keys of CANDIDATES (study)")
    p.add_argument("--mnist-root", default=None, help="data folder for course_ddpm.data.load_mnist (study)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.study:
        study(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()

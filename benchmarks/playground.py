"""The 2-D playground: wall time from an untrained MLP to good samples, on this machine.

Trains the playground's noise predictor (``course_ddpm.playground.PLAYGROUND_CONFIG``: an MLP
on the 8-Gaussian ring of ``course_ddpm.toy2d.ring_mixture``, the package's training step
``course_ddpm.training_step.train_step`` with AdamW and EMA, Ho et al. 2020 Algorithm 1) and,
every ``--eval-every`` steps, samples its EMA weights with DDPM (Algorithm 2, all T steps) and
scores them (``course_ddpm.playground.evaluate``): the sliced Wasserstein distance to a held-out
draw of the data, beside its floor (an independent true draw of the same size), and the mean
log-likelihood under the known density, beside that of true data.

"Good samples" means both: SW_2 at most ``--swd-ratio`` times the floor, and a mean
log-likelihood at most ``--ll-gap`` nats below true data's. The time to good samples is the
training wall time up to the first evaluation that is good, plus the wall time of one
sampling (the evaluations themselves are timed apart and not counted); the CPU seconds of
the same work (``time.process_time``, all threads) are recorded beside it. The machine's load
average is recorded too (``run_info.run_meta``): other jobs on the same cores stretch the wall
time, much less the CPU time.

  python benchmarks/playground.py --threads 2 --json course_ddpm/measurements/playground.json
  python benchmarks/playground.py --steps 200 --eval-every 100 --n-samples 200   # smoke run, seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from course_ddpm import playground

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)  # benchmarks/ is a folder of scripts, not a package
from run_info import report, run_meta  # noqa: E402


def is_good(score: playground.Score, swd_ratio: float, ll_gap: float) -> bool:
    """SW_2 <= swd_ratio * floor and mean log p >= true data's - ll_gap."""
    return score.swd <= swd_ratio * score.swd_floor and score.log_likelihood >= score.log_likelihood_true - ll_gap


def run_playground(
    steps: int, eval_every: int, swd_ratio: float, ll_gap: float, seed: int = 0, n_samples: int = 1000
) -> dict:  # fmt: skip
    """Train in chunks of ``eval_every`` steps, evaluating the EMA weights after each; the rows
    and the time to the first good evaluation (see the module docstring)."""
    config = dataclasses.replace(playground.PLAYGROUND_CONFIG, steps=steps, seed=seed)
    data = playground.playground_data(n_samples=n_samples, n_reference=10 * n_samples, seed=seed)
    run = playground.start(data.train, config)
    rows, train_wall, train_cpu, first_good = [], 0.0, 0.0, None
    while run.state.step < steps:
        t0, c0 = time.perf_counter(), time.process_time()
        playground.train_steps(run, data.train, min(eval_every, steps - run.state.step))
        train_wall, train_cpu = train_wall + time.perf_counter() - t0, train_cpu + time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        _, score = playground.evaluate(run.state.ema_model, run.schedule, data, seed=seed)
        sample_wall, sample_cpu = time.perf_counter() - t0, time.process_time() - c0
        good = is_good(score, swd_ratio, ll_gap)
        rows.append({"step": run.state.step, "train_wall_s": train_wall, "sample_wall_s": sample_wall,
                     "train_cpu_s": train_cpu, "sample_cpu_s": sample_cpu,
                     "loss": sum(run.losses[-eval_every:]) / len(run.losses[-eval_every:]),
                     **dataclasses.asdict(score), "good": good})  # fmt: skip
        if good and first_good is None:
            first_good = rows[-1]
    return {
        "config": config.to_dict(),
        "n_train": data.train.shape[0], "n_samples": data.true_draw.shape[0], "n_reference": data.reference.shape[0],
        "good_if": {"swd_ratio": swd_ratio, "ll_gap_nats": ll_gap},
        "rows": rows,
        "first_good": None if first_good is None else {
            "step": first_good["step"], "wall_s": first_good["train_wall_s"] + first_good["sample_wall_s"],
            "train_wall_s": first_good["train_wall_s"], "sample_wall_s": first_good["sample_wall_s"],
            "cpu_s": first_good["train_cpu_s"] + first_good["sample_cpu_s"],
            "swd": first_good["swd"], "swd_floor": first_good["swd_floor"],
            "log_likelihood": first_good["log_likelihood"], "log_likelihood_true": first_good["log_likelihood_true"]},
        "final": rows[-1],
    }  # fmt: skip


def summary(result: dict) -> str:
    lines = [f"{'step':>6} {'train s':>8} {'(CPU s)':>8} {'sample s':>9} {'SW_2':>7} {'floor':>7} {'log p':>7} "
             f"{'true':>7} good"]  # fmt: skip
    for r in result["rows"]:
        lines.append(f"{r['step']:>6} {r['train_wall_s']:>8.1f} {r['train_cpu_s']:>8.1f} {r['sample_wall_s']:>9.1f} "
                     f"{r['swd']:>7.3f} {r['swd_floor']:>7.3f} {r['log_likelihood']:>7.2f} "
                     f"{r['log_likelihood_true']:>7.2f} {r['good']}")  # fmt: skip
    g = result["first_good"]
    lines.append("never good" if g is None else
                 f"good samples after {g['step']} steps: {g['wall_s']:.1f} s wall "
                 f"({g['train_wall_s']:.1f} s training + {g['sample_wall_s']:.1f} s sampling; "
                 f"{g['cpu_s']:.1f} CPU-s)")  # fmt: skip
    meta = result["meta"]
    lines.append(f"{meta['environment']}; load average {meta['load_average']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=playground.PLAYGROUND_CONFIG.steps)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--swd-ratio", type=float, default=1.25)
    parser.add_argument("--ll-gap", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-samples", type=int, default=1000, help="samples per evaluation (reference: 10x)")
    parser.add_argument("--json", default=None, help="write the result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run_playground(args.steps, args.eval_every, args.swd_ratio, args.ll_gap, args.seed, args.n_samples)
    result["threads"] = args.threads
    result["meta"] = run_meta(argv, start)
    return report(result, args.json, summary(result))


if __name__ == "__main__":
    main()

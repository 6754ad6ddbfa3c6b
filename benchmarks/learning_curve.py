"""Learning curve of a training run: sample quality of its EMA weights at several steps.

``course-ddpm train --keep-every N`` keeps a copy of the EMA weights every N steps in
``RUN_DIR/snapshots/`` (any ``*.safetensors`` model files whose card records a ``step`` will
do); each is evaluated here the same way:
``course_ddpm.evaluation.evaluate`` with N DDIM samples (50 steps, eta = 0; Song et al.
2021, arXiv:2010.02502), all from the same seed and so from the same starting noises x_T,
(``--steps`` sets another number of steps) giving MNIST-FID with its floor and ceiling at the same N, the digit histogram's KL from
uniform and the mean classifier confidence. The training loss beside each row is the mean
of the run's logged loss (``--log``, a ``log.jsonl``) over the ``--loss-window`` steps
before it (the logged loss of L_simple, Ho et al. 2020, eq. 14).

  python benchmarks/learning_curve.py RUN_DIR/snapshots/*.safetensors --log RUN_DIR/log.jsonl --n 1000 --json curve.json

Parts measured side by side (one process per core, on different snapshots) are merged into
the layout of ``course_ddpm/measurements/learning_curve.json`` (``meta.parts`` and the rows
of all parts by step):

  python benchmarks/learning_curve.py --merge part1.json part2.json --json course_ddpm/measurements/learning_curve.json

Each row also keeps ``--samples`` (16) DDIM samples of its snapshot, all from the same x_T, as 8-bit
pixels (:func:`course_ddpm.results.images_to_json`): notebook 3 shows them beside the FIDs.
``--compare-log SHIPPED.log.jsonl`` checks that the run is the shipped one, rerun: its logged
losses, averaged to the reference log's coarser steps, must equal the reference's (the card's
``reproduce`` command is deterministic on a CPU with one thread); the result is ``meta.log_check``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from course_ddpm.checkpoints import load_model, schedule_from_card
from course_ddpm.evaluation import evaluate
from course_ddpm.results import images_to_json
from course_ddpm.sampling import generate
from course_ddpm.training import read_log

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)  # benchmarks/ is a folder of scripts, not a package
from run_info import run_meta  # noqa: E402


def mean_loss_before(log: list[dict], step: int, window: int) -> float | None:
    """Mean logged loss over the rows with ``step - window < row step <= step`` (None if there are none)."""
    losses = [row["loss"] for row in log if step - window < row["step"] <= step]
    return sum(losses) / len(losses) if losses else None


def compare_logs(log: list[dict], reference: list[dict]) -> dict:
    """Does ``log`` (a run's, logged every k steps) repeat ``reference`` (logged every m*k steps)?

    Each reference entry is the mean loss over the steps since the one before; the entries of
    ``log`` that tile the same interval are averaged and compared. Only the intervals ``log``
    covers count. Returns ``{"entries_compared", "through_step", "max_rel_diff"}``.
    """
    losses = {row["step"]: row["loss"] for row in log}
    if not losses:
        raise ValueError("the run's log is empty")
    diffs, previous, through = [], 0, None
    for ref in reference:
        step = ref["step"]
        if step > max(losses):
            break
        inside = [s for s in losses if previous < s <= step]
        widths = {b - a for a, b in zip([previous] + inside[:-1], inside)}
        if not inside or inside[-1] != step or len(widths) != 1:
            raise ValueError(f"the run's log does not tile the reference's interval ({previous}, {step}]")
        mean = sum(losses[s] for s in inside) / len(inside)
        diffs.append(abs(mean - ref["loss"]) / abs(ref["loss"]))
        previous, through = step, step
    if not diffs:
        raise ValueError("the two logs share no interval")
    return {"entries_compared": len(diffs), "through_step": through, "max_rel_diff": max(diffs)}


def learning_curve(paths: list[Path], log: list[dict], *, n: int, steps: int = 50, seed: int = 0,
                   loss_window: int = 500, n_images: int = 16, progress: bool = False) -> list[dict]:
    """One row per model file, ordered by training step; see the module docstring."""
    if not paths:
        raise ValueError("no model files given")
    loaded = []
    for path in paths:
        model, card = load_model(path)
        if card.get("step") is None:
            raise ValueError(f"{path}: its card records no training step")
        loaded.append((int(card["step"]), path, model, card))
    found = [s for s, *_ in loaded]
    if len(set(found)) != len(found):
        raise ValueError(f"two files hold the same step: {sorted(found)}")
    rows = []
    for step, path, model, card in sorted(loaded, key=lambda item: item[0]):
        start = time.perf_counter()
        result = evaluate(model, schedule_from_card(card), n=n, sampler="ddim", num_inference_steps=steps, seed=seed,
                          progress=progress)
        images = generate(model, schedule_from_card(card), n_images, sampler="ddim", num_inference_steps=steps,
                          seed=seed, progress=False)  # (n_images, C, H, W), the same x_T for every file
        rows.append({
            "step": step, "file": path.name, "loss": mean_loss_before(log, step, loss_window),
            **{k: result[k] for k in ("n", "fid", "fid_floor", "fid_ceiling", "digit_fractions", "kl_from_uniform",
                                      "mean_confidence", "model_tensors_sha256")},
            "samples": images_to_json(images),
            "seconds": time.perf_counter() - start,
        })  # fmt: skip
    return rows


def format_table(rows: list[dict], loss_window: int) -> str:
    """The rows as a markdown table."""
    lines = [
        f"| step | training loss (mean of the last {loss_window} steps) | MNIST-FID | floor at N | N "
        "| digit KL (nats) | mean confidence |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        loss = "-" if r["loss"] is None else f"{r['loss']:.5f}"
        lines.append(f"| {r['step']:,} | {loss} | {r['fid']:.1f} | {r['fid_floor']:.1f} | {r['n']} "
                     f"| {r['kl_from_uniform']:.4f} | {r['mean_confidence']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def merge_parts(parts: list[dict]) -> dict:
    """One curve from parts written by ``--json``: ``{"meta": {"parts": [...]}, "rows": [...]}``, rows by step."""
    rows = sorted((row for part in parts for row in part["rows"]), key=lambda row: row["step"])
    steps = [row["step"] for row in rows]
    if len(set(steps)) != len(steps):
        raise ValueError(f"two parts hold the same step: {steps}")
    metas = [m for part in parts for m in (part["meta"].get("parts") or [part["meta"]])]
    return {"meta": {"parts": metas}, "rows": rows}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", type=Path, help="model .safetensors files (EMA snapshots of one run)")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="PART.json",
                   help="merge curves written by --json into one (--json says where)")
    p.add_argument("--log", type=Path, default=None, help="the run's log.jsonl, for the training loss column")
    p.add_argument("--n", type=int, default=1000, help="DDIM-50 samples per snapshot (default 1000)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss-window", type=int, default=500)
    p.add_argument("--samples", type=int, default=16, help="samples kept per snapshot, as pixels (default 16)")
    p.add_argument("--compare-log", type=Path, default=None, metavar="SHIPPED.log.jsonl",
                   help="a reference loss log (the shipped run's): check that --log repeats it")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", type=Path, default=None, help="write the rows to this JSON file")
    args = p.parse_args(argv)
    if args.merge:
        merged = merge_parts([json.loads(path.read_text(encoding="utf-8")) for path in args.merge])
        if args.json:
            args.json.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
        print(format_table(merged["rows"], args.loss_window))
        return merged["rows"]
    if not args.models:
        p.error("give model files, or --merge PART.json ...")
    torch.set_num_threads(args.threads)
    log = [] if args.log is None else read_log(args.log)
    start = time.perf_counter()
    log_check = None if args.compare_log is None else compare_logs(log, read_log(args.compare_log))
    if log_check is not None:
        print(f"the run's loss log repeats {args.compare_log.name} through step {log_check['through_step']:,} "
              f"({log_check['entries_compared']} entries, largest relative difference {log_check['max_rel_diff']:.1e})")
    rows = learning_curve(args.models, log, n=args.n, steps=args.steps, seed=args.seed, loss_window=args.loss_window,
                          n_images=args.samples)
    if args.json:
        meta = {**run_meta(argv, start), "threads": args.threads, "log_check": log_check}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(format_table(rows, args.loss_window))
    return rows


if __name__ == "__main__":
    main()

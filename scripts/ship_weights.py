"""Copy a training run's EMA weights into the package, with a model card that says how they were made.

    python scripts/ship_weights.py --run RUN_DIR [--stem ddpm_unet] [--eval-json EVAL.json] [--curve-json CURVE.json]

Reads RUN_DIR/ema.safetensors (EMA weights, written by ``course-ddpm train`` every
``checkpoint_every`` steps), RUN_DIR/config.json and RUN_DIR/log.jsonl, and writes
course_ddpm/weights/STEM.safetensors + STEM.json (card) + STEM.log.jsonl (the loss log up to
the shipped step). The card records the command that reproduces the weights bit for bit
on a CPU with one thread: the learning rate and EMA decay do not depend on the total
number of steps, so ``--steps`` equal to the shipped step gives the same weights.
``--eval-json`` (from ``course-ddpm evaluate --json``) adds the measured metrics, and
``--curve-json`` (from ``benchmarks/learning_curve.py --json``) the sample quality of the
run's EMA snapshots by step, as ``learning_curve``.
Then paste the printed hashes into ``course_ddpm/pretrained.py``'s REGISTRY.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from course_ddpm.checkpoints import atomic_write_text, file_sha256, load_model, save_model
from course_ddpm.training import read_log

WEIGHTS = Path(__file__).resolve().parents[1] / "course_ddpm" / "weights"


def reproduce_command(config: dict, step: int) -> str:
    """The ``course-ddpm train`` call that recreates the run up to ``step``."""
    kwargs = json.dumps(config["model_kwargs"], sort_keys=True)
    parts = ["course-ddpm", "train", "--model", config["model"], "--model-kwargs", kwargs,
             "--schedule", config["schedule"], "--T", str(config["T"]),
             "--rescale" if config["rescale"] else "--no-rescale",
             "--batch-size", str(config["batch_size"]), "--lr", str(config["lr"]),
             "--warmup-steps", str(config["warmup_steps"]), "--ema-decay", str(config["ema_decay"]),
             "--grad-clip", str(config["grad_clip"]), "--seed", str(config["seed"]),
             "--precision", config["precision"], "--num-threads", "1", "--steps", str(step)]  # fmt: skip
    if config["conditional"]:
        parts += ["--conditional", "--label-dropout", str(config["label_dropout"])]
    return shlex.join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="training run folder")
    parser.add_argument("--stem", default="ddpm_unet", help="file name stem under course_ddpm/weights/")
    parser.add_argument("--eval-json", type=Path, default=None, help="metrics from course-ddpm evaluate --json")
    parser.add_argument("--curve-json", type=Path, default=None, help="rows from benchmarks/learning_curve.py --json")
    args = parser.parse_args(argv)

    model, card = load_model(args.run / "ema.safetensors")
    config = json.loads((args.run / "config.json").read_text())
    step = int(card["step"])
    log = [row for row in read_log(args.run) if row["step"] <= step]
    wall_s = log[-1]["wall_time"] if log else None
    card = {k: v for k, v in card.items() if k not in ("format", "model", "weights_sha256")}
    card["reproduce"] = reproduce_command(config, step)
    card["trained_on"] = (
        f"CPU, {config.get('num_threads') or 'default'} torch thread(s) on a shared 2-core x86-64 machine; "
        f"{step} steps of batch {config['batch_size']} ({step * config['batch_size'] / 60000:.1f} epochs of MNIST)"
    )
    card["wall_hours"] = None if wall_s is None else round(wall_s / 3600, 2)
    card["loss_log"] = f"{args.stem}.log.jsonl"
    if args.eval_json is not None:
        card["evaluation"] = json.loads(args.eval_json.read_text())
    if args.curve_json is not None:
        rows = json.loads(args.curve_json.read_text())["rows"]
        card["learning_curve"] = [row for row in rows if row["step"] <= step]
    path = save_model(WEIGHTS / f"{args.stem}.safetensors", model, card)
    atomic_write_text(WEIGHTS / f"{args.stem}.log.jsonl", "".join(json.dumps(row) + "\n" for row in log))
    print(f"{path}: step {step}")
    print(f'weights_sha256="{file_sha256(path)}",')
    print(f'card_sha256="{file_sha256(path.with_suffix(".json"))}",')


if __name__ == "__main__":
    main()

"""Copy a training run's EMA weights into the package, with a model card that says how they were made.

    python scripts/ship_weights.py --run RUN_DIR [--stem ddpm_unet] [--eval-json EVAL.json] [--curve-json CURVE.json]
                                   [--trained-with SESSIONS.jsonl]

Reads RUN_DIR/ema.safetensors (EMA weights, written by ``course-ddpm train`` every
``checkpoint_every`` steps), RUN_DIR/config.json and RUN_DIR/log.jsonl, and writes
course_ddpm/weights/STEM.safetensors + STEM.json (card) + STEM.log.jsonl (the loss log up to
the shipped step). The card records the command that reproduces the weights bit for bit
on a CPU with one thread: the learning rate and EMA decay do not depend on the total
number of steps, so ``--steps`` equal to the shipped step gives the same weights.
``--eval-json`` (from ``course-ddpm evaluate --json``, one or several) adds the measured metrics, and
``--curve-json`` (from ``benchmarks/learning_curve.py --json``) the sample quality of the
run's EMA snapshots by step, as ``learning_curve``.
Then paste the printed hashes into ``course_ddpm/pretrained.py``'s REGISTRY.

The card says exactly what was shipped: ``training.steps`` is the shipped step (a resumed
run's config may aim further); ``metrics.loss_mean_last_500_steps`` is the logged loss
averaged over the 500 steps before it (one batch's loss is noise); ``trained_with`` lists
the sessions of the run with torch version, CPU, vector unit and threads (the run's
``sessions.jsonl``, or ``--trained-with`` for a run older than that file); and the
evaluation names the shipped file and the tensors it measured
(``checkpoints.state_dict_sha256``), refusing an evaluation of other tensors.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from course_ddpm.checkpoints import atomic_write_text, file_sha256, load_model, save_model, state_dict_sha256
from course_ddpm.training import read_log

WEIGHTS = Path(__file__).resolve().parents[1] / "course_ddpm" / "weights"
LOSS_WINDOW = 500
#: The classifier was re-saved in the one model file format with the same tensors (commit
#: ef99d95): its old file hash, recorded by evaluations made before, names these tensors.
LEGACY_CLASSIFIER_FILES = {
    "fa15486bf999585ea3f4db3f7420aea407f70de09adca1b7ee0d21d6135ee85e":
        "e9e8bd666ee1f449f33d0ac3738f987c847cf839987b25364fc43c88c3751c52",
}


def shipped_evaluation(evaluation: dict, model_tensors: str, weights_name: str) -> dict:
    """An evaluation as the card records it: of the shipped file and its tensors.

    An evaluation that recorded its model's tensors must have measured these; an older one
    (no ``model_tensors_sha256``) keeps the file it read as ``evaluated_file``.
    """
    evaluation = dict(evaluation)
    recorded = evaluation.get("model_tensors_sha256")
    if recorded is not None and recorded != model_tensors:
        raise SystemExit(f"the evaluation measured tensors {recorded[:12]}..., not the shipped {model_tensors[:12]}...")
    if "checkpoint" in evaluation:
        evaluation["evaluated_file"] = evaluation.pop("checkpoint")
    evaluation["weights"] = weights_name
    evaluation["model_tensors_sha256"] = model_tensors
    legacy = evaluation.pop("classifier_sha256", None)
    if legacy is not None and "classifier_tensors_sha256" not in evaluation:
        evaluation["classifier_tensors_sha256"] = LEGACY_CLASSIFIER_FILES[legacy]
    return evaluation


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
    parser.add_argument("--eval-json", type=Path, nargs="+", default=None,
                        help="metrics from course-ddpm evaluate --json; the first becomes the card's evaluation, "
                             "all of them (e.g. several guidance scales) its evaluations")
    parser.add_argument("--curve-json", type=Path, default=None, help="rows from benchmarks/learning_curve.py --json")
    parser.add_argument("--trained-with", type=Path, default=None,
                        help="sessions.jsonl for a run that did not write one (torch, cpu, cpu_capability, threads)")
    args = parser.parse_args(argv)

    model, card = load_model(args.run / "ema.safetensors")
    config = json.loads((args.run / "config.json").read_text())
    step = int(card["step"])
    log = [row for row in read_log(args.run) if row["step"] <= step]
    wall_s = log[-1]["wall_time"] if log else None
    card = {k: v for k, v in card.items() if k not in ("format", "model", "weights_sha256")}
    card["training"] = {**card["training"], "steps": step}
    window = [row["loss"] for row in log if row["step"] > step - LOSS_WINDOW]
    card["metrics"] = {f"loss_mean_last_{LOSS_WINDOW}_steps": sum(window) / len(window) if window else None,
                       "loss_last_logged": log[-1]["loss"] if log else None}  # fmt: skip
    sessions = args.trained_with or args.run / "sessions.jsonl"
    card["trained_with"] = read_log(sessions) if sessions.exists() else card.get("trained_with")
    if not card["trained_with"]:
        raise SystemExit(f"{args.run} has no sessions.jsonl: say what the run was trained with (--trained-with)")
    card["reproduce"] = reproduce_command(config, step)
    first = card["trained_with"][0]
    card["trained_on"] = (
        f"{first['device']}, {first['threads']} torch thread(s), torch {first['torch']}, {first['cpu']} "
        f"({first['cpu_capability']}); {step} steps of batch {config['batch_size']} "
        f"({step * config['batch_size'] / 60000:.1f} epochs of MNIST)"
    )
    card["wall_hours"] = None if wall_s is None else round(wall_s / 3600, 2)
    card["loss_log"] = f"{args.stem}.log.jsonl"
    if args.eval_json is not None:
        tensors = state_dict_sha256(model)
        evaluations = [shipped_evaluation(json.loads(path.read_text()), tensors, f"{args.stem}.safetensors")
                       for path in args.eval_json]  # fmt: skip
        card["evaluation"] = evaluations[0]
        if len(evaluations) > 1:
            card["evaluations"] = evaluations
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

"""The ``course-ddpm`` command line: train, sample, evaluate, info.

    course-ddpm train --config run.json            # or flags: --steps 2000 --batch-size 64 ...
    course-ddpm train --config run.json --resume   # continue after a crash or Ctrl-C
    torchrun --nproc_per_node 4 -m course_ddpm.cli train --config run.json
    course-ddpm sample --checkpoint runs/ddpm/final.safetensors --sampler ddim --steps 50 --out grid.png
    course-ddpm sample --checkpoint pretrained --n 1000 --out samples.npy
    course-ddpm sample --checkpoint pretrained --sampler ode --rtol 1e-3 --out grid.png   # probability-flow ODE
    course-ddpm evaluate --checkpoint pretrained --n 1000 --json report.json
    course-ddpm evaluate --checkpoint pretrained --n 100 --ode-bpd 20   # + exact bits/dim by the ODE
    course-ddpm info runs/ddpm/final.safetensors

A checkpoint is a ``.safetensors`` (or its ``.json`` card), a training state ``last.pt``
(its EMA weights), ``pretrained`` (the shipped U-Net) or ``pretrained:NAME``.
Errors in what was asked for (a missing file, a bad checkpoint, a bad option) print one
line and exit with status 2; a diverged run exits 1, an interrupted one 130.
This module is the one place in the package that prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import types
import typing
from pathlib import Path
from typing import Literal, get_args, get_origin

import torch

from course_ddpm.checkpoints import CheckpointError, atomic_write, atomic_write_text, file_sha256, load_model

logger = logging.getLogger("course_ddpm")

#: Help for every TrainConfig field (tests check that none is missing).
TRAIN_HELP = {
    "model": "network: 'unet' (the course default) or 'simple_unet' (the seed lecture's)",
    "model_kwargs": 'network config as JSON, e.g. \'{"base_channels": 32, "channel_mults": [1, 2, 2]}\'',
    "schedule": "noise schedule",
    "T": "number of diffusion steps",
    "rescale": "scale linear betas by 1000/T (Nichol & Dhariwal), for short chains",
    "batch_size": "global batch size (split evenly over processes)",
    "lr": "AdamW learning rate",
    "weight_decay": "AdamW weight decay",
    "warmup_steps": "linear learning-rate warm-up, in steps",
    "steps": "total optimisation steps",
    "ema_decay": "decay of the exponential moving average of the weights",
    "grad_clip": "clip the global gradient norm to this ('none': no clipping)",
    "seed": "seed of every random draw (same seed, same weights on the CPU)",
    "precision": "fp32, or bf16 autocast for the network",
    "conditional": "train with class labels (classifier-free guidance)",
    "label_dropout": "probability of replacing a label by the null label",
    "out_dir": "folder for logs, samples and checkpoints",
    "log_every": "write a log.jsonl line every N steps (0: only at the end)",
    "sample_every": "write a sample grid every N steps (0: never)",
    "checkpoint_every": "write last.pt and ema.safetensors every N steps (0: only at the end)",
    "keep_every": "also keep the EMA weights every N steps in snapshots/ (0: never), for learning curves",
    "sample_n": "images in each sample grid",
    "sample_steps": "DDIM steps for the sample grids",
    "data_root": "MNIST folder (default: $COURSE_DDPM_DATA or the user cache)",
    "device": "where to train",
    "num_threads": "torch CPU threads ('none': torch's default)",
}


class _UsageError(Exception):
    """A bad option value discovered after parsing; reported like any user error."""


# ---------------------------------------------------------------------------- parser
def _optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object such as '{\"base_channels\": 16}'")
    return value


def _add_train_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; absent flags keep the --config file's (or default) value."""
    from course_ddpm.training_config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("run settings (override --config)")
    for f in dataclasses.fields(TrainConfig):
        kind, flag = hints[f.name], "--" + f.name.replace("_", "-")
        default = f.default if f.name != "model_kwargs" else {}
        kw: dict = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"{TRAIN_HELP[f.name]} (default: {default})"}
        if f.name == "model_kwargs":
            kw.update(type=_json_object, metavar="JSON")
        elif get_origin(kind) is Literal:
            kw.update(choices=get_args(kind))
        elif kind is bool:
            kw.update(action=argparse.BooleanOptionalAction)
        elif get_origin(kind) in (typing.Union, types.UnionType):
            (inner,) = [a for a in get_args(kind) if a is not type(None)]
            kw.update(type=_optional(inner), metavar="DIR" if f.name == "data_root" else inner.__name__.upper())
        else:
            kw.update(type=kind, metavar="DIR" if f.name == "out_dir" else kind.__name__.upper())
        group.add_argument(flag, **kw)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``course-ddpm`` and its four subcommands."""
    parser = argparse.ArgumentParser(
        prog="course-ddpm", description="Train, sample and evaluate the course's DDPM/DDIM models on MNIST."
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model (also under torchrun)", description="Train a diffusion model "
                       "(Ho et al. 2020, Algorithm 1). Settings: defaults < --config file < flags.")  # fmt: skip
    p.add_argument("--config", type=Path, metavar="FILE.json", help="a TrainConfig JSON (see config.json of a run)")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    p.add_argument("--data", type=Path, metavar="FILE.pt", help="train on tensors {'x': (N,C,H,W) in [-1,1], "
                   "'y': (N,)} from torch.save instead of MNIST")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_train_config_flags(p)
    p.set_defaults(func=cmd_train)

    def add_model_args(
        p: argparse.ArgumentParser, n_default: int, steps_help: str, samplers: tuple[str, ...] = ("ddpm", "ddim")
    ) -> None:
        p.add_argument("--checkpoint", required=True, metavar="PATH|pretrained",
                       help="model .safetensors/.json, training state .pt, 'pretrained' or 'pretrained:NAME'")  # fmt: skip
        p.add_argument("--sampler", choices=samplers, default="ddim", help="sampler (default: ddim)")
        p.add_argument("--steps", type=_optional(int), default=None, help=steps_help)
        p.add_argument("--eta", type=float, default=0.0, help="DDIM eta: 0 deterministic, 1 DDPM-like (default: 0)")
        p.add_argument("--n", type=int, default=n_default, help=f"number of images (default: {n_default})")
        p.add_argument("--seed", type=int, default=0, help="seed of the starting noise (default: 0)")
        p.add_argument("--batch-size", type=int, default=250, help="images per forward batch (default: 250)")
        p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                       help="auto: cuda, else mps, else cpu (default: auto)")  # fmt: skip

    p = sub.add_parser("sample", help="draw images from a model", description="Draw images from a trained model. "
                       "FILE.png: a grid; FILE.npy: float32 (N, C, H, W) pixel intensities in [0, 1].")  # fmt: skip
    add_model_args(p, 64, "reverse steps (default: 50 for ddim, all T for ddpm)", ("ddpm", "ddim", "ode"))
    p.add_argument("--rtol", type=float, default=1e-3,
                   help="--sampler ode: the RK45 tolerance (rtol = atol; default: 1e-3)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="FILE.png|FILE.npy", help="where to write")
    p.add_argument("--label", type=int, default=None, metavar="K", help="digit to draw (conditional models)")
    p.add_argument("--guidance", type=float, default=None, metavar="W",
                   help="classifier-free guidance scale s (1: plain conditional; needs --label)")  # fmt: skip
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="MNIST-FID, digit histogram, bits/dim",
                       description="Sample a model and measure the samples (course_ddpm.evaluation).")  # fmt: skip
    add_model_args(p, 1000, "reverse steps (default: 50 for ddim, all T for ddpm)")
    p.add_argument("--bpd-subset", type=int, default=0, metavar="N", help="bits/dim on N test images (default: 0, off)")
    p.add_argument("--ode-bpd", type=int, default=0, metavar="N",
                   help="bits/dim on N test images by the probability-flow ODE, Hutchinson's trace (default: 0, off)")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--guidance", type=float, default=None, metavar="W",
                   help="classifier-free guidance scale s for a class-conditional model")  # fmt: skip
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("info", help="print a checkpoint's card", description="Print a checkpoint's card as JSON: "
                       "config, schedule, step, parameters, FLOPs per image, sha256.")  # fmt: skip
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="model .safetensors/.json, .pt, or 'pretrained[:NAME]'")
    p.set_defaults(func=cmd_info)
    return parser


# --------------------------------------------------------------------------- helpers
def _load(spec: str, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict, Path]:
    """(model, card, file) for a --checkpoint value."""
    if spec == "pretrained" or spec.startswith("pretrained:"):
        from course_ddpm.pretrained import load_pretrained, verify

        name = spec.partition(":")[2] or "unet"
        model, card = load_pretrained(name, device=device)
        return model, card, verify(name)[0]
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    model, card = load_model(path, device=device)
    return model, card, path if path.suffix != ".json" else path.with_suffix(".safetensors")


def _check_counts(args: argparse.Namespace) -> None:
    if args.n < 1 or args.batch_size < 1:
        raise _UsageError(f"--n and --batch-size must be >= 1, got {args.n} and {args.batch_size}")


# -------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from course_ddpm.training import train
    from course_ddpm.training_config import TrainConfig

    base = TrainConfig()
    if args.config is not None:
        if not args.config.exists():
            raise FileNotFoundError(f"no such config file: {args.config}")
        base = TrainConfig.from_json(args.config.read_text(encoding="utf-8"))
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    config = TrainConfig.from_dict({**base.to_dict(), **overrides})
    data = None
    if args.data is not None:
        if not args.data.exists():
            raise FileNotFoundError(f"no such data file: {args.data}")
        try:
            tensors = torch.load(args.data, weights_only=True)
        except Exception as e:  # not a torch file, or one holding Python objects
            raise _UsageError(f"{args.data}: not a readable torch.save file of tensors ({type(e).__name__}: {e})") from None
        if not isinstance(tensors, dict) or "x" not in tensors:
            raise _UsageError(f"{args.data}: expected a dict {{'x': tensor, 'y': tensor or None}} saved by torch.save")
        data = (tensors["x"], tensors.get("y"))
    with logging_redirect_tqdm():
        result = train(config, resume=args.resume, progress=not args.no_progress, data=data)
    if result.final_path is not None:
        print(f"trained {result.step} steps in {result.wall_time:.0f} s; EMA weights: {result.final_path}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from torchvision.utils import save_image

    from course_ddpm.checkpoints import schedule_from_card
    from course_ddpm.data import to_pixels
    from course_ddpm.distributed import resolve_device
    from course_ddpm.sampling import default_image_shape, generate

    _check_counts(args)
    suffix = args.out.suffix.lower()
    if suffix not in (".png", ".npy"):
        raise _UsageError(f"--out must end in .png or .npy, got {str(args.out)!r}")
    device = resolve_device(args.device)
    model, card, _ = _load(args.checkpoint, device)
    num_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if args.label is not None and num_classes is None:
        raise _UsageError("--label needs a class-conditional model; this one is unconditional")
    if args.label is not None and not 0 <= args.label < num_classes:
        raise _UsageError(f"--label must lie in [0, {num_classes}), got {args.label}")
    if args.guidance is not None and args.label is None:
        raise _UsageError("--guidance needs --label")
    if args.sampler == "ode":
        from course_ddpm.ode import ode_generate
        from course_ddpm.sde import VPSDE

        if args.label is not None or args.steps is not None or args.eta != 0.0:
            raise _UsageError("--sampler ode takes --rtol, not --label, --steps or --eta")
        if not 0.0 < args.rtol < 1.0:
            raise _UsageError(f"--rtol must lie in (0, 1), got {args.rtol}")
        sde = VPSDE.from_schedule(schedule_from_card(card))
        images, nfe = ode_generate(model, sde, args.n, default_image_shape(model, card), rtol=args.rtol,
                                   seed=args.seed, batch_size=args.batch_size, device=device)  # fmt: skip
        print(f"probability-flow ODE: {nfe:.1f} network evaluations per image")
    else:
        images = generate(model, schedule_from_card(card), args.n, image_shape=default_image_shape(model, card),
                          labels=args.label, guidance_scale=args.guidance, sampler=args.sampler,
                          num_inference_steps=args.steps, eta=args.eta, seed=args.seed, batch_size=args.batch_size,
                          device=device)  # fmt: skip
    pixels = to_pixels(images)  # (N, C, H, W) in [0, 1]
    if suffix == ".npy":
        import numpy as np

        atomic_write(args.out, lambda f: np.save(f, pixels.numpy().astype(np.float32)))
    else:
        atomic_write(args.out, lambda f: save_image(pixels, f, format="png", nrow=math.ceil(math.sqrt(args.n))))
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from course_ddpm.checkpoints import schedule_from_card
    from course_ddpm.distributed import resolve_device
    from course_ddpm.evaluation import evaluate, format_report

    _check_counts(args)
    device = resolve_device(args.device)
    model, card, _ = _load(args.checkpoint, device)
    results = evaluate(model, schedule_from_card(card), n=args.n, sampler=args.sampler, num_inference_steps=args.steps,
                       eta=args.eta, seed=args.seed, batch_size=args.batch_size, device=device,
                       bpd_subset=args.bpd_subset, guidance_scale=args.guidance, progress=True)  # fmt: skip
    if args.ode_bpd:
        from course_ddpm.likelihood import mnist_ode_bits_per_dim
        from course_ddpm.sde import VPSDE

        if args.ode_bpd < 0:
            raise _UsageError(f"--ode-bpd must be >= 0, got {args.ode_bpd}")
        ode = mnist_ode_bits_per_dim(model, VPSDE.from_schedule(schedule_from_card(card)), args.ode_bpd,
                                     seed=args.seed, device=device)  # fmt: skip
        results["ode_bpd"] = ode
    print(format_report(results))
    if results.get("ode_bpd"):
        o = results["ode_bpd"]
        print(f"\nbits/dim on {o['n']} MNIST test images by the probability-flow ODE (Hutchinson, RK45 rtol "
              f"{o['rtol']:g}): {o['bpd']:.4f} +- {o['stderr']:.4f} (standard error)")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps({"checkpoint": args.checkpoint, **results}, indent=2) + "\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from course_ddpm.networks import count_parameters, flops_per_image

    from course_ddpm.classifier import MNISTClassifier
    from course_ddpm.sampling import default_image_shape

    model, card, path = _load(args.checkpoint)
    info = {**card, "file": str(path), "sha256": file_sha256(path), "parameters": count_parameters(model)}
    if not isinstance(model, MNISTClassifier):  # the classifier takes no t: FLOPs of a denoiser only
        info["flops_per_image"] = flops_per_image(model, default_image_shape(model, card))
    print(json.dumps(info, indent=2))
    return 0


# ------------------------------------------------------------------------------ main
def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [FileNotFoundError, FileExistsError, CheckpointError, ValueError, _UsageError]
    for module, name in (("course_ddpm.pretrained", "PretrainedError"), ("course_ddpm.data", "MNISTUnavailableError")):
        try:
            errors.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``course-ddpm``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")  # fmt: skip
    from course_ddpm.training_step import TrainingDiverged

    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        print(f"course-ddpm {args.command}: {e or 'interrupted'}", file=sys.stderr)
        if args.command == "train":
            print("continue with the same command and --resume", file=sys.stderr)
        return 130
    except TrainingDiverged as e:
        if args.traceback:
            raise
        print(f"course-ddpm {args.command}: training diverged: {e}", file=sys.stderr)
        return 1
    except _user_errors() as e:
        if args.traceback:
            raise
        print(f"course-ddpm {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Weights shipped inside the package, loaded without any network access.

Each pretrained model is two files in ``course_ddpm/weights/``: ``<stem>.safetensors``
(the tensors) and ``<stem>.json`` (its card: config, how it was trained, the exact
command that reproduces it, and the sha256 of the ``.safetensors`` file). A card
cannot hold its own hash, so :data:`REGISTRY` below records the sha256 of both files;
:func:`load_pretrained` checks both before it builds a model.

After training new weights into ``course_ddpm/weights/``, run
``python -m course_ddpm.pretrained`` to print the hashes to paste into :data:`REGISTRY`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from course_ddpm.checkpoints import file_sha256

PretrainedName = Literal["unet", "unet_cond", "classifier", "classifier_b"]


class PretrainedError(RuntimeError):
    """A pretrained model is not shipped, or its files do not match :data:`REGISTRY`."""


@dataclass(frozen=True)
class PretrainedEntry:
    """Where a pretrained model lives and the sha256 its two files must have.

    ``weights_sha256``/``card_sha256`` are None until the weights are trained and
    shipped; such an entry counts as not shipped.
    """

    stem: str
    description: str
    how_to_train: str
    weights_sha256: str | None = None
    card_sha256: str | None = None


_TRAIN_UNET = (
    "train one with `course-ddpm train` and use its checkpoint file "
    "(course_ddpm.checkpoints.load_model, or --checkpoint PATH on the command line)"
)

REGISTRY: dict[str, PretrainedEntry] = {
    "unet": PretrainedEntry(
        "ddpm_unet", "unconditional DDPM U-Net on MNIST", _TRAIN_UNET,
        weights_sha256="716bb64ca5b99c5d5470c4f3b6e616ee7cb7666b58d24105aa2354d71796ca9a",
        card_sha256="8b74ae6a3a6172eb244a2927e78a0c792c901e8faa9b3011e5a4df217e7caee3",
    ),
    "unet_cond": PretrainedEntry(
        "ddpm_unet_cond", "class-conditional DDPM U-Net on MNIST (classifier-free guidance)", _TRAIN_UNET,
        weights_sha256="030fcdf8f4471875954b3d95425859d1beab1e94190d94dd5df797fe192e48e2",
        card_sha256="2fadeca8e338a08300200aa1ab1e9584319ba01893c73fca0dcb98d00c2b6981",
    ),
    "classifier": PretrainedEntry(
        "mnist_classifier",
        "LeNet-style MNIST classifier (features for MNIST-FID, digit histograms)",
        "retrain it with scripts/train_classifier.sh (a few CPU minutes)",
        weights_sha256="2958d43ae61a8c1f7cfa2eaf457fa3cc6a41b13f728ab1226a9f735db2834a86",
        card_sha256="e11373c59e68b5de7f6ca1f56c27d07fa55287d6006d8f2a8721cb8dd0822bc4",
    ),
    "classifier_b": PretrainedEntry(
        "mnist_classifier_b",
        "a second MNIST classifier, trained independently (seed 1, half the width): a second feature space "
        "for MNIST-FID, KID and precision/recall",
        "retrain it with scripts/train_classifier.sh b (a few CPU minutes)",
        weights_sha256="88e52023d303521f77314f9f73ca2fa27c6b9a3a47eb7f07c743fa7f65869b02",
        card_sha256="231bc4e3e9187edef2c458972f9dc8bb25944de9b5082c238d8511b2cb9ec9e2",
    ),
}


def weights_dir() -> Path:
    """The package's ``weights/`` folder (a real path: the package is not zipped)."""
    return Path(str(resources.files("course_ddpm") / "weights"))


def _entry(name: str) -> PretrainedEntry:
    if name not in REGISTRY:
        raise ValueError(f"name must be one of {sorted(REGISTRY)}, got {name!r}")
    return REGISTRY[name]


def _files(entry: PretrainedEntry) -> tuple[Path, Path]:
    folder = weights_dir()
    return folder / f"{entry.stem}.safetensors", folder / f"{entry.stem}.json"


def is_shipped(name: PretrainedName) -> bool:
    """True when both files exist and the registry holds their hashes (hashes not checked)."""
    entry = _entry(name)
    weights, card = _files(entry)
    return entry.weights_sha256 is not None and entry.card_sha256 is not None and weights.is_file() and card.is_file()


def list_pretrained() -> list[str]:
    """Names that :func:`load_pretrained` can load from this installation."""
    return [name for name in REGISTRY if is_shipped(name)]


def verify(name: PretrainedName) -> tuple[Path, Path]:
    """Check both files of ``name`` against :data:`REGISTRY` and the card; return their paths.

    Raises:
        PretrainedError: a file is missing (not shipped yet) or a hash does not match.
    """
    entry = _entry(name)
    weights, card = _files(entry)
    if not is_shipped(name):
        missing = [p.name for p in (weights, card) if not p.is_file()]
        why = f"missing {', '.join(missing)}" if missing else "no sha256 registered in course_ddpm.pretrained.REGISTRY"
        raise PretrainedError(
            f"pretrained {name!r} ({entry.description}) is not shipped in {weights_dir()}: {why}. "
            f"Shipped: {list_pretrained() or 'none'}. Instead, {entry.how_to_train}."
        )
    for path, expected in ((weights, entry.weights_sha256), (card, entry.card_sha256)):
        actual = file_sha256(path)
        if actual != expected:
            raise PretrainedError(
                f"{path} has sha256 {actual}, but course_ddpm.pretrained.REGISTRY expects {expected}: "
                "the file is corrupt or was replaced; reinstall the package or re-register the hashes"
            )
    recorded = json.loads(card.read_text(encoding="utf-8")).get("weights_sha256")
    if recorded is not None and recorded != entry.weights_sha256:
        raise PretrainedError(
            f"{card} records sha256 {recorded} for {weights.name}, but the registry has {entry.weights_sha256}"
        )
    return weights, card


def load_pretrained(name: PretrainedName = "unet", device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a shipped model (eval mode) and its card, after checking both files' sha256.

    Never touches the network. ``"unet"``/``"unet_cond"`` are diffusion models
    (``model(x_t, t, y=None) -> eps_pred``), ``"classifier"`` the
    :class:`course_ddpm.classifier.MNISTClassifier`.

    Raises:
        ValueError: unknown name.
        PretrainedError: not shipped, or a hash mismatch.
    """
    weights, _ = verify(name)
    from course_ddpm.checkpoints import load_model

    return load_model(weights, device)


def _registry_lines() -> list[str]:
    """REGISTRY hashes of the files now in ``weights/`` (for pasting after training)."""
    lines = []
    for name, entry in REGISTRY.items():
        weights, card = _files(entry)
        if weights.is_file() and card.is_file():
            lines.append(f"{name}: weights_sha256={file_sha256(weights)!r}, card_sha256={file_sha256(card)!r}")
        else:
            lines.append(f"{name}: not present")
    return lines


if __name__ == "__main__":
    print("\n".join(_registry_lines()))  # noqa: T201 - command-line entry point

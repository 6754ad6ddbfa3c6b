"""Checkpoints: model weights to ship, full training state to resume, written atomically.

Two kinds of file:

* **Model** (``name.safetensors`` + ``name.json``): the weights as safetensors (plain
  tensors, no code) and a human-readable JSON card beside it::

      {"format": "course_ddpm.model/1",
       "model": {"name": "unet", "base_channels": 32, ...},  # networks.model_to_config_dict
       "schedule": {"kind": "linear", "T": 1000, "rescale": false, ...},
       "step": 20000, "metrics": {...}, ...                   # anything else the caller adds
       "weights_sha256": "..."}                                # sha256 of the .safetensors

  :func:`save_model` / :func:`load_model`. This is what ``course-ddpm sample`` and
  ``course_ddpm.pretrained`` read, and what the package ships: the diffusion models
  and the MNIST classifier alike (any model of the :mod:`course_ddpm.networks`
  registry; the classifier's card has no schedule).

* **Training state** (``last.pt``): model, EMA and optimizer state dicts, random
  generator states, step and config, written with ``torch.save`` and read back with
  ``torch.load(weights_only=True)``, which unpickles only tensors and plain containers,
  never code. :func:`save_state` / :func:`load_state`.

Every write goes to a temporary file in the same folder, is flushed to disk (fsync) and
then renamed over the target (``os.replace``, atomic on POSIX and Windows): a run killed
at any moment leaves either the old file or the new one, never half of one. A file that
is truncated, foreign or does not match its card raises :class:`CheckpointError` with a
message that says which file and why.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

MODEL_FORMAT = "course_ddpm.model/1"
STATE_FORMAT = "course_ddpm.train_state/1"
_CARD_METADATA_KEY = "course_ddpm_card"  # the card, also inside the safetensors header


class CheckpointError(ValueError):
    """A checkpoint file is missing its parts, truncated, foreign or inconsistent."""


# ----------------------------------------------------------------------- file helpers
def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_dict_sha256(model: nn.Module) -> str:
    """sha256 of a model's tensors alone: names, dtypes, shapes and bytes, in name order.

    Two files with the same weights but different cards (metadata) have different file
    hashes and the same tensor hash, so a result can name the weights it measured.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # reshape: 0-d buffers too
    return digest.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write a file atomically: ``write(f)`` into a temp file beside ``path``, fsync, rename.

    Readers (and a resumed run) see either the previous file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write` of a bytes object."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened on Windows.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------ model files
def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON card beside a weights file: ``x.safetensors`` -> ``x.json``."""
    return Path(path).with_suffix(".json")


def weights_path(path: str | os.PathLike) -> Path:
    """The weights beside a card: ``x.json`` -> ``x.safetensors`` (others unchanged)."""
    path = Path(path)
    return path.with_suffix(".safetensors") if path.suffix == ".json" else path


def schedule_card(kind: str, T: int, rescale: bool) -> dict:
    """The ``"schedule"`` entry of a card: what :func:`schedule_from_card` rebuilds from."""
    from course_ddpm.schedules import make_schedule

    return {"kind": kind, "T": T, "rescale": rescale, **make_schedule(kind, T, rescale, warn=False).to_dict()}


def schedule_from_card(card: dict):
    """The :class:`~course_ddpm.schedules.Schedule` a model was trained with (from its card)."""
    from course_ddpm.schedules import make_schedule

    s = card.get("schedule")
    if not isinstance(s, dict) or "kind" not in s or "T" not in s:
        raise CheckpointError(f"the card has no schedule {{'kind', 'T', 'rescale'}}: {s!r}")
    return make_schedule(s["kind"], int(s["T"]), bool(s.get("rescale", False)), warn=False)


def save_model(path: str | os.PathLike, model: nn.Module, card: dict | None = None) -> Path:
    """Save weights as safetensors and a JSON card beside them; returns the weights path.

    Args:
        path: ``*.safetensors`` target; the card goes to the same stem with ``.json``.
        model: a :mod:`course_ddpm.networks` model (its config is stored in the card).
        card: JSON-safe extras, usually ``{"schedule": schedule_card(...), "step": ...,
            "metrics": {...}}``; keys ``format``, ``model`` and ``weights_sha256`` are set here.

    The weights are written first, then the card (which holds their sha256), each atomically.
    """
    from course_ddpm.networks import model_to_config_dict
    from safetensors.torch import save as safetensors_save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path must end in .safetensors, got {str(path)!r}")
    extras = {k: v for k, v in (card or {}).items() if k not in ("format", "model", "weights_sha256")}
    full_card = {"format": MODEL_FORMAT, "model": model_to_config_dict(model), **extras}
    card_json = json.dumps(full_card)  # raises TypeError early if the card is not JSON-safe

    # clone(): safetensors refuses tensors that share storage.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    data = safetensors_save(tensors, metadata={_CARD_METADATA_KEY: card_json})
    atomic_write_bytes(path, data)
    full_card["weights_sha256"] = hashlib.sha256(data).hexdigest()
    atomic_write_text(sidecar_path(path), json.dumps(full_card, indent=2) + "\n")
    return path


def read_card(path: str | os.PathLike) -> dict:
    """The JSON card of a model file (``.safetensors`` or ``.json``), without loading weights.

    Falls back to the copy inside the safetensors header when the ``.json`` is missing.
    """
    weights = weights_path(path)
    card_file = sidecar_path(weights)
    if card_file.exists():
        try:
            card = json.loads(card_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{card_file}: not a valid JSON model card ({e})") from None
    elif weights.exists():
        card = _card_from_header(weights)
    else:
        raise FileNotFoundError(f"no such checkpoint: {weights} (nor {card_file})")
    if not isinstance(card, dict) or card.get("format") != MODEL_FORMAT or "model" not in card:
        raise CheckpointError(f"{card_file}: not a course_ddpm model card (expected format {MODEL_FORMAT!r})")
    return card


def _card_from_header(weights: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from None
    if _CARD_METADATA_KEY not in metadata:
        raise CheckpointError(f"{weights}: no course_ddpm card beside it ({sidecar_path(weights)}) or inside it")
    try:
        return json.loads(metadata[_CARD_METADATA_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{weights}: the card inside the file is not valid JSON ({e})") from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a model and its card, in eval mode.

    Args:
        path: ``x.safetensors`` or ``x.json`` (a model from :func:`save_model`), or a
            training state ``last.pt`` from :func:`save_state` (its EMA weights are used).
        device: where to put the model.

    Returns:
        ``(model, card)``. Raises :class:`CheckpointError` for a truncated or foreign file,
        a sha256 that does not match the card, or weights that do not fit the config.
    """
    path = Path(path)
    if path.suffix == ".pt":
        return _model_from_state_file(path, device)
    weights = weights_path(path)
    if not weights.exists():
        raise FileNotFoundError(f"no such checkpoint: {weights}")
    card = read_card(weights)
    data = weights.read_bytes()
    expected = card.get("weights_sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(
            f"{weights}: sha256 does not match its card {sidecar_path(weights).name} "
            "(file truncated, replaced, or a save interrupted between the two files)"
        )
    from safetensors.torch import load as safetensors_load

    try:
        state_dict = safetensors_load(data)
    except Exception as e:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from None
    model = _build_and_load(card["model"], state_dict, weights)
    return model.to(device).eval(), card


def _build_and_load(model_config: dict, state_dict: dict, source: Path) -> nn.Module:
    from course_ddpm.networks import model_from_config_dict

    try:
        model = model_from_config_dict(model_config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: the card's model config is not valid ({e})") from None
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        first_line = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{source}: the weights do not fit the model config ({first_line} ...)") from None
    return model


def _model_from_state_file(path: Path, device) -> tuple[nn.Module, dict]:
    state = load_state(path)
    for key in ("model_config", "ema"):
        if key not in state:
            raise CheckpointError(f"{path}: a training state without {key!r}; cannot build a model from it")
    model = _build_and_load(state["model_config"], state["ema"], path)
    card = {
        "format": MODEL_FORMAT,
        "model": state["model_config"],
        "schedule": state.get("schedule"),
        "image_shape": state.get("image_shape"),
        "step": state.get("step"),
        "config": state.get("config"),
        "weights": "ema",
    }
    return model.to(device).eval(), card


# ---------------------------------------------------------------------- training state
def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Save a full training state with ``torch.save``, atomically.

    ``state`` may hold only tensors and plain containers/numbers/strings (what
    ``torch.load(weights_only=True)`` accepts): state dicts, ``torch.Generator.get_state()``
    byte tensors, ints, config dicts. A ``"format"`` key is added.
    """
    buffer = io.BytesIO()
    torch.save({**state, "format": STATE_FORMAT}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training state written by :func:`save_state`, never executing pickled code.

    Raises FileNotFoundError if missing and :class:`CheckpointError` if truncated,
    foreign (not a torch file, or one holding arbitrary Python objects) or not ours.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip/pickle/unpickler errors vary by torch version
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable course_ddpm training state (truncated or foreign file: {reason[:200]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: a torch file, but not a course_ddpm training state ({STATE_FORMAT!r})")
    return state

"""Tests for course_ddpm.checkpoints: round trips, atomic writes, refusal of bad files."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from course_ddpm.checkpoints import (
    state_dict_sha256,
    CheckpointError,
    atomic_write,
    atomic_write_bytes,
    file_sha256,
    load_model,
    load_state,
    read_card,
    save_model,
    save_state,
    schedule_card,
    schedule_from_card,
    sidecar_path,
)
from course_ddpm.networks import build_model
from course_ddpm.schedules import make_schedule

TINY = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False, groups=4)


def _tiny_model(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model("unet", **{**TINY, **kw})


def _save_tiny(tmp_path, name="m.safetensors", **kw):
    model = _tiny_model(**kw)
    card = {"schedule": schedule_card("linear", 100, True), "step": 7, "metrics": {"loss": 0.5}}
    path = save_model(tmp_path / name, model, card)
    return model, path


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k].cpu(), sb[k].cpu()), k


# ----------------------------------------------------------------------------- model
def test_file_sha256_matches_known_vector(tmp_path):
    # FIPS 180-2 test vector for "abc".
    (tmp_path / "abc").write_bytes(b"abc")
    assert file_sha256(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_state_dict_sha256_names_the_tensors_not_the_file(tmp_path):
    torch.manual_seed(0)
    model = build_model("unet", base_channels=8, channel_mults=(1, 2), attention=False, groups=4)
    a = save_model(tmp_path / "a.safetensors", model, {"note": "one card"})
    b = save_model(tmp_path / "b.safetensors", model, {"note": "another card"})
    assert file_sha256(a) != file_sha256(b)  # the card is inside the file
    assert state_dict_sha256(load_model(a)[0]) == state_dict_sha256(load_model(b)[0]) == state_dict_sha256(model)
    # an independent digest of the same bytes, in name order
    import hashlib

    digest = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode() + t.contiguous().numpy().tobytes())
    assert state_dict_sha256(model) == digest.hexdigest()
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6  # one weight changed by one ulp-ish step
    assert state_dict_sha256(model) != digest.hexdigest()
    # 0-d buffers (e.g. BatchNorm's step counter) and empty tensors are hashed too
    norm = torch.nn.BatchNorm1d(3)
    before = state_dict_sha256(norm)
    norm.num_batches_tracked += 1
    assert state_dict_sha256(norm) != before


def test_save_and_load_model_round_trip(tmp_path):
    model, path = _save_tiny(tmp_path, num_classes=10)
    loaded, card = load_model(path)
    _assert_same_weights(model, loaded)
    assert loaded.config == model.config
    assert not loaded.training
    assert card["step"] == 7 and card["metrics"] == {"loss": 0.5}
    assert card["model"]["name"] == "unet" and card["model"]["num_classes"] == 10
    assert card["weights_sha256"] == file_sha256(path)
    # The sidecar is plain JSON that a person can read; loading by the .json path works too.
    assert json.loads(sidecar_path(path).read_text())["schedule"]["T"] == 100
    loaded_by_json, _ = load_model(path.with_suffix(".json"))
    _assert_same_weights(model, loaded_by_json)


def test_loaded_model_computes_the_same_eps_pred(tmp_path):
    model, path = _save_tiny(tmp_path)
    loaded, _ = load_model(path)
    x_t, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 5, 19])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x_t, t), loaded(x_t, t))


def test_schedule_from_card_rebuilds_the_schedule(tmp_path):
    _, path = _save_tiny(tmp_path)
    schedule = schedule_from_card(read_card(path))
    assert torch.equal(schedule.beta, make_schedule("linear", 100, rescale=True, warn=False).beta)
    with pytest.raises(CheckpointError, match="schedule"):
        schedule_from_card({"model": {}})


def test_card_inside_the_weights_is_used_when_the_sidecar_is_missing(tmp_path):
    model, path = _save_tiny(tmp_path)
    sidecar_path(path).unlink()
    loaded, card = load_model(path)
    _assert_same_weights(model, loaded)
    assert card["step"] == 7


def test_save_model_refuses_other_suffixes_and_reserved_keys_are_ours(tmp_path):
    with pytest.raises(ValueError, match="safetensors"):
        save_model(tmp_path / "m.pt", _tiny_model(), {})
    path = save_model(tmp_path / "m.safetensors", _tiny_model(), {"model": "bogus", "weights_sha256": "0" * 64})
    card = read_card(path)
    assert card["model"]["name"] == "unet" and card["weights_sha256"] == file_sha256(path)


def test_truncated_weights_are_refused_with_a_clear_error(tmp_path):
    _, path = _save_tiny(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_model(path)
    sidecar_path(path).unlink()  # no card to compare with: safetensors itself must refuse
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(path)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="foreign.safetensors"):
        load_model(path)
    (tmp_path / "other.json").write_text('{"hello": 1}')
    (tmp_path / "other.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a course_ddpm model card"):
        load_model(tmp_path / "other.safetensors")


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    _, path = _save_tiny(tmp_path)
    card = json.loads(sidecar_path(path).read_text())
    card["model"]["base_channels"] = 16  # the weights are for 8 channels
    sidecar_path(path).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path)


def test_missing_model_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nothing.safetensors")


# ---------------------------------------------------------------------- training state
def test_state_round_trip_restores_tensors_optimizer_and_generators(tmp_path):
    model = _tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 8, 8), torch.tensor([1, 2])).square().mean().backward()
    opt.step()
    gen = torch.Generator().manual_seed(123)
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "step": 5,
        "config": {"lr": 1e-3, "name": "x", "mults": [1, 2], "clip": None},
    }
    save_state(tmp_path / "last.pt", state)
    loaded = load_state(tmp_path / "last.pt")
    assert loaded["step"] == 5 and loaded["config"] == state["config"]
    for k, v in state["model"].items():
        assert torch.equal(loaded["model"][k], v)
    # The restored generator continues the same random stream.
    expected = torch.randn(4, generator=gen)
    restored = torch.Generator()
    restored.set_state(loaded["generator"])
    assert torch.equal(torch.randn(4, generator=restored), expected)
    # The restored optimizer state makes the next step identical.
    opt2 = torch.optim.AdamW(_tiny_model().parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


_CODE_RAN: list[str] = []


def _side_effect() -> str:
    _CODE_RAN.append("ran")
    return "pwned"


class _Malicious:
    def __reduce__(self):
        return (_side_effect, ())


def test_state_holding_python_objects_is_refused_without_running_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "course_ddpm.train_state/1", "x": _Malicious()}, path)
    _CODE_RAN.clear()
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_state(path)
    assert _CODE_RAN == []


def test_truncated_and_foreign_states_are_refused(tmp_path):
    path = save_state(tmp_path / "last.pt", {"step": 1, "w": torch.randn(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        load_state(path)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="text.pt"):
        load_state(tmp_path / "text.pt")
    torch.save({"step": 1}, tmp_path / "plain.pt")  # a torch file, but not ours
    with pytest.raises(CheckpointError, match="not a course_ddpm training state"):
        load_state(tmp_path / "plain.pt")
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "missing.pt")


def test_load_model_from_a_training_state_uses_the_ema_weights(tmp_path):
    from course_ddpm.networks import model_to_config_dict

    model, ema = _tiny_model(seed=0), _tiny_model(seed=1)
    state = {
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "model_config": model_to_config_dict(model),
        "schedule": schedule_card("cosine", 20, False),
        "step": 3,
    }
    save_state(tmp_path / "last.pt", state)
    loaded, card = load_model(tmp_path / "last.pt")
    _assert_same_weights(ema, loaded)
    assert card["step"] == 3 and card["weights"] == "ema"
    assert schedule_from_card(card).name == "cosine T=20"


# ----------------------------------------------------------------------- atomic writes
def test_failed_write_leaves_the_old_file_and_no_temp_files(tmp_path):
    path = atomic_write_bytes(tmp_path / "f.bin", b"old contents")

    def write_then_crash(f):
        f.write(b"new but incomplete")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a save

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write_then_crash)
    assert path.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and hashlib.sha256(b"new").hexdigest() == file_sha256(path)

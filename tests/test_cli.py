"""Tests for the course-ddpm command line (in-process through cli.main, plus one real
console-script call). Synthetic data and tiny models: no MNIST needed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from course_ddpm import cli, training_step
from course_ddpm.checkpoints import load_model, save_model, schedule_card
from course_ddpm.networks import build_model
from course_ddpm.training_config import TrainConfig

TINY_MODEL = {"base_channels": 8, "channel_mults": [1, 2], "attention": False, "groups": 4}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny conditional U-Net saved as a model for 28x28 images."""
    torch.manual_seed(0)
    model = build_model("unet", **TINY_MODEL, num_classes=10)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return save_model(path, model, {"schedule": schedule_card("cosine", 10, False), "step": 0})


@pytest.fixture
def data_file(tmp_path) -> Path:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 10, (16,), generator=g)
    torch.save({"x": x, "y": y}, tmp_path / "data.pt")
    return tmp_path / "data.pt"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


TRAIN_FLAGS = ["--model-kwargs", json.dumps(TINY_MODEL), "--schedule", "cosine", "--T", "20", "--batch-size", "4",
               "--steps", "3", "--checkpoint-every", "0", "--log-every", "1", "--sample-every", "0", "--device", "cpu",
               "--num-threads", "1", "--no-progress"]  # fmt: skip


# ------------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["evaluate"], ["info"]])
def test_help_of_every_command(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: course-ddpm")
    expected = {(): "evaluate", ("train",): "--batch-size", ("sample",): "--rtol", ("evaluate",): "--ode-bpd",
                ("info",): "CHECKPOINT"}[tuple(command)]  # fmt: skip
    assert expected in out


def test_every_train_config_field_has_a_flag_with_help(capsys):
    assert set(cli.TRAIN_HELP) == {f.name for f in dataclasses.fields(TrainConfig)}
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in out


def test_console_script_is_installed():
    script = shutil.which("course-ddpm", path=str(Path(sys.executable).parent))
    assert script is not None, "pip install -e . creates the course-ddpm script"
    result = subprocess.run([script, "info", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "CHECKPOINT" in result.stdout


# ------------------------------------------------------------------------------ train
def test_tiny_train_with_config_file_and_flag_overrides(capsys, tmp_path, data_file):
    base = TrainConfig(lr=5e-4, steps=100, out_dir=str(tmp_path / "ignored"))
    (tmp_path / "base.json").write_text(base.to_json())
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--config", tmp_path / "base.json", *TRAIN_FLAGS,
                             "--out-dir", out_dir, "--data", data_file, "--conditional", "--grad-clip", "none")  # fmt: skip
    assert code == 0, err
    assert "trained 3 steps" in out
    saved = TrainConfig.from_json((out_dir / "config.json").read_text())
    assert saved.lr == 5e-4  # from the file
    assert saved.steps == 3 and saved.conditional and saved.grad_clip is None  # from the flags
    assert saved.model_kwargs == TrainConfig(model_kwargs=TINY_MODEL).model_kwargs
    model, card = load_model(out_dir / "final.safetensors")
    assert card["step"] == 3 and card["image_shape"] == [1, 8, 8] and model.config.num_classes == 10


def test_ctrl_c_during_train_exits_130_and_resume_finishes(capsys, tmp_path, data_file, monkeypatch):
    real_l_simple = training_step.l_simple
    calls = []

    def ctrl_c_at_step_2(eps, eps_pred):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_l_simple(eps, eps_pred)

    monkeypatch.setattr(training_step, "l_simple", ctrl_c_at_step_2)
    args = ["train", *TRAIN_FLAGS, "--out-dir", tmp_path / "run", "--data", data_file]
    code, _, err = run_cli(capsys, *args)
    assert code == 130 and "--resume" in err and "step 2" in err
    monkeypatch.setattr(training_step, "l_simple", real_l_simple)
    code, out, err = run_cli(capsys, *args, "--resume")
    assert code == 0 and "trained 3 steps" in out, err


# ----------------------------------------------------------------------------- sample
def test_sample_writes_npy_pixels_and_png_grid(capsys, tmp_path, tiny_checkpoint):
    npy = tmp_path / "x.npy"
    code, _, err = run_cli(capsys, "sample", "--checkpoint", tiny_checkpoint, "--n", 5, "--steps", 3,
                           "--batch-size", 2, "--device", "cpu", "--out", npy, "--label", 7, "--guidance", 2.0)  # fmt: skip
    assert code == 0, err
    x = np.load(npy)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.std() > 0
    png = tmp_path / "grid.png"
    code, _, err = run_cli(capsys, "sample", "--checkpoint", tiny_checkpoint, "--n", 4, "--steps", 2,
                           "--device", "cpu", "--out", png)  # fmt: skip
    assert code == 0, err
    from PIL import Image

    assert Image.open(png).size == (2 * (28 + 2) + 2, 2 * (28 + 2) + 2)  # 2x2 grid, torchvision padding 2


def test_sample_is_reproducible_by_seed(capsys, tmp_path, tiny_checkpoint):
    outs = []
    for i, seed in enumerate([3, 3, 4]):
        path = tmp_path / f"{i}.npy"
        assert run_cli(capsys, "sample", "--checkpoint", tiny_checkpoint, "--n", 2, "--steps", 2, "--seed", seed,
                       "--device", "cpu", "--out", path)[0] == 0  # fmt: skip
        outs.append(np.load(path))
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


@pytest.mark.parametrize(
    "extra, message",
    [(["--out", "x.jpg"], ".png or .npy"), (["--out", "x.npy", "--label", "10"], "--label"),
     (["--out", "x.npy", "--guidance", "2"], "--guidance needs --label")],
)  # fmt: skip
def test_sample_rejects_bad_options_with_exit_2(capsys, tmp_path, tiny_checkpoint, extra, message):
    extra = [str(tmp_path / e) if e.startswith("x.") else e for e in extra]
    code, _, err = run_cli(capsys, "sample", "--checkpoint", tiny_checkpoint, "--device", "cpu", *extra)
    assert code == 2 and message in err and "Traceback" not in err


# ------------------------------------------------------------------------ info, errors
def test_info_prints_the_card_with_parameters_flops_and_sha256(capsys, tiny_checkpoint):
    code, out, err = run_cli(capsys, "info", tiny_checkpoint)
    assert code == 0, err
    info = json.loads(out)
    model, card = load_model(tiny_checkpoint)
    assert info["sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["flops_per_image"] > 2 * info["parameters"]  # convolutions reuse weights at every pixel
    assert info["model"] == card["model"] and info["schedule"]["T"] == 10 and info["step"] == 0


@pytest.mark.parametrize("command", ["info", "sample", "evaluate"])
def test_bad_or_missing_checkpoint_exits_2_with_one_line(capsys, tmp_path, command):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    for path in (bad, tmp_path / "missing.safetensors"):
        args = {"info": [path], "evaluate": ["--checkpoint", path, "--device", "cpu"],
                "sample": ["--checkpoint", path, "--device", "cpu", "--out", tmp_path / "x.npy"]}[command]  # fmt: skip
        code, out, err = run_cli(capsys, command, *args)
        assert code == 2
        assert err.count("\n") == 1 and "error" in err and path.name in err and "Traceback" not in err


def test_truncated_training_state_exits_2(capsys, tmp_path):
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    code, _, err = run_cli(capsys, "info", tmp_path / "last.pt")
    assert code == 2 and "last.pt" in err


def test_pretrained_either_loads_or_says_it_is_not_shipped(capsys, tmp_path):
    from course_ddpm.pretrained import is_shipped

    code, out, err = run_cli(capsys, "info", "pretrained")
    if is_shipped("unet"):
        assert code == 0 and json.loads(out)["parameters"] > 0
    else:
        assert code == 2 and "not shipped" in err


def test_sample_draws_the_requested_digit_from_the_shipped_conditional_model(capsys, tmp_path):
    """course-ddpm sample --checkpoint pretrained:unet_cond --label K --guidance S, checked by the classifier."""
    import torch

    from course_ddpm.fid import default_classifier

    npy = tmp_path / "sevens.npy"
    code, _, err = run_cli(capsys, "sample", "--checkpoint", "pretrained:unet_cond", "--label", 7, "--guidance", 3,
                           "--n", 4, "--steps", 20, "--device", "cpu", "--out", npy)  # fmt: skip
    assert code == 0, err
    x0 = torch.from_numpy(np.load(npy)) * 2 - 1  # the file holds pixels in [0, 1]
    with torch.no_grad():
        assert default_classifier()(x0).argmax(dim=1).tolist() == [7, 7, 7, 7]
    code, _, err = run_cli(capsys, "sample", "--checkpoint", "pretrained:unet_cond", "--label", 10, "--n", 2,
                           "--steps", 2, "--device", "cpu", "--out", npy)  # fmt: skip
    assert code == 2 and "label" in err


def test_evaluate_passes_the_options_and_writes_json(capsys, tmp_path, tiny_checkpoint, monkeypatch):
    from course_ddpm import evaluation

    seen = {}

    def fake_evaluate(model, schedule, **kwargs):
        seen.update(kwargs, T=schedule.T)
        return {"fid": 1.5}

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    monkeypatch.setattr(evaluation, "format_report", lambda d: f"REPORT fid={d['fid']}")
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--n", 12, "--sampler", "ddpm",
                             "--seed", 5, "--device", "cpu", "--json", tmp_path / "r.json")  # fmt: skip
    assert code == 0, err
    assert "REPORT fid=1.5" in out
    assert seen["n"] == 12 and seen["sampler"] == "ddpm" and seen["num_inference_steps"] is None and seen["seed"] == 5
    assert seen["T"] == 10 and str(seen["device"]) == "cpu"
    assert json.loads((tmp_path / "r.json").read_text())["fid"] == 1.5


# ------------------------------------------------------------------ probability-flow ODE
def test_sample_with_the_ode_sampler_draws_digits_from_the_shipped_model(capsys, tmp_path):
    """course-ddpm sample --sampler ode: RK45 on the probability-flow ODE; the classifier recognises digits."""
    from course_ddpm.fid import default_classifier

    npy = tmp_path / "ode.npy"
    code, out, err = run_cli(capsys, "sample", "--checkpoint", "pretrained", "--sampler", "ode", "--rtol", "1e-2",
                             "--n", 3, "--device", "cpu", "--out", npy)  # fmt: skip
    assert code == 0, err
    assert "network evaluations per image" in out
    x0 = torch.from_numpy(np.load(npy)) * 2 - 1
    with torch.no_grad():
        assert float(default_classifier()(x0).softmax(1).max(1).values.min()) > 0.8
    code, _, err = run_cli(capsys, "sample", "--checkpoint", "pretrained", "--sampler", "ode", "--steps", 5,
                           "--device", "cpu", "--out", npy)  # fmt: skip
    assert code == 2 and "--rtol" in err


def test_evaluate_ode_bpd_passes_n_and_reports_it(capsys, tmp_path, tiny_checkpoint, monkeypatch):
    from course_ddpm import evaluation, likelihood

    seen = {}

    def fake_ode_bpd(model, sde, n, **kwargs):
        seen.update(kwargs, n=n, T=sde.T)
        return {"n": n, "bpd": 1.25, "stderr": 0.5, "rtol": 1e-5}

    monkeypatch.setattr(evaluation, "evaluate", lambda model, schedule, **kw: {"fid": 1.5})
    monkeypatch.setattr(evaluation, "format_report", lambda d: "REPORT")
    monkeypatch.setattr(likelihood, "mnist_ode_bits_per_dim", fake_ode_bpd)
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", "pretrained", "--ode-bpd", 7, "--seed", 3,
                             "--device", "cpu", "--json", tmp_path / "r.json")  # fmt: skip
    assert code == 0, err
    assert seen["n"] == 7 and seen["seed"] == 3 and seen["T"] == 1000
    assert "1.2500 +- 0.5000" in out
    assert json.loads((tmp_path / "r.json").read_text())["ode_bpd"]["bpd"] == 1.25

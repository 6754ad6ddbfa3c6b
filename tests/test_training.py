"""Tests for course_ddpm.training: runs that are deterministic, write their files, resume exactly,
stop cleanly on divergence and interruption, and leave the caller's RNG and threads alone.
Synthetic 8x8 data and a tiny U-Net: no MNIST needed."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from course_ddpm import training_step
from course_ddpm.checkpoints import load_model, load_state, read_card
from course_ddpm.training import TrainingInterrupted, read_log, train
from course_ddpm.training_config import TrainConfig
from course_ddpm.training_step import TrainingDiverged, lr_at

pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops (tests/conftest.py)

TINY_MODEL = {"base_channels": 8, "channel_mults": [1, 2], "attention": False, "groups": 4}


def tiny_config(out_dir: Path, **overrides) -> TrainConfig:
    settings = dict(
        model_kwargs=TINY_MODEL, schedule="cosine", T=20, batch_size=8, steps=6, lr=1e-3, warmup_steps=2,
        log_every=2, sample_every=0, checkpoint_every=3, sample_n=4, sample_steps=4, out_dir=str(out_dir),
        device="cpu",
    )  # fmt: skip
    return TrainConfig(**{**settings, **overrides})


def synthetic_data(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 3, (n,), generator=g)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def final_state(out_dir: Path) -> dict:
    return load_state(Path(out_dir) / "last.pt")


# -------------------------------------------------------------------------- full runs
def test_two_runs_with_one_config_give_bit_identical_weights(tmp_path):
    data = synthetic_data()
    a = train(tiny_config(tmp_path / "a"), progress=False, data=data)
    b = train(tiny_config(tmp_path / "b"), progress=False, data=data)
    c = train(tiny_config(tmp_path / "c", seed=1), progress=False, data=data)
    assert_same_weights(a.model.state_dict(), b.model.state_dict())
    assert_same_weights(a.ema_model.state_dict(), b.ema_model.state_dict())
    assert a.losses == b.losses and len(a.losses) == 6
    assert not torch.equal(a.model.conv_in.weight, c.model.conv_in.weight)


def test_train_leaves_the_global_rng_as_it_found_it(tmp_path):
    """A notebook's unseeded cells after train() draw what they would have drawn without it:
    after a fresh run, a resumed one (which loads the checkpoint's RNG) and one that fails."""
    data, dropout = synthetic_data(), {**TINY_MODEL, "dropout": 0.3}  # dropout draws from the global RNG

    def config(steps: int) -> TrainConfig:
        return tiny_config(tmp_path / "run", steps=steps, model_kwargs=dropout)

    def refused() -> None:  # the folder holds a run: raised after the run has seeded the RNG
        with pytest.raises(FileExistsError):
            train(config(5), progress=False, data=data)

    def draw_after(run) -> torch.Tensor:
        torch.manual_seed(1234)
        run()
        return torch.rand(5)

    expected = draw_after(lambda: None)
    assert torch.equal(draw_after(lambda: train(config(3), progress=False, data=data)), expected)
    assert torch.equal(draw_after(lambda: train(config(5), resume=True, progress=False, data=data)), expected)
    assert torch.equal(draw_after(refused), expected)


def test_num_threads_holds_during_the_steps_and_the_callers_count_comes_back(tmp_path, monkeypatch):
    real_l_simple, seen = training_step.l_simple, []

    def l_simple_noting_threads(eps, eps_pred):
        seen.append(torch.get_num_threads())
        return real_l_simple(eps, eps_pred)

    monkeypatch.setattr(training_step, "l_simple", l_simple_noting_threads)
    torch.set_num_threads(2)  # the caller's count; the module's one_thread fixture has set 1
    try:
        train(tiny_config(tmp_path / "run", steps=2, num_threads=1), progress=False, data=synthetic_data())
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_run_writes_log_checkpoints_and_loadable_ema(tmp_path):
    config = tiny_config(tmp_path / "run", steps=5, log_every=2, checkpoint_every=2)
    result = train(config, progress=False, data=synthetic_data())
    log = read_log(config.out_dir)
    assert [e["step"] for e in log] == [2, 4, 5]
    assert read_log(Path(config.out_dir) / "log.jsonl") == log  # the file itself reads the same
    assert set(log[0]) == {"step", "loss", "lr", "images_per_s", "wall_time"}
    # Each entry is the mean loss since the previous one.
    for entry, window in zip(log, [result.losses[0:2], result.losses[2:4], result.losses[4:5]]):
        assert entry["loss"] == pytest.approx(sum(window) / len(window))
    assert log[0]["lr"] == pytest.approx(lr_at(config, 1))
    model, card = load_model(result.final_path)
    assert_same_weights(model.state_dict(), result.ema_model.state_dict())
    assert card["step"] == 5 and card["schedule"]["kind"] == "cosine" and card["weights"] == "ema"
    assert TrainConfig.from_json((Path(config.out_dir) / "config.json").read_text()) == config
    assert final_state(config.out_dir)["step"] == 5


def test_keep_every_keeps_ema_snapshots_that_match_the_run(tmp_path):
    """keep_every=2 over 5 steps: snapshots at steps 2 and 4; the resumed part keeps its own, bit for bit."""
    data = synthetic_data()
    whole = train(tiny_config(tmp_path / "whole", steps=4, keep_every=2, checkpoint_every=1), progress=False, data=data)
    files = sorted((Path(whole.out_dir) / "snapshots").glob("*.safetensors"))
    assert [f.name for f in files] == ["ema_000002.safetensors", "ema_000004.safetensors"]
    model, card = load_model(files[-1])
    assert card["step"] == 4 and card["weights"] == "ema"
    assert_same_weights(model.state_dict(), whole.ema_model.state_dict())
    # a run of 2 steps, resumed to 4 with keep_every turned on only then (a resumable change)
    train(tiny_config(tmp_path / "parts", steps=2, checkpoint_every=1), progress=False, data=data)
    train(tiny_config(tmp_path / "parts", steps=4, keep_every=2, checkpoint_every=1), resume=True, progress=False, data=data)
    kept = sorted((tmp_path / "parts" / "snapshots").glob("*.safetensors"))
    assert [f.name for f in kept] == ["ema_000004.safetensors"]
    assert_same_weights(load_model(kept[0])[0].state_dict(), model.state_dict())
    with pytest.raises(ValueError, match="keep_every"):
        tiny_config(tmp_path, keep_every=-1)


def test_resume_after_a_finished_part_equals_an_unbroken_run(tmp_path):
    data, dropout = synthetic_data(), {**TINY_MODEL, "dropout": 0.3}  # dropout: the global RNG must resume too
    unbroken = train(tiny_config(tmp_path / "a", steps=7, model_kwargs=dropout), progress=False, data=data)
    train(tiny_config(tmp_path / "b", steps=4, model_kwargs=dropout), progress=False, data=data)  # steps may grow
    resumed = train(tiny_config(tmp_path / "b", steps=7, model_kwargs=dropout), resume=True, progress=False, data=data)
    assert resumed.step == 7 and len(resumed.losses) == 3
    assert_same_weights(unbroken.model.state_dict(), resumed.model.state_dict())
    assert_same_weights(final_state(tmp_path / "a")["ema"], final_state(tmp_path / "b")["ema"])
    assert [e["step"] for e in read_log(tmp_path / "b")] == [2, 4, 6, 7]
    # each session records the machine it ran on; the card carries them as trained_with
    sessions = read_log(tmp_path / "b" / "sessions.jsonl")
    assert [row["from_step"] for row in sessions] == [0, 4]
    assert all(row["torch"] == torch.__version__ and row["threads"] == 1 for row in sessions)
    assert read_card(tmp_path / "b" / "ema.json")["trained_with"] == sessions


def test_refuses_to_overwrite_a_run_or_resume_with_another_config(tmp_path):
    data = synthetic_data()
    train(tiny_config(tmp_path / "run", steps=2), progress=False, data=data)
    with pytest.raises(FileExistsError, match="resume"):
        train(tiny_config(tmp_path / "run", steps=2), progress=False, data=data)
    with pytest.raises(ValueError, match="lr"):
        train(tiny_config(tmp_path / "run", steps=4, lr=0.5), resume=True, progress=False, data=data)


def test_nan_loss_stops_before_the_update_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_l_simple, calls = training_step.l_simple, []

    def l_simple_nan_at_step_5(eps, eps_pred):
        calls.append(1)
        loss = real_l_simple(eps, eps_pred)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(training_step, "l_simple", l_simple_nan_at_step_5)
    config = tiny_config(tmp_path / "run", steps=10, checkpoint_every=3)
    with pytest.raises(TrainingDiverged, match="step 5.*last.pt"):
        train(config, progress=False, data=synthetic_data())
    state = final_state(config.out_dir)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    monkeypatch.setattr(training_step, "l_simple", real_l_simple)
    # The kept checkpoint is the unbroken run's state at step 3.
    reference = train(tiny_config(tmp_path / "ref", steps=3), progress=False, data=synthetic_data())
    assert_same_weights(state["model"], reference.model.state_dict())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_writes_a_checkpoint_and_the_run_resumes_exactly(tmp_path, monkeypatch, signum):
    data = synthetic_data()
    unbroken = train(tiny_config(tmp_path / "a", steps=8), progress=False, data=data)
    real_l_simple, calls = training_step.l_simple, []

    def l_simple_with_ctrl_c_at_step_5(eps, eps_pred):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signum)  # as if the user pressed Ctrl-C (or a cluster preempted) in step 5
        return real_l_simple(eps, eps_pred)

    monkeypatch.setattr(training_step, "l_simple", l_simple_with_ctrl_c_at_step_5)
    # what was installed before: Python's default, or SIG_IGN when pytest runs in a background job
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_config(tmp_path / "b", steps=8), progress=False, data=data)
    assert isinstance(info.value, KeyboardInterrupt) and info.value.step == 5
    assert final_state(tmp_path / "b")["step"] == 5  # not a multiple of checkpoint_every: written on Ctrl-C
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored
    monkeypatch.setattr(training_step, "l_simple", real_l_simple)
    resumed = train(tiny_config(tmp_path / "b", steps=8), resume=True, progress=False, data=data)
    assert_same_weights(unbroken.model.state_dict(), resumed.model.state_dict())


def test_conditional_bf16_run_with_sample_grids(tmp_path):
    from PIL import Image

    config = tiny_config(tmp_path / "run", steps=2, conditional=True, precision="bf16", sample_every=1, sample_n=4)
    result = train(config, progress=False, data=synthetic_data())
    assert all(math.isfinite(v) for v in result.losses)
    assert result.model.config.num_classes == 10
    grids = sorted(p.name for p in (Path(config.out_dir) / "samples").iterdir())
    assert grids == ["step_000001.png", "step_000002.png"]
    # 4 images of 8x8 in a 2x2 grid with torchvision's 2-pixel padding: 2 * (8 + 2) + 2 = 22.
    assert Image.open(Path(config.out_dir) / "samples" / grids[0]).size == (22, 22)


# ----------------------------------------------------------------- killed subprocess
def _write_run_files(tmp_path: Path, out_dir: Path, steps: int) -> tuple[Path, Path]:
    data_file = tmp_path / "data.pt"
    x, y = synthetic_data()
    torch.save({"x": x, "y": y}, data_file)
    config_file = tmp_path / f"{out_dir.name}.json"
    # the CLI's own process: one thread as this one (the fixture), so that the weights compare bit for bit
    config_file.write_text(tiny_config(out_dir, steps=steps, checkpoint_every=4, num_threads=1).to_json())
    return config_file, data_file


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "course_ddpm.cli", *args]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_run_killed_after_its_first_checkpoint_resumes_to_the_same_weights(tmp_path):
    steps = 30
    config_file, data_file = _write_run_files(tmp_path, tmp_path / "killed", steps)
    proc = subprocess.Popen(_cli("train", "--config", str(config_file), "--data", str(data_file), "--no-progress"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    last = tmp_path / "killed" / "last.pt"
    deadline = time.monotonic() + 90
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.kill()  # SIGKILL: no handler runs, nothing is flushed
    _, stderr = proc.communicate()
    assert last.exists(), stderr.decode()
    killed_at = load_state(last)["step"]
    assert killed_at < steps, "the run finished before it could be killed; the test proves nothing"

    resumed = subprocess.run(_cli("train", "--config", str(config_file), "--data", str(data_file), "--no-progress",
                                  "--resume"), capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    unbroken = train(tiny_config(tmp_path / "unbroken", steps=steps, checkpoint_every=4), progress=False,
                     data=synthetic_data())  # fmt: skip
    state = load_state(last)
    assert state["step"] == steps
    assert_same_weights(state["model"], unbroken.model.state_dict())
    assert_same_weights(state["ema"], unbroken.ema_model.state_dict())
    logged = [e["step"] for e in read_log(tmp_path / "killed")]
    assert logged == list(range(2, steps + 1, 2))  # entries written after the checkpoint were not duplicated

"""Tests for course_ddpm.distributed: rank slices, devices, and two CPU processes under
torchrun giving the weights of one process trained on the combined batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from course_ddpm.checkpoints import load_state
from course_ddpm.distributed import DistInfo, rank_slice, resolve_device, setup
from course_ddpm.training import read_log, train
from course_ddpm.training_config import TrainConfig

TINY_MODEL = {"base_channels": 8, "channel_mults": [1, 2], "attention": False, "groups": 4}


def test_rank_slices_partition_the_global_batch():
    for world_size in (1, 2, 4):
        rows = [rank_slice(8, DistInfo(rank=r, world_size=world_size)) for r in range(world_size)]
        covered = [i for s in rows for i in range(8)[s]]
        assert covered == list(range(8))
    with pytest.raises(ValueError, match="divisible"):
        rank_slice(6, DistInfo(rank=0, world_size=4))


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda:0"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == torch.device(expected)
    if cuda:
        assert resolve_device("auto", local_rank=1) == torch.device("cuda:1")  # the process's GPU under torchrun


def test_devices_and_single_process_setup(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = setup("cpu")
    assert (info.rank, info.world_size, info.is_main, info.enabled) == (0, 1, True, False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_processes_match_one_process_on_the_combined_batch(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 3, (24,), generator=g)
    torch.save({"x": x, "y": y}, tmp_path / "data.pt")
    settings = dict(
        model_kwargs=TINY_MODEL, schedule="cosine", T=20, batch_size=8, steps=4, lr=1e-3, warmup_steps=0,
        conditional=True, log_every=1, sample_every=0, checkpoint_every=0, device="cpu", num_threads=1,
    )  # fmt: skip
    config = TrainConfig(**settings, out_dir=str(tmp_path / "ddp"))
    (tmp_path / "config.json").write_text(config.to_json())

    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), "-m", "course_ddpm.cli", "train", "--config", str(tmp_path / "config.json"),
        "--data", str(tmp_path / "data.pt"), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=170)
    assert run.returncode == 0, run.stdout + run.stderr
    state = load_state(tmp_path / "ddp" / "last.pt")
    assert state["world_size"] == 2 and state["step"] == 4 and len(state["rng"]) == 2

    single = train(TrainConfig(**settings, out_dir=str(tmp_path / "one")), progress=False, data=(x, y))
    for name, weight in single.model.state_dict().items():
        # Same batches; only the order of float additions differs (two half-batch means averaged).
        # Adam divides by sqrt(v), so a near-zero gradient's round-off moves a weight by up to
        # ~1e-6 in 4 steps (2.3e-6 measured under ATEN_CPU_CAPABILITY=default); a wrong
        # gradient moves it by ~lr = 1e-3.
        torch.testing.assert_close(state["model"][name], weight, rtol=1e-5, atol=1e-5, msg=name)
    assert not torch.equal(state["model"]["conv_in.weight"], state["ema"]["conv_in.weight"])  # it did train
    ddp_log = [e["loss"] for e in read_log(tmp_path / "ddp")]
    assert ddp_log == pytest.approx(list(single.losses), rel=1e-5)  # the global-batch loss, all-reduced

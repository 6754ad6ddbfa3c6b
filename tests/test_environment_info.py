"""course_ddpm.environment: what a run records about its machine."""

from __future__ import annotations

import json

import torch

from course_ddpm import environment


def test_describe_records_torch_threads_and_vector_unit(one_thread):
    info = environment.describe()
    assert info["torch"] == torch.__version__
    assert info["threads"] == 1 == torch.get_num_threads()
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["device"] == "cpu" and info["cpus"] >= 1 and info["cpu"]
    assert json.loads(json.dumps(info)) == info, "JSON-safe"


def test_cpu_model_reads_proc_cpuinfo(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Test CPU @ 1.0GHz\nflags\t: avx2\n")
    real_path = environment.Path
    monkeypatch.setattr(environment, "Path", lambda p: fake if p == "/proc/cpuinfo" else real_path(p))
    assert environment.cpu_model() == "Test CPU @ 1.0GHz"

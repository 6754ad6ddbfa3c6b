"""What a measurement or a training run records about the machine it ran on.

Round-off, speed and even some results depend on the torch version, the CPU's vector unit
(``torch.backends.cpu.get_cpu_capability()``: AVX512, AVX2, DEFAULT, ...) and the thread
count, so the model cards, ``notebooks/runtimes.json`` and the benchmark JSON record them.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe(device: str | torch.device = "cpu") -> dict:
    """torch version, machine, CPU model, vector unit, CPUs and torch threads; the device's name."""
    device = torch.device(device)
    info = {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info

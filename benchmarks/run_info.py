"""What every benchmark script records beside its figures: how it was called, when, on what."""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time

import torch


def run_meta(argv: list[str] | None, start: float) -> dict:
    """argv (``sys.argv[1:]`` when None), date, torch version, machine, load average, and the
    wall seconds since ``start`` (a ``time.perf_counter()`` value)."""
    return {
        "argv": sys.argv[1:] if argv is None else list(argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "total_wall_s": time.perf_counter() - start,
    }

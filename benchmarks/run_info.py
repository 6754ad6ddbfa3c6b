"""What every benchmark script records beside its figures (how it was called, when, on what) and how it reports them."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from course_ddpm import environment


def run_meta(argv: list[str] | None, start: float) -> dict:
    """argv (``sys.argv[1:]`` when None), date, torch version, machine (and
    :func:`course_ddpm.environment.describe`: CPU, vector unit, threads), load average, and the
    wall seconds since ``start`` (a ``time.perf_counter()`` value)."""
    return {
        "argv": sys.argv[1:] if argv is None else list(argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "environment": environment.describe(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "total_wall_s": time.perf_counter() - start,
    }


def report(result: dict, json_path: str | Path | None, text: str) -> dict:
    """Write ``result`` to ``json_path`` (when given) first, so that a closed pipe (``| head``)
    cannot lose it; then print ``text`` and where the file went. Returns ``result``."""
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(text)
    if json_path:
        print(f"\nwrote {json_path}")
    return result

"""Re-execute the course notebooks in order, so that their stored outputs are fresh (``make notebooks``).

    .venv/bin/python scripts/execute_notebooks.py          # every notebooks/NN_*.ipynb, in order
    .venv/bin/python scripts/execute_notebooks.py 03 04    # only notebooks 3 and 4

Each notebook is a jupytext pair: ``notebooks/NN_name.py`` (percent format, the text an
instructor edits and reviews) and ``notebooks/NN_name.ipynb`` (the same cells with their
stored outputs, what students open and nbval compares). For each notebook this script

1. syncs the pair (``jupytext --sync``: the newer side wins; outputs are kept);
2. executes the ``.ipynb`` top to bottom in a fresh kernel with 2 torch threads
   (``jupyter nbconvert --execute --inplace``) and measures the wall time;
3. writes that time to ``notebooks/runtimes.json`` and from there into the notebook's
   "**Runtime:** about N s" line (both files of the pair) and the README's notebook table.

The runtime is measured once and written everywhere from that one JSON;
``tests/test_notebooks.py`` checks that the notebooks and the README agree with it.
Run it after anything the notebooks show has changed (the package, shipped weights), then
``make test``.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from course_ddpm import environment

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RUNTIMES = NOTEBOOKS / "runtimes.json"
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
#: Threads the notebooks run with while measured; the runtime line says "on 2 CPU cores".
THREADS = 2
RUNTIME_LINE = re.compile(r"\*\*Runtime:\*\* about \d+ (?:s|min)")
README_ROW = re.compile(r"^(\| `(\d\d)_[\w]+\.ipynb` \|.*\| )(~\d+ (?:s|min))( \|)$", re.MULTILINE)


def runtime_phrase(seconds: float) -> str:
    """How a measured runtime is stated: "about 15 s" (to 5 s) below a minute, else "about 3 min"."""
    if seconds < 57.5:
        return f"about {max(5, 5 * round(seconds / 5))} s"
    return f"about {max(1, round(seconds / 60))} min"


def readme_phrase(seconds: float) -> str:
    """The README table's form of the same number: "~15 s"."""
    return "~" + runtime_phrase(seconds).removeprefix("about ")


def notebook_pairs(numbers: list[str] | None = None) -> list[tuple[Path, Path]]:
    """(``.ipynb``, ``.py``) of every course notebook, in order; only ``numbers`` if given."""
    pairs = [(nb, nb.with_suffix(".py")) for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]
    if numbers:
        pairs = [p for p in pairs if p[0].name[:2] in numbers]
    return pairs


def jupytext(*args: str) -> None:
    subprocess.run([str(BIN / "jupytext"), "--quiet", *args], check=True, cwd=ROOT)


def execute(notebook: Path) -> float:
    """Run ``notebook`` in place in a fresh kernel; returns the wall time in seconds."""
    env = {**os.environ, "COURSE_DDPM_THREADS": str(THREADS), "OMP_WAIT_POLICY": "PASSIVE"}
    start = time.perf_counter()
    subprocess.run([str(BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute", "--inplace",
                    "--ExecutePreprocessor.timeout=1800", "--ExecutePreprocessor.record_timing=False",
                    str(notebook)], check=True, env=env, cwd=NOTEBOOKS)  # fmt: skip
    return time.perf_counter() - start


def write_runtime(text_twin: Path, seconds: float) -> None:
    """Put the measured runtime into the notebook's "**Runtime:**" line (text twin, then synced)."""
    source = text_twin.read_text(encoding="utf-8")
    if not RUNTIME_LINE.search(source):
        raise SystemExit(f"{text_twin.name}: no '**Runtime:** about N s' line in the first cell")
    text_twin.write_text(RUNTIME_LINE.sub(f"**Runtime:** {runtime_phrase(seconds)}", source, count=1), encoding="utf-8")


def write_readme(runtimes: dict) -> None:
    """Rewrite the runtime column of the README's notebook table from ``runtimes``."""
    def row(match: re.Match) -> str:
        entry = next((v for k, v in runtimes.items() if k.startswith(match.group(2))), None)
        return match.group(0) if entry is None else match.group(1) + readme_phrase(entry["seconds"]) + match.group(4)

    README.write_text(README_ROW.sub(row, README.read_text(encoding="utf-8")), encoding="utf-8")


def main(numbers: list[str]) -> int:
    pairs = notebook_pairs(numbers)
    if not pairs:
        print(f"no notebook numbered {numbers} in {NOTEBOOKS}", file=sys.stderr)
        return 2
    runtimes = json.loads(RUNTIMES.read_text()) if RUNTIMES.exists() else {}
    for notebook, text_twin in pairs:
        jupytext("--sync", str(notebook))
        seconds = execute(notebook)
        runtimes[notebook.stem] = {
            "seconds": round(seconds, 1), "threads": THREADS, "date": datetime.date.today().isoformat(),
            "environment": environment.describe(),  # the torch threads of this process; the notebook ran with THREADS
            "command": f"python scripts/execute_notebooks.py {notebook.name[:2]}",
        }  # fmt: skip
        RUNTIMES.write_text(json.dumps(dict(sorted(runtimes.items())), indent=1) + "\n")
        write_runtime(text_twin, seconds)
        jupytext("--sync", str(text_twin))  # the text twin is newer now: its runtime line goes to the .ipynb
        print(f"{notebook.name}: executed in {seconds:.0f} s ({runtime_phrase(seconds)})", flush=True)
    write_readme(runtimes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

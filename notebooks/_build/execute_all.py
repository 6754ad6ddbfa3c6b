"""Regenerate and execute the course notebooks, so that their stored outputs are fresh.

    .venv/bin/python notebooks/_build/execute_all.py          # every make_NN.py in this folder
    .venv/bin/python notebooks/_build/execute_all.py 03 04    # only notebooks 3 and 4

Each ``make_NN.py`` writes its notebook without outputs; ``jupyter nbconvert --execute
--inplace`` then runs it in the course's environment and stores the outputs that nbval
compares. Run it after anything the notebooks show has changed (e.g. new shipped weights),
then check with:

    .venv/bin/pytest --nbval --nbval-current-env notebooks/ \
        --nbval-sanitize-with notebooks/nbval_sanitize.cfg -q
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BUILD = Path(__file__).resolve().parent
JUPYTER = Path(sys.executable).with_name("jupyter")


def main(numbers: list[str]) -> int:
    scripts = sorted(BUILD.glob("make_[0-9][0-9].py"))
    if numbers:
        scripts = [s for s in scripts if s.stem.removeprefix("make_") in numbers]
        if not scripts:
            print(f"no make_NN.py for {numbers} in {BUILD}", file=sys.stderr)
            return 2
    for script in scripts:
        notebook = subprocess.run([sys.executable, script.name], cwd=BUILD, check=True, capture_output=True,
                                  text=True).stdout.strip().splitlines()[-1]
        start = time.perf_counter()
        subprocess.run([str(JUPYTER), "nbconvert", "--to", "notebook", "--execute", "--inplace",
                        "--ExecutePreprocessor.timeout=1800", notebook], check=True)
        print(f"{Path(notebook).name}: executed in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

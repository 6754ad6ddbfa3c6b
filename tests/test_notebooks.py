"""The notebooks as stored: executed top to bottom, no errors, each stating its runtime.

nbval (``make test``) re-runs every notebook and compares its outputs with the stored ones,
but it does not look at how they were stored. These tests do: a notebook saved
unexecuted, with an error output, or after cells were run out of order fails here, before
a student opens it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def stored_notebook_problems(nb: dict) -> list[str]:
    """What is wrong with a stored notebook (nbformat 4 JSON as a dict); [] if nothing.

    Every code cell with source must have been executed, the execution counts must run
    1, 2, 3, ... in cell order (one top-to-bottom run in a fresh kernel), and no output may
    be an error or a stderr traceback. Empty code cells are allowed to be unexecuted.
    """
    problems = []
    code = [(i, c) for i, c in enumerate(nb.get("cells", [])) if c.get("cell_type") == "code"]
    counts = []
    for i, cell in code:
        source = "".join(cell.get("source", []))
        if not source.strip():
            continue
        if cell.get("execution_count") is None:
            problems.append(f"cell {i} is not executed")
        else:
            counts.append((i, cell["execution_count"]))
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i} stored an error: {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                if "Traceback" in "".join(out.get("text", [])):
                    problems.append(f"cell {i} stored a traceback on stderr")
    expected = list(range(1, len(counts) + 1))
    if [n for _, n in counts] != expected:
        problems.append(f"execution counts {[n for _, n in counts]} are not 1..{len(counts)} in cell order "
                        "(run the notebook top to bottom in a fresh kernel: notebooks/_build/execute_all.py)")  # fmt: skip
    return problems


def _cell(source: str, count: int | None, outputs: list | None = None) -> dict:
    return {"cell_type": "code", "source": [source], "execution_count": count, "outputs": outputs or []}


def test_the_checker_finds_each_kind_of_fault():
    good = {"cells": [{"cell_type": "markdown", "source": ["# t"]}, _cell("a = 1", 1), _cell("", None), _cell("a", 2)]}
    assert stored_notebook_problems(good) == []
    unexecuted = {"cells": [_cell("a = 1", 1), _cell("a", None)]}
    assert stored_notebook_problems(unexecuted) == ["cell 1 is not executed"]
    swapped = {"cells": [_cell("a = 1", 2), _cell("a", 1)]}
    assert "not 1..2 in cell order" in stored_notebook_problems(swapped)[0]
    rerun = {"cells": [_cell("a = 1", 1), _cell("a", 3)]}  # a cell was run twice
    assert "not 1..2" in stored_notebook_problems(rerun)[0]
    error = {"ename": "NameError", "evalue": "name 'b' is not defined", "output_type": "error", "traceback": []}
    assert stored_notebook_problems({"cells": [_cell("b", 1, [error])]}) == [
        "cell 0 stored an error: NameError: name 'b' is not defined"
    ]
    traceback = {"output_type": "stream", "name": "stderr", "text": ["Traceback (most recent call last):\n"]}
    assert stored_notebook_problems({"cells": [_cell("x", 1, [traceback])]}) == ["cell 0 stored a traceback on stderr"]


def test_there_are_four_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_executed_in_order_without_errors(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert stored_notebook_problems(nb) == []
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert sum(bool(c["outputs"]) for c in code_cells) >= len(code_cells) // 2, "most cells should show something"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_states_its_runtime_at_the_top(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    first = "".join(nb["cells"][0]["source"])
    assert first.startswith("# "), "the first cell is the title"
    assert re.search(r"\*\*Runtime:\*\* about \d+ (s|min)", first), "the first cell states the notebook's runtime"


def test_the_readme_test_command_runs_nbval_over_every_notebook():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"--nbval\b.*\bnotebooks/", makefile), "make test runs nbval over notebooks/"
    assert "make test" in (ROOT / "README.md").read_text() and "make test" in (ROOT / ".ci" / "run").read_text()

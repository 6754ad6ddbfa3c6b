"""The notebooks as stored: executed top to bottom, no errors, in step with their text twins.

nbval (``make test``) re-runs every notebook and compares its outputs with the stored ones,
but it does not look at how they were stored. These tests do: a notebook saved
unexecuted, with an error output, or after cells were run out of order fails here, before
a student opens it. So does a ``.ipynb`` whose jupytext twin (``notebooks/NN_*.py``) says
something else, and a runtime line that is not the measured one in ``notebooks/runtimes.json``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SYNC_COMMAND = "make sync  (or: .venv/bin/jupytext --sync notebooks/NN_name.ipynb)"


def _load_execute_script():
    spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


execute_notebooks = _load_execute_script()


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
                        "(run the notebook top to bottom in a fresh kernel: make notebooks)")  # fmt: skip
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


def test_the_course_has_its_notebooks_in_order():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]


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


def cell_differences(a, b) -> list[str]:
    """Where two notebooks (nbformat nodes, e.g. read by jupytext) differ in their cells' type,
    source or tags; [] if they agree. Outputs are not compared: only the .ipynb has them."""
    if len(a.cells) != len(b.cells):
        return [f"{len(a.cells)} cells against {len(b.cells)}"]
    problems = []
    for i, (x, y) in enumerate(zip(a.cells, b.cells)):
        for what, u, v in (("type", x.cell_type, y.cell_type), ("source", x.source, y.source),
                           ("tags", x.metadata.get("tags", []), y.metadata.get("tags", []))):  # fmt: skip
            if u != v:
                problems.append(f"cell {i}: {what} differ{'' if what == 'tags' else 's'}")
    return problems


def test_cell_differences_finds_an_edit_on_either_side():
    nb = jupytext.reads("# %%\nx = 1\n\n# %% [markdown]\n# Title\n", fmt="py:percent")
    assert cell_differences(nb, jupytext.reads(jupytext.writes(nb, fmt="ipynb"), fmt="ipynb")) == []
    typo = jupytext.reads("# %%\nx = 1\n\n# %% [markdown]\n# Titel\n", fmt="py:percent")
    assert cell_differences(nb, typo) == ["cell 1: source differs"]
    tagged = jupytext.reads('# %% tags=["nbval-ignore-output"]\nx = 1\n\n# %% [markdown]\n# Title\n', fmt="py:percent")
    assert cell_differences(nb, tagged) == ["cell 0: tags differ"]
    assert cell_differences(nb, jupytext.reads("# %%\nx = 1\n", fmt="py:percent")) == ["2 cells against 1"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_its_text_twin_are_in_step(path):
    twin = path.with_suffix(".py")
    assert twin.exists(), f"{path.name} has no jupytext twin {twin.name}: run  jupytext --set-formats ipynb,py:percent {path}"
    differences = cell_differences(jupytext.read(path), jupytext.read(twin))
    assert not differences, (f"{path.name} and {twin.name} are out of step ({'; '.join(differences[:5])}). "
                             f"Edit either, then run  {SYNC_COMMAND}  and re-execute with  make notebooks")  # fmt: skip


def test_every_notebook_is_paired_and_no_generator_is_left():
    twins = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert twins == [p.with_suffix(".py").name for p in NOTEBOOKS], "every NN_*.py twin has its .ipynb and back"
    assert not list(ROOT.rglob("make_[0-9][0-9].py")), "notebooks are edited as jupytext pairs, not generated from strings"
    for path in NOTEBOOKS:
        formats = json.loads(path.read_text(encoding="utf-8"))["metadata"].get("jupytext", {}).get("formats")
        assert formats == "ipynb,py:percent", f"{path.name}: jupytext pairing is {formats!r}"


def test_runtime_phrase_rounds_as_the_notebooks_state_it():
    phrase = execute_notebooks.runtime_phrase
    assert [phrase(s) for s in (1, 12.4, 17.5, 44, 57, 58, 95, 200)] == [
        "about 5 s", "about 10 s", "about 20 s", "about 45 s", "about 55 s", "about 1 min", "about 2 min",
        "about 3 min",
    ]  # fmt: skip
    assert execute_notebooks.readme_phrase(17.5) == "~20 s"


def test_stated_runtimes_are_the_measured_ones():
    """One measured source: notebooks/runtimes.json, written by make notebooks. The notebooks'
    runtime lines and the README's table must say what it says."""
    runtimes = json.loads((ROOT / "notebooks" / "runtimes.json").read_text())
    assert sorted(runtimes) == [p.stem for p in NOTEBOOKS], "every notebook has a measured runtime"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        seconds = runtimes[path.stem]["seconds"]
        first = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
        stated = re.search(r"\*\*Runtime:\*\* (about \d+ (?:s|min))", first)
        assert stated and stated.group(1) == execute_notebooks.runtime_phrase(seconds), (
            f"{path.name} states {stated and stated.group(1)!r}; runtimes.json measured {seconds} s (make notebooks)"
        )
        row = re.search(rf"^\| `{re.escape(path.name)}` \|.*\| (~\d+ (?:s|min)) \|$", readme, re.MULTILINE)
        assert row, f"README's notebook table has no row for {path.name}"
        assert row.group(1) == execute_notebooks.readme_phrase(seconds), f"README states {row.group(1)} for {path.name}"

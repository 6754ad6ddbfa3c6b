"""The student notebooks (student/, made by scripts/make_student_notebooks.py) and the exercise cells.

* student/ is what the script writes now (committed, so a clone has it; regenerate with ``make student``);
* a student notebook holds no solution text, and differs from its instructor notebook only in the
  solution regions (the stub instead) and the outputs (none);
* every exercise is a tagged markdown cell, a solution cell and a check cell, in the order of
  ``course_ddpm.exercises``; no other cell uses the student's functions, so skipping one is harmless;
* executed, the student's exercise cells run without an error and every check says "not done yet";
  with the solutions put back every check passes.

Execution: the first code cell (imports, setup) and the exercise cells only, in one kernel with one
thread. The other cells of a student notebook are the instructor's, unchanged (checked below), and
nbval runs those in the instructor notebooks; executing all of notebooks 01-04 again would add
about four minutes.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from pathlib import Path

import nbformat
import pytest

from course_ddpm.exercises import all_exercises

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_student_notebooks", ROOT / "scripts" / "make_student_notebooks.py")
make_student = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_student)

INSTRUCTOR = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
                    if make_student.has_solutions(nbformat.read(p, as_version=4)))
CHECK_CALL = re.compile(r"^exercises\.check_(\w+)\((my_\w+)\)$")


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _is_exercise(cell) -> bool:
    return "exercise" in cell.metadata.get("tags", [])


def test_exercise_notebooks_are_01_to_04_and_07():
    assert [p.name[:2] for p in INSTRUCTOR] == ["01", "02", "03", "04", "07"]


def test_student_folder_holds_the_whole_course():
    """make lab opens student/: every notebook must be there; one without exercises keeps its outputs."""
    everything = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.name for p in (ROOT / "student").glob("*.ipynb")) == everything
    for name in everything:
        if ROOT / "notebooks" / name in INSTRUCTOR:
            continue
        instructor, student = _read(ROOT / "notebooks" / name), _read(ROOT / "student" / name)
        assert [(c.source, c.get("outputs")) for c in instructor.cells] == [
            (c.source, c.get("outputs")) for c in student.cells
        ]


def test_student_folder_is_up_to_date():
    assert make_student.main(["--check"]) == 0, "student/ is out of date: run  make student"


@pytest.mark.parametrize("path", INSTRUCTOR, ids=lambda p: p.name)
def test_exercise_cells_follow_the_package(path):
    """Markdown, solution, check: tagged, one per exercise of course_ddpm.exercises, in its order."""
    cells = _read(path).cells
    checked = []
    for k, cell in enumerate(cells):
        if cell.cell_type == "code" and make_student.BEGIN in cell.source:
            assert _is_exercise(cell) and _is_exercise(cells[k - 1]) and _is_exercise(cells[k + 1])
            assert cells[k - 1].cell_type == "markdown" and "**Exercise" in cells[k - 1].source
            match = CHECK_CALL.match(cells[k + 1].source.strip())
            assert match, cells[k + 1].source
            assert f"def {match.group(2)}(" in cell.source
            checked.append(match.group(2))
    assert len([c for c in cells if _is_exercise(c)]) == 3 * len(checked)
    assert checked == [ex.name for ex in all_exercises()[path.name[:2]]]


def _passed_to_yours_if_correct(tree: ast.AST) -> set[int]:
    """ids of the Name nodes that are arguments of ``exercises.yours_if_correct(...)``."""
    return {id(arg) for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "yours_if_correct" for arg in n.args if isinstance(arg, ast.Name)}


@pytest.mark.parametrize("path", INSTRUCTOR, ids=lambda p: p.name)
def test_later_cells_never_use_the_students_functions(path):
    """Only through ``exercises.yours_if_correct``, which falls back to the package's version."""
    cells = [c for c in _read(path).cells if c.cell_type == "code"]
    defined = {n.name for c in cells if _is_exercise(c) for n in ast.walk(ast.parse(c.source))
               if isinstance(n, ast.FunctionDef) and n.name.startswith("my_")}
    assert len(defined) >= len(all_exercises()[path.name[:2]])
    for cell in cells:
        if not _is_exercise(cell):
            source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            tree = ast.parse(source)
            guarded = _passed_to_yours_if_correct(tree)
            used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in guarded}
            assert not used & defined, f"a non-exercise cell uses {used & defined}"


@pytest.mark.parametrize("path", INSTRUCTOR, ids=lambda p: p.name)
def test_student_notebook_has_no_solution_and_differs_only_there(path):
    instructor, student = _read(path), _read(ROOT / "student" / path.name)
    text = (ROOT / "student" / path.name).read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    exercise_text = "\n".join(c.source for c in student.cells if _is_exercise(c))
    assert len(instructor.cells) == len(student.cells)
    n_stubs = 0
    for a, b in zip(instructor.cells, student.cells):
        assert (a.id, a.cell_type, a.metadata.get("tags")) == (b.id, b.cell_type, b.metadata.get("tags"))
        if a.cell_type == "code":
            assert b.outputs == [] and b.execution_count is None
        if a.cell_type == "code" and make_student.BEGIN in a.source:
            n_stubs += 1
            assert "raise NotImplementedError()" in b.source
            for region in make_student.SOLUTION.finditer(a.source):
                for line in region.group(0).splitlines()[1:-1]:
                    if len(line.strip()) > 12:  # no solution line is left in any exercise cell
                        assert line.strip() not in exercise_text, line
        else:
            assert a.source == b.source
    assert n_stubs == len(all_exercises()[path.name[:2]])
    assert set(student.metadata) <= {"kernelspec", "language_info"}  # no jupytext pairing, no widget state


def test_strip_solutions_keeps_indentation_and_the_rest():
    source = "def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    y = x\n    return y\n    ### END SOLUTION\n"
    assert make_student.strip_solutions(source) == (
        "def f(x):\n    \"\"\"doc\"\"\"\n    # YOUR CODE HERE\n    raise NotImplementedError()\n")
    with pytest.raises(ValueError, match="unbalanced"):
        make_student.strip_solutions("### BEGIN SOLUTION\nx = 1\n")


def _execute_exercises(nb: nbformat.NotebookNode, monkeypatch) -> list[str]:
    """Run the first code cell and the exercise code cells in a fresh kernel; the check cells' outputs."""
    from nbclient import NotebookClient

    first = next(c for c in nb.cells if c.cell_type == "code")
    cells = [first] + [c for c in nb.cells if c.cell_type == "code" and _is_exercise(c)]
    run = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("COURSE_DDPM_THREADS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    resources = {"metadata": {"path": str(ROOT / "notebooks")}}
    NotebookClient(run, timeout=300, kernel_name="python3", resources=resources).execute()
    outputs = []
    for cell in run.cells[1:]:
        assert not any(o.output_type == "error" for o in cell.outputs), cell.source
        if CHECK_CALL.match(cell.source.strip()):
            outputs.append("".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream").strip())
    return outputs


@pytest.mark.parametrize("path", INSTRUCTOR, ids=lambda p: p.name)
def test_student_exercises_run_and_say_not_done(path, monkeypatch):
    outputs = _execute_exercises(_read(ROOT / "student" / path.name), monkeypatch)
    assert len(outputs) == len(all_exercises()[path.name[:2]])
    assert all(out.startswith("… my_") and "not done yet" in out for out in outputs), outputs


@pytest.mark.parametrize("path", INSTRUCTOR, ids=lambda p: p.name)
def test_with_the_solutions_put_back_every_check_passes(path, monkeypatch):
    student = _read(ROOT / "student" / path.name)
    solutions = {c.id: c.source for c in _read(path).cells if make_student.BEGIN in c.source}
    for cell in student.cells:
        if cell.id in solutions:
            cell.source = solutions[cell.id]
    outputs = _execute_exercises(student, monkeypatch)
    assert len(outputs) == len(solutions)
    assert all(out.startswith("✓ my_") for out in outputs), outputs

"""Write the student notebooks: the course without the exercises' solutions (``make student``).

    .venv/bin/python scripts/make_student_notebooks.py           # writes student/NN_name.ipynb
    .venv/bin/python scripts/make_student_notebooks.py --check   # exit 1 if student/ is out of date

The instructor notebooks in ``notebooks/`` are the complete course: every exercise's code cell holds
its solution between nbgrader's markers ``### BEGIN SOLUTION`` and ``### END SOLUTION``. For each
notebook that has such a cell, this script runs two nbconvert preprocessors over the ``.ipynb``
(a notebook without exercises is copied as it is, outputs included, so that ``student/`` holds
the whole course):

* :class:`ClearSolutions` replaces every marked region by nbgrader's stub,
  ``# YOUR CODE HERE`` / ``raise NotImplementedError()``, indented like the markers (the behaviour
  of nbgrader's ``ClearSolutions`` preprocessor, whose markers and stub these are);
* nbconvert's ``ClearOutputPreprocessor`` removes every output and execution count;

and keeps of the notebook's metadata only the kernel's (no jupytext pairing: a student's save must
not write a ``.py``; no widget state of the instructor's last run).
Everything else (cell ids, sources, tags) is kept, so the student notebook differs from the
instructor's only in the solutions and the outputs. The exercise checks catch the stub's
``NotImplementedError`` and print "not done yet", so a student notebook runs to the end.

Why not nbgrader itself: it would be one more dependency of the course's environment that pulls
in a database layer (SQLAlchemy, alembic) and adds its own JupyterLab and server extensions
(assignment panels, a formgrader) to every student's ``make lab``, for this one step. The markers
are nbgrader's, so an instructor who uses nbgrader can run ``nbgrader generate_assignment`` on
these notebooks instead.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearOutputPreprocessor, Preprocessor

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STUDENT = ROOT / "student"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
#: nbgrader's ``ClearSolutions.code_stub["python"]``.
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
SOLUTION = re.compile(r"^([ \t]*)" + re.escape(BEGIN) + r"[^\n]*\n.*?^[ \t]*" + re.escape(END) + r"[^\n]*$",
                      re.MULTILINE | re.DOTALL)


class ClearSolutions(Preprocessor):
    """Replace each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region of a code cell by the stub."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and BEGIN in cell.source:
            cell.source = strip_solutions(cell.source)
        return cell, resources


def strip_solutions(source: str) -> str:
    """The source with every solution region replaced by :data:`STUB`, at the region's indentation."""
    def stub(match: re.Match) -> str:
        return "\n".join(match.group(1) + line for line in STUB.splitlines())

    out = SOLUTION.sub(stub, source)
    if BEGIN in out or END in out:
        raise ValueError(f"unbalanced solution markers in a cell:\n{source}")
    return out


def has_solutions(nb: nbformat.NotebookNode) -> bool:
    return any(c.cell_type == "code" and BEGIN in c.source for c in nb.cells)


def student_version(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student notebook made from an instructor notebook (a copy; ``nb`` is left as it is)."""
    nb = nbformat.from_dict(nb)  # deep copy
    if has_solutions(nb):  # the outputs would show the solutions' results: clear them
        for preprocessor in (ClearSolutions(), ClearOutputPreprocessor()):
            nb, _ = preprocessor.preprocess(nb, {})
    # keep what a kernel needs; drop the jupytext pairing and the widget state of the last run
    nb.metadata = nbformat.NotebookNode({k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")})
    return nb


def student_notebooks() -> dict[Path, str]:
    """``student/NN_name.ipynb`` -> its text, for every instructor notebook (student/ is the whole
    course: a notebook without exercises is copied with its outputs, for reading before running)."""
    out = {}
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        out[STUDENT / path.name] = nbformat.writes(student_version(nb)) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that student/ is up to date")
    args = parser.parse_args(argv)
    wanted = student_notebooks()
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    extra = [p for p in STUDENT.glob("*.ipynb") if p not in wanted] if STUDENT.exists() else []
    if args.check:
        for p in stale + extra:
            print(f"out of date: {p.relative_to(ROOT)}  (run: python scripts/make_student_notebooks.py)")
        return 1 if stale or extra else 0
    STUDENT.mkdir(exist_ok=True)
    for p in stale:
        p.write_text(wanted[p])
        print(f"wrote {p.relative_to(ROOT)}")
    for p in extra:
        p.unlink()
        print(f"removed {p.relative_to(ROOT)} (no such instructor notebook)")
    print(f"{len(wanted)} student notebooks in {STUDENT.relative_to(ROOT)}/, {len(stale)} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())

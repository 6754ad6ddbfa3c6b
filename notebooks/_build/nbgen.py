"""Tiny helpers for the notebook generators in this folder (make_01.py, make_02.py, ...).

Each generator writes one notebook *without outputs*; execute it afterwards so that the
stored outputs are what nbval compares:

    .venv/bin/python notebooks/_build/make_02.py
    .venv/bin/jupyter nbconvert --to notebook --execute --inplace \
        --ExecutePreprocessor.timeout=600 notebooks/02_forward_noising.ipynb
    .venv/bin/pytest --nbval --nbval-current-env notebooks/02_forward_noising.ipynb \
        --nbval-sanitize-with notebooks/nbval_sanitize.cfg -q
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent


def md(text: str):
    """A markdown cell from an indented triple-quoted string."""
    return new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text: str):
    """A code cell from an indented triple-quoted string."""
    return new_code_cell(textwrap.dedent(text).strip("\n"))


def write(cells: list, name: str, runtime: str) -> Path:
    """Write the cells as ``notebooks/<name>`` with a Python 3 kernel spec; returns the path.

    ``runtime`` (measured with nbconvert, see above) replaces the word RUNTIME in markdown cells.
    """
    for cell in cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace("RUNTIME", runtime)
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    path = NOTEBOOKS / name
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return path

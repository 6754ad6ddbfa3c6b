"""course_ddpm.notebook: the setup line, residuals printed as bounds, code shown at its core."""

from __future__ import annotations

import math

import pytest
import torch

from course_ddpm import ddim, ddpm, forward, notebook
from course_ddpm.validation import check_float


def _example(schedule: object, x_t: torch.Tensor, t: int = 3, *, scale: float = 2.0) -> torch.Tensor:
    """A docstring that the notebook should not show.

    It has several lines.
    """
    check_float("x_t", x_t)
    x_t = check_float("x_t", x_t)
    if t < 0:
        raise ValueError("t must be >= 0")
    # 1. the formula line, with its comment
    y = scale * x_t  # (B, ...)
    if t > 0:
        y = y + t
    else:
        check_float("y", y)
    return y


def test_show_code_keeps_the_formula_and_hides_docstring_checks_and_annotations():
    view = notebook.show_code(_example)
    lines = view.code.splitlines()
    assert lines[0] == "def _example(schedule, x_t, t=3, *, scale=2.0):"
    assert lines[1:] == [
        "    # 1. the formula line, with its comment",
        "    y = scale * x_t  # (B, ...)",
        "    if t > 0:",
        "        y = y + t",
        "    return y",
    ]
    assert view.sources == (("test_notebook._example", "test_notebook.py"),)
    assert repr(view).startswith(view.code + "\n# whole function")


def test_show_code_of_package_functions_links_the_file_and_stays_short():
    view = notebook.show_code(ddpm.ddpm_step, forward.q_sample)
    assert [path for _, path in view.sources] == ["course_ddpm/ddpm.py", "course_ddpm/forward.py"]
    assert "Algorithm 2" in view.code and '"""' not in view.code and "check_" not in view.code
    markdown = view._repr_markdown_()
    assert "[course_ddpm/ddpm.py](../course_ddpm/ddpm.py)" in markdown and markdown.startswith("```python\n")
    for fn in (ddpm.ddpm_step, ddim.ddim_step, forward.q_posterior):
        assert 2 <= len(notebook.show_code(fn).code.splitlines()) <= 30, fn.__name__
    with pytest.raises(ValueError, match="at least one"):
        notebook.show_code()


def test_agree_prints_digits_and_refuses_a_false_claim():
    assert notebook.agree(3.5e-14) == "agree to 12 digits"
    assert notebook.agree(torch.tensor([1e-15, -3e-13], dtype=torch.float64)) == "agree to 12 digits"
    assert notebook.agree(8.5e-13, digits=10) == "agree to 10 digits"
    with pytest.raises(AssertionError, match="2e-12 is not below 10\\^-12"):
        notebook.agree(torch.tensor([0.0, -2e-12]))
    with pytest.raises(AssertionError, match="nan"):
        notebook.agree(math.nan)


def test_setup_sets_threads_from_argument_or_environment_and_seeds(monkeypatch):
    before = torch.get_num_threads()
    try:
        notebook.setup(seed=5, threads=1)
        assert torch.get_num_threads() == 1
        first = torch.rand(3)
        monkeypatch.setenv(notebook.THREADS_ENV, "3")
        notebook.setup(seed=5)
        assert torch.get_num_threads() == 3
        assert torch.equal(torch.rand(3), first), "the same seed gives the same global draws"
        monkeypatch.delenv(notebook.THREADS_ENV)
        notebook.setup()
        assert 1 <= torch.get_num_threads() <= notebook.MAX_DEFAULT_THREADS
        with pytest.raises(ValueError, match=">= 1"):
            notebook.setup(threads=0)
    finally:
        torch.set_num_threads(before)

"""What every notebook calls: one setup line, code shown at its core, round-off shown as a bound.

The notebooks' stored outputs are compared as text by nbval on every machine that runs
``make test``. A printed residual such as ``3.5e-14`` is round-off: it depends on the CPU's
vector unit (AVX2, AVX-512, NEON), the thread count and the summation order, so a student's
laptop prints ``3.6e-14`` and the test fails. Three helpers keep the outputs machine-free:

* :func:`setup` fixes the thread count and the seed in one place;
* :func:`agree` prints a residual as ``agree to 12 digits`` (and fails loudly if it is not);
* :func:`show_code` shows the lines of a package function that carry the maths, without its
  docstring and input checks, with a link to the whole function.
"""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch

#: Environment variable that sets the notebooks' torch thread count (``make check-cpu``
#: runs the notebooks with 1 and 4 threads through it).
THREADS_ENV = "COURSE_DDPM_THREADS"
#: Default thread count: 4 at most. A laptop has 4-16 cores, but the notebooks' tensors are
#: small, where more threads mostly add overhead; the outputs do not depend on the count.
MAX_DEFAULT_THREADS = 4


def setup(seed: int = 0, threads: int | None = None) -> None:
    """Seed torch's global RNG and set its CPU thread count (``torch.get_num_threads()`` reads it).

    Args:
        seed: seed of ``torch.manual_seed`` for cells that draw without their own generator.
        threads: torch intra-op threads; default ``$COURSE_DDPM_THREADS``, else
            ``min(4, os.cpu_count())``. Stored outputs are the same at any count
            (``make check-cpu`` runs every notebook at 1 and 4 threads to show it).
    """
    if threads is None:
        threads = int(os.environ.get(THREADS_ENV, 0)) or min(MAX_DEFAULT_THREADS, os.cpu_count() or 1)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def agree(residual: float | torch.Tensor, digits: int = 12) -> str:
    """``"agree to 12 digits"`` for a residual below 10^-digits: the text is the same on every CPU.

    A residual is printed as the number of digits two computations share, never as a
    number: its own digits are round-off and change with the CPU. If the residual is not
    below 10^-digits, an ``AssertionError`` names the value, so the claim in the notebook
    cannot silently become false.
    """
    value = float(residual.abs().max()) if isinstance(residual, torch.Tensor) else abs(float(residual))
    if not value < 10.0**-digits:  # also catches NaN
        raise AssertionError(f"residual {value:.3g} is not below 10^-{digits}")
    return f"agree to {digits} digits"


@dataclass(frozen=True)
class CodeView:
    """Source lines shown in a notebook: plain text for nbval, Markdown with links in JupyterLab."""

    code: str
    sources: tuple[tuple[str, str], ...]  # (name such as "ddpm.ddpm_step", "course_ddpm/ddpm.py")

    def __repr__(self) -> str:
        where = "; ".join(f"{name} in {path}" for name, path in self.sources)
        return f"{self.code}\n# whole function, docstring and input checks: {where} (or name?? in a cell)"

    def _repr_markdown_(self) -> str:
        where = "; ".join(f"`{name}` in [{path}](../{path})" for name, path in self.sources)
        return f"```python\n{self.code}\n```\nWhole function, with its docstring and input checks: {where} (or `name??` in a cell)."


def show_code(*functions) -> CodeView:
    """The lines of ``functions`` that carry the maths, to end a notebook cell with.

    The docstring, argument annotations and input checks are left out (they are one
    click away, in the linked file): what remains is the signature and the formula lines,
    with their comments. Input checks are statements that call a ``check_*`` or
    ``_check*`` helper and ``if ...: raise ...`` blocks, at any depth.
    """
    if not functions:
        raise ValueError("show_code needs at least one function")
    views = [_core_view(fn) for fn in functions]
    return CodeView(code="\n\n".join(v.code for v in views), sources=tuple(s for v in views for s in v.sources))


def _core_view(fn) -> CodeView:
    fn = inspect.unwrap(fn)
    lines, first = inspect.getsourcelines(fn)
    source = textwrap.dedent("".join(lines))
    (node,) = ast.parse(source).body
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise TypeError(f"show_code takes functions, got {type(fn).__name__}")
    source_lines = source.splitlines()
    body = node.body
    hidden = _check_lines(body[1:] if _is_docstring(body[0]) else body, source_lines)
    if _is_docstring(body[0]):
        hidden.update(range(body[0].lineno, body[0].end_lineno + 1))
    kept = [line for n, line in enumerate(source_lines[body[0].lineno - 1:], start=body[0].lineno)
            if n not in hidden]  # fmt: skip
    while kept and not kept[0].strip():
        kept.pop(0)
    code = "\n".join([_signature(node)] + kept)
    module = inspect.getmodule(fn)
    name = f"{module.__name__.rsplit('.', 1)[-1]}.{fn.__qualname__}" if module else fn.__qualname__
    return CodeView(code=code, sources=((name, _repo_path(inspect.getsourcefile(fn))),))


def _check_lines(stmts: list[ast.stmt], source_lines: list[str]) -> set[int]:
    """1-based line numbers of the input checks among ``stmts`` and in their nested blocks.

    An ``else:`` whose whole block is checks is hidden with its block.
    """
    hidden: set[int] = set()
    for stmt in stmts:
        if _is_check(stmt):
            hidden.update(range(stmt.lineno, stmt.end_lineno + 1))
            continue
        for field in ("body", "orelse", "finalbody"):
            block = getattr(stmt, field, None)
            if not block or not isinstance(block, list):
                continue
            inner = _check_lines(block, source_lines)
            hidden |= inner
            block_lines = {n for s in block for n in range(s.lineno, s.end_lineno + 1)}
            if field == "orelse" and block_lines <= inner:
                header = block[0].lineno - 1  # the "else:" line
                if source_lines[header - 1].strip() == "else:":
                    hidden.add(header)
    return hidden


def _signature(node: ast.FunctionDef) -> str:
    """``def name(a, b, *, c=1):`` without annotations, wrapped at 100 characters."""
    args = node.args
    plain = ast.arguments(
        posonlyargs=[ast.arg(a.arg) for a in args.posonlyargs], args=[ast.arg(a.arg) for a in args.args],
        vararg=ast.arg(args.vararg.arg) if args.vararg else None, kwonlyargs=[ast.arg(a.arg) for a in args.kwonlyargs],
        kw_defaults=args.kw_defaults, kwarg=ast.arg(args.kwarg.arg) if args.kwarg else None, defaults=args.defaults,
    )  # fmt: skip
    text = f"def {node.name}({ast.unparse(plain)}):"
    return "\n".join(textwrap.wrap(text, width=100, subsequent_indent=" " * (len(node.name) + 5),
                                   break_long_words=False, break_on_hyphens=False))  # fmt: skip


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _is_check(stmt: ast.stmt) -> bool:
    """An input check: ``check_x(...)``, ``y = check_x(...)``, or ``if ...: raise ...``."""
    if isinstance(stmt, ast.If) and not stmt.orelse and all(isinstance(s, ast.Raise) for s in stmt.body):
        return True
    value = stmt.value if isinstance(stmt, (ast.Expr, ast.Assign)) else None
    if isinstance(value, ast.Call):
        func = value.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name.startswith(("check_", "_check"))
    return False


def _repo_path(file: str | None) -> str:
    """``course_ddpm/<module>.py`` for a file of this package, else the file name."""
    path = Path(file or "?").resolve()
    package = Path(__file__).resolve().parent
    try:
        return str(Path(package.name) / path.relative_to(package))
    except ValueError:
        return path.name

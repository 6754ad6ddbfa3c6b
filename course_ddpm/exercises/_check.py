"""The checker every exercise shares: run the student's function, compare, name the mistake.

An :class:`Exercise` holds a reference (a function with the student's signature that calls the
package), a few input cases (random and edge cases), and a catalogue of :class:`Mistake` s:
wrong versions of the function, each with the hint that names it. :meth:`Exercise.check`
calls the student's function on every case and compares its output with the reference's.
On the first case where they differ it runs every catalogued mistake on the same inputs;
if the student's output equals one of them, the message is that mistake's hint. Otherwise it
says what is wrong in general terms (type, shape, dtype, NaN, or the largest difference).

A check never raises on a wrong answer, and never shows a traceback from inside the checker:
an exception raised by the student's code is reported as one line that names the line of
the student's code where it happened. ``raise NotImplementedError`` (the stub of the student
notebooks) is reported as "not done yet".
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

PASS, FAIL, TODO = "✓", "✗", "…"
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


@dataclass(frozen=True)
class CheckResult:
    """What a check found: ``passed`` and the one-line ``message`` it printed."""

    passed: bool
    message: str

    def _ipython_display_(self) -> None:
        """Show nothing as a cell's value: the check has printed its message already."""


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer: ``fn`` has the student's signature and makes the mistake ``hint`` names."""

    hint: str
    fn: Callable[..., Any]


@dataclass(frozen=True)
class Case:
    """One set of inputs: ``args`` for the function, and a description for messages."""

    description: str
    args: tuple


@dataclass(frozen=True, eq=False)
class Exercise:
    """One exercise: the name of the student's function, its reference and its checks.

    Attributes:
        name: the student's function, e.g. ``"my_q_sample"``.
        reference: the package's answer, with the student's signature.
        reference_name: where the reference lives, for messages (``"course_ddpm.forward.q_sample"``).
        cases: builds fresh inputs (called once per function run, so in-place changes do no harm).
        mistakes: the catalogue.
        run: how to get an output from a function and a case's args; default ``fn(*args)``.
        output_names: names of the outputs when the function returns a tuple.
        rtol, atol: tolerances of the comparison.
    """

    name: str
    reference: Callable[..., Any]
    reference_name: str
    cases: Callable[[], Sequence[Case]]
    mistakes: tuple[Mistake, ...]
    run: Callable[[Callable[..., Any], tuple], Any] | None = None
    output_names: tuple[str, ...] = ()
    rtol: float = 1e-5
    atol: float = 1e-7

    def _output(self, fn: Callable[..., Any], args: tuple) -> Any:
        return self.run(fn, args) if self.run is not None else fn(*args)

    def check(self, fn: Callable[..., Any], verbose: bool = True) -> CheckResult:
        """Check ``fn`` against the reference on every case; print and return the result."""
        result = self._check(fn)
        if verbose:
            print(result.message)
        return result

    def _check(self, fn: Callable[..., Any]) -> CheckResult:
        if not callable(fn):
            return self._fail(f"expected your function {self.name}, got {type(fn).__name__}")
        cases = self.cases()
        for index, case in enumerate(cases):
            try:
                got = self._output(fn, case.args)
            except NotImplementedError:
                return CheckResult(False, f"{TODO} {self.name}: not done yet (replace `raise NotImplementedError()`"
                                          " with your code, then run this cell again)")
            except Exception as error:  # noqa: BLE001 - reported to the student, never re-raised
                return self._fail(f"your function raised {_describe(error)} on {case.description}")
            expected = self._output(self.reference, self.cases()[index].args)
            problem = compare(got, expected, self.rtol, self.atol, self.output_names)
            if problem is None:
                continue
            for mistake in self.mistakes:
                try:
                    wrong = self._output(mistake.fn, self.cases()[index].args)
                except Exception:  # noqa: BLE001 - a mistake that cannot run on this case does not match
                    continue
                if compare(got, wrong, self.rtol, self.atol, self.output_names, equal_nan=True) is None:
                    return self._fail(f"{mistake.hint} (seen on {case.description})")
            return self._fail(f"on {case.description}: {problem}")
        names = ", ".join(case.description for case in cases)
        message = f"{PASS} {self.name}: agrees with {self.reference_name} on {len(cases)} cases ({names})"
        return CheckResult(True, message)

    def _fail(self, message: str) -> CheckResult:
        return CheckResult(False, f"{FAIL} {self.name}: {message}")


def flat_parameters(module: torch.nn.Module) -> torch.Tensor:
    """All of a module's parameters as one detached vector, for comparing weights after an update."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard normal inputs of a case, from their own seeded generator (the global stream is left alone)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def compare(
    got: Any, expected: Any, rtol: float, atol: float, names: Sequence[str] = (), equal_nan: bool = False
) -> str | None:
    """None if ``got`` equals ``expected`` (tensors to the tolerances), else what differs, in words."""
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            kind = f"a {type(got).__name__} of length {len(got)}" if isinstance(got, (tuple, list)) else _kind(got)
            return f"it should return {len(expected)} values ({', '.join(names) or 'a tuple'}), got {kind}"
        for k, (g, e) in enumerate(zip(got, expected)):
            problem = compare(g, e, rtol, atol, (), equal_nan)
            if problem is not None:
                return f"{names[k] if k < len(names) else f'output {k + 1}'}: {problem}"
        return None
    if isinstance(expected, torch.Tensor):
        return _compare_tensors(got, expected, rtol, atol, equal_nan)
    if expected is None or isinstance(expected, (bool, int)):
        if isinstance(got, torch.Tensor) and got.numel() == 1 and not got.is_floating_point():
            got = int(got)
        return None if type(got) is type(expected) and got == expected else f"expected {expected!r}, got {_short(got)}"
    if isinstance(expected, float):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = float(got)
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return f"expected a number, got {_kind(got)}"
        if abs(got - expected) <= atol + rtol * abs(expected):
            return None
        return f"expected {expected:.6g}, got {got:.6g}"
    raise TypeError(f"cannot compare outputs of type {type(expected).__name__}")  # a bug in an exercise


def _compare_tensors(got: Any, expected: torch.Tensor, rtol: float, atol: float, equal_nan: bool) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"expected a tensor of shape {tuple(expected.shape)}, got {_kind(got)}"
    if got.shape != expected.shape:
        try:
            shape = torch.broadcast_shapes(got.shape, expected.shape)
        except RuntimeError:
            shape = None
        # a (B, 1) variance given as (B, D) with equal entries is fine; anything else is a shape error
        if shape is None or shape != got.shape or got.numel() != max(got.numel(), expected.numel()):
            return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        expected = expected.expand(shape)
    if got.dtype != expected.dtype:
        return (f"dtype {got.dtype}, expected {expected.dtype} (the inputs' dtype; a new tensor from torch.tensor, "
                "torch.zeros, ... needs dtype= and device= of the inputs)")
    if got.is_floating_point() and not equal_nan and not bool(torch.isfinite(got).all()):
        bad = int((~torch.isfinite(got)).sum())
        return f"{bad} of {got.numel()} entries are NaN or infinite (a division by zero, a log or sqrt of a negative?)"
    if not got.is_floating_point():
        return None if torch.equal(got, expected) else "values differ from the reference"
    if torch.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=equal_nan):
        return None
    diff = (got - expected).abs()
    where = tuple(int(i) for i in torch.unravel_index(diff.nan_to_num(nan=float("inf")).argmax(), diff.shape))
    return (f"values differ from the reference: at index {where} you return {got[where].item():.8g}, "
            f"the reference {expected[where].item():.8g}")


def _kind(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return "None (did you forget `return`?)" if x is None else f"a {type(x).__name__}"


def _short(x: Any) -> str:
    return repr(x) if isinstance(x, (int, float, bool)) else _kind(x)


def _describe(error: BaseException) -> str:
    """``ValueError: message (your line 3: `x = ...`)``: the exception and the student's line it came from."""
    text = f"{type(error).__name__}: {error}".strip().splitlines()[0][:300]
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not _is_library(f.filename)]
    if frames:
        frame = frames[-1]
        where = f"line {frame.lineno}" + (f": `{frame.line.strip()}`" if frame.line else "")
        text += f" (in {frame.name}, {where})"
    return text


def _is_library(filename: str) -> bool:
    path = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    return path.startswith(_PACKAGE_DIR) or "site-packages" in path or path.startswith(sys.prefix)


def yours_if_correct(fn: Callable[..., Any], check: Callable[..., CheckResult]) -> Callable[..., Any]:
    """``fn`` if it passes ``check`` (an ``exercises.check_...``), else that exercise's reference.

    For the cells that *use* a student's function (notebook 07 trains and samples with them): a
    student who has not done the exercise, or whose answer is still wrong, runs on with the
    package's version. Prints which one is used.
    """
    exercise = getattr(check, "__self__", None)
    if not isinstance(exercise, Exercise):
        raise TypeError(f"check must be one of the exercises' check functions, got {check!r}")
    if exercise._check(fn).passed:
        print(f"using your {exercise.name} (its check passed)")
        return fn
    print(f"using {exercise.reference_name}: {exercise.name} has not passed its check yet")
    return exercise.reference

"""Shared test setup: a small CPU thread count, and MNIST for the tests that need it.

Tests that need MNIST either take the session fixture ``mnist_root`` (the prepared data
folder) or carry ``@pytest.mark.mnist``; both are skipped, with the reason, when MNIST
is not on disk. Tests never download: run ``python -m course_ddpm.data`` (``make test``
does) or set ``COURSE_DDPM_DATA``. With ``COURSE_DDPM_REQUIRE_MNIST=1`` (CI) a missing
MNIST fails these tests instead of skipping them.

Tests of the shipped MNIST classifier take the fixture ``shipped_classifier``. Other
test-only dependencies (diffusers, ...) follow the same rule: a test calls
:func:`require_or_skip` when one is missing, which skips it, or with
``COURSE_DDPM_REQUIRE_TEST_DEPS=1`` (CI) fails it.

``COURSE_DDPM_TEST_THREADS`` (default 2) sets torch's CPU threads; modules of many tiny
ops take the ``one_thread`` fixture instead of setting threads at import.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import NoReturn

import matplotlib

matplotlib.use("Agg")  # no window from any test; before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("COURSE_DDPM_TEST_THREADS", "2")))


@functools.cache
def _prepared_mnist() -> tuple[Path | None, str]:
    """(data folder, "") if MNIST is usable offline, else (None, why not). Computed once."""
    from course_ddpm.data import MNISTUnavailableError, prepare_mnist

    try:
        return prepare_mnist(download=False), ""
    except MNISTUnavailableError as err:
        return None, str(err)


def _require_mnist() -> Path:
    root, why = _prepared_mnist()
    if root is None:
        message = f"MNIST is not available offline.\n{why}"
        if os.environ.get("COURSE_DDPM_REQUIRE_MNIST") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return root


def require_or_skip(reason: str) -> NoReturn:
    """Skip the calling test (or module, at import) for ``reason``; fail it instead in CI.

    With ``COURSE_DDPM_REQUIRE_TEST_DEPS=1`` a missing test dependency is a failure, so a
    comparison that CI is meant to run cannot silently stop running.
    """
    if os.environ.get("COURSE_DDPM_REQUIRE_TEST_DEPS") == "1":
        pytest.fail(f"{reason} (COURSE_DDPM_REQUIRE_TEST_DEPS=1)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that takes the fixture is an MNIST test, so `-m "not mnist"` leaves it out.
    for item in items:
        if "mnist_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mnist)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("mnist") is not None:
        _require_mnist()


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The prepared MNIST folder (holds MNIST/raw/); pass it as ``root=`` to course_ddpm.data."""
    return _require_mnist()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of many tiny ops, where threads only add overhead
    (10x on a busy 2-core box); the previous count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shipped_classifier() -> None:
    """For tests of the shipped MNIST classifier: skipped without its weights (failed in CI)."""
    from course_ddpm.pretrained import list_pretrained

    if "classifier" not in list_pretrained():
        require_or_skip(
            "the MNIST classifier's weights are not shipped (course_ddpm/weights/mnist_classifier.*); "
            "retrain them with scripts/train_classifier.sh"
        )



def _fail_show(*args, **kwargs):
    raise AssertionError("a course_ddpm figure function must not call plt.show(): it returns the figure")


@pytest.fixture
def figures_not_shown(monkeypatch):
    """plt.show() fails the test; every figure is closed afterwards."""
    monkeypatch.setattr(plt, "show", _fail_show)
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def schedules():
    """A linear and a cosine schedule, for figure tests."""
    from course_ddpm.schedules import cosine_schedule, linear_schedule

    return {"linear": linear_schedule(1000), "cosine": cosine_schedule(100)}

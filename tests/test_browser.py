"""The course in a real browser: every notebook run in JupyterLab, driven by headless Chromium.

For each ``notebooks/*.ipynb`` the test starts ``jupyter lab`` the way ``make lab`` does (on a
temporary copy of the notebooks, outputs stripped), opens the notebook in Chromium, runs
Run All Cells and checks that every code cell ran, none shows an error, and every image
output was rendered (loaded, non-zero size). On the forward-noising notebook it then moves
the t slider with the keyboard and the mouse, switches schedule, and checks that the picture
and the read-outs follow: the read-outs must equal :func:`course_ddpm.widgets.readouts`
computed here for the t the slider shows.

Screenshots of every notebook (full page) and of the widget at each step, the server log
and the browser console are saved in ``artifacts/browser/`` (``$COURSE_DDPM_BROWSER_ARTIFACTS``
overrides it); the path is printed at the end of the module.

Needs Debian's Chromium (``apt-get install chromium``; ``$COURSE_DDPM_CHROMIUM`` names another
binary) and Playwright for Python; without them the tests are skipped with the reason, unless
``COURSE_DDPM_REQUIRE_BROWSER=1`` (CI), which makes that a failure. Playwright never downloads
a browser here. ``$COURSE_DDPM_BROWSER_TIMEOUT`` (default 780) bounds one notebook's run, in s.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from browser_helpers import LabBrowser, LabServer, NotebookRun, copy_notebooks, find_chromium, image_bytes, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
ARTIFACTS = Path(os.environ.get("COURSE_DDPM_BROWSER_ARTIFACTS", ROOT / "artifacts" / "browser")).resolve()
# Bounds one notebook's Run All Cells; under `make test`'s 900 s per test, so that a hang fails
# here, with the cell it hangs in, rather than in pytest-timeout.
RUN_TIMEOUT = float(os.environ.get("COURSE_DDPM_BROWSER_TIMEOUT", "780"))
FORWARD_NOISING = "02_forward_noising.ipynb"


def _notebook_params() -> list:
    """One parameter per notebook; those that mention MNIST are marked ``mnist`` (skipped without it)."""
    params = []
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        marks = [pytest.mark.mnist] if "mnist" in path.read_text(encoding="utf-8").lower() else []
        params.append(pytest.param(path.name, marks=marks, id=path.name))
    return params


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("COURSE_DDPM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (COURSE_DDPM_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(reason)


class Lab:
    """One JupyterLab server and one browser for the module; each notebook is run at most once."""

    def __init__(self, browser: LabBrowser, report) -> None:
        self.browser = browser
        self.report = report  # writes a line to the terminal, even under output capture
        self.runs: dict[str, NotebookRun] = {}

    def run(self, name: str) -> NotebookRun:
        if name not in self.runs:
            run = self.browser.run_notebook(name, timeout=RUN_TIMEOUT)
            self.report(f"browser: {name} ran in {run.seconds:.0f} s (slowest {run.slowest()}); "
                        f"screenshot {run.screenshot}")
            self.runs[name] = run
        return self.runs[name]

    def close(self, name: str) -> None:
        run = self.runs.get(name)
        if run is not None and run.page is not None:
            LabBrowser.close_notebook(run.page)
            run.page = None


@pytest.fixture(scope="module")
def lab(tmp_path_factory, pytestconfig):
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        _skip_or_fail(f"Playwright for Python is not installed ({err}); pip install playwright")
    chromium = find_chromium()
    if chromium is None:
        _skip_or_fail("Chromium not found: install it (Debian: apt-get install chromium) "
                      "or set COURSE_DDPM_CHROMIUM to its path")

    terminal = pytestconfig.pluginmanager.getplugin("terminalreporter")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def report(line: str) -> None:
        """A line in pytest's own output (the CI log), past output capture."""
        if terminal is None:
            return
        if capture is None:
            terminal.write_line(line)
            return
        with capture.global_and_fixture_disabled():
            terminal.ensure_newline()
            terminal.write_line(line)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in [*ARTIFACTS.glob("*.png"), *ARTIFACTS.glob("*.log")]:  # last run's files, nothing else
        old.unlink()
    tmp = tmp_path_factory.mktemp("browser")
    copy_notebooks(NOTEBOOK_DIR, tmp / "notebooks")
    start = time.monotonic()
    server = LabServer(tmp / "notebooks", tmp / "jupyter-home")
    with ExitStack() as stack:
        stack.callback(lambda: report(f"browser tests: {time.monotonic() - start:.0f} s in all; "
                                      f"screenshots and logs in {ARTIFACTS}"))
        stack.callback(lambda: server.log_path.exists() and shutil.copy(server.log_path, ARTIFACTS))
        stack.enter_context(server)
        browser = stack.enter_context(LabBrowser(server, chromium, ARTIFACTS))
        lab = Lab(browser, report)
        stack.callback(lambda: [lab.close(name) for name in list(lab.runs)])
        yield lab


def _check_run(run: NotebookRun) -> None:
    where = f"{run.name} (screenshot: {run.screenshot}; server log and console in {ARTIFACTS})"
    assert run.finished, (f"{where}: Run All Cells did not finish within {RUN_TIMEOUT:.0f} s "
                          f"(COURSE_DDPM_BROWSER_TIMEOUT); still running {run.running()}; slowest so far: {run.slowest()}")
    assert run.kernel_status == "idle", f"{where}: kernel is {run.kernel_status!r} after the run, not idle"
    errors = run.errors()
    assert not errors, f"{where}: cells raised errors:\n" + "\n\n".join(errors)
    assert not run.unexecuted(), f"{where}: code cells {run.unexecuted()} were not executed"
    broken = [i for i in run.images if not (i["complete"] and i["naturalWidth"] > 0 and i["naturalHeight"] > 0
                                            and i["width"] > 0 and i["height"] > 0)]
    assert not broken, f"{where}: images not rendered: {broken}"
    shown = sum(1 for i in run.images if not i["widget"])
    assert shown >= run.image_outputs(), \
        f"{where}: the notebook has {run.image_outputs()} image outputs but the page shows {shown} images"
    assert run.widget_errors == 0, f"{where}: {run.widget_errors} widgets failed to display"


@pytest.mark.parametrize("name", _notebook_params())
def test_notebook_runs_in_jupyterlab(lab, name):
    try:
        _check_run(lab.run(name))
    finally:
        if name != FORWARD_NOISING:  # its page stays open for the slider test
            lab.close(name)


# --- the forward-noising widget ----------------------------------------------------------------

SELECTORS = {
    "t": ".course-ddpm-t .widget-readout",  # the slider's own label: the t the browser holds
    "caption": ".course-ddpm-caption",
    "sqrt_alpha_bar": ".course-ddpm-sqrt-alpha-bar .course-ddpm-value",
    "snr": ".course-ddpm-snr .course-ddpm-value",
    "kl_per_pixel": ".course-ddpm-kl .course-ddpm-value",
    "image_src": "img.course-ddpm-image",
}
HANDLE = ".course-ddpm-t .noUi-handle"
DROPDOWN = ".course-ddpm-schedule select"
IMAGE = "img.course-ddpm-image"


def _schedule_from_label(label: str):
    """The schedule a drop-down label such as 'linear T=300 rescaled' names (the notebook's naming)."""
    from course_ddpm.schedules import make_schedule

    match = re.fullmatch(r"(linear|cosine) T=(\d+)( rescaled)?", label)
    assert match, f"cannot tell which schedule the drop-down label {label!r} is"
    return make_schedule(match[1], int(match[2]), rescale=bool(match[3]), warn=False)


def _widget_state(page) -> dict:
    state = {}
    for key, selector in SELECTORS.items():
        loc = page.locator(selector).first
        state[key] = loc.get_attribute("src") if key == "image_src" else loc.inner_text()
    state["schedule"] = page.locator(DROPDOWN).input_value()
    return state


def _settle(page, before: dict, timeout: float = 20.0) -> dict:
    """Wait (bounded) until the widget differs from ``before`` and has stopped changing."""
    last = {}

    def changed_and_stable():
        nonlocal last
        now = _widget_state(page)
        stable = now == last and now != before
        last = now
        return stable

    wait_until(changed_and_stable, timeout, interval=0.5)
    return last


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64) / 255


def _snapshot(page, state: dict, label: str) -> dict:
    """The state plus the image's pixels: the PNG behind <img> and what Chromium painted."""
    state = dict(state)
    state["png"] = image_bytes(page, IMAGE)
    painted = page.locator(IMAGE).screenshot()
    (ARTIFACTS / f"02_forward_noising_widget_{label}.png").write_bytes(
        page.locator(".course-ddpm-forward-noising").screenshot())
    state["painted"] = _pixels(painted)
    return state


def _check_readouts(state: dict, x0: torch.Tensor) -> int:
    """Assert the read-outs shown equal the package's for the shown schedule and t; return t."""
    from course_ddpm.widgets import readouts

    t = int(state["t"])
    expected = readouts(_schedule_from_label(state["schedule"]), x0, t)
    assert f"code t = {t}" in state["caption"], f"caption {state['caption']!r} is not about the slider's t = {t}"
    for key in ("sqrt_alpha_bar", "snr", "kl_per_pixel"):
        shown = float(state[key])  # printed with 6 significant digits
        assert shown == pytest.approx(expected[key], rel=1e-5), \
            f"{state['schedule']}, t = {t}: {key} shows {shown}, the package computes {expected[key]:.6g}"
    return t


def _digit_correlation(png: bytes, x0: torch.Tensor) -> tuple[float, float]:
    """(correlation, mean |difference|) between the shown image, shrunk to 28x28, and the digit's pixels."""
    shown = _pixels(png)
    scale = shown.shape[0] // x0.shape[-2]
    shown = shown[::scale, ::scale]  # nearest-neighbour enlargement undone: (28, 28)
    digit = ((x0[0].double() + 1) / 2).numpy()  # [-1, 1] -> [0, 1]
    assert shown.shape == digit.shape, (shown.shape, digit.shape)
    return float(np.corrcoef(shown.ravel(), digit.ravel())[0, 1]), float(np.abs(shown - digit).mean())


@pytest.mark.mnist
def test_forward_noising_slider_moves_image_and_readouts(lab):
    if not (NOTEBOOK_DIR / FORWARD_NOISING).exists():
        pytest.skip(f"no notebooks/{FORWARD_NOISING}")
    from course_ddpm.data import load_mnist

    run = lab.run(FORWARD_NOISING)
    _check_run(run)
    page = run.page
    x0 = load_mnist(train=False)[0][0]  # (1, 28, 28): the notebook's digit, x_test[0]
    handle = page.locator(HANDLE)
    handle.scroll_into_view_if_needed()
    start = _widget_state(page)
    T = int(float(handle.get_attribute("aria-valuemax"))) + 1

    # Small t: keyboard Home on the focused slider handle.
    handle.focus()
    handle.press("Home")
    small = _snapshot(page, _settle(page, start), "t_small")
    assert int(small["t"]) == 0, f"Home on the slider handle left it at t = {small['t']}, not 0"
    _check_readouts(small, x0)

    # Middle: drag the handle with the mouse to ~40 % of the track.
    track = page.locator(".course-ddpm-t .noUi-base").bounding_box()
    grip = handle.bounding_box()
    page.mouse.move(grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + 0.4 * track["width"], grip["y"] + grip["height"] / 2, steps=8)
    page.mouse.up()
    middle = _snapshot(page, _settle(page, small), "t_middle")
    t_middle = _check_readouts(middle, x0)
    assert 0 < t_middle < T - 1, f"dragging to 40 % of the track gave t = {t_middle}"

    # Large t: keyboard End.
    handle.focus()
    handle.press("End")
    large = _snapshot(page, _settle(page, middle), "t_large")
    assert int(large["t"]) == T - 1, f"End on the slider handle left it at t = {large['t']}, not {T - 1}"
    _check_readouts(large, x0)

    # The picture changed, both behind <img> and as painted, and went from the digit to noise.
    for a, b in ((small, middle), (middle, large), (small, large)):
        assert a["png"] != b["png"], f"image bytes did not change between t = {a['t']} and t = {b['t']}"
        assert np.abs(a["painted"] - b["painted"]).mean() > 0.02, \
            f"painted image did not change between t = {a['t']} and t = {b['t']}"
    (r_small, diff_small), (r_middle, _), (r_large, _) = (_digit_correlation(s["png"], x0) for s in (small, middle, large))
    assert diff_small < 0.02 and r_small > 0.99, f"at t = 0 the image should be the digit: r = {r_small}, |diff| = {diff_small}"
    assert r_small > r_middle > r_large, f"correlation with the digit should fall with t: {r_small}, {r_middle}, {r_large}"
    assert abs(r_large) < 0.2, f"at t = T-1 the image should be noise, its correlation with the digit is {r_large}"

    # Another schedule with fewer steps: the slider's range shrinks and t is clamped to its end.
    dropdown = page.locator(DROPDOWN)
    options = dropdown.locator("option").evaluate_all("els => els.map(e => e.value)")
    shorter = [o for o in options if _schedule_from_label(o).T < T]
    if shorter:
        dropdown.select_option(shorter[0])
        switched = _snapshot(page, _settle(page, large), "schedule_switched")
        T_short = _schedule_from_label(shorter[0]).T
        assert int(float(handle.get_attribute("aria-valuemax"))) == T_short - 1, f"slider range not set to {shorter[0]}"
        assert _check_readouts(switched, x0) == T_short - 1
        assert switched["png"] != large["png"]

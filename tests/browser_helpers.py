"""Helpers for tests/test_browser.py: a private JupyterLab server and headless Chromium.

:class:`LabServer` starts ``jupyter lab`` from the tests' own environment (the command
``make lab LAB_DIR=notebooks`` runs, ``$(VENV)/bin/jupyter lab notebooks/``) on a free loopback port with a
random token, and with every Jupyter/IPython folder (config, data, runtime, settings,
workspaces) in a temporary directory, so the user's settings are neither read nor changed.
It serves a *copy* of the notebooks with their stored outputs removed (:func:`copy_notebooks`):
the repository's notebooks are never modified, and every output the browser shows was
produced in this run.

:class:`LabBrowser` drives Debian's Chromium through Playwright (never a downloaded
browser). JupyterLab is started with ``--LabApp.expose_app_in_browser=True`` so that the
page has ``window.jupyterapp``; cells are run with the command ``notebook:run-all-cells``
(what Run > Run All Cells does), and outputs are read from the notebook's model, where an
exception is an output of type ``error`` (in the page it looks like a stderr stream).

Everything started here is stopped in every case: the server is asked to shut down (which
also shuts down its kernels), then its process group gets SIGTERM and SIGKILL after
bounded waits, and kernels it leaves behind are killed by process id.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nbformat

#: Chromium flags. The background-networking ones keep Chromium from phoning home (the
#: connections are refused on machines without internet and slow start-up down).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

#: JupyterLab user settings written to the temporary settings folder: render every cell
#: (no windowing, so that every output is in the DOM and in the full-page screenshot),
#: record each cell's execution time, no news, no update check, no toasts over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none", "recordTiming": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def find_chromium() -> str | None:
    """Path of the system Chromium, or None. ``$COURSE_DDPM_CHROMIUM``, when set, is the only candidate."""
    chosen = os.environ.get("COURSE_DDPM_CHROMIUM")
    candidates = [chosen] if chosen else [shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium"]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def jupyter_command() -> list[str]:
    """``jupyter`` of the environment running the tests (``$(VENV)/bin/jupyter`` under make)."""
    script = Path(sys.executable).with_name("jupyter")
    return [str(script)] if script.exists() else [sys.executable, "-m", "jupyter"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_notebooks(src: Path, dst: Path) -> list[str]:
    """Copy the folder ``src`` to ``dst`` (new), with the notebooks' outputs removed.

    Returns the notebook file names (sorted). Files beside the notebooks come along, so
    that relative paths inside a notebook work as they do in ``notebooks/``.
    """
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    names = sorted(p.name for p in dst.glob("*.ipynb"))
    for name in names:
        nb = nbformat.read(dst / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
        nb.metadata.pop("widgets", None)  # stored widget state
        nbformat.write(nb, dst / name)
    return names


def _children(pid: int) -> list[int]:
    """Process ids of all descendants of ``pid`` (empty if psutil is missing)."""
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except Exception:  # psutil missing, or the process is gone
        return []


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LabServer:
    """``jupyter lab <root>`` on 127.0.0.1:<free port> with a random token; use as a context manager."""

    def __init__(self, root: Path, home: Path, start_timeout: float = 120.0) -> None:
        self.root = root
        self.home = home  # temporary folder for Jupyter's config/data/runtime/settings
        self.start_timeout = start_timeout
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None
        self._pids: set[int] = set()

    def command(self) -> list[str]:
        return [
            *jupyter_command(), "lab", str(self.root),
            "--no-browser",
            f"--IdentityProvider.token={self.token}",  # = --ServerApp.token, without its deprecation warning
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            "--ip=127.0.0.1",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),  # CI containers
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                         ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"),
                         ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces"), ("IPYTHONDIR", "ipython"),
                         ("MPLCONFIGDIR", "matplotlib")):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
            env[var] = str(self.home / sub)
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTER_CONFIG_PATH", None)
        for rel, settings in LAB_SETTINGS.items():
            path = self.home / "lab-settings" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings))
        return env

    def __enter__(self) -> LabServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(self.command(), cwd=self.root, env=self.environment(),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # own process group, killed as one
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=5)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"jupyter lab did not answer within {self.start_timeout:.0f} s:\n{self.log_tail()}")

    def api(self, method: str, path: str, timeout: float = 10) -> Any:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def remember_children(self) -> None:
        """Note the server's descendants (kernels run in their own sessions) to kill them later."""
        if self.proc is not None and self.proc.poll() is None:
            self._pids.update(_children(self.proc.pid))

    def stop(self, wait: float = 20.0) -> None:
        """Shut the server and its kernels down: REST shutdown, then SIGTERM, then SIGKILL."""
        if self.proc is None:
            return
        self.remember_children()
        if self.proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        for pid in self._pids:  # kernels the server left behind
            _kill(pid)
        self.proc = None


# --- JavaScript run in the page (JupyterLab 4 API via window.jupyterapp) ----------------------

JS_NOTEBOOK_READY = """(path) => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  if (!w || !w.context || !w.sessionContext || !w.content || w.context.path !== path) return false;
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  return w.context.isReady && w.sessionContext.isReady && !!kernel && kernel.status === 'idle';
}"""

JS_START_RUN_ALL = """() => {
  window.__courseRunAll = {done: false};
  window.jupyterapp.commands.execute('notebook:run-all-cells').then(
    (ok) => { window.__courseRunAll = {done: true, ok: ok}; },
    (err) => { window.__courseRunAll = {done: true, error: String(err)}; });
}"""

JS_KERNEL_STATUS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  return kernel ? kernel.status : 'none';
}"""

JS_CELLS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  const result = [];
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i).toJSON();
    if (cell.cell_type !== 'code') continue;
    const source = Array.isArray(cell.source) ? cell.source.join('') : cell.source;
    const timing = (cell.metadata && cell.metadata.execution) || {};
    const began = Date.parse(timing['iopub.execute_input']), ended = Date.parse(timing['shell.execute_reply']);
    result.push({index: i, source: source, execution_count: cell.execution_count,
                 seconds: (isNaN(began) || isNaN(ended)) ? null : (ended - began) / 1000,
                 outputs: (cell.outputs || []).map(o => ({
                   output_type: o.output_type, name: o.name || null, ename: o.ename || null,
                   evalue: o.evalue || null, traceback: o.traceback || null,
                   mimes: o.data ? Object.keys(o.data) : []}))});
  }
  return result;
}"""

JS_IMAGES = """() => Array.from(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output img')).map(img => {
  const box = img.getBoundingClientRect();
  const cell = img.closest('.jp-Cell');
  const cells = Array.from(cell ? cell.parentElement.children : []);
  return {complete: img.complete, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
          width: box.width, height: box.height, className: img.className,
          widget: !!img.closest('.jupyter-widgets'), cell: cells.indexOf(cell)};
})"""

JS_SHUTDOWN_KERNEL = """async () => {
  const w = window.jupyterapp.shell.currentWidget;
  if (w && w.sessionContext) { await w.sessionContext.shutdown(); }
}"""

JS_PREPARE_SCREENSHOT = """() => {
  window.jupyterapp.shell.collapseLeft();
  const el = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')
          || document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!el) return 0;
  el.scrollTop = 0;
  return el.scrollHeight;
}"""

JS_SCROLL_TOP = """() => {
  const el = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
  if (el) el.scrollTop = 0;
}"""

JS_IMAGE_BYTES = """async (selector) => {
  const img = document.querySelector(selector);
  if (!img || !img.src) return null;
  const buffer = await (await fetch(img.src)).arrayBuffer();
  let binary = '';
  const bytes = new Uint8Array(buffer);
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}"""


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


@dataclass
class NotebookRun:
    """What running one notebook in the browser gave."""

    name: str
    seconds: float
    finished: bool  # the run-all command returned within the time limit
    kernel_status: str
    cells: list[dict]  # code cells from the notebook model (see JS_CELLS)
    images: list[dict]  # rendered <img> elements in output areas (see JS_IMAGES)
    widget_errors: int  # "Error displaying widget" placeholders in the page
    screenshot: Path | None
    page: Any = field(repr=False, default=None)  # the Playwright page, still open

    def errors(self) -> list[str]:
        """One line per error output: cell number, exception and the traceback's last lines."""
        found = []
        for cell in self.cells:
            for out in cell["outputs"]:
                if out["output_type"] == "error":
                    tb = strip_ansi("\n".join(out["traceback"] or []))
                    found.append(f"cell {cell['index']}: {out['ename']}: {out['evalue']}\n"
                                 + "\n".join(tb.splitlines()[-8:]))
        return found

    def unexecuted(self) -> list[int]:
        """Indices of code cells (with code in them) that have no execution count."""
        return [c["index"] for c in self.cells if c["source"].strip() and c["execution_count"] is None]

    def slowest(self, n: int = 3) -> str:
        """The ``n`` slowest cells, e.g. 'cell 12: 41 s, cell 3: 5 s' (from JupyterLab's recorded timing)."""
        timed = sorted((c for c in self.cells if c.get("seconds") is not None), key=lambda c: -c["seconds"])
        return ", ".join(f"cell {c['index']}: {c['seconds']:.0f} s" for c in timed[:n]) or "no timing recorded"

    def running(self) -> str:
        """The first code cell that has not finished (what a timed-out run was busy with)."""
        for c in self.cells:
            if c["source"].strip() and c["execution_count"] is None:
                first = c["source"].strip().splitlines()[0]
                return f"cell {c['index']} ({first[:80]!r})"
        return "none"

    def image_outputs(self) -> int:
        """Number of outputs in the model that JupyterLab shows as an image (no richer HTML/widget in them)."""
        richer = {"text/html", "application/vnd.jupyter.widget-view+json"}
        return sum(1 for c in self.cells for o in c["outputs"]
                   if any(m.startswith("image/") for m in o["mimes"]) and not richer & set(o["mimes"]))


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns something truthy or ``timeout`` s pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class LabBrowser:
    """Headless Chromium (via Playwright) pointed at a :class:`LabServer`; use as a context manager."""

    def __init__(self, server: LabServer, chromium: str, artifacts: Path) -> None:
        self.server = server
        self.chromium = chromium
        self.artifacts = artifacts
        self.console_log = artifacts / "browser-console.log"
        self._playwright = None
        self._browser = None
        self._context = None
        self._workspace = 0

    def __enter__(self) -> LabBrowser:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.chromium, headless=True, args=list(CHROMIUM_ARGS), timeout=60_000)
            self._context = self._browser.new_context(viewport={"width": 1400, "height": 1000})
        except BaseException:
            self.__exit__()
            raise
        self.console_log.write_text("")
        return self

    def __exit__(self, *exc: object) -> None:
        for closer in (self._context, self._browser):
            if closer is not None:
                try:
                    closer.close()
                except Exception:
                    pass
        if self._playwright is not None:
            try:
                self._playwright.stop()
            except Exception:
                pass
        self._context = self._browser = self._playwright = None

    def _log(self, line: str) -> None:
        with open(self.console_log, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def open_notebook(self, name: str, timeout: float = 120.0):
        """A new page showing notebook ``name`` with its kernel started and idle."""
        self._workspace += 1
        page = self._context.new_page()
        page.set_default_timeout(60_000)
        page.on("console", lambda msg: self._log(f"[{name}] console.{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self._log(f"[{name}] page error: {err}"))
        url = (f"{self.server.url}/lab/workspaces/course-ddpm-test-{self._workspace}/tree/{name}"
               f"?reset&token={self.server.token}")
        page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
        page.wait_for_function(JS_NOTEBOOK_READY, arg=name, timeout=timeout * 1000, polling=250)
        return page

    def run_notebook(self, name: str, timeout: float) -> NotebookRun:
        """Open ``name``, Run All Cells, wait (at most ``timeout`` s) for the kernel to go idle,
        wait for the images to load, read the results and save a full-page screenshot."""
        page = self.open_notebook(name)
        start = time.monotonic()
        page.evaluate(JS_START_RUN_ALL)
        finished = True
        try:
            page.wait_for_function("() => window.__courseRunAll.done", timeout=timeout * 1000, polling=500)
        except Exception:  # playwright TimeoutError: report below instead of raising
            finished = False
        seconds = time.monotonic() - start
        status = wait_until(lambda: (s := page.evaluate(JS_KERNEL_STATUS)) in ("idle", "dead") and s,
                            30 if finished else 5) or "busy"
        wait_until(lambda: all(i["complete"] for i in page.evaluate(JS_IMAGES)), 30)
        cells = page.evaluate(JS_CELLS)
        images = page.evaluate(JS_IMAGES)
        widget_errors = page.get_by_text("Error displaying widget").count()
        self.server.remember_children()
        return NotebookRun(name=name, seconds=seconds, finished=finished, kernel_status=status, cells=cells,
                           images=images, widget_errors=widget_errors,
                           screenshot=self.screenshot(page, Path(name).stem), page=page)

    def screenshot(self, page, stem: str) -> Path | None:
        """Full-page PNG of the notebook: the viewport is made as tall as the notebook first."""
        path = self.artifacts / f"{stem}.png"
        try:
            height = int(page.evaluate(JS_PREPARE_SCREENSHOT))
            old = page.viewport_size
            page.set_viewport_size({"width": old["width"], "height": max(old["height"], min(height + 200, 30_000))})
            page.wait_for_timeout(500)
            page.evaluate(JS_SCROLL_TOP)
            page.screenshot(path=str(path), full_page=True, timeout=60_000)
            page.set_viewport_size(old)
            return path
        except Exception as err:
            self._log(f"[{stem}] screenshot failed: {err}")
            return None

    @staticmethod
    def close_notebook(page) -> None:
        """Shut the page's kernel down (frees its memory) and close the page."""
        try:
            page.evaluate(JS_SHUTDOWN_KERNEL)
        except Exception:
            pass
        try:
            page.close()
        except Exception:
            pass


def image_bytes(page, selector: str) -> bytes | None:
    """The bytes behind ``<img>`` ``selector`` (its blob: or data: URL), fetched in the page."""
    data = page.evaluate(JS_IMAGE_BYTES, selector)
    return None if data is None else base64.b64decode(data)

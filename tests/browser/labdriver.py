"""Driving JupyterLab in a real browser: a server on a free localhost port, a notebook run top
to bottom, and the widget panels of ``lowrank_es.notebook.controls`` moved and run.

Used by the browser tests only; Chromium comes from the system (``/usr/bin/chromium``) and
Playwright drives it, so nothing is downloaded at test time.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
ENABLE_HINT = "browser tests skipped: install Chromium (apt-get install chromium) to run them; .ci/run does"

# Chromium on a machine with no network and no display: no sandbox (CI runs as root), no GPU,
# and none of the background connections that the closed network would refuse.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]

KERNEL_IDLE = """() => { const nb = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const s = nb && nb.sessionContext && nb.sessionContext.session;
  return !!(s && s.kernel && s.kernel.status === 'idle'); }"""

ALL_CELLS_RAN = """() => { const nb = window.jupyterapp.shell.currentWidget;
  const s = nb && nb.sessionContext && nb.sessionContext.session;
  if (!s || !s.kernel || s.kernel.status !== 'idle' || !nb.content) return false;
  return nb.content.widgets.every(c => c.model.type !== 'code' || c.model.sharedModel.getSource().trim() === ''
                                       || c.model.executionCount !== null); }"""

ERROR_OUTPUTS = """() => { const nb = window.jupyterapp.shell.currentWidget; const out = [];
  nb.content.widgets.forEach((c, i) => { if (c.model.type !== 'code') return;
    const o = c.model.outputs; for (let j = 0; j < o.length; j++) { const x = o.get(j).toJSON();
      if (x.output_type === 'error') out.push(`cell ${i}: ${x.ename}: ${x.evalue}`); } });
  return out; }"""


def chromium_path() -> str | None:
    """The system Chromium, or None."""
    for path in (os.environ.get("LOWRANK_ES_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if path and Path(path).exists():
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``jupyter lab`` serving ``root`` on 127.0.0.1 with authentication off, for one test session."""

    def __init__(self, root: Path, log: Path, env: dict[str, str] | None = None):
        """``env``: variables added to this process's environment for the server and its kernels."""
        self.root, self.port = Path(root), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
               f"--port={self.port}", f"--ServerApp.root_dir={self.root}", "--IdentityProvider.token=",
               "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True", "--LabApp.expose_app_in_browser=True"]
        self._log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}; see {log}")
            try:
                urllib.request.urlopen(f"{self.url}/api/status", timeout=2).close()
                return
            except OSError:
                time.sleep(0.5)
        self.close()
        raise RuntimeError(f"jupyter lab did not answer on {self.url} within 120 s; see {log}")

    def kernel_cpu_seconds(self) -> float:
        """CPU seconds (user + system, threads and children included) used so far by the kernels
        this server runs: unlike wall time, the work a run does, whatever else loads the machine."""
        import psutil

        total = 0.0
        for proc in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if "ipykernel" in " ".join(proc.cmdline()):
                    t = proc.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:  # a kernel that ended meanwhile
                continue
        return total

    def shutdown_kernels(self) -> None:
        """Stop every kernel the server runs (each holds a JAX process)."""
        import json

        with urllib.request.urlopen(f"{self.url}/api/sessions", timeout=10) as r:
            sessions = json.load(r)
        for s in sessions:
            req = urllib.request.Request(f"{self.url}/api/sessions/{s['id']}", method="DELETE")
            urllib.request.urlopen(req, timeout=30).close()

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def open_notebook(page, server: LabServer, relpath: str, timeout_s: float = 180) -> None:
    """Open ``relpath`` (relative to the server root) alone in a reset workspace, so no other
    notebook is restored beside it, and wait for its kernel to be idle."""
    page.goto(f"{server.url}/lab/tree/{relpath}?reset")
    page.wait_for_function(KERNEL_IDLE, timeout=timeout_s * 1000)


def run_all(page, timeout_s: float = 600) -> None:
    """Run every cell and wait until each code cell has run and the kernel is idle."""
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_timeout(1000)
    page.wait_for_function(ALL_CELLS_RAN, timeout=timeout_s * 1000, polling=1000)


def error_outputs(page) -> list[str]:
    """``cell i: Name: message`` for every error output in the open notebook."""
    return page.evaluate(ERROR_OUTPUTS)


@dataclass
class Change:
    """One move of one control and what the panel printed after *Run*."""

    label: str
    value: str
    output: str
    seconds: float = 0.0  # from the click on *Run* until the kernel was idle again
    cpu_s: float | None = None  # the kernel's CPU time meanwhile
    run: int = 0  # which run of the panel it was (moves made together share one run)


def _controls(panel):
    """(label, kind, locator) of each control of a panel, in order."""
    out = []
    boxes = panel.locator(".widget-slider, .widget-dropdown, .widget-inline-hbox")
    for i in range(boxes.count()):
        box = boxes.nth(i)
        label = box.locator("label").first.inner_text().strip() if box.locator("label").count() else ""
        if box.locator(".noUi-handle").count():
            out.append((label, "slider", box))
        elif box.locator("select").count():
            out.append((label, "dropdown", box))
    return out


def control_text(raw: str) -> str:
    """A control's shown value as plain text: the browser returns a dropdown option of several
    words with non-breaking spaces, which a callback's printed value does not have."""
    return " ".join(raw.split())


def _value(kind: str, box) -> str:
    if kind == "slider":
        return control_text(box.locator(".widget-readout").inner_text())
    return control_text(box.locator("select").evaluate("s => s.options[s.selectedIndex].text"))


def press_run(page, panel, timeout_s: float = 300) -> str:
    """Click the panel's *Run* button and return the text its output area shows afterwards."""
    return timed_run(page, panel, timeout_s)[0]


WATCH_BUSY = """() => { window.__lowrankBusy = false;
  const s = window.jupyterapp.shell.currentWidget.sessionContext.session;
  if (!window.__lowrankWatched) { window.__lowrankWatched = true;
    s.kernel.statusChanged.connect((_, st) => { if (st === 'busy') window.__lowrankBusy = true; }); } }"""


def timed_run(page, panel, timeout_s: float = 300, meter=None) -> tuple[str, float, float | None]:
    """:func:`press_run`, the seconds from the click until the kernel was idle again, and how
    much ``meter()`` (e.g. :meth:`LabServer.kernel_cpu_seconds`) grew meanwhile (None without it)."""
    # let the messages of the control just moved settle, so the busy state watched for below is
    # the run's own
    page.wait_for_timeout(300)
    page.wait_for_function(KERNEL_IDLE, timeout=timeout_s * 1000, polling=100)
    page.evaluate(WATCH_BUSY)
    before = meter() if meter else None
    t0 = time.perf_counter()
    panel.locator("button", has_text="Run").first.click()
    try:  # the kernel must have started the run before "idle" means it finished
        page.wait_for_function("() => window.__lowrankBusy", timeout=10000, polling=100)
    except Exception as err:  # a run over before the first poll still counts
        if "Timeout" not in type(err).__name__:
            raise
    page.wait_for_timeout(500)
    page.wait_for_function(KERNEL_IDLE, timeout=timeout_s * 1000, polling=250)
    seconds = time.perf_counter() - t0
    used = meter() - before if meter else None
    return panel.locator(".widget-output").inner_text(), seconds, used


def move(page, panel, which: int, steps: int = 2) -> tuple[str, str]:
    """Move control ``which`` of ``panel`` by ``steps`` (slider: arrow keys; dropdown: the next
    options) and return (label, its new value as displayed)."""
    label, kind, box = _controls(panel)[which]
    if kind == "slider":
        box.locator(".noUi-handle").first.focus()
        key = "ArrowRight"
        before = _value(kind, box)
        for _ in range(steps):
            page.keyboard.press(key)
        if _value(kind, box) == before:  # at the maximum already: move the other way
            for _ in range(steps):
                page.keyboard.press("ArrowLeft")
    else:
        select = box.locator("select")
        n = select.evaluate("s => s.options.length")
        idx = select.evaluate("s => s.selectedIndex")
        select.select_option(index=(idx + 1) % n)
    return label, _value(kind, box)


def to_maximum(page, panel, which: int) -> tuple[str, str]:
    """Push slider ``which`` to its maximum (End key); returns (label, value)."""
    label, kind, box = _controls(panel)[which]
    if kind != "slider":
        raise ValueError(f"control {which} of the panel is a {kind}, not a slider")
    box.locator(".noUi-handle").first.focus()
    page.keyboard.press("End")
    return label, _value(kind, box)


def _numbers_after(label: str, text: str) -> list[str]:
    words = re.escape(label.strip().rstrip(":"))
    return re.findall(rf"{words}\s*[=:]?\s*(-?\d[\d,]*\.?\d*(?:e[-+]?\d+)?)", text)


def names_value(label: str, value: str, text: str) -> bool:
    """Whether ``text`` names ``label`` with ``value``: ``label value``, ``label = value`` or
    ``label: value``; numbers compare to 3 significant digits (``0.0501`` names ``0.05012``)."""
    try:
        target = float(value.replace(",", "").replace("−", "-"))
    except ValueError:
        return re.search(rf"{re.escape(label)}\s*[=:]?\s*{re.escape(value)}\b", text) is not None
    for found in _numbers_after(label, text):
        x = float(found.replace(",", "").rstrip("."))
        if x == target or abs(x - target) <= 5e-3 * max(abs(x), abs(target)):
            return True
    return False


def check_change(before: str, change: Change) -> None:
    """The panel's output must change with the control and name its new value."""
    assert change.output.strip(), f"moving {change.label!r} to {change.value} and pressing Run printed nothing"
    assert "Traceback" not in change.output, f"{change.label} = {change.value} raised:\n{change.output[-2000:]}"
    assert change.output != before, f"the output did not change when {change.label!r} moved to {change.value}"
    assert names_value(change.label, change.value, change.output), (
        f"the output does not name {change.label} = {change.value}:\n{change.output[-1000:]}")


def check_no_traceback(change: Change) -> None:
    """An unusable value must give the one-line error of ``controls``, not a traceback."""
    assert "Traceback" not in change.output and "File \"" not in change.output, (
        f"{change.label} = {change.value} gave a traceback:\n{change.output[-2000:]}")


def exercise_panel(page, panel, screenshot: Path | None = None, timeout_s: float = 300, meter=None) -> list[Change]:
    """Run the panel at its defaults, then move every control, run once, and check that the
    output changed and names each control's new value (a control the callback ignores leaves its
    old value in the output); then push a ``rank`` slider to its maximum and check the answer is
    the one-line error rather than a traceback. Returns the runs made, the first at the defaults
    (label ``defaults``), then one per control moved (all sharing the one run's output and
    times), each with its wall time (and the growth of ``meter()``, when given).

    One run for all the moves rather than one per move: each run recompiles the programs the
    new values need, and running every move alone doubled the browser tests' time."""
    before, seconds, cal = timed_run(page, panel, timeout_s, meter)
    changes = [Change("defaults", "", before, seconds, cal)]
    moved = [move(page, panel, which) for which in range(len(_controls(panel)))]
    if moved:
        output, seconds, cal = timed_run(page, panel, timeout_s, meter)
        for label, value in moved:
            change = Change(label, value, output, seconds, cal, run=1)
            check_change(before, change)
            changes.append(change)
    if screenshot is not None:
        panel.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshot))
    ranks = [i for i, (label, kind, _) in enumerate(_controls(panel)) if kind == "slider" and label == "rank"]
    for n, which in enumerate(ranks, start=2):  # past the largest valid rank: the one-line error, not a traceback
        label, value = to_maximum(page, panel, which)
        change = Change(label, value, *timed_run(page, panel, timeout_s, meter), run=n)
        check_no_traceback(change)
        changes.append(change)
    return changes

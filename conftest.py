"""Test-session plumbing shared by the unit tests, the browser tests and nbval.

* With ``-n`` (pytest-xdist) a notebook's browser test and its nbval cells stay on one worker, in
  that order, longest notebook first (by the last timing record).
* A notebook is computed once per session: its browser test's kernel records every experiment job
  it finishes (``lowrank_es.experiments.RECORD_JOBS``) and its nbval kernel, next on the same
  worker, replays them (``REPLAY_JOBS``), so nbval compares the outputs of that computation
  with the committed ones instead of repeating it. Without the browser tests nbval computes
  everything. Unit tests never see either variable.
* nbval cells tagged ``cpu-model-drift`` (outputs of chaotic float32 quick runs, whose last
  printed digits change with the x86-64 CPU model) compare their numbers within a tolerance
  (:func:`snap_numbers`); the rest of their text, and every other cell, is compared exactly.
* ``--timings-record PATH`` writes where the time went (per test file, per notebook under nbval, per
  notebook and widget panel in the browser, and the CPU seconds of each notebook's nbval
  kernel, which waiting for a core does not inflate) to a JSON file; ``make test`` writes
  ``figures/results/timings.json``. Growth shows in its diff.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import re
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def pytest_addoption(parser):
    parser.addoption("--timings-record", default=None, metavar="PATH",
                     help="write per-file, per-notebook and per-widget timings of this run to PATH (JSON)")


def _is_nbval(nodeid: str) -> bool:
    """Whether a test item is an nbval cell (its file is a notebook)."""
    return nodeid.split("::", 1)[0].endswith(".ipynb")


def _notebook_of(nodeid: str) -> str | None:
    """The notebook a test item exercises: an nbval cell's file, or a browser test's parameter."""
    file = nodeid.split("::", 1)[0]
    if file.endswith(".ipynb"):
        return Path(file).stem
    m = re.search(r"test_notebooks_in_browser\.py::\w+\[(\w+)\]", nodeid)
    return m.group(1) if m else None


def _previous_seconds() -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per notebook (browser + nbval) and per other test file in the last recorded run,
    to start the longest first."""
    path = ROOT / "figures" / "results" / "timings.json"
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}, {}
    notebooks: dict[str, float] = defaultdict(float)
    files: dict[str, float] = {}
    for file, v in rec.get("files", {}).items():
        if file.endswith(".ipynb"):
            notebooks[Path(file).stem] += v["seconds"]
        else:
            files[file] = v["seconds"]
    for nb, v in rec.get("browser", {}).items():
        notebooks[nb] += v.get("run_all_s", 0.0) + sum(v.get("widget_runs_s", {}).values())
    return notebooks, files


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Each notebook's browser test, then its nbval cells, longest notebook first, then the other
    test files, longest first: under xdist one notebook is one unit of work, so nbval reuses what
    the browser test compiled (through the persistent cache) instead of compiling it again beside
    it; and the last tests to start are the short ones, so neither worker idles long at the end."""
    seconds, file_seconds = _previous_seconds()
    rank = {nb: i for i, nb in enumerate(sorted({n for n in map(_notebook_of, (i.nodeid for i in items)) if n},
                                                 key=lambda n: (-seconds.get(n, float("inf")), n)))}

    def key(item):
        nb = _notebook_of(item.nodeid)
        if nb:
            return (0, rank[nb], 0 if "browser" in item.nodeid else 1)
        file = item.nodeid.split("::", 1)[0]
        return (1, -file_seconds.get(file, float("inf")), file)

    items[:] = sorted(items, key=key)  # stable: cells keep their order


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist: a notebook's browser test and its nbval cells form one unit of work,
    run in that order on one worker (nbval runs the cells in order in one kernel); every other
    test is a unit of its own."""
    from xdist.scheduler import LoadScopeScheduling

    class NotebookScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            nb = _notebook_of(nodeid)
            return f"notebook {nb}" if nb else nodeid

    return NotebookScheduling(config, log)


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


class _Record:
    """Collects test reports on the controlling process (xdist forwards the workers' reports)."""

    def __init__(self, path: Path):
        self.path, self.t0, self.load0 = path, time.time(), os.getloadavg()
        self.files: dict[str, dict] = defaultdict(lambda: {"seconds": 0.0, "tests": 0})
        self.outcomes: dict[str, int] = defaultdict(int)
        self.nbval_cells = 0
        self.browser: dict[str, dict] = {}
        self.nbval_cpu: dict[str, float] = {}

    def pytest_runtest_logreport(self, report) -> None:
        file = report.nodeid.split("::", 1)[0]
        entry = self.files[file]
        entry["seconds"] += report.duration
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            entry["tests"] += 1
            self.outcomes[report.outcome] += 1
            if file.endswith(".ipynb"):
                self.nbval_cells += 1
        for name, value in report.user_properties:
            if name == "browser_timing":
                self.browser[value["notebook"]] = value
            elif name == "nbval_kernel_cpu_s":  # cumulative: the notebook's last cell leaves the total
                self.nbval_cpu[file] = value

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        files = {k: {"seconds": round(v["seconds"], 1), "tests": v["tests"]} for k, v in sorted(self.files.items())}
        groups = defaultdict(float)
        for k, v in files.items():
            groups["nbval" if k.endswith(".ipynb") else "browser" if k.startswith("tests/browser") else "unit"] += v["seconds"]
        record = {
            "what": "make test: seconds per test file (setup + call + teardown, summed over tests, so with "
                    "xdist the groups add up to more than the wall time), per notebook under nbval, and per "
                    "notebook and widget run in the browser; budgets are checked as ratios to a calibration "
                    "program (tests/browser/budget.py)",
            "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.t0)),
            "wall_s": round(time.time() - self.t0, 1),
            "exit_status": int(exitstatus),
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "load_average_start": [round(x, 2) for x in self.load0],
                        "load_average_end": [round(x, 2) for x in os.getloadavg()]},
            "outcomes": dict(sorted(self.outcomes.items())),
            "nbval_cells": self.nbval_cells,
            "group_seconds": {k: round(v, 1) for k, v in sorted(groups.items())},
            "files": files,
            "browser": dict(sorted(self.browser.items())),
            # CPU seconds of each notebook's nbval kernel (wall seconds above include waiting for a core)
            "nbval_kernel_cpu_s": {k: round(v, 1) for k, v in sorted(self.nbval_cpu.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(record, indent=1) + "\n")


JOBS_DIR = pytest.StashKey[Path]()


def jobs_dir(config) -> Path:
    """This process's directory of recorded experiment jobs (browser kernels write, nbval reads)."""
    if JOBS_DIR not in config.stash:
        config.stash[JOBS_DIR] = Path(tempfile.mkdtemp(prefix="lowrank-es-jobs-"))
    return config.stash[JOBS_DIR]


@pytest.fixture(scope="session")
def recorded_jobs(pytestconfig) -> Path:
    """Where the browser tests' kernels record their experiment jobs (``RECORD_JOBS``)."""
    return jobs_dir(pytestconfig)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """An nbval kernel starts in its notebook's first cell's setup: only it gets ``REPLAY_JOBS``."""
    from lowrank_es.experiments import REPLAY_JOBS

    nbval = _is_nbval(item.nodeid)
    if nbval:
        os.environ[REPLAY_JOBS] = str(jobs_dir(item.config))
    try:
        yield
    finally:
        if nbval:
            os.environ.pop(REPLAY_JOBS, None)


def _nbval_kernel_cpu_seconds(item) -> float | None:
    """CPU seconds used so far by the kernel nbval runs ``item``'s notebook in (None if unknown)."""
    try:
        import psutil

        t = psutil.Process(item.parent.kernel.km.provisioner.process.pid).cpu_times()
        return t.user + t.system + t.children_user + t.children_system
    except Exception:  # nbval's internals or a kernel already gone: the record just lacks it
        return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """nbval cells report their kernel's CPU seconds so far (``--timings-record``)."""
    outcome = yield
    if call.when == "call" and _is_nbval(item.nodeid):
        cpu = _nbval_kernel_cpu_seconds(item)
        if cpu is not None:
            outcome.get_result().user_properties.append(("nbval_kernel_cpu_s", cpu))


def pytest_unconfigure(config):
    if JOBS_DIR in config.stash:
        shutil.rmtree(config.stash[JOBS_DIR], ignore_errors=True)


# ---------------------------------------------------------------------------
# nbval: cells whose printed numbers drift between CPU models
# ---------------------------------------------------------------------------

#: Cell tag for the outputs of chaotic float32 training: on one machine a seed gives the same
#: digits every run, but another x86-64 CPU model changes the last printed digits (README,
#: "Every notebook under nbval"). Seen between two CPU models: 8.1e-07 vs 8.8e-07 for a final
#: MSE, -1.040 vs -1.044 for a reward per step, 0.0019 vs 0.0035 for a two-seed half-width.
DRIFT_TAG = "cpu-model-drift"
DRIFT_RTOL, DRIFT_ATOL, DRIFT_FACTOR = 0.1, 0.02, 2.5
_NUMBER = re.compile(r"([-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)")  # one group: split keeps the numbers


def snap_numbers(test: str, ref: str, rtol: float = DRIFT_RTOL, atol: float = DRIFT_ATOL,
                 factor: float = DRIFT_FACTOR) -> str:
    """``test`` with each of its numbers replaced by ``ref``'s number in the same place where the
    two agree: within ``max(rtol * max(|a|, |b|), atol)``, or, printed with an exponent (a
    magnitude, such as a final MSE of 1e-7 and its spread), the same sign and within a factor
    ``factor``. ``test`` is unchanged unless the text between the numbers is identical; a
    number out of tolerance stays, so nbval reports it."""
    pieces, ref_pieces = _NUMBER.split(test), _NUMBER.split(ref)  # text, number, text, ..., text
    if pieces[::2] != ref_pieces[::2]:
        return test
    out = [pieces[0]]
    for a, b, rest in zip(pieces[1::2], ref_pieces[1::2], pieces[2::2]):
        x, y = float(a), float(b)
        if "e" in (a + b).lower():
            close = x == y or (x * y > 0 and max(abs(x), abs(y)) <= factor * min(abs(x), abs(y)))
        else:
            close = abs(x - y) <= max(rtol * max(abs(x), abs(y)), atol)
        out += [b if close else a, rest]
    return "".join(out)


def _snap_output(test, ref):
    """One output of a drift-tagged cell, its stream text and plain-text data snapped to ``ref``'s."""
    if test.get("output_type") != ref.get("output_type"):
        return test
    test = copy.deepcopy(test)
    text = lambda v: "".join(v) if isinstance(v, list) else v  # noqa: E731
    if isinstance(test.get("text"), (str, list)) and "text" in ref:
        test["text"] = snap_numbers(text(test["text"]), text(ref["text"]))
    plain = "text/plain"
    if plain in test.get("data", {}) and plain in ref.get("data", {}):
        test["data"][plain] = snap_numbers(text(test["data"][plain]), text(ref["data"][plain]))
    return test


def _install_drift_tolerance() -> None:
    """Wrap nbval's output comparison: drift-tagged cells snap their numbers to the reference's
    first, then nbval compares as usual."""
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:
        return
    exact = IPyNbCell.compare_outputs
    if getattr(exact, "drift_tolerant", False):
        return

    def compare_outputs(self, test, ref, skip_compare=None):
        if DRIFT_TAG in (self.cell.metadata.get("tags") or []):
            test = [_snap_output(t, r) for t, r in zip(test, ref)] + list(test[len(ref):])
        return exact(self, test, ref, skip_compare)

    compare_outputs.drift_tolerant = True
    IPyNbCell.compare_outputs = compare_outputs


def pytest_configure(config):
    _install_drift_tolerance()
    path = config.getoption("--timings-record")
    if path and not _is_worker(config):
        config.pluginmanager.register(_Record(Path(path)), "timings-record")

"""Time budgets of the notebooks and their widgets, checked as ratios to a calibration program.

A notebook's quick run should take at most ``NOTEBOOK_BUDGET_S`` and a widget's *Run* at most
``WIDGET_BUDGET_S`` on an idle 2-core CPU. Absolute seconds mean little on another machine, so a
run fails the guard only when its time, divided by the calibration program's time measured in the
same test process, exceeds twice the budget divided by the calibration time on the reference
machine: a regression guard, not a benchmark. The calibration program is timed while the kernel
runs (right after *Run* is pressed), so it sees the same competition for the CPU as the run.
"""

from __future__ import annotations

import time

NOTEBOOK_BUDGET_S = 60.0
WIDGET_BUDGET_S = 15.0
#: ``calibration_seconds(repeats=1)`` on the reference machine (an otherwise idle 2-core x86-64 CPU,
#: Python 3.11) while a kernel compiles and runs JAX programs beside it: median 0.29 s (0.21 s alone).
REFERENCE_CALIBRATION_S = 0.29
TOLERANCE = 2.0


def _work() -> int:
    # interpreter-bound like most of a cold notebook run (tracing, compiling, dispatch)
    total = 0
    for i in range(4_000_000):
        total += (i * i) % 7
    return total


def calibration_seconds(repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs of a fixed small program, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        _work()
        best = min(best, time.perf_counter() - t0)
    return best


def allowed_seconds(budget_s: float, calibration_s: float) -> float:
    """The time a run may take on this machine now: the budget scaled by the calibration ratio,
    times the tolerance."""
    if budget_s <= 0 or calibration_s <= 0:
        raise ValueError(f"budget_s and calibration_s must be > 0, got {budget_s} and {calibration_s}")
    return TOLERANCE * budget_s * calibration_s / REFERENCE_CALIBRATION_S


def over_budget(runs: dict[str, tuple[float, float]], budget_s: float) -> list[str]:
    """``name: seconds`` of each run ``{name: (seconds, calibration seconds timed during it)}``
    that exceeds :func:`allowed_seconds`."""
    out = []
    for name, (seconds, calibration_s) in runs.items():
        limit = allowed_seconds(budget_s, calibration_s)
        if seconds > limit:
            out.append(f"{name}: {seconds:.1f} s > {limit:.1f} s ({TOLERANCE:g} x {budget_s:g} s budget, scaled by "
                       f"calibration {calibration_s:.3f} s / {REFERENCE_CALIBRATION_S:g} s)")
    return out

"""Every notebook as a user meets it in JupyterLab: run all cells, no error output, then every
widget panel run at its defaults and with every control moved, its output naming the new values.
One screenshot per notebook goes to ``figures/ui/<notebook>.png``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import budget
import labdriver
from lowrank_es.notebook import source_digest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SHOTS = ROOT / "figures" / "ui"


@pytest.mark.browser
@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_its_widgets_respond(page, lab, nb_path, record_property):
    # JupyterLab may save the notebook it ran (autosave): put the committed file back, so the
    # saved outputs nbval compares are never the ones this test produced.
    committed = nb_path.read_bytes()
    try:
        _run_and_exercise(page, lab, nb_path, record_property)
    finally:
        if nb_path.read_bytes() != committed:
            nb_path.write_bytes(committed)


def _run_and_exercise(page, lab, nb_path: Path, record_property) -> None:
    labdriver.open_notebook(page, lab, f"notebooks/{nb_path.name}")
    cpu0, t0 = lab.kernel_cpu_seconds(), time.perf_counter()
    labdriver.run_all(page)
    run_all_s, run_all_cpu = time.perf_counter() - t0, lab.kernel_cpu_seconds() - cpu0
    assert labdriver.error_outputs(page) == []
    assert page.get_by_text("Jupyter news").count() == 0, "JupyterLab's news pop-up should be switched off"
    panels = page.locator(".lowrank-controls")
    SHOTS.mkdir(parents=True, exist_ok=True)
    widget_runs: dict[str, tuple[float, float]] = {}
    for i in range(panels.count()):
        shot = SHOTS / f"{nb_path.stem}.png" if i == 0 else None
        changes = labdriver.exercise_panel(page, panels.nth(i), screenshot=shot, meter=lab.kernel_cpu_seconds)
        assert len(changes) >= 2, "a panel must have at least one control"
        for run in sorted({c.run for c in changes}):  # one entry per run: the moves it made, its times
            made = [c for c in changes if c.run == run]
            name = ", ".join(f"{c.label} {c.value}".strip() for c in made)
            widget_runs[f"panel {i}: {name}"] = (made[0].seconds, made[0].cpu_s)
    if panels.count() == 0:
        page.screenshot(path=str(SHOTS / f"{nb_path.stem}.png"))
    # which version of the notebook the screenshot shows (tests/test_figures.py checks it is the current one)
    (SHOTS / f"{nb_path.stem}.json").write_text(json.dumps({"notebook_sha256": source_digest(nb_path)}) + "\n")
    # the guard against slow notebooks and widgets: the kernel's CPU time (what load from other
    # processes does not inflate) as a ratio to a calibration program's CPU time in this process
    calibration_s = budget.calibration_seconds()
    record_property("browser_timing", {
        "notebook": nb_path.stem, "run_all_s": round(run_all_s, 1), "run_all_cpu_s": round(run_all_cpu, 1),
        "calibration_cpu_s": round(calibration_s, 3),
        "widget_runs_s": {k: round(v[0], 1) for k, v in widget_runs.items()},
        "widget_runs_cpu_s": {k: round(v[1], 1) for k, v in widget_runs.items()}})
    slow = budget.over_budget({"run all": run_all_cpu}, budget.notebook_budget(nb_path.stem), calibration_s)
    slow += budget.over_budget({k: v[1] for k, v in widget_runs.items()}, budget.WIDGET_BUDGET_S, calibration_s)
    assert not slow, f"{nb_path.name} is over its time budget:\n" + "\n".join(slow)

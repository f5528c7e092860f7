"""Every notebook as a user meets it in JupyterLab: run all cells, no error output, then every
widget panel moved and run, its output naming the new values. One screenshot per notebook goes
to ``figures/ui/<notebook>.png``."""

from __future__ import annotations

from pathlib import Path

import pytest

import labdriver

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SHOTS = ROOT / "figures" / "ui"


@pytest.mark.browser
@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_its_widgets_respond(page, lab, nb_path):
    # JupyterLab may save the notebook it ran (autosave): put the committed file back, so the
    # saved outputs nbval compares are never the ones this test produced.
    committed = nb_path.read_bytes()
    try:
        _run_and_exercise(page, lab, nb_path)
    finally:
        if nb_path.read_bytes() != committed:
            nb_path.write_bytes(committed)


def _run_and_exercise(page, lab, nb_path: Path) -> None:
    labdriver.open_notebook(page, lab, f"notebooks/{nb_path.name}")
    labdriver.run_all(page)
    assert labdriver.error_outputs(page) == []
    assert page.get_by_text("Jupyter news").count() == 0, "JupyterLab's news pop-up should be switched off"
    panels = page.locator(".lowrank-controls")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for i in range(panels.count()):
        shot = SHOTS / f"{nb_path.stem}.png" if i == 0 else None
        changes = labdriver.exercise_panel(page, panels.nth(i), screenshot=shot)
        assert len(changes) >= 1
    if panels.count() == 0:
        page.screenshot(path=str(SHOTS / f"{nb_path.stem}.png"))

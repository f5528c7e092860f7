"""The browser checks themselves: they must fail on a broken callback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import budget
import labdriver

ROOT = Path(__file__).resolve().parents[2]


def test_names_value_reads_label_value_pairs():
    assert labdriver.names_value("rank", "4", "rank 4, population 64: MSE 1.2")
    assert labdriver.names_value("sigma", "0.0501", "sigma = 0.05012")
    assert labdriver.names_value("env_id", "Acrobot-v1", "env_id Acrobot-v1: return -80")
    assert not labdriver.names_value("rank", "4", "rank 1, population 64")  # "4" of "64" is not the rank
    assert not labdriver.names_value("population", "80", "rank 4, population 64")


def test_check_change_fails_on_a_callback_that_ignores_its_input():
    same = "rank 1, population 64: MSE 1e-4"
    with pytest.raises(AssertionError, match="did not change"):
        labdriver.check_change(same, labdriver.Change("rank", "3", same))
    with pytest.raises(AssertionError, match="does not name"):
        labdriver.check_change(same, labdriver.Change("rank", "3", "rank 2, population 64: MSE 1e-4"))
    with pytest.raises(AssertionError, match="raised"):
        labdriver.check_change(same, labdriver.Change("rank", "3", "Traceback (most recent call last):"))


def test_budget_guard_scales_with_the_calibration_and_flags_slow_runs():
    ref = budget.REFERENCE_CALIBRATION_S
    assert budget.allowed_seconds(15.0, ref) == 30.0  # twice the budget on the reference machine
    assert budget.allowed_seconds(15.0, 2 * ref) == 60.0  # a machine half as fast gets twice the time
    slow = budget.over_budget({"fast": (29.0, ref), "slow": (31.0, ref), "busy": (50.0, 2 * ref)}, 15.0)
    assert len(slow) == 1 and slow[0].startswith("slow: 31.0 s > 30.0 s")
    with pytest.raises(ValueError, match="calibration_s"):
        budget.allowed_seconds(15.0, 0.0)
    assert 0 < budget.calibration_seconds(repeats=1) < 60


BROKEN = '''def explore(rank=1):
    print(f"rank {1}: the callback ignores its argument")

explore()'''

WORKING = BROKEN.replace("rank {1}", "rank {rank}")


def _notebook(callback: str) -> dict:
    cells = [("code", "from lowrank_es.notebook import controls\nimport ipywidgets as widgets"), ("code", callback),
             ("code", "controls(explore, rank=widgets.IntSlider(value=1, min=1, max=8))")]
    return {"cells": [{"cell_type": k, "id": f"c{i}", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
                      for i, (k, s) in enumerate(cells)],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.mark.browser
def test_a_broken_callback_fails_the_widget_check(page, tmp_path):
    for name, src in (("working", WORKING), ("broken", BROKEN)):
        (tmp_path / f"{name}.ipynb").write_text(json.dumps(_notebook(src)))
    server = labdriver.LabServer(tmp_path, tmp_path / "jupyter.log")
    try:
        labdriver.open_notebook(page, server, "working.ipynb")
        labdriver.run_all(page)
        labdriver.exercise_panel(page, page.locator(".lowrank-controls").first)  # passes
        server.shutdown_kernels()
        labdriver.open_notebook(page, server, "broken.ipynb")
        labdriver.run_all(page)
        with pytest.raises(AssertionError, match="did not change"):
            labdriver.exercise_panel(page, page.locator(".lowrank-controls").first)
    finally:
        server.close()

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
    # a dropdown option of two words, as the browser returns it (non-breaking space)
    value = labdriver.control_text("whole\xa0softmax")
    assert value == "whole softmax"
    assert labdriver.names_value("form", value, "form whole softmax, epsilon 0.3")
    assert not labdriver.names_value("form", value, "form taken action, epsilon 0.3")
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
    ref, cpu = budget.REFERENCE_CALIBRATION_S, budget.CPU_PER_WALL_S
    limit = 2 * 15.0 * cpu  # twice the budget, in kernel CPU seconds, on the reference machine
    assert budget.allowed_seconds(15.0, ref) == pytest.approx(limit)
    assert budget.allowed_seconds(15.0, 2 * ref) == pytest.approx(2 * limit)  # a machine half as fast
    slow = budget.over_budget({"fast": limit - 1, "slow": limit + 1}, 15.0, ref)
    assert len(slow) == 1 and slow[0].startswith(f"slow: {limit + 1:.1f} CPU s > {limit:.1f} s")
    assert budget.over_budget({"slow": limit + 1}, 15.0, 2 * ref) == []
    with pytest.raises(ValueError, match="calibration_s"):
        budget.allowed_seconds(15.0, 0.0)
    assert 0 < budget.calibration_seconds(repeats=1) < 60
    assert budget.notebook_budget("01_eggroll_mechanics") == budget.NOTEBOOK_BUDGET_S
    assert all(budget.notebook_budget(nb) > budget.NOTEBOOK_BUDGET_S for nb in budget.OVER_BUDGET_S)
    assert set(budget.OVER_BUDGET_S) <= {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}


BROKEN = '''def explore(rank=1):
    print(f"rank {1}: the callback ignores its argument")

explore()'''

WORKING = BROKEN.replace("rank {1}", "rank {rank}")

# two controls moved in one run: the ignored one still prints its old value
HALF_BROKEN = '''def explore(rank=1, population=8):
    print(f"rank {rank}, population {8}: the callback ignores population")

explore()'''


RANK = "rank=widgets.IntSlider(value=1, min=1, max=8)"
POPULATION = "population=widgets.IntSlider(value=8, min=8, max=64, step=8)"


def _notebook(callback: str, controls: tuple[str, ...] = (RANK,)) -> dict:
    cells = [("code", "from lowrank_es.notebook import controls\nimport ipywidgets as widgets"), ("code", callback),
             ("code", f"controls(explore, {', '.join(controls)})")]
    return {"cells": [{"cell_type": k, "id": f"c{i}", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
                      for i, (k, s) in enumerate(cells)],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.mark.browser
def test_a_broken_callback_fails_the_widget_check(page, tmp_path):
    for name, nb in (("working", _notebook(WORKING)), ("broken", _notebook(BROKEN)),
                     ("half_broken", _notebook(HALF_BROKEN, (RANK, POPULATION)))):
        (tmp_path / f"{name}.ipynb").write_text(json.dumps(nb))
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
        server.shutdown_kernels()
        labdriver.open_notebook(page, server, "half_broken.ipynb")
        labdriver.run_all(page)
        with pytest.raises(AssertionError, match="does not name population"):
            labdriver.exercise_panel(page, page.locator(".lowrank-controls").first)
    finally:
        server.close()

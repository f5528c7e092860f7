"""nbval's tolerance for cells tagged ``cpu-model-drift`` (conftest.py): their numbers may differ
from the saved ones within the stated tolerance; their words, and every untagged cell, may not."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The project's root conftest.py by its path: "import conftest" can find tests/browser's instead
_spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)


def test_drift_seen_between_two_cpu_models_is_within_tolerance():
    pairs = [  # (this CPU model, the other one): printed by the same cells
        ("EGGROLL r=4: final MSE 8.1e-07 ± 2e-07 (start 1.15, 3 seeds)",
         "EGGROLL r=4: final MSE 8.8e-07 ± 1e-07 (start 1.15, 3 seeds)"),
        ("LOLA     quick  -1.040 ± 0.15       0.65      0.96", "LOLA     quick  -1.044 ± 0.16       0.66      0.94"),
        ("ZD chi=3 vs lola   -1.602 ± 0.0019    -1.796", "ZD chi=3 vs lola   -1.603 ± 0.0035    -1.796"),
    ]
    for test, ref in pairs:
        assert harness.snap_numbers(test, ref) == ref


def test_a_real_change_still_fails():
    # a number out of tolerance is kept, so the comparison reports it
    assert harness.snap_numbers("LOLA -1.040 per step", "LOLA -1.400 per step") == "LOLA -1.040 per step"
    assert harness.snap_numbers("final MSE 8.1e-07", "final MSE 2.5e-06") == "final MSE 8.1e-07"
    assert harness.snap_numbers("final MSE 8.1e-07", "final MSE -8.1e-07") == "final MSE 8.1e-07"
    # different words, or a different count of numbers: nothing is snapped
    assert harness.snap_numbers("naive -1.040", "LOLA -1.041") == "naive -1.040"
    assert harness.snap_numbers("runs 3: -1.040", "runs: -1.041") == "runs 3: -1.040"


def _notebook(path: Path, cells: list[tuple[str, str, list[str]]]) -> None:
    """A notebook of cells (source, saved stdout, tags)."""
    nb = {"cells": [{"cell_type": "code", "execution_count": i + 1, "metadata": {"tags": tags}, "source": src,
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": out}]}
                    for i, (src, out, tags) in enumerate(cells)],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


def test_nbval_applies_the_tolerance_to_tagged_cells_only(tmp_path):
    tag = [harness.DRIFT_TAG]
    nb = tmp_path / "drift.ipynb"
    _notebook(nb, [('print("loss -1.004")', "loss -1.002\n", tag),   # drift: passes
                   ('print("loss -1.004")', "loss -1.002\n", []),    # untagged: exact, fails
                   ('print("loss -1.004")', "loss -1.500\n", tag)])  # out of tolerance: fails
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest", "--nbval",
                          "-o", "addopts=", str(nb)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    failed = sorted(line.split("::")[1].split(" -")[0] for line in run.stdout.splitlines() if line.startswith("FAILED"))
    assert failed == ["Cell 1", "Cell 2"], run.stdout[-3000:]

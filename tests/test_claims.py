"""The claims registry's mechanics, exercised with the theory claims: judging against a target
(a deliberately wrong one must be reported as not holding), recording, and the command line.
The theory claims read the committed reference results of experiment ``theory``."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lowrank_es import claims, experiments, theory
from lowrank_es.claims import Target
from lowrank_es.experiments import theory as theory_exp

KEYS = {"id", "paper", "statement", "measured", "uncertainty", "target", "holds", "device", "seeds", "measured_at",
        "scale"}
THEORY_IDS = ("eggroll.theory.slope", "eggroll.theory.slope_mlp", "eggroll.theory.quadratic_exact",
              "eggroll.theory.update_rank")
ROOT = Path(__file__).resolve().parents[1]


def copy_reference(figures_dir: Path) -> None:
    """The committed reference results, where a temporary figures/ makes the measures look."""
    (figures_dir / "results").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "figures" / "results" / "theory__reference.json", figures_dir / "results")


@pytest.fixture()
def figures(tmp_path, monkeypatch):
    """Send every record to a temporary figures/ so the repository's stays untouched."""
    monkeypatch.setenv("LOWRANK_ES_FIGURES", str(tmp_path))
    copy_reference(tmp_path)
    return tmp_path


def test_theory_claims_are_registered_with_their_notebook():
    registered = claims.all_claims()
    for cid in THEORY_IDS:
        claim = registered[cid]
        assert claim.paper == "EGGROLL" and claim.quick and claim.notebook == "02_theory_convergence"


def test_slope_claim_holds_and_a_wrong_target_does_not(figures):
    rec = claims.evaluate("eggroll.theory.slope")
    assert KEYS <= set(rec)
    assert rec["holds"] is True and rec["measured"] == 3.0 and rec["scale"] == "reference"
    for name, d in rec["details"].items():
        assert -1.15 <= d["ci95"][0] <= d["slope"] <= d["ci95"][1] <= -0.85, name
        assert d["mc_agrees"] and d["mc_max_abs_z"] <= theory_exp.Z_AGREE, name
        assert d["generator_max_noise_ratio"] <= theory_exp.RATIO_AGREE, name
    # The record is written where LOWRANK_ES_FIGURES points.
    stored = json.loads((figures / "claims" / "eggroll.theory.slope.json").read_text())
    assert stored["measured"] == 3.0 and stored["holds"] is True
    # Deliberately wrong target: demand more objectives than exist.
    wrong = claims.evaluate("eggroll.theory.slope", target=Target(low=4))
    assert wrong["holds"] is False and wrong["measured"] == 3.0 and wrong["target"] == ">= 4"
    # A target override is never recorded.
    stored = json.loads((figures / "claims" / "eggroll.theory.slope.json").read_text())
    assert stored["holds"] is True and stored["target"] != ">= 4"


def _reference_with(edit) -> dict:
    rec = copy.deepcopy(experiments.load("theory", "reference"))
    edit(rec)
    return rec


def test_slope_claims_reject_a_square_root_rate(figures):
    """Objectives whose error falls as 1/sqrt(r) are counted out, and so is a Monte Carlo that
    disagrees with its closed form; an MLP slope of -1/2 fails slope_mlp."""
    r = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256])
    sqrt_fit = theory_exp.fit_record(theory.fit_loglog_slope(r, 0.3 * r**-0.5))

    def sqrt_rate(rec):
        for row in rec["data"]["exact"]:
            row["fit"] = sqrt_fit
        for run in rec["data"]["mlp"].values():
            run["fit"] = sqrt_fit

    rec = claims.evaluate("eggroll.theory.slope", results=_reference_with(sqrt_rate), record=False)
    assert rec["measured"] == 0.0 and rec["holds"] is False
    assert all(not d["inside"] for d in rec["details"].values())
    mlp = claims.evaluate("eggroll.theory.slope_mlp", results=_reference_with(sqrt_rate), record=False)
    assert mlp["measured"] == pytest.approx(0.5, abs=1e-9) and mlp["holds"] is False

    def disagree(rec):
        rec["data"]["overlay"]["cosine"]["z"] = [0.0, 6.0, 0.0]

    rec = claims.evaluate("eggroll.theory.slope", results=_reference_with(disagree), record=False)
    assert rec["measured"] == 2.0 and not rec["details"]["cosine"]["mc_agrees"]


def test_update_rank_claim_and_wrong_target(figures):
    cfg = theory_exp.Config(rank_shapes=((8, 6),), rank_ranks=(1, 2), rank_populations=(2, 3, 8), figure_shape=(6, 4),
                            figure_ranks=(1,), figure_populations=(2, 3))
    results = {"scale": "test", "seeds": [0], "data": {"update_rank": theory_exp.update_rank_job(cfg, 0)}}
    rec = claims.evaluate("eggroll.theory.update_rank", results=results, record=False)
    assert rec["holds"] is True and rec["measured"] == 1.0 and rec["details"]["misses"] == []
    wrong = claims.evaluate("eggroll.theory.update_rank", results=results, target=Target(high=0.5))
    assert wrong["holds"] is False


def test_a_re_measured_claim_keeps_its_date_unless_its_value_changes(figures):
    cid = "eggroll.theory.update_rank"
    cfg = theory_exp.Config(rank_shapes=((8, 6),), rank_ranks=(1, 2), rank_populations=(2, 3, 8), figure_shape=(6, 4),
                            figure_ranks=(1,), figure_populations=(2, 3))
    results = {"scale": "test", "seeds": [0], "data": {"update_rank": theory_exp.update_rank_job(cfg, 0)}}
    path = figures / "claims" / f"{cid}.json"
    claims.evaluate(cid, results=results)
    # as if recorded on an earlier day: the same measurement again must leave the file as it is
    old = json.loads(path.read_text())
    path.write_text(path.read_text().replace(old["measured_at"], "2000-01-01"))
    before = path.read_text()
    again = claims.evaluate(cid, results=results)
    assert path.read_text() == before and again["measured_at"] == "2000-01-01"
    # a different measurement (another scale) is recorded, with today's date
    changed = claims.evaluate(cid, results={**results, "scale": "other"})
    assert json.loads(path.read_text())["scale"] == "other"
    assert changed["measured_at"] == old["measured_at"] != "2000-01-01"


def test_quadratic_claim_and_wrong_target(figures):
    cfg = theory_exp.Config(quadratic_ranks=(1,), quadratic_samples=2**13)
    results = {"scale": "test", "seeds": [0], "data": {"quadratic": theory_exp.quadratic_job(cfg, 0)}}
    rec = claims.evaluate("eggroll.theory.quadratic_exact", results=results, record=False)
    assert rec["holds"] is True
    # The positive control shows the test has power: the quartic's O(1/r) gap is far above noise.
    assert rec["details"]["quartic_rank1_noise_ratio"] > 5.0
    wrong = claims.evaluate("eggroll.theory.quadratic_exact", results=results, target=Target(low=3.0))
    assert wrong["holds"] is False and wrong["measured"] == rec["measured"]


def test_non_finite_measurement_does_not_hold():
    assert not Target(low=0).contains(float("nan"))
    assert not Target().contains(float("inf"))
    assert Target().contains(1.0)


def test_cli_writes_json_list(tmp_path):
    out = tmp_path / "claims.json"
    copy_reference(tmp_path / "figures")
    env = {**os.environ, "LOWRANK_ES_FIGURES": str(tmp_path / "figures")}
    proc = subprocess.run(
        [sys.executable, "-m", "lowrank_es", "claims", "--only", "eggroll.theory", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = json.loads(out.read_text())
    assert isinstance(records, list) and records
    for rec in records:
        assert KEYS <= set(rec), rec.get("id")
        assert isinstance(rec["holds"], bool)
    by_id = {r["id"]: r for r in records}
    for cid in THEORY_IDS:
        assert by_id[cid]["holds"] is True, by_id[cid]
        assert by_id[cid]["source"] == "live"
        assert by_id[cid]["paper"].startswith("EGGROLL")
        assert by_id[cid]["measured_at"]
        assert cid in proc.stdout
    # Live claims were recorded in the temporary figures directory, not the repository's.
    assert (tmp_path / "figures" / "claims" / "eggroll.theory.slope.json").exists()

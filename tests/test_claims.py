"""The claims registry's mechanics, exercised with the theory claims: judging against a target
(a deliberately wrong one must be reported as not holding), recording, and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lowrank_es import claims, theory
from lowrank_es.claims import Target

KEYS = {"id", "paper", "statement", "measured", "uncertainty", "target", "holds", "device", "seeds", "measured_at"}
THEORY_IDS = ("eggroll.theory.slope", "eggroll.theory.quadratic_exact", "eggroll.theory.update_rank")


@pytest.fixture()
def figures(tmp_path, monkeypatch):
    """Send every record to a temporary figures/ so the repository's stays untouched."""
    monkeypatch.setenv("LOWRANK_ES_FIGURES", str(tmp_path))
    return tmp_path


def test_theory_claims_are_registered_with_their_notebook():
    registered = claims.all_claims()
    for cid in THEORY_IDS:
        claim = registered[cid]
        assert claim.paper == "EGGROLL" and claim.quick and claim.notebook == "02_theory_convergence"


def test_slope_claim_holds_and_a_wrong_target_does_not(figures):
    rec = claims.evaluate("eggroll.theory.slope")
    assert KEYS <= set(rec)
    assert rec["holds"] is True and rec["measured"] == 3.0
    for name, d in rec["details"].items():
        assert -1.15 <= d["ci95"][0] <= d["slope"] <= d["ci95"][1] <= -0.85, name
    # The record is written where LOWRANK_ES_FIGURES points.
    stored = json.loads((figures / "claims" / "eggroll.theory.slope.json").read_text())
    assert stored["measured"] == 3.0 and stored["holds"] is True
    # Deliberately wrong target: demand more objectives than exist.
    wrong = claims.evaluate("eggroll.theory.slope", target=Target(low=4))
    assert wrong["holds"] is False and wrong["measured"] == 3.0 and wrong["target"] == ">= 4"
    # A target override is never recorded.
    stored = json.loads((figures / "claims" / "eggroll.theory.slope.json").read_text())
    assert stored["holds"] is True and stored["target"] != ">= 4"


def test_slope_claim_rejects_a_square_root_rate(figures):
    """An objective whose error falls as 1/sqrt(r) is counted out, so three of them fail the claim."""
    r = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256])
    curve = {"rank": r, "error": 0.3 * r**-0.5, "se": np.zeros(len(r))}
    fit = theory.fit_loglog_slope(curve["rank"], curve["error"])
    study = {f"sqrt{i}": {"curve": curve, "fit": fit, "method": "exact"} for i in range(3)}
    rec = claims.evaluate("eggroll.theory.slope", study=study, record=False)
    assert rec["measured"] == 0.0 and rec["holds"] is False
    assert all(not d["inside"] for d in rec["details"].values())


def test_update_rank_claim_and_wrong_target(figures):
    kwargs = dict(shapes=((8, 6),), ranks=(1, 2), populations=(2, 3, 8))
    rec = claims.evaluate("eggroll.theory.update_rank", record=False, **kwargs)
    assert rec["holds"] is True and rec["measured"] == 1.0 and rec["details"]["misses"] == []
    wrong = claims.evaluate("eggroll.theory.update_rank", target=Target(high=0.5), **kwargs)
    assert wrong["holds"] is False


def test_quadratic_claim_and_wrong_target(figures):
    kwargs = dict(ranks=(1,), samples=2**13)
    rec = claims.evaluate("eggroll.theory.quadratic_exact", record=False, **kwargs)
    assert rec["holds"] is True
    # The positive control shows the test has power: the quartic's O(1/r) gap is far above noise.
    assert rec["details"]["quartic_rank1_noise_ratio"] > 5.0
    wrong = claims.evaluate("eggroll.theory.quadratic_exact", target=Target(low=3.0), **kwargs)
    assert wrong["holds"] is False and wrong["measured"] == rec["measured"]


def test_non_finite_measurement_does_not_hold():
    assert not Target(low=0).contains(float("nan"))
    assert not Target().contains(float("inf"))
    assert Target().contains(1.0)


def test_cli_writes_json_list(tmp_path):
    out = tmp_path / "claims.json"
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

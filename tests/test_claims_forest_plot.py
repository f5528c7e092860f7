"""The non-inferiority forest plot: one row per comparison, the interval the claim is judged by,
the margin line at the claim's margin, and the verdicts counted in the title."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from lowrank_es import claims, stats
from lowrank_es.claims.plot import non_inferiority_figure, non_inferiority_rows

matplotlib.use("Agg")


def _reasoning_record(eggroll: list[float], grpo: list[float]) -> dict:
    logs = [{"tokens": 1000, "seconds": 60.0}]
    return {"scale": "test", "device": "cpu:cpu",
            "data": {"eggroll": {"final": eggroll, "final_greedy": eggroll, "logs": logs},
                     "grpo": {"final": grpo, "final_greedy": grpo, "logs": logs}}}


def _per_env_record(margin: float = 0.1, alpha: float = 0.05) -> dict:
    """A record of the form of ``eggroll.rl.parity``: one one-sided Welch test per environment."""
    rng = np.random.default_rng(0)
    per_env = {}
    for env, shift in (("near", 0.0), ("worse", -0.3), ("noisy", 0.0)):
        spread = 0.5 if env == "noisy" else 0.02
        per_env[env] = stats.non_inferiority(1 + shift + spread * rng.standard_normal(16),
                                             1 + spread * rng.standard_normal(16), margin, alpha)
    holds = sum(t["non_inferior"] for t in per_env.values()) >= 3
    return {"id": "test.parity", "holds": holds, "details": {"per_env": per_env, "margin": margin, "alpha": alpha}}


def _lines(ax, gid: str) -> list:
    return [line for line in ax.lines if line.get_gid() == gid]


def test_rows_keep_the_bound_each_claim_is_judged_by():
    rec = _per_env_record()
    rows = non_inferiority_rows(rec)
    assert [r["label"] for r in rows] == ["near", "worse", "noisy"]
    for row, t in zip(rows, rec["details"]["per_env"].values()):
        assert row["low"] == t["lower"] and row["high"] - row["estimate"] == pytest.approx(row["estimate"] - row["low"])
        assert row["non_inferior"] == t["non_inferior"] and row["level"] == pytest.approx(0.9)
    assert [r["non_inferior"] for r in rows] == [True, False, False]
    two_sided = claims.evaluate("eggroll.reasoning.vs_grpo_wallclock", record=False,
                                results=_reasoning_record([0.30, 0.31, 0.29, 0.30], [0.30, 0.29, 0.31, 0.30]))
    (row,) = non_inferiority_rows(two_sided)
    assert row["low"] == pytest.approx(two_sided["measured"]) and row["level"] == 0.95
    assert row["non_inferior"] == two_sided["holds"] is True
    with pytest.raises(ValueError, match="no non-inferiority comparison"):
        non_inferiority_rows({"id": "x", "holds": True, "details": {"slope": -1.0}})


def test_forest_plot_draws_one_row_per_comparison_against_the_margin():
    parity = _per_env_record(margin=0.1)
    fig = non_inferiority_figure([parity])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["near", "worse", "noisy"]
    intervals = _lines(ax, "interval")
    assert len(intervals) == 3 and len(_lines(ax, "estimate")) == 3
    rows = non_inferiority_rows(parity)
    for line, row in zip(intervals, rows):
        assert list(line.get_xdata()) == pytest.approx([row["low"], row["high"]])
        assert line.get_color() == ("tab:green" if row["non_inferior"] else "tab:red")
    (margin,) = _lines(ax, "margin")
    assert list(margin.get_xdata()) == [-0.1, -0.1]
    assert ax.get_title().startswith("1 of 3 comparisons clear the non-inferiority margin")
    assert "test.parity does not hold" in ax.get_title()


def test_claims_in_different_units_get_one_margin_each():
    reasoning = claims.evaluate("eggroll.reasoning.vs_grpo_wallclock", record=False,
                                results=_reasoning_record([0.20, 0.21, 0.19, 0.20], [0.40, 0.39, 0.41, 0.40]))
    fig = non_inferiority_figure([_per_env_record(margin=0.1), reasoning])
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == 4
    assert [line.get_xdata()[0] for line in _lines(ax, "margin")] == pytest.approx([-0.1] * 3 + [-0.03])
    assert "eggroll.reasoning.vs_grpo_wallclock does not hold" in ax.get_title()

"""The mechanics claims and the verdict figure: each measure against a record whose answer is
known, and the figure's margins against hand-computed ones."""

from __future__ import annotations

import numpy as np
import pytest

from lowrank_es import claims
from lowrank_es.claims import mechanics
from lowrank_es.claims.plot import claims_figure, normalised_margin


def _record(rank1_final: float, full_final: float, seeds: int = 4) -> dict:
    def losses(final):
        return np.stack([np.geomspace(1.0, final, 11) * (1 + 0.01 * s) for s in range(seeds)]).tolist()

    return {"scale": "test", "device": "cpu:cpu",
            "data": {mechanics.RANK1: {"losses": losses(rank1_final)}, mechanics.FULL: {"losses": losses(full_final)}}}


def test_factored_forward_claim_holds_at_float64_rounding():
    rec = claims.evaluate("eggroll.mechanics.factored_forward", record=False)
    assert rec["holds"] and rec["measured"] < 1e-13
    assert set(rec["details"]) == {"rank 1", "rank 3", "rank full"}


def test_rank1_claims_read_orders_of_magnitude():
    good = _record(1e-7, 1e-8)
    fits = mechanics.measure_rank1_fits(good)
    assert fits.measured == pytest.approx(7.0, abs=1e-9) and claims.get("eggroll.mechanics.rank1_fits").target.contains(fits.measured)
    gap = mechanics.measure_rank1_vs_full_rank(good)
    assert gap.measured == pytest.approx(1.0, abs=1e-9)
    stuck = mechanics.measure_rank1_fits(_record(1e-2, 1e-8))
    assert stuck.measured == pytest.approx(2.0, abs=1e-9)
    assert not claims.get("eggroll.mechanics.rank1_fits").target.contains(stuck.measured)


def test_normalised_margin():
    assert normalised_margin(0.25, 0.2, None) == pytest.approx((0.05, 0.2))
    assert normalised_margin(0.04, None, 0.0) == pytest.approx((-0.04, 1.0))
    assert normalised_margin(1.0, 1.0, 1.0) == (0.0, 1.0)
    assert normalised_margin(0.3, 1.0, 1.0) == pytest.approx((-0.7, 1.0))
    assert normalised_margin(None, 0.0, None) is None and normalised_margin(1.0, None, None) is None


def test_claims_figure_draws_every_record():
    import matplotlib

    matplotlib.use("Agg")
    recs = [claims.evaluate("eggroll.mechanics.rank1_fits", record=False, results=_record(1e-7, 1e-8)),
            claims.evaluate("eggroll.mechanics.rank1_vs_full_rank", record=False, results=_record(1e-7, 1e-8))]
    fig = claims_figure(recs)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [r["id"] for r in recs]
    assert "1 of 1 claims with a target hold" in ax.get_title()

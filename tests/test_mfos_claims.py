"""The M-FOS claim measures read results records correctly: each slack is computed from the
record's numbers and turns negative when a condition fails."""

from __future__ import annotations

import numpy as np

from lowrank_es.claims import mfos


def record(shaper=(-0.6, -0.55, -0.65), openes=(-0.6, -0.58, -0.62), lola=-1.4, selfplay=-1.05,
           t_egg=0.1, t_ope=1.0):
    def ev(x):
        return [[[0.0, 0.0], [v, -2.0]] for v in x]

    n = len(shaper)
    return {"scale": "reference", "device": "cpu:cpu", "data": {
        "eggroll_naive": {"eval": ev(shaper)}, "openes_naive": {"eval": ev(openes)},
        "selfplay": {"eval": [[[0.0, 0.0], [selfplay, selfplay + 0.02]]] * n},
        "baselines": {"per_seed": {"lola vs naive": [[lola, -1.8]] * n, "naive vs naive": [[-1.98, -1.98]] * n}},
        "timing": {"EGGROLL r=1": {"median_s": t_egg}, "OpenES (full rank)": {"median_s": t_ope}}}}


def test_exploits_naive_slack():
    m = mfos.exploits_naive(record())
    assert np.isclose(m.measured, min(-0.6 + 1, -0.6 + 1.4)) and m.seeds == 3 and m.scale == "reference"
    assert mfos.exploits_naive(record(shaper=(-1.1, -1.0, -1.2))).measured < 0
    assert mfos.exploits_naive(record(lola=-0.5)).measured < 0


def test_meta_self_play_mean_of_both():
    assert np.isclose(mfos.meta_self_play(record()).measured, -1.04)


def test_eggroll_vs_openes_needs_both_conditions():
    assert mfos.eggroll_vs_openes(record()).measured > 0
    assert mfos.eggroll_vs_openes(record(t_egg=2.0)).measured < 0  # slower
    assert mfos.eggroll_vs_openes(record(shaper=(-1.2, -1.15, -1.25))).measured < 0  # inferior

"""The es_shaper experiment's read side: the ZD refit of combine and the M-FOS claims' measures
on a small hand-made record."""

import jax.numpy as jnp
import numpy as np

from lowrank_es.claims import mfos
from lowrank_es.experiments import es_shaper
from lowrank_es.shaping import meta_game as mg


def test_combine_refits_zd_from_the_late_policy():
    zd = jnp.concatenate([jnp.array([1.0]), mg.zd_extortion(5.0, 0.05)])
    stale = {"final": {"late_policy": [np.asarray(zd).tolist()], "zd": [[20.0, 0.0, 9.0]]}, "wall_s": 1.0}
    out = es_shaper.combine(es_shaper.SCALES["quick"], (0,), {"eggroll_naive": stale, "timing": {"x": 1}})
    chi, phi, err = np.asarray(out["eggroll_naive"]["final"]["zd"])[0]
    assert abs(chi - 5.0) < 0.1 and abs(phi - 0.05) < 2e-3 and err < 2e-3
    assert out["timing"] == {"x": 1} and "note" not in out


def _record(shaper, lola, egg_t=1.0, ope_t=3.0):
    ev = lambda r: np.stack([np.array([[-2.0, -2.0], [x, -1.8]]) for x in r]).tolist()  # (S, E, 2)
    return {"scale": "test", "device": "cpu", "data": {
        "eggroll_naive": {"eval": ev(shaper)}, "openes_naive": {"eval": ev(shaper)},
        "selfplay": {"eval": [[[-1.5, -1.5], [-1.1, -1.05]]] * 3},
        "baselines": {"per_seed": {"lola vs naive": [[x, -1.8] for x in lola], "naive vs naive": [[-1.92, -1.92]] * 3}},
        "timing": {"EGGROLL r=1": {"median_s": egg_t}, "OpenES (full rank)": {"median_s": ope_t}}}}


def test_mfos_measures_on_a_hand_made_record():
    rec = _record(shaper=[-0.6, -0.62, -0.58], lola=[-1.3, -1.3, -1.3])
    m = mfos.exploits_naive(rec)
    assert abs(m.measured - 0.4) < 1e-6 and m.seeds == 3 and m.scale == "test"
    assert abs(mfos.meta_self_play(rec).measured - (-1.075)) < 1e-6
    m = mfos.eggroll_vs_openes(rec)  # equal returns, 3x faster: non-inferior, slack limited by the margin test
    assert m.measured > 0 and abs(m.details["speedup"] - 3.0) < 1e-9
    # A shaper below mutual cooperation does not exploit, whatever LOLA gets.
    assert mfos.exploits_naive(_record(shaper=[-1.1, -1.2, -1.15], lola=[-1.9] * 3)).measured < 0
    # Slower per generation: the comparison fails even at equal returns.
    assert mfos.eggroll_vs_openes(_record([-0.6, -0.62, -0.58], [-1.3] * 3, egg_t=2.0, ope_t=1.0)).measured < 0

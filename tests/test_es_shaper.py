"""The es_shaper experiment's combine step (the claims' measures: tests/test_mfos_claims.py)."""

import jax.numpy as jnp
import numpy as np

from lowrank_es.experiments import es_shaper
from lowrank_es.shaping import meta_game as mg


def test_combine_refits_zd_from_the_late_policy():
    zd = jnp.concatenate([jnp.array([1.0]), mg.zd_extortion(5.0, 0.05)])
    stale = {"final": {"late_policy": [np.asarray(zd).tolist()], "zd": [[20.0, 0.0, 9.0]]}, "wall_s": 1.0}
    out = es_shaper.combine(es_shaper.SCALES["quick"], (0,), {"eggroll_naive": stale, "timing": {"x": 1}})
    chi, phi, err = np.asarray(out["eggroll_naive"]["final"]["zd"])[0]
    assert abs(chi - 5.0) < 0.1 and abs(phi - 0.05) < 2e-3 and err < 2e-3
    assert out["timing"] == {"x": 1} and "note" not in out


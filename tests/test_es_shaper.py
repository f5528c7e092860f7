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



def _record(shaper: float, learner: float, selfplay_end: float) -> dict:
    """The parts of an es_shaper record the figure titles read: 2 seeds, 3 evaluations."""
    ev = np.zeros((2, 3, 2))
    ev[:, -1] = (shaper, learner)
    sp = np.full((2, 3, 2), -1.5)
    sp[:, -1] = selfplay_end
    final = {"shaper": np.full((2, 4, 5), 0.5), "opponent": np.full((2, 4, 5), 0.25)}
    final["shaper"][:, -1] = (0.1, 0.9, 0.0, 0.3, 0.0)
    return {"scale": "test", "seeds": [0, 1],
            "data": {"eggroll_naive": {"eval": ev, "final": final}, "openes_naive": {"eval": ev - 0.5},
                     "selfplay": {"eval": sp}}}


def test_figure_titles_say_what_the_record_shows():
    """Titles are computed from the data: move the numbers and the words follow."""
    up = _record(-0.6, -2.0, -1.1)
    assert "EGGROLL r=1 shaper -0.60, learners -2.00; OpenES shaper -1.10, learners -2.50" in es_shaper.learning_statement(up)
    down = _record(-1.8, -1.2, -1.7)
    assert "EGGROLL r=1 shaper -1.80" in es_shaper.learning_statement(down)
    assert "-1.50 at generation 0, -1.10 at the end" in es_shaper.selfplay_statement(up)
    assert "-1.50 at generation 0, -1.70 at the end" in es_shaper.selfplay_statement(down)
    t = es_shaper.inner_policy_statement(up)
    assert "start 0.10, CC 0.90, CD 0.00, DC 0.30, DD 0.00" in t and "0.25 at the first meta-step, 0.25 at the last" in t

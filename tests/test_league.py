"""IPD leagues against values worked out by hand (gamma 0.96, rewards CC -1, CD -3, DC 0, DD -2)."""

import jax
import numpy as np
import pytest

from lowrank_es.shaping import exact, league

G = 0.96
AC, AD, TFT = (exact.IPD_FIXED[k] for k in ("always_cooperate", "always_defect", "tit_for_tat"))
# the row player's reward per step, (1 - gamma) x its discounted return, from the payoffs alone:
HAND = {("AC", "AC"): -1.0, ("AC", "AD"): -3.0, ("AD", "AC"): 0.0, ("AD", "AD"): -2.0,
        # TFT opens with C, then copies: AD takes 0 once, then both defect
        ("AD", "TFT"): (1 - G) * (0.0 - 2.0 * G / (1 - G)), ("TFT", "AD"): (1 - G) * (-3.0 - 2.0 * G / (1 - G)),
        ("TFT", "TFT"): -1.0, ("AC", "TFT"): -1.0, ("TFT", "AC"): -1.0}


def test_policy_league_matches_hand_worked_values():
    names, r = league.policy_league({"AC": AC, "AD": AD, "TFT": TFT}, G)
    assert r.shape == (1, 3, 3)
    for (a, b), v in HAND.items():
        np.testing.assert_allclose(r[0, names.index(a), names.index(b)], v, atol=1e-5)


def test_policy_league_pairs_run_k_with_run_k():
    """Learned policies (runs, 5) meet each other run by run; a fixed (5,) entry meets every run."""
    p = np.stack([np.asarray(AC), np.asarray(AD)])  # run 0 always-cooperate, run 1 always-defect
    names, r = league.policy_league({"learner": p, "AD": AD}, G)
    assert r.shape == (2, 2, 2)
    np.testing.assert_allclose(r[:, 0, 0], [-1.0, -2.0], atol=1e-5)  # itself, run by run
    np.testing.assert_allclose(r[:, 0, 1], [-3.0, -2.0], atol=1e-5)  # against always-defect
    np.testing.assert_allclose(r[:, 1, 0], [0.0, -2.0], atol=1e-5)


def test_learning_league_without_steps_is_the_policy_league():
    """ipd_league with no learning steps plays the fixed entries as they are: the policy league of
    the same (logit-capped) policies, and within the cap's rounding of the hand-worked values."""
    thetas = {k: exact.fixed_theta(v) for k, v in
              (("AC", "always_cooperate"), ("AD", "always_defect"), ("TFT", "tit_for_tat"))}
    names, r = league.ipd_league(jax.random.PRNGKey(0), thetas, n_seeds=2, steps=0, gamma=G)
    names_p, r_p = league.policy_league({k: exact.policy(t) for k, t in thetas.items()}, G)
    assert names == names_p and r.shape == (2, 3, 3)
    np.testing.assert_allclose(r, np.broadcast_to(r_p, r.shape), atol=1e-5)
    for (a, b), v in HAND.items():
        np.testing.assert_allclose(r[0, names.index(a), names.index(b)], v, atol=5e-3)


def test_policy_league_bad_input():
    with pytest.raises(ValueError, match="shape"):
        league.policy_league({"x": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="share the number of runs"):
        league.policy_league({"x": np.zeros((3, 5)), "y": np.zeros((2, 5))})

"""Negotiation Game: hand-worked payoffs, the AC/AD dilemma, continuous variant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.games import negotiation as neg


def test_hand_worked_round():
    u = jnp.array([[5.0, 1.0, 5.0], [1.0, 5.0, 1.0]])
    # AC vs AC: each gets the items it values most, whole.
    p = jnp.array([[5.0, 0.0, 5.0], [0.0, 5.0, 0.0]])
    np.testing.assert_allclose(neg.payoffs(p, u), [10 / 15, 5 / 15], rtol=1e-6)
    # AD vs AD: every item split in half.
    p = jnp.full((2, 3), 5.0)
    np.testing.assert_allclose(neg.payoffs(p, u), [0.5 * 11 / 15, 0.5 * 7 / 15], rtol=1e-6)
    # AC (agent 0) vs AD (agent 1): agent 0 shares its items, agent 1 takes item 1 whole.
    p = jnp.array([[5.0, 0.0, 5.0], [5.0, 5.0, 5.0]])
    np.testing.assert_allclose(neg.payoffs(p, u), [(2.5 + 2.5) / 15, (0.5 + 5 + 0.5) / 15], rtol=1e-6)
    # nobody asks: the items are wasted.
    np.testing.assert_allclose(neg.payoffs(jnp.zeros((2, 3)), u), [0.0, 0.0])


def test_expected_dilemma_payoffs_by_hand():
    """Per item: P(u0 = 5) = 1/2. AC-AC: the high-value agent takes 5 -> 0.5*5 per item each,
    x3 items /15 = 0.50. AD-AD: half of E[u] = 3 -> 1.5 x3 /15 = 0.30. AC vs AD: AC gets
    half of 5 when it values the item (prob 1/2): 1.25 x3 /15 = 0.25; AD gets 0.5*(0.5) +
    0.5*5 = 2.75 x3 /15 = 0.55."""
    ac, ad = neg.always_cooperate, neg.always_defect
    np.testing.assert_allclose(neg.expected_payoffs(ac, ac), [0.50, 0.50], atol=1e-6)
    np.testing.assert_allclose(neg.expected_payoffs(ad, ad), [0.30, 0.30], atol=1e-6)
    np.testing.assert_allclose(neg.expected_payoffs(ac, ad), [0.25, 0.55], atol=1e-6)
    np.testing.assert_allclose(neg.expected_payoffs(ad, ac), [0.55, 0.25], atol=1e-6)


def test_sampled_play_matches_expected():
    # 1024 episodes x 16 rounds; per-round s.d. <= 0.3, so s.e. < 0.003; allow 0.01.
    r = neg.play(jax.random.PRNGKey(0), neg.always_cooperate, neg.always_defect, 1024)
    np.testing.assert_allclose(r, [0.25, 0.55], atol=0.01)


def test_utilities_sum_to_six_and_are_1_or_5():
    u = jax.vmap(neg.draw_utilities)(jax.random.split(jax.random.PRNGKey(1), 1000))
    np.testing.assert_array_equal(u[:, 0] + u[:, 1], 6.0)
    assert set(np.unique(np.asarray(u[:, 0])).tolist()) == {1.0, 5.0}
    assert 0.45 < float(np.mean(np.asarray(u[:, 0]) == 5.0)) < 0.55


def test_continuous_variant_and_discrete_rounding():
    u = jnp.array([[5.0, 1.0, 1.0], [1.0, 5.0, 5.0]])
    a = jnp.array([[2.4, 1.0, 7.0], [1.5, 0.5, -1.0]])
    cont = neg.Params(continuous=True)
    _, s = neg.reset(jax.random.PRNGKey(0), cont)
    s = neg.State(utilities=u, last=s.last, t=s.t)
    _, s2, r, _, info = neg.step(jax.random.PRNGKey(1), s, a, cont)
    # clipped: [[2.4, 1, 5], [1.5, 0.5, 0]]; item sums 3.9, 1.5, 5 -> divisor 5 each.
    np.testing.assert_allclose(info["proposals"], [[2.4, 1.0, 5.0], [1.5, 0.5, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(r, [(2.4 / 5 * 5 + 1 / 5 * 1 + 1 * 1) / 15, (1.5 / 5 * 1 + 0.5 / 5 * 5) / 15], rtol=1e-6)
    # discrete: 2.4 -> 2, 1.5 -> 2 (round half to even), 0.5 -> 0
    _, _, r, _, info = neg.step(jax.random.PRNGKey(1), s, a, neg.Params())
    np.testing.assert_allclose(info["proposals"], [[2.0, 1.0, 5.0], [2.0, 0.0, 0.0]])
    np.testing.assert_allclose(r, [(2 / 5 * 5 + 1 / 5 * 1 + 1 * 1) / 15, (2 / 5 * 1) / 15], rtol=1e-6)
    # over-demand: 5 + 5 of an item -> divisor 10.
    np.testing.assert_allclose(neg.payoffs(jnp.array([[5.0, 0, 0], [5.0, 0, 0]]), u), [2.5 / 15, 0.5 / 15], rtol=1e-6)


def test_observations_own_point_of_view():
    u = jnp.array([[5.0, 1.0, 5.0], [1.0, 5.0, 1.0]])
    s = neg.State(utilities=u, last=jnp.array([[1.0, 2, 3], [4, 5, 0]]), t=jnp.int32(4))
    o = neg.observe(s)
    np.testing.assert_allclose(o[0], np.r_[[1, .2, 1], [.2, 1, .2], [.2, .4, .6], [.8, 1, 0], [0.25]], rtol=1e-6)
    np.testing.assert_allclose(o[1], np.r_[[.2, 1, .2], [1, .2, 1], [.8, 1, 0], [.2, .4, .6], [0.25]], rtol=1e-6)
    np.testing.assert_array_equal(neg.always_cooperate(o[0]), [5, 0, 5])
    np.testing.assert_array_equal(neg.always_cooperate(o[1]), [0, 5, 0])


def test_bad_input_raises():
    _, s = neg.reset(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="actions"):
        neg.step(jax.random.PRNGKey(0), s, jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="max_steps"):
        neg.Params(max_steps=0)

"""The IPD meta-game against independent references: the inner values against a float64
truncated power series of the Markov chain, the learners' steps against float64 finite
differences, the meta-episode's ordering against the exact-learner simulation, and the ZD
extortion strategy against its defining linear relation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.games import ipd
from lowrank_es.shaping import exact, meta_game as mg

GAMMA = ipd.GAMMA
R1 = np.array([-1.0, -3.0, 0.0, -2.0])
R2 = np.array([-1.0, 0.0, -3.0, -2.0])


def series_values(p1, p2, gamma=GAMMA, terms=1000):
    """float64 sum_t gamma^t d_t r, with d_t the joint-action distribution after t steps,
    built from the IPD's rules directly (player 2 sees the swapped state)."""
    p1, p2 = np.asarray(p1, np.float64), np.asarray(p2, np.float64)
    swap = [0, 2, 1, 3]

    def joint(q1, q2):
        return np.array([q1 * q2, q1 * (1 - q2), (1 - q1) * q2, (1 - q1) * (1 - q2)])

    d = joint(p1[0], p2[0])
    P = np.stack([joint(p1[1 + s], p2[1 + swap[s]]) for s in range(4)])
    v = np.zeros(2)
    for t in range(terms):
        v += gamma**t * np.array([d @ R1, d @ R2])
        d = d @ P
    return v


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def test_inner_rewards_match_power_series():
    key = jax.random.PRNGKey(0)
    a, b = jax.random.normal(key, (2, 6, 5)) * 1.5
    got = np.asarray(mg.rewards_per_step(a, b))
    want = np.stack([(1 - GAMMA) * series_values(sigmoid(x), sigmoid(y)) for x, y in zip(a, b)])
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_mutual_cooperation_and_defection_per_step():
    big = jnp.full((5,), 30.0)
    np.testing.assert_allclose(mg.rewards_per_step(big, big), [-1.0, -1.0], atol=1e-5)
    np.testing.assert_allclose(mg.rewards_per_step(-big, -big), [-2.0, -2.0], atol=1e-5)


def fd_grad(f, x, h=1e-5):
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def test_naive_learner_step_is_finite_difference_gradient():
    key = jax.random.PRNGKey(1)
    opp, shaper = np.asarray(jax.random.normal(key, (2, 5)), np.float64)
    cfg = mg.MetaGameConfig(lr=0.7)
    got = np.asarray(mg.opponent_update(jnp.asarray(opp), jnp.asarray(shaper), cfg))
    # The learner is player 2 of series_values(shaper, opp), seeing the game from its side.
    g = fd_grad(lambda o: series_values(sigmoid(shaper), sigmoid(o))[1], opp)
    np.testing.assert_allclose(got, opp + 0.7 * g, rtol=2e-3, atol=2e-3)


def test_lola_learner_without_lookahead_is_naive():
    key = jax.random.PRNGKey(2)
    opp, shaper = jax.random.normal(key, (2, 4, 5))
    update = jax.jit(mg.opponent_update, static_argnums=2)
    lola0 = update(opp, shaper, mg.MetaGameConfig(opponent="lola", lookahead=0.0))
    nl = update(opp, shaper, mg.MetaGameConfig(opponent="naive"))
    np.testing.assert_allclose(lola0, nl, rtol=1e-5, atol=1e-6)
    lola1 = update(opp, shaper, mg.MetaGameConfig(opponent="lola", lookahead=1.0))
    assert float(jnp.abs(lola1 - nl).max()) > 1e-3  # the shaping term is there


def test_rollout_of_a_fixed_policy_follows_the_exact_learner_simulation():
    cfg = mg.MetaGameConfig(meta_steps=7, lr=1.0)
    key = jax.random.PRNGKey(3)
    fixed = jnp.array([2.0, 1.0, -1.0, 0.5, -2.0])
    tr = mg.rollout(lambda obs: jnp.broadcast_to(fixed, (obs.shape[0], 5)), key, 3, cfg)
    opp0 = mg.reset(key, 3, cfg).opponent
    d_naive = functools.partial(exact.naive_direction, cfg=exact.ExactConfig())
    t_opp, _ = exact.simulate(d_naive, exact.fixed_direction, opp0, jnp.broadcast_to(fixed, (3, 5)), 1.0, 7)
    np.testing.assert_allclose(tr.opponent, jnp.swapaxes(exact.policy(t_opp[:, :7]), 0, 1), atol=1e-5)
    want = mg.rewards_per_step(jnp.broadcast_to(fixed, (7, 3, 5)), jnp.swapaxes(t_opp[:, :7], 0, 1))
    np.testing.assert_allclose(tr.rewards, want, atol=1e-5)
    np.testing.assert_allclose(tr.shaper, jnp.broadcast_to(exact.policy(fixed), (7, 3, 5)), atol=1e-6)


def test_meta_state_shows_the_last_episode():
    cfg = mg.MetaGameConfig(meta_steps=2)
    seen = []

    def spy(obs):
        seen.append(obs)
        return jnp.full((obs.shape[0], 5), 0.3)

    state = mg.reset(jax.random.PRNGKey(4), 2, cfg)
    s1, _ = mg.step(state, spy(state.obs), cfg)
    np.testing.assert_allclose(s1.obs[:, :5], jax.nn.sigmoid(0.3), atol=1e-6)
    np.testing.assert_allclose(s1.obs[:, 5:], jax.nn.sigmoid(state.opponent), atol=1e-6)


def test_selfplay_swapping_players_swaps_rewards_and_follows_a_plain_loop():
    cfg = mg.MetaGameConfig(meta_steps=5, init_std=0.0)  # equal (zero) initial logits
    pa = lambda obs: 3.0 * obs[:, :5] - obs[:, 5:]  # noqa: E731
    pb = lambda obs: obs[:, 5:] - 0.5  # noqa: E731
    key = jax.random.PRNGKey(5)
    ab = mg.selfplay_rollout(pa, pb, key, 4, cfg)
    ba = mg.selfplay_rollout(pb, pa, key, 4, cfg)
    np.testing.assert_allclose(ab.rewards, ba.rewards[..., ::-1], atol=1e-6)
    a = b = jnp.zeros((4, 5))
    for t in range(5):
        a, b = pa(mg.observe(a, b)), pb(mg.observe(b, a))
        np.testing.assert_allclose(ab.rewards[t], mg.rewards_per_step(a, b), atol=1e-5)


def test_naive_learner_baseline_follows_finite_difference_steps():
    """Both seats learn simultaneously with float64 finite-difference gradients."""
    cfg = mg.MetaGameConfig(meta_steps=3)
    key = jax.random.PRNGKey(6)
    tr = mg.learner_rollout("naive", key, 1, cfg, lr=0.5)
    s0 = mg.reset(key, 1, cfg)
    me = np.log(np.asarray(s0.obs[0, :5], np.float64)) - np.log1p(-np.asarray(s0.obs[0, :5], np.float64))
    opp = np.asarray(s0.opponent[0], np.float64)
    for t in range(3):
        np.testing.assert_allclose(tr.rewards[t, 0], (1 - GAMMA) * series_values(sigmoid(me), sigmoid(opp)), atol=1e-4)
        g_me = fd_grad(lambda x: series_values(sigmoid(x), sigmoid(opp))[0], me)
        g_opp = fd_grad(lambda x: series_values(sigmoid(me), sigmoid(x))[1], opp)
        me, opp = me + 0.5 * g_me, opp + 1.0 * g_opp


def long_run_rewards(p1, p2):
    """float64 average rewards per step under the stationary distribution of the chain (the
    undiscounted limit the ZD relation is about)."""
    p1, p2 = np.asarray(p1, np.float64), np.asarray(p2, np.float64)
    swap = [0, 2, 1, 3]
    P = np.stack([[p1[1 + s] * p2[1 + swap[s]], p1[1 + s] * (1 - p2[1 + swap[s]]),
                   (1 - p1[1 + s]) * p2[1 + swap[s]], (1 - p1[1 + s]) * (1 - p2[1 + swap[s]])] for s in range(4)])
    A = np.vstack([P.T - np.eye(4), np.ones(4)])
    d = np.linalg.lstsq(A, np.r_[np.zeros(4), 1.0], rcond=None)[0]
    return d @ R1, d @ R2


@pytest.mark.parametrize("chi", [1.5, 3.0])
def test_zd_extortion_enforces_its_linear_relation(chi):
    """Against any opponent, s_X - P = chi (s_Y - P) for long-run average rewards."""
    p = np.concatenate([[1.0], np.asarray(mg.zd_extortion(chi, 0.5 / (1 + 2 * chi)))])
    rng = np.random.default_rng(0)
    for _ in range(3):
        sx, sy = long_run_rewards(p, rng.uniform(0.05, 0.95, 5))
        np.testing.assert_allclose(sx + 2.0, chi * (sy + 2.0), atol=1e-5)


def test_fit_zd_recovers_chi_and_phi():
    p = jnp.concatenate([jnp.array([0.7]), mg.zd_extortion(4.0, 0.08)])
    chi, phi, err = mg.fit_zd(p)
    assert abs(float(chi) - 4.0) < 0.1 and abs(float(phi) - 0.08) < 2e-3 and float(err) < 2e-3
    # Tit-for-tat is the fair ZD strategy (chi = 1, phi = 1/3); always-cooperate is no ZD strategy.
    chi, phi, err = mg.fit_zd(jnp.array([1.0, 1.0, 0.0, 1.0, 0.0]))
    assert abs(float(chi) - 1.0) < 1e-6 and abs(float(phi) - 1 / 3) < 1e-4 and float(err) < 1e-4
    assert float(mg.fit_zd(jnp.ones(5))[2]) > 0.2


def test_bad_config_raises():
    with pytest.raises(ValueError, match="opponent"):
        mg.MetaGameConfig(opponent="ppo")
    with pytest.raises(ValueError, match="meta_steps"):
        mg.MetaGameConfig(meta_steps=0)
    with pytest.raises(ValueError, match="lr"):
        mg.MetaGameConfig(lr=0.0)
    with pytest.raises(ValueError, match="batch"):
        mg.reset(jax.random.PRNGKey(0), 0, mg.MetaGameConfig())
    with pytest.raises(ValueError, match="phi"):
        mg.zd_extortion(2.0, 0.5)

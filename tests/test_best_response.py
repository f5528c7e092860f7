"""Exact IPD best responses (vs brute force) and the MCTS best response in the Coin Game."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.shaping import best_response as br
from lowrank_es.games import coin, ipd


def _brute_force(p, gamma=ipd.GAMMA):
    """Best value over the 32 deterministic memory-1 responses (an optimal one exists among them)."""
    dets = br.deterministic_memory1_policies().astype(p.dtype)
    vals = jax.vmap(lambda q: ipd.exact_value(p, q, gamma)[1])(dets)
    return float(vals.max())


def test_best_response_matches_brute_force():
    with jax.enable_x64(True):
        f = jax.jit(br.ipd_best_response)
        key = jax.random.PRNGKey(0)
        agents = [jax.random.uniform(k, (5,), jnp.float64) for k in jax.random.split(key, 40)]
        agents += list(br.deterministic_memory1_policies().astype(jnp.float64))
        for p in agents:
            r = f(p)
            assert abs(float(r.value_response) - _brute_force(p)) < 1e-9
            # the returned policy is deterministic and its exact value is the reported one
            assert set(np.unique(np.asarray(r.policy))) <= {0.0, 1.0}
            v1, v2 = ipd.exact_value(p, r.policy)
            assert abs(float(v2) - float(r.value_response)) < 1e-9
            assert abs(float(v1) - float(r.value_agent)) < 1e-9


def test_best_response_other_discount():
    with jax.enable_x64(True):
        f = jax.jit(lambda p: br.ipd_best_response(p, 0.5))
        for k in jax.random.split(jax.random.PRNGKey(1), 10):
            p = jax.random.uniform(k, (5,), jnp.float64)
            r = f(p)
            assert abs(float(r.value_response) - _brute_force(p, 0.5)) < 1e-9


def test_known_best_responses():
    with jax.enable_x64(True):
        f = jax.jit(br.ipd_best_response)
        tft = jnp.array([1.0, 1.0, 0.0, 1.0, 0.0], jnp.float64)
        r = f(tft)
        # against TFT at gamma = 0.96 cooperating forever (-25) beats any defection
        assert abs(float(r.value_response) + 1.0 / (1 - ipd.GAMMA)) < 1e-9
        assert float(r.policy[0]) == 1.0 and float(r.policy[1]) == 1.0
        for name in ([1.0] * 5, [0.0] * 5, [0.5] * 5):
            r = f(jnp.array(name, jnp.float64))
            np.testing.assert_array_equal(np.asarray(r.policy), np.zeros(5))  # always defect
        e = br.ipd_exploitability(jnp.array([1.0] * 5, jnp.float64))
        assert abs(e["agent_vs_br"] + 3.0) < 1e-9 and abs(e["loss"] - 2.0) < 1e-9


def test_soft_best_response_tends_to_exact():
    with jax.enable_x64(True):
        exact_f = jax.jit(lambda p: br.ipd_best_response(p).value_response)
        soft_f = jax.jit(lambda p, tau: ipd.exact_value(p, br.ipd_soft_best_response(p, tau))[1])
        for k in jax.random.split(jax.random.PRNGKey(2), 5):
            p = jax.random.uniform(k, (5,), jnp.float64)
            exact = float(exact_f(p))
            prev = -np.inf
            for tau in (1.0, 0.1, 0.001):
                v = float(soft_f(p, tau))
                assert v <= exact + 1e-9
                prev = v
            assert abs(prev - exact) < 1e-2


def test_bad_inputs():
    with pytest.raises(ValueError, match="p_agent"):
        br.ipd_best_response(jnp.ones(4))
    with pytest.raises(ValueError, match="gamma"):
        br.ipd_best_response(jnp.ones(5), gamma=1.0)
    with pytest.raises(ValueError, match="tau"):
        br.ipd_soft_best_response(jnp.ones(5), tau=0.0)
    with pytest.raises(ValueError, match="kind"):
        br.scripted_agent("nice", 0)
    with pytest.raises(ValueError, match="num_simulations"):
        br.mcts_best_response_episode(jax.random.PRNGKey(0), br.scripted_agent("right", 0), num_simulations=0)


def test_scripted_probs_match_coin_sampler():
    """The distributions the MCTS player plans against are those of coin.scripted_action (Monte Carlo)."""
    n = 4000
    for i, kind in enumerate(("cooperative", "selfish", "random")):
        _, state = coin.reset(jax.random.PRNGKey(10 + i))
        probs = np.asarray(br.scripted_agent(kind, 0)(None, state))
        acts = jax.vmap(lambda k: coin.scripted_action(k, state, 0, kind))(jax.random.split(jax.random.PRNGKey(i), n))
        freq = np.bincount(np.asarray(acts), minlength=4) / n
        # 5 standard errors of a frequency with p <= 1/2
        assert np.max(np.abs(freq - probs)) < 5 * np.sqrt(0.25 / n)


def _state(me, agent, coin_pos, colour):
    return coin.State(pos=jnp.array([agent, me], jnp.int32), coin_pos=jnp.array(coin_pos, jnp.int32),
                      coin_colour=jnp.int32(colour), t=jnp.int32(0))


def test_mcts_takes_adjacent_coin():
    """Against an agent that always moves right from (2, 2) (landing on (2, 0)), the obvious best
    response of the MCTS player at (1, 1) is to step onto the adjacent coin."""
    agent = br.scripted_agent("right", 0)
    act = jax.jit(lambda k, s: br.mcts_action(k, s, agent, num_simulations=16, rollout_depth=2))
    for target, move in (((1, 2), 0), ((1, 0), 1), ((2, 1), 2), ((0, 1), 3)):
        for colour in (0, 1):
            s = _state((1, 1), (2, 2), target, colour)
            assert int(act(jax.random.PRNGKey(colour), s)) == move


def test_mcts_collects_coins_against_blind_agent():
    """Over whole episodes MCTS collects far more coins than a uniformly random player would
    (about 50 / 9 ≈ 5.6 per episode: the coin is on one of the 4 neighbouring cells at most)."""
    r = br.mcts_best_response_episode(jax.random.PRNGKey(0), br.scripted_agent("right", 0), n_episodes=4,
                                      num_simulations=8, rollout_depth=2)
    s = r.summary()
    assert s["mcts_coins_per_episode"] > 15
    assert s["mcts_reward"] > s["agent_reward"]

"""The ES rollout against manual gymnax stepping, the factored forward against materialised
members, observation statistics against numpy, and OpenES against evosax's Open_ES."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es import rl, stats
from lowrank_es.es.eggroll import EGGROLL
from lowrank_es.models.mlp import mlp_apply


def manual_episode(env, params, key, action, max_steps):
    """Step gymnax by hand with a constant action; return (return, length, terminated, truncated)."""
    obs, state = env.reset(jax.random.fold_in(key, 0), params)
    total = 0.0
    for t in range(max_steps):
        k = jax.random.fold_in(jax.random.fold_in(key, 1), t)
        obs, state, reward, term, trunc, _ = env.step(k, state, action, params)
        total += float(reward)
        if bool(term) or bool(trunc):
            return total, t + 1, bool(term), bool(trunc) and not bool(term)
    return total, max_steps, False, True


def const_policy(a):
    return lambda obs, key=None: jnp.full((obs.shape[0],), a, jnp.int32)


def test_constant_action_cartpole_terminates_like_manual_stepping():
    env, params, _ = rl.make_env("CartPole-v1")
    keys = jax.random.split(jax.random.key(7), 3)
    ro = rl.rollout(const_policy(1), env, params, keys, 500)
    for i in range(3):
        ret, length, term, trunc = manual_episode(env, params, keys[i], 1, 500)
        # pushing right always topples the pole within a few dozen steps; reward 1 per step
        assert term and not trunc and 5 < length < 60
        assert float(ro.returns[i]) == ret == length
        assert int(ro.lengths[i]) == length
    assert bool(ro.terminated.all()) and not bool(ro.truncated.any())


def test_truncation_flag_from_env_time_limit():
    env, params, _ = rl.make_env("CartPole-v1")
    params = params.replace(max_steps_in_episode=4)
    keys = jax.random.split(jax.random.key(1), 2)
    ro = rl.rollout(const_policy(0), env, params, keys, 50)
    np.testing.assert_array_equal(ro.returns, [4.0, 4.0])  # truncated at t = 4 before toppling
    assert bool(ro.truncated.all()) and not bool(ro.terminated.any())
    assert manual_episode(env, params, keys[0], 0, 50) == (4.0, 4, False, True)


def test_step_budget_counts_as_truncation():
    env, params, _ = rl.make_env("CartPole-v1")
    ro = rl.rollout(const_policy(1), env, params, jax.random.split(jax.random.key(2), 2), 3)
    np.testing.assert_array_equal(ro.returns, [3.0, 3.0])
    assert bool(ro.truncated.all())


def test_pendulum_continuous_return_matches_manual():
    env, params, spec = rl.make_env("Pendulum-v1")
    assert not spec.discrete and spec.action_high == 2.0
    keys = jax.random.split(jax.random.key(3), 2)
    ro = rl.rollout(lambda obs, key=None: jnp.full((obs.shape[0], 1), 0.7), env, params, keys, 200)
    for i in range(2):
        ret, length, term, trunc = manual_episode(env, params, keys[i], jnp.array([0.7]), 200)
        assert float(ro.returns[i]) == pytest.approx(ret, rel=1e-5)
        assert length == 200 and trunc and not term
    assert bool(ro.truncated.all())


def test_obs_stats_merge_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(2, 3, size=(50, 3)), rng.normal(-1, 1, size=(30, 3))
    s = rl.obs_stats_init(3)
    for x in (a, b):
        s = rl.obs_stats_merge(s, jnp.asarray(len(x), jnp.float32), jnp.asarray(x.sum(0), jnp.float32),
                               jnp.asarray((x**2).sum(0), jnp.float32))
    allx = np.concatenate([a, b])
    np.testing.assert_allclose(s.mean, allx.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s.m2 / s.count, allx.var(0), rtol=1e-3)


@pytest.mark.parametrize("rank", [2, None])
def test_factored_member_policy_equals_materialised(rank):
    _, _, spec = rl.make_env("CartPole-v1")
    params = rl.init_policy(jax.random.key(0), spec, (8, 8))
    es = EGGROLL(sigma=0.3, population=4, rank=rank, clip_rank=True)
    state = es.init(jax.random.key(1), params)
    obs = jax.random.normal(jax.random.key(2), (5, 4))
    for i in range(4):
        fact = mlp_apply(params, obs, es.member_noise(state, i))
        mat = mlp_apply(es.member_params(state, i), obs)
        np.testing.assert_allclose(fact, mat, rtol=1e-5, atol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="method"):
        rl.ESConfig(method="cmaes")
    with pytest.raises(ValueError, match="population"):
        rl.ESConfig(population=7)
    with pytest.raises(ValueError, match="env_id"):
        rl.make_env("NoSuchEnv-v0")


def test_openes_matches_evosax_open_es():
    """Same task, budget and seeds: final returns indistinguishable (Mann-Whitney, alpha 0.05),
    and both improve on the initial policy."""
    common = dict(env_id="CartPole-v1", rank=None, population=16, sigma=0.1, learning_rate=0.05, generations=6,
                  max_steps=200, hidden=(16,), eval_episodes=4, seeds=6)
    ours, _ = rl.train(rl.ESConfig(method="openes", **common))
    ref, _ = rl.train(rl.ESConfig(method="openes_evosax", **common))
    a = rl.final_returns(ours, "CartPole-v1", "OpenES")
    b = rl.final_returns(ref, "CartPole-v1", "OpenES (evosax)")
    first = np.array([r["eval_return"] for r in ours if r["generation"] == 1])
    assert stats.indistinguishable(a, b, alpha=0.05)["same"], (a, b)
    assert a.mean() > first.mean() and b.mean() > first.mean()


def test_tidy_table_helpers_on_synthetic_rows():
    rows = [{"env": "E", "method": "M", "seed": s, "generation": g, "env_steps": 10 * g, "seconds": 0.5 * g,
             "eval_return": float(g * (s + 1))} for s in range(2) for g in range(1, 5)]
    np.testing.assert_array_equal(rl.final_returns(rows, "E", "M"), [4.0, 8.0])
    np.testing.assert_array_equal(rl.final_returns(rows, "E", "M", last=2), [3.5, 7.0])
    # seed-mean returns per generation: 1.5, 3, 4.5, 6 -> first >= 4 at generation 3
    assert rl.time_to_threshold(rows, "E", "M", 4.0) == (30.0, 1.5)
    assert rl.time_to_threshold(rows, "E", "M", 100.0) == (None, None)
    with pytest.raises(ValueError, match="no rows"):
        rl.final_returns(rows, "E", "other")

"""The control tasks and the ES loop on them: rollouts against manual gymnax stepping, the
factored forward against materialised members, observation statistics against numpy, the
environment-step budget against an unbudgeted run, OpenES against evosax's Open_ES, and the
experiment's scores against hand-made records."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lowrank_es import stats
from lowrank_es.es.eggroll import EGGROLL
from lowrank_es.experiments import rl_analysis
from lowrank_es.models.mlp import mlp_apply
from lowrank_es.tasks import control as rl
from lowrank_es.tasks import control_es


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
    params = control_es.init_policy(jax.random.key(0), spec, (8, 8))
    es = EGGROLL(sigma=0.3, population=4, rank=rank, clip_rank=True)
    state = es.init(jax.random.key(1), params)
    obs = jax.random.normal(jax.random.key(2), (5, 4))
    for i in range(4):
        fact = mlp_apply(params, obs, es.member_noise(state, i))
        mat = mlp_apply(es.member_params(state, i), obs)
        np.testing.assert_allclose(fact, mat, rtol=1e-5, atol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="method"):
        control_es.ESConfig(method="cmaes")
    with pytest.raises(ValueError, match="population"):
        control_es.ESConfig(population=7)
    with pytest.raises(ValueError, match="env_steps"):
        control_es.ESConfig(env_steps=0)
    with pytest.raises(ValueError, match="env_id"):
        rl.make_env("NoSuchEnv-v0")
    with pytest.raises(ValueError, match="max_steps"):
        rl.episode_limit(rl.make_env("CartPole-v1")[2], 0)


SMALL = dict(env_id="CartPole-v1", population=8, sigma=0.1, learning_rate=0.05, max_steps=60, hidden=(8,),
             eval_episodes=2, final_episodes=4)


def test_budget_truncates_an_unbudgeted_run_at_the_last_generation_that_fits():
    """A seed with a budget follows the unbudgeted run exactly, then stops before the first
    generation that would take it past the budget."""
    free, _ = control_es.train(control_es.ESConfig(generations=8, **SMALL), [0, 1, 2])
    budget = int(np.median(free["env_steps"][:, 4]))
    capped, _ = control_es.train(control_es.ESConfig(generations=8, env_steps=budget, **SMALL), [0, 1, 2])
    fit = (free["env_steps"] <= budget).sum(axis=1)  # generations that fit, per seed
    # The loop stops after the first generation at which every seed is past its budget.
    assert capped["accepted"].shape[1] == min(8, fit.max() + 1)
    for s, k in enumerate(fit):
        assert capped["generations_used"][s] == k
        assert capped["final_steps"][s] == (free["env_steps"][s, k - 1] if k else 0) <= budget
        np.testing.assert_array_equal(capped["accepted"][s], np.arange(capped["accepted"].shape[1]) < k)
        np.testing.assert_allclose(capped["eval_return"][s, :k], free["eval_return"][s, :k])
    # The per-generation step count is the members' episode lengths: at most N * T.
    assert np.all(np.diff(free["env_steps"], axis=1) <= 8 * 60)


def test_sigma_and_learning_rate_are_state_one_compile_serves_every_value():
    """Configs that differ only in sigma or learning rate share one compiled generation (a
    widget's slider does not compile again) and still run with their own values: the state's
    sigma and step size are the config's, and one update equals that of a strategy built with
    them (plain ``optax.adam(lr)``, sigma as config)."""
    base = control_es.ESConfig(generations=2, **SMALL)
    other = dataclasses.replace(base, sigma=0.2, learning_rate=0.1)
    assert control_es.compiled(base) is control_es.compiled(other)
    assert control_es.compiled(dataclasses.replace(base, rank=2)) is not control_es.compiled(base)
    a, rs_a = control_es.train(base, [0, 1])
    b, rs_b = control_es.train(other, [0, 1])
    moved = [np.abs(np.asarray(x) - np.asarray(y)).max()
             for x, y in zip(jax.tree_util.tree_leaves(rs_a.es.params), jax.tree_util.tree_leaves(rs_b.es.params))]
    assert max(moved) > 1e-3  # the values reach the run: the two means went different ways
    for cfg, rs in ((base, rs_a), (other, rs_b)):
        np.testing.assert_allclose(np.asarray(rs.es.sigma), cfg.sigma, rtol=1e-7)
        np.testing.assert_allclose(np.asarray(rs.es.opt_state.hyperparams["learning_rate"]), cfg.learning_rate,
                                   rtol=1e-7)
    # One update through the state's values against a strategy with both baked in.
    cfg = other
    es = dataclasses.replace(base, method="eggroll").strategy()
    params = {"W": jax.random.normal(jax.random.PRNGKey(0), (6, 5)), "b": jnp.zeros(5)}
    fitness = jax.random.normal(jax.random.PRNGKey(1), (cfg.population,))
    st = es.init(jax.random.PRNGKey(2), params)
    st = es.with_sigma(st._replace(opt_state=control_es._with_learning_rate(st.opt_state, cfg.learning_rate)),
                       cfg.sigma)
    ref_es = EGGROLL(sigma=cfg.sigma, population=cfg.population, rank=cfg.rank, optimizer=optax.adam(cfg.learning_rate),
                     clip_rank=True)
    ref_st = ref_es.init(jax.random.PRNGKey(2), params)
    for _ in range(2):
        st, _ = es.tell(st, fitness)
        ref_st, _ = ref_es.tell(ref_st, fitness)
    for x, y in zip(jax.tree_util.tree_leaves(st.params), jax.tree_util.tree_leaves(ref_st.params)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_openes_matches_evosax_open_es():
    """Same task, budget and seeds: final returns indistinguishable (Mann-Whitney, alpha 0.05),
    and both improve on the initial policy."""
    common = dict(env_id="CartPole-v1", rank=None, population=16, sigma=0.1, learning_rate=0.05, generations=6,
                  max_steps=200, hidden=(16,), eval_episodes=4, final_episodes=8)
    ours, _ = control_es.train(control_es.ESConfig(method="openes", **common), range(6))
    ref, _ = control_es.train(control_es.ESConfig(method="openes_evosax", **common), range(6))
    a, b = ours["final_return"], ref["final_return"]
    assert stats.indistinguishable(a, b, alpha=0.05)["same"], (a, b)
    assert a.mean() > ours["initial_return"].mean() and b.mean() > ref["initial_return"].mean()


def synthetic_record(a_final, b_final, random=0.0):
    """A results record of the rl experiment with one environment and two methods."""
    def run(final):
        final = np.asarray(final, float)
        steps = np.array([[100, 200, 300, 300]] * len(final))
        ret = np.column_stack([final / 3, 2 * final / 3, final, np.full(len(final), np.nan)])
        return {"env_steps_budget": 300, "final_return": final, "initial_return": np.zeros(len(final)),
                "eval_return": ret, "env_steps": steps, "final_steps": steps[:, -1],
                "generations_used": np.full(len(final), 3)}

    return {"scale": "test", "data": {"random_return": {"E": random}, "ppo": {},
                                      "runs": {"E": {"EGGROLL r=1": run(a_final), "OpenES": run(b_final)}}}}


def test_parity_table_normalises_by_the_better_es_method_and_matches_welch():
    a = np.array([8.0, 9.0, 10.0, 11.0, 12.0])
    b = np.array([9.5, 10.0, 10.5, 11.0, 9.0])
    rec = synthetic_record(a, b, random=2.0)
    row = rl_analysis.parity_table(rec)["E"]
    best = max(a.mean(), b.mean())
    ref = stats.non_inferiority((a - 2) / (best - 2), (b - 2) / (best - 2), 0.10, 0.05)
    assert row["best"] == best and row["diff"] == pytest.approx(ref["diff"])
    assert row["non_inferior"] == ref["non_inferior"] and row["p_value"] == pytest.approx(ref["p_value"])
    clear = rl_analysis.parity_table(synthetic_record(b + 5, b, random=2.0))["E"]
    assert clear["non_inferior"] and clear["diff"] > 0


def test_curves_interpolate_from_the_initial_policy_and_measure_late_gain():
    rec = synthetic_record([3.0, 6.0], [3.0, 3.0])
    run = rec["data"]["runs"]["E"]["EGGROLL r=1"]
    grid = np.array([0.0, 50.0, 100.0, 250.0, 300.0])
    np.testing.assert_allclose(rl_analysis.seed_curves(run, grid), [[0, 0.5, 1, 2.5, 3], [0, 1, 2, 5, 6]])
    # Last quarter (225 -> 300 steps, the steps used) of the mean curve, normalised by best - random = 4.5.
    gain = rl_analysis.still_moving(rec)["E"]["EGGROLL r=1"]
    assert gain == pytest.approx((4.5 - 0.75 * 4.5) / 4.5)
    assert rl_analysis.steps_used(rec)["E"]["OpenES"] == (300, 300)


def test_power_table_uses_the_normalised_seed_spread_and_the_aggregate_claim_reads_its_interval():
    a = np.array([8.0, 9.0, 10.0, 11.0, 12.0])
    b = np.array([9.5, 10.0, 10.5, 11.0, 9.0])
    rec = synthetic_record(a, b, random=2.0)
    row = rl_analysis.power_table(rec)["E"]
    best = max(a.mean(), b.mean())
    sa, sb = ((a - 2) / (best - 2)).std(ddof=1), ((b - 2) / (best - 2)).std(ddof=1)
    assert row["sd_a"] == pytest.approx(sa) and row["sd_b"] == pytest.approx(sb) and row["seeds"] == 5
    assert row["power"] == pytest.approx(stats.non_inferiority_power(sa, sb, 5, 0.10))
    assert row["seeds_needed"] == stats.seeds_for_power(sa, sb, 0.10)
    from lowrank_es.claims import rl as rl_claims

    m = rl_claims.aggregate_parity(rec)
    diff, lo, hi = rl_analysis.aggregate(rec)["EGGROLL r=1 - OpenES"]
    assert m.measured == pytest.approx(lo) and m.details["interval_95"] == [round(lo, 4), round(hi, 4)]


def test_ppo_counts_as_a_reference_only_where_it_learned():
    rec = synthetic_record([10.0, 10.0], [10.0, 10.0], random=2.0)  # best 10, random 2
    for final, learned in ((9.0, True), (5.0, False)):
        rec["data"]["ppo"] = {"E": {"final_return": [final, final]}}
        assert rl_analysis.ppo_learned(rec, "E") is learned
    assert rl_analysis.ppo_learned(rec, "other") is False

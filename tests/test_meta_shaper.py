"""The meta-shaper's gradient-free update against a small materialised-noise reference: each
member's parameters built with ``eggroll.materialise``, its fitness from a plain (noise-free)
forward, the ES gradient summed member by member, and Adam applied by hand."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lowrank_es.es.eggroll import centered_ranks, materialise
from lowrank_es.shaping import meta_game as mg, meta_shaper as ms

TINY = ms.ShaperConfig(hidden=(6, 4), population=6, sigma=0.1, learning_rate=0.05, generations=2, batch=3,
                       eval_batch=4, eval_every=1, game=mg.MetaGameConfig(meta_steps=4))


def member_params(cfg, state):
    """Every member's materialised parameters (``eggroll.materialise`` of its noise)."""
    es = cfg.es()
    return [materialise(state.params, es.member_noise(state, i)) for i in range(cfg.population)]


def reference_update(cfg, state, members, f):
    """The ES step from materialised members and their fitness (N,): the gradient
    ``1/(N sigma) sum_i rank_i (theta_i - theta) / sigma`` summed member by member, then Adam."""
    w = centered_ranks(jnp.asarray(f))
    eps = [jax.tree_util.tree_map(lambda a, b: (a - b) / cfg.sigma, p, state.params) for p in members]
    g = jax.tree_util.tree_map(lambda *e: sum(wi * ei for wi, ei in zip(w, e)) / (cfg.population * cfg.sigma), *eps)
    opt = optax.adam(cfg.learning_rate)
    upd, _ = opt.update(jax.tree_util.tree_map(jnp.negative, g), opt.init(state.params), state.params)
    return optax.apply_updates(state.params, upd)


def assert_trees_close(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rank", [1, None])
def test_generation_matches_materialised_reference(rank):
    cfg = dataclasses.replace(TINY, rank=rank)
    es = cfg.es()
    state = es.init(jax.random.PRNGKey(0), ms.init_policy(jax.random.PRNGKey(1), cfg.hidden))
    key = jax.random.PRNGKey(2)
    new, fit_mean = jax.jit(lambda s: ms.generation_step(cfg, s, key))(state)
    k = jax.random.fold_in(key, state.generation)
    members = member_params(cfg, state)
    fitness = jax.jit(lambda p: mg.meta_return(ms.meta_policy(p), k, cfg.batch, cfg.game))
    f = jnp.array([fitness(p) for p in members])
    np.testing.assert_allclose(fit_mean, f.mean(), rtol=1e-5, atol=1e-6)
    assert_trees_close(new.params, reference_update(cfg, state, members, f))
    # Low rank: each member's perturbation of a matrix is rank 1.
    if rank == 1:
        e = materialise(state.params, es.member_noise(state, 3))[1]["W"] - state.params[1]["W"]
        assert np.linalg.matrix_rank(np.asarray(e), tol=1e-6) == 1


def test_selfplay_generation_matches_materialised_reference():
    cfg = dataclasses.replace(TINY, curriculum=2)
    es = cfg.es()
    # Generation 1 of a 2-generation curriculum: half naive-learner, half self-play fitness.
    one = jnp.asarray(1, jnp.int32)
    sa = es.init(jax.random.PRNGKey(0), ms.init_policy(jax.random.PRNGKey(1), cfg.hidden))._replace(generation=one)
    sb = es.init(jax.random.PRNGKey(3), ms.init_policy(jax.random.PRNGKey(4), cfg.hidden))._replace(generation=one)
    key = jax.random.PRNGKey(5)
    (na, nb), _ = jax.jit(lambda a, b: ms.selfplay_generation(cfg, (a, b), key))(sa, sb)
    k_sp, k_nl = jax.random.split(jax.random.fold_in(key, 1))
    lam = 0.5
    naive = dataclasses.replace(cfg.game, opponent="naive")
    pa, pb = member_params(cfg, sa), member_params(cfg, sb)

    @jax.jit
    def fit(a, b):
        r = mg.selfplay_rollout(ms.meta_policy(a), ms.meta_policy(b), k_sp, cfg.batch, cfg.game).rewards.mean((0, 1))
        nl = jnp.stack([mg.meta_return(ms.meta_policy(p), k_nl, cfg.batch, naive) for p in (a, b)])
        return lam * nl + (1 - lam) * r

    f = jnp.stack([fit(a, b) for a, b in zip(pa, pb)])
    assert_trees_close(na.params, reference_update(cfg, sa, pa, f[:, 0]))
    assert_trees_close(nb.params, reference_update(cfg, sb, pb, f[:, 1]))


def test_train_is_deterministic_and_shaped():
    out1 = ms.train(TINY, (0, 1))
    out2 = ms.train(TINY, (0, 1))
    assert out1["fitness"].shape == (2, 2) and out1["eval"].shape == (2, 3, 2)
    np.testing.assert_array_equal(out1["eval"], out2["eval"])
    assert not np.allclose(out1["eval"][0], out1["eval"][1])  # seeds differ


@pytest.mark.parametrize("sigma,lr", [(0.1, 0.05), (0.3, 0.01)])
def test_train_takes_sigma_and_step_size_as_state(sigma, lr):
    """Configs that differ in sigma or (constant) step size share one compiled training, and
    each trains as generation_step does with that sigma and step size as config."""
    cfg = dataclasses.replace(TINY, sigma=sigma, learning_rate=lr)
    assert ms._train_fn(cfg.compile_key(), 2) is ms._train_fn(TINY.compile_key(), 2)
    out = ms.train(cfg, (0, 1))
    for i, seed in enumerate((0, 1)):
        k = ms.seed_keys(seed)
        state = cfg.es().init(k["noise"], ms.init_policy(k["init"], cfg.hidden))
        step = jax.jit(lambda s: ms.generation_step(cfg, s, k["train"]))
        for _ in range(cfg.generations):
            state, _ = step(state)
        assert_trees_close(jax.tree_util.tree_map(lambda x: x[i], out["params"]), state.params)
    assert out["seconds"] > 0


def test_selfplay_weight_anneals():
    cfg = dataclasses.replace(TINY, generations=10, curriculum=4)
    w = [float(ms.selfplay_weight(cfg, jnp.asarray(g))) for g in range(6)]
    np.testing.assert_allclose(w, [1.0, 0.75, 0.5, 0.25, 0.0, 0.0])
    assert float(ms.selfplay_weight(dataclasses.replace(cfg, curriculum=0), jnp.asarray(0))) == 0.0


def test_bad_config_raises():
    with pytest.raises(ValueError, match="generations"):
        ms.ShaperConfig(generations=15, eval_every=10)
    with pytest.raises(ValueError, match="population"):
        ms.ShaperConfig(population=7)
    with pytest.raises(ValueError, match="curriculum"):
        ms.ShaperConfig(generations=10, eval_every=5, curriculum=11)

"""EGGROLL core against independent references: materialised matrices, moments, resumption."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.stats import rankdata

from lowrank_es.es import eggroll
from lowrank_es.es.eggroll import EGGROLL, load_checkpoint, save_checkpoint
from lowrank_es.models.mlp import mlp_apply, mlp_init
from lowrank_es.tasks.regression import regression_task, train_regression


def _setup(rank, population=8, antithetic=True, dtype=jnp.float64):
    key = jax.random.PRNGKey(3)
    params = mlp_init(key, (5, 7, 4), dtype)
    es = EGGROLL(sigma=0.3, population=population, rank=rank, antithetic=antithetic)
    return es, es.init(jax.random.PRNGKey(11), params)


@pytest.mark.parametrize("rank", [1, 3, None])
def test_factored_forward_equals_materialised(rank):
    with jax.enable_x64(True):
        es, state = _setup(rank)
        x = jax.random.normal(jax.random.PRNGKey(0), (6, 5), jnp.float64)
        for member in range(es.population):
            fast = mlp_apply(state.params, x, es.member_noise(state, member))
            ref = mlp_apply(es.member_params(state, member), x)
            np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-12)
        # The factored path must actually perturb: member outputs differ from the mean's.
        assert not np.allclose(mlp_apply(state.params, x), mlp_apply(state.params, x, es.member_noise(state, 0)))


def test_population_forward_vmaps_with_shared_input():
    with jax.enable_x64(True):
        es, state = _setup(2)
        x = jax.random.normal(jax.random.PRNGKey(0), (6, 5), jnp.float64)
        ys = jax.vmap(lambda i: mlp_apply(state.params, x, es.member_noise(state, i)))(jnp.arange(es.population))
        refs = np.stack([mlp_apply(es.member_params(state, i), x) for i in range(es.population)])
        np.testing.assert_allclose(ys, refs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rank,antithetic", [(1, True), (2, False), (None, True)])
@pytest.mark.parametrize("shaping", ["centered_rank", "zscore", "raw"])
def test_factored_gradient_equals_materialised_sum(rank, antithetic, shaping):
    with jax.enable_x64(True):
        es, state = _setup(rank, population=10, antithetic=antithetic)
        es = EGGROLL(sigma=es.sigma, population=10, rank=rank, antithetic=antithetic, fitness_shaping=shaping)
        fitness = jax.random.normal(jax.random.PRNGKey(5), (10,), jnp.float64)
        g = es.gradient(state, fitness)
        w = np.asarray(eggroll.shape_fitness(fitness, shaping))
        # Reference: (1 / (N sigma)) sum_i w_i (theta_i - theta) / sigma * sigma, from materialised members.
        ref = None
        for i in range(es.population):
            delta = jax.tree_util.tree_map(lambda a, b: (a - b) / es.sigma, es.member_params(state, i), state.params)
            term = jax.tree_util.tree_map(lambda d: w[i] * d / (es.population * es.sigma), delta)
            ref = term if ref is None else jax.tree_util.tree_map(jnp.add, ref, term)
        for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rank", [1, 3, None])
def test_state_sigma_gives_the_strategy_of_that_sigma(rank):
    """``with_sigma`` (a traced noise scale) gives the noise and the gradient of a strategy
    built with that sigma, under one compiled step for every sigma."""
    with jax.enable_x64(True):
        es, state = _setup(rank, population=10)
        fitness = jax.random.normal(jax.random.PRNGKey(5), (10,), jnp.float64)
        grad = jax.jit(lambda st, f: es.gradient(st, f))
        for sigma in (0.3, 0.02):
            direct = EGGROLL(sigma=sigma, population=10, rank=rank)
            via_state = es.with_sigma(state, sigma)
            assert float(es.sigma_of(via_state)) == pytest.approx(sigma, rel=1e-7)
            for i in (0, 3):
                for a, b in zip(jax.tree_util.tree_leaves(es.member_params(via_state, i)),
                                jax.tree_util.tree_leaves(direct.member_params(state, i))):
                    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
            for a, b in zip(jax.tree_util.tree_leaves(grad(via_state, fitness)),
                            jax.tree_util.tree_leaves(direct.gradient(state, fitness))):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
        assert grad._cache_size() == 1  # both sigmas ran the one compiled gradient
        new, _ = es.tell(es.with_sigma(state, 0.3), fitness)
        assert float(new.sigma) == pytest.approx(0.3, rel=1e-7)  # the state keeps its sigma
        for bad in (0.0, -1.0, float("nan")):
            with pytest.raises(ValueError, match="sigma"):
                es.with_sigma(state, bad)


def test_averaged_update_is_high_rank():
    with jax.enable_x64(True):
        m, n, r, N = 12, 9, 1, 8
        es = EGGROLL(sigma=1.0, population=N, rank=r, antithetic=False, fitness_shaping="raw")
        state = es.init(jax.random.PRNGKey(0), {"W": jnp.zeros((m, n))})
        g = es.gradient(state, jax.random.normal(jax.random.PRNGKey(1), (N,), jnp.float64))["W"]
        assert np.linalg.matrix_rank(np.asarray(g), tol=1e-9) == min(N * r, m, n)


@pytest.mark.parametrize("rank", [1, 2, 8])
def test_moments_of_lowrank_entries(rank):
    """Mean 0, variance 1 and fourth moment 3 + 6/r: the fingerprint of the 1/sqrt(r) scale.

    200k draws of an 8x8 matrix give 12.8M entries (not all independent: entries sharing a row
    of A or a column of B are correlated), so tolerances are set from the spread of the
    per-draw estimates (5 standard errors).
    """
    with jax.enable_x64(True):
        draws = 200_000
        es = EGGROLL(sigma=1.0, population=draws, rank=rank, antithetic=False)
        state = es.init(jax.random.PRNGKey(rank), {"W": jnp.zeros((8, 8))})
        E = jax.vmap(lambda i: eggroll.perturbation(es.member_noise(state, i)["W"]))(jnp.arange(draws))
        per_draw = np.asarray(E).reshape(draws, -1)
        for power, expected in [(1, 0.0), (2, 1.0), (4, 3.0 + 6.0 / rank)]:
            stat = (per_draw**power).mean(axis=1)
            se = stat.std(ddof=1) / np.sqrt(draws)
            assert abs(stat.mean() - expected) < 5 * se, (power, stat.mean(), expected, se)
        # The moments are those of the *low-rank* law, not of a Gaussian (the test can fail).
        if rank == 1:
            k4 = (per_draw**4).mean()
            assert abs(k4 - 3.0) > 1.0


def test_same_seed_bitwise_identical_update():
    es, _ = _setup(2, dtype=jnp.float32)
    params = mlp_init(jax.random.PRNGKey(3), (5, 7, 4))
    fitness = jnp.linspace(-1.0, 1.0, es.population)
    a, _ = es.tell(es.init(jax.random.PRNGKey(7), params), fitness)
    b, _ = es.tell(es.init(jax.random.PRNGKey(7), params), fitness)
    c, _ = es.tell(es.init(jax.random.PRNGKey(8), params), fitness)
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert any(
        not np.array_equal(np.asarray(x), np.asarray(z))
        for x, z in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(c.params))
    )


def test_noise_depends_on_generation_member_and_leaf():
    es, state = _setup(1, dtype=jnp.float32)
    n0 = es.member_noise(state, 0)
    n1 = es.member_noise(state, 1)  # the antithetic partner: same factors, opposite sign
    np.testing.assert_array_equal(n0[0]["W"].A, n1[0]["W"].A)
    assert float(n0[0]["W"].scale) == -float(n1[0]["W"].scale)
    n2 = es.member_noise(state, 2)
    assert not np.allclose(n0[0]["W"].A, n2[0]["W"].A)
    later = es.member_noise(state._replace(generation=state.generation + 1), 0)
    assert not np.allclose(n0[0]["W"].A, later[0]["W"].A)
    assert n0[0]["W"].A.shape != n0[1]["W"].A.shape or not np.allclose(n0[0]["W"].A, n0[1]["W"].A)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(sigma=0.0, population=8), "sigma"),
        (dict(sigma=-1.0, population=8), "sigma"),
        (dict(sigma=float("nan"), population=8), "sigma"),
        (dict(sigma=0.1, population=7), "population must be even"),
        (dict(sigma=0.1, population=1, antithetic=False), "population must be an integer >= 2"),
        (dict(sigma=0.1, population=8, rank=0), "rank must be an integer >= 1"),
        (dict(sigma=0.1, population=8, fitness_shaping="softmax"), "fitness_shaping"),
    ],
)
def test_bad_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EGGROLL(**kwargs)


def test_bad_inputs_raise_clear_errors():
    params = {"W": jnp.zeros((3, 5)), "b": jnp.zeros(3)}
    with pytest.raises(ValueError, match=r"rank must be in \[1, min\(m, n\)\] = \[1, 3\]"):
        EGGROLL(sigma=0.1, population=4, rank=4).init(jax.random.PRNGKey(0), params)
    es = EGGROLL(sigma=0.1, population=4, rank=2)
    state = es.init(jax.random.PRNGKey(0), params)
    with pytest.raises(ValueError, match=r"fitness must have shape \(population,\) = \(4,\)"):
        es.tell(state, jnp.zeros(5))
    with pytest.raises(ValueError, match="fitness must be finite"):
        es.tell(state, jnp.array([0.0, jnp.nan, 1.0, 2.0]))
    with pytest.raises(ValueError, match="does not match W"):
        eggroll.linear(jnp.zeros((2, 4)), params["W"])
    with pytest.raises(ValueError, match="floating point"):
        es.init(jax.random.PRNGKey(0), {"W": jnp.zeros((3, 5), jnp.int32)})
    # clip_rank lets a small output layer use its largest possible rank.
    clipped = EGGROLL(sigma=0.1, population=4, rank=4, clip_rank=True)
    assert clipped.leaf_rank((3, 5)) == 3


def test_step_skips_nonfinite_fitness_inside_jit():
    es = EGGROLL(sigma=0.1, population=4, rank=1)
    state = es.init(jax.random.PRNGKey(0), {"W": jnp.ones((3, 3))})
    new, metrics = jax.jit(lambda s: es.step(s, lambda p, n, i: jnp.where(i == 2, jnp.nan, 1.0)))(state)
    assert bool(metrics["nonfinite"])
    np.testing.assert_array_equal(new.params["W"], state.params["W"])
    assert int(new.generation) == 1


@pytest.mark.parametrize("rank", [1, None])
def test_optimises_regression_task(rank):
    """EGGROLL (r = 1) and OpenES both fit a linear-teacher regression to a stated loss."""
    task = regression_task(jax.random.PRNGKey(0), n_in=8, n_out=4, n_samples=256)
    history = train_regression(task, rank=rank, population=64, sigma=0.05, learning_rate=0.05,
                               generations=300, seed=0)
    assert history[0] > 0.5  # the untrained student is far from the teacher
    assert history[-1] < 0.05 * history[0], history[-1]


def test_checkpoint_resume_gives_same_parameters(tmp_path):
    task = regression_task(jax.random.PRNGKey(0), n_in=4, n_out=2, n_samples=64)
    es = EGGROLL(sigma=0.05, population=16, rank=1, optimizer=optax.adam(0.03))
    fitness = task.fitness_fn()
    step = jax.jit(lambda s: es.step(s, fitness)[0])
    state = es.init(jax.random.PRNGKey(1), task.init_params(jax.random.PRNGKey(2)))
    straight = state
    for _ in range(20):
        straight = step(straight)
    resumed = state
    for _ in range(8):
        resumed = step(resumed)
    save_checkpoint(tmp_path / "ckpt.npz", resumed)
    resumed = load_checkpoint(tmp_path / "ckpt.npz", like=state)
    for _ in range(12):
        resumed = step(resumed)
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="does not match template shape"):
        load_checkpoint(tmp_path / "ckpt.npz", like=es.init(jax.random.PRNGKey(1), {"W": jnp.zeros((3, 3)), "b": jnp.zeros(3)}))


def test_sharded_population_matches_unsharded():
    """The member axis sharded over 4 fake CPU devices gives the same update as one device."""
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        from lowrank_es.es.eggroll import EGGROLL
        from lowrank_es.models.mlp import mlp_apply, mlp_init
        assert len(jax.devices()) == 4, jax.devices()
        mesh = jax.make_mesh((4,), ("pop",), axis_types=(jax.sharding.AxisType.Auto,))
        es = EGGROLL(sigma=0.1, population=16, rank=2)
        state = es.init(jax.random.PRNGKey(0), mlp_init(jax.random.PRNGKey(1), (6, 8, 3)))
        x = jax.random.normal(jax.random.PRNGKey(2), (5, 6))
        fit = lambda p, n, i: -jnp.mean(mlp_apply(p, x, n) ** 2)
        plain = jax.jit(lambda s: es.step(s, fit)[0])(state)
        sharded_fn = jax.jit(lambda s: es.step(s, fit, mesh=mesh)[0])
        sharded = sharded_fn(state)
        hlo = sharded_fn.lower(state).compile().as_text()
        assert "all-reduce" in hlo or "reduce-scatter" in hlo or "all-gather" in hlo, "population not sharded"
        for a, b in zip(jax.tree_util.tree_leaves(plain.params), jax.tree_util.tree_leaves(sharded.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        print("SHARDED_OK")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "SHARDED_OK" in out.stdout, out.stderr[-3000:]


def test_sample_factors_shapes_and_errors():
    A, B = eggroll.sample_factors(jax.random.PRNGKey(0), 6, 4, 3)
    assert A.shape == (6, 3) and B.shape == (4, 3)
    for bad in (0, 5, 2.5):
        with pytest.raises(ValueError, match=r"rank must be an integer in \[1, min\(m, n\)\] = \[1, 4\]"):
            eggroll.sample_factors(jax.random.PRNGKey(0), 6, 4, bad)


@pytest.mark.parametrize("antithetic", [True, False])
@pytest.mark.parametrize("rank", [1, 3, None])
def test_map_members_draws_each_pair_once_with_member_noise_values(antithetic, rank):
    """map_members (noise drawn once per antithetic pair) gives every member exactly the noise of
    member_noise, and the member forward of the per-member reference."""
    es = EGGROLL(sigma=0.1, population=6, rank=rank, antithetic=antithetic)
    params = mlp_init(jax.random.PRNGKey(0), [5, 7, 4])
    state = es.init(jax.random.PRNGKey(1), params)
    xs = jax.random.normal(jax.random.PRNGKey(2), (6, 3, 5))
    noise = es.map_members(state, lambda p, n, i: n)
    ref = jax.vmap(lambda i: es.member_noise(state, i))(jnp.arange(6))
    for a, b in zip(jax.tree_util.tree_leaves(noise), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert es.map_members(state, lambda p, n, i: i).tolist() == list(range(6))
    out = jax.jit(lambda s, x: es.map_members(s, lambda p, n, i, xi: mlp_apply(p, xi, n), x))(state, xs)
    want = np.stack([np.asarray(mlp_apply(params, xs[i], es.member_noise(state, i))) for i in range(6)])
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-6)
    # the same, with every draw's noise precomputed
    draws = jax.vmap(es.pair_noise, (None, 0))(state, jnp.arange(es.num_pairs))
    given = es.map_members_given_noise(params, draws, lambda p, n, i, xi: mlp_apply(p, xi, n), xs)
    np.testing.assert_allclose(np.asarray(given), want, rtol=1e-5, atol=1e-6)
    # the antithetic partner is the same draw with the opposite sign
    if antithetic:
        for a, b in zip(jax.tree_util.tree_leaves(es.member_noise(state, 2)), jax.tree_util.tree_leaves(es.member_noise(state, 3))):
            if a.ndim:
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            else:
                assert float(a) == -float(b)


def test_map_members_rejects_inputs_without_the_population_axis():
    es = EGGROLL(sigma=0.1, population=4, rank=1)
    state = es.init(jax.random.PRNGKey(1), mlp_init(jax.random.PRNGKey(0), [3, 2]))
    with pytest.raises(ValueError, match="leading axis population = 4"):
        es.map_members(state, lambda p, n, i, x: x, jnp.zeros((3, 2)))


@pytest.mark.parametrize("f", [[3.0, 1.0, 2.0, 2.0], [500.0] * 6, [0.0, 0.0, 1.0, 0.0, 2.0, 2.0, 7.0, 7.0]])
def test_centered_ranks_give_tied_values_their_average_rank(f):
    want = (rankdata(f, method="average") - 1) / (len(f) - 1) - 0.5  # scipy as the independent reference
    np.testing.assert_allclose(np.asarray(eggroll.centered_ranks(jnp.asarray(f))), want, atol=1e-7)


def test_fully_tied_generation_does_not_move_the_mean():
    """CartPole at its cap ties every member: the update must be zero, not a random step."""
    es = EGGROLL(sigma=0.1, population=8, rank=1, optimizer=optax.sgd(1.0))
    state = es.init(jax.random.PRNGKey(0), {"W": jnp.ones((4, 3)), "b": jnp.zeros(4)})
    new, metrics = es.tell(state, jnp.full((8,), 500.0))
    assert float(metrics["grad_norm"]) == 0.0
    for a, b in zip(jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_frozen_leaves_get_no_noise_and_never_move():
    """Frozen leaves: None noise, zero gradient, unchanged by tell; the free leaves draw exactly
    what an unfrozen run draws, and the factored forward equals the materialised one."""
    with jax.enable_x64(True):
        es_all, state_all = _setup(2)
        frozen = (r"\[0\]\['W'\]",)  # the first layer's matrix
        es = EGGROLL(sigma=es_all.sigma, population=8, rank=2, frozen=frozen, optimizer=optax.sgd(1.0))
        state = es.init(jax.random.PRNGKey(11), state_all.params)
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state.params)[0]]
        frozen_paths = [p for p in paths if es.is_frozen(p)]
        assert len(frozen_paths) == 1 and len(paths) > 1
        x = jax.random.normal(jax.random.PRNGKey(0), (6, 5), jnp.float64)
        for member in range(es.population):
            noise = dict(jax.tree_util.tree_flatten_with_path(es.member_noise(state, member),
                                                              is_leaf=lambda n: n is None)[0])
            for p, n in noise.items():
                if jax.tree_util.keystr(p) in frozen_paths:
                    assert n is None
            np.testing.assert_allclose(mlp_apply(state.params, x, es.member_noise(state, member)),
                                       mlp_apply(es.member_params(state, member), x), rtol=1e-12, atol=1e-12)
        # a free leaf's draws are the unfrozen run's: their gradients agree to rounding
        fitness = jax.random.normal(jax.random.PRNGKey(5), (8,), jnp.float64)
        g, g_all = es.gradient(state, fitness), es_all.gradient(state_all, fitness)
        flat = jax.tree_util.tree_flatten_with_path(g)[0]
        flat_all = jax.tree_util.tree_leaves(g_all)
        for (p, a), b in zip(flat, flat_all):
            if jax.tree_util.keystr(p) in frozen_paths:
                assert not np.asarray(a).any()
            else:
                np.testing.assert_allclose(a, b, rtol=1e-12)
        new, _ = es.tell(state, fitness)
        for (p, a), b in zip(jax.tree_util.tree_flatten_with_path(new.params)[0], jax.tree_util.tree_leaves(state.params)):
            assert np.array_equal(a, b) == (jax.tree_util.keystr(p) in frozen_paths)


def test_frozen_patterns_are_checked_against_the_params():
    params = {"W": jnp.zeros((3, 5)), "b": jnp.zeros(3)}
    with pytest.raises(ValueError, match="frozen pattern 'emb' matches no leaf"):
        EGGROLL(sigma=0.1, population=4, frozen=("emb",)).init(jax.random.PRNGKey(0), params)
    with pytest.raises(ValueError, match="freezes every leaf"):
        EGGROLL(sigma=0.1, population=4, frozen=("W", "b")).init(jax.random.PRNGKey(0), params)
    with pytest.raises(ValueError, match="not a regular expression"):
        EGGROLL(sigma=0.1, population=4, frozen=("[",))
    with pytest.raises(ValueError, match="tuple of regular expressions"):
        EGGROLL(sigma=0.1, population=4, frozen="W")
    with pytest.raises(ValueError, match="estimator must be one of"):
        EGGROLL(sigma=0.1, population=4, estimator="official")


@pytest.mark.parametrize("antithetic", [True, False])
def test_hyperscale_estimator_is_the_official_update_from_materialised_members(antithetic):
    """estimator='hyperscale': (1 / sqrt(N)) sum_i f_i (theta_i - theta) = (sigma / sqrt(N)) sum_i f_i s_i E_i,
    from materialised members (no factored algebra), and sigma^2 sqrt(N) times the ES gradient."""
    with jax.enable_x64(True):
        _, state = _setup(2, population=10, antithetic=antithetic)
        es = EGGROLL(sigma=0.3, population=10, rank=2, antithetic=antithetic, fitness_shaping="raw",
                     estimator="hyperscale")
        grad_es = EGGROLL(sigma=0.3, population=10, rank=2, antithetic=antithetic, fitness_shaping="raw")
        f = jax.random.normal(jax.random.PRNGKey(5), (10,), jnp.float64)
        g = es.gradient(state, f)
        ref = jax.tree_util.tree_map(jnp.zeros_like, state.params)
        for i in range(10):
            ref = jax.tree_util.tree_map(lambda r, a, b: r + f[i] * (a - b) / np.sqrt(10), ref,
                                         es.member_params(state, i), state.params)
        for a, b, c in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref),
                           jax.tree_util.tree_leaves(grad_es.gradient(state, f))):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(a, c * 0.3**2 * np.sqrt(10), rtol=1e-10, atol=1e-13)

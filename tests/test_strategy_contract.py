"""One contract, every strategy: float EGGROLL, OpenES (``rank=None``) and integer EGGROLL satisfy
:class:`lowrank_es.es.protocol.Strategy` and pass the same checks.

Each strategy comes with its parameters, a fitness function of (params, noise, member) written
against its own layers, and the map from one leaf's noise to its materialised perturbation; the
checks themselves do not know which strategy they test."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.es import eggroll, integer
from lowrank_es.es.protocol import Strategy, StrategyState
from lowrank_es.models import mingru_int8
from lowrank_es.models.mlp import mlp_apply, mlp_init

N = 8


@dataclasses.dataclass(frozen=True)
class Case:
    strategy: Any
    params: Any
    fitness: Callable  # (params, noise, member) -> scalar
    perturbation: Callable  # one leaf's noise -> its dense perturbation
    is_noise: Callable


def _float_case(rank):
    x = jax.random.normal(jax.random.key(0), (6, 5))
    y = jax.random.normal(jax.random.key(1), (6, 3))
    params = mlp_init(jax.random.key(2), (5, 4, 3))
    es = eggroll.EGGROLL(sigma=0.1, population=N, rank=rank)
    fitness = lambda p, nz, i: -jnp.mean((mlp_apply(p, x, nz) - y) ** 2)
    return Case(es, params, fitness, eggroll.perturbation, lambda n: isinstance(n, (eggroll.LowRank, eggroll.Dense)))


def _int_case():
    params = mingru_int8.init_params(jax.random.key(3), 7, 4)
    windows = jnp.asarray(np.random.default_rng(0).integers(0, 7, (2, 6)), jnp.int32)
    es = integer.IntEGGROLL(population=N, rank=2, sigma_shift=2, threshold=0.0)
    fitness = lambda p, nz, i: mingru_int8.window_log_likelihood(p, windows, nz)
    return Case(es, params, fitness, integer.perturbation, integer.is_noise)


CASES = {"eggroll_rank2": lambda: _float_case(2), "openes": lambda: _float_case(None), "int_eggroll": _int_case}


@pytest.fixture(params=sorted(CASES), scope="module")
def case(request) -> Case:
    return CASES[request.param]()


def _perturbations(case: Case, state, member: int) -> list[np.ndarray]:
    noise = case.strategy.member_noise(state, jnp.int32(member))
    return [np.asarray(case.perturbation(n)) for n in jax.tree_util.tree_leaves(noise, is_leaf=case.is_noise)]


def test_satisfies_the_protocol(case):
    es = case.strategy
    assert isinstance(es, Strategy)
    state = es.init(jax.random.key(0), case.params)
    assert isinstance(state, StrategyState) and int(state.generation) == 0
    assert es.population == N and es.num_pairs == N // 2
    assert jax.tree_util.tree_structure(state.params) == jax.tree_util.tree_structure(case.params)


def test_antithetic_pairs_are_opposite(case):
    state = case.strategy.init(jax.random.key(0), case.params)
    for pair in range(N // 2):
        plus, minus = _perturbations(case, state, 2 * pair), _perturbations(case, state, 2 * pair + 1)
        for a, b in zip(plus, minus):
            np.testing.assert_array_equal(a, -b)
        assert any(np.abs(a).max() > 0 for a in plus)
    other = _perturbations(case, state, 2)
    assert any(not np.array_equal(a, b) for a, b in zip(_perturbations(case, state, 0), other))


def test_same_key_same_noise_other_key_other_noise(case):
    es = case.strategy
    a, b = es.init(jax.random.key(5), case.params), es.init(jax.random.key(5), case.params)
    c = es.init(jax.random.key(6), case.params)
    for m in (0, 3):
        for x, y, z in zip(_perturbations(case, a, m), _perturbations(case, b, m), _perturbations(case, c, m)):
            np.testing.assert_array_equal(x, y)
        assert any(not np.array_equal(x, z) for x, z in zip(_perturbations(case, a, m), _perturbations(case, c, m)))


def test_evaluate_returns_one_finite_fitness_per_member(case):
    es = case.strategy
    state = es.init(jax.random.key(0), case.params)
    f = jax.jit(lambda s: es.evaluate(s, case.fitness))(state)
    assert f.shape == (N,) and bool(jnp.all(jnp.isfinite(f.astype(jnp.float32))))
    assert len(np.unique(np.asarray(f))) > 1  # the members differ
    # member i's fitness is the fitness function at member i's noise (exact for the integer strategy;
    # a float program fused differently under jit and vmap may differ in the last bit)
    for i in (0, 5):
        one = case.fitness(state.params, es.member_noise(state, jnp.int32(i)), jnp.int32(i))
        np.testing.assert_allclose(np.asarray(f[i]), np.asarray(one), rtol=1e-6)


def test_tell_advances_the_generation_and_moves_the_mean(case):
    es = case.strategy
    state = es.init(jax.random.key(0), case.params)
    f = es.evaluate(state, case.fitness)
    new, metrics = es.tell(state, f)
    assert int(new.generation) == 1 and isinstance(metrics, dict)
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(new.params)))
    # the next generation draws new noise
    assert any(not np.array_equal(a, b) for a, b in zip(_perturbations(case, state, 0), _perturbations(case, new, 0)))


def test_step_equals_tell_of_evaluate(case):
    es = case.strategy
    state = es.init(jax.random.key(1), case.params)
    stepped, _ = jax.jit(lambda s: es.step(s, case.fitness))(state)
    told, _ = es.tell(state, es.evaluate(state, case.fitness))
    assert int(stepped.generation) == int(told.generation) == 1
    for a, b in zip(jax.tree_util.tree_leaves(stepped.params), jax.tree_util.tree_leaves(told.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_bad_fitness_is_a_clear_value_error(case):
    es = case.strategy
    state = es.init(jax.random.key(0), case.params)
    with pytest.raises(ValueError, match="fitness"):
        es.tell(state, jnp.zeros((N + 2,)))
    with pytest.raises(ValueError, match="fitness"):
        es.tell(state, jnp.zeros((N, 1)))
    with pytest.raises(ValueError, match="finite"):
        es.tell(state, jnp.zeros((N,)).at[3].set(jnp.nan))
    with pytest.raises(ValueError, match="fitness"):  # a fitness function that is not scalar
        es.evaluate(state, lambda p, nz, i: jnp.zeros((2,)))

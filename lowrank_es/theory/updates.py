"""Rank of the population-averaged EGGROLL update: a sum of ``N`` rank-``r`` matrices has rank
``min(N r, m, n)``, so the update is full rank although every perturbation is low rank."""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.es.eggroll import EGGROLL
from lowrank_es.theory.checks import check_positive_int


@functools.lru_cache(maxsize=32)
def _update_fn(population: int, rank: int, antithetic: bool):
    es = EGGROLL(sigma=1.0, population=population, rank=rank, antithetic=antithetic, fitness_shaping="raw")
    return es, jax.jit(es.gradient)


def _check(m: int, n: int, rank: int) -> None:
    for v, name in ((m, "m"), (n, "n"), (rank, "rank")):
        check_positive_int(v, name)
    if rank > min(m, n):
        raise ValueError(f"rank must be in [1, min(m, n)] = [1, {min(m, n)}], got {rank}")


def update_ranks(
    m: int, n: int, rank: int, populations: Sequence[int], *, seed: int = 0, antithetic: bool = False
) -> np.ndarray:
    """Numerical rank of one EGGROLL update ``1/(N sigma) sum_i f_i E_i`` (random fitness,
    float64, raw fitness) for each population size ``N`` in ``populations``.

    Each ``E_i`` has rank ``r``; the average of ``P`` independent draws (``P = N``, or ``N/2``
    with antithetic pairs) has rank ``min(P r, m, n)`` almost surely. Member noise depends only
    on (key, generation, member), so the ``N``-member update is the largest population's
    update with the fitness of members ``>= N`` set to zero (up to the factor ``N_max / N``):
    one compiled gradient serves every ``N``.
    """
    _check(m, n, rank)
    pops = [int(p) for p in populations]
    if not pops or min(pops) < 2 or (antithetic and any(p % 2 for p in pops)):
        raise ValueError(f"populations must be integers >= 2 (even when antithetic), got {list(populations)}")
    n_max = max(pops)
    es, grad = _update_fn(n_max, rank, antithetic)
    out = []
    with jax.enable_x64(True):
        key = jax.random.key(seed)
        state = es.init(jax.random.fold_in(key, 0), jnp.zeros((m, n), jnp.float64))
        fitness = jax.random.normal(jax.random.fold_in(key, 1), (n_max,), jnp.float64)
        for p in pops:
            g = np.asarray(grad(state, jnp.where(jnp.arange(n_max) < p, fitness, 0.0)), np.float64)
            out.append(int(np.linalg.matrix_rank(g)))
    return np.array(out)


def update_singular_values(m: int, n: int, rank: int, population: int, *, seed: int = 0,
                           antithetic: bool = False) -> np.ndarray:
    """Singular values, largest first, of one EGGROLL update (random raw fitness, float64) of
    an ``(m, n)`` matrix with ``population`` members: ``min(m, n)`` values, of which
    ``min(P r, m, n)`` are non-zero (see :func:`update_ranks`)."""
    _check(m, n, rank)
    es, grad = _update_fn(int(population), rank, antithetic)
    with jax.enable_x64(True):
        key = jax.random.key(seed)
        state = es.init(jax.random.fold_in(key, 0), jnp.zeros((m, n), jnp.float64))
        fitness = jax.random.normal(jax.random.fold_in(key, 1), (int(population),), jnp.float64)
        g = np.asarray(grad(state, fitness), np.float64)
    return np.linalg.svd(g, compute_uv=False)


def update_rank(m: int, n: int, rank: int, population: int, *, seed: int = 0, antithetic: bool = False) -> int:
    """Numerical rank of one EGGROLL update with ``population`` members (see :func:`update_ranks`)."""
    return int(update_ranks(m, n, rank, [population], seed=seed, antithetic=antithetic)[0])


def expected_update_rank(m: int, n: int, rank: int, population: int, *, antithetic: bool = False) -> int:
    """``min(P r, m, n)`` with ``P`` independent draws (``N``, or ``N/2`` antithetic)."""
    draws = population // 2 if antithetic else population
    return min(draws * rank, m, n)

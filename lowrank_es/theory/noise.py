"""Perturbations drawn by the optimiser itself, for the float64 Monte Carlo.

Every draw comes from :meth:`lowrank_es.es.eggroll.EGGROLL.member_noise` at ``sigma = 1`` and is
scaled by the noise's own ``scale`` (``LowRank.scale = sigma / sqrt(r)``): nothing here applies
``1/sqrt(r)`` itself, so the Monte Carlo checks the perturbation the optimiser really uses.

The optimiser only accepts ``r <= min(m, n)``; for larger ranks it is asked for the noise of a
``(max(m, r), max(n, r))`` matrix and the factors are cut to ``m`` and ``n`` rows (rows of a
standard normal factor are independent, so the cut factors have the law of an ``(m, n)`` draw).
Draws are a pure function of ``(key, generation, member)``.

``generator`` is the optimiser's noise generator (``EGGROLL(noise=...)``). The theory's default
is ``"prng"``: exact Gaussian factors, the law the closed forms are derived for. The
optimiser's own default (``"auto"``, a hashed table of Gaussian quantiles with the Gaussian's
first four moments) can be passed to check that what it runs has the same expected gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lowrank_es.es.eggroll import EGGROLL, ESState, LowRank, perturbation


#: The theory's generator: exact Gaussian factors.
GAUSSIAN = "prng"


@functools.lru_cache(maxsize=128)
def _sampler(m: int, n: int, rank: int | None, count: int, what: str, generator: str):
    es = EGGROLL(sigma=1.0, population=2, rank=rank, antithetic=False, noise=generator)
    rows, cols = (m, n) if rank is None else (max(m, rank), max(n, rank))

    @jax.jit
    def draw(key: jax.Array, generation: jax.Array) -> jax.Array:
        state = ESState(jnp.zeros((rows, cols), jnp.float64), (), key, generation)

        def one(i):
            noise = es.member_noise(state, i)
            if rank is None:
                return perturbation(noise)
            A, B = noise.A[:m], noise.B[:n]
            if what == "perturbation":
                return perturbation(LowRank(A, B, noise.scale))
            sB = noise.scale * B
            return sB @ sB.T

        return jax.vmap(one)(jnp.arange(count))

    return draw


def lowrank_draws(key: jax.Array, generation: jax.Array, count: int, m: int, n: int, rank: int,
                  generator: str = GAUSSIAN) -> jax.Array:
    """``count`` unit-sigma low-rank perturbations ``s A B^T`` (``s = LowRank.scale``). (count, m, n).

    Call inside ``jax.enable_x64(True)`` for float64 draws.
    """
    return _sampler(int(m), int(n), int(rank), int(count), "perturbation", generator)(
        key, jnp.asarray(generation, jnp.int32))


def lowrank_row_covariances(key: jax.Array, generation: jax.Array, count: int, m: int, n: int,
                            rank: int, generator: str = GAUSSIAN) -> jax.Array:
    """``C = s^2 B B^T`` of ``count`` low-rank draws (same draws as :func:`lowrank_draws`). (count, n, n).

    Given ``B``, each row of ``s A B^T`` is ``N(0, C)``, so ``Z C^(1/2)`` with a standard normal
    ``Z`` (m, n) has exactly the law of the low-rank perturbation (for Gaussian factors).
    """
    return _sampler(int(m), int(n), int(rank), int(count), "covariance", generator)(
        key, jnp.asarray(generation, jnp.int32))


def gaussian_draws(key: jax.Array, generation: jax.Array, count: int, m: int, n: int,
                   generator: str = GAUSSIAN) -> jax.Array:
    """``count`` unit-sigma full-rank perturbations (``EGGROLL(rank=None)``). (count, m, n)."""
    return _sampler(int(m), int(n), None, int(count), "perturbation", generator)(
        key, jnp.asarray(generation, jnp.int32))

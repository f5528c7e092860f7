"""Moments of one entry of ``E = A B^T / sqrt(r)``: exact values and a float64 Monte Carlo of
the entries the optimiser itself draws."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.theory.checks import check_integer_rank, check_positive_int, check_rank
from lowrank_es.theory.noise import lowrank_draws


def fourth_moment(rank: int | None) -> float:
    """``E[E_ij^4] = 3 + 6/r`` (``3`` for Gaussian noise, ``rank=None``)."""
    check_rank(rank)
    return 3.0 if rank is None else 3.0 + 6.0 / rank


def characteristic_function(t: np.ndarray, rank: int | None) -> np.ndarray:
    """``E[exp(i t E_ij)] = (1 + t^2/r)^(-r/2)``; ``exp(-t^2/2)`` for ``rank=None``."""
    check_rank(rank)
    t = np.asarray(t, np.float64)
    if rank is None:
        return np.exp(-0.5 * t**2)
    return (1.0 + t**2 / rank) ** (-rank / 2.0)


def entry_moments(rank: int, *, draws: int = 20000, seed: int = 0) -> dict[str, float]:
    """Float64 Monte Carlo ``E[E_11^2]`` and ``E[E_11^4]`` (with standard errors) of one entry of
    the unit-sigma perturbation drawn by ``EGGROLL.member_noise`` (its own ``1/sqrt(r)`` scale)."""
    check_integer_rank(rank)
    check_positive_int(draws, "draws", 2)
    with jax.enable_x64(True):
        E = lowrank_draws(jax.random.key(seed), jnp.int32(0), draws, 1, 1, rank)
        e = np.asarray(E[:, 0, 0], np.float64)
    root = math.sqrt(draws)
    return {
        "m2": float(np.mean(e**2)),
        "m2_se": float(np.std(e**2) / root),
        "m4": float(np.mean(e**4)),
        "m4_se": float(np.std(e**4) / root),
    }

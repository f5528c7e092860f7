"""Finite populations: the mean squared error of an ``N``-member ES gradient estimate splits
into the rank bias ``||g_r - g_inf||^2`` (O(1/r^2)) and the population variance (O(1/N))."""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.es.eggroll import EGGROLL, perturbation
from lowrank_es.theory.checks import check_positive_int, check_rank
from lowrank_es.theory.exact import expected_gradient
from lowrank_es.theory.montecarlo import mc_gradient
from lowrank_es.theory.problems import CLOSED_FORM, Problem, objective


def population_split(
    problem: Problem,
    sigma: float,
    ranks: Sequence[int],
    populations: Sequence[int],
    *,
    samples: int = 2**13,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Mean squared error of the ES gradient estimate with ``N`` members (antithetic, raw
    fitness) against the Gaussian expected gradient, split into bias^2 + variance.

    ``E||g_hat - g_inf||^2 = ||g_r - g_inf||^2 + tr(Cov_pair) / (N/2)``: bias^2 is exact
    (closed forms) and ``tr(Cov_pair)`` comes from ``samples`` Monte Carlo pairs per rank.
    Returns ``bias2 (R,)``, ``pair_variance (R,)``, ``variance (R, P)``, ``mse (R, P)``,
    ``bias_share (R, P)`` and the relative RMSE ``rel_rmse (R, P)``.
    """
    if problem.name not in CLOSED_FORM:
        raise ValueError(f"objective must be one of {CLOSED_FORM} (the bias needs a closed form), got {problem.name!r}")
    ranks = [int(r) for r in ranks]
    pops = np.array([int(p) for p in populations])
    for r in ranks:
        check_rank(r, "ranks")
    if len(pops) == 0 or np.any(pops < 2) or np.any(pops % 2):
        raise ValueError(f"populations must be even integers >= 2, got {list(populations)}")
    g_inf = expected_gradient(problem, sigma, None)
    bias2 = np.array([np.sum((expected_gradient(problem, sigma, r) - g_inf) ** 2) for r in ranks])
    pair_var = []
    for i, r in enumerate(ranks):
        est = mc_gradient(problem, sigma, r, samples=samples, seed=seed + i, control_variate=False)
        pair_var.append(float(np.sum(est.se**2) * est.samples))
    pair_var = np.array(pair_var)
    variance = pair_var[:, None] / (pops[None, :] // 2)
    mse = bias2[:, None] + variance
    return {
        "rank": np.array(ranks),
        "population": pops,
        "bias2": bias2,
        "pair_variance": pair_var,
        "variance": variance,
        "mse": mse,
        "bias_share": bias2[:, None] / mse,
        "rel_rmse": np.sqrt(mse) / np.linalg.norm(g_inf),
    }


def population_mse(
    problem: Problem, sigma: float, rank: int, population: int, *, repeats: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Directly measured ``E||g_hat - g_inf||^2`` (and its standard error) over ``repeats``
    independent EGGROLL gradient estimates with ``population`` members (antithetic, raw fitness).
    Needs ``rank <= min(m, n)`` (the optimiser's own constraint)."""
    if problem.name not in CLOSED_FORM:
        raise ValueError(f"objective must be one of {CLOSED_FORM}, got {problem.name!r}")
    check_positive_int(repeats, "repeats", 2)
    es = EGGROLL(sigma=float(sigma), population=population, rank=rank, antithetic=True, fitness_shaping="raw")
    g_inf = expected_gradient(problem, sigma, None)
    f = objective(problem.name, problem.omega)
    with jax.enable_x64(True):
        data = jax.tree_util.tree_map(jnp.asarray, problem.data)
        W = jnp.asarray(problem.W)

        def one(key):
            state = es.init(key, W)
            fit = es.evaluate(state, lambda p, noise, i: f(p + perturbation(noise), data))
            return es.gradient(state, fit)

        keys = jax.random.split(jax.random.key(seed), repeats)
        grads = np.asarray(jax.jit(jax.vmap(one))(keys), np.float64)
    err = np.sum((grads - g_inf) ** 2, axis=(1, 2))
    return float(err.mean()), float(err.std(ddof=1) / math.sqrt(repeats))

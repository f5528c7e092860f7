"""Unbiased float64 Monte Carlo of the expected ES gradient ``E[f(W + sigma X) X] / sigma`` and
of the low-rank gap ``g_r - g_inf``, with the optimiser's own perturbations
(:mod:`lowrank_es.theory.noise`)."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.theory.checks import check_integer_rank, check_positive_int, check_rank, check_sigma
from lowrank_es.theory.noise import GAUSSIAN, gaussian_draws, lowrank_draws, lowrank_row_covariances
from lowrank_es.theory.problems import Problem, objective, true_gradient

#: Seed offsets of the two noises, so a low-rank and a Gaussian draw never share a key.
LOWRANK_STREAM, GAUSSIAN_STREAM = 1, 2


def sqrt_psd(C: jax.Array) -> jax.Array:
    """Symmetric square root of a positive semi-definite matrix (negative round-off clipped)."""
    evals, evecs = jnp.linalg.eigh(C)
    return (evecs * jnp.sqrt(jnp.clip(evals, 0.0))) @ evecs.T


@functools.lru_cache(maxsize=64)
def _kernel(name: str, omega: float, mode: str):
    """Jitted per-block kernel: the block means of the per-draw estimates and of their squares.

    mode: ``plain`` (f E / sigma, antithetic), ``cv`` (minus the linear control variate),
    ``gap`` (coupled difference low-rank minus Gaussian, with control variates).
    The noise is an argument, so one compiled kernel serves every rank.
    """
    f = objective(name, omega)

    def one(W, data, G, sigma, X):
        fbar = 0.5 * (f(W + sigma * X, data) - f(W - sigma * X, data))
        if mode == "plain":
            return (fbar / sigma) * X
        return (fbar / sigma - jnp.sum(G * X)) * X

    @jax.jit
    def run(W, data, G, sigma, X, C):
        if mode == "gap":
            # Given B, the rows of E are N(0, C): E = Z C^(1/2) has the law of the low-rank draw
            # and stays close to Z, so the difference has far less variance than two estimates.
            E = X @ jax.vmap(sqrt_psd)(C)
            y = jax.vmap(lambda e, z: one(W, data, G, sigma, e) - one(W, data, G, sigma, z))(E, X)
        else:
            y = jax.vmap(lambda x: one(W, data, G, sigma, x))(X)
        return y.mean(0), (y**2).mean(0)

    return run


@dataclasses.dataclass(frozen=True)
class MCEstimate:
    """A Monte Carlo estimate ``mean`` (m, n) with per-entry standard errors ``se`` (m, n).

    ``chunk_means`` (chunks, m, n) are the means of independent blocks of draws, used for the
    norm's uncertainty.
    """

    mean: np.ndarray
    se: np.ndarray
    samples: int
    chunk_means: np.ndarray

    def norm(self) -> tuple[float, float]:
        """Unbiased-in-square estimate of ``||E[estimate]||_F`` and its standard error.

        ``||mean||^2 - sum(se^2)`` is unbiased for the squared norm. Its variance is
        ``4 mean^T Cov mean / M + 2 tr(Cov_mean^2)``: the first term from the spread of
        ``<mean, block mean>`` over blocks, the second (which matters when the norm is
        comparable to the noise) from the block means as well; the delta method turns it into
        a standard error of the norm.
        """
        sq = float(np.sum(self.mean**2) - np.sum(self.se**2))
        value = math.sqrt(max(sq, 0.0))
        proj = np.tensordot(self.chunk_means, self.mean, axes=([1, 2], [0, 1]))
        k = len(proj)
        # tr(Cov_mean^2): the larger of the diagonal value and the block-means estimate
        # (entries of one draw are correlated, which the diagonal alone would miss).
        c = (self.chunk_means - self.chunk_means.mean(0)).reshape(k, -1)
        gram = c @ c.T
        tr_cov2 = max(float(np.sum(self.se**4)), float(np.sum(gram**2)) / (k * (k - 1)) ** 2)
        var_sq = 4.0 * float(np.var(proj, ddof=1)) / k + 2.0 * tr_cov2
        se_sq = math.sqrt(var_sq)
        se = se_sq / (2.0 * value) if value > math.sqrt(se_sq) else math.sqrt(se_sq)
        return value, se


def _run_mc(problem: Problem, sigma: float, rank: int | None, samples: int, seed: int, mode: str, chunk: int,
            generator: str = GAUSSIAN):
    check_sigma(sigma)
    check_rank(rank)
    check_positive_int(samples, "samples", 2)
    check_positive_int(chunk, "chunk")
    chunks = max(2, -(-samples // chunk))
    chunk = -(-samples // chunks)
    m, n = problem.shape
    G = true_gradient(problem) if mode != "plain" else np.zeros((m, n))
    kernel = _kernel(problem.name, problem.omega, mode)
    key = jax.random.key(seed)
    k_low, k_gauss = jax.random.fold_in(key, LOWRANK_STREAM), jax.random.fold_in(key, GAUSSIAN_STREAM)
    means, sqs = [], []
    with jax.enable_x64(True):
        data = jax.tree_util.tree_map(jnp.asarray, problem.data)
        args = (jnp.asarray(problem.W), data, jnp.asarray(G), jnp.float64(sigma))
        for block in range(chunks):
            C = None
            if mode == "gap":
                X = gaussian_draws(k_gauss, block, chunk, m, n)
                C = lowrank_row_covariances(k_low, block, chunk, m, n, rank)
            elif rank is None:
                X = gaussian_draws(k_gauss, block, chunk, m, n, generator)
            else:
                X = lowrank_draws(k_low, block, chunk, m, n, rank, generator)
            mean_b, sq_b = kernel(*args, X, C)
            means.append(np.asarray(mean_b, np.float64))
            sqs.append(np.asarray(sq_b, np.float64))
    means, sqs = np.stack(means), np.stack(sqs)
    total = chunk * chunks
    mean = means.mean(0)
    var = np.maximum(sqs.mean(0) - mean**2, 0.0) * total / (total - 1)
    return mean, np.sqrt(var / total), total, means, G


def mc_gradient(
    problem: Problem,
    sigma: float,
    rank: int | None,
    *,
    samples: int = 2**14,
    seed: int = 0,
    control_variate: bool = True,
    chunk: int = 1024,
    generator: str = GAUSSIAN,
) -> MCEstimate:
    """Unbiased float64 Monte Carlo estimate of ``E[f(W + sigma E) E] / sigma``.

    Each draw is antithetic, ``(f(W + sigma E) - f(W - sigma E)) / (2 sigma) E``; with
    ``control_variate`` the term ``<grad f(W), E> E`` (whose mean is exactly ``grad f(W)`` for
    both noises, by identity covariance) is subtracted and its mean added back.
    ``rank=None`` draws full-rank noise. ``generator``: the optimiser's noise generator
    (:mod:`lowrank_es.theory.noise`). Returns an :class:`MCEstimate`.
    """
    mode = "cv" if control_variate else "plain"
    mean, se, total, means, G = _run_mc(problem, sigma, rank, samples, seed, mode, chunk, generator)
    if control_variate:
        mean, means = mean + G, means + G
    return MCEstimate(mean, se, total, means)


def mc_gap(
    problem: Problem, sigma: float, rank: int, *, samples: int = 2**14, seed: int = 0, chunk: int = 1024
) -> MCEstimate:
    """Unbiased float64 Monte Carlo estimate of ``g_r - g_inf`` from coupled draws.

    The Gaussian draw ``Z`` and the low-rank draw share randomness: with ``C = s^2 B B^T`` from
    the optimiser's low-rank noise, ``E = Z C^(1/2)`` has exactly the law of ``s A B^T``, and
    ``E - Z = O(1/sqrt(r))``, so the difference has far less variance than two independent
    estimates. The identity needs Gaussian factors, so the draws use the Gaussian generator.
    """
    check_integer_rank(rank)
    mean, se, total, means, _ = _run_mc(problem, sigma, rank, samples, seed, "gap", chunk)
    return MCEstimate(mean, se, total, means)


def noise_ratio(problem: Problem, sigma: float, rank: int | None, reference: np.ndarray, *, samples: int = 2**14,
                seed: int = 0, control_variate: bool = False, generator: str = GAUSSIAN) -> float:
    """``||g_hat - reference||^2 / sum(SE^2)`` of a Monte Carlo estimate ``g_hat`` (antithetic; by
    default without the control variate): about 1 when ``reference`` is the expected gradient
    and the only difference is Monte Carlo noise; it grows with ``samples`` when there is a
    real gap."""
    est = mc_gradient(problem, sigma, rank, samples=samples, seed=seed, control_variate=control_variate,
                      generator=generator)
    return float(np.sum((est.mean - np.asarray(reference)) ** 2) / np.sum(est.se**2))

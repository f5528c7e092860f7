"""Exact expected ES gradients ``g_r = E[f(W + sigma E) E] / sigma`` of the closed-form
objectives (see ``theory/low_rank_convergence.md`` for the derivations).

- ``quadratic``: ``g_r = grad f(W)`` at every rank.
- ``quartic``: ``g_r = 4 W^3 + 4 sigma^2 (3 + 6/r) W``.
- ``cosine``: ``g_r = -omega sin(omega W) (1 + omega^2 sigma^2 / r)^(-(r/2 + 1))``.
- ``bump``: by quadrature over the scale mixture (:func:`separable_expected_gradient`).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.integrate
import scipy.special
import scipy.stats

from lowrank_es.theory.checks import check_integer_rank, check_positive_int, check_rank, check_sigma
from lowrank_es.theory.moments import fourth_moment
from lowrank_es.theory.problems import CLOSED_FORM, Problem


def expected_gradient(problem: Problem, sigma: float, rank: int | None) -> np.ndarray:
    """Exact ``E[f(W + sigma E) E] / sigma`` for rank-``r`` noise (``rank=None``: Gaussian). (m, n).

    Closed forms exist for ``quadratic``, ``quartic``, ``cosine`` and ``bump``; ``mlp`` raises
    ValueError (use :func:`lowrank_es.theory.mc_gradient`).
    """
    check_sigma(sigma)
    check_rank(rank)
    W = problem.W
    if problem.name == "quadratic":
        # Second moments of E equal the Gaussian ones and odd moments vanish: g = grad f(W).
        K, L, Ws = problem.data["K"], problem.data["L"], problem.data["Wstar"]
        return -(K.T @ K @ (W - Ws) @ L @ L.T)
    if problem.name == "quartic":
        return 4.0 * W**3 + 4.0 * sigma**2 * fourth_moment(rank) * W
    if problem.name == "cosine":
        w = problem.omega
        x = (w * sigma) ** 2
        factor = math.exp(-0.5 * x) if rank is None else (1.0 + x / rank) ** (-(rank / 2.0 + 1.0))
        return -w * np.sin(w * W) * factor
    if problem.name == "bump":
        return separable_expected_gradient(bump_smoothed_derivative, W, sigma, rank)
    raise ValueError(
        f"objective {problem.name!r} has no closed form; closed forms exist for {CLOSED_FORM} (use mc_gradient)"
    )


def bump_smoothed_derivative(w: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """``E_z[phi'(w + tau z)]`` for ``phi(w) = exp(-w^2/2)``: ``-w (1+tau^2)^(-3/2) exp(-w^2 / (2 (1+tau^2)))``."""
    v = 1.0 + tau**2
    return -w * v**-1.5 * np.exp(-0.5 * w**2 / v)


def separable_expected_gradient(
    smoothed_derivative: Callable[[np.ndarray, np.ndarray], np.ndarray],
    W: np.ndarray,
    sigma: float,
    rank: int | None,
    *,
    nodes: int = 96,
) -> np.ndarray:
    """Expected ES gradient of a separable ``f(W) = sum_ij phi(W_ij)`` by quadrature.

    ``smoothed_derivative(w, tau) = E_z[phi'(w + tau z)]`` (``z`` standard normal) is the
    Gaussian-smoothed derivative, broadcasting over arrays. Given ``B``, one entry of
    ``E = A B^T / sqrt(r)`` is ``N(0, u)`` with ``u = ||b||^2 / r``; Stein's identity and
    size-biasing give ``g_r(w) = E_u[smoothed_derivative(w, sigma sqrt(u))]`` with
    ``u ~ Gamma(shape r/2 + 1, scale 2/r)``, computed with generalised Gauss-Laguerre
    quadrature (``nodes`` and ``2 nodes`` points; adaptive quadrature when they disagree).
    ``rank=None``: ``smoothed_derivative(W, sigma)``.
    """
    check_sigma(sigma)
    check_rank(rank)
    check_positive_int(nodes, "nodes", 2)
    W = np.asarray(W, np.float64)
    if rank is None:
        return np.asarray(smoothed_derivative(W, np.float64(sigma)), np.float64)

    def laguerre(k: int) -> np.ndarray:
        v, wts = scipy.special.roots_genlaguerre(k, rank / 2.0)
        return smoothed_derivative(W[..., None], sigma * np.sqrt(2.0 * v / rank)) @ (wts / wts.sum())

    coarse, fine = laguerre(nodes), laguerre(2 * nodes)
    scale = max(float(np.abs(fine).max()), 1e-300)
    if float(np.abs(fine - coarse).max()) <= 1e-11 * scale:
        return np.asarray(fine, np.float64)
    # Slow Gauss-Laguerre convergence (a singularity of the integrand near u = 0): adaptive.
    gamma = scipy.stats.gamma(a=rank / 2.0 + 1.0, scale=2.0 / rank)
    hi = float(gamma.isf(1e-17))
    res, _ = scipy.integrate.quad_vec(
        lambda u: smoothed_derivative(W, sigma * math.sqrt(u)) * gamma.pdf(u), 0.0, hi, epsabs=0.0, epsrel=1e-12
    )
    return np.asarray(res, np.float64)


def relative_error(problem: Problem, sigma: float, rank: int) -> float:
    """Exact ``||g_r - g_inf||_F / ||g_inf||_F`` (closed-form objectives only)."""
    check_integer_rank(rank)
    g_inf = expected_gradient(problem, sigma, None)
    g_r = expected_gradient(problem, sigma, rank)
    return float(np.linalg.norm(g_r - g_inf) / np.linalg.norm(g_inf))

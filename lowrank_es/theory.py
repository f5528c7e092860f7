"""How fast low-rank ES approaches full-rank (Gaussian) ES: exact expectations and float64
Monte Carlo (see ``theory/low_rank_convergence.md`` for the derivation).

For a matrix ``W`` (shape ``(m, n)``) and an objective ``f``, the expected ES gradient with
perturbation ``E`` is ``g(W) = E[f(W + sigma E) E] / sigma``. Low-rank ES uses
``E = A B^T / sqrt(r)`` (``A: (m, r)``, ``B: (n, r)`` standard normal); full-rank ES uses a
standard normal ``Z``. Both have identity covariance, so ``g_r - g_inf`` starts at the fourth
cumulant of ``E``, which is ``O(1/r)``.

Everything here runs in float64 (inside ``jax.enable_x64``); noise is drawn with
:meth:`lowrank_es.es.eggroll.EGGROLL.member_noise`, the sampler the optimiser itself uses.

Objectives (``make_problem``):

- ``quadratic``: ``f(W) = -1/2 ||K (W - W*) L||_F^2`` (not separable): no gap at any ``r``.
- ``quartic``: ``f(W) = sum_ij W_ij^4``: ``g_r = 4 W^3 + 4 sigma^2 (3 + 6/r) W``.
- ``cosine``: ``f(W) = sum_ij cos(omega W_ij)``:
  ``g_r = -omega sin(omega W) (1 + omega^2 sigma^2 / r)^(-(r/2 + 1))``.
- ``bump``: ``f(W) = sum_ij exp(-W_ij^2 / 2)``: exact by quadrature over the scale mixture
  (:func:`separable_expected_gradient`).
- ``mlp``: minus the squared error of a one-hidden-layer tanh network whose first layer is
  ``W``, on a fixed batch (Monte Carlo only).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate
import scipy.special
import scipy.stats

from lowrank_es.es.eggroll import EGGROLL, ESState
from lowrank_es.models.mlp import mlp_apply

OBJECTIVES = ("quadratic", "quartic", "cosine", "bump", "mlp")
#: Objectives whose expected gradients are exact (closed forms; ``bump`` by 1-D quadrature).
CLOSED_FORM = ("quadratic", "quartic", "cosine", "bump")
NON_QUADRATIC = ("quartic", "cosine", "bump", "mlp")


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def _check_rank(rank: int | None, name: str = "rank") -> None:
    if rank is not None and (not isinstance(rank, (int, np.integer)) or rank < 1):
        raise ValueError(f"{name} must be an integer >= 1 (or None for Gaussian noise), got {rank!r}")


def _check_sigma(sigma: float) -> None:
    if not (isinstance(sigma, (int, float, np.floating)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")


def _check_positive_int(value: int, name: str, low: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


# ---------------------------------------------------------------------------
# Moments of one entry of E = A B^T / sqrt(r)
# ---------------------------------------------------------------------------


def fourth_moment(rank: int | None) -> float:
    """``E[E_ij^4] = 3 + 6/r`` (``3`` for Gaussian noise, ``rank=None``)."""
    _check_rank(rank)
    return 3.0 if rank is None else 3.0 + 6.0 / rank


def characteristic_function(t: np.ndarray, rank: int | None) -> np.ndarray:
    """``E[exp(i t E_ij)] = (1 + t^2/r)^(-r/2)``; ``exp(-t^2/2)`` for ``rank=None``."""
    _check_rank(rank)
    t = np.asarray(t, np.float64)
    if rank is None:
        return np.exp(-0.5 * t**2)
    return (1.0 + t**2 / rank) ** (-rank / 2.0)


# ---------------------------------------------------------------------------
# Objectives
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """An objective ``f`` and the point ``W`` (``(m, n)``, float64) where gradients are compared.

    ``data`` holds the objective's fixed arrays (all numpy float64).
    """

    name: str
    W: np.ndarray
    data: dict[str, np.ndarray]
    omega: float = 1.0

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.W.shape)

    def f(self, W: jax.Array) -> jax.Array:
        """The objective at ``W`` (``(m, n)`` -> scalar); jax-traceable."""
        return _objective(self.name, self.omega)(W, self.data)


def _objective(name: str, omega: float) -> Callable[[jax.Array, dict], jax.Array]:
    if name == "quadratic":
        return lambda W, d: -0.5 * jnp.sum((d["K"] @ (W - d["Wstar"]) @ d["L"]) ** 2)
    if name == "quartic":
        return lambda W, d: jnp.sum(W**4)
    if name == "cosine":
        return lambda W, d: jnp.sum(jnp.cos(omega * W))
    if name == "bump":
        return lambda W, d: jnp.sum(jnp.exp(-0.5 * W**2))
    if name == "mlp":

        def mlp_objective(W, d):
            params = [{"W": W, "b": d["b1"]}, {"W": d["v"], "b": d["c"]}]
            pred = mlp_apply(params, d["X"])[:, 0]
            return -jnp.mean((pred - d["y"]) ** 2)

        return mlp_objective
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")


def make_problem(name: str, m: int = 8, n: int = 8, *, seed: int = 0, omega: float = 1.0, batch: int = 32) -> Problem:
    """A reproducible instance of objective ``name`` with an ``(m, n)`` matrix.

    ``W`` is standard normal (He-scaled for ``mlp``); ``omega`` is the cosine frequency;
    ``batch`` the MLP's number of data points.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")
    _check_positive_int(m, "m")
    _check_positive_int(n, "n")
    _check_positive_int(batch, "batch")
    if not (math.isfinite(omega) and omega > 0):
        raise ValueError(f"omega must be a finite number > 0, got {omega!r}")
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n))
    data: dict[str, np.ndarray] = {}
    if name == "quadratic":
        data["K"] = rng.standard_normal((m, m)) / math.sqrt(m)
        data["L"] = rng.standard_normal((n, n)) / math.sqrt(n)
        data["Wstar"] = rng.standard_normal((m, n))
    elif name == "mlp":
        W = W * math.sqrt(2.0 / n)
        X = rng.standard_normal((batch, n))
        teacher = rng.standard_normal((m, n)) * math.sqrt(2.0 / n)
        v = rng.standard_normal((1, m)) / math.sqrt(m)
        data = {"X": X, "b1": np.zeros(m), "v": v, "c": np.zeros(1)}
        data["y"] = np.tanh(X @ teacher.T) @ v[0]
    return Problem(name, W, data, float(omega))


# ---------------------------------------------------------------------------
# Exact expected gradients
# ---------------------------------------------------------------------------


def true_gradient(problem: Problem) -> np.ndarray:
    """``grad f(W)`` (float64, by autodiff). (m, n)."""
    with jax.enable_x64(True):
        data = jax.tree_util.tree_map(jnp.asarray, problem.data)
        g = jax.grad(_objective(problem.name, problem.omega))(jnp.asarray(problem.W), data)
        return np.asarray(g, np.float64)


def expected_gradient(problem: Problem, sigma: float, rank: int | None) -> np.ndarray:
    """Exact ``E[f(W + sigma E) E] / sigma`` for rank-``r`` noise (``rank=None``: Gaussian). (m, n).

    Closed forms exist for ``quadratic``, ``quartic`` and ``cosine``; ``mlp`` raises ValueError
    (use :func:`mc_gradient`).
    """
    _check_sigma(sigma)
    _check_rank(rank)
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
        return separable_expected_gradient(_bump_smoothed_derivative, W, sigma, rank)
    raise ValueError(
        f"objective {problem.name!r} has no closed form; closed forms exist for {CLOSED_FORM} (use mc_gradient)"
    )


def _bump_smoothed_derivative(w: np.ndarray, tau: np.ndarray) -> np.ndarray:
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
    quadrature (``nodes`` and ``2 nodes`` points; adaptive quadrature when they disagree). ``rank=None``: ``smoothed_derivative(W, sigma)``.
    """
    _check_sigma(sigma)
    _check_rank(rank)
    _check_positive_int(nodes, "nodes", 2)
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
    _check_rank(rank)
    if rank is None:
        raise ValueError("rank must be an integer >= 1, got None")
    g_inf = expected_gradient(problem, sigma, None)
    g_r = expected_gradient(problem, sigma, rank)
    return float(np.linalg.norm(g_r - g_inf) / np.linalg.norm(g_inf))


# ---------------------------------------------------------------------------
# Noise, drawn with the optimiser's own sampler
# ---------------------------------------------------------------------------


def _lowrank_factors(key: jax.Array, generation: jax.Array, members: jax.Array, m: int, n: int, rank: int):
    """Factors ``A (k, m, r)`` and ``B (k, n, r)`` of members ``members`` via EGGROLL.member_noise.

    The core sampler only accepts ``r <= min(m, n)``; for larger ranks it is asked for a
    ``(max(m, r), max(n, r))`` matrix and the factors are cut to ``m`` and ``n`` rows (a
    sub-block of a standard normal matrix is standard normal, so the law is exact).
    """
    es = EGGROLL(sigma=1.0, population=2, rank=rank, antithetic=False)
    template = jnp.zeros((max(m, rank), max(n, rank)), jnp.float64)
    state = ESState(template, (), key, generation)
    noise = jax.vmap(lambda i: es.member_noise(state, i))(members)
    return noise.A[:, :m, :], noise.B[:, :n, :]


def _gaussian_noise(key: jax.Array, generation: jax.Array, members: jax.Array, m: int, n: int):
    """Full-rank Gaussian noise ``(k, m, n)`` via EGGROLL.member_noise with ``rank=None``."""
    es = EGGROLL(sigma=1.0, population=2, rank=None, antithetic=False)
    state = ESState(jnp.zeros((m, n), jnp.float64), (), key, generation)
    return jax.vmap(lambda i: es.member_noise(state, i).eps)(members)


def _sqrt_psd(C: jax.Array) -> jax.Array:
    evals, evecs = jnp.linalg.eigh(C)
    return (evecs * jnp.sqrt(jnp.clip(evals, 0.0))) @ evecs.T


def _rank_bucket(m: int, n: int, rank: int | None) -> int | None:
    """Ranks up to ``min(m, n)`` share one compiled kernel; larger ones round up to a power of 2."""
    if rank is None:
        return None
    return max(min(m, n), 1 << (int(rank) - 1).bit_length())


@functools.lru_cache(maxsize=64)
def _mc_kernel(name: str, omega: float, m: int, n: int, bucket: int | None, chunk: int, mode: str):
    """Jitted float64 Monte Carlo kernel for one block of ``chunk`` draws: returns the block
    means of the per-draw estimates and of their squares (each ``(m, n)``).

    The rank ``r <= bucket`` is a traced argument: factors are drawn with ``bucket`` columns and
    the columns beyond ``r`` are zeroed (the first ``r`` columns of a standard normal matrix are
    standard normal, so the law is exact).
    mode: ``plain`` (f E / sigma, antithetic), ``cv`` (minus the linear control variate),
    ``gap`` (coupled difference low-rank minus Gaussian, with control variates).
    """
    f = _objective(name, omega)

    def one(W, data, G, sigma, X):
        fbar = 0.5 * (f(W + sigma * X, data) - f(W - sigma * X, data))
        if mode == "plain":
            return (fbar / sigma) * X
        return (fbar / sigma - jnp.sum(G * X)) * X

    def factors(key, gen, members, rank):
        A, B = _lowrank_factors(key, gen, members, m, n, bucket)
        mask = (jnp.arange(bucket) < rank).astype(A.dtype)
        return A * mask, B * mask

    @jax.jit
    def run(W, data, G, sigma, key, block, rank):
        members = jnp.arange(chunk)
        gen = block.astype(jnp.int32)
        r = rank.astype(jnp.float64)
        if mode == "gap":
            _, B = factors(jax.random.fold_in(key, 1), gen, members, rank)
            Z = _gaussian_noise(jax.random.fold_in(key, 2), gen, members, m, n)
            # Given B, the rows of E are N(0, B B^T / r): E has the law of Z (B B^T / r)^(1/2).
            S = jax.vmap(_sqrt_psd)(B @ jnp.swapaxes(B, 1, 2) / r)
            E = Z @ S
            y = jax.vmap(lambda e, z: one(W, data, G, sigma, e) - one(W, data, G, sigma, z))(E, Z)
        else:
            if bucket is None:
                X = _gaussian_noise(jax.random.fold_in(key, 2), gen, members, m, n)
            else:
                A, B = factors(jax.random.fold_in(key, 1), gen, members, rank)
                X = A @ jnp.swapaxes(B, 1, 2) / jnp.sqrt(r)
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


def _run_mc(problem: Problem, sigma: float, rank: int | None, samples: int, seed: int, mode: str, chunk: int):
    _check_sigma(sigma)
    _check_rank(rank)
    _check_positive_int(samples, "samples", 2)
    _check_positive_int(chunk, "chunk")
    chunks = max(2, -(-samples // chunk))
    chunk = -(-samples // chunks)
    m, n = problem.shape
    G = true_gradient(problem) if mode != "plain" else np.zeros((m, n))
    kernel = _mc_kernel(problem.name, problem.omega, m, n, _rank_bucket(m, n, rank), chunk, mode)
    with jax.enable_x64(True):
        data = jax.tree_util.tree_map(jnp.asarray, problem.data)
        args = (jnp.asarray(problem.W), data, jnp.asarray(G), jnp.float64(sigma), jax.random.key(seed))
        r = jnp.int32(0 if rank is None else rank)
        out = [kernel(*args, jnp.int32(c), r) for c in range(chunks)]
        means = np.stack([np.asarray(o[0], np.float64) for o in out])
        sqs = np.stack([np.asarray(o[1], np.float64) for o in out])
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
) -> MCEstimate:
    """Unbiased float64 Monte Carlo estimate of ``E[f(W + sigma E) E] / sigma``.

    Each draw is antithetic, ``(f(W + sigma E) - f(W - sigma E)) / (2 sigma) E``; with
    ``control_variate`` the term ``<grad f(W), E> E`` (whose mean is exactly ``grad f(W)`` for
    both noises, by identity covariance) is subtracted and its mean added back.
    ``rank=None`` draws Gaussian noise. Returns an :class:`MCEstimate`.
    """
    mode = "cv" if control_variate else "plain"
    mean, se, total, means, G = _run_mc(problem, sigma, rank, samples, seed, mode, chunk)
    if control_variate:
        mean, means = mean + G, means + G
    return MCEstimate(mean, se, total, means)


def mc_gap(
    problem: Problem, sigma: float, rank: int, *, samples: int = 2**14, seed: int = 0, chunk: int = 1024
) -> MCEstimate:
    """Unbiased float64 Monte Carlo estimate of ``g_r - g_inf`` from coupled draws.

    The Gaussian draw ``Z`` and the low-rank draw share randomness: with ``B`` from the
    low-rank sampler, ``E = Z (B B^T / r)^(1/2)`` has exactly the law of ``A B^T / sqrt(r)``,
    and ``E - Z = O(1/sqrt(r))``, so the difference has far less variance than two
    independent estimates.
    """
    _check_rank(rank)
    if rank is None:
        raise ValueError("rank must be an integer >= 1, got None")
    mean, se, total, means, _ = _run_mc(problem, sigma, rank, samples, seed, "gap", chunk)
    return MCEstimate(mean, se, total, means)


# ---------------------------------------------------------------------------
# Error against rank
# ---------------------------------------------------------------------------


def error_curve(
    problem: Problem,
    sigma: float,
    ranks: Sequence[int],
    *,
    method: str = "exact",
    samples: int = 2**14,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Relative error ``||g_r - g_inf||_F / ||g_inf||_F`` for each rank.

    method: ``exact`` (closed forms) or ``mc`` (coupled Monte Carlo, :func:`mc_gap`; the
    denominator is exact where a closed form exists, else a Monte Carlo estimate).
    Returns ``{"rank", "error", "se"}`` (``se`` is zero for ``exact``).
    """
    ranks = [int(r) for r in ranks]
    if not ranks:
        raise ValueError("ranks must be a non-empty sequence of integers >= 1")
    for r in ranks:
        _check_rank(r, "ranks")
    if method == "exact":
        err = np.array([relative_error(problem, sigma, r) for r in ranks])
        return {"rank": np.array(ranks), "error": err, "se": np.zeros_like(err)}
    if method != "mc":
        raise ValueError(f"method must be 'exact' or 'mc', got {method!r}")
    if problem.name in CLOSED_FORM:
        g_inf_norm = float(np.linalg.norm(expected_gradient(problem, sigma, None)))
    else:
        g_inf_norm = float(np.linalg.norm(mc_gradient(problem, sigma, None, samples=samples, seed=seed + 7919).mean))
    err, se = [], []
    for i, r in enumerate(ranks):
        value, s = mc_gap(problem, sigma, r, samples=samples, seed=seed + 1000 * (i + 1)).norm()
        err.append(value / g_inf_norm)
        se.append(s / g_inf_norm)
    return {"rank": np.array(ranks), "error": np.array(err), "se": np.array(se)}


@dataclasses.dataclass(frozen=True)
class SlopeFit:
    """``log y = intercept + slope log x`` with a ``level`` confidence interval on the slope."""

    slope: float
    intercept: float
    low: float
    high: float
    se: float
    level: float

    def within(self, low: float, high: float) -> bool:
        """True when the whole confidence interval lies in ``[low, high]``."""
        return low <= self.low and self.high <= high

    def __str__(self) -> str:
        return f"{self.slope:.3f} [{self.low:.3f}, {self.high:.3f}]"


def fit_loglog_slope(
    x: Sequence[float], y: Sequence[float], y_se: Sequence[float] | None = None, *, level: float = 0.95
) -> SlopeFit:
    """Fit a line to ``(log x, log y)`` and give a ``level`` confidence interval on its slope.

    Without ``y_se``: ordinary least squares with a Student-t interval from the residuals
    (the interval then measures how far the points are from a straight line). With ``y_se``:
    weighted least squares with ``se(log y) = y_se / y`` and a normal interval, widened by
    ``sqrt(chi^2 / dof)`` when the scatter exceeds the stated errors.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"x and y must be 1-D of equal length >= 3, got shapes {x.shape} and {y.shape}")
    if np.any(x <= 0) or np.any(y <= 0) or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite and > 0 for a log-log fit")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    lx, ly = np.log(x), np.log(y)
    dof = len(x) - 2
    if y_se is None:
        w = np.ones_like(lx)
    else:
        s = np.asarray(y_se, np.float64) / y
        if s.shape != x.shape or np.any(~np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("y_se must be finite, > 0 and of the same length as y")
        w = 1.0 / s**2
    X = np.stack([np.ones_like(lx), lx], 1)
    XtW = X.T * w
    cov = np.linalg.inv(XtW @ X)
    beta = cov @ (XtW @ ly)
    resid = ly - X @ beta
    chi2 = float(np.sum(w * resid**2))
    if y_se is None:
        se = math.sqrt(cov[1, 1] * chi2 / dof)
        q = float(scipy.stats.t.ppf(0.5 + level / 2, dof))
    else:
        se = math.sqrt(cov[1, 1] * max(1.0, chi2 / dof))
        q = float(scipy.stats.norm.ppf(0.5 + level / 2))
    slope = float(beta[1])
    return SlopeFit(slope, float(beta[0]), slope - q * se, slope + q * se, se, level)


def slope_study(
    objectives: Sequence[str] = NON_QUADRATIC,
    *,
    sigma: float = 0.3,
    m: int = 8,
    n: int = 8,
    ranks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256),
    mc_ranks: Sequence[int] = (2, 4, 8, 16, 32, 64),
    samples: int = 2**14,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Error curve and log-log slope fit per objective: exact for closed forms over ``ranks``,
    coupled Monte Carlo (``samples`` draws per rank) over ``mc_ranks`` otherwise."""
    out = {}
    for name in objectives:
        problem = make_problem(name, m, n, seed=seed)
        if name == "quadratic":
            raise ValueError("objectives must be non-quadratic (the quadratic has no gap to fit)")
        if name in CLOSED_FORM:
            curve = error_curve(problem, sigma, ranks, method="exact")
            fit = fit_loglog_slope(curve["rank"], curve["error"])
        else:
            curve = error_curve(problem, sigma, mc_ranks, method="mc", samples=samples, seed=seed)
            fit = fit_loglog_slope(curve["rank"], curve["error"], curve["se"])
        out[name] = {"curve": curve, "fit": fit, "method": "exact" if name in CLOSED_FORM else "mc"}
    return out


# ---------------------------------------------------------------------------
# Rank of the averaged update
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _update_fn(population: int, rank: int, antithetic: bool):
    es = EGGROLL(sigma=1.0, population=population, rank=rank, antithetic=antithetic, fitness_shaping="raw")
    return es, jax.jit(es.gradient)


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
    for v, name in ((m, "m"), (n, "n"), (rank, "rank")):
        _check_positive_int(v, name)
    pops = [int(p) for p in populations]
    if not pops or min(pops) < 2 or (antithetic and any(p % 2 for p in pops)):
        raise ValueError(f"populations must be integers >= 2 (even when antithetic), got {list(populations)}")
    if rank > min(m, n):
        raise ValueError(f"rank must be in [1, min(m, n)] = [1, {min(m, n)}], got {rank}")
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
    for v, name in ((m, "m"), (n, "n"), (rank, "rank")):
        _check_positive_int(v, name)
    if rank > min(m, n):
        raise ValueError(f"rank must be in [1, min(m, n)] = [1, {min(m, n)}], got {rank}")
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


# ---------------------------------------------------------------------------
# Finite population: bias (rank) against variance (population)
# ---------------------------------------------------------------------------


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
        _check_rank(r, "ranks")
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
    _check_positive_int(repeats, "repeats", 2)
    es = EGGROLL(sigma=float(sigma), population=population, rank=rank, antithetic=True, fitness_shaping="raw")
    g_inf = expected_gradient(problem, sigma, None)
    f = _objective(problem.name, problem.omega)
    with jax.enable_x64(True):
        data = jax.tree_util.tree_map(jnp.asarray, problem.data)
        W = jnp.asarray(problem.W)

        def one(key):
            state = es.init(key, W)
            fit = es.evaluate(state, lambda p, noise, i: f(p + noise.scale * (noise.A @ noise.B.T), data))
            return es.gradient(state, fit)

        keys = jax.random.split(jax.random.key(seed), repeats)
        grads = np.asarray(jax.jit(jax.vmap(one))(keys), np.float64)
    err = np.sum((grads - g_inf) ** 2, axis=(1, 2))
    return float(err.mean()), float(err.std(ddof=1) / math.sqrt(repeats))


# ---------------------------------------------------------------------------
# Small helpers for the notebook
# ---------------------------------------------------------------------------


def entry_moments(rank: int, *, draws: int = 20000, seed: int = 0) -> dict[str, float]:
    """Float64 Monte Carlo ``E[E_11^2]`` and ``E[E_11^4]`` (with standard errors) of one entry of
    ``E = A B^T / sqrt(r)`` drawn by EGGROLL.member_noise."""
    _check_rank(rank)
    if rank is None:
        raise ValueError("rank must be an integer >= 1, got None")
    _check_positive_int(draws, "draws", 2)
    with jax.enable_x64(True):
        A, B = _lowrank_factors(jax.random.key(seed), jnp.int32(0), jnp.arange(draws), 1, 1, rank)
        e = np.asarray(jnp.sum(A[:, 0, :] * B[:, 0, :], axis=1) / math.sqrt(rank), np.float64)
    root = math.sqrt(draws)
    return {
        "m2": float(np.mean(e**2)),
        "m2_se": float(np.std(e**2) / root),
        "m4": float(np.mean(e**4)),
        "m4_se": float(np.std(e**4) / root),
    }


def sqrt_rate_line(ranks: Sequence[int], anchor: float) -> np.ndarray:
    """The ``O(1/sqrt(r))`` reference ``anchor * (r / r_0)^(-1/2)`` through the first point."""
    r = np.asarray(ranks, np.float64)
    return anchor * (r / r[0]) ** -0.5


def explore(
    objective: str = "quartic",
    sigma: float = 0.3,
    m: int = 8,
    n: int = 8,
    r_min: int = 1,
    r_max: int = 256,
    population: int = 256,
    *,
    samples: int = 2**11,
    seed: int = 0,
):
    """Widget view: relative error of the expected low-rank gradient against rank (exact, or
    Monte Carlo for ``mlp``) with its fitted slope, and the finite-population relative RMSE
    split into bias and variance at ``population`` members (closed-form objectives).
    Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    if not (isinstance(r_min, int) and isinstance(r_max, int) and 1 <= r_min < r_max):
        raise ValueError(f"rank range must satisfy 1 <= r_min < r_max, got [{r_min}, {r_max}]")
    problem = make_problem(objective, m, n, seed=seed)
    ranks = np.unique(np.geomspace(r_min, r_max, 7).round().astype(int))
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.8))
    ax = axes[0]
    if objective == "quadratic":
        ax.text(0.5, 0.5, "quadratic: g_r = g_inf exactly at every r", ha="center", transform=ax.transAxes)
    else:
        method = "exact" if objective in CLOSED_FORM else "mc"
        curve = error_curve(problem, sigma, ranks, method=method, samples=samples, seed=seed)
        ok = curve["error"] > 0
        ax.errorbar(curve["rank"], curve["error"], yerr=curve["se"], fmt="o-", label=method)
        if ok.sum() >= 3:
            fit = fit_loglog_slope(curve["rank"][ok], curve["error"][ok], None if method == "exact" else curve["se"][ok])
            ax.set_title(f"{objective}, σ={sigma:g}, {m}x{n}: slope {fit}")
        ax.plot(ranks, sqrt_rate_line(ranks, curve["error"][0]), "k:", label="O(1/√r)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("rank r")
    ax.set_ylabel("‖g_r − g_∞‖_F / ‖g_∞‖_F")
    ax = axes[1]
    if objective in CLOSED_FORM and population >= 2 and population % 2 == 0:
        # Ranks up to min(m, n) share one compiled Monte Carlo kernel, which keeps this cheap.
        small = np.unique(np.concatenate([ranks[ranks <= min(m, n)], [min(m, n)]]))
        split = population_split(problem, sigma, small, [population], samples=samples, seed=seed)
        norm = np.linalg.norm(expected_gradient(problem, sigma, None))
        ax.loglog(small, np.sqrt(split["bias2"]) / norm + 1e-300, "o-", label="bias (rank)")
        ax.loglog(small, np.sqrt(split["variance"][:, 0]) / norm, "s-", label=f"noise (N={population})")
        ax.loglog(small, split["rel_rmse"][:, 0], "k--", label="total RMSE")
        ax.set_title("finite population: which term dominates")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "bias/variance split needs a closed-form objective\nand an even population",
                ha="center", transform=ax.transAxes)
    ax.set_xlabel("rank r")
    ax.set_ylabel("relative error of the N-member estimate")
    fig.tight_layout()
    return fig

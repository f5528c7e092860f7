"""Statistics for few-seed RL comparisons (Agarwal et al. 2021, "Deep RL at the edge of the
statistical precipice"): interquartile mean, stratified bootstrap confidence intervals,
performance profiles, and a non-inferiority test with an explicit margin.

Scores are arrays ``(runs, tasks)``: one column per environment, one row per seed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats as _st


def _as_scores(scores) -> np.ndarray:
    x = np.asarray(scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"scores must be (runs,) or (runs, tasks) with at least one entry, got shape {x.shape}")
    return x


def iqm(scores) -> float:
    """Interquartile mean of all entries: the mean of the middle 50 % (25 % trimmed each side,
    ``floor(0.25 n)`` values dropped per side, as ``scipy.stats.trim_mean``)."""
    x = np.sort(np.asarray(scores, dtype=float).ravel())
    if x.size == 0:
        raise ValueError("scores must contain at least one value")
    k = int(0.25 * x.size)
    return float(x[k:x.size - k].mean())


def normalise(scores, random: float, best: float) -> np.ndarray:
    """``(score - random) / (best - random)``: 0 = random policy, 1 = best."""
    if not best != random:
        raise ValueError(f"best must differ from random, got best={best}, random={random}")
    return (np.asarray(scores, dtype=float) - random) / (best - random)


def stratified_bootstrap_ci(scores, statistic: Callable[[np.ndarray], float] = iqm, *, reps: int = 2000,
                            alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Point estimate and percentile ``(1 - alpha)`` CI of ``statistic(scores)``.

    Each bootstrap replicate resamples the runs *within each task* with replacement (strata =
    tasks), then applies ``statistic`` to the whole ``(runs, tasks)`` array.
    """
    x = _as_scores(scores)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    rng = np.random.default_rng(seed)
    n, t = x.shape
    cols = np.arange(t)[None, None, :]
    idx = rng.integers(0, n, size=(reps, n, t))
    boot = x[idx, cols]  # (reps, n, t)
    vals = np.array([statistic(b) for b in boot])
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(statistic(x)), float(lo), float(hi)


def performance_profile(scores, taus) -> np.ndarray:
    """Run-score distribution: fraction of all (run, task) scores strictly above each tau. -> (len(taus),)"""
    x = _as_scores(scores).ravel()
    taus = np.asarray(taus, dtype=float)
    return (x[None, :] > taus[:, None]).mean(axis=1)


def performance_profile_ci(scores, taus, *, reps: int = 1000, alpha: float = 0.05, seed: int = 0
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Performance profile with a stratified-bootstrap percentile band: (profile, lo, hi)."""
    x = _as_scores(scores)
    rng = np.random.default_rng(seed)
    n, t = x.shape
    idx = rng.integers(0, n, size=(reps, n, t))
    boot = x[idx, np.arange(t)[None, None, :]]
    profs = np.stack([performance_profile(b, taus) for b in boot])
    lo, hi = np.quantile(profs, [alpha / 2, 1 - alpha / 2], axis=0)
    return performance_profile(x, taus), lo, hi


def fraction_se(hits) -> float:
    """Standard error of a success fraction over ``n`` seeds, from the (k + 1) / (n + 2) estimate
    so that 0 of n and n of n still get a non-zero uncertainty (the plain binomial SE is 0 there)."""
    hits = np.asarray(hits, dtype=bool).ravel()
    n = hits.size
    if n == 0:
        raise ValueError("hits must hold at least one seed, got none")
    q = (hits.sum() + 1) / (n + 2)
    return float(np.sqrt(q * (1 - q) / n))


def non_inferiority(a, b, margin: float, alpha: float = 0.05) -> dict[str, float | bool]:
    """One-sided Welch test that method ``a`` is not worse than ``b`` by more than ``margin``.

    H0: mean(a) - mean(b) <= -margin; H1: mean(a) - mean(b) > -margin. ``a`` is non-inferior
    when H0 is rejected at level ``alpha``, equivalently when the lower end of the one-sided
    ``(1 - alpha)`` Welch confidence bound of the difference lies above ``-margin``.
    Returns diff, lower (the bound), p_value, df, non_inferior.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.size < 2 or b.size < 2:
        raise ValueError(f"a and b need at least 2 values each, got {a.size} and {b.size}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = a.mean() - b.mean()
    se = np.sqrt(va + vb)
    if se == 0:
        ni = bool(diff > -margin)
        return {"diff": float(diff), "lower": float(diff), "p_value": 0.0 if ni else 1.0, "df": float("nan"),
                "non_inferior": ni}
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    tstat = (diff + margin) / se
    p = float(_st.t.sf(tstat, df))
    lower = diff - _st.t.ppf(1 - alpha, df) * se
    return {"diff": float(diff), "lower": float(lower), "p_value": p, "df": float(df), "non_inferior": bool(p < alpha)}


def non_inferiority_power(sd_a: float, sd_b: float, n: int, margin: float, alpha: float = 0.05,
                          true_diff: float = 0.0) -> float:
    """Power of :func:`non_inferiority` with ``n`` runs per method whose values have standard
    deviations ``sd_a``, ``sd_b`` and true mean difference ``true_diff``: the probability that
    the test rejects H0 (mean(a) - mean(b) <= -margin). Noncentral-t approximation of the Welch
    statistic (Welch-Satterthwaite degrees of freedom at the true variances)."""
    if int(n) < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if not (sd_a >= 0 and sd_b >= 0 and sd_a + sd_b > 0):
        raise ValueError(f"sd_a and sd_b must be >= 0 and not both 0, got {sd_a}, {sd_b}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    va, vb = sd_a**2 / n, sd_b**2 / n
    df = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n - 1))
    ncp = (true_diff + margin) / np.sqrt(va + vb)
    return float(_st.nct.sf(_st.t.ppf(1 - alpha, df), df, ncp))


def seeds_for_power(sd_a: float, sd_b: float, margin: float, alpha: float = 0.05, power: float = 0.8,
                    true_diff: float = 0.0, n_max: int = 100_000) -> int:
    """The fewest runs per method for which :func:`non_inferiority_power` reaches ``power``
    (bisection on n; ``n_max`` + 1 when even ``n_max`` runs do not)."""
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if non_inferiority_power(sd_a, sd_b, n_max, margin, alpha, true_diff) < power:
        return n_max + 1
    lo, hi = 2, n_max
    if non_inferiority_power(sd_a, sd_b, lo, margin, alpha, true_diff) >= power:
        return lo
    while hi - lo > 1:  # power rises with n: keep power(lo) < target <= power(hi)
        mid = (lo + hi) // 2
        if non_inferiority_power(sd_a, sd_b, mid, margin, alpha, true_diff) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def indistinguishable(a, b, alpha: float = 0.05) -> dict[str, float | bool]:
    """Two-sided Mann-Whitney U test of equal distributions; ``same`` when p >= alpha."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.size < 2 or b.size < 2:
        raise ValueError(f"a and b need at least 2 values each, got {a.size} and {b.size}")
    if np.all(a == a[0]) and np.all(b == a[0]):
        return {"U": float(a.size * b.size / 2), "p_value": 1.0, "same": True}
    res = _st.mannwhitneyu(a, b, alternative="two-sided")
    return {"U": float(res.statistic), "p_value": float(res.pvalue), "same": bool(res.pvalue >= alpha)}


def max_rise(curve) -> np.ndarray:
    """Largest rise of a loss curve above its best value so far, ``max_t (c_t - min_{s<=t} c_s)``
    (0 for a curve that never gets worse). curve: (..., K) -> (...)"""
    c = np.asarray(curve, dtype=float)
    if c.ndim < 1 or c.shape[-1] < 1:
        raise ValueError(f"curve must have at least one point on its last axis, got shape {c.shape}")
    return np.max(c - np.minimum.accumulate(c, axis=-1), axis=-1)


def mean_ci(values, level: float = 0.95) -> tuple[float, float]:
    """Mean and Student-t half-width over independent runs (seeds). values: (n >= 2,)."""
    v = np.asarray(values, float)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"values must be a 1-d sequence of at least 2 runs, got shape {v.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    half = _st.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(half)


def median_ci(values, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the median: order statistics ``x_(j)`` and ``x_(n-j+1)``
    with ``j`` the largest rank such that P(Binomial(n, 1/2) < j) <= (1 - level) / 2, so the
    coverage is at least ``level`` for any continuous distribution (n = 15: x_(4), x_(12)).
    values: (n >= 6,) independent rounds (fewer cannot reach 95%)."""
    v = np.sort(np.asarray(values, float))
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"values must be a 1-d sequence of at least 2 rounds, got shape {v.shape}")
    j = int(_st.binom.ppf((1 - level) / 2, v.size, 0.5))
    if j < 1:
        raise ValueError(f"{v.size} values cannot give a {level:.0%} interval of the median (need >= 6 at 95%)")
    return float(v[j - 1]), float(v[v.size - j])


def proportion_ci(per_item, level: float = 0.95) -> tuple[float, float]:
    """Mean and normal-approximation half-width of a mean of per-item scores in [0, 1] (items
    independent, e.g. test prompts), from their sample standard deviation."""
    v = np.asarray(per_item, float)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"per_item must be a 1-d sequence of at least 2 items, got shape {v.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    half = _st.norm.ppf(0.5 + level / 2) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(half)


def welch_ci(a, b, level: float = 0.95) -> tuple[float, float]:
    """mean(a) - mean(b) and its two-sided Welch-Satterthwaite t half-width at ``level``."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.size < 2 or b.size < 2:
        raise ValueError(f"a and b need at least 2 runs each, got {a.size} and {b.size}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = np.sqrt(va + vb)
    if se == 0:
        return float(a.mean() - b.mean()), 0.0
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return float(a.mean() - b.mean()), float(_st.t.ppf(0.5 + level / 2, dof) * se)


def stratified_bootstrap_difference_ci(a, b, statistic: Callable[[np.ndarray], float] = iqm, *, reps: int = 2000,
                                       alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Point estimate and percentile ``(1 - alpha)`` CI of ``statistic(a) - statistic(b)``.

    ``a`` and ``b`` are ``(runs, tasks)`` scores of two methods on the same tasks (their run
    counts may differ); each replicate resamples the runs of each method within each task,
    independently for the two methods.
    """
    x, y = _as_scores(a), _as_scores(b)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"a and b must cover the same tasks, got {x.shape[1]} and {y.shape[1]} columns")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    rng = np.random.default_rng(seed)
    cols = np.arange(x.shape[1])[None, None, :]
    bx = x[rng.integers(0, x.shape[0], size=(reps, x.shape[0], x.shape[1])), cols]
    by = y[rng.integers(0, y.shape[0], size=(reps, y.shape[0], y.shape[1])), cols]
    vals = np.array([statistic(p) - statistic(q) for p, q in zip(bx, by)])
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(statistic(x) - statistic(y)), float(lo), float(hi)

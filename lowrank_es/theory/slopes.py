"""Error of the expected low-rank gradient against rank, and log-log slope fits with
confidence intervals (slope -1 is the O(1/r) rate, -1/2 the central-limit one)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
import scipy.stats

from lowrank_es.theory.checks import check_rank
from lowrank_es.theory.exact import expected_gradient, relative_error
from lowrank_es.theory.montecarlo import mc_gap, mc_gradient
from lowrank_es.theory.problems import CLOSED_FORM, NON_QUADRATIC, Problem, make_problem


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
        check_rank(r, "ranks")
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

    def distance_from(self, value: float) -> float:
        """How far the farther end of the confidence interval lies from ``value``."""
        return max(abs(self.low - value), abs(self.high - value))

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


def fit_curve(curve: dict[str, np.ndarray], *, weighted: bool | None = None) -> SlopeFit:
    """:func:`fit_loglog_slope` of an :func:`error_curve` over its resolved points (error > 0);
    weighted by the Monte Carlo standard errors when it has them (``weighted=None``)."""
    ok = np.asarray(curve["error"]) > 0
    se = np.asarray(curve["se"])
    use_se = bool(np.all(se[ok] > 0)) if weighted is None else weighted
    return fit_loglog_slope(np.asarray(curve["rank"])[ok], np.asarray(curve["error"])[ok], se[ok] if use_se else None)


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
        if name == "quadratic":
            raise ValueError("objectives must be non-quadratic (the quadratic has no gap to fit)")
        problem = make_problem(name, m, n, seed=seed)
        if name in CLOSED_FORM:
            curve = error_curve(problem, sigma, ranks, method="exact")
        else:
            curve = error_curve(problem, sigma, mc_ranks, method="mc", samples=samples, seed=seed)
        out[name] = {"curve": curve, "fit": fit_curve(curve), "method": "exact" if name in CLOSED_FORM else "mc"}
    return out


def sqrt_rate_line(ranks: Sequence[int], anchor: float) -> np.ndarray:
    """The ``O(1/sqrt(r))`` reference ``anchor * (r / r_0)^(-1/2)`` through the first point."""
    r = np.asarray(ranks, np.float64)
    return anchor * (r / r[0]) ** -0.5

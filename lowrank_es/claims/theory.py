"""Claims of the EGGROLL convergence theory (notebook ``02_theory_convergence``).

Each measure reads a results record of experiment ``theory`` (default: the committed
reference, ``figures/results/theory__reference.json``); none runs anything itself, so the
notebook and ``python -m lowrank_es claims`` record the same values.
"""

from __future__ import annotations

import math
from typing import Any

from lowrank_es import experiments
from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.experiments.theory import RATIO_AGREE, Z_AGREE, claim_study, mlp_result

SLOPE_RANGE = (-1.15, -0.85)
#: Half-width of SLOPE_RANGE around -1: the slope_mlp target.
SLOPE_TOLERANCE = 0.15


def _load(results: dict[str, Any] | None) -> dict[str, Any]:
    return results if results is not None else experiments.load("theory", "reference")


def _where(results: dict[str, Any]) -> dict[str, Any]:
    return {"scale": results["scale"], "device": results.get("device")}


@register(
    "eggroll.theory.slope",
    paper="EGGROLL",
    statement=(
        "The expected low-rank ES gradient converges to the Gaussian (full-rank) one at rate O(1/r): "
        "on log-log axes the relative Frobenius error against r has slope -1, not -1/2 (closed forms of "
        "three objectives at sigma = 0.3 on an 8 x 8 matrix, each confirmed by float64 Monte Carlo of the "
        "optimiser's own perturbations, with Gaussian factors and with its default noise generator)."
    ),
    target=Target(low=3, text=">= 3 objectives with slope CI inside [-1.15, -0.85] and Monte Carlo in agreement "
                              "(gap within 4 SE; default generator's noise ratio <= 2)"),
    quick=True,
    notebook="02_theory_convergence",
)
def measure_slope(results: dict[str, Any] | None = None) -> Measurement:
    """Count the closed-form objectives whose slope interval lies in ``SLOPE_RANGE`` and whose
    Monte Carlo (drawn by ``EGGROLL.member_noise``, scaled by its ``LowRank.scale``) agrees
    with the closed form at every checked rank: the coupled gap (Gaussian factors) within
    ``Z_AGREE`` standard errors, and the gradient with the default generator at a noise ratio
    of at most ``RATIO_AGREE``."""
    results = _load(results)
    details, count = {}, 0
    for name, res in claim_study(results).items():
        fit = res["fit"]
        inside = fit.within(*SLOPE_RANGE)
        agrees = res["mc_max_abs_z"] <= Z_AGREE and res["generator_max_ratio"] <= RATIO_AGREE
        count += int(inside and agrees)
        details[name] = {"slope": round(fit.slope, 4), "ci95": [round(fit.low, 4), round(fit.high, 4)],
                         "method": "exact", "ranks": [int(r) for r in res["ranks"]], "inside": bool(inside),
                         "mc_ranks": [int(r) for r in res["mc_ranks"]],
                         "mc_max_abs_z": round(res["mc_max_abs_z"], 3),
                         "generator_max_noise_ratio": round(res["generator_max_ratio"], 3), "mc_agrees": bool(agrees)}
    return Measurement(measured=float(count), uncertainty=None, seeds=len(results["seeds"]), details=details,
                       **_where(results))


@register(
    "eggroll.theory.slope_mlp",
    paper="EGGROLL",
    statement=(
        "For a loss without a closed form (minus the squared error of a one-hidden-layer tanh network, as a "
        "function of its 8 x 8 first layer, sigma = 0.1) the relative error of the expected low-rank ES gradient "
        "also falls as O(1/r): the weighted log-log slope of the float64 Monte Carlo error has a 95% interval "
        "within 0.15 of -1 (the range [-1.15, -0.85] the closed forms are held to)."
    ),
    target=Target(high=SLOPE_TOLERANCE, text="farther end of the slope's 95% interval at most 0.15 from -1"),
    quick=True,
    notebook="02_theory_convergence",
)
def measure_slope_mlp(results: dict[str, Any] | None = None) -> Measurement:
    """Distance from -1 of the farther end of the MLP slope's 95% interval (weighted fit with
    the Monte Carlo standard errors), at the first sigma of the run (0.1)."""
    results = _load(results)
    run, fit = mlp_result(results)
    return Measurement(
        measured=fit.distance_from(-1.0),
        uncertainty=None,
        seeds=len(results["seeds"]),
        details={"slope": round(fit.slope, 4), "ci95": [round(fit.low, 4), round(fit.high, 4)],
                 "sigma": run["sigma"], "ranks": [int(r) for r in run["rank"]], "samples_per_rank": run["samples"],
                 "error": [float(f"{e:.4g}") for e in run["error"]], "se": [float(f"{s:.3g}") for s in run["se"]]},
        **_where(results),
    )


@register(
    "eggroll.theory.quadratic_exact",
    paper="EGGROLL",
    statement=(
        "For a quadratic objective the expected low-rank ES gradient equals the Gaussian ES gradient "
        "(= the true gradient) at every rank: E = A B^T/sqrt(r) has identity covariance and zero odd moments."
    ),
    target=Target(
        low=0.5, high=2.0, text="||MC low-rank grad - exact grad||^2 / sum(SE^2) in [0.5, 2] at every r (1 = pure noise)"
    ),
    quick=True,
    notebook="02_theory_convergence",
)
def measure_quadratic_exact(results: dict[str, Any] | None = None) -> Measurement:
    """The noise ratio ``||g_hat - g||^2 / sum(SE^2)`` of a plain Monte Carlo (the optimiser's
    draws, antithetic, no control variate) of a non-separable quadratic's low-rank ES gradient
    against its exact gradient: about 1 when the only difference is Monte Carlo noise. The rank
    farthest from 1 is reported; the quartic at rank 1 (an O(1/r) gap) is the positive control
    and must be far above 1."""
    results = _load(results)
    q = results["data"]["quadratic"]
    ratios = {r: float(v) for r, v in q["noise_ratio_by_rank"].items()}
    worst = max(ratios.values(), key=lambda v: abs(v - 1.0))
    return Measurement(
        measured=worst,
        uncertainty=math.sqrt(2.0 / q["entries"]),
        seeds=len(ratios),
        details={"noise_ratio_by_rank": {r: round(v, 3) for r, v in ratios.items()},
                 "quartic_rank1_noise_ratio": round(float(q["quartic_rank1_noise_ratio"]), 2),
                 "samples": q["samples"]},
        **_where(results),
    )


@register(
    "eggroll.theory.update_rank",
    paper="EGGROLL",
    statement=(
        "Although every perturbation has rank r, the population-averaged EGGROLL update has rank "
        "min(N r, m, n): with enough members it is full rank."
    ),
    target=Target(low=1.0, high=1.0, text="fraction of (m, n, r, N) with update rank = min(N r, m, n) = 1"),
    quick=True,
    notebook="02_theory_convergence",
)
def measure_update_rank(results: dict[str, Any] | None = None) -> Measurement:
    """Numerical rank of one update (random fitness, float64) against ``min(N r, m, n)`` over
    the run's grid of shapes, ranks and populations."""
    results = _load(results)
    hits, total, misses, table = 0, 0, [], {}
    for row in results["data"]["update_rank"]["claim"]:
        m, n, r = row["m"], row["n"], row["rank"]
        table[f"{m}x{n} r={r}"] = [int(g) for g in row["measured"]]
        for N, got, want in zip(row["population"], row["measured"], row["expected"]):
            total += 1
            hits += int(got == want)
            if got != want:
                misses.append([m, n, r, N, int(got), int(want)])
    populations = results["data"]["update_rank"]["claim"][0]["population"]
    return Measurement(
        measured=hits / total,
        uncertainty=None,
        seeds=len(results["seeds"]),
        details={"configs": total, "misses": misses, "populations": populations, "ranks": table},
        **_where(results),
    )

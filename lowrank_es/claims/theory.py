"""Claims of the EGGROLL convergence theory (notebook ``02_theory_convergence``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lowrank_es import theory
from lowrank_es.claims.registry import Measurement, Target, register

SLOPE_RANGE = (-1.15, -0.85)
#: Exact (closed-form / quadrature) objectives used when no notebook results are passed.
SLOPE_OBJECTIVES = ("quartic", "cosine", "bump")


@register(
    "eggroll.theory.slope",
    paper="EGGROLL",
    statement=(
        "The expected low-rank ES gradient converges to the Gaussian (full-rank) one at rate O(1/r): "
        "on log-log axes the relative Frobenius error against r has slope -1, not -1/2."
    ),
    target=Target(low=3, text=">= 3 non-quadratic objectives with slope CI inside [-1.15, -0.85]"),
    quick=True,
    notebook="02_theory_convergence",
)
def measure_slope(study: dict[str, dict[str, Any]] | None = None, *, sigma: float = 0.3, seed: int = 0) -> Measurement:
    """Count the objectives whose fitted slope (95% interval) lies in ``SLOPE_RANGE``.

    ``study``: the output of :func:`lowrank_es.theory.slope_study` (the notebook passes its
    own, Monte Carlo MLP included); by default the exact objectives on an 8 x 8 matrix.
    """
    if study is None:
        study = theory.slope_study(SLOPE_OBJECTIVES, sigma=sigma, seed=seed)
    details, count = {}, 0
    for name, res in study.items():
        if name == "quadratic":
            raise ValueError("study must contain non-quadratic objectives only")
        fit = res["fit"]
        inside = fit.within(*SLOPE_RANGE)
        count += int(inside)
        details[name] = {
            "slope": round(fit.slope, 4),
            "ci95": [round(fit.low, 4), round(fit.high, 4)],
            "method": res["method"],
            "ranks": [int(r) for r in res["curve"]["rank"]],
            "inside": bool(inside),
        }
    return Measurement(measured=float(count), uncertainty=None, seeds=1, details=details)


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
def measure_quadratic_exact(
    *, ranks: tuple[int, ...] = (1, 2, 4), sigma: float = 0.5, samples: int = 2**14, seed: int = 0
) -> Measurement:
    """Float64 Monte Carlo (antithetic, no control variate) of the low-rank ES gradient of a
    non-separable quadratic on an 8 x 8 matrix against its exact gradient.

    The statistic ``||g_hat - g||^2 / sum(SE^2)`` is about 1 when the only difference is Monte
    Carlo noise and grows with ``samples`` when there is a real gap; the rank farthest from 1 is
    reported. The quartic at rank 1 is measured the same way as a positive control: its O(1/r)
    gap must show as a value far above 1.
    """

    def noise_ratio(problem: theory.Problem, r: int, s: int) -> float:
        est = theory.mc_gradient(problem, sigma, r, samples=samples, seed=s, control_variate=False)
        return float(np.sum((est.mean - theory.true_gradient(problem)) ** 2) / np.sum(est.se**2))

    worst, per_rank = None, {}
    quad = theory.make_problem("quadratic", 8, 8, seed=seed)
    for r in ranks:
        ratio = noise_ratio(quad, r, seed + r)
        per_rank[str(r)] = round(ratio, 3)
        if worst is None or abs(ratio - 1.0) > abs(worst - 1.0):
            worst = ratio
    control = noise_ratio(theory.make_problem("quartic", 8, 8, seed=seed), 1, seed + 99)
    return Measurement(
        measured=worst,
        uncertainty=math.sqrt(2.0 / quad.W.size),
        seeds=len(ranks),
        details={"noise_ratio_by_rank": per_rank, "quartic_rank1_noise_ratio": round(control, 2), "samples": samples},
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
def measure_update_rank(
    *,
    shapes: tuple[tuple[int, int], ...] = ((16, 16), (32, 12)),
    ranks: tuple[int, ...] = (1, 4),
    populations: tuple[int, ...] = (2, 3, 5, 8, 16, 32),
    seed: int = 0,
) -> Measurement:
    """Numerical rank of one update (random fitness, float64) against ``min(N r, m, n)``."""
    hits, total, misses, table = 0, 0, [], {}
    for m, n in shapes:
        for r in ranks:
            got = theory.update_ranks(m, n, r, populations, seed=seed)
            table[f"{m}x{n} r={r}"] = [int(g) for g in got]
            for N, g in zip(populations, got):
                want = theory.expected_update_rank(m, n, r, N)
                total += 1
                hits += int(g == want)
                if g != want:
                    misses.append([m, n, r, N, int(g), want])
    return Measurement(
        measured=hits / total,
        uncertainty=None,
        seeds=1,
        details={"configs": total, "misses": misses, "populations": list(populations), "ranks": table},
    )

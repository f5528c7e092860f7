"""Claims of EGGROLL's mechanics (notebook ``01_eggroll_mechanics``): the factored population
forward is the materialised one, and what rank 1 reaches on the teacher-student regression.

``factored_forward`` is measured live in float64 (a few seconds); the regression claims read a
results record of experiment ``mechanics`` (default: the committed reference).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowrank_es import experiments
from lowrank_es.claims.registry import Measurement, Target, register

#: float64 agreement required of the factored forward (rounding only: the two paths sum the
#: same products in another order).
FORWARD_TOLERANCE = 1e-10
RANK1, FULL = "EGGROLL r=1", "OpenES (full rank)"


@register(
    "eggroll.mechanics.factored_forward",
    paper="EGGROLL",
    statement=("A member's forward pass through the factored layers, x W^T + s (x B) A^T, equals the forward "
               "pass through the materialised perturbed matrix W + s A B^T: every member of an antithetic "
               "population of 8, ranks 1, 3 and full (dense noise), a 5-7-4 MLP, float64."),
    target=Target(high=FORWARD_TOLERANCE, text=f"max relative difference <= {FORWARD_TOLERANCE:g} (float64)"),
    quick=True,
    notebook="01_eggroll_mechanics",
)
def measure_factored_forward() -> Measurement:
    """Largest |factored - materialised| / max|materialised| over members and ranks."""
    import jax
    import jax.numpy as jnp

    from lowrank_es.es.eggroll import EGGROLL
    from lowrank_es.models.mlp import mlp_apply, mlp_init

    worst, details = 0.0, {}
    with jax.enable_x64(True):
        params = mlp_init(jax.random.PRNGKey(3), (5, 7, 4), jnp.float64)
        x = jax.random.normal(jax.random.PRNGKey(0), (6, 5), jnp.float64)
        for rank in (1, 3, None):
            es = EGGROLL(sigma=0.3, population=8, rank=rank)
            state = es.init(jax.random.PRNGKey(11), params)
            for member in range(es.population):
                fast = np.asarray(mlp_apply(state.params, x, es.member_noise(state, member)))
                ref = np.asarray(mlp_apply(es.member_params(state, member), x))
                err = float(np.abs(fast - ref).max() / np.abs(ref).max())
                worst = max(worst, err)
                details[f"rank {rank or 'full'}"] = max(details.get(f"rank {rank or 'full'}", 0.0), err)
    return Measurement(measured=worst, details=details, scale="live")


def _load(results: dict[str, Any] | None) -> dict[str, Any]:
    return results if results is not None else experiments.load("mechanics", "reference")


def _losses(results: dict[str, Any], label: str) -> np.ndarray:
    return np.asarray(results["data"][label]["losses"], dtype=np.float64)


@register(
    "eggroll.mechanics.rank1_fits",
    paper="EGGROLL",
    statement=("Rank-1 EGGROLL (population 64, sigma 0.05, Adam 0.05) fits a 16 -> 8 linear teacher-student "
               "regression: its MSE falls by at least 5 orders of magnitude from the start (mean over seeds "
               "of log10(start / final))."),
    target=Target(low=5.0, text="log10(start MSE / final MSE) >= 5 (mean over seeds)"),
    notebook="01_eggroll_mechanics",
)
def measure_rank1_fits(results: dict[str, Any] | None = None) -> Measurement:
    results = _load(results)
    orders = np.log10(_losses(results, RANK1)[:, 0] / _losses(results, RANK1)[:, -1])
    return Measurement(measured=float(orders.mean()), uncertainty=float(orders.std(ddof=1) / np.sqrt(len(orders))),
                       seeds=len(orders), scale=results["scale"], device=results.get("device"),
                       details={"orders_per_seed": [round(float(o), 3) for o in orders]})


@register(
    "eggroll.mechanics.rank1_vs_full_rank",
    paper="EGGROLL",
    statement=("At the same population, sigma, schedule and seeds, how far rank-1 EGGROLL's final MSE on the "
               "teacher-student regression is from full-rank OpenES's, in orders of magnitude "
               "(log10 of the ratio of the geometric means over seeds; > 0: rank 1 ends higher). Reported: "
               "the paper makes no parity claim for this task."),
    target=Target(),
    notebook="01_eggroll_mechanics",
)
def measure_rank1_vs_full_rank(results: dict[str, Any] | None = None) -> Measurement:
    results = _load(results)
    r1, full = np.log10(_losses(results, RANK1)[:, -1]), np.log10(_losses(results, FULL)[:, -1])
    se = float(np.sqrt(r1.var(ddof=1) / len(r1) + full.var(ddof=1) / len(full)))
    return Measurement(measured=float(r1.mean() - full.mean()), uncertainty=se, seeds=len(r1),
                       scale=results["scale"], device=results.get("device"),
                       details={"final_mse_rank1_geomean": float(10 ** r1.mean()),
                                "final_mse_full_rank_geomean": float(10 ** full.mean())})

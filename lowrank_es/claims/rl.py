"""Claims of EGGROLL's tabula-rasa RL experiments (notebook ``03_rl``).

Each measure reads a results record of experiment ``rl`` (default: the committed reference,
``figures/results/rl__reference.json``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowrank_es import experiments
from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.experiments.rl_analysis import (A, B, PARITY_ALPHA, PARITY_MARGIN, aggregate, parity_table, power_table,
                                                still_moving, steps_used)


def _load(results: dict[str, Any] | None) -> dict[str, Any]:
    return results if results is not None else experiments.load("rl", "reference")


def _where(results: dict[str, Any]) -> dict[str, Any]:
    return {"scale": results["scale"], "device": results.get("device")}


def _round(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


@register(
    "eggroll.rl.parity",
    paper="EGGROLL",
    statement="EGGROLL (rank 1) is non-inferior to full-rank OpenES in tabula-rasa RL on gymnax: same network, "
              "population, sigma, Adam step and seeds, and the same budget of environment steps per seed (a seed "
              "stops at the last generation that fits in the budget); one-sided Welch test on final returns of the "
              "mean policy at alpha = 0.05 with a margin of 10% of the random-to-best return range, on at least "
              "4 of 5 environments.",
    target=Target(low=4, text="environments where EGGROLL r=1 is non-inferior >= 4 (of 5)"),
    quick=False,
    notebook="03_rl",
)
def parity(results: dict[str, Any] | None = None) -> Measurement:
    results = _load(results)
    table = parity_table(results)
    n = sum(r["non_inferior"] for r in table.values())
    seeds = min(min(r["n_a"], r["n_b"]) for r in table.values())
    agg = aggregate(results)
    return Measurement(
        measured=float(n), seeds=seeds,
        details={"environments": len(table), "margin": PARITY_MARGIN, "alpha": PARITY_ALPHA,
                 "per_env": {k: _round(v) for k, v in table.items()},
                 "iqm_normalised": {m: [round(x, 4) for x in v] for m, v in agg.items()},
                 "last_quarter_gain": {e: {m: round(x, 4) for m, x in v.items()} for e, v in still_moving(results).items()},
                 "steps_used": steps_used(results)},
        **_where(results),
    )


@register(
    "eggroll.rl.aggregate_parity",
    paper="EGGROLL",
    statement="Aggregated over the 5 environments, as the paper compares methods: the interquartile mean of "
              "normalised final returns (random policy 0, the better ES method's mean 1) of EGGROLL (rank 1) "
              "minus that of OpenES, same budget of environment steps per seed, is above -0.10 at the lower end "
              "of its 95% stratified bootstrap interval (seeds resampled within each environment).",
    target=Target(low=-PARITY_MARGIN, text="lower end of the 95% interval of IQM(EGGROLL) - IQM(OpenES) >= -0.10"),
    quick=False,
    notebook="03_rl",
)
def aggregate_parity(results: dict[str, Any] | None = None) -> Measurement:
    results = _load(results)
    agg = aggregate(results)
    diff, lo, hi = agg[f"{A} - {B}"]
    power = power_table(results)
    seeds = min(r["seeds"] for r in power.values())
    return Measurement(
        measured=float(lo), seeds=seeds,
        details={"difference": round(float(diff), 4), "interval_95": [round(float(lo), 4), round(float(hi), 4)],
                 "iqm": {m: [round(x, 4) for x in agg[m]] for m in (A, B)},
                 "per_env_power_at_0": {e: round(r["power"], 3) for e, r in power.items()},
                 "per_env_seeds_for_80pct_power": {e: r["seeds_needed"] for e, r in power.items()}},
        **_where(results),
    )


@register(
    "eggroll.rl.speed",
    paper="EGGROLL",
    statement="One ES generation of EGGROLL (rank 1) takes less wall-clock time than one of full-rank OpenES "
              "at a policy network of 2 hidden layers of 256 (population 64, one 100-step Pendulum-v1 episode per "
              "member), the two timed side by side in one run, taking turns.",
    target=Target(high=1.0, text="EGGROLL / OpenES generation time < 1"),
    quick=False,
    notebook="03_rl",
)
def speed(results: dict[str, Any] | None = None) -> Measurement:
    results = _load(results)
    s = results["data"]["speed"]
    return Measurement(measured=float(s["ratio"]), seeds=1,
                       details={k: s[k] for k in ("eggroll_s", "openes_s", "env", "population", "max_steps",
                                                  "hidden", "repeats")},
                       **_where(results))


@register(
    "eggroll.rl.ppo_reference",
    paper="EGGROLL",
    statement="The PPO reference (pure JAX, PureJaxRL hyper-parameters) solves CartPole-v1 within 500k "
              "environment steps.",
    target=Target(low=475, text="mean over seeds of the final return >= 475 (Gym's CartPole-v1 threshold)"),
    quick=False,
    notebook="03_rl",
)
def ppo_reference(results: dict[str, Any] | None = None) -> Measurement:
    results = _load(results)
    run = results["data"]["ppo"].get("CartPole-v1")
    if run is None:
        raise ValueError("results must hold a PPO run on CartPole-v1 (config ppo)")
    steps = int(run["env_steps"][-1])
    if steps > 500_000:
        raise ValueError(f"the PPO run must use at most 500000 environment steps for this claim, got {steps}")
    x = np.asarray(run["final_return"], dtype=float)
    return Measurement(measured=float(x.mean()),
                       uncertainty=float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else None,
                       seeds=int(x.size), details={"per_seed": x.round(1).tolist(), "env_steps": steps},
                       **_where(results))

"""Claims of EGGROLL's tabula-rasa RL experiments (notebooks/03_rl.ipynb)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lowrank_es.claims.registry import Measurement, Target, register

PARITY_MARGIN = 0.10  # of the random-to-best return range
PARITY_ALPHA = 0.05


def parity_table(finals: dict[str, dict[str, Any]], random: dict[str, float], margin: float = PARITY_MARGIN,
                 alpha: float = PARITY_ALPHA, a: str = "EGGROLL r=1", b: str = "OpenES") -> dict[str, dict[str, Any]]:
    """Per environment: normalise each seed's final return to ``(R - random) / (best - random)``
    (``best`` = the highest mean final return of any method on that environment) and run the
    one-sided Welch non-inferiority test of ``a`` against ``b`` with the given margin."""
    from lowrank_es import stats

    out = {}
    for env, by_method in finals.items():
        if a not in by_method or b not in by_method:
            raise ValueError(f"finals[{env!r}] must contain methods {a!r} and {b!r}, got {sorted(by_method)}")
        best = max(float(np.mean(v)) for v in by_method.values())
        na = stats.normalise(by_method[a], random[env], best)
        nb = stats.normalise(by_method[b], random[env], best)
        res = stats.non_inferiority(na, nb, margin, alpha)
        out[env] = {**res, "best": best, "random": float(random[env]), "n_a": len(na), "n_b": len(nb)}
    return out


@register(
    "eggroll.rl.parity",
    paper="EGGROLL",
    statement="EGGROLL (rank 1) is non-inferior to full-rank OpenES in tabula-rasa RL (same network, "
              "population and environment-step budget): one-sided Welch test at alpha = 0.05 with a margin of "
              "10% of the random-to-best return range, on at least 4 of 5 gymnax environments.",
    target=Target(low=4, text="environments where EGGROLL r=1 is non-inferior >= 4 (of 5)"),
    quick=False,
    notebook="03_rl",
)
def parity(finals: dict[str, dict[str, Any]] | None = None, random: dict[str, float] | None = None) -> Measurement:
    if finals is None or random is None:
        raise ValueError("finals and random are required: per-env per-method final returns and random returns")
    table = parity_table(finals, random)
    n = sum(r["non_inferior"] for r in table.values())
    seeds = min(min(r["n_a"], r["n_b"]) for r in table.values())
    return Measurement(measured=float(n), seeds=seeds,
                       details={"environments": len(table), "margin": PARITY_MARGIN, "alpha": PARITY_ALPHA,
                                "per_env": {k: {kk: (round(vv, 4) if isinstance(vv, float) else vv)
                                                for kk, vv in v.items()} for k, v in table.items()}})


@register(
    "eggroll.rl.speed",
    paper="EGGROLL",
    statement="One ES generation of EGGROLL (rank 1) takes less wall-clock time than one of full-rank OpenES "
              "at the default policy network (2 hidden layers of 256), same population and episodes, "
              "measured side by side in one run on this CPU (no GPU was available).",
    target=Target(high=1.0, text="EGGROLL / OpenES generation time < 1"),
    quick=False,
    notebook="03_rl",
)
def speed(env_id: str = "CartPole-v1", population: int = 64, max_steps: int = 100, repeats: int = 3,
          hidden: tuple[int, ...] = (256, 256)) -> Measurement:
    from lowrank_es.rl import ESConfig, generation_seconds

    common = dict(env_id=env_id, population=population, max_steps=max_steps, hidden=hidden, seeds=1)
    t_e = generation_seconds(ESConfig(method="eggroll", rank=1, **common), repeats)
    t_o = generation_seconds(ESConfig(method="openes", rank=None, **common), repeats)
    return Measurement(measured=t_e / t_o, seeds=1,
                       details={"eggroll_s": t_e, "openes_s": t_o, "env": env_id, "population": population,
                                "max_steps": max_steps, "hidden": list(hidden), "repeats": repeats})


@register(
    "eggroll.rl.ppo_reference",
    paper="EGGROLL",
    statement="The PPO reference (pure JAX, PureJaxRL hyper-parameters) solves CartPole-v1 within 500k "
              "environment steps.",
    target=Target(low=475, text="mean over seeds of the final return >= 475 (Gym's CartPole-v1 threshold)"),
    quick=False,
    notebook="03_rl",
)
def ppo_reference(final_returns=None, env_steps: int | None = None) -> Measurement:
    if final_returns is None:
        raise ValueError("final_returns (one per seed) is required")
    x = np.asarray(final_returns, dtype=float)
    if env_steps is not None and env_steps > 500_000:
        raise ValueError(f"env_steps must be <= 500000 for this claim, got {env_steps}")
    return Measurement(measured=float(x.mean()), uncertainty=float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1
                       else None, seeds=int(x.size), details={"per_seed": x.round(1).tolist(), "env_steps": env_steps})

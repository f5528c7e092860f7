"""Ratios read off the rows of a run, the claimed points, and the one row look-up.

A run's results (``data`` of the ``throughput`` experiment's record) hold ``rows`` (the grid),
``claim_rows`` (the claimed points, timed for more rounds), ``profile`` rows and a ``summary``.
Every ratio is paired: the median over rounds of ``t_slow / t_fast`` of programs timed in the
same interleaved rounds, so load from other processes cancels as far as it can.
"""

from __future__ import annotations

import statistics
from typing import Any

#: The claimed points and their thresholds (lowrank_es.claims.throughput registers them).
CLAIM_POINTS: dict[str, dict[str, Any]] = {
    "vs_inference": {"model": "mlp", "hidden": 1024, "population": 1024, "rank": 1, "low": 0.95, "min_rounds": 9},
    "vs_inference_512": {"model": "mlp", "hidden": 512, "population": 1024, "rank": 1, "low": 0.9, "min_rounds": 9},
    # the largest size naive ES ran at (most materialised floats, population x params)
    "vs_naive": {"model": "mlp", "rank": 1, "low": 10.0},
}
#: Where a GPU claim asks for less than the CPU one (the paper: "close to" pure batch inference).
GPU_LOWS: dict[str, float] = {"vs_inference": 0.9}


def threshold(key: str, platform: str = "cpu") -> float:
    """The target of the claimed ratio ``key`` of :data:`CLAIM_POINTS` on ``platform``."""
    low = CLAIM_POINTS[key]["low"]
    return GPU_LOWS.get(key, low) if platform == "gpu" else low


def find(rows: list[dict[str, Any]], *, status: str | None = "ok", **match) -> dict[str, Any] | None:
    """The first row whose fields equal ``match`` and whose status is ``status`` (None: any)."""
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()) and (status is None or r.get("status") == status):
            return r
    return None


def select(results: dict[str, Any], **match) -> list[dict[str, Any]]:
    """Grid rows of ``results`` whose fields equal ``match`` (``sweep=...`` matches membership)."""
    sweep = match.pop("sweep", None)
    return [r for r in results["rows"] if all(r.get(k) == v for k, v in match.items())
            and (sweep is None or sweep in r.get("sweeps", []))]


def round_ratios(fast: dict[str, Any], slow: dict[str, Any], key: str = "times_s") -> list[float] | None:
    """Per-round ``t_slow / t_fast`` of two programs timed in the same rounds (None otherwise)."""
    a, b = fast.get(key) or [], slow.get(key) or []
    same_work = fast["population"] * fast["tokens"] == slow["population"] * slow["tokens"]
    if a and len(a) == len(b) and same_work and min(a) > 0:
        return [tb / ta for ta, tb in zip(a, b)]
    return None


def paired_ratio(fast: dict[str, Any], slow: dict[str, Any], key: str = "times_s") -> float | None:
    """Throughput of ``fast`` over ``slow``: the median of :func:`round_ratios`, else (programs
    not timed in the same rounds) the ratio of median throughputs. ``key="cpu_times_s"`` pairs
    process CPU times instead of wall times."""
    q = round_ratios(fast, slow, key)
    if q:
        return float(statistics.median(q))
    if key != "times_s":
        return None
    return fast["member_tokens_per_s"] / slow["member_tokens_per_s"]


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, hidden, population, rank, phase): EGGROLL / inference and EGGROLL / naive
    throughput, wall and CPU time, paired over the interleaved rounds."""
    out = []
    for r in rows:
        if r["contender"] != "eggroll" or r.get("status") != "ok":
            continue
        where = {k: r[k] for k in ("model", "hidden", "population", "tokens")}
        inf = find(rows, **where, contender="inference", phase="forward")
        nai = find(rows, **where, contender="naive", phase=r["phase"])
        out.append({**where, "rank": r["rank"], "phase": r["phase"],
                    "vs_inference": paired_ratio(r, inf) if inf else None,
                    "vs_inference_rounds": round_ratios(r, inf) if inf else None,
                    "vs_naive_rounds": round_ratios(r, nai) if nai else None,
                    "vs_naive": paired_ratio(r, nai) if nai else None,
                    "vs_inference_cpu": paired_ratio(r, inf, "cpu_times_s") if inf else None,
                    "vs_naive_cpu": paired_ratio(r, nai, "cpu_times_s") if nai else None})
    return out


def _naive_point(rows: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
    ok = [r for r in rows if r["model"] == model and r["contender"] == "naive" and r["phase"] == "forward"
          and r.get("status") == "ok"]
    return max(ok, key=lambda r: (r["population"] * r["param_floats"], r["hidden"])) if ok else None


def claim_point(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The claimed ratio ``key`` of :data:`CLAIM_POINTS`, read off the rows of a run, or None
    when the run did not measure that point.

    Returns the point (model, hidden, population, tokens, rank), ``ratio`` (median over rounds of
    the paired wall-time ratio), ``ratio_cpu`` (the same with process CPU time, CPU runs only),
    ``rounds``, ``spread`` (half the range of the per-round ratios), ``round_ratios`` and the
    rows' ``load_average``. Claimed points come from ``claim_rows`` when the run has them.
    """
    spec = CLAIM_POINTS[key]
    other = "naive" if key == "vs_naive" else "inference"
    pools = [results.get("claim_rows") or [], results.get("rows") or []]
    for rows in pools:
        if other == "naive":
            slow = _naive_point(rows, spec["model"])
            where = {k: slow[k] for k in ("model", "hidden", "population", "tokens")} if slow else None
        else:
            where = {k: spec[k] for k in ("model", "hidden", "population")}
            slow = find(rows, **where, contender="inference", phase="forward")
        fast = find(rows, **where, contender="eggroll", rank=spec["rank"], phase="forward") if slow else None
        if fast is None:
            continue
        q = round_ratios(fast, slow) or []
        out = {k: fast[k] for k in ("model", "hidden", "population", "tokens", "rank")}
        out.update(ratio=paired_ratio(fast, slow), ratio_cpu=paired_ratio(fast, slow, "cpu_times_s"),
                   rounds=len(q), spread=(max(q) - min(q)) / 2 if len(q) > 1 else None,
                   round_ratios=q, load_average=fast.get("load_average"))
        if other == "naive":
            gen = [find(rows, **where, contender=c, rank=rk, phase="generation") for c, rk in (("eggroll", 1), ("naive", None))]
            out["generation_ratio"] = paired_ratio(*gen) if all(gen) else None
        return out
    return None


#: Fewer paired rounds than this cannot give a 95% interval of the median (order statistics).
MIN_ROUNDS_FOR_CI = 6


def judged_interval(point: dict[str, Any]) -> tuple[float, float, str]:
    """The interval a claimed ratio is judged by, and how it was taken: the distribution-free 95%
    interval of the median over rounds, or the slowest and fastest round when fewer than
    ``MIN_ROUNDS_FOR_CI`` rounds cannot give it. A claim is judged on its lower end."""
    from lowrank_es.stats import median_ci

    rounds = point.get("round_ratios") or [point["ratio"]]
    if len(rounds) < MIN_ROUNDS_FOR_CI:
        return (float(min(rounds)), float(max(rounds)),
                f"the smallest of {len(rounds)} round ratios (< {MIN_ROUNDS_FOR_CI} rounds: no 95% interval of the median)")
    low, high = median_ci(rounds)
    return low, high, "the lower end of the 95% interval of the median"


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """The grid's ratios and every claimed point (see :func:`claim_point`)."""
    return {"ratios": ratios(results.get("rows") or []), **{k: claim_point(results, k) for k in CLAIM_POINTS}}

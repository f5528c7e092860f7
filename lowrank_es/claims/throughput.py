"""Claims of the throughput experiment (notebook 06_throughput): read from its results.

Each value is a ratio measured side by side in one run (``lowrank_es.throughput.summary.claim_point``):
the paired wall-time ratio of interleaved timing rounds. A claim is judged on the lower end of the
distribution-free 95% interval of the median over rounds (``lowrank_es.stats.median_ci``), so a ratio
that holds only on a lucky median does not hold; the median itself and half the range over rounds
are in the details, and ``seeds`` is the number of rounds. CPU claims read the committed reference
(``figures/results/throughput__reference.json``), GPU claims the GPU run
(``figures/results/throughput__gpu.json``); each row names its scale and device.
"""

from __future__ import annotations

import math
from typing import Any

from lowrank_es import experiments
from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.throughput.summary import CLAIM_POINTS, MIN_ROUNDS_FOR_CI, claim_point, judged_interval, threshold


def _measurement(results: dict[str, Any], key: str, min_rounds: int = 1) -> Measurement:
    """The claimed ratio ``key`` of a results record (``nan`` with a reason when it is missing
    or measured over fewer than ``min_rounds`` rounds)."""
    data = results["data"]
    details: dict[str, Any] = {"measured_on": results.get("device"), "date": results.get("date"),
                               "code_version": results.get("code_version"),
                               "xla_flags": (data.get("environment") or {}).get("xla_flags"),
                               "noise": (data.get("environment") or {}).get("noise"), "note": data.get("note")}
    where = dict(scale=results.get("scale"), device=results.get("device"))
    p = claim_point(data, key)
    if p is None or p["ratio"] is None:
        details["reason"] = f"the results hold no {key} point"
        return Measurement(measured=math.nan, details=details, **where)
    details.update({k: p[k] for k in ("model", "hidden", "population", "tokens", "rank", "rounds", "ratio_cpu",
                                      "round_ratios", "load_average")})
    if p.get("generation_ratio") is not None:
        details["generation_ratio"] = p["generation_ratio"]
    if p["rounds"] < min_rounds:
        details["reason"] = f"measured over {p['rounds']} rounds, the claim needs >= {min_rounds}"
        return Measurement(measured=math.nan, details=details, **where)
    details.update(median=float(p["ratio"]), half_range=p["spread"])
    low, high, details["judged_on"] = judged_interval(p)
    rounds = len(p.get("round_ratios") or [p["ratio"]])
    if rounds >= MIN_ROUNDS_FOR_CI:
        details["median_ci95"] = [low, high]
    return Measurement(measured=low, seeds=rounds, details=details, **where)


def _gpu(results: dict[str, Any] | None) -> dict[str, Any]:
    results = results or experiments.load("throughput", "gpu")
    if not str(results.get("device", "")).startswith("gpu"):
        raise ValueError(f"the GPU throughput claims need results measured on a GPU, got device {results.get('device')!r}")
    return results


def _target(key: str, low: float | None = None, where: str = "") -> Target:
    """The target of claim ``key``: ``low`` (default: the CPU threshold of CLAIM_POINTS)."""
    spec = CLAIM_POINTS[key]
    low = spec["low"] if low is None else low
    rounds = f" over >= {spec['min_rounds']} rounds" if "min_rounds" in spec and not where else ""
    what = "naive ES" if key == "vs_naive" else "inference"
    return Target(low=low, text=f"EGGROLL r=1 / {what} throughput, lower end of the median's 95% interval "
                               f"(the slowest round under 6 rounds) >= {low:g}{where}{rounds}")


@register(
    "eggroll.throughput.vs_inference",
    paper="EGGROLL",
    statement="On the CPU, the rank-1 EGGROLL population forward runs at >= 0.95x the throughput of plain "
    "batched inference (MLP, hidden 1024, population 1024, 8 tokens per member; >= 9 paired rounds)",
    target=_target("vs_inference"),
    quick=False,
    notebook="06_throughput",
)
def vs_inference(results: dict[str, Any] | None = None) -> Measurement:
    """EGGROLL rank-1 forward / plain inference throughput at hidden 1024, population 1024."""
    results = results or experiments.load("throughput", "reference")
    return _measurement(results, "vs_inference", CLAIM_POINTS["vs_inference"]["min_rounds"])


@register(
    "eggroll.throughput.vs_inference_512",
    paper="EGGROLL",
    statement="On the CPU, the rank-1 EGGROLL population forward runs at >= 0.9x the throughput of plain "
    "batched inference at hidden 512, population 1024 (MLP, 8 tokens per member; >= 9 paired rounds)",
    target=_target("vs_inference_512"),
    quick=False,
    notebook="06_throughput",
)
def vs_inference_512(results: dict[str, Any] | None = None) -> Measurement:
    """EGGROLL rank-1 forward / plain inference throughput at hidden 512, population 1024."""
    results = results or experiments.load("throughput", "reference")
    return _measurement(results, "vs_inference_512", CLAIM_POINTS["vs_inference_512"]["min_rounds"])


@register(
    "eggroll.throughput.vs_naive",
    paper="EGGROLL",
    statement="On the CPU, the rank-1 EGGROLL population forward is >= 10x faster than naive full-rank ES "
    "(materialised W + sigma E_i per member) at the largest size naive ES fits in the memory budget (MLP)",
    target=_target("vs_naive"),
    quick=False,
    notebook="06_throughput",
)
def vs_naive(results: dict[str, Any] | None = None) -> Measurement:
    """EGGROLL rank-1 forward / naive ES forward throughput at the largest naive size that ran."""
    return _measurement(results or experiments.load("throughput", "reference"), "vs_naive")


@register(
    "eggroll.throughput.vs_inference_gpu",
    paper="EGGROLL",
    statement="On a GPU, the rank-1 EGGROLL population forward runs at >= 0.9x the throughput of plain "
    "batched inference (the paper: close to pure batch inference), MLP, hidden 1024, population 1024, "
    "8 tokens per member, float32 XLA kernels (code version in details.code_version)",
    target=_target("vs_inference", threshold("vs_inference", "gpu"), " on a GPU"),
    quick=False,
    notebook="06_throughput",
)
def vs_inference_gpu(results: dict[str, Any] | None = None) -> Measurement:
    """As ``eggroll.throughput.vs_inference``, read from the GPU results."""
    return _measurement(_gpu(results), "vs_inference")


@register(
    "eggroll.throughput.vs_naive_gpu",
    paper="EGGROLL",
    statement="On a GPU, the rank-1 EGGROLL population forward is >= 10x faster than naive full-rank ES "
    "at the largest size naive ES fits in the memory budget (MLP)",
    target=_target("vs_naive", where=" on a GPU"),
    quick=False,
    notebook="06_throughput",
)
def vs_naive_gpu(results: dict[str, Any] | None = None) -> Measurement:
    """As ``eggroll.throughput.vs_naive``, read from the GPU results."""
    return _measurement(_gpu(results), "vs_naive")

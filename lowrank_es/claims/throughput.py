"""Claims of the throughput benchmark (``benchmarks/throughput.py``, notebook 06_throughput).

Both are read from the benchmark's results JSON (``figures/06_throughput__results.json`` by
default): ratios measured side by side in one run, on the device named in the JSON, which each
measurement carries in ``details["measured_on"]``. The value is the median over timing rounds of
the paired ratio; its uncertainty is half the range over rounds, ``seeds`` the number of rounds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.paths import figures_dir

RESULTS_NAME = "06_throughput__results.json"
GPU_RESULTS_NAME = "06_throughput__results_gpu.json"


def _load(results: dict[str, Any] | None, path: str | Path | None, name: str = RESULTS_NAME) -> dict[str, Any]:
    if results is not None:
        return results
    path = Path(path) if path is not None else figures_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"no throughput results at {path}; run `python -m benchmarks.throughput`"
                                + (" on a GPU (benchmarks/RESULTS.md gives the command)" if name == GPU_RESULTS_NAME else ""))
    return json.loads(path.read_text())


def _gpu_results(results: dict[str, Any] | None, path: str | Path | None) -> dict[str, Any]:
    res = _load(results, path, GPU_RESULTS_NAME)
    if res.get("platform") != "gpu":
        raise ValueError(f"the GPU throughput claims need results measured on a GPU, got device {res.get('device')!r}")
    return res


def _round_spread(res: dict[str, Any], s: dict[str, Any], other: str) -> float | None:
    """Half the range of the per-round paired ratios behind ``s`` (the run-to-run scatter)."""

    def times(contender, rank):
        for r in res.get("rows", []):
            if (r.get("model"), r.get("hidden"), r.get("population"), r.get("contender"), r.get("rank"),
                    r.get("phase"), r.get("status")) == (s["model"], s["hidden"], s["population"], contender, rank,
                                                        "forward", "ok"):
                return r.get("times_s")
        return None

    fast, slow = times("eggroll", s["rank"]), times(other, None)
    if not fast or not slow or len(fast) != len(slow) or len(fast) < 2:
        return None
    q = [b / a for a, b in zip(fast, slow)]
    return (max(q) - min(q)) / 2


def _measurement(res: dict[str, Any], key: str) -> Measurement:
    s = (res.get("summary") or {}).get(key)
    details: dict[str, Any] = {"measured_on": res.get("device"), "date": res.get("date")}
    if not s or s.get("ratio") is None:
        details["reason"] = f"the results hold no {key} point"
        return Measurement(measured=math.nan, details=details)
    details.update({k: s[k] for k in ("model", "hidden", "population", "tokens", "rank") if k in s})
    if s.get("generation_ratio") is not None:
        details["generation_ratio"] = s["generation_ratio"]
    details["ratio_cpu_time"] = s.get("ratio_cpu")
    unc = _round_spread(res, s, "inference" if key == "vs_inference" else "naive")
    seeds = len(next((r["times_s"] for r in res.get("rows", []) if r.get("times_s")), [None]))
    return Measurement(measured=float(s["ratio"]), uncertainty=unc, seeds=max(seeds, 1), details=details)


@register(
    "eggroll.throughput.vs_inference",
    paper="EGGROLL",
    statement="The rank-1 EGGROLL population forward runs at >= 0.9x the throughput of plain batched "
    "inference (MLP, hidden 1024, population 1024, 8 tokens per member; device in details.measured_on)",
    target=Target(low=0.9, text="EGGROLL r=1 / inference throughput >= 0.9"),
    quick=False,
    notebook="06_throughput",
)
def vs_inference(results: dict[str, Any] | None = None, path: str | Path | None = None) -> Measurement:
    """EGGROLL rank-1 forward / plain inference throughput at hidden 1024, population 1024."""
    return _measurement(_load(results, path), "vs_inference")


@register(
    "eggroll.throughput.vs_naive",
    paper="EGGROLL",
    statement="The rank-1 EGGROLL population forward is >= 10x faster than naive full-rank ES "
    "(materialised W + sigma E_i per member) at the largest size naive ES fits in the memory "
    "budget (MLP; device in details.measured_on)",
    target=Target(low=10.0, text="EGGROLL r=1 / naive ES throughput >= 10"),
    quick=False,
    notebook="06_throughput",
)
def vs_naive(results: dict[str, Any] | None = None, path: str | Path | None = None) -> Measurement:
    """EGGROLL rank-1 forward / naive ES forward throughput at the largest naive size that ran."""
    return _measurement(_load(results, path), "vs_naive")


@register(
    "eggroll.throughput.vs_inference_gpu",
    paper="EGGROLL",
    statement="On a GPU, the rank-1 EGGROLL population forward runs at >= 0.9x the throughput of plain "
    "batched inference (the paper: close to pure batch inference), MLP, hidden 1024, population 1024, "
    "8 tokens per member, float32 XLA kernels (device in details.measured_on)",
    target=Target(low=0.9, text="EGGROLL r=1 / inference throughput >= 0.9 on a GPU"),
    quick=False,
    notebook="06_throughput",
)
def vs_inference_gpu(results: dict[str, Any] | None = None, path: str | Path | None = None) -> Measurement:
    """As ``eggroll.throughput.vs_inference``, read from the GPU results."""
    return _measurement(_gpu_results(results, path), "vs_inference")


@register(
    "eggroll.throughput.vs_naive_gpu",
    paper="EGGROLL",
    statement="On a GPU, the rank-1 EGGROLL population forward is >= 10x faster than naive full-rank ES "
    "at the largest size naive ES fits in the memory budget (MLP; device in details.measured_on)",
    target=Target(low=10.0, text="EGGROLL r=1 / naive ES throughput >= 10 on a GPU"),
    quick=False,
    notebook="06_throughput",
)
def vs_naive_gpu(results: dict[str, Any] | None = None, path: str | Path | None = None) -> Measurement:
    """As ``eggroll.throughput.vs_naive``, read from the GPU results."""
    return _measurement(_gpu_results(results, path), "vs_naive")

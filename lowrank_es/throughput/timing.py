"""Timing and memory of compiled programs: compile once, warm up, then time in interleaved rounds.

Compilation and one warm-up call are excluded, every call is blocked on, and programs that are
compared are timed in the same rounds, so load from other processes hits them alike; ratios
are then paired round by round. Memory is the compiled program's own account
(``compiled.memory_analysis()``: arguments + outputs + temporaries).
"""

from __future__ import annotations

import math
import os
import platform
import time
from typing import Any, Callable, Sequence

import jax


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages of the machine (None where the OS has none):
    with more runnable processes than cores, wall times are inflated."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def device_info() -> dict[str, Any]:
    """What the numbers were measured on: device, cores, processor, jax version and XLA flags."""
    d = jax.devices()[0]
    kind = getattr(d, "device_kind", d.platform)
    return {
        "device": f"{d.platform}:{kind}",
        "platform": d.platform,
        "device_kind": kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "jax_version": jax.__version__,
        # Compiler flags change what is measured: lowrank_es sets portable CPU flags unless
        # XLA_FLAGS is set; GPU runs may turn XLA's Triton GEMMs off.
        "xla_flags": os.environ.get("XLA_FLAGS"),
    }


def host_times_meaningful() -> bool:
    """Process CPU time measures the work only on the CPU backend; on an accelerator it is host
    time (dispatch and waiting), so it is not recorded there."""
    return jax.default_backend() == "cpu"


def default_max_bytes() -> int:
    """Memory budget for one compiled program: 80% of the accelerator's limit, 4 GiB on CPU."""
    d = jax.devices()[0]
    try:
        stats = d.memory_stats() or {}
    except Exception:  # CPU devices may not report
        stats = {}
    if d.platform != "cpu" and stats.get("bytes_limit"):
        return int(0.8 * stats["bytes_limit"])
    return 4 * 2**30


def memory_of(compiled) -> dict[str, int] | None:
    """Arguments + outputs + temporaries of a compiled executable (bytes), from XLA's own account."""
    try:
        m = compiled.memory_analysis()
    except Exception:
        return None
    if m is None:
        return None
    out = {
        "argument": int(m.argument_size_in_bytes),
        "output": int(m.output_size_in_bytes),
        "temp": int(m.temp_size_in_bytes),
        "alias": int(m.alias_size_in_bytes),
    }
    out["total"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    peak = getattr(m, "peak_memory_in_bytes", 0)
    out["peak"] = int(peak) if peak else out["total"]
    return out


def compile_program(fn: Callable, args: Sequence[Any], *, max_bytes: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Compile ``fn`` for ``args``; returns (executable or None, record).

    The record has ``compile_s``, ``memory`` (see :func:`memory_of`), ``flops`` (XLA's cost
    analysis, when available) and ``status``: "ok", "skipped" when the program needs more than
    ``max_bytes``, or "failed".
    """
    t0 = time.perf_counter()
    try:
        compiled = jax.jit(fn).lower(*args).compile()
    except Exception as e:  # pragma: no cover - depends on the device's limits
        return None, {"status": "failed", "error": f"compile: {type(e).__name__}: {str(e)[:200]}"}
    rec: dict[str, Any] = {"compile_s": time.perf_counter() - t0, "memory": memory_of(compiled), "flops": None}
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        rec["flops"] = float(cost["flops"]) if cost and cost.get("flops") is not None else None
    except Exception:
        pass
    mem = rec["memory"]
    if max_bytes is not None and mem is not None and mem["total"] > max_bytes:
        rec.update(status="skipped", error=f"needs {mem['total'] / 2**30:.3g} GiB > budget {max_bytes / 2**30:.3g} GiB")
        return None, rec
    rec["status"] = "ok"
    return compiled, rec


def time_programs(programs: Sequence[tuple[Any, Sequence[Any]]], *, repeats: int = 5,
                  min_round_s: float = 0.0) -> list[tuple[list[float], list[float]] | None]:
    """Time compiled programs in interleaved rounds after one excluded warm-up call each,
    blocking on every result. Interleaving makes load from other processes hit all contenders
    alike. Within a round each program first runs untimed for as long as its timed block, so it
    does not pay for the after-effects of the program timed before it (on the 2-core CPU, plain
    inference timed right after naive ES, which frees gigabytes of materialised weights, ran about
    1.5x slower for the next ~100 ms). A program faster than ``min_round_s`` is called ``k`` times back to back
    per round (``k`` from its warm-up time) and the round's time divided by ``k``. Returns per program
    ``(wall, cpu)``: ``repeats`` wall-clock seconds per call and the process CPU seconds per call
    (all threads; on a CPU backend the work done, which other processes' load does not inflate
    the way it inflates wall time), or None for a program that failed at run time."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if not min_round_s >= 0:
        raise ValueError(f"min_round_s must be >= 0, got {min_round_s!r}")
    calls: list[int | None] = []
    for compiled, args in programs:
        try:
            t = time.perf_counter()
            jax.block_until_ready(compiled(*args))  # warm-up, excluded
            t = time.perf_counter() - t
            calls.append(max(1, min(1000, math.ceil(min_round_s / max(t, 1e-6)))))
        except Exception:  # pragma: no cover - out of memory at run time
            calls.append(None)
    times: list[tuple[list[float], list[float]] | None] = [([], []) if k else None for k in calls]
    for _ in range(repeats):
        for j, (compiled, args) in enumerate(programs):
            k = calls[j]
            if k is None:
                continue
            for _ in range(k):  # untimed, as long as the timed block: let the previous program's after-effects settle
                out = compiled(*args)
            jax.block_until_ready(out)
            c, t = time.process_time(), time.perf_counter()
            for _ in range(k):
                out = compiled(*args)
            jax.block_until_ready(out)
            times[j][0].append((time.perf_counter() - t) / k)
            times[j][1].append((time.process_time() - c) / k)
    return times

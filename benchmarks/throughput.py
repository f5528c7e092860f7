"""Throughput and memory of a population forward: EGGROLL vs naive full-rank ES vs plain inference.

Three contenders run the *same* model on the *same* inputs, ``inputs[i]`` being member ``i``'s
``T`` tokens:

1. ``inference``: plain batched inference of the mean parameters (``noise=None``), the ceiling;
2. ``eggroll``: the EGGROLL population forward at rank ``r`` (``EGGROLL.map_members``): each
   antithetic pair's low-rank noise is regenerated from its key once per generation, shared by the
   pair's two members (opposite signs), reused for their ``T`` tokens, and consumed by
   :func:`lowrank_es.es.eggroll.linear` without being materialised;
3. ``naive``: full-rank ES, ``W + sigma * E_i`` materialised per member
   (:func:`lowrank_es.es.eggroll.materialise` with ``rank=None`` noise, also drawn once per pair) and
   batch-multiplied.

Besides the forward pass, one whole ES generation (noise + forward + fitness shaping + update,
``EGGROLL.step``) is timed for 2 and 3. Throughput is in member-tokens per second
(``population * T / time``). Timing excludes compilation and a warm-up call, blocks on the result,
and reports the median of repeats. Memory is the compiled program's own account
(``compiled.memory_analysis()``: arguments + outputs + temporaries), next to the analytic
per-member noise size, ``r (m + n)`` floats per matrix for EGGROLL against ``m n`` for naive ES.

Run ``python -m benchmarks.throughput [--quick] [--out figures/06_throughput__results.json]``;
the same functions are imported by ``notebooks/06_throughput.ipynb``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.models import mingru
from lowrank_es.es.eggroll import EGGROLL, ESState, materialise
from lowrank_es.models.mlp import mlp_apply, mlp_init
from lowrank_es.paths import figures_dir

PyTree = Any

PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
MODELS = ("mlp", "mingru")
RANKS = (1, 2, 4, 8, 16)
RESULTS_NAME = "06_throughput__results.json"
#: The accelerator run (merged from several processes with ``--merge``; see benchmarks/RESULTS.md).
GPU_RESULTS_NAME = "06_throughput__results_gpu.json"

#: The two targets of the topic (ratios measured in one run on one device).
TARGET_VS_INFERENCE = {"model": "mlp", "hidden": 1024, "population": 1024, "rank": 1, "low": 0.9}
TARGET_VS_NAIVE = {"model": "mlp", "rank": 1, "low": 10.0}


# ---------------------------------------------------------------------------
# Models: one definition, three contenders
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Model:
    """A model written against the EGGROLL layers.

    init(key, hidden, dtype) -> params; inputs(key, population, tokens, hidden, dtype) -> (N, T, ...);
    apply(params, inputs_i, noise) -> (T, out) for one member; fitness(params, inputs_i, noise) -> ().
    """

    name: str
    init: Callable[..., PyTree]
    inputs: Callable[..., jax.Array]
    apply: Callable[[PyTree, jax.Array, PyTree | None], jax.Array]
    fitness: Callable[[PyTree, jax.Array, PyTree | None], jax.Array]


def mlp_model(depth: int = 2) -> Model:
    """``depth`` square linear layers of width ``hidden`` with tanh between them; one token is one
    input row. Fitness: ``-mean(y^2)`` over the member's tokens."""
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")

    def init(key, hidden, dtype=jnp.float32):
        return mlp_init(key, (hidden,) * (depth + 1), dtype)

    def inputs(key, population, tokens, hidden, dtype=jnp.float32):
        return jax.random.normal(key, (population, tokens, hidden), dtype)

    def fitness(params, x, noise):
        return -jnp.mean(mlp_apply(params, x, noise) ** 2)

    return Model("mlp", init, inputs, mlp_apply, fitness)


def mingru_model(vocab_size: int = 256, n_layers: int = 1) -> Model:
    """The minGRU character LM of :mod:`lowrank_es.models.mingru` (scan over the member's ``T`` tokens).
    Fitness: minus the cross-entropy of predicting the next token (cyclically) at all ``T`` steps."""

    def init(key, hidden, dtype=jnp.float32):
        return mingru.init_params(key, vocab_size, hidden, n_layers, dtype)

    def inputs(key, population, tokens, hidden, dtype=jnp.float32):
        return jax.random.randint(key, (population, tokens), 0, vocab_size)

    def fitness(params, tokens, noise):
        logp = jax.nn.log_softmax(mingru.apply(params, tokens, noise), axis=-1)
        return jnp.mean(jnp.take_along_axis(logp, jnp.roll(tokens, -1)[:, None], axis=-1))

    return Model("mingru", init, inputs, mingru.apply, fitness)


def get_model(name: str) -> Model:
    if name == "mlp":
        return mlp_model()
    if name == "mingru":
        return mingru_model()
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")


# -- the contenders -----------------------------------------------------------


def inference_forward(model: Model) -> Callable[[PyTree, jax.Array], jax.Array]:
    """Plain batched inference of the mean: (params, inputs (N, T, ...)) -> (N, T, out)."""
    return lambda params, inputs: jax.vmap(lambda x: model.apply(params, x, None))(inputs)


def eggroll_forward(model: Model, es: EGGROLL) -> Callable[[ESState, jax.Array], jax.Array]:
    """Population forward with each member's noise regenerated once and consumed by the
    factored layers: (state, inputs (N, T, ...)) -> (N, T, out)."""

    def fwd(state: ESState, inputs: jax.Array) -> jax.Array:
        return es.map_members(state, lambda p, n, i, x: model.apply(p, x, n), inputs)

    return fwd


def naive_forward(model: Model, es: EGGROLL) -> Callable[[ESState, jax.Array], jax.Array]:
    """Naive ES: every member's ``W + sigma E_i`` materialised, then batch-multiplied.
    (state, inputs (N, T, ...)) -> (N, T, out). With ``es.rank=None`` this is full-rank ES."""

    def fwd(state: ESState, inputs: jax.Array) -> jax.Array:
        return es.map_members(state, lambda p, n, i, x: model.apply(materialise(p, n), x, None), inputs)

    return fwd


def eggroll_generation(model: Model, es: EGGROLL) -> Callable[[ESState, jax.Array], tuple[ESState, dict]]:
    """One ES generation through the factored layers (``EGGROLL.step``)."""
    return lambda state, inputs: es.step(state, lambda p, n, i: model.fitness(p, inputs[i], n))


def naive_generation(model: Model, es: EGGROLL) -> Callable[[ESState, jax.Array], tuple[ESState, dict]]:
    """One ES generation whose fitness evaluates materialised member weights."""
    return lambda state, inputs: es.step(state, lambda p, n, i: model.fitness(materialise(p, n), inputs[i], None))


def _population_noise(es: EGGROLL) -> Callable[[ESState], PyTree]:
    """Every draw's noise, stacked (num_pairs, ...) (profiling: the RNG cost alone)."""
    return lambda state: jax.vmap(es.pair_noise, (None, 0))(state, jnp.arange(es.num_pairs))


def _forward_given_noise(model: Model, es: EGGROLL) -> Callable[[PyTree, PyTree, jax.Array], jax.Array]:
    """The factored forward with precomputed noise (profiling: the forward without the RNG)."""
    return lambda params, noise, inputs: es.map_members_given_noise(
        params, noise, lambda p, n, i, x: model.apply(p, x, n), inputs)


def _materialised_weights(es: EGGROLL) -> Callable[[ESState], PyTree]:
    """All members' materialised weights (profiling: naive ES's RNG + materialisation)."""
    return lambda state: es.map_members(state, lambda p, n, i: materialise(p, n))


def _forward_given_weights(model: Model) -> Callable[[PyTree, jax.Array], jax.Array]:
    """Batched forward of given per-member weights (profiling: naive ES's batched GEMMs)."""
    return lambda weights, inputs: jax.vmap(lambda w, x: model.apply(w, x, None))(weights, inputs)


# ---------------------------------------------------------------------------
# Analytic memory
# ---------------------------------------------------------------------------


def noise_floats_per_member(params: PyTree, rank: int | None) -> int:
    """Floats of one member's noise: ``r (m + n)`` per matrix (EGGROLL) or ``m n`` (``rank=None``),
    plus the size of every vector leaf."""
    total = 0
    for leaf in jax.tree_util.tree_leaves(params):
        shape = jnp.shape(leaf)
        if rank is not None and len(shape) == 2:
            total += min(rank, *shape) * (shape[0] + shape[1])
        else:
            total += int(np.prod(shape))
    return int(total)


def param_floats(params: PyTree) -> int:
    return int(sum(int(np.prod(jnp.shape(x))) for x in jax.tree_util.tree_leaves(params)))


# ---------------------------------------------------------------------------
# Timing and memory of one compiled program
# ---------------------------------------------------------------------------


def device_info() -> dict[str, Any]:
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
        # Compiler flags change what is measured (e.g. GPU runs that turn XLA's Triton GEMMs off).
        "xla_flags": os.environ.get("XLA_FLAGS") or None,
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


def measure(fn: Callable, args: Sequence[Any], *, repeats: int = 5, max_bytes: int | None = None) -> dict[str, Any]:
    """Compile, warm up and time one program: the record of :func:`compile_program` plus
    ``median_s`` and ``times_s``."""
    compiled, rec = compile_program(fn, args, max_bytes=max_bytes)
    if compiled is None:
        return rec
    (times,) = time_programs([(compiled, args)], repeats=repeats)
    if times is None:  # pragma: no cover
        return {**rec, "status": "failed", "error": "run failed"}
    out = {**rec, "median_s": statistics.median(times[0]), "times_s": times[0]}
    if host_times_meaningful():
        out["cpu_times_s"] = times[1]
    return out


# ---------------------------------------------------------------------------
# One point of the sweep
# ---------------------------------------------------------------------------


def _check_int(name: str, v: Any, lo: int) -> None:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def make_key(seed: int, prng_impl: str = "threefry2x32") -> jax.Array:
    """A typed key of the chosen PRNG implementation (the library follows the key's impl)."""
    if prng_impl not in PRNG_IMPLS:
        raise ValueError(f"prng_impl must be one of {PRNG_IMPLS}, got {prng_impl!r}")
    return jax.random.key(seed, impl=prng_impl)


def run_point(
    model: Model | str,
    hidden: int,
    population: int,
    *,
    tokens: int = 8,
    ranks: Sequence[int] = RANKS,
    naive: bool = True,
    generation_ranks: Sequence[int] = (1,),
    sigma: float = 0.01,
    seed: int = 0,
    prng_impl: str = "threefry2x32",
    repeats: int = 5,
    min_round_s: float = 0.0,
    max_bytes: int | None = None,
    dtype=jnp.float32,
) -> list[dict[str, Any]]:
    """Time every contender at one (hidden, population) on the same params and inputs.

    All programs are compiled first, then timed in interleaved rounds (:func:`time_programs`):
    inference and EGGROLL together, then naive ES in rounds of its own.
    A whole ES generation is timed for the ranks in ``generation_ranks`` and, when that is not
    empty, for naive ES. Returns one row per (contender, rank, phase) with
    ``member_tokens_per_s``, ``memory`` and the analytic ``noise_floats_per_member``.
    """
    model = get_model(model) if isinstance(model, str) else model
    _check_int("hidden", hidden, 1)
    _check_int("population", population, 2)
    _check_int("tokens", tokens, 1)
    if population % 2:
        raise ValueError(f"population must be even (antithetic pairs), got {population}")
    for r in ranks:
        _check_int("rank", r, 1)
        if r > hidden:
            raise ValueError(f"rank must be in [1, hidden] = [1, {hidden}], got {r}")
    k_params, k_inputs = jax.random.split(jax.random.PRNGKey(seed))
    params = model.init(k_params, hidden, dtype)
    inputs = model.inputs(k_inputs, population, tokens, hidden, dtype)
    key = make_key(seed + 1, prng_impl)
    base = {"model": model.name, "hidden": hidden, "population": population, "tokens": tokens,
            "param_floats": param_floats(params),
            # antithetic pairs share one draw: the population's noise is N/2 draws (EGGROLL.map_members)
            "noise_draws": EGGROLL(sigma=sigma, population=population).num_pairs}
    work = population * tokens

    jobs: list[tuple[dict[str, Any], Callable, tuple]] = []

    def add(contender: str, rank: int | None, phase: str, fn, args) -> None:
        row = {**base, "contender": contender, "rank": rank, "phase": phase,
               "noise_floats_per_member": 0 if contender == "inference" else noise_floats_per_member(params, rank)}
        jobs.append((row, fn, args))

    add("inference", None, "forward", inference_forward(model), (params, inputs))
    for r in ranks:
        es = EGGROLL(sigma=sigma, population=population, rank=r)
        state = es.init(key, params)
        add("eggroll", r, "forward", eggroll_forward(model, es), (state, inputs))
        if r in generation_ranks:
            add("eggroll", r, "generation", eggroll_generation(model, es), (state, inputs))
    if naive:
        es = EGGROLL(sigma=sigma, population=population, rank=None)
        state = es.init(key, params)
        add("naive", None, "forward", naive_forward(model, es), (state, inputs))
        if generation_ranks:
            add("naive", None, "generation", naive_generation(model, es), (state, inputs))

    programs, idx = [], []
    for j, (row, fn, args) in enumerate(jobs):
        compiled, rec = compile_program(fn, args, max_bytes=max_bytes)
        row.update(rec)
        if compiled is not None:
            programs.append((compiled, args))
            idx.append(j)
    # Naive ES is timed in its own rounds, after the others: freeing its gigabytes of materialised
    # weights slowed whatever ran next for up to a second on the 2-core CPU (plain inference at
    # hidden 1024 / population 64: 7.8 ms after it against 5.9 ms otherwise), which no short
    # settling run absorbs. Ratios against naive ES pair round i of each group.
    heavy = [jobs[j][0]["contender"] == "naive" for j in idx]
    light_t = time_programs([pr for pr, h in zip(programs, heavy) if not h], repeats=repeats, min_round_s=min_round_s)
    heavy_t = time_programs([pr for pr, h in zip(programs, heavy) if h], repeats=repeats, min_round_s=min_round_s)
    times = [heavy_t.pop(0) if h else light_t.pop(0) for h in heavy]
    del programs
    rows = []
    for j, (row, _, _) in enumerate(jobs):
        if j in idx:
            t = times[idx.index(j)]
            if t is None:  # pragma: no cover
                row.update(status="failed", error="run failed")
            else:
                row.update(median_s=statistics.median(t[0]), times_s=t[0], member_tokens_per_s=work / statistics.median(t[0]))
                if host_times_meaningful():
                    row.update(cpu_times_s=t[1], cpu_median_s=statistics.median(t[1]))
        rows.append(row)
    return rows


def profile_point(
    model: Model | str,
    hidden: int,
    population: int,
    *,
    tokens: int = 8,
    rank: int | None = 1,
    sigma: float = 0.01,
    seed: int = 0,
    prng_impl: str = "threefry2x32",
    repeats: int = 5,
    min_round_s: float = 0.0,
    max_bytes: int | None = None,
    dtype=jnp.float32,
) -> dict[str, Any]:
    """Split one contender's forward into its RNG part and its arithmetic part.

    ``rank`` an int: EGGROLL (noise generation alone; the factored forward with that noise given).
    ``rank=None``: naive ES (noise + materialised weights alone; the batched forward of given weights).
    Also times plain inference on the same inputs. Times in seconds, medians.
    """
    model = get_model(model) if isinstance(model, str) else model
    k_params, k_inputs = jax.random.split(jax.random.PRNGKey(seed))
    params = model.init(k_params, hidden, dtype)
    inputs = model.inputs(k_inputs, population, tokens, hidden, dtype)
    es = EGGROLL(sigma=sigma, population=population, rank=rank)
    state = es.init(make_key(seed + 1, prng_impl), params)
    out: dict[str, Any] = {"model": model.name, "hidden": hidden, "population": population, "tokens": tokens,
                           "rank": rank, "prng_impl": prng_impl,
                           "noise_floats": es.num_pairs * noise_floats_per_member(params, rank)}

    jobs: list[tuple[str, Callable, tuple]] = [("inference_s", inference_forward(model), (params, inputs))]
    if rank is None:
        jobs.append(("total_s", naive_forward(model, es), (state, inputs)))
        rng_fn = _materialised_weights(es)
    else:
        jobs.append(("total_s", eggroll_forward(model, es), (state, inputs)))
        rng_fn = _population_noise(es)
    jobs.append(("rng_s", rng_fn, (state,)))
    compiled_rng, rec = compile_program(rng_fn, (state,), max_bytes=max_bytes)
    if compiled_rng is not None:
        given = compiled_rng(state)  # the noise / weights, precomputed
        arith = _forward_given_weights(model) if rank is None else _forward_given_noise(model, es)
        jobs.append(("arith_s", arith, (given, inputs) if rank is None else (params, given, inputs)))
    del compiled_rng
    programs, names = [], []
    for name, fn, args in jobs:
        compiled, rec = compile_program(fn, args, max_bytes=max_bytes)
        out[name] = None
        if compiled is not None:
            programs.append((compiled, args))
            names.append(name)
    for name, t in zip(names, time_programs(programs, repeats=repeats, min_round_s=min_round_s)):
        out[name] = None if t is None else statistics.median(t[0])
        if host_times_meaningful():
            out[name.replace("_s", "_cpu_s")] = None if t is None else statistics.median(t[1])
    if out["rng_s"]:
        out["normals_per_s"] = out["noise_floats"] / out["rng_s"]
    return out


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Grid of one run. ``hidden_sweep`` runs at ``hidden_sweep_population``; ``population_sweep``
    at ``population_sweep_hidden``."""

    models: tuple[str, ...] = ("mlp", "mingru")
    hidden_sweep: tuple[int, ...] = (256, 512, 1024, 2048)
    hidden_sweep_population: int = 256
    population_sweep: tuple[int, ...] = (64, 256, 1024)
    population_sweep_hidden: int = 1024
    mingru_hidden_sweep: tuple[int, ...] = (256,)
    mingru_population_sweep: tuple[int, ...] = ()
    tokens: int = 8
    ranks: tuple[int, ...] = RANKS
    repeats: int = 3
    min_round_s: float = 0.1
    sigma: float = 0.01
    seed: int = 0
    prng_impl: str = "threefry2x32"
    max_bytes: int | None = None
    generation: bool = True
    generation_ranks: tuple[int, ...] = (1,)
    mingru_ranks: tuple[int, ...] = (1, 4, 16)
    profile: bool = True
    profile_prng_impls: tuple[str, ...] = PRNG_IMPLS

    def points(self, model: str) -> list[tuple[int, int, tuple[str, ...]]]:
        """(hidden, population, sweeps it belongs to), ordered and deduplicated."""
        hs = self.hidden_sweep if model == "mlp" else self.mingru_hidden_sweep
        ps = self.population_sweep if model == "mlp" else self.mingru_population_sweep
        pts: dict[tuple[int, int], list[str]] = {}
        for h in hs:
            pts.setdefault((h, self.hidden_sweep_population), []).append("hidden")
        for p in ps:
            pts.setdefault((self.population_sweep_hidden, p), []).append("population")
        return [(h, p, tuple(s)) for (h, p), s in sorted(pts.items(), key=lambda kv: (kv[0][0] * kv[0][0] * kv[0][1]))]


QUICK = SweepConfig(
    models=("mlp",),
    hidden_sweep=(32,),
    hidden_sweep_population=16,
    population_sweep=(16,),
    population_sweep_hidden=32,
    tokens=2,
    ranks=(1,),
    repeats=2,
    min_round_s=0.0,
    profile=False,
)


def run(config: SweepConfig = SweepConfig(), *, log: Callable[[str], None] | None = print,
        on_point: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the sweep; returns the results dict written to JSON (``rows``, ``summary``, ``profile``).
    ``on_point(partial_results)`` is called after every point (e.g. to save progress)."""
    for m in config.models:
        get_model(m)
    make_key(0, config.prng_impl)
    max_bytes = config.max_bytes if config.max_bytes is not None else default_max_bytes()
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for model in config.models:
        for hidden, population, sweeps in config.points(model):
            ranks = tuple(r for r in (config.ranks if model == "mlp" else config.mingru_ranks) if r <= hidden)
            pt = run_point(model, hidden, population, tokens=config.tokens, ranks=ranks, sigma=config.sigma,
                           seed=config.seed, prng_impl=config.prng_impl, repeats=config.repeats,
                           min_round_s=config.min_round_s, max_bytes=max_bytes, generation_ranks=config.generation_ranks if config.generation else ())
            for r in pt:
                r["sweeps"] = list(sweeps)
            rows.extend(pt)
            if log:
                log(format_point(pt))
            if on_point:
                partial = {**_header(config, max_bytes), "rows": rows, "partial": True}
                on_point({**partial, "summary": summarise(partial)})
    results: dict[str, Any] = {**_header(config, max_bytes), "rows": rows}
    results["summary"] = summarise(results)
    if config.profile:
        results["profile"] = _profiles(results, config, max_bytes)
    results["wall_s"] = time.perf_counter() - t_start
    return results


def code_version() -> str | None:
    """``git describe`` of the measured code (``-dirty`` with uncommitted changes), or None outside git."""
    import subprocess

    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _header(config: SweepConfig, max_bytes: int) -> dict[str, Any]:
    return {"schema": 1, **device_info(), "date": _dt.date.today().isoformat(), "code_version": code_version(),
            "config": {**dataclasses.asdict(config), "max_bytes": max_bytes}}


def _profiles(results: dict[str, Any], config: SweepConfig, max_bytes: int) -> list[dict[str, Any]]:
    """RNG vs arithmetic split at the two target points, and the PRNG implementations compared."""
    s = results["summary"]
    out = []
    vi = s.get("vs_inference") or {}
    h, p = (vi.get("hidden"), vi.get("population")) if vi else (None, None)
    if h is None:  # the target point is not in this grid: use the mlp point nearest to it
        pts = [(r["hidden"], r["population"]) for r in results["rows"] if r["model"] == "mlp"]
        if pts:
            h, p = max(pts, key=lambda hp: (-abs(math.log(hp[0] / 1024)), -abs(math.log(hp[1] / 1024))))
    if h is not None:
        for impl in config.profile_prng_impls:
            out.append(profile_point("mlp", h, p, tokens=config.tokens, rank=1, sigma=config.sigma, seed=config.seed,
                                     prng_impl=impl, repeats=config.repeats, min_round_s=config.min_round_s,
                                     max_bytes=max_bytes))
    vn = s.get("vs_naive") or {}
    if vn:
        out.append(profile_point("mlp", vn["hidden"], vn["population"], tokens=config.tokens, rank=None,
                                 sigma=config.sigma, seed=config.seed, prng_impl=config.prng_impl,
                                 repeats=config.repeats, min_round_s=config.min_round_s, max_bytes=max_bytes))
    return out


# ---------------------------------------------------------------------------
# Ratios and the targets
# ---------------------------------------------------------------------------


def _find(rows, *, status: str | None = "ok", **match) -> dict[str, Any] | None:
    """The first row whose fields equal ``match`` and whose status is ``status`` (None: any)."""
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()) and (status is None or r.get("status") == status):
            return r
    return None


def paired_ratio(fast: dict[str, Any], slow: dict[str, Any], key: str = "times_s") -> float | None:
    """Throughput of ``fast`` over ``slow``: the median over rounds of ``t_slow / t_fast`` when
    both were timed in the same interleaved rounds, else the ratio of median throughputs.
    ``key="cpu_times_s"`` pairs process CPU times instead of wall times."""
    a, b = fast.get(key) or [], slow.get(key) or []
    same_work = fast["population"] * fast["tokens"] == slow["population"] * slow["tokens"]
    if a and len(a) == len(b) and same_work and min(a) > 0:
        return float(statistics.median(tb / ta for ta, tb in zip(a, b)))
    if key != "times_s":
        return None
    return fast["member_tokens_per_s"] / slow["member_tokens_per_s"]


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, hidden, population, rank, phase): EGGROLL / inference and EGGROLL / naive
    throughput (paired over the interleaved rounds)."""
    out = []
    for r in rows:
        if r["contender"] != "eggroll" or r.get("status") != "ok":
            continue
        where = {k: r[k] for k in ("model", "hidden", "population", "tokens")}
        inf = _find(rows, **where, contender="inference", phase="forward")
        nai = _find(rows, **where, contender="naive", phase=r["phase"])
        out.append({**where, "rank": r["rank"], "phase": r["phase"],
                    "vs_inference": paired_ratio(r, inf) if inf else None,
                    "vs_naive": paired_ratio(r, nai) if nai else None,
                    "vs_inference_cpu": paired_ratio(r, inf, "cpu_times_s") if inf else None,
                    "vs_naive_cpu": paired_ratio(r, nai, "cpu_times_s") if nai else None})
    return out


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """The two targets, read off the rows of one run.

    vs_inference: EGGROLL rank-1 forward / plain inference at hidden 1024, population 1024 (mlp).
    vs_naive: EGGROLL rank-1 forward / naive forward at the largest size naive ran (most
    materialised floats, ``population * params``), mlp.
    """
    rows = results["rows"]
    rat = ratios(rows)
    s: dict[str, Any] = {"ratios": rat, "vs_inference": None, "vs_naive": None}
    t = TARGET_VS_INFERENCE
    for q in rat:
        if (q["model"], q["hidden"], q["population"], q["rank"], q["phase"]) == (
            t["model"], t["hidden"], t["population"], t["rank"], "forward"):
            s["vs_inference"] = {k: q[k] for k in ("model", "hidden", "population", "tokens", "rank")}
            s["vs_inference"].update(ratio=q["vs_inference"], ratio_cpu=q["vs_inference_cpu"], target=t["low"],
                                     holds=bool(q["vs_inference"] >= t["low"]))
    naive_ok = [r for r in rows if r["model"] == TARGET_VS_NAIVE["model"] and r["contender"] == "naive"
                and r["phase"] == "forward" and r.get("status") == "ok"]
    if naive_ok:
        big = max(naive_ok, key=lambda r: (r["population"] * r["param_floats"], r["hidden"]))
        for q in rat:
            if (q["model"], q["hidden"], q["population"], q["rank"], q["phase"]) == (
                big["model"], big["hidden"], big["population"], TARGET_VS_NAIVE["rank"], "forward"):
                gen = next((g["vs_naive"] for g in rat if g["phase"] == "generation" and g["rank"] == q["rank"]
                            and (g["model"], g["hidden"], g["population"]) == (q["model"], q["hidden"], q["population"])), None)
                s["vs_naive"] = {k: q[k] for k in ("model", "hidden", "population", "tokens", "rank")}
                s["vs_naive"].update(ratio=q["vs_naive"], ratio_cpu=q["vs_naive_cpu"], generation_ratio=gen,
                                     target=TARGET_VS_NAIVE["low"],
                                     holds=bool(q["vs_naive"] is not None and q["vs_naive"] >= TARGET_VS_NAIVE["low"]))
    return s


# ---------------------------------------------------------------------------
# Printing, JSON, figure
# ---------------------------------------------------------------------------


def fmt_rate(x: float | None) -> str:
    """A throughput with its unit (the notebooks' sanitiser recognises ``member-tokens/s``)."""
    return "n/a" if x is None else f"{x:.3g} member-tokens/s"


def fmt_bytes(x: float | None) -> str:
    if x is None:
        return "n/a"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.0f} B"


def format_point(rows: list[dict[str, Any]]) -> str:
    """One point's table: contender, phase, throughput, memory, ratios."""
    if not rows:
        return ""
    r0 = rows[0]
    rat = {(q["rank"], q["phase"]): q for q in ratios(rows)}
    lines = [f"{r0['model']}  hidden={r0['hidden']}  population={r0['population']}  tokens/member={r0['tokens']}"]
    for r in rows:
        name = r["contender"] + (f" r={r['rank']}" if r["rank"] else "")
        if r.get("status") == "ok":
            rate = fmt_rate(r["member_tokens_per_s"])
        else:
            rate = r.get("status", "?") + (f" ({r['error']})" if r.get("error") else "")
        mem = fmt_bytes((r.get("memory") or {}).get("total"))
        q = rat.get((r["rank"], r["phase"])) if r["contender"] == "eggroll" else None
        extra = ""
        if q:
            f = lambda v: "n/a" if v is None else f"{v:.3g}x"
            cpu = lambda v: "" if v is None else f" (cpu {f(v)})"
            extra = (f"  vs inference {f(q['vs_inference'])}{cpu(q.get('vs_inference_cpu'))}"
                     f"  vs naive {f(q['vs_naive'])}{cpu(q.get('vs_naive_cpu'))}")
        lines.append(f"  {name:<13} {r['phase']:<10} {rate:<28} mem {mem:<10}{extra}")
    return "\n".join(lines)


def format_summary(results: dict[str, Any]) -> str:
    s = results["summary"]
    lines = [f"device: {results['device']}"]
    vi, vn = s.get("vs_inference"), s.get("vs_naive")
    if vi:
        cpu = "" if vi.get("ratio_cpu") is None else f", {vi['ratio_cpu']:.3g}x CPU time"
        lines.append(f"EGGROLL rank-1 / inference at hidden {vi['hidden']}, population {vi['population']}: "
                     f"{vi['ratio']:.3g}x wall{cpu} (target >= {vi['target']:g}: {'met' if vi['holds'] else 'NOT met'})")
    else:
        lines.append("EGGROLL rank-1 / inference: target point (hidden 1024, population 1024) not in this run")
    if vn:
        g = "n/a" if vn["generation_ratio"] is None else f"{vn['generation_ratio']:.3g}x"
        lines.append(f"EGGROLL rank-1 / naive at the largest naive size (hidden {vn['hidden']}, population "
                     f"{vn['population']}): {vn['ratio']:.3g}x forward"
                     + ("" if vn.get("ratio_cpu") is None else f" ({vn['ratio_cpu']:.3g}x CPU time)")
                     + f", {g} generation "
                     f"(target >= {vn['target']:g}: {'met' if vn['holds'] else 'NOT met'})")
    else:
        lines.append("EGGROLL / naive: naive ES did not run at any size")
    for p in results.get("profile", []):
        name = "naive" if p["rank"] is None else f"eggroll r={p['rank']}"
        parts = [f"{k}={p[k] * 1e3:.3g} ms" for k in ("inference_s", "total_s", "rng_s", "arith_s") if p.get(k)]
        lines.append(f"profile {name} [{p['prng_impl']}] hidden={p['hidden']} population={p['population']}: " + ", ".join(parts))
    return "\n".join(lines)


def markdown_tables(results: dict[str, Any]) -> str:
    """The forward table (throughput per contender, r=1 ratios), the generation + memory table and,
    when profiled, the RNG / arithmetic split of ``results``, in Markdown (benchmarks/RESULTS.md)."""
    rows = [r for r in results["rows"] if r["phase"] == "forward"]
    rat = {(q["model"], q["hidden"], q["population"], q["rank"], q["phase"]): q for q in results["summary"]["ratios"]}
    ranks = sorted({r["rank"] for r in rows if r["contender"] == "eggroll"})
    points = sorted({(r["model"], r["hidden"], r["population"]) for r in rows},
                    key=lambda p: (p[0] != "mlp", p[0], p[1] * p[1] * p[2], p[1]))  # ties (2048/1024, 1024/4096): by hidden
    host = any(q.get("vs_inference_cpu") is not None for q in rat.values())
    both = (lambda a, b: "—" if a is None else f"{a:.3g}" + ("" if not host else ", —" if b is None else f", {b:.3g}"))
    unit = " (wall, CPU)" if host else ""

    def row(model, h, p, contender, rank, phase):
        return _find(results["rows"], status=None, model=model, hidden=h, population=p, contender=contender,
                     rank=rank, phase=phase)

    def cell(model, h, p, contender, rank=None, phase="forward"):
        r = row(model, h, p, contender, rank, phase)
        if r is None:
            return "—"
        return f"{r['member_tokens_per_s']:.3g}" if r.get("status") == "ok" else r.get("status", "?")

    def mem(model, h, p, contender, rank=None):
        r = row(model, h, p, contender, rank, "forward")
        if r is None or not r.get("memory"):
            return "—"
        return fmt_bytes(r["memory"]["total"]) + ("" if r.get("status") == "ok" else f" ({r.get('status')})")

    head = (["model", "hidden", "population", "inference"] + [f"EGGROLL r={k}" for k in ranks]
            + ["naive ES", f"r=1 / inference{unit}", f"r=1 / naive{unit}"])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, h, p in points:
        q = rat.get((m, h, p, 1, "forward"), {})
        out.append("| " + " | ".join([m, str(h), str(p), cell(m, h, p, "inference")]
                                     + [cell(m, h, p, "eggroll", k) for k in ranks] + [cell(m, h, p, "naive")]
                                     + [both(q.get("vs_inference"), q.get("vs_inference_cpu")),
                                        both(q.get("vs_naive"), q.get("vs_naive_cpu"))]) + " |")
    head = ["model", "hidden", "population", "EGGROLL r=1 generation", "naive ES generation", f"ratio{unit}",
            "memory r=1 fwd", "memory naive fwd"]
    out += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, h, p in points:
        q = rat.get((m, h, p, 1, "generation"), {})
        out.append("| " + " | ".join([m, str(h), str(p), cell(m, h, p, "eggroll", 1, "generation"),
                                      cell(m, h, p, "naive", None, "generation"),
                                      both(q.get("vs_naive"), q.get("vs_naive_cpu")),
                                      mem(m, h, p, "eggroll", 1), mem(m, h, p, "naive")]) + " |")
    if results.get("profile"):
        host = any(q.get("inference_cpu_s") is not None for q in results["profile"])
        keys = ("inference_s", "total_s", "rng_s", "arith_s")
        head = (["contender", "PRNG", "hidden / population", "inference", "total", "RNG alone", "arithmetic alone"]
                + (["inference (CPU)", "total (CPU)", "RNG (CPU)", "arith. (CPU)"] if host else []) + ["normals / s"])
        out += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        ms = lambda v: "—" if v is None else f"{v * 1e3:.4g} ms"
        for q in results["profile"]:
            cells = ["naive" if q["rank"] is None else f"EGGROLL r={q['rank']}", q["prng_impl"],
                     f"{q['hidden']} / {q['population']}"] + [ms(q.get(k)) for k in keys]
            if host:
                cells += [ms(q.get(k.replace("_s", "_cpu_s"))) for k in keys]
            cells.append("—" if not q.get("normals_per_s") else f"{q['normals_per_s']:.3g}")
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def save_results(results: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=_json_default) + "\n")
    return path


def load_results(path: str | Path | None = None) -> dict[str, Any]:
    """Read a results JSON (default: the committed ``figures/06_throughput__results.json``)."""
    path = Path(path) if path is not None else figures_dir() / RESULTS_NAME
    if not path.exists():
        raise FileNotFoundError(f"no throughput results at {path}; run `python -m benchmarks.throughput`")
    return json.loads(path.read_text())


_POINT_KEYS = ("model", "hidden", "population", "tokens", "contender", "rank", "phase")
_HOST_TIME_KEYS = ("cpu_times_s", "cpu_median_s", "inference_cpu_s", "total_cpu_s", "rng_cpu_s", "arith_cpu_s")


def _sweep_values(config: dict[str, Any], model: str, kind: str) -> Sequence[int]:
    """A run's ``kind`` ("hidden" or "population") sweep of ``model``; empty for a model it did not run."""
    if model not in config["models"]:
        return ()
    return config[f"{kind}_sweep" if model == "mlp" else f"mingru_{kind}_sweep"]


def _sweeps_of(row: dict[str, Any], configs: Sequence[dict[str, Any]]) -> list[str]:
    """The sweeps a point lies on under any of ``configs`` (the rule of :meth:`SweepConfig.points`)."""
    out = set()
    for c in configs:
        if _sweep_values(c, row["model"], "hidden") and row["population"] == c["hidden_sweep_population"]:
            out.add("hidden")
        if _sweep_values(c, row["model"], "population") and row["hidden"] == c["population_sweep_hidden"]:
            out.add("population")
    return sorted(out)


def _sweeps_in(config: dict[str, Any], kind: str) -> bool:
    """Whether a run's grid has a ``kind`` sweep for a model it ran."""
    return any(_sweep_values(config, m, kind) for m in MODELS)


def merge_results(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One results dict from several runs on the same device (e.g. a sweep split over processes,
    so that a compiler crash at one point cannot lose the others).

    Rows are concatenated; a point measured in several runs is taken from the first run that has
    it, and the later measurements are kept under ``repeated_rows`` (a reproducibility check, not
    mixed into the ratios). Each row's ``sweeps`` are recomputed from all the runs' grids, profiles
    are concatenated, and the summary is recomputed. All rows of one point come from one run, so
    its ratios stay paired.
    On an accelerator, host CPU times are dropped (see :func:`host_times_meaningful`).
    """
    if not parts:
        raise ValueError("merge_results needs at least one results dict, got none")
    first = parts[0]
    for q in parts[1:]:
        for k in ("device", "jax_version", "xla_flags"):
            if q.get(k) != first.get(k):
                raise ValueError(f"cannot merge runs with different {k}: {first.get(k)!r} vs {q.get(k)!r}")
    configs = [q["config"] for q in parts]
    owner: dict[tuple, int] = {}  # point -> the run it is taken from
    rows: list[dict[str, Any]] = []
    repeated: list[dict[str, Any]] = []
    for i, q in enumerate(parts):
        for r in q["rows"]:
            point = tuple(r.get(k) for k in _POINT_KEYS[:4])
            if owner.setdefault(point, i) != i:
                repeated.append({**r, "run": i})
                continue
            rows.append({**r, "sweeps": _sweeps_of(r, configs)})
    profile = [p for q in parts for p in q.get("profile", [])]
    if first.get("platform") != "cpu":
        drop = lambda rs: [{k: v for k, v in r.items() if k not in _HOST_TIME_KEYS} for r in rs]
        rows, repeated, profile = drop(rows), drop(repeated), drop(profile)
    merged_config = dict(configs[0])
    # The grid actually covered, read off the merged rows (a run's defaults for a model it did not
    # run are not part of it).
    for model, prefix in (("mlp", ""), ("mingru", "mingru_")):
        for kind, axis in (("hidden", "hidden"), ("population", "population")):
            merged_config[f"{prefix}{kind}_sweep"] = sorted({r[axis] for r in rows if r["model"] == model and kind in r["sweeps"]})
    merged_config["models"] = sorted({r["model"] for r in rows})
    merged_config["ranks"] = sorted({r["rank"] for r in rows if r["model"] == "mlp" and r["rank"] is not None})
    merged_config["mingru_ranks"] = sorted({r["rank"] for r in rows if r["model"] == "mingru" and r["rank"] is not None})
    merged_config["profile"] = bool(profile)
    for field in ("hidden_sweep_population", "population_sweep_hidden"):
        # the line each sweep runs on, from the run that swept it
        kind = "hidden" if field == "hidden_sweep_population" else "population"
        vals = {c[field] for c in configs if _sweeps_in(c, kind)}
        if len(vals) > 1:
            raise ValueError(f"runs disagree on {field}: {sorted(vals)}")
        if vals:
            merged_config[field] = vals.pop()
    out = {k: v for k, v in first.items() if k not in ("rows", "summary", "profile", "config", "command", "wall_s", "partial")}
    out.update(config=merged_config, rows=rows, profile=profile, repeated_rows=repeated,
               merged_from=[{"command": q.get("command"), "config": q["config"], "wall_s": q.get("wall_s"),
                             "partial": bool(q.get("partial"))} for q in parts],
               wall_s=sum(q.get("wall_s") or 0.0 for q in parts))
    out["summary"] = summarise(out)
    return out


def select(results: dict[str, Any], **match) -> list[dict[str, Any]]:
    """Rows of ``results`` whose fields equal ``match`` (``sweep=...`` matches membership)."""
    sweep = match.pop("sweep", None)
    return [r for r in results["rows"] if all(r.get(k) == v for k, v in match.items())
            and (sweep is None or sweep in r.get("sweeps", []))]


def _series(results, model, sweep, x, contender, phase="forward", rank=None, key="member_tokens_per_s"):
    pts = []
    for r in select(results, model=model, sweep=sweep, contender=contender, phase=phase, rank=rank):
        if key == "member_tokens_per_s":
            if r.get("status") == "ok":
                pts.append((r[x], r[key]))
        elif r.get("memory"):
            pts.append((r[x], r["memory"]["total"]))
    return sorted(pts)


def plot_throughput(results: dict[str, Any], ax, *, model: str = "mlp", sweep: str = "hidden", phase: str = "forward"):
    """Throughput (member-tokens/s) of every contender along one sweep."""
    import seaborn as sns

    x = "hidden" if sweep == "hidden" else "population"
    ranks = results["config"]["ranks"]
    pal = sns.color_palette("viridis", len(ranks))
    if phase == "forward":
        pts = _series(results, model, sweep, x, "inference")
        if pts:
            ax.plot(*zip(*pts), "k-o", lw=2.5, label="plain inference")
    for c, r in zip(pal, ranks):
        pts = _series(results, model, sweep, x, "eggroll", phase, r)
        if pts:
            ax.plot(*zip(*pts), "-o", color=c, ms=4, label=f"EGGROLL r={r}")
    pts = _series(results, model, sweep, x, "naive", phase)
    if pts:
        ax.plot(*zip(*pts), "-s", color="tab:red", label="naive ES (full rank)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    fixed = results["config"]["hidden_sweep_population" if sweep == "hidden" else "population_sweep_hidden"]
    ax.set_xlabel(f"{x} ({'population' if sweep == 'hidden' else 'hidden'} = {fixed})")
    ax.set_ylabel(f"{phase} throughput (member-tokens/s)")


def plot_memory(results: dict[str, Any], ax, *, model: str = "mlp", sweep: str = "hidden"):
    """Measured program memory (arguments + outputs + temporaries) next to the analytic noise
    memory of the population's draws, ``(N/2) r (m + n)`` vs ``(N/2) m n`` floats (4 bytes each)."""
    x = "hidden" if sweep == "hidden" else "population"
    ranks = results["config"]["ranks"]
    for c, r, style in (("k", None, "inference"), ("tab:blue", ranks[0], "eggroll"), ("tab:green", ranks[-1], "eggroll"),
                        ("tab:red", None, "naive")):
        pts = _series(results, model, sweep, x, style, "forward", r, key="memory")
        label = {"inference": "plain inference", "naive": "naive ES"}.get(style, f"EGGROLL r={r}")
        if pts:
            ax.plot(*zip(*pts), "-o", color=c, label=f"{label} (measured)")
        if style != "inference":
            rows = select(results, model=model, sweep=sweep, contender=style, phase="forward", rank=r)
            ana = sorted((q[x], 4 * q.get("noise_draws", q["population"]) * q["noise_floats_per_member"]) for q in rows)
            if ana:
                ax.plot(*zip(*ana), "--", color=c, alpha=0.8, label=f"{label}: draws x noise floats x 4 B")
    ax.axhline(results["config"]["max_bytes"], color="grey", ls=":", label="budget per program")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("bytes")


def plot_ratios(results: dict[str, Any], ax, *, model: str = "mlp", sweep: str = "hidden", which: str = "vs_inference",
                phase: str = "forward"):
    """EGGROLL throughput / plain inference (or / naive ES) along a sweep, one line per rank."""
    import seaborn as sns

    x = "hidden" if sweep == "hidden" else "population"
    ranks = results["config"]["ranks"]
    pal = sns.color_palette("viridis", len(ranks))
    pts_rows = {(r["hidden"], r["population"]) for r in select(results, model=model, sweep=sweep)}
    for c, rk in zip(pal, ranks):
        pts = sorted((q[x], q[which]) for q in results["summary"]["ratios"]
                     if q["model"] == model and q["rank"] == rk and q["phase"] == phase and q[which] is not None
                     and (q["hidden"], q["population"]) in pts_rows)
        if pts:
            ax.plot(*zip(*pts), "-o", color=c, ms=4, label=f"r={rk}")
    target = TARGET_VS_INFERENCE["low"] if which == "vs_inference" else TARGET_VS_NAIVE["low"]
    ax.axhline(target, color="tab:red", ls="--", label=f"target {target:g}x")
    if which == "vs_inference":
        ax.axhline(1.0, color="k", lw=0.8)
    else:
        ax.set_yscale("log")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(x)
    ax.set_ylabel(f"EGGROLL / {'inference' if which == 'vs_inference' else 'naive ES'} ({phase})")


def plot_results(results: dict[str, Any], *, model: str = "mlp"):
    """The four panels: throughput vs hidden and vs population, memory, the ratio curves."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    plot_throughput(results, axes[0, 0], model=model, sweep="hidden")
    plot_throughput(results, axes[0, 1], model=model, sweep="population")
    plot_memory(results, axes[1, 0], model=model, sweep="hidden")
    plot_ratios(results, axes[1, 1], model=model, sweep="hidden", which="vs_inference")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=6)
    axes[1, 1].legend(fontsize=7)
    fig.suptitle(f"{model}: EGGROLL vs plain inference vs naive ES on {results['device']}")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _ints(s: str) -> tuple[int, ...]:
    return tuple(int(v) for v in s.split(",") if v.strip())


def parse_args(argv: Sequence[str] | None = None) -> tuple[SweepConfig, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few-second smoke run on tiny sizes")
    p.add_argument("--out", default=None, help=f"results JSON (default figures/{RESULTS_NAME}); the figure goes next to it")
    p.add_argument("--models", default=None, help="comma list of " + ",".join(MODELS))
    p.add_argument("--hidden", type=_ints, default=None, help="hidden sizes of the mlp hidden sweep")
    p.add_argument("--hidden-population", type=int, default=None, help="population of the hidden sweep")
    p.add_argument("--population", type=_ints, default=None, help="populations of the mlp population sweep")
    p.add_argument("--population-hidden", type=int, default=None, help="hidden size of the population sweep")
    p.add_argument("--mingru-hidden", type=_ints, default=None)
    p.add_argument("--mingru-population", type=_ints, default=None)
    p.add_argument("--tokens", type=int, default=None, help="tokens per member")
    p.add_argument("--ranks", type=_ints, default=None)
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per program (median reported)")
    p.add_argument("--min-round-s", type=float, default=None, help="call a fast program k times per round to fill this")
    p.add_argument("--max-gib", type=float, default=None, help="memory budget per compiled program (GiB)")
    p.add_argument("--prng-impl", choices=PRNG_IMPLS, default=None, help="PRNG of the member noise")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-generation", action="store_true")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--no-figure", action="store_true")
    p.add_argument("--tables", default=None, metavar="JSON", help="print the Markdown tables of a results file and exit")
    p.add_argument("--note", default=None, help="a remark stored in the results JSON (e.g. how the run was made)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="merge these results files of one device into --out (no measuring); see merge_results")
    a = p.parse_args(argv)
    cfg = QUICK if a.quick else SweepConfig()
    upd: dict[str, Any] = {}
    for field, val in (("models", tuple(a.models.split(",")) if a.models else None), ("hidden_sweep", a.hidden),
                       ("hidden_sweep_population", a.hidden_population), ("population_sweep", a.population),
                       ("population_sweep_hidden", a.population_hidden), ("mingru_hidden_sweep", a.mingru_hidden),
                       ("mingru_population_sweep", a.mingru_population), ("tokens", a.tokens), ("ranks", a.ranks),
                       ("repeats", a.repeats), ("min_round_s", a.min_round_s), ("prng_impl", a.prng_impl), ("seed", a.seed)):
        if val is not None:
            upd[field] = val
    if a.max_gib is not None:
        if not a.max_gib > 0:
            raise ValueError(f"max_gib must be > 0, got {a.max_gib}")
        upd["max_bytes"] = int(a.max_gib * 2**30)
    if a.no_generation:
        upd["generation"] = False
    if a.no_profile:
        upd["profile"] = False
    return dataclasses.replace(cfg, **upd), a


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg, a = parse_args(argv)
    if a.tables:
        results = load_results(a.tables)
        print(markdown_tables(results))
        return results
    out = Path(a.out) if a.out else figures_dir() / RESULTS_NAME
    command = "python -m benchmarks.throughput " + " ".join(sys.argv[1:] if argv is None else argv)
    if a.merge:
        results = merge_results([load_results(f) for f in a.merge])
        results["command"] = command
    else:
        partial_path = out.with_name(out.stem + ".partial.json")
        results = run(cfg, on_point=lambda part: save_results({**part, "command": command}, partial_path))
        results["command"] = command
        partial_path.unlink(missing_ok=True)
    if a.note:
        results["note"] = a.note
    save_results(results, out)
    print(format_summary(results))
    print(f"wrote {out}")
    if not a.no_figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plot_results(results)
        png = out.with_suffix(".png")
        fig.savefig(png, bbox_inches="tight", metadata={"Software": None}, dpi=100)
        plt.close(fig)
        print(f"wrote {png}")
    return results


if __name__ == "__main__":
    main()

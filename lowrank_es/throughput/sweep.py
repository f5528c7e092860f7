"""One point of the benchmark, its profiles, and the grid of a run.

A point (model, hidden, population) times every contender on the same parameters and inputs:
inference and EGGROLL in interleaved rounds, naive ES in rounds of its own afterwards (freeing
its gigabytes of materialised weights slowed whatever ran next for up to a second on the 2-core
CPU). A profile splits the EGGROLL forward into its noise and its arithmetic, for every noise
generator side by side. Rows are JSON-able dicts; :mod:`lowrank_es.throughput.summary` reads them.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.es import noise as noise_gen
from lowrank_es.es.eggroll import EGGROLL
from lowrank_es.throughput import programs as pg
from lowrank_es.throughput.timing import compile_program, host_times_meaningful, load_average, time_programs

PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
RANKS = (1, 2, 4, 8, 16)
#: The noise generators a profile compares: (EGGROLL's ``noise``, the key's PRNG implementation).
NOISE_CONTENDERS = (("table", "threefry2x32"), ("prng", "threefry2x32"), ("prng", "rbg"), ("prng", "unsafe_rbg"))


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """The grid of one run.

    ``hidden_sweep`` runs at ``hidden_sweep_population``, ``population_sweep`` at
    ``population_sweep_hidden`` (mlp; ``mingru_*`` likewise for the minGRU LM). ``claim_points``
    (hidden, population) time only inference and rank-1 EGGROLL, for ``claim_repeats`` rounds:
    the claims' values. ``profile_points`` are split into noise and arithmetic for every
    generator of ``profile_noises``; ``naive_profile_point`` splits naive ES. ``noise`` is the
    generator of the EGGROLL contenders (``"auto"``: what a user of the package gets).
    """

    models: tuple[str, ...] = ("mlp", "mingru")
    hidden_sweep: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
    hidden_sweep_population: int = 256
    population_sweep: tuple[int, ...] = (64, 256, 1024, 4096)
    population_sweep_hidden: int = 1024
    mingru_hidden_sweep: tuple[int, ...] = (256,)
    mingru_population_sweep: tuple[int, ...] = ()
    tokens: int = 8
    ranks: tuple[int, ...] = RANKS
    mingru_ranks: tuple[int, ...] = (1, 4, 16)
    repeats: int = 3
    min_round_s: float = 0.1
    sigma: float = 0.01
    prng_impl: str = "threefry2x32"
    noise: str = "auto"
    max_bytes: int | None = None
    generation: bool = True
    generation_ranks: tuple[int, ...] = (1,)
    claim_points: tuple[tuple[int, int], ...] = ((1024, 1024), (512, 1024))
    claim_repeats: int = 15
    profile_points: tuple[tuple[int, int], ...] = ((1024, 1024), (512, 1024))
    profile_noises: tuple[tuple[str, str], ...] = NOISE_CONTENDERS
    naive_profile_point: tuple[int, int] | None = (512, 256)

    def points(self, model: str) -> list[tuple[int, int, tuple[str, ...]]]:
        """(hidden, population, sweeps it belongs to), ordered by cost and deduplicated."""
        hs = self.hidden_sweep if model == "mlp" else self.mingru_hidden_sweep
        ps = self.population_sweep if model == "mlp" else self.mingru_population_sweep
        pts: dict[tuple[int, int], list[str]] = {}
        for h in hs:
            pts.setdefault((h, self.hidden_sweep_population), []).append("hidden")
        for p in ps:
            pts.setdefault((self.population_sweep_hidden, p), []).append("population")
        return [(h, p, tuple(s)) for (h, p), s in sorted(pts.items(), key=lambda kv: kv[0][0] ** 2 * kv[0][1])]


def check_int(name: str, v: Any, lo: int) -> None:
    """``ValueError`` naming ``name`` unless ``v`` is an integer >= ``lo``."""
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def make_key(seed: int, prng_impl: str = "threefry2x32") -> jax.Array:
    """A typed key of the chosen PRNG implementation (EGGROLL accepts threefry2x32 keys only)."""
    if prng_impl not in PRNG_IMPLS:
        raise ValueError(f"prng_impl must be one of {PRNG_IMPLS}, got {prng_impl!r}")
    return jax.random.key(seed, impl=prng_impl)


def _setup(model: pg.Model, hidden: int, population: int, tokens: int, seed: int, dtype):
    check_int("hidden", hidden, 1)
    check_int("population", population, 2)
    check_int("tokens", tokens, 1)
    if population % 2:
        raise ValueError(f"population must be even (antithetic pairs), got {population}")
    k_params, k_inputs = jax.random.split(jax.random.PRNGKey(seed))
    return model.init(k_params, hidden, dtype), model.inputs(k_inputs, population, tokens, hidden, dtype)


def _timed(jobs: list[tuple[dict[str, Any], Any, tuple]], *, repeats: int, min_round_s: float,
           max_bytes: int | None, work: int, groups: Sequence[bool] | None = None) -> list[dict[str, Any]]:
    """Compile every job, time the compiled ones in interleaved rounds (one set of rounds per
    group, in order), and return the jobs' rows with status, memory, times and throughput."""
    programs, idx = [], []
    for j, (row, fn, args) in enumerate(jobs):
        compiled, rec = compile_program(fn, args, max_bytes=max_bytes)
        row.update(rec)
        if compiled is not None:
            programs.append((compiled, args))
            idx.append(j)
    groups = [False] * len(jobs) if groups is None else list(groups)
    times: dict[int, Any] = {}
    for g in sorted(set(groups[j] for j in idx)):
        members = [j for j in idx if groups[j] == g]
        timed = time_programs([programs[idx.index(j)] for j in members], repeats=repeats, min_round_s=min_round_s)
        times.update(zip(members, timed))
    rows = []
    for j, (row, _, _) in enumerate(jobs):
        t = times.get(j)
        if j in idx and t is None:  # pragma: no cover - out of memory at run time
            row.update(status="failed", error="run failed")
        elif t is not None:
            row.update(median_s=statistics.median(t[0]), times_s=t[0],
                       member_tokens_per_s=work / statistics.median(t[0]))
            if host_times_meaningful():
                row.update(cpu_times_s=t[1], cpu_median_s=statistics.median(t[1]))
        rows.append(row)
    return rows


def run_point(model: pg.Model | str, hidden: int, population: int, *, tokens: int = 8, ranks: Sequence[int] = RANKS,
              naive: bool = True, generation_ranks: Sequence[int] = (1,), sigma: float = 0.01, seed: int = 0,
              prng_impl: str = "threefry2x32", noise: str = "auto", repeats: int = 5, min_round_s: float = 0.0,
              max_bytes: int | None = None, dtype=jnp.float32) -> list[dict[str, Any]]:
    """Time every contender at one (hidden, population) on the same params and inputs.

    A whole ES generation is timed for the ranks in ``generation_ranks`` and, when that is not
    empty, for naive ES. Returns one row per (contender, rank, phase) with ``member_tokens_per_s``,
    ``times_s`` (per round), ``memory`` and the analytic ``noise_floats_per_member``.
    """
    model = pg.get_model(model) if isinstance(model, str) else model
    for r in ranks:
        check_int("rank", r, 1)
        if r > hidden:
            raise ValueError(f"rank must be in [1, hidden] = [1, {hidden}], got {r}")
    noise_gen.resolve(noise)
    params, inputs = _setup(model, hidden, population, tokens, seed, dtype)
    key = make_key(seed + 1, prng_impl)
    base = {"model": model.name, "hidden": hidden, "population": population, "tokens": tokens,
            "param_floats": pg.param_floats(params), "noise_draws": population // 2,  # one draw per antithetic pair
            "load_average": load_average()}
    jobs: list[tuple[dict[str, Any], Any, tuple]] = []

    def add(contender: str, rank: int | None, phase: str, fn, args) -> None:
        row = {**base, "contender": contender, "rank": rank, "phase": phase,
               "noise_floats_per_member": 0 if contender == "inference" else pg.noise_floats_per_member(params, rank)}
        jobs.append((row, fn, args))

    add("inference", None, "forward", pg.inference_forward(model), (params, inputs))
    for r in ranks:
        es = EGGROLL(sigma=sigma, population=population, rank=r, noise=noise)
        state = es.init(key, params)
        add("eggroll", r, "forward", pg.eggroll_forward(model, es), (state, inputs))
        if r in generation_ranks:
            add("eggroll", r, "generation", pg.eggroll_generation(model, es), (state, inputs))
    if naive:
        es = EGGROLL(sigma=sigma, population=population, rank=None, noise=noise)
        state = es.init(key, params)
        add("naive", None, "forward", pg.naive_forward(model, es), (state, inputs))
        if generation_ranks:
            add("naive", None, "generation", pg.naive_generation(model, es), (state, inputs))
    return _timed(jobs, repeats=repeats, min_round_s=min_round_s, max_bytes=max_bytes, work=population * tokens,
                  groups=[row["contender"] == "naive" for row, _, _ in jobs])


def profile_point(model: pg.Model | str, hidden: int, population: int, *, tokens: int = 8, rank: int = 1,
                  noises: Sequence[tuple[str, str]] = NOISE_CONTENDERS, sigma: float = 0.01, seed: int = 0,
                  repeats: int = 5, min_round_s: float = 0.0, max_bytes: int | None = None,
                  dtype=jnp.float32) -> list[dict[str, Any]]:
    """The rank-``rank`` EGGROLL forward split into noise and arithmetic, every generator side by side.

    Rows (all timed in the same interleaved rounds): ``part="inference"``; per generator
    ``(noise, prng_impl)`` of ``noises``: ``part="total"`` (the forward) and ``part="noise"``
    (the population's noise alone, with ``normals_per_s``; for rbg / unsafe_rbg keys, which
    EGGROLL refuses, the same draws alone, :func:`programs.keyed_normals`); and
    ``part="arithmetic"`` (the factored forward given precomputed noise, which does not depend
    on the generator).
    """
    model = pg.get_model(model) if isinstance(model, str) else model
    params, inputs = _setup(model, hidden, population, tokens, seed, dtype)
    base = {"model": model.name, "hidden": hidden, "population": population, "tokens": tokens, "rank": rank,
            "load_average": load_average()}
    jobs = [({**base, "part": "inference"}, pg.inference_forward(model), (params, inputs))]
    for kind, impl in noises:
        es = EGGROLL(sigma=sigma, population=population, rank=rank, noise=kind)
        state = es.init(make_key(seed + 1, impl), params)
        gen = {"noise": kind, "prng_impl": impl, "noise_floats": es.num_pairs * pg.noise_floats_per_member(params, rank)}
        if "threefry" in impl:
            jobs.append(({**base, **gen, "part": "total"}, pg.eggroll_forward(model, es), (state, inputs)))
            jobs.append(({**base, **gen, "part": "noise"}, pg.population_noise(es), (state,)))
        else:  # EGGROLL refuses these keys: time their draws alone
            jobs.append(({**base, **gen, "part": "noise"}, pg.keyed_normals(es), (state,)))
    es = EGGROLL(sigma=sigma, population=population, rank=rank, noise=noises[0][0])
    given = jax.jit(pg.population_noise(es))(es.init(make_key(seed + 1, noises[0][1]), params))
    jobs.append(({**base, "part": "arithmetic"}, pg.forward_given_noise(model, es), (params, given, inputs)))
    rows = _timed(jobs, repeats=repeats, min_round_s=min_round_s, max_bytes=max_bytes, work=population * tokens)
    for r in rows:
        if r["part"] == "noise" and r.get("median_s"):
            r["normals_per_s"] = r["noise_floats"] / r["median_s"]
    return rows


def profile_naive_point(model: pg.Model | str, hidden: int, population: int, *, tokens: int = 8, sigma: float = 0.01,
                        seed: int = 0, noise: str = "auto", repeats: int = 5, min_round_s: float = 0.0,
                        max_bytes: int | None = None, dtype=jnp.float32) -> list[dict[str, Any]]:
    """Naive ES split: inference, the whole forward (``total``), noise + materialised weights alone
    (``noise``) and the batched forward of given weights (``arithmetic``), in the same rounds."""
    model = pg.get_model(model) if isinstance(model, str) else model
    params, inputs = _setup(model, hidden, population, tokens, seed, dtype)
    es = EGGROLL(sigma=sigma, population=population, rank=None, noise=noise)
    state = es.init(make_key(seed + 1), params)
    base = {"model": model.name, "hidden": hidden, "population": population, "tokens": tokens, "rank": None,
            "noise": noise_gen.resolve(noise), "prng_impl": "threefry2x32", "load_average": load_average()}
    jobs = [({**base, "part": "inference"}, pg.inference_forward(model), (params, inputs)),
            ({**base, "part": "total"}, pg.naive_forward(model, es), (state, inputs))]
    weights_fn = pg.materialised_weights(es)
    compiled, rec = compile_program(weights_fn, (state,), max_bytes=max_bytes)
    if compiled is not None:
        jobs.append(({**base, "part": "noise"}, weights_fn, (state,)))
        jobs.append(({**base, "part": "arithmetic"}, pg.forward_given_weights(model), (compiled(state), inputs)))
    del compiled
    return _timed(jobs, repeats=repeats, min_round_s=min_round_s, max_bytes=max_bytes, work=population * tokens)

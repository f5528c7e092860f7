"""Experiment ``throughput`` (notebook 06): the EGGROLL population forward against plain batched
inference and naive full-rank ES, side by side on one device.

Scales: ``quick`` (a small grid, about a minute on 2 CPU cores), ``reference`` (the committed CPU
grid, the claimed points and the profiles: about 5 minutes on 2 idle cores together with
``native``, estimated from the program times of the idle 2026-11-26 run), ``native`` (the claimed
points again, in a process with XLA's native CPU flags) and ``gpu`` (the grid of the GPU run).
One job per grid point, per claimed point and per profile. Timings depend on the machine
and its load: the results record the load average next to every point, and a reference run is
only worth committing from a fresh run (``python -m benchmarks.throughput reference`` does not
reuse cached jobs; ``python -m lowrank_es run throughput`` does, like every experiment).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from lowrank_es.es import noise as noise_gen
from lowrank_es.experiments import Experiment, register
from lowrank_es.throughput import sweep
from lowrank_es.throughput.sweep import SweepConfig
from lowrank_es.throughput.summary import summarise
from lowrank_es.throughput.timing import default_max_bytes, device_info, load_average

QUICK = SweepConfig(
    models=("mlp",), hidden_sweep=(128, 256, 512), hidden_sweep_population=256, population_sweep=(64, 1024),
    population_sweep_hidden=256, ranks=(1, 4), repeats=3, min_round_s=0.05, max_bytes=2**29,
    claim_points=(), profile_points=((512, 256),), profile_noises=(("table", "threefry2x32"), ("prng", "threefry2x32")),
    naive_profile_point=None,
)
REFERENCE = SweepConfig()
GPU = SweepConfig(
    hidden_sweep=(256, 512, 1024, 2048, 4096), hidden_sweep_population=1024, population_sweep=(64, 256, 1024, 4096, 8192),
    population_sweep_hidden=1024, mingru_hidden_sweep=(256, 1024), repeats=5, profile_points=((1024, 1024),),
    naive_profile_point=(1024, 1024),
)
#: The claimed points alone, run by ``python -m benchmarks.throughput reference`` in a second process
#: with ``XLA_FLAGS=""`` (XLA's native CPU kernels) beside the package's portable default flags.
NATIVE = dataclasses.replace(REFERENCE, models=(), profile_points=(), naive_profile_point=None)
SCALES = {"quick": QUICK, "reference": REFERENCE, "gpu": GPU, "native": NATIVE}
SEEDS = {"quick": 1, "reference": 1, "gpu": 1, "native": 1}


def _max_bytes(cfg: SweepConfig) -> int:
    return cfg.max_bytes if cfg.max_bytes is not None else default_max_bytes()


def grid_point(cfg: SweepConfig, model: str, hidden: int, population: int, sweeps: tuple[str, ...], seed: int) -> dict:
    """Every contender at one grid point: ``{"rows": [...]}`` labelled with the sweeps it lies on."""
    ranks = tuple(r for r in (cfg.ranks if model == "mlp" else cfg.mingru_ranks) if r <= hidden)
    rows = sweep.run_point(model, hidden, population, tokens=cfg.tokens, ranks=ranks, sigma=cfg.sigma, seed=seed,
                           prng_impl=cfg.prng_impl, noise=cfg.noise, repeats=cfg.repeats, min_round_s=cfg.min_round_s,
                           max_bytes=_max_bytes(cfg), generation_ranks=cfg.generation_ranks if cfg.generation else ())
    return {"rows": [{**r, "sweeps": list(sweeps)} for r in rows]}


def claimed_point(cfg: SweepConfig, hidden: int, population: int, seed: int) -> dict:
    """Inference and rank-1 EGGROLL only, for ``claim_repeats`` interleaved rounds."""
    return {"rows": sweep.run_point("mlp", hidden, population, tokens=cfg.tokens, ranks=(1,), naive=False,
                                    generation_ranks=(), sigma=cfg.sigma, seed=seed, prng_impl=cfg.prng_impl,
                                    noise=cfg.noise, repeats=cfg.claim_repeats, min_round_s=cfg.min_round_s,
                                    max_bytes=_max_bytes(cfg))}


def profile(cfg: SweepConfig, hidden: int, population: int, seed: int, naive: bool = False) -> dict:
    """The noise / arithmetic split at one point (rank 1 per generator, or naive ES)."""
    kw = dict(tokens=cfg.tokens, sigma=cfg.sigma, seed=seed, repeats=cfg.repeats, min_round_s=cfg.min_round_s,
              max_bytes=_max_bytes(cfg))
    if naive:
        return {"rows": sweep.profile_naive_point("mlp", hidden, population, noise=cfg.noise, **kw)}
    return {"rows": sweep.profile_point("mlp", hidden, population, rank=1, noises=cfg.profile_noises, **kw)}


def jobs(cfg: SweepConfig, seeds: tuple[int, ...]) -> dict:
    """Claimed points first (they matter most), then the grid by cost, then the profiles."""
    seed = seeds[0]
    out = {f"claim_h{h}_p{p}": functools.partial(claimed_point, cfg, h, p, seed) for h, p in cfg.claim_points}
    for model in cfg.models:
        for h, p, sweeps in cfg.points(model):
            out[f"{model}_h{h}_p{p}"] = functools.partial(grid_point, cfg, model, h, p, sweeps, seed)
    for h, p in cfg.profile_points:
        out[f"profile_h{h}_p{p}"] = functools.partial(profile, cfg, h, p, seed)
    if cfg.naive_profile_point:
        h, p = cfg.naive_profile_point
        out[f"profile_naive_h{h}_p{p}"] = functools.partial(profile, cfg, h, p, seed, True)
    return out


def shared_note(data: dict[str, Any]) -> str:
    """Whether other processes loaded the machine while the points ran: the 1-minute load average
    at the start of each point against the core count, and the 5- and 15-minute averages at the
    first point (a machine busy just before the run is not called idle)."""
    env = data["environment"]
    loads = [r["load_average"] for r in data["claim_rows"] + data["rows"] if r.get("load_average")]
    if not loads:
        return "load average not recorded"
    cores = env.get("cpu_count") or 1
    worst = max(x[0] for x in loads)
    before = max(loads[0][1:]) if len(loads[0]) == 3 else 0.0
    state = ("shared: other processes ran" if worst > cores + 0.5
             else "busy just before the run" if before > cores + 0.5 else "otherwise idle")
    return (f"machine {state} (1-minute load average {min(x[0] for x in loads):.2g}-{worst:.2g} on {cores} cores "
            f"at the start of the points, 5- and 15-minute {loads[0][1]:.2g} / {loads[0][2]:.2g} at the first; "
            "wall times are inflated under load, CPU-time ratios less so)")


def combine(cfg: SweepConfig, seeds: tuple[int, ...], parts: dict) -> dict:
    """One results dict: environment, grid rows, claimed-point rows, profiles and the summary."""
    data: dict[str, Any] = {
        "environment": {**device_info(), "noise": noise_gen.resolve(cfg.noise), "max_bytes": _max_bytes(cfg),
                        "load_average_end": load_average()},
        "config": dataclasses.asdict(cfg),
        "rows": [r for name, part in parts.items() if not name.startswith(("claim_", "profile_")) for r in part["rows"]],
        "claim_rows": [r for name, part in parts.items() if name.startswith("claim_") for r in part["rows"]],
        "profile": [r for name, part in parts.items() if name.startswith("profile_") for r in part["rows"]],
    }
    data["summary"] = summarise(data)
    data["note"] = shared_note(data)
    return data


def plots(record: dict) -> dict:
    """The four-panel figure of a run with a grid (none for the claimed points alone)."""
    from lowrank_es.throughput.plots import plot_results

    return {"results": plot_results(record["data"])} if record["data"]["rows"] else {}


EXPERIMENT = register(Experiment(
    name="throughput", notebook="06_throughput",
    summary="Is the EGGROLL population forward as fast as plain batched inference, and far faster than naive ES?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, combine=combine, plots=plots,
))

"""Experiments: one module per notebook topic, each a first-class object with named scales.

An experiment is a set of *jobs* (independent pieces, e.g. one environment and method with
all its seeds vmapped) run at a *scale*: ``"quick"`` (what the notebook runs live, about a
minute on 2 CPU cores) and ``"reference"`` (sized for the paper's question, at most about 30
minutes on 2 CPU cores), each a frozen config::

    from lowrank_es import experiments
    record = experiments.run("theory", "quick")          # runs it; returns the results record
    ref = experiments.load("theory", "reference")        # the committed reference results

or from a shell: ``python -m lowrank_es run theory --scale reference``, which writes
``figures/results/theory__reference.json`` (config, seeds, device, wall time, code version
and the data). Each finished job is cached under ``checkpoints/<experiment>__<scale>/``, so
an interrupted run resumes where it stopped and, being deterministic, ends with the same
results as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import os
import pkgutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from lowrank_es.paths import REPO_ROOT
from lowrank_es.results import SCALES, describe, load_results, save_results, to_jsonable, write_text_atomic

Job = Callable[[], Any]

#: The test session's hand-over of finished jobs between two executions of one notebook (set by
#: ``conftest.py``, never by a user): a kernel that has ``RECORD_JOBS`` (the browser test's run
#: all) writes each job it finishes under that directory; one that has ``REPLAY_JOBS`` (nbval,
#: next on the same worker) reads back those of the same config, seeds and package code and runs
#: the rest. Each notebook is then computed once per test session and its outputs still compared.
RECORD_JOBS = "LOWRANK_ES_RECORD_JOBS"
REPLAY_JOBS = "LOWRANK_ES_REPLAY_JOBS"


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named experiment.

    name: the command-line name (``python -m lowrank_es run <name>``).
    notebook: the notebook that shows it (``notebooks/<notebook>.ipynb``).
    summary: one sentence: the question it answers.
    scales: scale name -> config (a frozen dataclass); must include ``quick`` and ``reference``.
    seeds: scale name -> default number of seeds (seeds ``0 .. n-1``).
    jobs: ``jobs(config, seeds) -> {job name: zero-argument function returning JSON-able data}``,
        in the order they run.
    combine: ``combine(config, seeds, {job name: data}) -> data`` of the whole run (default:
        the dict of job results itself).
    plots: ``plots(record) -> {what: matplotlib Figure}`` drawn from a results record; the
        command line saves them as ``figures/<notebook>__<scale>_<what>.png``.
    """

    name: str
    notebook: str
    summary: str
    scales: Mapping[str, Any]
    seeds: Mapping[str, int]
    jobs: Callable[[Any, tuple[int, ...]], dict[str, Job]]
    combine: Callable[[Any, tuple[int, ...], dict[str, Any]], dict[str, Any]] | None = None
    plots: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        missing = [s for s in SCALES if s not in self.scales or s not in self.seeds]
        if missing:
            raise ValueError(f"experiment {self.name!r} must define scales and seeds for {missing}")

    def config(self, scale: str, **overrides: Any) -> Any:
        """The config of ``scale``, with fields replaced by ``overrides``."""
        if scale not in self.scales:
            raise ValueError(f"scale must be one of {sorted(self.scales)} for experiment {self.name!r}, got {scale!r}")
        cfg = self.scales[scale]
        return dataclasses.replace(cfg, **overrides) if overrides else cfg


_REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry (each topic module calls this once)."""
    if experiment.name in _REGISTRY and _REGISTRY[experiment.name] is not experiment:
        raise ValueError(f"experiment {experiment.name!r} is registered twice")
    _REGISTRY[experiment.name] = experiment
    return experiment


def available() -> dict[str, Experiment]:
    """Every experiment, importing the topic modules of this package (each registers one)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Experiment:
    """The experiment called ``name``; a clear error naming the valid ones otherwise."""
    experiments = available()
    if name not in experiments:
        raise ValueError(f"experiment must be one of {sorted(experiments)}, got {name!r}")
    return experiments[name]


def check_parts(parts: Sequence[str], allowed: Sequence[str]) -> None:
    """A clear error unless ``parts`` (an experiment config's ``parts``: which of its jobs run)
    is a non-empty subset of ``allowed``."""
    if not parts or set(parts) - set(allowed):
        raise ValueError(f"parts must be a non-empty subset of {tuple(allowed)}, got {parts!r}")


def seed_list(seeds: int | Sequence[int]) -> tuple[int, ...]:
    """``n`` -> ``(0, ..., n - 1)``; a sequence of seeds as a tuple of ints."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        return tuple(range(seeds))
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    return seeds


def checkpoint_dir(name: str, scale: str) -> Path:
    """Where finished jobs of a run are cached (``checkpoints/`` is not committed)."""
    return REPO_ROOT / "checkpoints" / f"{name}__{scale}"


@functools.lru_cache(maxsize=1)
def _package_digest() -> str:
    """A digest of the package's Python sources: a cached job is reused only by the code that
    made it (a job whose code changed under the same config would otherwise come back stale)."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _cache_key(config: Any, seeds: tuple[int, ...]) -> str:
    blob = json.dumps({"config": to_jsonable(config), "seeds": list(seeds), "code": _package_digest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run(name: str, scale: str = "quick", seeds: int | Sequence[int] | None = None, *, save: bool = False,
        resume: bool = False, progress: bool = False, path: str | Path | None = None,
        **overrides: Any) -> dict[str, Any]:
    """Run experiment ``name`` at ``scale`` and return its results record.

    seeds: a count or explicit seeds (default: the scale's). save: write
    ``figures/results/<name>__<scale>.json`` (or ``path``). resume: cache each finished job
    under :func:`checkpoint_dir` and reuse cached jobs of the same config, seeds and package code.
    overrides: config fields to replace (e.g. ``population=128``).
    """
    exp = get(name)
    cfg = exp.config(scale, **overrides)
    seeds_t = seed_list(exp.seeds[scale] if seeds is None else seeds)
    jobs = exp.jobs(cfg, seeds_t)
    key = _cache_key(cfg, seeds_t)
    cache, read, write = checkpoint_dir(name, scale), resume, resume
    replay, record = os.environ.get(REPLAY_JOBS), os.environ.get(RECORD_JOBS)
    if not resume and (replay or record):
        cache, read, write = Path(replay or record) / f"{name}__{scale}", bool(replay), not replay
    parts: dict[str, Any] = {}
    wall = 0.0
    items = list(jobs.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc=f"{name} [{scale}]", unit="job")
    for job_name, job in items:
        file = cache / f"{job_name}.json"
        if read and file.exists():
            stored = json.loads(file.read_text())
            if stored.get("key") == key:
                parts[job_name], wall = stored["result"], wall + stored["wall_s"]
                continue
        t0 = time.perf_counter()
        result = to_jsonable(job())
        dt = time.perf_counter() - t0
        parts[job_name], wall = result, wall + dt
        if write:
            cache.mkdir(parents=True, exist_ok=True)
            write_text_atomic(file, json.dumps({"key": key, "wall_s": dt, "result": result}) + "\n")
    t0 = time.perf_counter()
    data = exp.combine(cfg, seeds_t, parts) if exp.combine is not None else parts
    wall += time.perf_counter() - t0
    record = {"experiment": name, "scale": scale, "config": to_jsonable(cfg), "seeds": list(seeds_t),
              "wall_s": wall, "data": to_jsonable(data)}
    if save:
        written = save_results(name, scale, cfg, list(seeds_t), data, wall, path=path)
        record = load_results(name, scale, path=written)
    return record


def load(name: str, scale: str = "reference") -> dict[str, Any]:
    """The saved results record of ``name`` at ``scale`` (a clear error when none exists)."""
    get(name)  # validates the name
    return load_results(name, scale)


__all__ = ["Experiment", "register", "available", "get", "run", "load", "describe", "seed_list", "checkpoint_dir"]

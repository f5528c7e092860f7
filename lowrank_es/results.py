"""Results files: what an experiment ran, on what, with which code, and what it measured.

Every experiment run is saved as ``figures/results/<experiment>__<scale>.json``::

    {"experiment": "theory", "scale": "reference", "config": {...}, "seeds": [0, 1, 2],
     "device": "cpu:cpu", "cpu_count": 2, "load_average": 1.1, "jax_version": "0.10.2",
     "code_version": "a1b2c3d", "date": "2026-11-30", "wall_s": 812.4, "data": {...}}

``data`` is whatever the experiment returned (JSON types only: numpy arrays become lists).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

from lowrank_es.paths import REPO_ROOT, figures_dir

SCALES = ("quick", "reference")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a reader running
    beside the writer (a notebook and a test in two processes) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def results_dir() -> Path:
    """``figures/results/`` (created on demand)."""
    path = figures_dir() / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_path(experiment: str, scale: str) -> Path:
    """Where the results of ``experiment`` at ``scale`` live."""
    return results_dir() / f"{experiment}__{scale}.json"


def code_version() -> str:
    """``git describe --always`` of the checkout, with ``-dirty`` when the package's code
    (``lowrank_es/``) differs from that commit; the package version outside git. Figures and
    notebooks do not count: they are outputs, not the code that made a result."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        version = git("describe", "--always")
        changed = git("status", "--porcelain", "--untracked-files=all", "--", "lowrank_es")
    except (OSError, subprocess.SubprocessError):
        from lowrank_es import __version__

        return f"lowrank-es {__version__}"
    return version + ("-dirty" if changed else "")


def device_name() -> str:
    """``platform:kind`` of the default JAX device, e.g. ``cpu:cpu`` or ``gpu:NVIDIA H200``."""
    import jax

    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', d.platform)}"


def to_jsonable(x: Any) -> Any:
    """numpy / jax arrays and scalars, dataclasses, tuples and non-finite floats as JSON types."""
    import numpy as np

    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: to_jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if hasattr(x, "__array__") and not isinstance(x, (str, bytes)):
        arr = np.asarray(x)
        return to_jsonable(arr.tolist()) if arr.ndim else to_jsonable(arr.item())
    if isinstance(x, np.generic):
        return to_jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def metadata() -> dict[str, Any]:
    """Where and with what code a run happens: device, cores, jax version, code version, date,
    and the noise generator ``EGGROLL(noise="auto")`` resolves to (an experiment whose config
    names another generator says so in its config)."""
    import jax

    from lowrank_es.es.noise import resolve

    return {
        "noise_auto": resolve("auto"),
        "device": device_name(),
        "cpu_count": os.cpu_count(),
        # other work on the machine inflates wall times: the 1-minute load average says how much
        "load_average": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
        "jax_version": jax.__version__,
        "code_version": code_version(),
        "date": _dt.date.today().isoformat(),
    }


def save_results(experiment: str, scale: str, config: Any, seeds: list[int], data: dict[str, Any],
                 wall_s: float, path: str | Path | None = None) -> Path:
    """Write one run's results with its config, seeds, device, wall time and code version."""
    record = {"experiment": experiment, "scale": scale, "config": to_jsonable(config),
              "seeds": [int(s) for s in seeds], **metadata(), "wall_s": round(float(wall_s), 1),
              "data": to_jsonable(data)}
    path = Path(path) if path is not None else results_path(experiment, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def load_results(experiment: str, scale: str = "reference", path: str | Path | None = None) -> dict[str, Any]:
    """Read a results file written by :func:`save_results`; a clear error when it is missing."""
    path = Path(path) if path is not None else results_path(experiment, scale)
    if not path.exists():
        raise FileNotFoundError(
            f"no {scale} results for experiment {experiment!r} at {path}; "
            f"run `python -m lowrank_es run {experiment} --scale {scale}`"
        )
    return json.loads(path.read_text())


def describe(record: dict[str, Any]) -> str:
    """One line naming a results record's scale, seeds, device, wall time and code version."""
    load = record.get("load_average")
    shared = f", load {load:g}" if load is not None else ""
    return (f"{record['experiment']} at {record['scale']} scale: {len(record['seeds'])} seeds, "
            f"{record['device']} ({record.get('cpu_count')} CPU cores{shared}), {record['wall_s']:.0f} s wall, "
            f"code {record['code_version']}, {record['date']}")

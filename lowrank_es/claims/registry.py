"""The claims registry: every checkable claim of the four papers, in one place.

A claim is registered once, next to the code that measures it::

    @register("eggroll.theory.slope", paper="EGGROLL", statement="...",
              target=Target(low=3), quick=True, notebook="02_theory_convergence")
    def _measure(**kwargs) -> Measurement: ...

``evaluate(id, **kwargs)`` runs the measurement, compares it with the target, stamps
device and date, and writes ``figures/claims/<id>.json``. Notebooks call ``evaluate``
with the results of their experiments; ``python -m lowrank_es claims`` re-runs the quick
claims live and reports the slow ones from their last recorded result.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any, Callable

from lowrank_es.paths import figures_dir
from lowrank_es.results import device_name, to_jsonable, write_text_atomic

PAPERS = {
    "EGGROLL": "arXiv:2511.16652",
    "LOLA": "arXiv:1709.04326",
    "LOQA": "arXiv:2405.01035",
    "AdvantageAlignment": "arXiv:2406.14662",
    "BRS": "arXiv:2404.06519",
    "MFOS": "arXiv:2205.01447",
}


@dataclasses.dataclass(frozen=True)
class Target:
    """A closed interval ``[low, high]`` the measured value must fall in.

    ``None`` on a side means unbounded; with both ``None`` the claim is a pure
    measurement (it holds when the measured value is finite).
    """

    low: float | None = None
    high: float | None = None
    text: str | None = None

    def contains(self, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.low is not None and value < self.low:
            return False
        if self.high is not None and value > self.high:
            return False
        return True

    def describe(self) -> str:
        if self.text:
            return self.text
        if self.low is None and self.high is None:
            return "reported (no target)"
        if self.high is None:
            return f">= {self.low:g}"
        if self.low is None:
            return f"<= {self.high:g}"
        return f"in [{self.low:g}, {self.high:g}]"


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What a measure function returns: a scalar, its uncertainty, how many seeds, and where
    it came from: ``scale`` (``"quick"``, ``"reference"`` or ``"live"`` for a measurement made
    on the spot) and ``device`` (default: this process's device; a value read from a results
    file names the device of that file)."""

    measured: float
    uncertainty: float | None = None
    seeds: int = 1
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    scale: str | None = None
    device: str | None = None


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    statement: str
    target: Target
    measure: Callable[..., Measurement]
    quick: bool
    notebook: str | None


_REGISTRY: dict[str, Claim] = {}


def register(
    claim_id: str,
    *,
    paper: str,
    statement: str,
    target: Target,
    quick: bool = False,
    notebook: str | None = None,
) -> Callable[[Callable[..., Measurement]], Callable[..., Measurement]]:
    """Decorator registering ``fn`` as the measurement of claim ``claim_id``."""
    if paper not in PAPERS:
        raise ValueError(f"paper must be one of {sorted(PAPERS)}, got {paper!r}")

    def deco(fn: Callable[..., Measurement]) -> Callable[..., Measurement]:
        if claim_id in _REGISTRY and _REGISTRY[claim_id].measure is not fn:
            raise ValueError(f"claim id {claim_id!r} is registered twice")
        _REGISTRY[claim_id] = Claim(claim_id, paper, statement, target, fn, quick, notebook)
        return fn

    return deco


_NOT_TOPICS = {"registry", "cli", "plot"}


def load_topics() -> None:
    """Import every topic module of the claims package (each registers its claims)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in _NOT_TOPICS:
            importlib.import_module(f"lowrank_es.claims.{info.name}")


def all_claims() -> dict[str, Claim]:
    """Every registered claim, importing the topic modules that register them."""
    load_topics()
    return dict(sorted(_REGISTRY.items()))


def get(claim_id: str) -> Claim:
    claims = all_claims()
    if claim_id not in claims:
        raise KeyError(f"unknown claim {claim_id!r}; registered: {sorted(claims)}")
    return claims[claim_id]


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def evaluate(
    claim_id: str,
    *,
    target: Target | None = None,
    record: bool = True,
    **kwargs: Any,
) -> dict[str, Any]:
    """Measure a claim, judge it against its target (or an override), and record it.

    Returns the record: a dict with the keys of ``figures/claims.json``.
    A ``target`` override is never recorded (it exists to test the judging itself).
    """
    claim = get(claim_id)
    m = claim.measure(**kwargs)
    if not isinstance(m, Measurement):
        raise TypeError(f"measure function of {claim_id!r} returned {type(m)}, not Measurement")
    tgt = target if target is not None else claim.target
    measured = float(m.measured)
    rec = {
        "id": claim.id,
        "paper": f"{claim.paper} ({PAPERS[claim.paper]})",
        "statement": claim.statement,
        "measured": _finite_or_none(measured),
        "uncertainty": None if m.uncertainty is None else _finite_or_none(float(m.uncertainty)),
        "target": tgt.describe(),
        "holds": bool(tgt.contains(measured)),
        # A claim read from recorded results (e.g. a GPU benchmark) names where it was measured.
        "device": str(m.device or m.details.get("measured_on") or device_name()),
        "scale": m.scale or "n/a",
        "seeds": int(m.seeds),
        "measured_at": _dt.date.today().isoformat(),
        "quick": claim.quick,
        "notebook": claim.notebook,
        "details": m.details,
    }
    if record and target is None:
        path = figures_dir() / "claims" / f"{claim.id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.read_text() if path.exists() else None
        dated = json.loads(old).get("measured_at") if old else None
        # Re-measuring the same value keeps the date it was first measured: every notebook run
        # (and every `make test`) re-records its claims, and a date that moves with each run
        # would leave the committed records modified when nothing was measured differently.
        if dated and old == _record_text({**rec, "measured_at": dated}):
            rec["measured_at"] = dated
            return rec
        write_text_atomic(path, _record_text(rec))
    return rec


def _record_text(rec: dict[str, Any]) -> str:
    return json.dumps(to_jsonable(rec), indent=1, sort_keys=True, default=str) + "\n"


def load_recorded(claim_id: str) -> dict[str, Any] | None:
    path = figures_dir() / "claims" / f"{claim_id}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def format_value(x: float | None, unc: float | None) -> str:
    if x is None:
        return "n/a"
    s = f"{x:.4g}"
    if unc is not None:
        s += f" ± {unc:.2g}"
    return s


def table(records: list[dict[str, Any]], *, markdown: bool = False) -> str:
    """A table of records: id, measured ± uncertainty, target, holds, seeds, device.

    The Markdown form (the claims report) also names the scale each value came from; the plain
    form is what notebooks print beside the run they just made, whose scale the cell states.
    """
    header = ["id", "measured ± unc.", "target", "holds", "seeds", "device"]
    rows = [
        [
            r["id"],
            format_value(r.get("measured"), r.get("uncertainty")),
            r["target"],
            "holds" if r["holds"] else "DOES NOT HOLD",
            str(r["seeds"]),
            r["device"],
        ]
        for r in records
    ]
    if markdown:
        header.insert(5, "scale")
        for row, r in zip(rows, records):
            row.insert(5, str(r.get("scale") or "n/a"))
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    out += [fmt.format(*row) for row in rows]
    return "\n".join(out)


def show(records: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Print claim records as a table (the notebooks' claim cell)."""
    if isinstance(records, dict):
        records = [records]
    print(table(records))

"""One picture of every claim's verdict: ``figures/claims.png``.

Each claim is drawn as its distance from its target on one normalised axis: the margin by
which the measured value clears (> 0) or misses (< 0) the target's bound, divided by the
bound's magnitude (by 1 when the bound is 0, as for the "slack >= 0" claims, whose values are
already in the claim's own units). The uncertainty is drawn the same way. Claims are grouped
by paper; pure measurements (no target) sit at 0 in grey.

:func:`non_inferiority_figure` draws the non-inferiority claims of a notebook as a forest plot:
each comparison's estimate and interval against the margin, in the claim's own units.
"""

from __future__ import annotations

import math
from typing import Any

from lowrank_es.claims.registry import all_claims

#: Margins beyond this are drawn at the edge, with the value printed.
CLIP = 1.5


def normalised_margin(measured: float | None, low: float | None, high: float | None) -> tuple[float, float] | None:
    """(margin, scale): how far ``measured`` clears the target ``[low, high]`` (negative when it
    misses), and the magnitude that margin is divided by. ``None`` without a measurement or
    without a bound."""
    if measured is None or not math.isfinite(measured) or (low is None and high is None):
        return None
    margins, bounds = [], []
    if low is not None:
        margins.append(measured - low)
        bounds.append(low)
    if high is not None:
        margins.append(high - measured)
        bounds.append(high)
    bound = max(abs(b) for b in bounds)
    return min(margins), (bound if bound > 0 else 1.0)


def claims_figure(records: list[dict[str, Any]]):
    """A matplotlib figure of ``records`` (the rows of ``python -m lowrank_es claims``)."""
    import matplotlib.pyplot as plt

    registry = all_claims()
    rows = sorted(records, key=lambda r: (r["paper"], r["id"]))
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(rows) + 1.6))
    labels, papers = [], []
    for y, r in enumerate(rows):
        claim = registry.get(r["id"])
        low, high = (claim.target.low, claim.target.high) if claim else (None, None)
        nm = normalised_margin(r.get("measured"), low, high)
        labels.append(r["id"])
        papers.append(r["paper"])
        if nm is None:
            colour = "0.6" if r.get("measured") is not None else "0.85"
            ax.plot([0.0], [y], marker="s", color=colour, ms=5)
            continue
        margin, scale = nm
        x = margin / scale
        colour = "tab:green" if r["holds"] else "tab:red"
        unc = r.get("uncertainty")
        shown = max(-CLIP, min(CLIP, x))
        if unc is not None and math.isfinite(unc) and unc > 0:
            lo, hi = max(-CLIP, x - unc / scale), min(CLIP, x + unc / scale)
            ax.plot([lo, hi], [y, y], color=colour, lw=1.5, alpha=0.7)
        ax.plot([shown], [y], marker="o" if shown == x else (">" if x > 0 else "<"), color=colour, ms=6)
        if shown != x:
            ax.annotate(f"{x:+.2g}", (shown, y), xytext=(-28 if x > 0 else 6, -3), textcoords="offset points",
                        fontsize=7, color=colour)
    ax.axvline(0.0, color="k", lw=1)
    ax.set_yticks(range(len(rows)), labels, fontsize=7.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(-CLIP - 0.05, CLIP + 0.05)
    for y in range(1, len(rows)):  # a line between papers
        if papers[y] != papers[y - 1]:
            ax.axhline(y - 0.5, color="0.7", lw=0.8)
    first = {p: papers.index(p) for p in dict.fromkeys(papers)}
    for p, y in first.items():
        ax.text(CLIP + 0.08, y, p.split(" (")[0], fontsize=8, va="top", ha="left", color="0.3")
    targeted = [r for r in rows if r["id"] in registry and
                (registry[r["id"]].target.low is not None or registry[r["id"]].target.high is not None)]
    held = sum(bool(r["holds"]) for r in targeted)
    ax.set_xlabel("margin to the target / |target bound|  (> 0: holds; < 0: misses; clipped at ±1.5)")
    ax.set_title(f"{held} of {len(targeted)} claims with a target hold (green holds, red does not); "
                 f"{len(rows) - len(targeted)} reported without one (grey)", fontsize=10)
    fig.tight_layout()
    return fig


def non_inferiority_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparisons of one evaluated non-inferiority claim, read from its ``details``: one row
    per comparison with ``label``, the estimated difference ``estimate`` (method minus
    comparator), the interval ``low``..``high`` whose lower end the claim is judged by, its
    two-sided ``level``, the ``margin`` (the lower end must lie above ``-margin``) and
    ``non_inferior``.

    Three record forms: per-environment one-sided Welch tests (``per_env`` with ``diff`` and
    ``lower``; ``alpha`` and ``margin`` beside it), one such test (``non_inferiority``,
    ``margin``, ``alpha``), and a two-sided 95% Welch interval (``difference``, ``ci_half``,
    ``margin``). A one-sided (1 - alpha) bound is drawn as the two-sided (1 - 2 alpha) interval
    that ends at it.
    """
    d = record["details"]

    def one_sided(label: str, t: dict[str, Any], alpha: float) -> dict[str, Any]:
        return {"label": label, "estimate": t["diff"], "low": t["lower"], "high": 2 * t["diff"] - t["lower"],
                "level": 1 - 2 * alpha, "margin": d["margin"], "non_inferior": bool(t["non_inferior"])}

    if "per_env" in d:
        return [one_sided(env, t, d["alpha"]) for env, t in d["per_env"].items()]
    if "non_inferiority" in d:
        return [one_sided(record["id"], d["non_inferiority"], d["alpha"])]
    if "difference" in d and "ci_half" in d:
        low = d["difference"] - d["ci_half"]
        return [{"label": record["id"], "estimate": d["difference"], "low": low, "high": d["difference"] + d["ci_half"],
                 "level": 0.95, "margin": d["margin"], "non_inferior": bool(low >= -d["margin"])}]
    raise ValueError(f"claim {record['id']!r} records no non-inferiority comparison (per_env, non_inferiority "
                     "or difference and ci_half in its details)")


def non_inferiority_figure(records: list[dict[str, Any]], xlabel: str = "difference, method − comparator"):
    """A forest plot of evaluated non-inferiority claims (what ``claims.evaluate`` returns): per
    comparison (:func:`non_inferiority_rows`) the estimated difference (dot) and the interval the
    claim is judged by (line, green where its lower end clears the margin, red where it does
    not; its numbers in a column on the right) against the non-inferiority margin (dashed
    vertical line at ``-margin``; dotted: no difference). The title counts the comparisons that
    clear the margin and gives each claim's verdict."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = [row for r in records for row in non_inferiority_rows(r)]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 2.2))
    for y, row in enumerate(rows):
        colour = "tab:green" if row["non_inferior"] else "tab:red"
        ax.plot([row["low"], row["high"]], [y, y], color=colour, lw=2.5, solid_capstyle="butt", gid="interval")
        ax.plot([row["estimate"]], [y], "o", color=colour, ms=6, gid="estimate")
        ax.text(1.02, y, f"{row['estimate']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}] ({row['level']:.0%} CI)\n"
                + ("non-inferior" if row["non_inferior"] else "not shown non-inferior"),
                transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=8, color=colour)
    margins = sorted({row["margin"] for row in rows})
    if len(margins) == 1:
        ax.axvline(-margins[0], color="k", ls="--", lw=1.2, gid="margin",
                   label=f"non-inferiority margin −{margins[0]:g}")
    else:  # claims in different units: each row against its own margin
        for y, row in enumerate(rows):
            ax.plot([-row["margin"]] * 2, [y - 0.4, y + 0.4], color="k", ls="--", lw=1.2, gid="margin",
                    label="non-inferiority margin" if y == 0 else None)
    ax.axvline(0.0, color="0.5", ls=":", lw=1, label="no difference")
    ax.set_yticks(range(len(rows)), [row["label"] for row in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.margins(x=0.08)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, 0), borderaxespad=5.5, frameon=False)
    held = sum(row["non_inferior"] for row in rows)
    verdicts = "; ".join(f"{r['id']} {'holds' if r['holds'] else 'does not hold'}" for r in records)
    ax.set_title(f"{held} of {len(rows)} comparisons clear the non-inferiority margin\n{verdicts}", fontsize=10)
    fig.tight_layout()
    return fig


__all__ = ["claims_figure", "non_inferiority_figure", "non_inferiority_rows", "normalised_margin"]

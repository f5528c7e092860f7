"""One picture of every claim's verdict: ``figures/claims.png``.

Each claim is drawn as its distance from its target on one normalised axis: the margin by
which the measured value clears (> 0) or misses (< 0) the target's bound, divided by the
bound's magnitude (by 1 when the bound is 0, as for the "slack >= 0" claims, whose values are
already in the claim's own units). The uncertainty is drawn the same way. Claims are grouped
by paper; pure measurements (no target) sit at 0 in grey.
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


__all__ = ["claims_figure", "normalised_margin"]

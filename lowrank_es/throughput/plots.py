"""Figures of a run: throughput and memory along the sweeps, and the ratio curves."""

from __future__ import annotations

from typing import Any

from lowrank_es.throughput.summary import judged_interval, ratios, select, threshold


def _series(results, model, sweep, x, contender, phase="forward", rank=None, key="member_tokens_per_s"):
    """(x, throughput) or (x, program bytes) of one contender along a sweep, sorted."""
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
    ax.axhline(results["environment"]["max_bytes"], color="grey", ls=":", label="budget per program")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("bytes")


def plot_ratios(results: dict[str, Any], ax, *, model: str = "mlp", sweep: str = "hidden", which: str = "vs_inference",
                phase: str = "forward"):
    """EGGROLL throughput / plain inference (or / naive ES) along a sweep, one line per rank: the
    median over rounds, bars from the slowest to the fastest round; the claimed point (timed apart,
    more rounds) as a black diamond with its median's 95% interval, and the target of the
    results' platform."""
    import seaborn as sns

    x = "hidden" if sweep == "hidden" else "population"
    ranks = results["config"]["ranks"]
    pal = sns.color_palette("viridis", len(ranks))
    pts_rows = {(r["hidden"], r["population"]) for r in select(results, model=model, sweep=sweep)}
    fresh = ratios(results["rows"])  # recomputed: older records' summaries lack the per-round ratios
    for c, rk in zip(pal, ranks):
        pts = sorted((q[x], q[which], q.get(f"{which}_rounds") or [q[which]]) for q in fresh
                     if q["model"] == model and q["rank"] == rk and q["phase"] == phase and q[which] is not None
                     and (q["hidden"], q["population"]) in pts_rows)
        if pts:
            xs, ys, rounds = zip(*pts)
            err = [[y - min(r) for y, r in zip(ys, rounds)], [max(r) - y for y, r in zip(ys, rounds)]]
            ax.errorbar(xs, ys, yerr=err, fmt="-o", color=c, ms=4, capsize=2, lw=1.2, label=f"r={rk}")
    claim = results["summary"].get(which)
    if claim and claim.get("model") == model and claim.get(x) is not None and claim.get("round_ratios"):
        q = claim["round_ratios"]
        lo, hi, _ = judged_interval(claim)
        ax.errorbar([claim[x]], [claim["ratio"]], yerr=[[claim["ratio"] - lo], [hi - claim["ratio"]]], fmt="D",
                    color="k", ms=6, capsize=3, zorder=5, label=f"claimed point ({len(q)} rounds)")
    platform = "gpu" if str((results.get("environment") or {}).get("platform", "cpu")) == "gpu" else "cpu"
    target = threshold(which, platform)
    ax.axhline(target, color="tab:red", ls="--", label=f"target {target:g}x ({platform})")
    if which == "vs_inference":
        ax.axhline(1.0, color="k", lw=0.8)
    else:
        ax.set_yscale("log")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(x)
    ax.set_ylabel(f"EGGROLL / {'inference' if which == 'vs_inference' else 'naive ES'} ({phase}, median of rounds)")


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
    fig.suptitle(f"{model}: EGGROLL vs plain inference vs naive ES on {results['environment']['device']}")
    fig.tight_layout()
    return fig


def plot_profile(results: dict[str, Any], ax, *, rank: int = 1):
    """Per profiled point, the population's noise alone as a share of plain inference's time, one
    bar per generator, next to the arithmetic overhead (forward given noise / inference - 1)."""
    import numpy as np

    prof = [p for p in results.get("profile") or [] if p["rank"] == rank and p.get("median_s")]
    points = sorted({(p["hidden"], p["population"]) for p in prof})
    gens = sorted({(p["noise"], p["prng_impl"]) for p in prof if p["part"] == "noise"}, key=lambda g: (g[0] != "table", g))
    labels = ["arithmetic overhead"] + [k if k == "table" else f"{k} ({i})" for k, i in gens]
    width = 0.8 / max(len(labels), 1)
    for j, (h, n) in enumerate(points):
        at = [p for p in prof if (p["hidden"], p["population"]) == (h, n)]
        get = lambda part, **m: next((p["median_s"] for p in at if p["part"] == part
                                      and all(p.get(k) == v for k, v in m.items())), np.nan)
        inf = get("inference")
        vals = [get("arithmetic") / inf - 1] + [get("noise", noise=k, prng_impl=i) / inf for k, i in gens]
        for i, v in enumerate(vals):
            ax.bar(j + (i - (len(vals) - 1) / 2) * width, 100 * v, width, color=f"C{i}", label=labels[i] if j == 0 else None)
    ax.set_xticks(range(len(points)), [f"hidden {h}\npopulation {n}" for h, n in points])
    ax.set_ylabel("time / plain inference time (%)")
    ax.axhline(0, color="k", lw=0.8)
    ax.legend(fontsize=7)

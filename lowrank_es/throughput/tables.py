"""Text and Markdown views of a run's results: one point, the summary, the tables of RESULTS.md."""

from __future__ import annotations

from typing import Any

from lowrank_es.throughput.summary import CLAIM_POINTS, find, judged_interval, ratios, threshold


def fmt_rate(x: float | None) -> str:
    """A throughput with its unit (the notebooks' sanitiser recognises ``member-tokens/s``)."""
    return "n/a" if x is None else f"{x:.3g} member-tokens/s"


def fmt_bytes(x: float | None) -> str:
    """Bytes in B, KiB, MiB or GiB, 3 significant digits."""
    if x is None:
        return "n/a"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.0f} B"


def fmt_ms(s: float | None) -> str:
    """Seconds as milliseconds, 4 significant digits (``—`` when missing)."""
    return "—" if s is None else f"{s * 1e3:.4g} ms"


def format_point(rows: list[dict[str, Any]]) -> str:
    """One point's table: contender, phase, throughput, memory, ratios."""
    if not rows:
        return ""
    r0 = rows[0]
    rat = {(q["rank"], q["phase"]): q for q in ratios(rows)}
    lines = [f"{r0['model']}  hidden={r0['hidden']}  population={r0['population']}  tokens/member={r0['tokens']}"]
    f = lambda v: "n/a" if v is None else f"{v:.3g}x"
    cpu = lambda v: "" if v is None else f" (cpu {f(v)})"
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
            extra = (f"  vs inference {f(q['vs_inference'])}{cpu(q.get('vs_inference_cpu'))}"
                     f"  vs naive {f(q['vs_naive'])}{cpu(q.get('vs_naive_cpu'))}")
        lines.append(f"  {name:<13} {r['phase']:<10} {rate:<28} mem {mem:<10}{extra}")
    return "\n".join(lines)


def claim_line(key: str, p: dict[str, Any] | None, platform: str = "cpu") -> str:
    """One claimed ratio as a sentence: value, CPU-time value, rounds and spread, threshold on ``platform``."""
    low = threshold(key, platform)
    if p is None:
        return f"{key}: not measured in this run"
    what = "naive ES" if key == "vs_naive" else "inference"
    cpu = "" if p.get("ratio_cpu") is None else f", {p['ratio_cpu']:.3g}x CPU time"
    spread = "" if p.get("spread") is None else f" ± {p['spread']:.2g} (half range)"
    gen = "" if p.get("generation_ratio") is None else f", {p['generation_ratio']:.3g}x per generation"
    verdict = "met" if p["ratio"] >= low else "NOT met"
    return (f"{key}: EGGROLL r={p['rank']} / {what} at hidden {p['hidden']}, population {p['population']}: "
            f"{p['ratio']:.3g}x wall{spread} over {p['rounds']} rounds{cpu}{gen} (target >= {low:g}: {verdict})")


def format_summary(results: dict[str, Any]) -> str:
    """The claimed ratios (with the targets of the run's platform) and the profiles of a run, one line each."""
    platform = (results.get("environment") or {}).get("platform", "cpu")
    lines = [claim_line(k, results["summary"].get(k), platform) for k in CLAIM_POINTS]
    for p in results.get("profile", []):
        if p["part"] in ("total", "noise") and p.get("median_s") is not None:
            name = "naive ES" if p["rank"] is None else f"EGGROLL r={p['rank']}"
            lines.append(f"profile {name} [{p['noise']}, {p['prng_impl']}] hidden {p['hidden']}, population "
                         f"{p['population']}: {p['part']} {fmt_ms(p['median_s'])}")
    return "\n".join(lines)


def _md(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in body]


def markdown_tables(results: dict[str, Any]) -> str:
    """The forward table (throughput per contender, r=1 ratios) and the generation + memory table
    of the grid, in Markdown (benchmarks/RESULTS.md)."""
    rows = [r for r in results["rows"] if r["phase"] == "forward"]
    rat = {(q["model"], q["hidden"], q["population"], q["rank"], q["phase"]): q for q in results["summary"]["ratios"]}
    ranks = sorted({r["rank"] for r in rows if r["contender"] == "eggroll"})
    points = sorted({(r["model"], r["hidden"], r["population"]) for r in rows},
                    key=lambda p: (p[0] != "mlp", p[0], p[1] * p[1] * p[2], p[1]))
    host = any(q.get("vs_inference_cpu") is not None for q in rat.values())
    both = (lambda a, b: "—" if a is None else f"{a:.3g}" + ("" if not host else ", —" if b is None else f", {b:.3g}"))
    unit = " (wall, CPU)" if host else ""

    def row(model, h, p, contender, rank, phase):
        return find(results["rows"], status=None, model=model, hidden=h, population=p, contender=contender,
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
    body = []
    for m, h, p in points:
        q = rat.get((m, h, p, 1, "forward"), {})
        body.append([m, str(h), str(p), cell(m, h, p, "inference")] + [cell(m, h, p, "eggroll", k) for k in ranks]
                    + [cell(m, h, p, "naive"), both(q.get("vs_inference"), q.get("vs_inference_cpu")),
                       both(q.get("vs_naive"), q.get("vs_naive_cpu"))])
    out = _md(head, body)
    head = ["model", "hidden", "population", "EGGROLL r=1 generation", "naive ES generation", f"ratio{unit}",
            "memory r=1 fwd", "memory naive fwd"]
    body = []
    for m, h, p in points:
        q = rat.get((m, h, p, 1, "generation"), {})
        body.append([m, str(h), str(p), cell(m, h, p, "eggroll", 1, "generation"), cell(m, h, p, "naive", None, "generation"),
                     both(q.get("vs_naive"), q.get("vs_naive_cpu")), mem(m, h, p, "eggroll", 1), mem(m, h, p, "naive")])
    return "\n".join(out + [""] + _md(head, body))


def profile_table(results: dict[str, Any]) -> str:
    """The profiles in Markdown: per point and generator, inference, the forward, its noise alone
    and the arithmetic alone (medians; CPU time too on a CPU), and normals per second."""
    prof = results.get("profile") or []
    if not prof:
        return ""
    host = any(p.get("cpu_median_s") is not None for p in prof)
    head = (["contender", "noise", "hidden / population", "inference", "forward", "noise alone", "arithmetic alone"]
            + (["forward (CPU)", "noise (CPU)"] if host else []) + ["forward / inference", "normals / s"])
    body = []
    points = sorted({(p["model"], p["hidden"], p["population"], p["rank"] or 0) for p in prof}, key=lambda t: (t[3] == 0, -t[1]))
    for model, h, n, rk in points:
        pts = [p for p in prof if (p["model"], p["hidden"], p["population"], p["rank"] or 0) == (model, h, n, rk)]
        part = lambda name, **m: find(pts, status=None, part=name, **m) or {}
        inf, arith = part("inference"), part("arithmetic")
        gens = sorted({(p["noise"], p["prng_impl"]) for p in pts if p["part"] == "noise"})
        for kind, impl in gens:
            tot, nz = part("total", noise=kind, prng_impl=impl), part("noise", noise=kind, prng_impl=impl)
            ratio = (inf["median_s"] / tot["median_s"]) if inf.get("median_s") and tot.get("median_s") else None
            cells = ["naive ES" if not rk else f"EGGROLL r={rk}", kind if kind == "table" else f"{kind} ({impl})",
                     f"{h} / {n}", fmt_ms(inf.get("median_s")), fmt_ms(tot.get("median_s")), fmt_ms(nz.get("median_s")),
                     fmt_ms(arith.get("median_s"))]
            if host:
                cells += [fmt_ms(tot.get("cpu_median_s")), fmt_ms(nz.get("cpu_median_s"))]
            cells += ["—" if ratio is None else f"{ratio:.3g}",
                      "—" if not nz.get("normals_per_s") else f"{nz['normals_per_s']:.3g}"]
            body.append(cells)
    return "\n".join(_md(head, body))


def claims_table(results: dict[str, Any], keys: tuple[str, ...] = tuple(CLAIM_POINTS), suffix: str = "",
                 platform: str = "cpu") -> str:
    """The claimed ratios ``keys`` in Markdown: point, wall and CPU-time ratio, rounds, spread, load,
    target on ``platform``, met; claim ids get ``suffix``."""
    head = ["claim", "point", "EGGROLL / baseline (wall, median)", "CPU time", "rounds", "half range", "load average",
            "judged on (lower end)", "target", "met"]
    body = []
    for key in keys:
        low = threshold(key, platform)
        p = results["summary"].get(key)
        if p is None:
            body.append([f"`eggroll.throughput.{key}{suffix}`", "not measured"] + ["—"] * 7 + ["no"])
            continue
        judged = judged_interval(p)[0]
        body.append([f"`eggroll.throughput.{key}{suffix}`", f"{p['model']} {p['hidden']} / {p['population']}, r={p['rank']}",
                     f"**{p['ratio']:.3g}**", "—" if p.get("ratio_cpu") is None else f"{p['ratio_cpu']:.3g}",
                     str(p["rounds"]), "—" if p.get("spread") is None else f"{p['spread']:.2g}",
                     "—" if not p.get("load_average") else f"{p['load_average'][0]:.2g}",
                     f"{judged:.3g}", f">= {low:g}", "yes" if judged >= low else "**no**"])
    return "\n".join(_md(head, body))

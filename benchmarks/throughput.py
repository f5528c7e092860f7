"""Command line of the throughput benchmark (the library: ``lowrank_es.throughput``; the experiment:
``lowrank_es.experiments.throughput``).

    python -m benchmarks.throughput reference   the committed CPU grid: writes
        figures/results/throughput__reference.json, its figure, the claimed points again with
        XLA's native CPU flags (throughput__native.json, a second process), and benchmarks/RESULTS.md
    python -m benchmarks.throughput gpu --note "..."   the same on a GPU (throughput__gpu.json)
    python -m benchmarks.throughput quick       a one-minute run, printed (saved with --save)
    python -m benchmarks.throughput report      benchmarks/RESULTS.md from the saved results
    python -m benchmarks.throughput tables FILE the Markdown tables of a results file

Runs are fresh unless ``--resume`` (timings must come from one run on one machine state).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from lowrank_es import experiments
from lowrank_es.paths import REPO_ROOT
from lowrank_es.results import load_results, results_path, save_results

RESULTS_MD = REPO_ROOT / "benchmarks" / "RESULTS.md"


def write_report(path: Path = RESULTS_MD) -> Path:
    """Regenerate RESULTS.md from the saved reference (CPU) and GPU records (either may be missing)."""
    from lowrank_es.throughput.report import results_markdown

    records = {s: load_results("throughput", s) if results_path("throughput", s).exists() else None
               for s in ("reference", "gpu", "native")}
    path.write_text(results_markdown(records["reference"], records["gpu"], records["native"]))
    return path


def run_scale(scale: str, *, save: bool, resume: bool, note: str | None) -> dict:
    """Run the experiment at ``scale``; with ``save``, write its record (plus ``note``) and figure."""
    from lowrank_es.__main__ import exp_plots
    from lowrank_es.throughput.tables import format_summary

    record = experiments.run("throughput", scale, resume=resume, progress=True)
    if note:
        record["data"]["user_note"] = note
    print(format_summary(record["data"]))
    print(record["data"]["note"])
    if save:
        path = save_results("throughput", scale, record["config"], record["seeds"], record["data"], record["wall_s"])
        record = load_results("throughput", scale, path=path)
        print("wrote", path)
        for fig in exp_plots(experiments.get("throughput"), record):
            print("wrote", fig)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n")[0])
    p.add_argument("command", choices=("reference", "gpu", "quick", "native", "report", "tables"))
    p.add_argument("file", nargs="?", help="results file (tables)")
    p.add_argument("--save", action="store_true", help="quick: save the record too (reference and gpu always do)")
    p.add_argument("--resume", action="store_true", help="reuse finished jobs cached under checkpoints/")
    p.add_argument("--note", default=None, help="a remark stored in the results (how the run was made)")
    p.add_argument("--report", default=str(RESULTS_MD), help="where RESULTS.md goes (default benchmarks/RESULTS.md)")
    a = p.parse_args(argv)
    if a.command == "tables":
        if not a.file:
            p.error("tables needs a results file")
        from lowrank_es.throughput.tables import claims_table, markdown_tables, profile_table

        data = json.loads(Path(a.file).read_text())["data"]
        print("\n\n".join(t for t in (claims_table(data), markdown_tables(data), profile_table(data)) if t))
        return 0
    if a.command == "native" and os.environ.get("XLA_FLAGS") is None:
        p.error("native measures XLA's native CPU kernels: run it with XLA_FLAGS set (e.g. XLA_FLAGS=)")
    if a.command != "report":
        run_scale(a.command, save=a.save or a.command != "quick", resume=a.resume, note=a.note)
    if a.command == "reference":  # the same claimed points with XLA's native CPU flags, side by side
        subprocess.run([sys.executable, "-m", "benchmarks.throughput", "native"], cwd=REPO_ROOT, check=True,
                       env={**os.environ, "XLA_FLAGS": ""})
    if a.command not in ("quick", "native"):
        print("wrote", write_report(Path(a.report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

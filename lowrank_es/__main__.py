"""Command line.

    python -m lowrank_es list                                     experiments, scales, saved results
    python -m lowrank_es run <experiment>|all [--scale quick|reference] [--seeds N] [--no-resume]
    python -m lowrank_es claims [--json PATH] [--md PATH] [--no-live] [--only PREFIX]
"""

from __future__ import annotations

import argparse
import sys

USAGE = __doc__


def _list() -> int:
    import json

    from lowrank_es import experiments
    from lowrank_es.results import results_path

    total = {}
    for name, exp in experiments.available().items():
        print(f"{name:<16} notebooks/{exp.notebook}.ipynb: {exp.summary}")
        for scale in exp.scales:
            path = results_path(name, scale)
            if path.exists():
                rec = json.loads(path.read_text())
                total[scale] = total.get(scale, 0.0) + rec["wall_s"]
                saved = f"saved: {rec['wall_s'] / 60:.1f} min on {rec['device']} ({rec['cpu_count']} cores), code {rec['code_version']}"
            else:
                saved = "not saved"
            print(f"    {scale:<10} {exp.seeds[scale]:>3} seeds  {saved}")
    for scale, wall in total.items():
        print(f"total wall time of the saved {scale} runs: {wall / 60:.0f} min")
    return 0


def _run(argv: list[str]) -> int:
    from lowrank_es import experiments

    p = argparse.ArgumentParser(prog="python -m lowrank_es run",
                                description="Run one experiment and save its results JSON under figures/results/.")
    p.add_argument("experiment", help="an experiment name (python -m lowrank_es list shows them), or all")
    p.add_argument("--scale", default="quick", help="quick or reference (default quick)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the scale's)")
    p.add_argument("--no-resume", action="store_true", help="ignore finished jobs cached under checkpoints/")
    args = p.parse_args(argv)
    names = list(experiments.available()) if args.experiment == "all" else [args.experiment]
    try:  # a bad experiment name, scale or seed count: one clear line, no traceback
        for name in names:
            experiments.get(name).config(args.scale)
        if args.seeds is not None:
            experiments.seed_list(args.seeds)
    except ValueError as err:
        p.error(str(err))
    for name in names:
        record = experiments.run(name, args.scale, args.seeds, save=True, resume=not args.no_resume, progress=True)
        print(experiments.describe(record))
        for path in exp_plots(experiments.get(name), record):
            print("wrote", path)
    return 0


def exp_plots(exp, record) -> list:
    """Save the figures the experiment draws from a results record, if it draws any."""
    if exp.plots is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    from lowrank_es.notebook import save_figure

    return [save_figure(fig, exp.notebook, f"{record['scale']}_{what}") for what, fig in exp.plots(record).items()]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("claims", "run", "list"):
        print(USAGE)
        return 2
    if argv[0] == "list":
        return _list()
    if argv[0] == "run":
        return _run(argv[1:])
    from lowrank_es.claims.cli import main as claims_main

    return claims_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

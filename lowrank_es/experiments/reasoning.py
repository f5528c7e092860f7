"""Experiments ``reasoning`` and ``reasoning_sweep`` (notebook 05): the pre-trained Countdown
checkpoint fine-tuned by EGGROLL and by GRPO at the same budget of generated tokens.

``reasoning_sweep`` tunes each method with the same effort (the same number of settings, one
seed each, the same token budget) and ranks the settings by *validation* accuracy;
``reasoning`` then runs the chosen setting of each method from several seeds and measures *test*
accuracy, so the settings are never chosen on the numbers the claims read.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import numpy as np

from lowrank_es.experiments import Experiment, register
from lowrank_es.tasks import countdown as rs
from lowrank_es.tasks import countdown_finetune as cf
from lowrank_es.tasks import countdown_lm as cl

METHODS = ("eggroll", "grpo")
#: The null control: EGGROLL with each step's fitness shuffled across members (same tokens, same
#: update sizes, no signal), run from the same seeds; what EGGROLL gains beyond it is the reward's doing.
NULL = "eggroll_null"
ARMS = (*METHODS, NULL)
LABELS = {"eggroll": "EGGROLL", "grpo": "GRPO", NULL: "EGGROLL, shuffled fitness (null)"}
COLORS = {"eggroll": "C0", "grpo": "C3", NULL: "0.55"}
N_SAMPLES = 10  # test prompts shown with one sampled answer per model


@dataclasses.dataclass(frozen=True)
class Config:
    """The shared budget and validation schedule, the test set, and each method's setting."""

    finetune: cf.FinetuneConfig = cf.FinetuneConfig(token_budget=None, eval_points=3, n_val=64, val_samples=2,
                                                    eval_split="test")
    n_test: int = 200
    test_samples: int = 2
    eggroll: cf.EggrollConfig = cf.EggrollConfig(population=128, group=16, sigma=0.03, lr=0.3, optimizer="sgd",
                                                 estimator="hyperscale", sigma_relative=True,
                                                 frozen=cf.BLOCK_MATRICES_ONLY, greedy=True, steps=100)
    # about equal training seconds: a GRPO update of 128 answers costs about four of 128 members.
    # Sized for notebook 05's 60 s budget: 3 seeds x 3 arms, 2.5 s of training each on an idle 2-core CPU
    grpo: cf.GRPOConfig = cf.GRPOConfig(group=4, lr=3e-4, inner_steps=2, steps=25)


#: EGGROLL as the official code runs it: plain SGD on the official update (estimator
#: "hyperscale"), sigma 0.03 / sqrt(width) (the official 7e-4 at width 2,048), only the blocks'
#: matrices perturbed, greedy fitness; 32 members per prompt (the official 256 does not fit 2 cores:
#: 512 members would be 2 prompts per update). The learning rates are the reference sweep's best.
PAPER_EGGROLL = cf.EggrollConfig(population=512, group=32, rank=1, sigma=0.03, sigma_relative=True, lr=0.3,
                                 optimizer="sgd", estimator="hyperscale", frozen=cf.BLOCK_MATRICES_ONLY, greedy=True)
#: Equal training wall-clock: 60 s of training per run on an idle 2-core CPU, from the measured
#: seconds per update at these settings (0.057 s EGGROLL, 0.071 s GRPO over 800 updates):
#: 1,050 EGGROLL updates, 850 GRPO updates. The runs' recorded training seconds show how equal.
WALLCLOCK_STEPS = {"eggroll": 1050, "grpo": 850}
REFERENCE = Config(finetune=cf.FinetuneConfig(token_budget=None, eval_points=9, n_val=400, val_samples=2, eval_split="test"),
                   n_test=400, test_samples=2,
                   eggroll=dataclasses.replace(PAPER_EGGROLL, steps=WALLCLOCK_STEPS["eggroll"]),
                   grpo=cf.GRPOConfig(group=4, lr=1e-4, inner_steps=2, steps=WALLCLOCK_STEPS["grpo"]))
#: The first reference (Adam on every leaf, sigma 0.03 absolute, sampled fitness, 340k tokens per
#: run): kept because the committed ``long_budget`` record (1M tokens) was made with it.
ADAM_REFERENCE = Config(finetune=cf.FinetuneConfig(token_budget=340_000, eval_points=3, n_val=200, val_samples=2),
                        n_test=400, test_samples=2,
                        eggroll=cf.EggrollConfig(population=512, group=8, sigma=0.03, lr=3e-3),
                        grpo=cf.GRPOConfig(group=4, lr=3e-4, inner_steps=2))
SCALES = {
    "quick": Config(),
    "reference": REFERENCE,
    # the Adam settings for 1M tokens: does that EGGROLL keep rising past its sweep's budget?
    "long_budget": dataclasses.replace(ADAM_REFERENCE, finetune=dataclasses.replace(
        ADAM_REFERENCE.finetune, token_budget=1_000_000, eval_points=5)),
}
SEEDS = {"quick": 3, "reference": 5, "long_budget": 5}


def greedy_test_accuracy(params: dict, n_test: int) -> np.ndarray:
    """Per-test-prompt accuracy of the greedy answer (T = 0, the paper's metric). -> (n_test,)"""
    test = rs.make_problems("test", n_test, seed=0)
    return cl.accuracy(params, test, jax.random.key(0), greedy=True)


def start_job(cfg: Config) -> dict:
    """The checkpoint's test accuracy per prompt, sampled and greedy, and its sample answers."""
    params, pcfg = cl.load_pretrained()
    greedy = greedy_test_accuracy(params, cfg.n_test)
    return {"per_prompt": cl.test_accuracy(params, cfg.n_test, cfg.test_samples),
            "greedy": float(greedy.mean()), "greedy_per_prompt": greedy.tolist(),
            "num_params": int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
            "pretrain": dataclasses.asdict(pcfg), "samples": cl.sample_answers({"start": params}, n=N_SAMPLES)}


def method_job(cfg: Config, method: str, seed: int) -> dict:
    """One fine-tuning run: its log (validation curve, tokens, seconds, steps), its final test
    accuracy, and (for the first seed) its sample answers."""
    c0 = time.process_time()
    params, _ = cl.load_pretrained()
    fc = cfg.finetune
    if method == "eggroll":
        p, log = cf.eggroll_finetune(params, seed, fc, cfg.eggroll)
    elif method == NULL:
        p, log = cf.eggroll_finetune(params, seed, fc, dataclasses.replace(cfg.eggroll, null_control=True))
    else:
        p, log = cf.grpo_finetune(params, seed, fc, cfg.grpo)
    out = {**log, "final": float(cl.test_accuracy(p, cfg.n_test, cfg.test_samples).mean()),
           "final_greedy": float(greedy_test_accuracy(p, cfg.n_test).mean())}
    out["samples"] = cl.sample_answers({LABELS[method]: p}, n=N_SAMPLES)
    # the job's process CPU seconds (all threads), and the load average (1, 5, 15 min) at its end:
    # a load above the core count means the machine was shared while it ran
    out["cpu_s"], out["load_avg"] = time.process_time() - c0, list(os.getloadavg())
    return out


def memory_job(cfg: Config) -> dict:
    params, _ = cl.load_pretrained()
    return cf.memory_per_sequence(params, cfg.eggroll, cfg.grpo)


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    out = {"start": functools.partial(start_job, cfg), "memory": functools.partial(memory_job, cfg)}
    for s in seeds:  # seed by seed, every arm: an interrupted run has finished whole seeds
        out.update({f"{m}_seed{s}": functools.partial(method_job, cfg, m, s) for m in ARMS})
    return out


def combine(cfg: Config, seeds: tuple[int, ...], parts: dict) -> dict:
    """``start``, ``memory`` and per arm (the two methods and the null control) ``logs`` (one per
    seed, samples dropped), ``final`` and ``final_greedy`` (sampled and greedy test accuracy per
    seed); ``samples``: one answer per model on the first test prompts (the first seed of each
    method)."""
    data = {"start": {k: v for k, v in parts["start"].items() if k != "samples"}, "memory": parts["memory"]}
    rows = parts["start"]["samples"]
    for m in ARMS:
        runs = [parts[f"{m}_seed{s}"] for s in seeds]
        data[m] = {"logs": [{k: v for k, v in r.items() if k not in ("samples", "final", "final_greedy")} for r in runs],
                   "final": [r["final"] for r in runs], "final_greedy": [r["final_greedy"] for r in runs]}
        if m in METHODS:  # sample answers of the two methods only (the null's add nothing to read)
            rows = [{**row, **other} for row, other in zip(rows, runs[0]["samples"])]
    data["samples"] = rows
    return data


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Each method's grid (the same number of settings), one seed, the base config's budget;
    settings are ranked by the last greedy validation accuracy (sampled where a record has no greedy). The sweep's seed ``i`` runs from ``seed + i``, away
    from the comparison's seeds."""

    base: Config = Config(finetune=cf.FinetuneConfig(token_budget=None, eval_points=2, n_val=32, val_samples=1),
                          eggroll=dataclasses.replace(Config().eggroll, steps=10),
                          grpo=dataclasses.replace(Config().grpo, steps=10))
    seed: int = 100
    eggroll_sigma: tuple[float, ...] = (0.03,)
    eggroll_lr: tuple[float, ...] = (0.3, 1.0)
    grpo_lr: tuple[float, ...] = (3e-4, 1e-3)
    grpo_group: tuple[int, ...] = (4,)

    def settings(self) -> dict[str, tuple[str, object]]:
        """``{job name: (method, method config)}`` of every setting of the grid."""
        out = {}
        for s in self.eggroll_sigma:
            for lr in self.eggroll_lr:
                out[f"eggroll_sigma{s:g}_lr{lr:g}".replace(".", "p").replace("-", "m")] = (
                    "eggroll", dataclasses.replace(self.base.eggroll, sigma=s, lr=lr))
        for lr in self.grpo_lr:
            for g in self.grpo_group:
                out[f"grpo_lr{lr:g}_group{g}".replace(".", "p").replace("-", "m")] = (
                    "grpo", dataclasses.replace(self.base.grpo, lr=lr, group=g))
        return out


SWEEP_SCALES = {
    "quick": SweepConfig(),
    "reference": SweepConfig(
        # the reference comparison's settings and equal wall-clock steps on the validation split;
        # the grids bracket each method's learning rate (four settings each: the same effort)
        base=dataclasses.replace(REFERENCE, finetune=dataclasses.replace(REFERENCE.finetune, eval_points=5, n_val=200,
                                                                         eval_split="val")),
        eggroll_sigma=(0.03,), eggroll_lr=(0.03, 0.1, 0.3, 1.0), grpo_lr=(3e-5, 1e-4, 3e-4, 1e-3), grpo_group=(4,)),
}


def sweep_setting(cfg: SweepConfig, method: str, setting, seeds: tuple[int, ...]) -> dict:
    """One setting of the grid from seeds ``cfg.seed + s``: its logs (validation curves)."""
    params, _ = cl.load_pretrained()
    fc = cfg.base.finetune
    fn = cf.eggroll_finetune if method == "eggroll" else cf.grpo_finetune
    logs = [fn(params, cfg.seed + s, fc, setting)[1] for s in seeds]
    return {"method": method, "setting": dataclasses.asdict(setting), "logs": logs}


def sweep_jobs(cfg: SweepConfig, seeds: tuple[int, ...]) -> dict:
    return {name: functools.partial(sweep_setting, cfg, m, s, seeds) for name, (m, s) in cfg.settings().items()}


def sweep_table(record: dict) -> list[dict]:
    """One row per setting, in grid order within each method: the swept values, tokens, steps,
    the last validation accuracy greedy and sampled (mean over the sweep's seeds), the start, and
    ``chosen`` (the method's best by greedy accuracy; by sampled in records without greedy curves)
    with ``edge`` (whether the chosen setting is at its grid's end, i.e. not bracketed)."""
    rows = []
    for r in record["data"].values():
        s, logs = r["setting"], r["logs"]
        swept = f"sigma {s['sigma']:g}, lr {s['lr']:g}" if r["method"] == "eggroll" else f"lr {s['lr']:g}, group {s['group']}"
        last = lambda j: float(np.mean([g["curve"][-1][j] for g in logs])) if len(logs[0]["curve"][-1]) > j else float("nan")
        rows.append({"method": LABELS[r["method"]], "setting": swept, "lr": float(s["lr"]),
                     "tokens": int(np.mean([g["tokens"] for g in logs])), "steps": int(np.mean([g["steps"] for g in logs])),
                     "val greedy": last(3), "val sampled": last(2),
                     "start": float(np.mean([g["curve"][0][3 if len(g["curve"][0]) > 3 else 2] for g in logs]))})
    rows.sort(key=lambda row: (row["method"], row["setting"]))
    for method in {row["method"] for row in rows}:
        mine = [row for row in rows if row["method"] == method]
        key = "val greedy" if not np.isnan(mine[0]["val greedy"]) else "val sampled"
        best = max(mine, key=lambda row: row[key])
        lrs = sorted({row["lr"] for row in mine})
        for row in mine:
            row["chosen"] = row is best
            row["edge"] = row is best and len(lrs) > 1 and row["lr"] in (lrs[0], lrs[-1])
    return rows


# ---------------------------------------------------------------------------
# Reading a record, and figures
# ---------------------------------------------------------------------------


def arms(record: dict) -> tuple[str, ...]:
    """The arms a record holds: both methods, and the null control where it was run."""
    return tuple(m for m in ARMS if m in record["data"])


def summary_lines(record: dict) -> list[str]:
    """Start accuracy, then per arm: final test accuracy greedy (where recorded) and sampled (95%
    CI over seeds), tokens, steps and training seconds."""
    from lowrank_es.stats import mean_ci, proportion_ci

    d = record["data"]
    s, sh = proportion_ci(d["start"]["per_prompt"])
    n = len(d["start"]["per_prompt"])
    head = f"test accuracy sampled {s:.3f} ± {sh:.3f}"
    if "greedy_per_prompt" in d["start"]:
        g, gh = proportion_ci(d["start"]["greedy_per_prompt"])
        head = f"test accuracy greedy {g:.3f} ± {gh:.3f}, sampled {s:.3f} ± {sh:.3f}"
    lines = [f"start: {head} (95% CI over {n} prompts)"]
    for m in arms(record):
        logs = d[m]["logs"]
        acc = []
        for key, what in (("final_greedy", "greedy"), ("final", "sampled")):
            if key in d[m]:
                m_, h = mean_ci(d[m][key])
                acc.append(f"{what} {m_:.3f} ± {h:.3f} (per seed {[round(x, 3) for x in d[m][key]]})")
        toks = [log["tokens"] for log in logs]
        secs = [log["seconds"] for log in logs]
        lines.append(f"{LABELS[m]}: test accuracy {'; '.join(acc)}, 95% CI over {len(logs)} seeds; tokens "
                     f"{min(toks)}..{max(toks)}, {logs[0]['steps']} steps of {logs[0]['sequences_per_step']} sequences, "
                     f"training {np.mean(secs):.1f} s per run")
    return lines


def curve_band(logs: list[dict], column: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds' curves aligned by evaluation point: mean tokens, mean training seconds, and the mean
    and 95% half-width over seeds of ``column`` (2 sampled, 3 greedy accuracy). -> four (P,)."""
    from lowrank_es.stats import mean_ci

    n = min(len(log["curve"]) for log in logs)
    c = np.stack([np.asarray(log["curve"], float)[:n] for log in logs])  # (seeds, P, columns)
    if c.shape[2] <= column:
        raise ValueError(f"curves have {c.shape[2]} columns, no column {column} (records before greedy curves)")
    stats = [mean_ci(c[:, j, column]) if len(logs) > 1 else (c[0, j, column], 0.0) for j in range(n)]
    m, h = (np.array(x) for x in zip(*stats))
    return c[:, :, 0].mean(0), c[:, :, 1].mean(0), m, h


def plot_curves(axes, record: dict) -> None:
    """Accuracy on the curve's split, mean and 95% interval over seeds, greedy (solid) and sampled
    (dashed), against generated tokens (``axes[0]``) and training seconds (``axes[1]``), with the
    start as horizontal lines. Records made before greedy curves draw each seed's sampled curve."""
    split = record["config"]["finetune"].get("eval_split", "val")
    for m in arms(record):
        logs = record["data"][m]["logs"]
        if len(logs[0]["curve"][0]) < 4:  # a record before greedy curves: each seed, sampled only
            for i, log in enumerate(logs):
                c = np.asarray(log["curve"])
                for ax, x in zip(axes, (c[:, 0], c[:, 1])):
                    ax.plot(x, c[:, 2], "-o", ms=3, color=COLORS[m], alpha=0.7, label=LABELS[m] if i == 0 else None)
            continue
        for column, style, what in ((3, "-o", "greedy"), (2, "--", "sampled")):
            tok, sec, mean, half = curve_band(logs, column)
            for ax, x in zip(axes, (tok, sec)):
                ax.plot(x, mean, style, ms=3, color=COLORS[m], label=f"{LABELS[m]}, {what}")
                ax.fill_between(x, mean - half, mean + half, color=COLORS[m], alpha=0.15)
    start = [(np.asarray(log["curve"], float)[0]) for log in record["data"][arms(record)[0]]["logs"]][0]
    for ax in axes:
        ax.axhline(start[2], color="k", ls=":", lw=1, label="start, sampled")
        if len(start) > 3:
            ax.axhline(start[3], color="k", ls="-", lw=1, alpha=0.5, label="start, greedy")
        ax.set_ylabel(f"{split} accuracy (mean, 95% CI over seeds)")
        ax.legend(fontsize=7)
    axes[0].set_xlabel("generated training tokens")
    axes[1].set_xlabel("training wall-clock (s, evaluation excluded)")


def plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    plot_curves(axes, record)
    d = record["data"]
    key = "final_greedy" if "final_greedy" in d[arms(record)[0]] else "final"
    finals = ", ".join(f"{LABELS[m]} {np.mean(d[m][key]):.3f}" for m in arms(record))
    fig.suptitle(f"{record['scale']} scale, final {'greedy' if key == 'final_greedy' else 'sampled'} test accuracy: {finals}")
    fig.tight_layout()
    return {"accuracy_curves": fig}


def sweep_plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    rows = sweep_table(record)
    greedy = not np.isnan(rows[0]["val greedy"])
    key = "val greedy" if greedy else "val sampled"
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    ax.barh(range(len(rows)), [r[key] for r in rows], color=[COLORS["eggroll" if r["method"] == "EGGROLL" else "grpo"]
                                                             for r in rows],
            edgecolor=["k" if r["chosen"] else "none" for r in rows], linewidth=2)
    ax.axvline(rows[0]["start"], color="k", ls="--", label="checkpoint")
    ax.set_yticks(range(len(rows)), [f"{r['method']}: {r['setting']}{'  (chosen)' if r['chosen'] else ''}" for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"validation accuracy at the end of the budget ({'greedy, T = 0' if greedy else 'sampled, T = 1'})")
    edges = [r["method"] for r in rows if r["edge"]]
    ax.set_title(f"{record['scale']} sweep, seed {record['config']['seed']}: "
                 + (f"best setting on the grid's edge for {', '.join(edges)}" if edges else "each method's best lies inside its grid"))
    ax.legend()
    fig.tight_layout()
    return {"sweep": fig}


EXPERIMENT = register(Experiment(
    name="reasoning", notebook="05_reasoning_vs_grpo",
    summary="At the same budget of generated tokens, does EGGROLL fine-tune a Countdown model as well as GRPO?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, combine=combine, plots=plots,
))

SWEEP = register(Experiment(
    name="reasoning_sweep", notebook="05_reasoning_vs_grpo",
    summary="Which sigma / learning rate (EGGROLL) and learning rate / group (GRPO) fine-tune the checkpoint best?",
    scales=SWEEP_SCALES, seeds={"quick": 1, "reference": 1}, jobs=sweep_jobs, plots=sweep_plots,
))

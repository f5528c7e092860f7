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

    finetune: cf.FinetuneConfig = cf.FinetuneConfig(token_budget=16_000, eval_points=3, n_val=64, val_samples=2)
    n_test: int = 200
    test_samples: int = 2
    eggroll: cf.EggrollConfig = cf.EggrollConfig(population=128, group=8, sigma=0.03, lr=3e-3)
    grpo: cf.GRPOConfig = cf.GRPOConfig(group=8, lr=1e-3, inner_steps=2)


#: Each method's best setting of the reference sweep (by validation accuracy) at the sweep's
#: budget of 340k generated tokens per run.
REFERENCE = Config(finetune=cf.FinetuneConfig(token_budget=340_000, eval_points=3, n_val=200, val_samples=2),
                   n_test=400, test_samples=2,
                   eggroll=cf.EggrollConfig(population=512, group=8, sigma=0.03, lr=3e-3),
                   grpo=cf.GRPOConfig(group=4, lr=3e-4, inner_steps=2))
SCALES = {
    "quick": Config(),
    "reference": REFERENCE,
    # the same settings for 1M tokens: does EGGROLL keep rising past the sweep's budget?
    "long_budget": dataclasses.replace(REFERENCE, finetune=dataclasses.replace(REFERENCE.finetune, token_budget=1_000_000,
                                                                              eval_points=5)),
}
SEEDS = {"quick": 3, "reference": 5, "long_budget": 5}


def start_job(cfg: Config) -> dict:
    """The checkpoint's test accuracy per prompt (sampled) and greedy, and its sample answers."""
    params, pcfg = cl.load_pretrained()
    test = rs.make_problems("test", cfg.n_test, seed=0)
    return {"per_prompt": cl.test_accuracy(params, cfg.n_test, cfg.test_samples),
            "greedy": float(cl.accuracy(params, test, jax.random.key(0), greedy=True).mean()),
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
    out = {**log, "final": float(cl.test_accuracy(p, cfg.n_test, cfg.test_samples).mean())}
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
    seed, samples dropped), ``final`` (test accuracy per seed); ``samples``: one answer per model
    on the first test prompts (the first seed of each method)."""
    data = {"start": {k: v for k, v in parts["start"].items() if k != "samples"}, "memory": parts["memory"]}
    rows = parts["start"]["samples"]
    for m in ARMS:
        runs = [parts[f"{m}_seed{s}"] for s in seeds]
        data[m] = {"logs": [{k: v for k, v in r.items() if k not in ("samples", "final")} for r in runs],
                   "final": [r["final"] for r in runs]}
        if m in METHODS:  # sample answers of the two methods only (the null's add nothing to read)
            rows = [{**row, **other} for row, other in zip(rows, runs[0]["samples"])]
    data["samples"] = rows
    return data


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Each method's grid (the same number of settings), one seed, one token budget; settings
    are ranked by the last validation accuracy. The sweep's seed ``i`` runs from ``seed + i``, away
    from the comparison's seeds."""

    base: Config = Config(finetune=cf.FinetuneConfig(token_budget=8_000, eval_points=2, n_val=32, val_samples=1))
    seed: int = 100
    eggroll_sigma: tuple[float, ...] = (0.01,)
    eggroll_lr: tuple[float, ...] = (1e-3, 3e-3)
    grpo_lr: tuple[float, ...] = (1e-3, 3e-3)
    grpo_group: tuple[int, ...] = (8,)

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
        # the reference comparison's budget, population and group; the swept values replace sigma / lr / group
        base=Config(finetune=cf.FinetuneConfig(token_budget=340_000, eval_points=6, n_val=200, val_samples=2),
                    eggroll=cf.EggrollConfig(population=512, group=8), grpo=cf.GRPOConfig(group=8, inner_steps=2)),
        # GRPO's lr 3e-3 was dropped for CPU time on a shared machine (lr 1e-3 already fell back late in
        # the budget): GRPO got 4 settings, EGGROLL 6, an imbalance that can only favour EGGROLL
        eggroll_sigma=(0.02, 0.03, 0.05), eggroll_lr=(1e-3, 3e-3), grpo_lr=(3e-4, 1e-3), grpo_group=(4, 8)),
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
    """One row per setting: method, the swept values, tokens, steps and the last validation
    accuracy (mean over the sweep's seeds), best first within each method."""
    rows = []
    for r in record["data"].values():
        s, logs = r["setting"], r["logs"]
        swept = f"sigma {s['sigma']:g}, lr {s['lr']:g}" if r["method"] == "eggroll" else f"lr {s['lr']:g}, group {s['group']}"
        rows.append({"method": LABELS[r["method"]], "setting": swept, "tokens": int(np.mean([g["tokens"] for g in logs])),
                     "steps": int(np.mean([g["steps"] for g in logs])),
                     "val accuracy": float(np.mean([g["curve"][-1][2] for g in logs])),
                     "start": float(np.mean([g["curve"][0][2] for g in logs]))})
    return sorted(rows, key=lambda row: (row["method"], -row["val accuracy"]))


# ---------------------------------------------------------------------------
# Reading a record, and figures
# ---------------------------------------------------------------------------


def arms(record: dict) -> tuple[str, ...]:
    """The arms a record holds: both methods, and the null control where it was run."""
    return tuple(m for m in ARMS if m in record["data"])


def summary_lines(record: dict) -> list[str]:
    """Start accuracy, then per method: final test accuracy (95% CI over seeds), tokens, steps."""
    from lowrank_es.stats import mean_ci, proportion_ci

    d = record["data"]
    s, sh = proportion_ci(d["start"]["per_prompt"])
    lines = [f"{'start':>8}: test accuracy {s:.3f} ± {sh:.3f} (95% CI over {len(d['start']['per_prompt'])} prompts)"]
    for m in arms(record):
        m_, h = mean_ci(d[m]["final"])
        logs = d[m]["logs"]
        toks = [log["tokens"] for log in logs]
        lines.append(f"{LABELS[m]:>8}: test accuracy {m_:.3f} ± {h:.3f} (95% CI over {len(logs)} seeds); per seed "
                     f"{[round(x, 3) for x in d[m]['final']]}; tokens {min(toks)}..{max(toks)}, "
                     f"{logs[0]['steps']} steps of {logs[0]['sequences_per_step']} sequences")
    return lines


def plot_curves(axes, record: dict) -> None:
    """Validation accuracy of every seed against generated tokens (``axes[0]``) and training
    seconds (``axes[1]``)."""
    for m in arms(record):
        for i, log in enumerate(record["data"][m]["logs"]):
            c = np.asarray(log["curve"])
            for ax, x in zip(axes, (c[:, 0], c[:, 1])):
                ax.plot(x, c[:, 2], "-o", ms=3, color=COLORS[m], alpha=0.7, label=LABELS[m] if i == 0 else None)
    axes[0].set_xlabel("generated training tokens")
    axes[1].set_xlabel("training wall-clock (s, evaluation excluded)")
    for ax in axes:
        ax.set_ylabel("validation accuracy (sampled, T = 1)")
        ax.legend()


def plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plot_curves(axes, record)
    finals = ", ".join(f"{LABELS[m]} {np.mean(record['data'][m]['final']):.3f}" for m in arms(record))
    fig.suptitle(f"{record['scale']} scale, final test accuracy at the same token budget: {finals}")
    fig.tight_layout()
    return {"accuracy_curves": fig}


def sweep_plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    rows = sweep_table(record)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(range(len(rows)), [r["val accuracy"] for r in rows],
            color=[COLORS["eggroll" if r["method"] == "EGGROLL" else "grpo"] for r in rows])
    ax.axvline(rows[0]["start"], color="k", ls="--", label="checkpoint")
    ax.set_yticks(range(len(rows)), [f"{r['method']}: {r['setting']}" for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("validation accuracy at the end of the budget (sampled, T = 1)")
    ax.set_title(f"{record['scale']} sweep, seed {record['config']['seed']}: the best setting of each method")
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

"""Experiment ``ipd_reciprocity`` (notebook 11, read by notebooks 10 and 12): exact memory-1 IPD
self-play in the official LOQA IPD setting (:class:`lowrank_es.shaping.exact.SharedSelfPlay`:
one shared policy, epsilon-greedy 0.2, Adam 1e-3, 7,000 updates, zero and N(0, 1) starts), for
every exact learner: naive, LOLA, LOQA in the paper's form (only the taken action's Q
differentiated) with the exact gradient of that Q and with the official estimator's weights
(loaded DiCE discount 0.9, the agent's current move left out), LOQA differentiating the whole
softmax, and AdAlign; and a sweep of the DiCE discount.

Reciprocity is read as the papers show it (:func:`lowrank_es.shaping.exact.tft_profile`); the
strict per-run test (:func:`lowrank_es.shaping.exact.reciprocity`) is reported beside it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from lowrank_es.experiments import Experiment, register
from lowrank_es.shaping import advantage_alignment as aa
from lowrank_es.shaping import exact, lola, loqa

NAME = "ipd_reciprocity"


@dataclasses.dataclass(frozen=True)
class Config:
    """setting: the official IPD setting (runs from N(0, 1), updates, exploration, Adam step);
    tau: LOQA's opponent-model temperature (official default 1); beta: AdAlign's weight;
    dice_discount: the official loaded-DiCE discount; dice_sweep: the discounts swept."""

    setting: exact.SharedSelfPlay = exact.SharedSelfPlay()
    tau: float = 1.0
    beta: float = 1.0
    dice_discount: float = 0.9
    dice_sweep: tuple[float, ...] = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0)


SCALES = {"quick": Config(setting=exact.SharedSelfPlay(runs=4, steps=3000)), "reference": Config()}
SEEDS = {"quick": 1, "reference": 1}


def learners(cfg: Config) -> dict:
    """The exact learners, by name, as bound directions ``(theta_me, theta_other) -> (5,)``."""
    return {
        "naive": functools.partial(exact.naive_direction, cfg=exact.ExactConfig()),
        "LOLA": functools.partial(lola.direction, cfg=exact.ExactConfig()),
        "LOQA": functools.partial(loqa.direction, cfg=loqa.LOQAConfig(tau=cfg.tau)),
        "LOQA (DiCE 0.9)": _loqa_official(cfg, cfg.dice_discount),
        "LOQA (all actions)": functools.partial(loqa.direction, cfg=loqa.LOQAConfig(tau=cfg.tau, taken_only=False)),
        "AdAlign": functools.partial(aa.direction, cfg=aa.AAConfig(beta=cfg.beta)),
    }


def _loqa_official(cfg: Config, dice_discount: float):
    """LOQA's paper form weighted as the official estimator: the agent's moves j steps ahead by
    (gamma d)^(j-1), its current move not at all (:func:`lowrank_es.shaping.loqa.opponent_q_jacobian`)."""
    return functools.partial(loqa.direction, cfg=loqa.LOQAConfig(tau=cfg.tau, dice_discount=dice_discount,
                                                                 current_step=False))


def run_dice_sweep(cfg: Config, seed: int, pairs: int = 300) -> dict:
    """The official-weights LOQA for every DiCE discount of ``cfg.dice_sweep``: the TFT margin
    and strict fraction of its runs, the run-mean P(C | state), and the median ratio of the
    common-mode to the reciprocity part of its term (:func:`loqa.taken_only_decomposition`)
    over ``pairs`` shared policies with N(0, 1) logits."""
    thetas = jax.random.normal(jax.random.PRNGKey(seed), (pairs, 5))
    out = {"dice_discount": list(cfg.dice_sweep), "margin": [], "strict": [], "mean_p": [], "common_ratio": []}
    for d in cfg.dice_sweep:
        p = exact.shared_selfplay(_loqa_official(cfg, d), cfg.setting, seed)["p"]
        prof = exact.tft_profile(p)
        out["margin"].append(prof["margin"])
        out["strict"].append(float(exact.reciprocity(p)["strict"].mean()))
        out["mean_p"].append(prof["mean"])
        rec, com = jax.vmap(lambda t: loqa.taken_only_decomposition(t, t, cfg.tau, dice_discount=d, current_step=False))(thetas)
        out["common_ratio"].append(float(np.median(np.linalg.norm(com, axis=1) / np.linalg.norm(rec, axis=1))))
    return out


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    out = {name: functools.partial(exact.shared_selfplay, d, cfg.setting, seeds[0]) for name, d in learners(cfg).items()}
    return {**out, "dice_sweep": functools.partial(run_dice_sweep, cfg, seeds[0])}


def learner_names(record: dict) -> list[str]:
    """The learners of a results record (its parts other than the sweep)."""
    return [k for k in record["data"] if k != "dice_sweep"]


def plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    from lowrank_es.games import ipd

    fig, ax = plt.subplots(figsize=(11, 3.6))
    data = {k: record["data"][k] for k in learner_names(record)}
    width = 0.8 / len(data)
    for i, (name, d) in enumerate(data.items()):
        prof = exact.tft_profile(d["p"])
        x = [j + (i - (len(data) - 1) / 2) * width for j in range(5)]
        ax.bar(x, prof["mean"], width, yerr=prof["half"], capsize=2, label=f"{name} (margin {prof['margin']:+.2f})")
    ax.axhline(0.5, ls=":", c="k")
    ax.set_xticks(range(5), ipd.POLICY_NAMES)
    ax.set(xlabel="state (my last, other's last)", ylabel="P(cooperate)", ylim=(0, 1.05),
           title=f"Official IPD setting ({record['scale']}): mean P(C | state) over {len(data['naive']['p'])} runs, 95% interval")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    figs = {"profile": fig}
    if "dice_sweep" in record["data"]:
        fig2, ax2 = plt.subplots(figsize=(6, 3.6))
        plot_dice_sweep(ax2, record)
        figs["dice_sweep"] = fig2
    return figs


def plot_dice_sweep(ax, record: dict) -> None:
    """TFT margin and strict fraction of the official-weights LOQA against the DiCE discount."""
    sw = record["data"]["dice_sweep"]
    d = sw["dice_discount"]
    ax.plot(d, sw["margin"], "o-", color="C2", label="TFT margin (95% interval of the run mean)")
    ax.plot(d, sw["strict"], "s--", color="C0", label="fraction of runs strictly TFT")
    ax.axhline(0, color="k", lw=0.8)
    held = [x for x, m in zip(d, sw["margin"]) if m >= 0]
    reading = f"TFT margin >= 0 at d = {', '.join(f'{x:g}' for x in held)}" if held else "TFT margin < 0 at every d"
    ax.set(xlabel="loaded-DiCE discount d (official 0.9; 1 = the exact gradient of Q)", ylabel="margin / fraction",
           title=f"LOQA, official weights ({record['scale']}): {reading}")
    ax.legend(fontsize=7)


EXPERIMENT = register(Experiment(
    name=NAME, notebook="11_loqa",
    summary="Which exact IPD learners reach tit-for-tat in the official LOQA IPD setting (shared policy, 20% exploration)?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, plots=plots,
))

"""Experiment ``ipd_reciprocity`` (notebook 11, read by notebooks 10 and 12): exact memory-1 IPD
self-play in the official LOQA IPD setting (:class:`lowrank_es.shaping.exact.SharedSelfPlay`:
one shared policy, epsilon-greedy 0.2, Adam 1e-3, 7,000 updates, zero and N(0, 1) starts), for
every exact learner: naive, LOLA, LOQA in the paper's form (only the taken action's Q
differentiated), LOQA differentiating the whole softmax, and AdAlign.

Reciprocity is read as the papers show it (:func:`lowrank_es.shaping.exact.tft_profile`); the
strict per-run test (:func:`lowrank_es.shaping.exact.reciprocity`) is reported beside it.
"""

from __future__ import annotations

import dataclasses
import functools

from lowrank_es.experiments import Experiment, register
from lowrank_es.shaping import advantage_alignment as aa
from lowrank_es.shaping import exact, lola, loqa

NAME = "ipd_reciprocity"


@dataclasses.dataclass(frozen=True)
class Config:
    """setting: the official IPD setting (runs from N(0, 1), updates, exploration, Adam step);
    tau: LOQA's opponent-model temperature (official default 1); beta: AdAlign's weight."""

    setting: exact.SharedSelfPlay = exact.SharedSelfPlay()
    tau: float = 1.0
    beta: float = 1.0


SCALES = {"quick": Config(setting=exact.SharedSelfPlay(runs=4, steps=3000)), "reference": Config()}
SEEDS = {"quick": 1, "reference": 1}


def learners(cfg: Config) -> dict:
    """The exact learners, by name, as bound directions ``(theta_me, theta_other) -> (5,)``."""
    return {
        "naive": functools.partial(exact.naive_direction, cfg=exact.ExactConfig()),
        "LOLA": functools.partial(lola.direction, cfg=exact.ExactConfig()),
        "LOQA": functools.partial(loqa.direction, cfg=loqa.LOQAConfig(tau=cfg.tau)),
        "LOQA (all actions)": functools.partial(loqa.direction, cfg=loqa.LOQAConfig(tau=cfg.tau, taken_only=False)),
        "AdAlign": functools.partial(aa.direction, cfg=aa.AAConfig(beta=cfg.beta)),
    }


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    return {name: functools.partial(exact.shared_selfplay, d, cfg.setting, seeds[0]) for name, d in learners(cfg).items()}


def plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    from lowrank_es.games import ipd

    fig, ax = plt.subplots(figsize=(11, 3.6))
    data = record["data"]
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
    return {"profile": fig}


EXPERIMENT = register(Experiment(
    name=NAME, notebook="11_loqa",
    summary="Which exact IPD learners reach tit-for-tat in the official LOQA IPD setting (shared policy, 20% exploration)?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, plots=plots,
))

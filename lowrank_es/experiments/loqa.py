"""Experiment ``loqa`` (notebook 11): LOQA in the exact IPD (the paper's form and the
all-actions variant) and in the Coin Game with recurrent agents, against the same learner
with its shaping term off (the naive baseline), plus the IPD and Coin Game leagues.

Jobs: ``ipd`` (exact self-play), ``ipd_league``, ``coin_loqa``, ``coin_naive`` (the same
trainer with ``shaping=0``), ``coin_league`` (trained agents of both and the scripted ones).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax

from lowrank_es.experiments import Experiment, register
from lowrank_es.experiments import sampled_shaping as ss
from lowrank_es.shaping import exact, league, loqa, training

NAME = "loqa"

#: The official LOQA Coin Game settings we follow (README command with hp=loqa_iclr): actor
#: Adam 1e-3, critic Adam 1e-2, entropy 0.1, temperature 1, DiCE discount 0.9, target EMA
#: 0.99, gradient norm 1; it trains 512 episodes per update for thousands of updates on a GPU.
COIN = training.TrainConfig(method="loqa", n_envs=64, hidden=32, lr=1e-3, critic_lr=1e-2, entropy=0.1, tau=1.0,
                            dice_discount=0.9, target_ema=0.99, replay=0.5)


@dataclasses.dataclass(frozen=True)
class Config:
    """ipd_*: exact self-play (runs, steps, step size, temperature) and league;
    coin: the trainer's config (the naive baseline is the same with shaping 0); updates;
    publish_agents: save the trained agents into the package (the reference run does)."""

    ipd_runs: int = 10
    ipd_steps: int = 300
    ipd_lr: float = 0.1
    tau: float = 1.0
    league_seeds: int = 3
    league_steps: int = 150
    coin: training.TrainConfig = dataclasses.replace(COIN, n_envs=16, hidden=16)
    coin_updates: int = 40
    league_envs: int = 256  # = the evaluations' episodes: the league's pairings reuse their compiled episodes
    publish_agents: bool = False


#: Reference: 64 episodes x 1,500 updates, 3 seeds (about 12 minutes on an idle 2-core CPU).
#: Deviation kept: actor Adam 3e-3 (as AdAlign's) where the official code has 1e-3 with 512
#: episodes per update; with 64 episodes per update, 1e-3 moves the learners far more slowly.
SCALES = {"quick": Config(), "reference": Config(ipd_runs=20, league_seeds=5, league_steps=300,
                                                 coin=dataclasses.replace(COIN, lr=3e-3), coin_updates=1500,
                                                 league_envs=128, publish_agents=True)}
SEEDS = {"quick": 1, "reference": 3}


def run_ipd(cfg: Config) -> dict:
    """Exact self-play of LOQA (paper form), LOQA differentiating the whole softmax, and the
    naive learner, from the same ``ipd_runs`` N(0, 1) starts: final policies and rewards, and
    player 1's reward per step along the way (every 5th step)."""
    out = {}
    for name, d in (("LOQA", functools.partial(loqa.direction, cfg=loqa.LOQAConfig(tau=cfg.tau))),
                    ("LOQA (all actions)", functools.partial(loqa.direction, cfg=loqa.LOQAConfig(tau=cfg.tau, taken_only=False))),
                    ("naive", functools.partial(exact.naive_direction, cfg=exact.ExactConfig()))):
        res = exact.selfplay(d, n=cfg.ipd_runs, steps=cfg.ipd_steps, lr=cfg.ipd_lr, seed=0)
        out[name] = {k: res[k] for k in ("p1", "p2", "r", "curve")}
    return out


def run_ipd_league(cfg: Config) -> dict:
    names, r = league.ipd_league(jax.random.PRNGKey(1), league.default_ipd_agents(tau=cfg.tau), n_seeds=cfg.league_seeds,
                                 steps=cfg.league_steps, lr=cfg.ipd_lr)
    return {"names": names, "reward": r}


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    d = ss.agent_dir(NAME, cfg.publish_agents)
    return {
        "ipd": functools.partial(run_ipd, cfg),
        "ipd_league": functools.partial(run_ipd_league, cfg),
        "coin_loqa": functools.partial(ss.train_method, "coin", "loqa", cfg.coin, cfg.coin_updates, seeds, d),
        "coin_naive": functools.partial(ss.train_method, "coin", "loqa_noshaping", dataclasses.replace(cfg.coin, shaping=0.0),
                                        cfg.coin_updates, seeds, d),
        "coin_league": functools.partial(ss.play_league, "coin", {"LOQA": "loqa", "naive": "loqa_noshaping"}, seeds, d,
                                         cfg.league_envs),
    }


def combine(cfg: Config, seeds: tuple[int, ...], parts: dict) -> dict:
    return {**parts, "anchors": {f"{a} vs {b}": v for (a, b), v in ss.ANCHORS["coin"].items()},
            "machine": {"load_average_1_5_15_min": list(os.getloadavg()), "cpu_count": os.cpu_count()}}


def plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    ss.plot_curves(axes, {"LOQA": record["data"]["coin_loqa"], "naive (LOQA, shaping 0)": record["data"]["coin_naive"]})
    fig.suptitle(f"LOQA in the Coin Game ({record['scale']} scale)")
    return {"coin_curves": fig}


EXPERIMENT = register(Experiment(
    name=NAME, notebook="11_loqa",
    summary="Does LOQA reciprocate in the exact IPD and cooperate without being exploited in the Coin Game?",
    scales=SCALES, seeds=SEEDS, jobs=jobs,
    combine=combine, plots=plots,
))

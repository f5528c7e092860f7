"""Experiment ``social_dilemmas`` (notebook 10): what naive learners converge to in the IPD,
the Coin Game and the Negotiation Game, and whether exact LOLA reciprocates in the IPD.

Jobs: ``ipd`` (exact naive and LOLA self-play from N(0, 1) logits, the LOLA paper's setting:
50 runs, 200 steps of size 1, look-ahead 1, gamma 0.96), ``sampled_ipd`` (sampled returns
against the closed form), ``coin`` (naive recurrent learners in self-play,
:mod:`lowrank_es.shaping.training`), ``negotiation`` (reference payoffs and naive learners).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.experiments import Experiment, register
from lowrank_es.games import ipd
from lowrank_es.shaping import agents, episodes, exact, lola, training

#: LOLA paper, Table 1 (50 runs): NL-Ex 20.8 % TFT, -1.98 (std 0.14) per step; LOLA-Ex 81.0 %, -1.06 (0.19).
LOLA_PAPER = {"naive": {"tft": 0.208, "reward": -1.98, "std": 0.14}, "LOLA": {"tft": 0.81, "reward": -1.06, "std": 0.19}}
NEGOTIATION_STATED = {"AC-AC": (0.50, 0.50), "AD-AD": (0.30, 0.30), "AC-AD": (0.25, 0.55)}


@dataclasses.dataclass(frozen=True)
class Config:
    """ipd_*: the exact runs; sampled_*: the sampled-vs-exact check; coin / negotiation:
    naive self-play learners (``training.TrainConfig`` fields) and their updates."""

    ipd_runs: int = 50
    ipd_steps: int = 200
    ipd_lr: float = 1.0
    lookahead: float = 1.0
    sampled_pairs: int = 8
    sampled_episodes: int = 4096
    coin: training.TrainConfig = training.TrainConfig(method="naive", n_envs=16, hidden=16, lr=3e-3, entropy=0.02)
    coin_updates: int = 60
    negotiation: training.TrainConfig = training.TrainConfig(method="naive", n_envs=16, hidden=16, lr=3e-3,
                                                             entropy=0.005, gamma=0.96)
    negotiation_updates: int = 40
    negotiation_rounds: int = 50
    payoff_episodes: int = 512


SCALES = {
    "quick": Config(),
    # naive learners at the shaping experiments' size and actor step: 64 episodes x 1,500 / 1,000 updates
    "reference": Config(coin=training.TrainConfig(method="naive", n_envs=64, hidden=32, lr=3e-3, entropy=0.05),
                        coin_updates=1500,
                        negotiation=training.TrainConfig(method="naive", n_envs=64, hidden=32, lr=1e-3, entropy=0.005),
                        negotiation_updates=1000),
}
SEEDS = {"quick": 2, "reference": 3}


def run_ipd(cfg: Config) -> dict:
    """Final policies, rewards and reciprocity of exact naive and LOLA self-play, plus the
    reciprocity-plane path of player 1 (every 5th step)."""
    ex = exact.ExactConfig(lookahead=cfg.lookahead)
    out = {}
    for name, d in (("naive", exact.naive_direction), ("LOLA", lola.direction)):
        res = exact.selfplay(functools.partial(d, cfg=ex), n=cfg.ipd_runs, steps=cfg.ipd_steps, lr=cfg.ipd_lr, seed=0)
        x, y = exact.reciprocity_plane(exact.policy(res["h1"][:, ::5]))
        out[name] = {"p1": res["p1"], "p2": res["p2"], "r": res["r"], "path_x": x, "path_y": y,
                     "outcome": np.asarray(exact.classify_outcome(res["p1"], res["p2"]))}
    return out


def run_sampled_ipd(cfg: Config) -> dict:
    """Mean and standard error of sampled 50-step discounted returns and the exact
    finite-horizon values for random policy pairs, each (pairs, 2)."""
    kp, ks = jax.random.split(jax.random.PRNGKey(0))
    pols = jax.random.uniform(kp, (cfg.sampled_pairs, 2, 5))
    est, se, ref = [], [], []
    for i, k in enumerate(jax.random.split(ks, cfg.sampled_pairs)):
        G = ipd.discounted_returns(ipd.rollout(k, pols[i, 0], pols[i, 1], cfg.sampled_episodes)["rewards"])
        est.append(G.mean(0))
        se.append(G.std(0, ddof=1) / np.sqrt(cfg.sampled_episodes))
        ref.append(jnp.stack(ipd.exact_value_horizon(pols[i, 0], pols[i, 1])))
    return {"sampled": np.asarray(est), "se": np.asarray(se), "exact": np.asarray(ref)}


def train_naive(game: str, tcfg: training.TrainConfig, updates: int, seeds: tuple[int, ...], **game_params) -> dict:
    """Naive self-play learners of one game: per-update history (seeds, U, ...) and the final
    agents' self-play stats and, in the Coin Game, their reward against the selfish agent."""
    spec = episodes.game_spec(game, **game_params)
    state, hist = training.train_seeds(seeds, spec, tcfg, updates, chunk=max(updates // 10, 1))
    out = {"history": {k: np.asarray(v) for k, v in training.summarise(hist).items()}}
    if game == "coin":
        ev = [episodes.evaluate(jax.random.PRNGKey(100 + s), agents.index(state.agent, i), agents.scripted("coin/selfish"),
                                spec, 256) for i, s in enumerate(seeds)]
        out["vs_selfish"] = np.array([float(e["reward"][0]) for e in ev])
    return out


def scripted_coin_pairs(n_envs: int = 256) -> dict:
    """Self-play of the scripted Coin Game agents: own-coin rate, pick-ups per episode (both
    agents) and reward per step, per kind."""
    spec = episodes.game_spec("coin")
    out = {}
    for kind in ("selfish", "cooperative"):
        a = agents.scripted(f"coin/{kind}")
        st = episodes.evaluate(jax.random.PRNGKey(9), a, a, spec, n_envs)
        out[kind] = {"own_rate": float(st["own_rate"]), "pickups": float(np.sum(st["own"]) + np.sum(st["other"])),
                     "reward": float(np.mean(st["reward"]))}
    return out


def negotiation_payoffs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    """Sampled mean reward per round of the reference pairs, (seeds, 2) each."""
    ac, ad = agents.scripted("negotiation/always_cooperate"), agents.scripted("negotiation/always_defect")
    spec = episodes.game_spec("negotiation", max_steps=cfg.negotiation_rounds)
    pairs = {"AC-AC": (ac, ac), "AD-AD": (ad, ad), "AC-AD": (ac, ad)}
    return {name: np.stack([np.asarray(episodes.evaluate(jax.random.PRNGKey(s), a, b, spec, cfg.payoff_episodes)["reward"])
                            for s in seeds]) for name, (a, b) in pairs.items()}


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    return {
        "ipd": functools.partial(run_ipd, cfg),
        "sampled_ipd": functools.partial(run_sampled_ipd, cfg),
        "coin_scripted": scripted_coin_pairs,
        "coin": functools.partial(train_naive, "coin", cfg.coin, cfg.coin_updates, seeds),
        "negotiation_payoffs": functools.partial(negotiation_payoffs, cfg, seeds),
        "negotiation": functools.partial(train_naive, "negotiation", cfg.negotiation, cfg.negotiation_updates, seeds,
                                         max_steps=cfg.negotiation_rounds),
    }


def combine(cfg: Config, seeds: tuple[int, ...], parts: dict) -> dict:
    """The jobs' results, the paper's numbers and the machine's load at the end of the run."""
    return {**parts, "paper": LOLA_PAPER, "negotiation_stated": NEGOTIATION_STATED,
            "machine": {"load_average_1_5_15_min": list(os.getloadavg()), "cpu_count": os.cpu_count()}}


# ---------------------------------------------------------------------------
# Summaries and plots (read a results record)
# ---------------------------------------------------------------------------


def ipd_summary(record: dict) -> dict[str, dict]:
    """Per learner: mean and std over runs of the reward per step (both players' mean),
    fraction of agents strict / generous reciprocal, mean TFT probability, outcome fractions."""
    out = {}
    for name, d in record["data"]["ipd"].items():
        p = exact.final_policies(d)
        r = np.asarray(d["r"])
        rec = exact.reciprocity(p)
        outcome = np.asarray(d["outcome"])
        out[name] = {"reward_mean": float(r.mean()), "reward_std": float(r.mean(1).std()),
                     "strict": float(rec["strict"].mean()), "generous": float(rec["generous"].mean()),
                     "tft_probability": float(rec["tft_probability"].mean()),
                     "outcomes": {o: float(np.mean(outcome == k)) for k, o in enumerate(exact.OUTCOMES)}}
    return out


def coin_rates(history: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Own-coin rate, pick-ups per episode (both agents) and mean reward per step, each
    (seeds, U), from a training history."""
    own, other = np.asarray(history["own"]).sum(-1), np.asarray(history["other"]).sum(-1)
    return own / np.maximum(own + other, 1e-9), own + other, np.asarray(history["reward"]).mean(-1)


#: One colour per scripted Coin Game pair, whatever the order of a record's keys.
SCRIPTED_COLORS = {"selfish": "C3", "cooperative": "C2"}


def plot_coin(axes, record: dict) -> None:
    """Own-coin rate and pick-ups per episode of the naive Coin Game learners (thin: seeds,
    thick: mean), with the scripted pairs as dashed lines (colours: ``SCRIPTED_COLORS``)."""
    h = record["data"]["coin"]["history"]
    rate, picks, _ = coin_rates(h)
    upd = np.asarray(h["update"])
    scripted = record["data"]["coin_scripted"]
    for ax, y, key, lab in ((axes[0], rate, "own_rate", "own-coin rate"), (axes[1], picks, "pickups", "coins picked up per episode")):
        for s in y:
            ax.plot(upd, s, color="C0", alpha=0.35, lw=0.8)
        ax.plot(upd, y.mean(0), color="C0", lw=2, label=f"naive learners ({y.shape[0]} seeds)")
        for kind, c in SCRIPTED_COLORS.items():
            if kind in scripted:
                ax.axhline(scripted[kind][key], color=c, ls="--", lw=1, label=f"scripted {kind} pair")
        ax.set_xlabel(f"update ({record['config']['coin']['n_envs']} episodes of 50 steps each)")
        ax.set_ylabel(lab)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=8)


def coin_statement(records: list[dict], last: int = 20) -> str:
    """What the naive Coin Game runs show, as a figure title: each record's own-coin rate and
    pick-ups per episode over its last ``last`` updates (the window of ``games.coin.naive_selfish``),
    beside the scripted selfish pair's own-coin rate."""
    rates, coins = [], []
    for rec in records:
        h = rec["data"]["coin"]["history"]
        upd = np.asarray(h["update"])
        keep = upd > upd[-1] - last
        own, other = np.asarray(h["own"]).sum(-1)[:, keep], np.asarray(h["other"]).sum(-1)[:, keep]
        rates.append(f"{(own.sum(1) / np.maximum((own + other).sum(1), 1e-9)).mean():.2f} ({rec['scale']})")
        coins.append(f"{(own + other).mean():.0f}")
    selfish = records[0]["data"]["coin_scripted"]["selfish"]["own_rate"]
    return (f"Naive Coin Game learners, last {last} updates: own-coin rate {', '.join(rates)}, scripted selfish "
            f"pair {selfish:.2f}; coins per episode {' and '.join(coins)}")


def plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_coin(axes, record)
    fig.suptitle(f"Naive Coin Game learners ({record['scale']} scale)")
    return {"coin_naive": fig}


EXPERIMENT = register(Experiment(
    name="social_dilemmas", notebook="10_social_dilemmas",
    summary="Do naive learners defect in the IPD, Coin and Negotiation games, and does exact LOLA reciprocate?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, combine=combine, plots=plots,
))

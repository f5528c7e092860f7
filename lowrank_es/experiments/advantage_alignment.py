"""Experiment ``advantage_alignment`` (notebook 12): AdAlign in the exact IPD, the LOLA / LOQA /
AA unification on random tabular policies, and AdAlign and Proximal AdAlign with recurrent
agents in the Coin Game and the 50-round Negotiation Game against the same learner with
beta = 0 (the naive baseline), with their leagues.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import numpy as np

from lowrank_es.experiments import Experiment, check_parts, register
from lowrank_es.experiments import sampled_shaping as ss
from lowrank_es.shaping import advantage_alignment as aa
from lowrank_es.shaping import exact, loqa, training

NAME = "advantage_alignment"

COIN = training.TrainConfig(method="adalign", n_envs=64, hidden=32, lr=3e-3, critic_lr=1e-2, entropy=0.05, beta=1.0,
                            lam=0.95, replay=0.5)
#: Negotiation: the official entropy 0.005 and gamma 0.96, 50 rounds; the paper's discounted
#: sum of past one-step advantages with beta 3 and Adam 1e-3. At 64 episodes per update every
#: variant probed (beta 0.3 or 3; the official running mean of GAE advantages at weight 0.3, with
#: or without past agents; the official critic set-up: target-critic advantages, interpolated
#: critic target, Polyak 0.005) ends at mutual defection, 0.30 per round; the official runs use
#: 8192 episodes per update and a shared 512-wide encoder (notebook 12 lists the differences).
NEGOTIATION = training.TrainConfig(method="adalign", n_envs=64, hidden=32, lr=1e-3, critic_lr=1e-3, entropy=0.005,
                                   beta=3.0, past="discounted", lam=0.95, replay=0.5)


#: The experiment's parts, in the order they run.
PARTS = ("ipd", "unification", "coin", "negotiation")


@dataclasses.dataclass(frozen=True)
class Config:
    """ipd_*: exact AdAlign self-play; unification_pairs: random policy pairs of the sweep;
    coin / negotiation: trainer configs (beta 0 gives the naive baseline) and updates;
    publish_agents: save the trained agents into the package (the reference run does);
    parts: which of ``"ipd"``, ``"unification"``, ``"coin"``, ``"negotiation"`` run."""

    ipd_runs: int = 10
    ipd_steps: int = 300
    ipd_lr: float = 0.1
    beta: float = 1.0
    unification_pairs: int = 100
    coin: training.TrainConfig = dataclasses.replace(COIN, n_envs=16, hidden=16)
    coin_updates: int = 40
    negotiation: training.TrainConfig = dataclasses.replace(NEGOTIATION, n_envs=16, hidden=16)
    negotiation_updates: int = 30
    rounds: int = 50
    league_envs: int = 256  # = the evaluations' episodes: the league's pairings reuse their compiled episodes
    publish_agents: bool = False
    parts: tuple[str, ...] = PARTS

    def __post_init__(self):
        check_parts(self.parts, PARTS)


SCALES = {"quick": Config(),
          # 64 episodes x 1,500 Coin Game / 1,000 Negotiation updates, 3 seeds
          "reference": Config(ipd_runs=20, unification_pairs=300, coin=COIN, coin_updates=1500,
                              negotiation=NEGOTIATION, negotiation_updates=1000,
                              league_envs=128, publish_agents=True),
          # the official batch, 8,192 episodes per update (everything else as the reference),
          # Negotiation only: about 6.5 hours on the 2-core CPU, minutes on one GPU
          "gpu": Config(parts=("negotiation",), negotiation=dataclasses.replace(NEGOTIATION, n_envs=8192),
                        negotiation_updates=1000, league_envs=512),
          # what the 2-core CPU allows towards it: 1,024 episodes per update (16 times the
          # reference's), 600 updates, one seed, about 25 minutes
          "large_batch": Config(parts=("negotiation",), negotiation=dataclasses.replace(NEGOTIATION, n_envs=1024),
                                negotiation_updates=600, league_envs=512)}
SEEDS = {"quick": 1, "reference": 3, "gpu": 3, "large_batch": 1}


def run_ipd(cfg: Config) -> dict:
    """Exact AdAlign and naive self-play from the same N(0, 1) starts: final policies,
    rewards, and player 1's reward per step (every 5th step)."""
    out = {}
    for name, d in (("AdAlign", functools.partial(aa.direction, cfg=aa.AAConfig(beta=cfg.beta))),
                    ("naive", functools.partial(exact.naive_direction, cfg=exact.ExactConfig()))):
        res = exact.selfplay(d, n=cfg.ipd_runs, steps=cfg.ipd_steps, lr=cfg.ipd_lr, seed=0)
        out[name] = {k: res[k] for k in ("p1", "p2", "r", "curve")}
    return out


def run_unification(cfg: Config) -> dict:
    """Cosines between the LOLA, LOQA and AA terms on random logit pairs (float64): the
    sweep of :func:`lowrank_es.shaping.advantage_alignment.unification_sweep` plus the LOQA
    all-actions variant and the factor-weighted AA term with an undiscounted inner sum, and
    how greedy the opponent model is (mean over states of max_b pi_hat2)."""
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(0)
        sw = aa.unification_sweep(key, cfg.unification_pairs)
        t1, t2 = aa.random_pairs(key, cfg.unification_pairs)

        def extra(x, y):
            w = 1.0 - loqa.opponent_model(x, y, 1.0)
            return {"cos_loqaall_aa": aa.cosine(loqa.loqa_term(x, y, 1.0, taken_only=False), aa.aa_term(x, y)),
                    "cos_loqa_aa_factor_undiscounted": aa.cosine(loqa.loqa_term(x, y, 1.0),
                                                                 aa.aa_term(x, y, weight=w, inner_discount=1.0)),
                    "greediness": loqa.opponent_model(x, y, 1.0).max(-1).mean()}

        ex = jax.vmap(extra)(t1, t2)
        keep = ("cos_lola_aa", "cos_loqa_aa", "cos_loqa_aa_factor", "relerr_lola_aa", "relerr_loqa_aa",
                "relerr_loqa_aa_factor")
        return {**{k: np.asarray(sw[k]) for k in keep}, **{k: np.asarray(v) for k, v in ex.items()}}


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    d = ss.agent_dir(NAME, cfg.publish_agents)
    neg = functools.partial(ss.train_method, "negotiation")
    coin = functools.partial(ss.train_method, "coin")
    every = {
        "ipd": functools.partial(run_ipd, cfg),
        "unification": functools.partial(run_unification, cfg),
        "coin_adalign": functools.partial(coin, "adalign", cfg.coin, cfg.coin_updates, seeds, d),
        "coin_proximal": functools.partial(coin, "proximal_adalign", dataclasses.replace(cfg.coin, method="proximal_adalign"),
                                           cfg.coin_updates, seeds, d),
        "coin_naive": functools.partial(coin, "adalign_beta0", dataclasses.replace(cfg.coin, beta=0.0),
                                        cfg.coin_updates, seeds, d),
        "coin_league": functools.partial(ss.play_league, "coin", {"AdAlign": "adalign", "Proximal AdAlign": "proximal_adalign",
                                                                  "naive": "adalign_beta0"}, seeds, d, cfg.league_envs),
        "negotiation_adalign": functools.partial(neg, "adalign", cfg.negotiation, cfg.negotiation_updates, seeds, d,
                                                 steps=cfg.rounds),
        "negotiation_naive": functools.partial(neg, "adalign_beta0", dataclasses.replace(cfg.negotiation, beta=0.0),
                                               cfg.negotiation_updates, seeds, d, steps=cfg.rounds),
        "negotiation_league": functools.partial(ss.play_league, "negotiation", {"AdAlign": "adalign", "naive": "adalign_beta0"},
                                                seeds, d, cfg.league_envs, steps=cfg.rounds),
    }
    return {k: f for k, f in every.items() if k.split("_")[0] in cfg.parts}


def combine(cfg: Config, seeds: tuple[int, ...], parts: dict) -> dict:
    return {**parts, "anchors": {g: {f"{a} vs {b}": v for (a, b), v in ss.ANCHORS[g].items()} for g in ss.ANCHORS},
            "machine": {"load_average_1_5_15_min": list(os.getloadavg()), "cpu_count": os.cpu_count()}}


#: The shaping directions compared with the AA term (legend label -> cosine key of ``data["unification"]``).
UNIFICATION_COSINES = {
    "LOLA vs AA": "cos_lola_aa",
    "LOQA (taken) vs AA": "cos_loqa_aa",
    "LOQA (taken) vs AA x (1 - pi_hat)/tau": "cos_loqa_aa_factor",
    "same, undiscounted inner sum": "cos_loqa_aa_factor_undiscounted",
    "LOQA (all actions) vs AA": "cos_loqaall_aa",
}


def plot_unification(axes, record: dict) -> None:
    """The unification sweep over random policy pairs. ``axes[0]``: the empirical CDF of
    1 - cosine similarity of each shaping term with the AA term (log axis, so directions that
    agree to within 1e-3 and 1e-2 stay apart; legend: the median cosine). ``axes[1]``: the
    cosine against the opponent model's greediness, for LOLA and for LOQA against the
    factor-weighted AA term."""
    import seaborn as sns

    u = {k: np.asarray(v) for k, v in record["data"]["unification"].items()}
    for i, (label, key) in enumerate(UNIFICATION_COSINES.items()):
        sns.ecdfplot(x=np.clip(1.0 - u[key], 1e-12, None), ax=axes[0], log_scale=True, color=f"C{i}",
                     ls="--" if key.endswith("undiscounted") else "-",
                     label=f"{label} (median cos {np.median(u[key]):.3f})")
    axes[0].set(xlabel="1 − cosine similarity with the AA term (0: same direction, 2: opposite)",
                ylabel="fraction of policy pairs",
                title=f"Agreement of shaping directions ({len(u['cos_lola_aa'])} pairs)")
    axes[0].legend(fontsize=7, loc="upper left")
    axes[1].scatter(u["greediness"], u["cos_lola_aa"], s=8, color="C0", label="LOLA vs AA")
    axes[1].scatter(u["greediness"], u["cos_loqa_aa_factor"], s=8, color="C2", label="LOQA vs AA x factor")
    axes[1].set(xlabel="mean max_b pi_hat2(b|s) (opponent-model greediness)", ylabel="cosine similarity",
                title="Where the agreement degrades")
    axes[1].legend(fontsize=8)


def plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    data = record["data"]
    figs = {}
    if "coin_adalign" in data:
        fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
        ss.plot_curves(axes, {"AdAlign": data["coin_adalign"], "Proximal AdAlign": data["coin_proximal"],
                              "naive (beta 0)": data["coin_naive"]})
        fig.suptitle(f"Advantage Alignment in the Coin Game ({record['scale']} scale)")
        figs["coin_curves"] = fig
    if "negotiation_adalign" not in data:
        return figs
    fig2, ax = plt.subplots(figsize=(6, 3.8))
    ss.plot_curves([ax], {"AdAlign": data["negotiation_adalign"], "naive (beta 0)": data["negotiation_naive"]})
    ax.set_ylabel("self-play reward per round")
    envs = record["config"]["negotiation"]["n_envs"]
    fig2.suptitle(f"Negotiation, 50 rounds, {envs:,} episodes per update ({record['scale']} scale)")
    return {**figs, "negotiation_curves": fig2}


EXPERIMENT = register(Experiment(
    name=NAME, notebook="12_advantage_alignment",
    summary="Does Advantage Alignment reciprocate in the IPD and cooperate, unexploited, in the Coin and Negotiation games?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, combine=combine, plots=plots,
))

"""Experiment ``brs`` (notebook 13): Best Response Shaping (arXiv:2404.06519) in the IPD, with
the exact best response as the judge of every IPD agent, and in the Coin Game with recurrent
agents, judged by an MCTS best response (``mctx``) and a league of every agent.

Jobs: ``ipd_detective`` (a detective trained on noisy random agents against the exact best
response on a slice of agent space), ``ipd`` (BRS with the learned and the exact (soft)
detective, and the exploitability of every IPD agent), ``coin_brs`` / ``coin_naive`` (recurrent
BRS and naive learners, seeds vmapped, saved as agents), ``coin_mcts`` (the MCTS best response
against each trained agent and the scripted ones) and ``coin_league``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import numpy as np

from lowrank_es.experiments import Experiment, check_parts, register
from lowrank_es.experiments import sampled_shaping as ss
from lowrank_es.shaping import advantage_alignment as aa
from lowrank_es.shaping import agents, brs, brs_coin, episodes, exact, league, lola, loqa, mcts, training
from lowrank_es.shaping import best_response as br

NAME = "brs"

#: The IPD run of BRS: the paper's self-play with reward sharing at weight 3, learned
#: detective on the agent's answers (its five cooperation probabilities), logit noise 0.5.
IPD = brs.IPDConfig(agent_steps=300, agent_lr=0.1, self_play=3.0, detective_steps=5, noise=0.5)
#: Naive recurrent learners in the Coin Game: the trainer of notebooks 11-12 with its
#: shaping term off (the paper's contrast against the MCTS best response uses POLA).
NAIVE = training.TrainConfig(method="naive", n_envs=32, hidden=32, lr=3e-3, critic_lr=1e-2, entropy=0.05, lam=0.95)
#: The experiment's jobs, in the order they run (``Config.parts`` picks a subset).
PARTS = ("ipd_detective", "ipd", "coin_brs", "coin_naive", "coin_mcts", "coin_league")
#: Anchors (reward per step, 3x3 Coin Game, 50 steps): the LOQA repository's league.
ANCHORS = {"BRS vs BRS": 0.338, "MCTS vs BRS (MCTS)": 0.33, "MCTS vs BRS (BRS)": 0.28, "BRS vs selfish": -0.10,
           "always-cooperate vs always-cooperate": 0.347}


@dataclasses.dataclass(frozen=True)
class Config:
    """ipd / ipd_seeds: the IPD BRS run; detective_steps: the stand-alone detective;
    selfplay_runs / selfplay_steps: exact naive, LOLA, LOQA, AdAlign self-play; coin /
    coin_updates: Coin Game BRS; naive / naive_updates: the naive learners; mcts_*: the
    planner (simulations, rollout depth, episodes per pairing, the rollout policies it tries:
    the best of them is its response); eval_episodes, league_envs:
    episodes per evaluation; publish_agents: save the agents into the package and put the
    published LOQA / AdAlign agents in the league (the reference run); naive_published: when
    set, the naive agents are the package's ``coin/<naive_published>/<seed>`` instead of
    ones trained here (the reference run: notebook 12's AdAlign at beta 0, a naive actor-critic
    trained at 64 episodes x 1,500 updates, where ``naive`` / ``naive_updates`` are unused);
    parts: which jobs of :data:`PARTS` run (``coin_mcts`` and ``coin_league`` read the agents
    that ``coin_brs`` and ``coin_naive`` saved, so they need them in the same run or before)."""

    ipd: brs.IPDConfig = dataclasses.replace(IPD, agent_steps=60, pretrain_steps=60)
    ipd_seeds: int = 2
    detective_steps: int = 300
    selfplay_runs: int = 2
    selfplay_steps: int = 60
    coin: brs_coin.CoinConfig = brs_coin.CoinConfig(n_envs=8, sp_envs=8, det_agents=1, det_envs=4, hidden=16,
                                                    det_hidden=16, rollouts=1, depth=2, steps=16)
    coin_updates: int = 10
    naive: training.TrainConfig = dataclasses.replace(NAIVE, n_envs=16, hidden=16)
    naive_updates: int = 10
    mcts_simulations: int = 16
    mcts_depth: int = 2
    mcts_episodes: int = 2
    mcts_rollouts: tuple[str, ...] = ("greedy",)
    eval_episodes: int = 16
    league_envs: int = 16  # = eval_episodes: the league's pairings reuse the evaluations' compiled episodes
    publish_agents: bool = False
    naive_published: str = ""
    parts: tuple[str, ...] = PARTS

    def __post_init__(self):
        check_parts(self.parts, PARTS)


#: The reference run: 50-step episodes, 32 agent and 32 self-play episodes per update, small
#: networks, short question answering, 1,500 updates. Adam 3e-3 for the BRS term and the detective
#: but 1e-3 for self-play with reward sharing: in 600-update probes (3 seeds) self-play at 3e-3
#: reached 0.25 per step while the detective took the agent's coins (agent -0.25 per step against
#: it, still falling), at 1e-3 self-play rose more slowly (0.19) and the agent's reward against
#: the detective climbed back to -0.04. At 16 episodes x 100 updates nothing left the uniform policy.
REFERENCE_COIN = brs_coin.CoinConfig(n_envs=32, sp_envs=32, det_agents=2, det_envs=4, hidden=16, det_hidden=16,
                                     rollouts=1, depth=2, steps=50, lr=3e-3, sp_lr=1e-3, det_lr=3e-3)
SCALES = {"quick": Config(),
          "reference": Config(ipd=IPD, ipd_seeds=4, detective_steps=3000, selfplay_runs=5, selfplay_steps=300,
                              coin=REFERENCE_COIN, coin_updates=1500, naive_published="adalign_beta0",
                              mcts_simulations=64, mcts_depth=3, mcts_episodes=8, mcts_rollouts=("greedy", "uniform"),
                              eval_episodes=64, league_envs=32, publish_agents=True),
          # the budget the reference's self-play curve asks for: BRS alone, twice the updates
          # (3,000), everything else as the reference; about 25 minutes on an idle 2-core CPU
          "long_budget": Config(coin=REFERENCE_COIN, coin_updates=3000, eval_episodes=64, parts=("coin_brs",))}
SEEDS = {"quick": 1, "reference": 3, "long_budget": 3}
PUBLISHED = {"LOQA": "loqa", "AdAlign": "adalign", "Proximal AdAlign": "proximal_adalign"}


def run_detective(cfg: Config) -> dict:
    """A detective trained on noisy random agents (logits N(0, 2^2), noise 0.5) and its reward
    against the exact best response's on the slice P(C|CC) x P(C|CD) of TFT."""
    random_agents = 2.0 * jax.random.normal(jax.random.PRNGKey(0), (256, 5))
    det, loss = jax.jit(lambda k, a: brs.train_detective(k, a, steps=cfg.detective_steps, noise=0.5))(
        jax.random.PRNGKey(1), random_agents)
    return {"loss": np.asarray(loss)[::10], **{k: np.asarray(v) for k, v in brs.ipd_response_grid(det, i=1, j=2, n=21).items()}}


def run_ipd(cfg: Config) -> dict:
    """BRS with the learned and the exact (soft) detective (``ipd_seeds`` seeds): final
    policies and curves; exact self-play of naive, LOLA, LOQA and AdAlign; and every agent's
    loss against its exact best response."""
    out = {}
    for name, c in (("BRS", cfg.ipd), ("BRS (exact form)", dataclasses.replace(cfg.ipd, detective="exact"))):
        theta, _, hist = brs.train_ipd_seeds(0, cfg.ipd_seeds, c)
        out[name] = {"p": np.asarray(jax.nn.sigmoid(theta)),
                     **{f: np.asarray(getattr(hist, f))[:, ::5] for f in ("vs_detective", "vs_exact_br", "self_play")}}
    ex = exact.ExactConfig()
    dirs = {"naive": functools.partial(exact.naive_direction, cfg=ex), "LOLA": functools.partial(lola.direction, cfg=ex),
            "LOQA": functools.partial(loqa.direction, cfg=loqa.LOQAConfig()),
            "AdAlign": functools.partial(aa.direction, cfg=aa.AAConfig())}
    policies = {k: np.asarray(exact.selfplay(d, n=cfg.selfplay_runs, steps=cfg.selfplay_steps, lr=0.1)["p1"])
                for k, d in dirs.items()}
    policies.update({k: v["p"] for k, v in out.items()})
    policies.update({k: np.asarray(exact.IPD_FIXED[k])[None] for k in ("tit_for_tat", "always_cooperate",
                                                                       "always_defect", "random")})
    out["exploitability"] = {k: br.exploitability_losses(v) for k, v in policies.items()}
    out["policies"] = policies
    return out


def _evaluate_vs_scripted(agent, spec, n: int, seed: int) -> dict:
    key = jax.random.PRNGKey(1000 + seed)
    st = episodes.evaluate(key, agent, agent, spec, n)
    out = {"self_play": float(np.asarray(st["reward"]).mean()), "own_rate": float(st["own_rate"])}
    for name, kind in ss.SCRIPTED["coin"].items():
        out[f"vs_{name}"] = float(episodes.evaluate(key, agent, agents.scripted(kind), spec, n)["reward"][0])
    return out


def train_brs(cfg: Config, seeds: tuple[int, ...], directory) -> dict:
    """Coin Game BRS for every seed (vmapped): agents saved as ``coin/brs/<seed>``, their
    self-play and scripted evaluations (50-step episodes), and the training curves averaged
    over blocks of updates."""
    t0 = time.perf_counter()
    state, hist = brs_coin.train_seeds(seeds, cfg.coin, cfg.coin_updates, chunk=max(cfg.coin_updates // 10, 1))
    jax.block_until_ready(hist["reward"])
    train_s = time.perf_counter() - t0
    block = max(cfg.coin_updates // 50, 1)
    n = cfg.coin_updates // block * block
    curves = {k: np.asarray(v)[:, :n].reshape(len(seeds), -1, block, *np.shape(v)[2:]).mean(2)
              for k, v in hist.items()}
    curves["update"] = np.arange(n).reshape(-1, block).mean(1)
    spec = ss.spec_of("coin")
    evals = []
    for i, s in enumerate(seeds):
        agent = agents.index(state.agent, i)  # saved whole: agents.load expects the critic too
        agents.save(agent, f"coin/brs/{s}", {"method": "brs", "seed": int(s), "updates": int(cfg.coin_updates)}, directory)
        evals.append(_evaluate_vs_scripted(agents.actor_only(agent), spec, cfg.eval_episodes, int(s)))
    coop = agents.scripted("coin/cooperative")
    st = episodes.evaluate(jax.random.PRNGKey(999), coop, coop, spec, cfg.eval_episodes)
    return {"history": curves, "train_s": train_s, "eval": {k: [e[k] for e in evals] for k in evals[0]},
            "cooperative_self_play": float(np.asarray(st["reward"]).mean())}


def _naive_source(cfg: Config, directory) -> tuple[str, object]:
    """Where the naive agents are: ``(method tag, directory)`` for :func:`agents.load`, the
    package's published ones (directory ``None``) or the ones this run trains."""
    return (cfg.naive_published, None) if cfg.naive_published else ("naive", directory)


def _opponents(cfg: Config, seed: int, directory) -> dict:
    """The agents the planner and the league face for one seed: the trained ones (published
    LOQA / AdAlign agents too when ``publish_agents``) and the scripted ones."""
    naive_method, naive_dir = _naive_source(cfg, directory)
    out = {"BRS": agents.actor_only(agents.load(f"coin/brs/{seed}", directory)),
           "naive": agents.actor_only(agents.load(f"coin/{naive_method}/{seed}", naive_dir))}
    if cfg.publish_agents:
        have = set(agents.available())
        out.update({lab: agents.load(f"coin/{m}/{seed}") for lab, m in PUBLISHED.items() if f"coin/{m}/{seed}" in have})
    out.update({lab: agents.scripted(kind) for lab, kind in ss.SCRIPTED["coin"].items()})
    return out


def run_mcts(cfg: Config, seeds: tuple[int, ...], directory) -> dict:
    """The MCTS best response (seat 1) against every agent (seat 0) and a grim trigger, per
    seed: the agent's and the planner's reward per step and the planner's own-coin rate. The
    planner is run with each rollout policy of ``cfg.mcts_rollouts`` on the same episodes; per
    agent the one that earns the planner most (mean over seeds) is its response, the others are
    kept under ``by_rollout``."""
    spec = ss.spec_of("coin")
    rows = []  # rows[seed][label][rollout] = metrics
    for s in seeds:
        opp = {**_opponents(cfg, int(s), directory), "grim trigger": mcts.GrimTrigger()}
        row = {}
        for j, (lab, a) in enumerate(opp.items()):
            row[lab] = {}
            for rollout in cfg.mcts_rollouts:
                player = mcts.MCTSPlayer(a, num_simulations=cfg.mcts_simulations, rollout_depth=cfg.mcts_depth,
                                         rollout=rollout)
                st = episodes.evaluate(jax.random.PRNGKey(3000 + 100 * int(s) + j), a, player, spec,
                                       cfg.mcts_episodes)
                own, other = np.asarray(st["own"]), np.asarray(st["other"])
                row[lab][rollout] = {"agent_reward": float(st["reward"][0]), "mcts_reward": float(st["reward"][1]),
                                     "mcts_own_rate": float(own[1] / max(own[1] + other[1], 1e-9)),
                                     "mcts_coins": float(own[1] + other[1])}
        rows.append(row)
    out = {}
    for lab in rows[0]:
        by = {r: {k: [row[lab][r][k] for row in rows] for k in rows[0][lab][r]} for r in cfg.mcts_rollouts}
        best = max(cfg.mcts_rollouts, key=lambda r: np.mean(by[r]["mcts_reward"]))
        out[lab] = {**by[best], "rollout": best, "by_rollout": by}
    return out


def run_league(cfg: Config, seeds: tuple[int, ...], directory) -> dict:
    """Cross-play of every agent, one league per seed: row reward per step and own-coin rate."""
    spec = ss.spec_of("coin")
    tables = []
    for s in seeds:
        names, t = league.sampled_league(jax.random.PRNGKey(2000 + int(s)), _opponents(cfg, int(s), directory), spec,
                                         cfg.league_envs)
        tables.append(t)
    return {"names": names, **{k: np.concatenate([t[k] for t in tables]) for k in tables[0]}}


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    d = ss.agent_dir(NAME, cfg.publish_agents)
    every = {
        "ipd_detective": functools.partial(run_detective, cfg),
        "ipd": functools.partial(run_ipd, cfg),
        "coin_brs": functools.partial(train_brs, cfg, seeds, d),
        "coin_naive": (functools.partial(ss.published_method, "coin", cfg.naive_published, seeds,
                                         eval_episodes=cfg.eval_episodes) if cfg.naive_published else
                       functools.partial(ss.train_method, "coin", "naive", cfg.naive, cfg.naive_updates, seeds, d,
                                         eval_episodes=cfg.eval_episodes)),
        "coin_mcts": functools.partial(run_mcts, cfg, seeds, d),
        "coin_league": functools.partial(run_league, cfg, seeds, d),
    }
    return {k: f for k, f in every.items() if k in cfg.parts}


def combine(cfg: Config, seeds: tuple[int, ...], parts: dict) -> dict:
    return {**parts, "anchors": ANCHORS,
            "machine": {"load_average_1_5_15_min": list(os.getloadavg()), "cpu_count": os.cpu_count()}}


def plots(record: dict) -> dict:
    """The Coin Game figures of the parts a record has: ``coin_training`` (from ``coin_brs``)
    and ``coin_league`` (from ``coin_league``)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    data, scale, n_seeds = record["data"], record["scale"], len(record["seeds"])
    figs = {}
    if "coin_brs" in data:
        h = data["coin_brs"]["history"]
        u = np.asarray(h["update"])
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
        for name, y in (("self-play", np.asarray(h["reward"]).mean(-1)), ("vs detective", np.asarray(h["vs_detective"])[..., 0])):
            for s, ys in enumerate(y):
                axes[0].plot(u, ys, label=f"BRS {name}" if s == 0 else None, color="C0" if name == "self-play" else "C1",
                             alpha=0.7)
        axes[0].set(xlabel="update", ylabel="reward per step", title="BRS agent")
        axes[0].legend(fontsize=8)
        for s, ys in enumerate(np.asarray(h["own_rate"])):
            axes[1].plot(u, ys, color="C0", alpha=0.7, label="self-play" if s == 0 else None)
        for s, ys in enumerate(np.asarray(h["detective_own_rate"])):
            axes[1].plot(u, ys, color="C1", alpha=0.7, label="detective vs agent" if s == 0 else None)
        axes[1].set(xlabel="update", ylabel="own-coin rate", title="who picks up whose coins")
        axes[1].legend(fontsize=8)
        updates = record["config"]["coin_updates"]
        fig.suptitle(f"BRS in the Coin Game ({scale} scale, {n_seeds} seeds, {updates:,} updates)")
        fig.tight_layout()
        figs["coin_training"] = fig
    if "coin_league" in data:
        lg = data["coin_league"]
        fig2, ax = plt.subplots(figsize=(7.5, 5.5))
        sns.heatmap(np.asarray(lg["reward"]).mean(0), annot=True, fmt=".2f", xticklabels=lg["names"],
                    yticklabels=lg["names"], cmap="viridis", ax=ax, cbar_kws={"label": "row reward per step"})
        ax.set(xlabel="column agent", ylabel="row agent", title=f"Coin Game league ({scale} scale, mean of {n_seeds} seeds)")
        fig2.tight_layout()
        figs["coin_league"] = fig2
    return figs


EXPERIMENT = register(Experiment(
    name=NAME, notebook="13_best_response_shaping",
    summary="Does Best Response Shaping learn reciprocity that a best response cannot exploit, in the IPD and the Coin Game?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, combine=combine, plots=plots,
))

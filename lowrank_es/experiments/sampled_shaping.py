"""The jobs and plots shared by the sampled-shaping experiments (``loqa``, notebook 11, and
``advantage_alignment``, notebook 12): train one method's recurrent agents with their seeds
vmapped, evaluate them against scripted agents, save them, play a league, replay an episode.

Agents trained at the reference scale are saved under ``checkpoints/<experiment>__reference/agents/``
and then copied into the package by :func:`publish_agents`
(``lowrank_es/shaping/trained/<game>__<method>__<seed>.npz``, what
:func:`lowrank_es.shaping.agents.load` reads); at the quick scale under
``checkpoints/<experiment>__quick/agents/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from lowrank_es.experiments import checkpoint_dir
from lowrank_es.shaping import agents, episodes, league, training

#: Reward per step in the official repositories' leagues (3x3 Coin Game, 50 steps; LOQA
#: repository, league of the LOQA and Advantage Alignment agents; Negotiation: the AA paper).
ANCHORS = {
    "coin": {("always-cooperate", "always-cooperate"): 0.347, ("AdAlign", "AdAlign"): 0.28,
             ("LOQA", "LOQA"): 0.28, ("LOQA", "selfish"): -0.11, ("AdAlign", "selfish"): -0.08},
    "negotiation": {("always-cooperate", "always-cooperate"): 0.50, ("always-defect", "always-defect"): 0.30,
                    ("AdAlign", "AdAlign"): 0.44},
}
SCRIPTED = {"coin": {"always-cooperate": "coin/cooperative", "selfish": "coin/selfish", "random": "coin/random"},
            "negotiation": {"always-cooperate": "negotiation/always_cooperate",
                            "always-defect": "negotiation/always_defect"}}


def agent_dir(experiment: str, publish: bool) -> Path:
    """Where a run's trained agents go: ``checkpoints/<experiment>__reference/agents`` for the
    reference runs (``publish``; :func:`publish_agents` then copies them into the package, so
    the run itself leaves the package's code untouched and its ``code_version`` clean), else
    ``checkpoints/<experiment>__quick/agents``."""
    return checkpoint_dir(experiment, "reference" if publish else "quick") / "agents"


def publish_agents(experiment: str) -> list[Path]:
    """Copy the agents of ``experiment``'s reference run into the package
    (``lowrank_es/shaping/trained/``, what :func:`lowrank_es.shaping.agents.load` reads)."""
    import shutil

    agents.TRAINED_DIR.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(f, agents.TRAINED_DIR / f.name)) for f in sorted(agent_dir(experiment, True).glob("*"))]


def spec_of(game: str, steps: int = 50) -> episodes.GameSpec:
    return episodes.game_spec(game, max_steps=steps)


def train_method(game: str, method: str, tcfg: training.TrainConfig, updates: int, seeds: tuple[int, ...],
                 directory: Path, eval_episodes: int = 256, steps: int = 50) -> dict:
    """Train ``tcfg`` on ``game`` for every seed (vmapped), save the agents as
    ``<game>/<method>/<seed>`` in ``directory`` and evaluate them: ``self_play`` (seeds, 2)
    reward per step, ``own_rate`` (Coin Game) and the reward per step against each scripted
    agent. Returns those, the block-averaged training history and the training wall time."""
    spec = spec_of(game, steps)
    t0 = time.perf_counter()
    state, hist = training.train_seeds(seeds, spec, tcfg, updates, chunk=max(updates // 10, 1))
    jax.block_until_ready(hist["reward"])
    train_s = time.perf_counter() - t0
    trained = []
    for i, s in enumerate(seeds):
        agent = agents.index(state.agent, i)
        agents.save(agent, f"{game}/{method}/{s}", {"method": method, "seed": int(s), "updates": int(updates),
                                                      "config": {k: str(v) for k, v in vars(tcfg).items()}}, directory)
        trained.append(agents.actor_only(agent))
    return {"history": {k: np.asarray(v) for k, v in training.summarise(hist).items()}, "train_s": train_s,
            **evaluate_agents(game, trained, seeds, eval_episodes, steps)}


def evaluate_agents(game: str, actors: list, seeds: tuple[int, ...], eval_episodes: int = 256,
                    steps: int = 50) -> dict:
    """Evaluate one agent per seed (``actors[i]`` was trained from ``seeds[i]``): ``self_play``
    (seeds, 2) reward per step, ``own_rate`` (Coin Game) and the reward per step against each
    scripted agent, on keys that depend only on the seed."""
    spec = spec_of(game, steps)
    out = {"self_play": [], "own_rate": [], "vs": {k: [] for k in SCRIPTED[game]}}
    for actor, s in zip(actors, seeds):
        key = jax.random.PRNGKey(1000 + int(s))
        st = episodes.evaluate(key, actor, actor, spec, eval_episodes)
        out["self_play"].append(np.asarray(st["reward"]))
        if game == "coin":
            out["own_rate"].append(float(st["own_rate"]))
        for name, kind in SCRIPTED[game].items():
            out["vs"][name].append(float(episodes.evaluate(key, actor, agents.scripted(kind), spec, eval_episodes)["reward"][0]))
    return out


def published_method(game: str, method: str, seeds: tuple[int, ...], eval_episodes: int = 256,
                     steps: int = 50) -> dict:
    """The agents ``<game>/<method>/<seed>`` shipped with the package, evaluated as
    :func:`train_method` evaluates the agents it trains (no training history)."""
    actors = [agents.actor_only(agents.load(f"{game}/{method}/{int(s)}")) for s in seeds]
    return {"published": f"{game}/{method}", **evaluate_agents(game, actors, seeds, eval_episodes, steps)}


def published_on_off(game: str, methods: dict[str, str], opponent: str = "self", seeds: tuple[int, ...] = (0, 1, 2),
                     eval_episodes: int = 256, eval_seed: int = 0, steps: int = 50) -> dict[str, dict[str, np.ndarray]]:
    """Shaping on against off on the published reference agents: seed ``s`` of each method
    (``methods``: label -> method tag, e.g. ``{"LOQA": "loqa", "LOQA, shaping off":
    "loqa_noshaping"}``) plays ``eval_episodes`` episodes against ``opponent``: ``"self"`` (a
    copy of itself), a scripted agent of :data:`SCRIPTED` or another label (its seed ``s``).
    Returns per label ``reward`` (S,) the agent's reward per step, ``opponent_reward`` (S,)
    and, in the Coin Game, ``own_rate`` (S,) the fraction of picked coins taken by their owner.
    Nothing is trained, so it runs in seconds; ``eval_seed`` draws other episodes."""
    if opponent != "self" and opponent not in SCRIPTED[game] and opponent not in methods:
        raise ValueError(f"opponent must be 'self', one of {sorted(SCRIPTED[game])} or one of {sorted(methods)}, "
                         f"got {opponent!r}")
    spec = spec_of(game, steps)
    loaded = {lab: [agents.actor_only(agents.load(f"{game}/{m}/{int(s)}")) for s in seeds] for lab, m in methods.items()}
    out = {}
    for lab, actors in loaded.items():
        rows = {"reward": [], "opponent_reward": [], "own_rate": []}
        for i, (actor, s) in enumerate(zip(actors, seeds)):
            other = (actor if opponent == "self" else loaded[opponent][i] if opponent in loaded
                     else agents.scripted(SCRIPTED[game][opponent]))
            st = episodes.evaluate(jax.random.PRNGKey(3000 + 97 * int(eval_seed) + int(s)), actor, other, spec,
                                   eval_episodes)
            rows["reward"].append(float(st["reward"][0]))
            rows["opponent_reward"].append(float(st["reward"][1]))
            if "own_rate" in st:
                rows["own_rate"].append(float(st["own_rate"]))
        out[lab] = {k: np.asarray(v) for k, v in rows.items() if v}
    return out


def plot_on_off(axes, result: dict[str, dict[str, np.ndarray]], colors: dict[str, str] | None = None) -> str:
    """Bars of :func:`published_on_off`: per label the seed mean with its 95% Student-t
    interval and one dot per seed, reward per step (axes[0]) and own-coin rate (axes[1], when
    present). Returns a one-line reading computed from the data: the first label minus the
    second with its Welch 95% interval, and whether that interval excludes 0."""
    from lowrank_es import stats

    labels = list(result)
    keys = [k for k in ("reward", "own_rate") if k in result[labels[0]]]
    names = {"reward": "agent's reward per step", "own_rate": "own-coin rate (both agents)"}
    for ax, k in zip(axes, keys):
        for i, lab in enumerate(labels):
            v = result[lab][k]
            m, h = stats.mean_ci(v)
            color = (colors or {}).get(lab, f"C{i}")
            ax.bar(i, m, yerr=h, color=color, alpha=0.5, capsize=6)
            ax.plot(np.full(v.size, i), v, "o", color=color, ms=4)
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylabel(names[k])
        ax.axhline(0, color="k", lw=0.6)
    a, b = labels[:2]
    d, h = stats.welch_ci(result[a]["reward"], result[b]["reward"])
    verdict = "excludes 0" if abs(d) > h else "includes 0"
    return (f"{a} minus {b}: {d:+.3f} per step, Welch 95% interval [{d - h:+.3f}, {d + h:+.3f}] ({verdict}; "
            f"{result[a]['reward'].size} seeds each)")


def play_league(game: str, methods: dict[str, str], seeds: tuple[int, ...], directory: Path,
                n_envs: int = 128, steps: int = 50) -> dict:
    """Cross-play of the trained agents (label -> method tag, seed ``s`` of each) and the
    scripted agents, one league per seed: ``reward`` (seeds, n, n) of the row player and
    (Coin Game) ``own_rate``."""
    spec = spec_of(game, steps)
    out = {"names": list(methods) + list(SCRIPTED[game])}
    rows = []
    for s in seeds:
        players = {lab: agents.actor_only(agents.load(f"{game}/{m}/{s}", directory)) for lab, m in methods.items()}
        players.update({lab: agents.scripted(kind) for lab, kind in SCRIPTED[game].items()})
        rows.append(league.sampled_league(jax.random.PRNGKey(2000 + int(s)), players, spec, n_envs)[1])
    for k in rows[0]:
        out[k] = np.concatenate([r[k] for r in rows])
    return out


# ---------------------------------------------------------------------------
# Reading results: per-seed values, curves, league tables, episode replays
# ---------------------------------------------------------------------------


def per_seed(part: dict, what: str) -> np.ndarray:
    """Per-seed values of a ``train_method`` result: ``"self_play"`` (mean of both seats),
    ``"own_rate"``, or ``"vs_<scripted>"``."""
    if what == "self_play":
        return np.asarray(part["self_play"]).mean(-1)
    if what.startswith("vs_"):
        return np.asarray(part["vs"][what[3:]])
    return np.asarray(part[what])


def curves(part: dict) -> dict[str, np.ndarray]:
    """Training curves (seeds, points) of a ``train_method`` result: ``update``, ``reward``
    (self-play, mean of both seats) and, in the Coin Game, ``own_rate`` and ``pickups`` per
    episode (both agents)."""
    h = part["history"]
    out = {"update": np.asarray(h["update"]), "reward": np.asarray(h["reward"]).mean(-1)}
    if "own" in h:
        own, other = np.asarray(h["own"]).sum(-1), np.asarray(h["other"]).sum(-1)
        out["own_rate"] = own / np.maximum(own + other, 1e-9)
        out["pickups"] = own + other
    return out


def plot_curves(axes, parts: dict[str, dict], colors: dict[str, str] | None = None) -> None:
    """Reward per step, own-coin rate and pick-ups per episode against updates: one thin line
    per seed, the mean thick, one colour per method (``parts``: label -> train_method result)."""
    keys = [k for k in ("reward", "own_rate", "pickups") if k in curves(next(iter(parts.values())))]
    labels = {"reward": "self-play reward per step", "own_rate": "own-coin rate", "pickups": "coins picked up per episode"}
    for i, (lab, part) in enumerate(parts.items()):
        c = curves(part)
        color = (colors or {}).get(lab, f"C{i}")
        for ax, k in zip(axes, keys):
            for y in c[k]:
                ax.plot(c["update"], y, color=color, alpha=0.3, lw=0.8)
            ax.plot(c["update"], c[k].mean(0), color=color, lw=2, label=f"{lab} ({c[k].shape[0]} seeds)")
    for ax, k in zip(axes, keys):
        ax.set_xlabel("update")
        ax.set_ylabel(labels[k])
    axes[0].legend(fontsize=8)


def league_table(part: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, mean and standard error over seeds of the league's row-player reward per step."""
    r = np.asarray(part["reward"])
    se = r.std(0, ddof=1) / np.sqrt(r.shape[0]) if r.shape[0] > 1 else np.zeros(r.shape[1:])
    return list(part["names"]), r.mean(0), se


def anchor_lines(game: str, names: list[str], mean: np.ndarray) -> list[str]:
    """``row vs column: ours (anchor)`` for every pairing the official leagues report."""
    lines = []
    for (a, b), v in ANCHORS[game].items():
        if a in names and b in names:
            lines.append(f"{a:>16} vs {b:<16}: ours {mean[names.index(a), names.index(b)]:+.3f}   official {v:+.3f}")
    return lines


def replay(agent, game: str = "coin", opponent=None, seed: int = 0, steps: int = 50):
    """One episode of ``agent`` (seat 0) against ``opponent`` (default: itself), with the
    game states: an :class:`lowrank_es.shaping.episodes.Episodes` of one episode."""
    opponent = agent if opponent is None else opponent
    return episodes.rollout(jax.random.PRNGKey(seed), (agent, opponent), spec_of(game, steps), 1, record_states=True)


def plot_frames(axes, ep, start: int = 0) -> None:
    """Consecutive frames of a recorded Coin Game episode (one per axis), titled with the
    step and both rewards of the step that led to it."""
    from lowrank_es.games import coin

    for i, ax in enumerate(axes):
        t = start + i
        s = jax.tree.map(lambda x: x[t, 0], ep.states)
        ax.imshow(np.asarray(coin.render_rgb(s, cell=16)))
        ax.set_xticks([])
        ax.set_yticks([])
        r = "" if t == 0 else f": {int(ep.rewards[t - 1, 0, 0]):+d},{int(ep.rewards[t - 1, 0, 1]):+d}"
        ax.set_title(f"t={t}{r}", fontsize=9)

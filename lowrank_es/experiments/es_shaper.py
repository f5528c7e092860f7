"""Experiment ``es_shaper`` (notebook 14): an M-FOS meta-shaper (arXiv:2205.01447) trained by
rank-1 EGGROLL and by full-rank OpenES in the IPD meta-game.

Jobs (seeds vmapped inside each): the meta-shaper against naive learners by EGGROLL rank 1 and
by OpenES at the same population, sigma, Adam step and generations; EGGROLL against LOLA
learners; EGGROLL meta-self-play; the gradient-learner baselines on the same evaluation
learners; and the wall-clock per generation of EGGROLL and OpenES measured side by side.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.experiments import Experiment, register
from lowrank_es.shaping import meta_game as mg, meta_shaper as ms


@dataclasses.dataclass(frozen=True)
class Config:
    """The meta-policy, the shared ES settings, the meta-game and the timing."""

    hidden: tuple[int, ...] = (128, 128)
    population: int = 16
    sigma: float = 0.05
    learning_rate: float = 0.01
    generations: int = 40
    selfplay_generations: int = 40
    curriculum: int = 26
    selfplay_learning_rate: float = 0.003
    selfplay_lr_final: float = 0.1
    batch: int = 4
    eval_batch: int = 64
    eval_every: int = 10
    meta_steps: int = 16
    timing_rounds: int = 3
    timing_generations: int = 3

    def shaper(self, rank: int | None = 1, opponent: str = "naive", selfplay: bool = False) -> ms.ShaperConfig:
        """The :class:`ShaperConfig` of one job. Self-play takes its own (smaller, cosine-decayed)
        Adam step: M-FOS's self-play script also uses a tenth of the step of its runs against
        naive learners."""
        return ms.ShaperConfig(
            hidden=self.hidden, rank=rank, population=self.population, sigma=self.sigma,
            learning_rate=self.selfplay_learning_rate if selfplay else self.learning_rate,
            lr_final=self.selfplay_lr_final if selfplay else 1.0,
            generations=self.selfplay_generations if selfplay else self.generations,
            batch=self.batch, eval_batch=self.eval_batch, eval_every=self.eval_every,
            curriculum=self.curriculum if selfplay else 0,
            game=mg.MetaGameConfig(opponent=opponent, meta_steps=self.meta_steps))


SCALES = {
    "quick": Config(),
    "reference": Config(hidden=(512, 512), population=32, generations=100, selfplay_generations=200, curriculum=130,
                        batch=8, eval_batch=128, meta_steps=25, timing_rounds=5, timing_generations=4),
}
SEEDS = {"quick": 2, "reference": 3}

#: Rank per method label (None: OpenES).
METHODS = {"EGGROLL r=1": 1, "OpenES (full rank)": None}


def trajectory_summary(tr: mg.Trajectory) -> dict:
    """Batch means of a meta-episode: ``shaper`` / ``opponent`` cooperation probabilities
    (T, 5) and ``rewards`` (T, 2); and the ZD extortion fit (chi, phi, rms) of the shaper's mean
    policy over the second half of the meta-episode."""
    ps = tr.shaper.mean(axis=1)
    half = ps[ps.shape[0] // 2:].mean(axis=0)
    chi, phi, err = mg.fit_zd(half)
    return {"shaper": ps, "opponent": tr.opponent.mean(axis=1), "rewards": tr.rewards.mean(axis=1),
            "late_policy": half, "zd": jnp.stack([chi, phi, err])}


def train_against_learners(cfg: Config, rank: int | None, opponent: str, seeds: tuple[int, ...]) -> dict:
    """Train per seed; returns curves (``fitness`` (S, G), ``eval`` (S, E, 2)), the final
    meta-episode summaries per seed, and the wall time of the whole job."""
    t0 = time.perf_counter()
    scfg = cfg.shaper(rank, opponent)
    out = ms.train(scfg, seeds)

    def final(params, seed):
        k = ms.seed_keys(seed)["eval"]
        return trajectory_summary(mg.rollout(ms.meta_policy(params), k, scfg.eval_batch, scfg.game))

    summary = jax.jit(jax.vmap(final))(out["params"], jnp.asarray(seeds))
    return {"rank": rank, "opponent": opponent, "num_params": scfg.num_params(), "fitness": out["fitness"],
            "eval": out["eval"], "eval_generations": out["eval_generations"], "final": summary,
            "wall_s": time.perf_counter() - t0}


def train_selfplay(cfg: Config, seeds: tuple[int, ...], **overrides) -> dict:
    """Meta-self-play per seed, with the final meta-episode of the two shapers; ``overrides``
    replace fields of the self-play :class:`ShaperConfig` (e.g. a constant step)."""
    t0 = time.perf_counter()
    scfg = dataclasses.replace(cfg.shaper(1, "naive", selfplay=True), **overrides)
    out = ms.train_selfplay(scfg, seeds)

    def final(pa, pb, seed):
        k = ms.seed_keys(seed)["eval"]
        tr = mg.selfplay_rollout(ms.meta_policy(pa), ms.meta_policy(pb), k, scfg.eval_batch, scfg.game)
        return trajectory_summary(tr)

    summary = jax.jit(jax.vmap(final))(out["params"][0], out["params"][1], jnp.asarray(seeds))
    return {"fitness": out["fitness"], "eval": out["eval"], "eval_naive": out["eval_naive"],
            "eval_generations": out["eval_generations"], "curriculum": scfg.curriculum, "final": summary,
            "learning_rate": scfg.learning_rate, "lr_final": scfg.lr_final, "wall_s": time.perf_counter() - t0}


#: A fixed ZD extortion policy (chi = 3, the largest phi), the textbook shaper of a learner.
ZD_CHI = 3.0


def baselines(cfg: Config, seeds: tuple[int, ...]) -> dict:
    """Gradient learners (naive, LOLA) and a fixed ZD extortioner in the shaper's seat, on each
    seed's evaluation learners: ``{name: (S, 2) mean rewards per step (me, learner)}`` and the
    per-step curves ``{name: (T, 2)}`` averaged over seeds."""
    out, curves = {}, {}
    zd = jnp.concatenate([jnp.ones(1), mg.zd_extortion(ZD_CHI, 1.0 / (1.0 + 2.0 * ZD_CHI))])
    zd_logits = jnp.log(jnp.clip(zd, 1e-4, 1 - 1e-4)) - jnp.log1p(-jnp.clip(zd, 1e-4, 1 - 1e-4))
    for opponent in ("naive", "lola"):
        game = cfg.shaper(1, opponent).game
        runs = {f"{me} vs {opponent}": functools.partial(mg.learner_rollout, me) for me in ("naive", "lola")}
        runs[f"ZD chi={ZD_CHI:g} vs {opponent}"] = functools.partial(
            mg.rollout, lambda obs: jnp.broadcast_to(zd_logits, (obs.shape[0], 5)))
        for name, fn in runs.items():
            r = jax.vmap(lambda s, fn=fn, game=game: fn(ms.seed_keys(s)["eval"], cfg.eval_batch, game).rewards.mean(1))(
                jnp.asarray(seeds))  # (S, T, 2)
            out[name], curves[name] = r.mean(axis=1), r.mean(axis=0)
    return {"per_seed": out, "curves": curves}


def timing(cfg: Config) -> dict:
    """Seconds per generation of EGGROLL rank 1 and OpenES, interleaved in one process."""
    times = ms.time_generations({label: cfg.shaper(rank) for label, rank in METHODS.items()},
                                cfg.timing_rounds, cfg.timing_generations)
    return {label: {"per_round_s": t, "median_s": float(np.median(t))} for label, t in times.items()}


JOBS = {
    "eggroll_naive": lambda cfg, seeds: train_against_learners(cfg, 1, "naive", seeds),
    "openes_naive": lambda cfg, seeds: train_against_learners(cfg, None, "naive", seeds),
    "eggroll_lola": lambda cfg, seeds: train_against_learners(cfg, 1, "lola", seeds),
    "selfplay": train_selfplay,
    "baselines": baselines,
    "timing": lambda cfg, seeds: timing(cfg),
}


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    return {name: functools.partial(fn, cfg, seeds) for name, fn in JOBS.items()}


def combine(cfg: Config, seeds: tuple[int, ...], parts: dict) -> dict:
    """The job results, with the ZD extortion fit (chi, phi, rms) of every final meta-episode's
    late policy redone here, so a record's ``zd`` always comes from the current
    :func:`meta_game.fit_zd`, also for jobs reused from the cache."""
    out = dict(parts)
    for name, part in parts.items():
        if isinstance(part, dict) and isinstance(part.get("final"), dict) and "late_policy" in part["final"]:
            zd = jax.vmap(mg.fit_zd)(jnp.asarray(part["final"]["late_policy"]))
            out[name] = {**part, "final": {**part["final"], "zd": jnp.stack(zd, axis=-1)}}
    return out


# ---------------------------------------------------------------------------
# Reading a results record
# ---------------------------------------------------------------------------


def final_eval(record: dict, job: str) -> np.ndarray:
    """(S, 2) the mean policy's rewards per step (shaper, learner) at the last evaluation."""
    return np.asarray(record["data"][job]["eval"])[:, -1]


def summary_rows(record: dict) -> list[tuple[str, float, float, float]]:
    """(what, mean shaper reward/step, s.e. over seeds, mean learner reward/step) per method
    and baseline, read from a record."""
    d = record["data"]
    rows = []
    for label, job in (("EGGROLL r=1 shaper vs naive", "eggroll_naive"), ("OpenES shaper vs naive", "openes_naive"),
                       ("EGGROLL r=1 shaper vs LOLA", "eggroll_lola")):
        e = final_eval(record, job)
        rows.append((label, e[:, 0].mean(), _se(e[:, 0]), e[:, 1].mean()))
    sp = np.asarray(d["selfplay"]["eval"])[:, -1]
    rows.append(("meta-self-play (A, B)", sp[:, 0].mean(), _se(sp[:, 0]), sp[:, 1].mean()))
    for name, r in d["baselines"]["per_seed"].items():
        r = np.asarray(r)
        rows.append((name, r[:, 0].mean(), _se(r[:, 0]), r[:, 1].mean()))
    return rows


def _se(x) -> float:
    x = np.asarray(x, float)
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def summary_lines(record: dict) -> list[str]:
    lines = [f"{'who (seat 1 vs learner)':<34}{'seat 1 reward/step':>22}{'learner':>10}"]
    for what, m, se, opp in summary_rows(record):
        lines.append(f"{what:<34}{m:>14.3f} ± {se:<5.2g}{opp:>10.3f}")
    t = record["data"]["timing"]
    e, o = t["EGGROLL r=1"]["median_s"], t["OpenES (full rank)"]["median_s"]
    # The ratio only for the committed reference: a live run's timings vary from run to run.
    ratio = f" (OpenES / EGGROLL = {o / e:.3g}x)" if record["scale"] == "reference" else ""
    lines.append(f"per generation: EGGROLL r=1 {1e3 * e:.1f} ms, OpenES {1e3 * o:.1f} ms{ratio}")
    return lines


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def _band(ax, x, y, label, **kw):
    y = np.asarray(y)
    line, = ax.plot(x, y.mean(0), label=label, **kw)
    if y.shape[0] > 1:
        ax.fill_between(x, y.min(0), y.max(0), alpha=0.2, color=line.get_color())


def plot_learning(ax, record: dict, jobs_: tuple[str, ...] = ("eggroll_naive", "openes_naive"), seat: int = 0) -> None:
    """Mean policy's reward per step (seat 0: shaper, 1: learner) against generations, min-max
    band over seeds, with the baselines' levels as dashed lines."""
    d = record["data"]
    for job in jobs_:
        x = np.asarray(d[job]["eval_generations"])
        label = {1: "EGGROLL r=1", None: "OpenES"}[d[job]["rank"]] + f" vs {d[job]['opponent']}"
        _band(ax, x, np.asarray(d[job]["eval"])[:, :, seat], label)
    for name in ("naive vs naive", "lola vs naive"):
        ax.axhline(np.asarray(d["baselines"]["per_seed"][name])[:, seat].mean(), ls="--", lw=1, color="gray")
        ax.annotate(name.replace("lola", "LOLA"), (0, np.asarray(d["baselines"]["per_seed"][name])[:, seat].mean()),
                    fontsize=7, color="gray", va="bottom")
    ax.axhline(-1.0, ls=":", color="k", lw=1)
    ax.set_xlabel("ES generation")
    ax.set_ylabel(("shaper" if seat == 0 else "learner") + " reward per step (payoff units)")
    ax.legend(fontsize=8)


def plot_inner_policy(axes, record: dict, job: str = "eggroll_naive") -> None:
    """The five cooperation probabilities of the shaper (axes[0]) and of the learner
    (axes[1]) over the meta-episode, mean over seeds and learners; dashed: the ZD extortion
    policy fitted to the shaper's late policy."""
    f = record["data"][job]["final"]
    ps, po = np.asarray(f["shaper"]).mean(0), np.asarray(f["opponent"]).mean(0)
    chi, phi, _ = np.asarray(f["zd"]).mean(0)
    zd = np.asarray(mg.zd_extortion(float(chi), float(phi)))
    t = np.arange(1, ps.shape[0] + 1)
    for i, name in enumerate(("start", "CC", "CD", "DC", "DD")):
        line, = axes[0].plot(t, ps[:, i], label=f"p({name})")
        if i:
            axes[0].axhline(zd[i - 1], ls="--", lw=1, color=line.get_color())
        axes[1].plot(t, po[:, i], label=f"p({name})")
    axes[0].set_title(f"shaper (dashed: ZD extortion, chi = {chi:.2g})", fontsize=9)
    axes[1].set_title("naive learner", fontsize=9)
    for ax in axes:
        ax.set_xlabel("meta-step (inner episode)")
        ax.set_ylabel("cooperation probability")
        ax.set_ylim(-0.02, 1.02)
    axes[1].legend(fontsize=7, ncol=2)


def plot_selfplay(ax, record: dict) -> None:
    """Meta-self-play: the two shapers' mean reward per step against each other over
    generations (min-max band over seeds)."""
    d = record["data"]["selfplay"]
    step = f"Adam step {d['learning_rate']:g}" + (f", cosine to x{d['lr_final']:g}" if d["lr_final"] < 1 else ", constant")
    _band(ax, np.asarray(d["eval_generations"]), np.asarray(d["eval"]).mean(axis=2), step)
    ax.axvline(record["data"]["selfplay"]["curriculum"], ls=":", color="gray", lw=1)
    ax.axhline(-1.0, ls=":", color="k", lw=1)
    ax.set_xlabel("ES generation (dotted: end of the naive-learner curriculum)")
    ax.set_ylabel("mean of both shapers' reward per step")
    ax.legend(fontsize=8)


#: One colour per player in the shaper's seat, whatever the order of a record's baselines.
SEAT_COLORS = {"ES shaper": "C0", "naive": "C1", "lola": "C2", "ZD chi=3": "C3"}


def plot_meta_episode(ax, record: dict, job: str = "eggroll_naive") -> None:
    """Rewards per step over the meta-episode (mean over seeds and learners) of the trained
    shaper (solid) and its learners (dashed), beside naive / LOLA learners and a fixed ZD
    extortioner in the shaper's seat against the same learners (colours: ``SEAT_COLORS``).
    The title gives the scale and the shaper's and learners' means (:func:`final_eval`)."""
    d = record["data"]
    f = np.asarray(d[job]["final"]["rewards"]).mean(0)  # (T, 2)
    t = np.arange(1, f.shape[0] + 1)
    opponent = d[job]["opponent"]
    curves = d["baselines"]["curves"]
    ax.plot(t, f[:, 0], lw=2, color=SEAT_COLORS["ES shaper"], label=f"ES shaper vs {opponent.replace('lola', 'LOLA')}")
    ax.plot(t, f[:, 1], lw=2, ls="--", color=SEAT_COLORS["ES shaper"])
    for seat, color in SEAT_COLORS.items():
        name = f"{seat} vs {opponent}"
        if name in curves:
            c = np.asarray(curves[name])
            ax.plot(t, c[:, 0], lw=1, color=color, label=name.replace("lola", "LOLA"))
            ax.plot(t, c[:, 1], lw=1, ls="--", color=color)
    ax.axhline(-1.0, ls=":", color="k", lw=1, label="mutual cooperation")
    shaper, learner = final_eval(record, job).mean(0)
    versus = ("" if job == "eggroll_naive"
              else f" (against naive learners {final_eval(record, 'eggroll_naive')[:, 0].mean():.2f})")
    ax.set_title(f"{record['scale']} scale\nmean per step: shaper {shaper:.2f}{versus}, learners {learner:.2f}",
                 fontsize=10)
    ax.set_xlabel("meta-step (inner episode)")
    ax.set_ylabel("reward per step\n(solid: seat 1, dashed: its learner)")
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, 0), borderaxespad=5)


def meta_episode_statement(records: list[dict], job: str = "eggroll_naive") -> str:
    """A figure title for :func:`plot_meta_episode` panels of ``records``: against naive
    learners, where the shaper and its learners end relative to mutual cooperation; against
    other learners, whether the shaper gets more or less than the one trained against naive
    learners, at every scale or not consistently (means of :func:`final_eval`)."""
    opponent = records[0]["data"][job]["opponent"].replace("lola", "LOLA")
    shaper = [final_eval(rec, job)[:, 0].mean() for rec in records]
    if job == "eggroll_naive":
        learner = [final_eval(rec, job)[:, 1].mean() for rec in records]

        def side(xs):
            return ("more than" if min(xs) > -1 else "less than" if max(xs) < -1
                    else "not consistently more or less than")

        head = f"The trained ES shaper gets {side(shaper)} mutual cooperation, its naive learners {side(learner)} it"
    else:
        gaps = [s - final_eval(rec, "eggroll_naive")[:, 0].mean() for s, rec in zip(shaper, records)]
        order = "less" if max(gaps) < 0 else "more" if min(gaps) > 0 else None
        head = (f"The ES shaper gets {order} per step against {opponent} learners than against naive ones" if order
                else f"The ES shaper against {opponent} and naive learners: no consistent order across scales")
    return head


def learning_statement(record: dict) -> str:
    """Title of the learning figure, computed from the record: each method's final reward per
    step against naive learners, the shaper's and its learners' (means over seeds), beside
    mutual cooperation (-1)."""
    parts = []
    for label, job in (("EGGROLL r=1", "eggroll_naive"), ("OpenES", "openes_naive")):
        shaper, learner = final_eval(record, job).mean(0)
        parts.append(f"{label} shaper {shaper:.2f}, learners {learner:.2f}")
    return (f"{record['scale']} scale ({len(record['seeds'])} seeds), final reward per step against naive learners:\n"
            + "; ".join(parts) + " (mutual cooperation -1)")


def inner_policy_statement(record: dict, job: str = "eggroll_naive") -> str:
    """Title of the inner-policy figure, computed from the record: the shaper's cooperation
    probabilities at the last meta-step and the learners' at the first and last."""
    f = record["data"][job]["final"]
    ps, po = np.asarray(f["shaper"]).mean(0), np.asarray(f["opponent"]).mean(0)
    names = ("start", "CC", "CD", "DC", "DD")

    def fmt(p):
        return ", ".join(f"{n} {x:.2f}" for n, x in zip(names, p))

    return (f"Shaper's p(C | state) at the last meta-step: {fmt(ps[-1])}\n"
            f"naive learners' mean p(C): {po[0].mean():.2f} at the first meta-step, {po[-1].mean():.2f} at the last")


def selfplay_statement(record: dict) -> str:
    """Title of the self-play figure, computed from the record: both shapers' mean reward per
    step at the first and last evaluation (mean over seeds), beside mutual cooperation (-1)."""
    ev = np.asarray(record["data"]["selfplay"]["eval"]).mean(axis=2)  # (S, E)
    return (f"mean reward per step {ev[:, 0].mean():.2f} at generation 0, "
            f"{ev[:, -1].mean():.2f} at the end\n(seed range {ev[:, -1].min():.2f} to {ev[:, -1].max():.2f}; "
            "mutual cooperation -1)")


#: What M-FOS (arXiv:2205.01447) and its official code (luchris429/Model-Free-Opponent-Shaping) state
#: for the IPD with exact inner values; the paper's result tables could not be read from the stored
#: copies available here, so its statements are quoted, not its table entries.
PAPER = {
    "inner game": "IPD, payoffs CC -1, CD -3, DC 0, DD -2, exact values, gamma 0.96, reward per step (1 - gamma) V",
    "learners": "naive (exact gradient, step 1) and LOLA, initial logits N(0, 1)",
    "meta-episode": "100 inner episodes",
    "meta-policy training": "PPO (batch 4096 meta-episodes, 1024 updates); a GA variant (population 2048, MLP 10-256-5)",
    "vs naive learners": "learns ZD extortion: the shaper earns more than mutual cooperation (> -1 per step)",
    "meta-self-play": "socially optimal outcome: close to mutual cooperation (-1 per step)",
}


def paper_lines(record: dict) -> list[str]:
    """M-FOS's setting and reported outcomes beside this run's."""
    c = record["config"]
    rows = summary_rows(record)
    vs_naive = rows[0][1]
    sp = np.asarray(record["data"]["selfplay"]["eval"])[:, -1].mean()
    ours = {
        "inner game": "the same (ipd.exact_value)",
        "learners": "the same",
        "meta-episode": f"{c['meta_steps']} inner episodes",
        "meta-policy training": f"EGGROLL r=1 / OpenES, population {c['population']}, {c['generations']} generations, "
                                f"MLP 10-{'-'.join(str(h) for h in c['hidden'])}-5",
        "vs naive learners": f"{vs_naive:.3f} per step",
        "meta-self-play": f"{sp:.3f} per step (mean of both)",
    }
    return [f"{k:<22} M-FOS: {v}\n{'':<22} ours:  {ours[k]}" for k, v in PAPER.items()]


def plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    figs = {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    plot_learning(axes[0], record, seat=0)
    plot_learning(axes[1], record, seat=1)
    fig.suptitle(learning_statement(record))
    fig.tight_layout()
    figs["learning"] = fig
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    plot_inner_policy(axes, record)
    fig.suptitle(inner_policy_statement(record))
    fig.tight_layout()
    figs["inner_policy"] = fig
    fig, ax = plt.subplots()
    plot_selfplay(ax, record)
    ax.set_title("Meta-self-play: " + selfplay_statement(record), fontsize=10)
    figs["selfplay"] = fig
    return figs


EXPERIMENT = register(Experiment(
    name="es_shaper", notebook="14_es_shaper",
    summary="Does an M-FOS meta-shaper trained by rank-1 EGGROLL extort naive learners in the IPD as well as "
            "one trained by OpenES, at a lower cost per generation?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, combine=combine, plots=plots,
))

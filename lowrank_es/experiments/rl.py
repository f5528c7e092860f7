"""Experiment ``rl`` (notebook 03): tabula-rasa RL on gymnax, rank-1 EGGROLL against full-rank
OpenES at the same environment-step budget (same network, population, sigma, Adam step and
seeds; only the perturbation differs), PPO as a gradient-based reference, and the generation
time of the two ES methods measured side by side.

Each (environment, method) job trains all seeds at once (vmapped) until every seed has spent
the environment's step budget (:mod:`lowrank_es.tasks.control_es`). Scores and tables are in
:mod:`lowrank_es.experiments.rl_analysis`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from lowrank_es.baselines import ppo
from lowrank_es.experiments import Experiment, register
from lowrank_es.experiments.machine import machine_load
from lowrank_es.experiments.rl_analysis import aggregate_figure, learning_curves_figure, plot_env_curves
from lowrank_es.tasks.control import make_env, random_return
from lowrank_es.tasks.control_es import ESConfig, RunState, generation_seconds, make_policy, mean_params, train


@dataclasses.dataclass(frozen=True)
class EnvBudget:
    """One environment's budget: environment steps per seed, a cap on generations (a safety net:
    the budget should end the run first) and the episode cap (None: the environment's limit)."""

    env_id: str
    env_steps: int
    generations: int
    max_steps: int | None = None


@dataclasses.dataclass(frozen=True)
class Config:
    envs: tuple[EnvBudget, ...]
    methods: tuple[tuple[str, int | None], ...] = (("eggroll", 1), ("openes", None))
    population: int = 64
    sigma: float = 0.05
    learning_rate: float = 0.03
    hidden: tuple[int, ...] = (64, 64)
    episodes: int = 1
    eval_episodes: int = 4
    final_episodes: int = 32
    random_episodes: int = 64
    # PPO (PureJaxRL's CartPole settings): (environment, steps) pairs, with that environment's
    # episode cap (CartPole at 500k steps: claim eggroll.rl.ppo_reference).
    ppo: tuple[tuple[str, int], ...] = (("CartPole-v1", 500_000),)
    # eggroll.rl.speed: one generation of each method, taking turns, at a 2 x 256 network on an
    # environment whose episodes have a fixed length (Pendulum never terminates early).
    speed_env: str = "Pendulum-v1"
    speed_hidden: tuple[int, ...] = (256, 256)
    speed_population: int = 64
    speed_max_steps: int = 100
    speed_repeats: int = 21  # 0: no speed measurement


SCALES = {
    "quick": Config(envs=(EnvBudget("CartPole-v1", 30_000, 40, 200),), population=32, hidden=(32, 32),
                    final_episodes=16, random_episodes=32, ppo=(), speed_repeats=0),
    # Budgets: both ES methods clearly above the random policy on every environment, the whole
    # run about half an hour of CPU time on 2 cores (MinAtar episodes capped: their steps are
    # the costliest, OpenES's dense per-member matrices most of all at 400-600 inputs).
    "reference": Config(envs=(
        EnvBudget("CartPole-v1", 200_000, 300),
        EnvBudget("Acrobot-v1", 200_000, 300),
        EnvBudget("Pendulum-v1", 1_000_000, 100),
        EnvBudget("Breakout-MinAtar", 100_000, 400, 500),
        EnvBudget("SpaceInvaders-MinAtar", 100_000, 300, 200),
    # PPO on the MinAtar games is left out: its jitted run (Breakout-MinAtar, 16 seeds) hung in
    # XLA's CPU thread pool twice on the 2-core machine (all threads waiting, no CPU used).
    ), ppo=(("CartPole-v1", 500_000), ("Acrobot-v1", 200_000), ("Pendulum-v1", 500_000))),
}
SEEDS = {"quick": 4, "reference": 16}


def slug(text: str) -> str:
    """``"EGGROLL r=1"`` -> ``"eggroll_r_1"`` (job names become file names)."""
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def es_config(cfg: Config, budget: EnvBudget, method: str, rank: int | None) -> ESConfig:
    """The :class:`ESConfig` of one method on one environment under ``cfg``."""
    return ESConfig(env_id=budget.env_id, method=method, rank=rank, population=cfg.population, sigma=cfg.sigma,
                    learning_rate=cfg.learning_rate, env_steps=budget.env_steps, generations=budget.generations,
                    episodes=cfg.episodes, max_steps=budget.max_steps, hidden=cfg.hidden,
                    eval_episodes=cfg.eval_episodes, final_episodes=cfg.final_episodes)


def es_job(config: ESConfig, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Train one method on one environment over ``seeds`` and summarise it (:func:`es_job_summary`)."""
    curves, _ = train(config, seeds)
    return es_job_summary(config, curves)


def es_job_summary(config: ESConfig, curves: dict[str, Any]) -> dict[str, Any]:
    """The curves of :func:`~lowrank_es.tasks.control_es.train`, with the returns of generations
    past the budget (not applied) blanked, rounded for a small results file."""
    accepted = curves["accepted"].astype(bool)
    return {
        "env": config.env_id, "method": config.label, "env_steps_budget": config.env_steps,
        "eval_return": np.round(np.where(accepted, curves["eval_return"], np.nan), 3),
        "fitness_mean": np.round(np.where(accepted, curves["fitness_mean"], np.nan), 3),
        "env_steps": curves["env_steps"], "final_return": np.round(curves["final_return"], 3),
        "initial_return": np.round(curves["initial_return"], 3), "final_steps": curves["final_steps"],
        "generations_used": curves["generations_used"], "seconds": np.round(curves["seconds"], 3),
        "compile_seconds": round(curves["compile_seconds"], 2),
    }


def ppo_job(env_id: str, steps: int, max_steps: int | None, seeds: tuple[int, ...]) -> dict[str, Any]:
    out = ppo.run(ppo.PPOConfig(env_id=env_id, total_timesteps=steps, max_steps=max_steps), seeds)
    every = max(1, len(out["env_steps"]) // 100)  # at most ~100 points per curve in the results file
    return {"env": env_id, "method": "PPO", "env_steps": out["env_steps"][every - 1::every],
            "mean_return": np.round(out["mean_return"][:, every - 1::every], 3),
            "final_return": np.round(out["final_return"], 3), "seconds": np.round(out["seconds"][every - 1::every], 3),
            "compile_seconds": round(out["compile_seconds"], 2)}


def random_job(cfg: Config) -> dict[str, float]:
    return {b.env_id: random_return(b.env_id, cfg.random_episodes, seed=0, max_steps=b.max_steps) for b in cfg.envs}


def speed_job(cfg: Config) -> dict[str, Any]:
    """Generation time of EGGROLL r=1 and OpenES at the speed network, taking turns."""
    common = dict(env_id=cfg.speed_env, population=cfg.speed_population, max_steps=cfg.speed_max_steps,
                  hidden=cfg.speed_hidden, sigma=cfg.sigma, learning_rate=cfg.learning_rate)
    t_e, t_o = generation_seconds([ESConfig(method="eggroll", rank=1, **common),
                                   ESConfig(method="openes", rank=None, **common)], repeats=cfg.speed_repeats)
    return {"eggroll_s": t_e, "openes_s": t_o, "ratio": t_e / t_o, "env": cfg.speed_env,
            "population": cfg.speed_population, "max_steps": cfg.speed_max_steps,
            "hidden": list(cfg.speed_hidden), "repeats": cfg.speed_repeats}


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    out = {"random_return": functools.partial(random_job, cfg)}
    if cfg.speed_repeats:
        out["speed"] = functools.partial(speed_job, cfg)
    for budget in cfg.envs:
        for method, rank in cfg.methods:
            c = es_config(cfg, budget, method, rank)
            out[f"{slug(budget.env_id)}__{slug(c.label)}"] = functools.partial(es_job, c, seeds)
    caps = {b.env_id: b.max_steps for b in cfg.envs}
    for env_id, steps in cfg.ppo:
        out[f"{slug(env_id)}__ppo"] = functools.partial(ppo_job, env_id, steps, caps.get(env_id), seeds)
    return out


def combine(cfg: Config, seeds: tuple[int, ...], parts: dict) -> dict:
    """``{"random_return": {env: R}, "runs": {env: {method: run}}, "ppo": {env: run}, "speed": {...}}``."""
    runs: dict[str, dict[str, Any]] = {}
    for budget in cfg.envs:
        for method, rank in cfg.methods:
            label = es_config(cfg, budget, method, rank).label
            runs.setdefault(budget.env_id, {})[label] = parts[f"{slug(budget.env_id)}__{slug(label)}"]
    ppo_runs = {env_id: parts[f"{slug(env_id)}__ppo"] for env_id, _ in cfg.ppo}
    return {"random_return": parts["random_return"], "runs": runs, "ppo": ppo_runs, "speed": parts.get("speed"),
            "machine": machine_load()}


def cartpole_states(config: ESConfig, rs: RunState, seed_index: int = 0, steps: int = 200,
                    key: int = 0) -> np.ndarray:
    """(steps, 4) CartPole states (x, x_dot, theta, theta_dot) played by the mean policy of one
    seed of a (seed-batched) final state from :func:`lowrank_es.tasks.control_es.train`."""
    import jax
    import jax.numpy as jnp

    if config.env_id != "CartPole-v1":
        raise ValueError(f"config.env_id must be 'CartPole-v1', got {config.env_id!r}")
    env, env_params, spec = make_env(config.env_id)
    one = jax.tree_util.tree_map(lambda a: a[seed_index], rs)
    act = make_policy(spec, mean_params(config, one), None, one.stats if config.obs_norm else None)

    def body(carry, t):
        obs, state = carry
        obs, state, _, _, _, _ = env.step(jax.random.key(t), state, act(obs[None])[0], env_params)
        return (obs, state), jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot])

    _, traj = jax.lax.scan(body, env.reset(jax.random.key(key), env_params), jnp.arange(steps))
    return np.asarray(traj)


def plot_cartpole_strip(states: np.ndarray, frames: int = 8):
    """An image strip of CartPole frames drawn from the state (cart, pole of length 1)."""
    import matplotlib.pyplot as plt

    every = max(1, len(states) // frames)
    idx = list(range(0, len(states), every))[:frames]
    fig, axes = plt.subplots(1, len(idx), figsize=(1.6 * len(idx), 1.9))
    for ax, i in zip(np.atleast_1d(axes), idx):
        x, _, th, _ = states[i]
        ax.plot([-2.4, 2.4], [0, 0], color="0.6", lw=1)
        ax.add_patch(plt.Rectangle((x - 0.25, -0.1), 0.5, 0.2, color="tab:blue"))
        ax.plot([x, x + np.sin(th)], [0.1, 0.1 + np.cos(th)], color="tab:orange", lw=3)
        ax.set(xlim=(x - 1.2, x + 1.2), ylim=(-0.3, 1.3), aspect="equal", xticks=[], yticks=[])
        ax.set_title(f"t={i}", fontsize=8)
    return fig


def explore(env_id: str = "CartPole-v1", rank: int | None = 1, population: int = 32, sigma: float = 0.05,
            learning_rate: float = 0.03, env_steps: int = 30_000, seeds: int = 4):
    """Widget view: train one ES configuration (rank None = OpenES) on ``env_id`` from the quick
    scale's settings and plot its learning curve; on CartPole also draw the first seed's policy.
    The defaults are the quick scale's EGGROLL run (already compiled after it). Returns the
    figures and a short summary (seed-mean return before and after, environment steps used)."""
    import matplotlib.pyplot as plt

    base = SCALES["quick"]
    budget = EnvBudget(env_id, int(env_steps), base.envs[0].generations, base.envs[0].max_steps)
    cfg = es_config(dataclasses.replace(base, population=int(population), sigma=float(sigma),
                                        learning_rate=float(learning_rate)),
                    budget, "openes" if rank is None else "eggroll", None if rank is None else int(rank))
    curves, state = train(cfg, tuple(range(int(seeds))))
    record = {"scale": "widget", "data": {"random_return": {env_id: float("nan")}, "ppo": {},
                                          "runs": {env_id: {cfg.label: es_job_summary(cfg, curves)}}}}
    fig, ax = plt.subplots(figsize=(6, 3.2))
    plot_env_curves(ax, record, env_id)
    ax.set_title(f"{env_id}, {cfg.label}, N = {cfg.population}, σ = {cfg.sigma:g}, lr = {cfg.learning_rate:g}: "
                 f"final return {np.mean(curves['final_return']):.1f}", fontsize=9)
    ax.legend(fontsize=8)
    figs = [fig]
    summary = (f"return {np.mean(curves['initial_return']):.1f} -> {np.mean(curves['final_return']):.1f} "
               f"(mean of {int(seeds)} seeds) in {int(np.mean(curves['final_steps'])):,} environment steps")
    if env_id == "CartPole-v1":
        traj = cartpole_states(cfg, state, seed_index=0, steps=200)
        strip = plot_cartpole_strip(traj)
        strip.suptitle(f"seed 0's policy: max |pole angle| {np.abs(traj[:, 2]).max():.3f} rad over 200 steps",
                       fontsize=9)
        figs.append(strip)
    return figs, summary


def plots(record: dict) -> dict:
    return {"learning_curves": learning_curves_figure(record), "aggregate_iqm": aggregate_figure(record)}


EXPERIMENT = register(Experiment(
    name="rl", notebook="03_rl",
    summary="Does rank-1 EGGROLL learn gymnax control tasks as well as full-rank OpenES at the same "
            "environment-step budget, and is a generation faster?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, combine=combine, plots=plots,
))

"""Tabula-rasa reinforcement learning with evolution strategies on gymnax environments.

One loop drives EGGROLL (``rank=r``) and OpenES (``rank=None``) through
:class:`lowrank_es.es.eggroll.EGGROLL`, plus evosax's ``Open_ES`` as an independent
cross-check. A generation is:

1. every member ``i`` plays ``episodes`` episodes of at most ``max_steps`` steps
   (``lax.scan`` over time, ``vmap`` over episodes and members); the policy is
   :func:`lowrank_es.models.mlp.mlp_apply` with the member's factored noise, so no member's
   weights are ever materialised;
2. fitness = mean undiscounted episodic return of the member;
3. the mean is updated by the ES gradient; the observation-normalisation statistics
   (running mean / variance shared by the whole population) absorb every observation seen.

gymnax 1.x ``step`` returns ``(obs, state, reward, terminated, truncated, info)`` and
auto-resets; an episode ends at the first step where either flag is set (or when the
step budget ``max_steps`` runs out, which counts as truncation), and later rewards are masked.
All members of a generation see the same episode seeds (common random numbers).

Results are a tidy table: a list of dicts, one row per seed x generation x method.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.es.eggroll import EGGROLL, ESState
from lowrank_es.models.mlp import mlp_apply, mlp_init

PyTree = Any

ENV_IDS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "Breakout-MinAtar", "SpaceInvaders-MinAtar")
METHODS = ("eggroll", "openes", "openes_evosax")


# ---------------------------------------------------------------------------
# Environments
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What the policy needs to know about an environment."""

    env_id: str
    obs_dim: int
    discrete: bool
    action_dim: int  # number of actions (discrete) or action vector size (continuous)
    action_high: float  # bound of a continuous action (unused for discrete)
    max_steps: int  # the environment's own episode limit


def make_env(env_id: str, env_params: Any = None) -> tuple[Any, Any, EnvSpec]:
    """gymnax environment, its params and an :class:`EnvSpec`."""
    if env_id not in gymnax.registered_envs:
        raise ValueError(f"env_id must be a gymnax environment such as one of {ENV_IDS}, got {env_id!r}")
    env, default_params = gymnax.make(env_id)
    params = default_params if env_params is None else env_params
    obs_dim = int(np.prod(env.observation_space(params).shape))
    space = env.action_space(params)
    if hasattr(space, "n"):
        spec = EnvSpec(env_id, obs_dim, True, int(space.n), 0.0, int(params.max_steps_in_episode))
    else:
        spec = EnvSpec(env_id, obs_dim, False, int(np.prod(space.shape)), float(np.max(space.high)),
                       int(params.max_steps_in_episode))
    return env, params, spec


def policy_action(spec: EnvSpec, out: jax.Array) -> jax.Array:
    """Deterministic action from the network output. out: (..., action_dim)."""
    if spec.discrete:
        return jnp.argmax(out, axis=-1)
    return spec.action_high * jnp.tanh(out)


# ---------------------------------------------------------------------------
# Observation normalisation (running statistics shared by the population)
# ---------------------------------------------------------------------------


class ObsStats(NamedTuple):
    """Running mean / variance of observations (parallel Welford / Chan et al.)."""

    count: jax.Array  # scalar
    mean: jax.Array  # (obs_dim,)
    m2: jax.Array  # (obs_dim,) sum of squared deviations


def obs_stats_init(obs_dim: int) -> ObsStats:
    return ObsStats(jnp.asarray(1e-4, jnp.float32), jnp.zeros(obs_dim, jnp.float32), jnp.full(obs_dim, 1e-4, jnp.float32))


def obs_stats_merge(s: ObsStats, count: jax.Array, total: jax.Array, total_sq: jax.Array) -> ObsStats:
    """Merge a batch given by its count, sum and sum of squares into the running statistics."""
    bmean = total / jnp.maximum(count, 1.0)
    bm2 = jnp.maximum(total_sq - count * bmean**2, 0.0)
    n = s.count + count
    delta = bmean - s.mean
    mean = s.mean + delta * count / n
    m2 = s.m2 + bm2 + delta**2 * s.count * count / n
    return ObsStats(n, mean, m2)


def normalise_obs(s: ObsStats | None, obs: jax.Array, clip: float = 5.0) -> jax.Array:
    if s is None:
        return obs
    var = s.m2 / s.count
    return jnp.clip((obs - s.mean) / jnp.sqrt(var + 1e-8), -clip, clip)


# ---------------------------------------------------------------------------
# Rollout
# ---------------------------------------------------------------------------


class Rollout(NamedTuple):
    returns: jax.Array  # (E,) undiscounted return of each episode
    lengths: jax.Array  # (E,) steps taken
    terminated: jax.Array  # (E,) bool: ended by the environment's termination flag
    truncated: jax.Array  # (E,) bool: ended by the time limit (env's or the budget's)
    obs_count: jax.Array  # scalar: observations seen
    obs_sum: jax.Array  # (obs_dim,)
    obs_sumsq: jax.Array  # (obs_dim,)


def rollout(
    act: Callable[[jax.Array], jax.Array],
    env: Any,
    env_params: Any,
    keys: jax.Array,
    max_steps: int,
) -> Rollout:
    """Play ``len(keys)`` episodes of at most ``max_steps`` steps with ``act``.

    act: ((E, obs_dim) flat observations, step key) -> (E, ...) actions. keys: (E,) episode keys.
    Rewards after the first step with ``terminated or truncated`` are masked; an episode still
    running after ``max_steps`` steps counts as truncated.
    """
    E = keys.shape[0]
    reset_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, env_params)
    obs = obs.reshape(E, -1).astype(jnp.float32)
    obs_dim = obs.shape[1]

    def body(carry, t):
        obs, state, alive, ret, length, term, trunc, n, s, ss = carry
        action = act(obs, jax.random.fold_in(jax.random.fold_in(keys[0], 2), t))
        step_keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, 1), t))(keys)
        obs2, state2, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            step_keys, state, action, env_params)
        a = alive.astype(jnp.float32)
        n = n + a.sum()
        s = s + (a[:, None] * obs).sum(0)
        ss = ss + (a[:, None] * obs**2).sum(0)
        ret = ret + a * reward.astype(jnp.float32)
        length = length + alive.astype(jnp.int32)
        term = term | (alive & terminated)
        trunc = trunc | (alive & truncated & ~terminated)
        alive = alive & ~(terminated | truncated)
        return (obs2.reshape(E, -1).astype(jnp.float32), state2, alive, ret, length, term, trunc, n, s, ss), None

    init = (obs, state, jnp.ones(E, bool), jnp.zeros(E, jnp.float32), jnp.zeros(E, jnp.int32),
            jnp.zeros(E, bool), jnp.zeros(E, bool), jnp.zeros((), jnp.float32), jnp.zeros(obs_dim, jnp.float32),
            jnp.zeros(obs_dim, jnp.float32))
    (obs, state, alive, ret, length, term, trunc, n, s, ss), _ = jax.lax.scan(body, init, jnp.arange(max_steps))
    trunc = trunc | alive  # still running when the budget ran out
    return Rollout(ret, length, term, trunc, n, s, ss)


def make_policy(spec: EnvSpec, params: PyTree, noise: PyTree | None, stats: ObsStats | None,
                activation: Callable = jnp.tanh) -> Callable[[jax.Array], jax.Array]:
    """act(obs) for the mean ``params`` perturbed by one member's factored ``noise``."""

    def act(obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return policy_action(spec, mlp_apply(params, normalise_obs(stats, obs), noise, activation=activation))

    return act


# ---------------------------------------------------------------------------
# Configuration and training
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ESConfig:
    """One ES run (CleanRL style: every knob in one place)."""

    env_id: str = "CartPole-v1"
    method: str = "eggroll"  # eggroll | openes | openes_evosax
    rank: int | None = 1  # ignored unless method == "eggroll"
    population: int = 64
    sigma: float = 0.05
    learning_rate: float = 0.03  # Adam step size
    generations: int = 30
    episodes: int = 1  # episodes per member per generation (fitness = mean return)
    max_steps: int | None = None  # episode budget; None = the environment's limit
    hidden: tuple[int, ...] = (64, 64)
    obs_norm: bool = True
    eval_episodes: int = 8  # episodes to score the mean after each generation
    seeds: int = 3
    seed0: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.method == "eggroll" and (self.rank is None or self.rank < 1):
            raise ValueError(f"rank must be an integer >= 1 for method 'eggroll', got {self.rank!r}")
        for name in ("population", "generations", "episodes", "eval_episodes", "seeds"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.population < 2 or self.population % 2:
            raise ValueError(f"population must be an even integer >= 2, got {self.population}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")

    @property
    def label(self) -> str:
        if self.method == "eggroll":
            return f"EGGROLL r={self.rank}"
        return {"openes": "OpenES", "openes_evosax": "OpenES (evosax)"}[self.method]

    def strategy(self) -> EGGROLL:
        rank = self.rank if self.method == "eggroll" else None
        return EGGROLL(sigma=self.sigma, population=self.population, rank=rank, antithetic=True,
                       fitness_shaping="centered_rank", optimizer=optax.adam(self.learning_rate), clip_rank=True)


def init_policy(key: jax.Array, spec: EnvSpec, hidden: Sequence[int]) -> PyTree:
    """MLP with a small last layer (outputs near zero at the start)."""
    params = mlp_init(key, (spec.obs_dim, *hidden, spec.action_dim))
    params[-1] = {"W": params[-1]["W"] * 0.1, "b": params[-1]["b"]}
    return params


class RunState(NamedTuple):
    es: Any  # ESState, or evosax state
    stats: ObsStats
    key: jax.Array


def _episode_keys(key: jax.Array, generation: jax.Array, n: int) -> jax.Array:
    return jax.random.split(jax.random.fold_in(key, generation), n)


def make_generation(config: ESConfig) -> tuple[Callable, Callable, EnvSpec]:
    """Return ``(init(seed_key) -> RunState, generation(RunState, g) -> (RunState, metrics))``.

    Both are pure and vmappable over seeds. ``metrics``: fitness_mean, fitness_max, eval_return,
    env_steps (steps taken by the population in this generation).
    """
    env, env_params, spec = make_env(config.env_id)
    T = spec.max_steps if config.max_steps is None else min(config.max_steps, spec.max_steps)
    N = config.population

    def stats_or_none(stats: ObsStats) -> ObsStats | None:
        return stats if config.obs_norm else None

    def evaluate_mean(params, stats, key, g):
        keys = _episode_keys(jax.random.fold_in(key, 2), g, config.eval_episodes)
        ro = rollout(make_policy(spec, params, None, stats_or_none(stats)), env, env_params, keys, T)
        return ro.returns.mean()

    def member_rollout(params, noise, stats, keys):
        return rollout(make_policy(spec, params, noise, stats_or_none(stats)), env, env_params, keys, T)

    def finish(stats, ros: Rollout):
        new_stats = obs_stats_merge(stats, ros.obs_count.sum(), ros.obs_sum.sum(0), ros.obs_sumsq.sum(0))
        return new_stats if config.obs_norm else stats

    if config.method in ("eggroll", "openes"):
        es = config.strategy()

        def init(key):
            kp, ke, kr = jax.random.split(key, 3)
            params = init_policy(kp, spec, config.hidden)
            return RunState(es.init(ke, params), obs_stats_init(spec.obs_dim), kr)

        def generation(rs: RunState, g):
            keys = _episode_keys(jax.random.fold_in(rs.key, 1), g, config.episodes)
            ros = jax.vmap(lambda i: member_rollout(rs.es.params, es.member_noise(rs.es, i), rs.stats, keys))(
                jnp.arange(N))
            fitness = ros.returns.mean(axis=1)
            new_es, _ = es.tell(rs.es, fitness)
            new_stats = finish(rs.stats, ros)
            ev = evaluate_mean(new_es.params, new_stats, rs.key, g)
            m = {"fitness_mean": fitness.mean(), "fitness_max": fitness.max(), "eval_return": ev,
                 "env_steps": ros.lengths.sum()}
            return RunState(new_es, new_stats, rs.key), m

        return init, generation, spec

    # evosax Open_ES: the independent cross-check (materialised members; it minimises).
    from evosax.algorithms import Open_ES

    template = init_policy(jax.random.key(0), spec, config.hidden)
    strat = Open_ES(population_size=N, solution=template, use_antithetic_sampling=True,
                    optimizer=optax.adam(config.learning_rate), std_schedule=optax.constant_schedule(config.sigma))
    es_params = strat.default_params

    def init(key):
        kp, ke, kr = jax.random.split(key, 3)
        params = init_policy(kp, spec, config.hidden)
        return RunState(strat.init(ke, params, es_params), obs_stats_init(spec.obs_dim), kr)

    def generation(rs: RunState, g):
        kask = jax.random.fold_in(jax.random.fold_in(rs.key, 3), g)
        pop, st = strat.ask(kask, rs.es, es_params)
        keys = _episode_keys(jax.random.fold_in(rs.key, 1), g, config.episodes)
        ros = jax.vmap(lambda p: member_rollout(p, None, rs.stats, keys))(pop)
        fitness = ros.returns.mean(axis=1)
        st, _ = strat.tell(kask, pop, -fitness, st, es_params)
        new_stats = finish(rs.stats, ros)
        ev = evaluate_mean(strat.get_mean(st), new_stats, rs.key, g)
        m = {"fitness_mean": fitness.mean(), "fitness_max": fitness.max(), "eval_return": ev,
             "env_steps": ros.lengths.sum()}
        return RunState(st, new_stats, rs.key), m

    return init, generation, spec


def mean_params(config: ESConfig, rs: RunState) -> PyTree:
    """The search distribution's mean as MLP params (works for both back ends)."""
    if config.method == "openes_evosax":
        from evosax.algorithms import Open_ES

        _, _, spec = make_env(config.env_id)
        template = init_policy(jax.random.key(0), spec, config.hidden)
        return Open_ES(population_size=config.population, solution=template).get_mean(rs.es)
    return rs.es.params


@functools.lru_cache(maxsize=32)
def _compiled(config: ESConfig):
    """Initial (seed-batched) state and the compiled vmapped generation of a config (cached, so
    re-running a config, e.g. from a widget, does not compile again)."""
    init, generation, spec = make_generation(config)
    seeds = jnp.arange(config.seed0, config.seed0 + config.seeds)
    rs = jax.jit(jax.vmap(init))(jax.vmap(jax.random.key)(seeds))
    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(generation, in_axes=(0, None))).lower(rs, jnp.asarray(0, jnp.int32)).compile()
    return rs, compiled, time.perf_counter() - t0


def train(config: ESConfig, *, progress: Callable | None = None) -> tuple[list[dict[str, Any]], RunState]:
    """Run ``config.seeds`` seeds (vmapped) for ``config.generations`` generations.

    Returns the tidy rows (one per seed x generation) and the final (seed-batched) state.
    ``seconds`` is cumulative wall-clock of the generations (compile time excluded, reported
    once as ``compile_seconds``).
    """
    rs, compiled, compile_s = _compiled(config)
    seeds = np.arange(config.seed0, config.seed0 + config.seeds)
    rows: list[dict[str, Any]] = []
    steps = np.zeros(config.seeds)
    elapsed = 0.0
    it = range(config.generations)
    if progress is not None:
        it = progress(it, desc=f"{config.env_id} {config.label}")
    for g in it:
        t = time.perf_counter()
        rs, m = compiled(rs, jnp.asarray(g, jnp.int32))
        m = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(m))
        elapsed += time.perf_counter() - t
        steps += m["env_steps"]
        for s in range(config.seeds):
            rows.append({
                "env": config.env_id, "method": config.label, "rank": config.rank if config.method == "eggroll" else None,
                "population": config.population, "sigma": config.sigma, "learning_rate": config.learning_rate,
                "seed": int(seeds[s]), "generation": g + 1, "env_steps": int(steps[s]), "seconds": elapsed,
                "fitness_mean": float(m["fitness_mean"][s]), "fitness_max": float(m["fitness_max"][s]),
                "eval_return": float(m["eval_return"][s]), "compile_seconds": compile_s,
            })
    return rows, rs


def generation_seconds(config: ESConfig, repeats: int = 3) -> float:
    """Median wall-clock seconds of one compiled generation (one seed), compile excluded."""
    init, generation, _ = make_generation(config)
    rs = jax.jit(init)(jax.random.key(config.seed0))
    gen = jax.jit(generation).lower(rs, jnp.asarray(0, jnp.int32)).compile()
    jax.block_until_ready(gen(rs, jnp.asarray(0, jnp.int32)))
    times = []
    for g in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(gen(rs, jnp.asarray(g + 1, jnp.int32)))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def random_return(env_id: str, episodes: int = 32, seed: int = 0, max_steps: int | None = None) -> float:
    """Mean return of the uniform random policy (the 0 of normalised scores)."""
    env, env_params, spec = make_env(env_id)
    T = spec.max_steps if max_steps is None else min(max_steps, spec.max_steps)
    space = env.action_space(env_params)

    def act(obs, key):
        return jax.vmap(space.sample)(jax.random.split(key, obs.shape[0]))

    keys = jax.random.split(jax.random.key(seed), episodes)
    return float(jax.jit(lambda k: rollout(act, env, env_params, k, T).returns.mean())(keys))


# ---------------------------------------------------------------------------
# Tidy-table helpers
# ---------------------------------------------------------------------------


def select(rows: list[dict[str, Any]], **where: Any) -> list[dict[str, Any]]:
    """Rows whose fields equal every ``where`` item (``group=None`` matches rows without one)."""
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def final_returns(rows: list[dict[str, Any]], env: str, method: str, last: int = 1, **where: Any) -> np.ndarray:
    """Per-seed mean of ``eval_return`` over the last ``last`` generations. -> (seeds,)"""
    sel = select(rows, env=env, method=method, **where)
    if not sel:
        raise ValueError(f"no rows for env={env!r}, method={method!r}")
    gmax = max(r["generation"] for r in sel if "generation" in r)
    out: dict[int, list[float]] = {}
    for r in sel:
        if r["generation"] > gmax - last:
            out.setdefault(r["seed"], []).append(r["eval_return"])
    return np.array([np.mean(out[s]) for s in sorted(out)])


def curve(rows: list[dict[str, Any]], env: str, method: str, x: str = "env_steps",
          **where: Any) -> tuple[np.ndarray, np.ndarray]:
    """x (gens,) averaged over seeds and returns (seeds, gens) for one env and method."""
    sel = select(rows, env=env, method=method, **where)
    if not sel:
        raise ValueError(f"no rows for env={env!r}, method={method!r}")
    seeds = sorted({r["seed"] for r in sel})
    gens = sorted({r["generation"] for r in sel})
    xs = np.zeros((len(seeds), len(gens)))
    ys = np.zeros((len(seeds), len(gens)))
    si = {s: i for i, s in enumerate(seeds)}
    gi = {g: i for i, g in enumerate(gens)}
    for r in sel:
        xs[si[r["seed"]], gi[r["generation"]]] = r[x]
        ys[si[r["seed"]], gi[r["generation"]]] = r["eval_return"]
    return xs.mean(0), ys


def save_rows(path: str | Path, rows: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"meta": meta or {}, "rows": rows}, separators=(",", ":")) + "\n")


def load_rows(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    data = json.loads(Path(path).read_text())
    return data["rows"], data.get("meta", {})


# ---------------------------------------------------------------------------
# Analysis and pictures
# ---------------------------------------------------------------------------


def finals_by_env(rows: list[dict[str, Any]], methods: Sequence[str], last: int = 1,
                  **where: Any) -> dict[str, dict[str, np.ndarray]]:
    """{env: {method: per-seed final returns}} for every env that has all ``methods``."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for env in dict.fromkeys(r["env"] for r in rows):
        have = {m for r in rows if r["env"] == env for m in [r["method"]]}
        if all(m in have for m in methods):
            out[env] = {}
            for m in methods:
                w = where if m != "PPO" else {}
                out[env][m] = final_returns(rows, env, m, last, **w)
    return out


def plot_curves(ax, rows: list[dict[str, Any]], env: str, methods: Sequence[str], x: str = "env_steps",
                **where: Any) -> None:
    """Mean return over seeds (line) with a +-1 standard-error band, one line per method."""
    for m in methods:
        w = where if m != "PPO" else {}
        if not select(rows, env=env, method=m, **w):
            continue
        xs, ys = curve(rows, env, m, x, **w)
        with warnings.catch_warnings():  # PPO has no finished episode (nan) in its first updates
            warnings.simplefilter("ignore", RuntimeWarning)
            mu = np.nanmean(ys, 0)
            se = np.nanstd(ys, 0) / np.sqrt(ys.shape[0])
        ax.plot(xs, mu, label=f"{m} ({ys.shape[0]} seeds)")
        ax.fill_between(xs, mu - se, mu + se, alpha=0.2)
    ax.set_xlabel({"env_steps": "environment steps", "seconds": "wall-clock (s)"}.get(x, x))
    ax.set_ylabel("return of the mean policy")
    ax.set_title(env)


def time_to_threshold(rows: list[dict[str, Any]], env: str, method: str, threshold: float,
                      **where: Any) -> tuple[float | None, float | None]:
    """(environment steps, seconds) at which the seed-mean return first reaches ``threshold``
    (None if never)."""
    out = []
    for x in ("env_steps", "seconds"):
        xs, ys = curve(rows, env, method, x, **where)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            hit = np.nanmean(ys, 0) >= threshold
        out.append(float(xs[np.argmax(hit)]) if hit.any() else None)
    return out[0], out[1]


def cartpole_states(config: ESConfig, rs: RunState, seed_index: int = 0, steps: int = 200,
                    key: int = 0) -> np.ndarray:
    """(steps, 4) CartPole states (x, x_dot, theta, theta_dot) played by the mean policy of one seed."""
    if config.env_id != "CartPole-v1":
        raise ValueError(f"config.env_id must be 'CartPole-v1', got {config.env_id!r}")
    env, env_params, spec = make_env(config.env_id)
    one = jax.tree_util.tree_map(lambda a: a[seed_index], rs)
    params = mean_params(config, one)
    act = make_policy(spec, params, None, one.stats if config.obs_norm else None)

    def body(carry, t):
        obs, state = carry
        a = act(obs[None])[0]
        obs, state, _, _, _, _ = env.step(jax.random.key(t), state, a, env_params)
        return (obs, state), jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot])

    obs, state = env.reset(jax.random.key(key), env_params)
    _, traj = jax.lax.scan(body, (obs, state), jnp.arange(steps))
    return np.asarray(traj)


def plot_cartpole_strip(states: np.ndarray, frames: int = 8, every: int | None = None):
    """An image strip of CartPole frames drawn from the state (cart, pole of length 1)."""
    import matplotlib.pyplot as plt

    every = every or max(1, len(states) // frames)
    idx = list(range(0, len(states), every))[:frames]
    fig, axes = plt.subplots(1, len(idx), figsize=(1.6 * len(idx), 1.9))
    for ax, i in zip(np.atleast_1d(axes), idx):
        x, _, th, _ = states[i]
        ax.plot([-2.4, 2.4], [0, 0], color="0.6", lw=1)
        ax.add_patch(plt.Rectangle((x - 0.25, -0.1), 0.5, 0.2, color="tab:blue"))
        ax.plot([x, x + np.sin(th)], [0.1, 0.1 + np.cos(th)], color="tab:orange", lw=3)
        ax.set_xlim(x - 1.2, x + 1.2)
        ax.set_ylim(-0.3, 1.3)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"t={i}", fontsize=8)
    return fig


# ---------------------------------------------------------------------------
# The committed experiment (``python -m lowrank_es.rl``)
# ---------------------------------------------------------------------------

#: Per-environment ES budget of the committed run: (generations, max_steps per episode).
FULL_BUDGET = {
    "CartPole-v1": (40, None),
    "Acrobot-v1": (40, None),
    "Pendulum-v1": (60, None),
    "Breakout-MinAtar": (30, 500),
    "SpaceInvaders-MinAtar": (30, 500),
}


def full_jobs(seeds: int = 5) -> list[tuple[str, ESConfig]]:
    """(group, config) of the committed run: main comparison, rank sweep, population sweep,
    and the evosax cross-check."""
    jobs = []
    for env_id, (gens, T) in FULL_BUDGET.items():
        for method, rank in (("eggroll", 1), ("openes", None)):
            jobs.append(("main", ESConfig(env_id=env_id, method=method, rank=rank, generations=gens, max_steps=T,
                                          seeds=seeds)))
    for rank in (4, 16):
        jobs.append(("rank", ESConfig(env_id="CartPole-v1", method="eggroll", rank=rank, generations=40, seeds=seeds)))
    for pop in (16, 32, 128):
        jobs.append(("population", ESConfig(env_id="CartPole-v1", method="eggroll", rank=1, population=pop,
                                            generations=40, seeds=seeds)))
    for method in ("openes", "openes_evosax"):
        jobs.append(("crosscheck", ESConfig(env_id="CartPole-v1", method=method, rank=None, generations=20,
                                            population=32, seeds=10, seed0=100)))
    return jobs


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="ES on gymnax: the committed run of notebooks/03_rl.ipynb")
    ap.add_argument("--out", default="figures/03_rl__es_results.json")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--groups", default="main,rank,population,crosscheck")
    ap.add_argument("--envs", default=",".join(ENV_IDS))
    args = ap.parse_args(argv)
    groups = set(args.groups.split(","))
    envs = set(args.envs.split(","))
    out = Path(args.out)
    rows, meta = (load_rows(out) if out.exists() else ([], {}))
    meta.setdefault("configs", [])
    meta.setdefault("random_return", {})
    for env_id in envs:
        if env_id not in meta["random_return"]:
            T = FULL_BUDGET.get(env_id, (0, None))[1]
            meta["random_return"][env_id] = random_return(env_id, max_steps=T)
    done = {(c["group"], json.dumps(c["config"], sort_keys=True)) for c in meta["configs"]}
    for group, cfg in full_jobs(args.seeds):
        cdict = dataclasses.asdict(cfg)
        if group not in groups or cfg.env_id not in envs or (group, json.dumps(cdict, sort_keys=True)) in done:
            continue
        t = time.perf_counter()
        new, _ = train(cfg)
        for r in new:
            r["group"] = group
        rows += new
        meta["configs"].append({"group": group, "config": cdict, "wall_seconds": time.perf_counter() - t})
        meta["device"] = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
        save_rows(out, rows, meta)
        fin = final_returns(new, cfg.env_id, cfg.label)
        print(f"{group:10s} {cfg.env_id:22s} {cfg.label:16s} final {np.round(fin, 1)}  ({time.perf_counter() - t:.1f} s)",
              flush=True)


if __name__ == "__main__":
    main()

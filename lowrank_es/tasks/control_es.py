"""Evolution strategies on gymnax control tasks: one loop for EGGROLL (``rank=r``) and OpenES
(``rank=None``) through :class:`lowrank_es.es.eggroll.EGGROLL`, plus evosax's ``Open_ES`` as an
independent cross-check. A generation is:

1. every member plays ``episodes`` episodes of at most ``max_steps`` steps
   (:func:`lowrank_es.tasks.control.rollout`, vmapped over members); the policy is
   :func:`lowrank_es.models.mlp.mlp_apply` with the member's factored noise, so no member's
   weights are ever materialised; all members see the same episode seeds (common random numbers);
2. fitness = mean undiscounted episodic return of the member;
3. the mean is updated by the ES gradient; the observation-normalisation statistics (shared by
   the population) absorb every observation seen;
4. the new mean policy is scored on ``eval_episodes`` episodes (the learning curve).

With an environment-step budget (``env_steps``) each seed trains on at most that many steps:
a generation whose steps would take the seed past the budget is discarded and the seed stops,
so two methods compared at one budget have used the same number of environment steps to within
one generation. Seeds are vmapped; the whole generation is one compiled function.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.es.eggroll import EGGROLL
from lowrank_es.models.mlp import mlp_apply, mlp_init
from lowrank_es.tasks.control import (
    EnvSpec,
    ObsStats,
    Rollout,
    episode_limit,
    make_env,
    normalise_obs,
    obs_stats_init,
    obs_stats_merge,
    policy_action,
    rollout,
)

PyTree = Any
METHODS = ("eggroll", "openes", "openes_evosax")


@dataclasses.dataclass(frozen=True)
class ESConfig:
    """One ES configuration (every knob in one place); seeds are given to :func:`train`."""

    env_id: str = "CartPole-v1"
    method: str = "eggroll"  # eggroll | openes | openes_evosax
    rank: int | None = 1  # ignored unless method == "eggroll"
    population: int = 64
    sigma: float = 0.05
    learning_rate: float = 0.03  # Adam step size
    env_steps: int | None = None  # training budget per seed; None: exactly `generations` generations
    generations: int = 30  # generations (the cap when env_steps is set)
    episodes: int = 1  # episodes per member per generation (fitness = mean return)
    max_steps: int | None = None  # episode cap; None = the environment's limit
    hidden: tuple[int, ...] = (64, 64)
    obs_norm: bool = True
    eval_episodes: int = 4  # episodes scoring the mean after each generation (the curve)
    final_episodes: int = 32  # episodes scoring the final mean policy

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.method == "eggroll" and (not isinstance(self.rank, int) or self.rank < 1):
            raise ValueError(f"rank must be an integer >= 1 for method 'eggroll', got {self.rank!r}")
        for name in ("population", "generations", "episodes", "eval_episodes", "final_episodes"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.population < 2 or self.population % 2:
            raise ValueError(f"population must be an even integer >= 2, got {self.population}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.env_steps is not None and (not isinstance(self.env_steps, int) or self.env_steps < 1):
            raise ValueError(f"env_steps must be an integer >= 1 or None, got {self.env_steps!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ValueError(f"max_steps must be an integer >= 1 or None, got {self.max_steps!r}")

    @property
    def label(self) -> str:
        if self.method == "eggroll":
            return f"EGGROLL r={self.rank}"
        return {"openes": "OpenES", "openes_evosax": "OpenES (evosax)"}[self.method]

    def strategy(self) -> EGGROLL:
        """The :class:`EGGROLL` of this config (``rank=None`` for both OpenES methods)."""
        rank = self.rank if self.method == "eggroll" else None
        # Adam with its step size as optimiser state (inject_hyperparams): :func:`compiled` sets
        # it at init, so runs that differ only in learning rate share one compiled generation.
        return EGGROLL(sigma=self.sigma, population=self.population, rank=rank, antithetic=True,
                       fitness_shaping="centered_rank",
                       optimizer=optax.inject_hyperparams(optax.adam)(learning_rate=self.learning_rate),
                       clip_rank=True)


def init_policy(key: jax.Array, spec: EnvSpec, hidden: Sequence[int]) -> PyTree:
    """MLP with a small last layer (outputs near zero at the start)."""
    params = mlp_init(key, (spec.obs_dim, *hidden, spec.action_dim))
    params[-1] = {"W": params[-1]["W"] * 0.1, "b": params[-1]["b"]}
    return params


def make_policy(spec: EnvSpec, params: PyTree, noise: PyTree | None, stats: ObsStats | None,
                activation: Callable = jnp.tanh) -> Callable[..., jax.Array]:
    """act(obs) for the mean ``params`` perturbed by one member's factored ``noise``."""

    def act(obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return policy_action(spec, mlp_apply(params, normalise_obs(stats, obs), noise, activation=activation))

    return act


#: The budget of a run without one (more steps than an int32 counter reaches).
NO_BUDGET = 2**31 - 1


class RunState(NamedTuple):
    """One seed's run: the strategy's state, observation statistics, base key, the environment
    steps used so far, the budget and whether it is spent. (The budget is state, not config,
    so runs that differ only in budget share one compiled generation.)"""

    es: Any  # ESState, or evosax state
    stats: ObsStats
    key: jax.Array
    steps: jax.Array  # int32 scalar
    budget: jax.Array  # int32 scalar
    done: jax.Array  # bool scalar


def episode_keys(key: jax.Array, generation: jax.Array, n: int) -> jax.Array:
    """The ``n`` episode keys of ``generation`` (shared by every member: common random numbers)."""
    return jax.random.split(jax.random.fold_in(key, generation), n)


def make_generation(config: ESConfig) -> tuple[Callable, Callable, Callable, EnvSpec]:
    """``(init(key, budget, sigma, learning_rate) -> RunState, generation(RunState, g) ->
    (RunState, metrics), final_score(RunState) -> (final_episodes,) returns, spec)``, all pure
    and vmappable over seeds; ``config.env_steps`` is not used here (the budget is part of the
    state), nor are ``config.sigma`` / ``config.learning_rate`` for the two in-package methods
    (they are state too: :meth:`EGGROLL.with_sigma` and the optimiser's injected step size).

    ``metrics``: ``eval_return`` (the mean policy after the generation), ``env_steps``
    (cumulative, this seed), ``fitness_mean``, ``fitness_max``, ``accepted`` (the generation
    fitted in the budget and was applied).
    """
    env, env_params, spec = make_env(config.env_id)
    T = episode_limit(spec, config.max_steps)

    def stats_or_none(stats: ObsStats) -> ObsStats | None:
        return stats if config.obs_norm else None

    def score(params, stats, key, n):
        ro = rollout(make_policy(spec, params, None, stats_or_none(stats)), env, env_params,
                     jax.random.split(key, n), T)
        return ro.returns

    def member_rollout(params, noise, stats, keys) -> Rollout:
        return rollout(make_policy(spec, params, noise, stats_or_none(stats)), env, env_params, keys, T)

    if config.method in ("eggroll", "openes"):
        es = config.strategy()

        def new_es_state(key, params, sigma, learning_rate):
            state = es.init(key, params)
            state = state._replace(opt_state=_with_learning_rate(state.opt_state, learning_rate))
            return es.with_sigma(state, sigma)

        def population_step(rs: RunState, keys):
            # map_members, not evaluate: each member returns its whole Rollout (returns, lengths,
            # observation statistics), not only a scalar fitness.
            ros = es.map_members(rs.es, lambda p, noise, i: member_rollout(p, noise, rs.stats, keys))
            fitness = ros.returns.mean(axis=1)
            new_es, _ = es.tell(rs.es, fitness)
            return new_es, es_mean(rs.es), ros, fitness

        def es_mean(state):
            return state.params
    else:
        # evosax Open_ES: the independent cross-check (materialised members; it minimises).
        from evosax.algorithms import Open_ES

        template = init_policy(jax.random.key(0), spec, config.hidden)
        strat = Open_ES(population_size=config.population, solution=template, use_antithetic_sampling=True,
                        optimizer=optax.adam(config.learning_rate),
                        std_schedule=optax.constant_schedule(config.sigma))
        es_params = strat.default_params

        def new_es_state(key, params, sigma, learning_rate):
            # evosax's sigma and step size are config (baked into strat): compiled per value
            return strat.init(key, params, es_params)

        def population_step(rs: RunState, keys):
            kask = jax.random.fold_in(jax.random.fold_in(rs.key, 3), rs.es.generation_counter)
            pop, st = strat.ask(kask, rs.es, es_params)
            ros = jax.vmap(lambda p: member_rollout(p, None, rs.stats, keys))(pop)
            fitness = ros.returns.mean(axis=1)
            st, _ = strat.tell(kask, pop, -fitness, st, es_params)
            return st, None, ros, fitness

        def es_mean(state):
            return strat.get_mean(state)

    def init(key, budget, sigma, learning_rate):
        kp, ke, kr = jax.random.split(key, 3)
        params = init_policy(kp, spec, config.hidden)
        return RunState(new_es_state(ke, params, sigma, learning_rate), obs_stats_init(spec.obs_dim), kr,
                        jnp.zeros((), jnp.int32), jnp.asarray(budget, jnp.int32), jnp.zeros((), bool))

    def generation(rs: RunState, g):
        keys = episode_keys(jax.random.fold_in(rs.key, 1), g, config.episodes)
        new_es, _, ros, fitness = population_step(rs, keys)
        new_stats = rs.stats
        if config.obs_norm:
            new_stats = obs_stats_merge(rs.stats, ros.obs_count.sum(), ros.obs_sum.sum(0), ros.obs_sumsq.sum(0))
        total = rs.steps + ros.lengths.sum()
        fits = total <= rs.budget
        accept = ~rs.done & fits
        keep = functools.partial(jax.tree_util.tree_map, lambda new, old: jnp.where(accept, new, old))
        out = RunState(keep(new_es, rs.es), keep(new_stats, rs.stats), rs.key,
                       jnp.where(accept, total, rs.steps), rs.budget, rs.done | ~fits)
        ev = score(es_mean(out.es), out.stats, jax.random.fold_in(jax.random.fold_in(rs.key, 2), g),
                   config.eval_episodes).mean()
        m = {"eval_return": ev, "env_steps": out.steps, "fitness_mean": fitness.mean(),
             "fitness_max": fitness.max(), "accepted": accept}
        return out, m

    def final_score(rs: RunState):
        return score(es_mean(rs.es), rs.stats, jax.random.fold_in(rs.key, 4), config.final_episodes)

    return init, generation, final_score, spec


def mean_params(config: ESConfig, rs: RunState) -> PyTree:
    """The search distribution's mean as MLP params (works for both back ends)."""
    if config.method == "openes_evosax":
        from evosax.algorithms import Open_ES

        _, _, spec = make_env(config.env_id)
        template = init_policy(jax.random.key(0), spec, config.hidden)
        return Open_ES(population_size=config.population, solution=template).get_mean(rs.es)
    return rs.es.params


def _with_learning_rate(opt_state: Any, learning_rate: jax.Array) -> Any:
    """An ``inject_hyperparams`` optimiser state with its step size replaced."""
    hp = dict(opt_state.hyperparams)
    hp["learning_rate"] = jnp.asarray(learning_rate, jnp.asarray(hp["learning_rate"]).dtype)
    return opt_state._replace(hyperparams=hp)


#: The sigma and step size a compile key carries for the in-package methods (the real ones are
#: passed to ``init`` as state).
_KEY_SIGMA, _KEY_LR = 1.0, 1.0


@functools.lru_cache(maxsize=32)
def _compiled(config: ESConfig):
    init, generation, final_score, spec = make_generation(config)
    return (jax.jit(jax.vmap(init, in_axes=(0, None, None, None))), jax.jit(jax.vmap(generation, in_axes=(0, None))),
            jax.jit(jax.vmap(final_score)), spec)


def compiled(config: ESConfig):
    """Jitted, seed-vmapped ``init(keys, budget, sigma, learning_rate)``, ``generation`` and
    ``final_score`` of a config, cached by everything but its budget and generation count and
    (EGGROLL, OpenES) its sigma and learning rate, so re-running a config with another budget,
    sigma or step size (a widget's slider) does not compile again."""
    key = dataclasses.replace(config, env_steps=None, generations=1)
    if config.method != "openes_evosax":
        key = dataclasses.replace(key, sigma=_KEY_SIGMA, learning_rate=_KEY_LR)
    return _compiled(key)


def train(config: ESConfig, seeds: Sequence[int], *, progress: Callable | None = None) -> tuple[dict[str, Any], RunState]:
    """Train ``seeds`` (vmapped) until every seed has spent its budget (or ``generations``).

    Returns ``(curves, final state)``; curves holds, per seed and generation (``(S, G)``):
    ``eval_return``, ``env_steps`` (cumulative), ``fitness_mean``, ``fitness_max``,
    ``accepted``; per seed: ``initial_return`` and ``final_return`` (mean of ``final_episodes``
    episodes of the initial and the final mean policy, the same episodes), ``final_steps``, ``generations_used``; and ``seconds`` (G,), the cumulative
    wall-clock of the generations (compile excluded, reported once as ``compile_seconds``).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    init, generation, final_score, _ = compiled(config)
    budget = NO_BUDGET if config.env_steps is None else config.env_steps
    rs = init(jax.vmap(jax.random.key)(jnp.asarray(seeds)), jnp.asarray(budget, jnp.int32),
              jnp.float32(config.sigma), jnp.float32(config.learning_rate))
    initial = np.asarray(final_score(rs)).mean(axis=1)
    t0 = time.perf_counter()
    generation.lower(rs, jnp.asarray(0, jnp.int32)).compile()
    compile_s = time.perf_counter() - t0
    metrics, seconds, elapsed = [], [], 0.0
    it = range(config.generations)
    if progress is not None:
        it = progress(it, desc=f"{config.env_id} {config.label}")
    for g in it:
        t = time.perf_counter()
        rs, m = generation(rs, jnp.asarray(g, jnp.int32))
        m = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(m))
        elapsed += time.perf_counter() - t
        metrics.append(m)
        seconds.append(elapsed)
        if bool(np.asarray(rs.done).all()):
            break
    curves = {k: np.stack([m[k] for m in metrics], axis=1) for k in metrics[0]}
    final = np.asarray(final_score(rs))
    curves.update(initial_return=initial, final_return=final.mean(axis=1), final_steps=np.asarray(rs.steps),
                  generations_used=curves["accepted"].sum(axis=1), seconds=np.asarray(seconds),
                  compile_seconds=compile_s, seeds=np.asarray(seeds))
    return curves, rs


def generation_seconds(configs: Sequence[ESConfig], repeats: int = 5) -> list[float]:
    """Median wall-clock seconds of one compiled generation (one seed) of each config, measured
    side by side: the configs take turns in every repeat, so a change in the machine's load
    affects them alike. Compile time is excluded."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    runs = []
    for cfg in configs:
        init, generation, _, _ = make_generation(cfg)
        rs = jax.jit(init)(jax.random.key(0), NO_BUDGET, jnp.float32(cfg.sigma), jnp.float32(cfg.learning_rate))
        gen = jax.jit(generation).lower(rs, jnp.asarray(0, jnp.int32)).compile()
        jax.block_until_ready(gen(rs, jnp.asarray(0, jnp.int32)))
        runs.append((gen, rs))
    times = [[] for _ in configs]
    for g in range(repeats):
        for i, (gen, rs) in enumerate(runs):
            t = time.perf_counter()
            jax.block_until_ready(gen(rs, jnp.asarray(g + 1, jnp.int32)))
            times[i].append(time.perf_counter() - t)
    return [float(np.median(t)) for t in times]

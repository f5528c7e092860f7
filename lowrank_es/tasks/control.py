"""Control tasks from gymnax: the environment wrapper, observation normalisation and batched
episode rollouts that the ES loop (:mod:`lowrank_es.tasks.control_es`) and the PPO baseline use.

gymnax 1.x ``step`` returns ``(obs, state, reward, terminated, truncated, info)`` and
auto-resets; an episode ends at the first step where either flag is set (or when the step
budget ``max_steps`` runs out, which counts as truncation), and later rewards are masked.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import gymnax
import jax
import jax.numpy as jnp
import numpy as np

ENV_IDS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "Breakout-MinAtar", "SpaceInvaders-MinAtar")


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What a policy needs to know about an environment."""

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


def episode_limit(spec: EnvSpec, max_steps: int | None) -> int:
    """The step cap of an episode: the environment's own limit, or ``max_steps`` if smaller."""
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be an integer >= 1 or None, got {max_steps!r}")
    return spec.max_steps if max_steps is None else min(max_steps, spec.max_steps)


def policy_action(spec: EnvSpec, out: jax.Array) -> jax.Array:
    """Deterministic action from the network output. out: (..., action_dim)."""
    if spec.discrete:
        return jnp.argmax(out, axis=-1)
    return spec.action_high * jnp.tanh(out)


# ---------------------------------------------------------------------------
# Observation normalisation (running statistics shared by a population)
# ---------------------------------------------------------------------------


class ObsStats(NamedTuple):
    """Running mean / variance of observations (parallel Welford / Chan et al.)."""

    count: jax.Array  # scalar
    mean: jax.Array  # (obs_dim,)
    m2: jax.Array  # (obs_dim,) sum of squared deviations


def obs_stats_init(obs_dim: int) -> ObsStats:
    """Statistics of no data yet (a tiny prior count keeps the first normalisation finite)."""
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
    """``(obs - mean) / std`` clipped to ``[-clip, clip]``; ``obs`` itself when ``s`` is None."""
    if s is None:
        return obs
    var = s.m2 / s.count
    return jnp.clip((obs - s.mean) / jnp.sqrt(var + 1e-8), -clip, clip)


# ---------------------------------------------------------------------------
# Rollouts
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
    act: Callable[[jax.Array, jax.Array], jax.Array],
    env: Any,
    env_params: Any,
    keys: jax.Array,
    max_steps: int,
) -> Rollout:
    """Play ``len(keys)`` episodes of at most ``max_steps`` steps with ``act``.

    act: ((E, obs_dim) flat observations, step key) -> (E, ...) actions. keys: (E,) episode keys.
    Rewards after the first step with ``terminated or truncated`` are masked; an episode still
    running after ``max_steps`` steps counts as truncated. The loop is a ``lax.while_loop`` that
    stops when every episode has ended, so short episodes cost few steps (under ``vmap`` it
    runs until the longest episode of the batch ends).
    """
    E = keys.shape[0]
    reset_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, env_params)
    obs = obs.reshape(E, -1).astype(jnp.float32)
    obs_dim = obs.shape[1]

    def cond(carry):
        t, alive = carry[0], carry[3]
        return (t < max_steps) & jnp.any(alive)

    def body(carry):
        t, obs, state, alive, ret, length, term, trunc, n, s, ss = carry
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
        return (t + 1, obs2.reshape(E, -1).astype(jnp.float32), state2, alive, ret, length, term, trunc, n, s, ss)

    init = (jnp.zeros((), jnp.int32), obs, state, jnp.ones(E, bool), jnp.zeros(E, jnp.float32),
            jnp.zeros(E, jnp.int32), jnp.zeros(E, bool), jnp.zeros(E, bool), jnp.zeros((), jnp.float32),
            jnp.zeros(obs_dim, jnp.float32), jnp.zeros(obs_dim, jnp.float32))
    _, _, _, alive, ret, length, term, trunc, n, s, ss = jax.lax.while_loop(cond, body, init)
    trunc = trunc | alive  # still running when the budget ran out
    return Rollout(ret, length, term, trunc, n, s, ss)


def random_return(env_id: str, episodes: int = 32, seed: int = 0, max_steps: int | None = None) -> float:
    """Mean return of the uniform random policy (the 0 of normalised scores)."""
    env, env_params, spec = make_env(env_id)
    T = episode_limit(spec, max_steps)
    space = env.action_space(env_params)

    def act(obs, key):
        return jax.vmap(space.sample)(jax.random.split(key, obs.shape[0]))

    keys = jax.random.split(jax.random.key(seed), episodes)
    return float(jax.jit(lambda k: rollout(act, env, env_params, k, T).returns.mean())(keys))

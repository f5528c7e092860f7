"""The one sampled-episode layer: two agents play batches of episodes of any of the games.

Every sampled learner (naive, LOQA, AdAlign, Proximal AdAlign, BRS), every league and every
evaluation plays through :func:`rollout`. A player is anything with the two methods of
:class:`lowrank_es.shaping.agents.Agent`::

    carry = player.initial_carry(batch)
    action, carry = player.act(key, obs, carry)      # obs (batch, obs_size), the player's own view

so recurrent learners, scripted agents and plain logit functions (:func:`logit_player`) mix
freely. Seat ``i`` acts on ``obs[:, i]``; both act simultaneously.

Layout: everything is **time-major**, ``(T, B, ...)`` with ``T = spec.max_steps`` steps and
``B`` episodes; :class:`Episodes` holds the observation each seat acted on, its action, the
rewards and the game's per-step info (Coin Game: ``picked_own`` / ``picked_other``). With
``per_env=(False, True)`` seat 1's agent has one set of parameters per episode (a leading
``B`` axis on every leaf: opponents drawn from a buffer of past agents).

Also here: returns and advantage estimators along the time axis (:func:`returns_to_go`,
:func:`td_errors`, :func:`gae`), per-batch statistics (:func:`stats`) and a jitted
:func:`evaluate` of one pairing.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from lowrank_es.games import coin, ipd, negotiation


@dataclasses.dataclass(frozen=True)
class GameSpec:
    """How players talk to a game: its pure ``reset`` / ``step``, static ``params``,
    observation size, ``action_dims`` categorical choices per step with ``n_choices`` options
    each, and the episode length ``max_steps``."""

    name: str
    reset: Callable
    step: Callable
    params: Any
    obs_dim: int
    action_dims: int
    n_choices: int
    max_steps: int


def game_spec(name: str, **params: Any) -> GameSpec:
    """``"ipd"``, ``"coin"`` or ``"negotiation"`` (discrete proposals), with game ``Params``
    fields as keywords (e.g. ``max_steps=50``)."""
    if name == "ipd":
        p = ipd.Params(**params)
        return GameSpec(name, ipd.reset, ipd.step, p, 5, 1, 2, p.max_steps)
    if name == "coin":
        p = coin.Params(**params)
        return GameSpec(name, coin.reset, coin.step, p, coin.obs_size(p), 1, coin.N_ACTIONS, p.max_steps)
    if name == "negotiation":
        p = negotiation.Params(**params)
        if p.continuous:
            raise ValueError("continuous must be False: the players choose integer proposals 0..5")
        return GameSpec(name, negotiation.reset, negotiation.step, p, negotiation.OBS_SIZE,
                        negotiation.N_ITEMS, negotiation.N_CHOICES, p.max_steps)
    raise ValueError(f"name must be one of 'ipd', 'coin', 'negotiation', got {name!r}")


class Episodes(NamedTuple):
    """A batch of episodes, time-major. obs (T, B, 2, obs_dim); actions (T, B, 2) or
    (T, B, 2, action_dims); rewards (T, B, 2); info: the game's step info, each (T, B, ...);
    states: the game states (T + 1) x B (index 0 after reset) or None."""

    obs: jax.Array
    actions: jax.Array
    rewards: jax.Array
    info: dict
    states: Any = None


class _Logits(NamedTuple):
    fn: Callable

    def initial_carry(self, batch: int) -> jax.Array:
        return jnp.zeros((int(batch), 1))

    def act(self, key, obs, carry):
        return jax.random.categorical(key, self.fn(obs)).astype(jnp.int32), carry


def logit_player(fn: Callable[[jax.Array], jax.Array]) -> _Logits:
    """A memoryless player from ``fn(obs (B, d)) -> logits (B, n_choices)`` (one choice per step)."""
    return _Logits(fn)


def _act(player, key, obs, carry, per_env: bool):
    if not per_env:
        return player.act(key, obs, carry)
    keys = jax.random.split(key, obs.shape[0])
    a, c = jax.vmap(lambda p, k, o, h: p.act(k, o[None], h[None]))(player, keys, obs, carry)
    return a[:, 0], c[:, 0]


def _carry(player, batch: int, per_env: bool):
    if not per_env:
        return player.initial_carry(batch)
    return jax.vmap(lambda p: p.initial_carry(1)[0])(player)


def rollout(key: jax.Array, players: tuple, spec: GameSpec, n_envs: int, *,
            per_env: tuple[bool, bool] = (False, False), record_states: bool = False) -> Episodes:
    """Play ``n_envs`` episodes of ``spec.max_steps`` steps between ``players[0]`` (seat 0)
    and ``players[1]`` (seat 1). Returns :class:`Episodes` (time-major)."""
    if int(n_envs) < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    B, T = int(n_envs), spec.max_steps
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(lambda k: spec.reset(k, spec.params))(jax.random.split(k_reset, B))
    carries = tuple(_carry(p, B, e) for p, e in zip(players, per_env))

    def body(carry, k):
        obs, state, (c0, c1) = carry
        k0, k1, ks = jax.random.split(k, 3)
        a0, c0 = _act(players[0], k0, obs[:, 0], c0, per_env[0])
        a1, c1 = _act(players[1], k1, obs[:, 1], c1, per_env[1])
        actions = jnp.stack([a0, a1], axis=1)
        obs2, state2, r, _, info = jax.vmap(lambda kk, s, a: spec.step(kk, s, a, spec.params))(
            jax.random.split(ks, B), state, actions)
        out = (obs, actions, r, info, state2 if record_states else None)
        return (obs2, state2, (c0, c1)), out

    _, (o, a, r, info, states) = jax.lax.scan(body, (obs, state, carries), jax.random.split(k_run, T))
    if record_states:
        states = jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], s]), state, states)
    return Episodes(o, a, r, info, states)


# ---------------------------------------------------------------------------
# Returns and advantages along the time axis (axis 0)
# ---------------------------------------------------------------------------


def _check_gamma(gamma: float) -> None:
    # traced values (jit / vmap) are unknown here: their configs were checked when made
    if not isinstance(gamma, jax.core.Tracer) and not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


def discounted_cumsum(x: jax.Array, gamma: float) -> jax.Array:
    """``y_t = sum_{k>=t} gamma^(k-t) x_k`` along axis 0."""

    def body(acc, xt):
        acc = xt + gamma * acc
        return acc, acc

    _, y = jax.lax.scan(body, jnp.zeros_like(x[0]), x, reverse=True)
    return y


def returns_to_go(rewards: jax.Array, gamma: float) -> jax.Array:
    """Monte Carlo returns ``G_t = sum_{k>=t} gamma^(k-t) r_k`` along axis 0, (T, ...)."""
    _check_gamma(gamma)
    return discounted_cumsum(rewards, gamma)


def td_errors(rewards: jax.Array, values: jax.Array, gamma: float) -> jax.Array:
    """One-step advantages ``delta_t = r_t + gamma V_{t+1} - V_t``; values (T + 1, ...) with
    ``values[T]`` the value after the last step (0 at the end of an episode)."""
    _check_gamma(gamma)
    if values.shape[0] != rewards.shape[0] + 1:
        raise ValueError(f"values must have length T + 1 = {rewards.shape[0] + 1} along axis 0, got {values.shape[0]}")
    return rewards + gamma * values[1:] - values[:-1]


def gae(rewards: jax.Array, values: jax.Array, gamma: float, lam: float) -> jax.Array:
    """Generalised advantage estimates ``A_t = sum_k (gamma lam)^k delta_{t+k}`` (values as in
    :func:`td_errors`). lam = 0: one-step TD errors; lam = 1: Monte Carlo return minus V."""
    if not isinstance(lam, jax.core.Tracer) and not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    return discounted_cumsum(td_errors(rewards, values, gamma), gamma * lam)


def with_terminal(values: jax.Array) -> jax.Array:
    """Append the value 0 after the last step: (T, ...) -> (T + 1, ...)."""
    return jnp.concatenate([values, jnp.zeros_like(values[:1])])


# ---------------------------------------------------------------------------
# Statistics and evaluation
# ---------------------------------------------------------------------------


def stats(ep: Episodes, spec: GameSpec) -> dict[str, jax.Array]:
    """Per-batch summary: ``reward`` (2,) mean reward per step of each seat and, in the Coin
    Game, ``own`` / ``other`` (2,): coins of its own / the other's colour each seat picked up
    per episode, and ``own_rate``: the fraction of all picked coins taken by their owner."""
    out = {"reward": ep.rewards.mean(axis=(0, 1))}
    if spec.name == "coin":
        own = ep.info["picked_own"].sum(0).mean(0)
        other = ep.info["picked_other"].sum(0).mean(0)
        out.update(own=own, other=other, own_rate=own.sum() / jnp.maximum(own.sum() + other.sum(), 1e-9))
    return out


@functools.partial(jax.jit, static_argnums=(3, 4))
def _evaluate(key, p0, p1, spec, n_envs):
    return stats(rollout(key, (p0, p1), spec, n_envs), spec)


def evaluate(key: jax.Array, player0, player1, spec: GameSpec, n_envs: int = 256) -> dict[str, jax.Array]:
    """:func:`stats` of ``n_envs`` episodes of ``player0`` (seat 0) against ``player1``
    (jitted; players that are pytrees, e.g. agents, share one compilation per structure)."""
    if int(n_envs) < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    return _evaluate(key, player0, player1, spec, int(n_envs))

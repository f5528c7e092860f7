"""Negotiation Game in the social-dilemma form of Advantage Alignment (arXiv:2406.14662).

Rules
-----
* Three item types, a pool of one of each (``POOL``).
* Every round each item's utility is drawn for agent 0 uniformly from ``{1, 5}``
  (independently per item); agent 1's utility for the item is ``6 - u_0``.
* Both agents propose simultaneously how much of each item they want, ``p_i`` in
  ``[0, 5]``: integers ``0..5`` in the discrete game (``Params.continuous=False``), any real
  number in the continuous variant. Proposals are clipped to ``[0, 5]`` (and rounded in the
  discrete game).
* Agent ``i`` receives ``sum_items p_i / max(5, p_0 + p_1) * pool * u_i / 15``: each item is
  split in proportion to the demands, and when the demands sum to less than 5 part of it is
  wasted. The scale 1/15 makes the best joint outcome 1 per round in total.
* With ``always_cooperate`` (ask 5 where my utility is the higher, else 0) and
  ``always_defect`` (ask 5 everywhere) the expected per-round rewards form a prisoner's
  dilemma: AC–AC 0.50 each, AD–AD 0.30 each, AC vs AD 0.25 / 0.55.
* An episode is ``Params.max_steps`` rounds (default 16); the utilities are redrawn every
  round; the discount is the learner's choice.

Observations (per agent, own point of view)
-------------------------------------------
``obs`` has shape ``(2, OBS_SIZE)`` with ``OBS_SIZE = 13``; ``obs[i]`` is
``[my utilities (3), other's utilities (3), my last proposal (3), other's last proposal (3),
t / max_steps]`` with utilities and proposals divided by 5 (last proposals are 0 at the start).

API (gymnax / JaxMARL style, pure, jittable, vmappable)
-------------------------------------------------------
``reset(key, params) -> (obs, state)``; ``step(key, state, actions, params) -> (obs, state,
rewards, done, info)`` with ``actions`` of shape ``(2, 3)`` (agent, item), ``rewards`` (2,),
``done`` = ``state.t >= max_steps`` (no automatic reset); ``info`` holds the ``utilities``
(2, 3) and clipped ``proposals`` (2, 3) the rewards were computed from.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

N_ITEMS = 3
MAX_PROPOSAL = 5
N_CHOICES = MAX_PROPOSAL + 1  # discrete proposals 0..5
POOL = jnp.ones(N_ITEMS)
SCALE = 1.0 / 15.0
OBS_SIZE = 4 * N_ITEMS + 1
EPISODE_LENGTH = 16


@dataclasses.dataclass(frozen=True)
class Params:
    """Static game parameters (hashable; a pytree with no leaves)."""

    max_steps: int = EPISODE_LENGTH
    continuous: bool = False

    def __post_init__(self):
        if int(self.max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")


jax.tree_util.register_dataclass(Params, data_fields=[], meta_fields=["max_steps", "continuous"])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class State:
    """utilities: (2, 3) this round's utilities; last: (2, 3) last round's proposals;
    t: int scalar rounds played."""

    utilities: jax.Array
    last: jax.Array
    t: jax.Array


def draw_utilities(key: jax.Array) -> jax.Array:
    """(2, 3): agent 0's utilities in {1, 5}, agent 1's are 6 minus them."""
    u0 = jnp.where(jax.random.bernoulli(key, 0.5, (N_ITEMS,)), 5.0, 1.0)
    return jnp.stack([u0, 6.0 - u0])


def payoffs(proposals: jax.Array, utilities: jax.Array) -> jax.Array:
    """Rewards (..., 2) of proposals (..., 2, 3) under utilities (..., 2, 3)."""
    total = jnp.maximum(float(MAX_PROPOSAL), proposals[..., 0, :] + proposals[..., 1, :])
    share = proposals / total[..., None, :]
    return SCALE * jnp.sum(share * POOL * utilities, axis=-1)


def observe(state: State, params: Params = Params()) -> jax.Array:
    u, last = state.utilities / MAX_PROPOSAL, state.last / MAX_PROPOSAL
    t = jnp.full((1,), state.t / params.max_steps, jnp.float32)
    o0 = jnp.concatenate([u[0], u[1], last[0], last[1], t])
    o1 = jnp.concatenate([u[1], u[0], last[1], last[0], t])
    return jnp.stack([o0, o1]).astype(jnp.float32)


def reset(key: jax.Array, params: Params = Params()) -> tuple[jax.Array, State]:
    state = State(utilities=draw_utilities(key), last=jnp.zeros((2, N_ITEMS)), t=jnp.int32(0))
    return observe(state, params), state


def clip_proposals(actions: jax.Array, params: Params = Params()) -> jax.Array:
    a = jnp.clip(jnp.asarray(actions, jnp.float32), 0.0, float(MAX_PROPOSAL))
    return a if params.continuous else jnp.round(a)


def step(
    key: jax.Array, state: State, actions: jax.Array, params: Params = Params()
) -> tuple[jax.Array, State, jax.Array, jax.Array, dict[str, jax.Array]]:
    """One round. actions: (2, 3) proposals (agent, item)."""
    actions = jnp.asarray(actions)
    if actions.shape != (2, N_ITEMS):
        raise ValueError(f"actions must have shape (2, {N_ITEMS}) with values in [0, {MAX_PROPOSAL}], got {actions.shape}")
    p = clip_proposals(actions, params)
    rewards = payoffs(p, state.utilities)
    new_state = State(utilities=draw_utilities(key), last=p, t=state.t + 1)
    done = new_state.t >= params.max_steps
    info = {"utilities": state.utilities, "proposals": p}
    return observe(new_state, params), new_state, rewards, done, info


# ---------------------------------------------------------------------------
# Reference policies (act on an agent's own observation)
# ---------------------------------------------------------------------------


def always_cooperate(obs_i: jax.Array) -> jax.Array:
    """Ask 5 of each item whose utility is higher for me than for the other, else 0. (3,)"""
    mine, other = obs_i[..., 0:3], obs_i[..., 3:6]
    return jnp.where(mine > other, float(MAX_PROPOSAL), 0.0)


def always_defect(obs_i: jax.Array) -> jax.Array:
    """Ask 5 of every item. (3,)"""
    return jnp.full(obs_i.shape[:-1] + (N_ITEMS,), float(MAX_PROPOSAL))


REFERENCE = {"always_cooperate": always_cooperate, "always_defect": always_defect}


def expected_payoffs(policy0, policy1) -> jax.Array:
    """Exact expected per-round rewards (2,) of two observation-only reference policies that
    ignore history, by enumerating the 8 equally likely utility draws."""
    bits = jnp.array([[(k >> j) & 1 for j in range(N_ITEMS)] for k in range(2**N_ITEMS)])
    u0 = jnp.where(bits == 1, 5.0, 1.0)
    u = jnp.stack([u0, 6.0 - u0], axis=1)  # (8, 2, 3)
    state = State(utilities=u, last=jnp.zeros_like(u), t=jnp.zeros(8, jnp.int32))
    obs = jax.vmap(observe)(state)
    props = jnp.stack([policy0(obs[:, 0]), policy1(obs[:, 1])], axis=1)
    return payoffs(props, u).mean(axis=0)


def play(key: jax.Array, policy0, policy1, n_episodes: int, params: Params = Params()) -> jax.Array:
    """Sampled mean reward per round (2,) of two observation-only policies
    ``obs_i (13,) -> proposals (3,)`` over ``n_episodes`` full episodes."""
    if int(n_episodes) < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    return _play(key, policy0, policy1, int(n_episodes), params)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _play(key, policy0, policy1, n_episodes, params):
    def episode(k):
        k0, kr = jax.random.split(k)
        obs, state = reset(k0, params)

        def body(carry, kt):
            obs, state = carry
            a = jnp.stack([policy0(obs[0]), policy1(obs[1])])
            obs, state, r, _, _ = step(kt, state, a, params)
            return (obs, state), r

        _, r = jax.lax.scan(body, (obs, state), jax.random.split(kr, params.max_steps))
        return r.mean(axis=0)

    return jax.vmap(episode)(jax.random.split(key, n_episodes)).mean(axis=0)

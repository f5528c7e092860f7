"""Iterated Prisoner's Dilemma with memory-1 policies.

Conventions, used everywhere in the project
-------------------------------------------
* Actions: ``C = 0`` (cooperate), ``D = 1`` (defect).
* A memory-1 policy is five cooperation probabilities
  ``[p_start, p_CC, p_CD, p_DC, p_DD]``, indexed by *(my last action, the other's last
  action)* from **that player's own point of view**.
* The joint state is written from player 1's point of view: index ``2 * a1 + a2`` of
  ``(CC, CD, DC, DD)``. Player 2 in joint state ``CD`` (player 1 cooperated, player 2
  defected) sees ``(my=D, other=C) = DC``: :data:`SWAP` maps joint states to player 2's
  own indices.
* Payoffs (row player's view): CC −1, CD −3, DC 0, DD −2 (LOLA / POLA / LOQA).
* ``exact_value`` is each player's expected discounted sum ``sum_t gamma^t r_t`` with
  ``t`` starting at 0, so mutual cooperation forever is ``-1 / (1 - gamma) = -25``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

C, D = 0, 1
STATE_NAMES = ("CC", "CD", "DC", "DD")
POLICY_NAMES = ("start", "CC", "CD", "DC", "DD")

#: Player 1's reward in joint states (CC, CD, DC, DD).
REWARD_1 = jnp.array([-1.0, -3.0, 0.0, -2.0])
#: Player 2's reward in the same joint states (the game is symmetric).
REWARD_2 = jnp.array([-1.0, 0.0, -3.0, -2.0])
#: Joint state index (player 1's view) -> the same state seen by player 2.
SWAP = jnp.array([0, 2, 1, 3])

GAMMA = 0.96
EPISODE_LENGTH = 50


def _check_policy(p: jax.Array, name: str) -> None:
    """Shape always; values (probabilities in [0, 1], no NaN) when called eagerly, i.e. not
    while being traced by jit / grad / vmap, where values are unknown."""
    if jnp.shape(p)[-1:] != (5,):
        raise ValueError(f"{name} must have last dimension 5 [p_start, p_CC, p_CD, p_DC, p_DD], got shape {jnp.shape(p)}")
    if not isinstance(p, jax.core.Tracer):
        a = np.asarray(p, dtype=float)
        if not (np.all(np.isfinite(a)) and np.all((a >= 0.0) & (a <= 1.0))):
            raise ValueError(f"{name} must hold cooperation probabilities in [0, 1] (no NaN), got {np.round(a, 4).tolist()}")


def joint_action_probs(q1: jax.Array, q2: jax.Array) -> jax.Array:
    """Probabilities of the joint actions (CC, CD, DC, DD) given each player's P(C).

    q1, q2: (...,) cooperation probabilities. Returns (..., 4).
    """
    return jnp.stack([q1 * q2, q1 * (1 - q2), (1 - q1) * q2, (1 - q1) * (1 - q2)], axis=-1)


def markov_chain(p1: jax.Array, p2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Initial joint-action distribution ``d0`` (4,) and transition matrix ``P`` (4, 4).

    ``P[s, s']`` is the probability that the next joint action is ``s'`` when the last
    one was ``s`` (both in player 1's ordering).
    """
    _check_policy(p1, "p1")
    _check_policy(p2, "p2")
    d0 = joint_action_probs(p1[0], p2[0])
    q1 = p1[1:]  # player 1 in joint state s uses its own index s
    q2 = p2[1:][SWAP]  # player 2 sees the swapped state
    P = joint_action_probs(q1, q2)
    return d0, P


def exact_value(p1: jax.Array, p2: jax.Array, gamma: float = GAMMA) -> tuple[jax.Array, jax.Array]:
    """Each player's exact expected discounted return ``sum_{t>=0} gamma^t r_t``.

    ``v = d0 (I - gamma P)^{-1} r``: closed form, differentiable in both policies.
    p1, p2: (5,) cooperation probabilities. Returns two scalars ``(v1, v2)``.
    """
    _check_policy(p1, "p1")
    _check_policy(p2, "p2")
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    d0, P = markov_chain(p1, p2)
    # Solve x (I - gamma P) = d0 for the discounted state-visitation row vector x.
    x = jnp.linalg.solve((jnp.eye(4) - gamma * P).T, d0)
    return x @ REWARD_1, x @ REWARD_2


def state_values(p1: jax.Array, p2: jax.Array, gamma: float = GAMMA) -> tuple[jax.Array, jax.Array]:
    """Value of each joint state *as the last joint action*, for both players.

    ``V_i[s] = E[sum_{k>=1} gamma^{k-1} r_i(s_k) | s_0 = s]`` — the discounted return of
    the steps that follow ``s``. Shape (4,) each, in player 1's joint ordering.
    """
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    _, P = markov_chain(p1, p2)
    M = jnp.linalg.solve(jnp.eye(4) - gamma * P, P)  # sum_k gamma^{k-1} P^k
    return M @ REWARD_1, M @ REWARD_2


def exact_value_horizon(
    p1: jax.Array, p2: jax.Array, gamma: float = GAMMA, horizon: int = EPISODE_LENGTH
) -> tuple[jax.Array, jax.Array]:
    """Exact expected discounted return of the first ``horizon`` steps,
    ``sum_{t<horizon} gamma^t r_t = d0 (I - gamma P)^{-1} (I - (gamma P)^horizon) r``
    (what a sampled episode of ``horizon`` steps estimates). Returns ``(v1, v2)``."""
    _check_policy(p1, "p1")
    _check_policy(p2, "p2")
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    if int(horizon) < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    d0, P = markov_chain(p1, p2)
    G = gamma * P
    x = jnp.linalg.solve((jnp.eye(4) - G).T, d0) @ (jnp.eye(4) - jnp.linalg.matrix_power(G, int(horizon)))
    return x @ REWARD_1, x @ REWARD_2


# ---------------------------------------------------------------------------
# Sampled form: a gymnax / JaxMARL-style environment
# ---------------------------------------------------------------------------
#
# ``reset(key, params) -> (obs, state)`` and ``step(key, state, actions, params) ->
# (obs, state, rewards, done, info)``. ``actions`` is int (2,) (C = 0, D = 1), ``rewards``
# (2,). ``obs`` is (2, 5): ``obs[i]`` one-hot over agent i's *own* policy index
# ``[start, CC, CD, DC, DD]`` (so ``obs[i] @ p_i`` is agent i's cooperation probability).
# ``state.last`` is the last joint action in player 1's ordering, or -1 at the start.

import dataclasses  # noqa: E402
import functools  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Params:
    """Static parameters (hashable; a pytree with no leaves)."""

    max_steps: int = EPISODE_LENGTH

    def __post_init__(self):
        if int(self.max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")


jax.tree_util.register_dataclass(Params, data_fields=[], meta_fields=["max_steps"])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class State:
    """last: int scalar, last joint action 2*a1+a2 (player 1's view), -1 at the start;
    t: int scalar steps taken."""

    last: jax.Array
    t: jax.Array


def observe(state: State, params: Params = Params()) -> jax.Array:
    """(2, 5) one-hot of each agent's own policy index."""
    idx1 = jnp.where(state.last < 0, 0, state.last + 1)
    idx2 = jnp.where(state.last < 0, 0, SWAP[jnp.maximum(state.last, 0)] + 1)
    return jnp.stack([jax.nn.one_hot(idx1, 5), jax.nn.one_hot(idx2, 5)])


def reset(key: jax.Array, params: Params = Params()) -> tuple[jax.Array, State]:
    state = State(last=jnp.int32(-1), t=jnp.int32(0))
    return observe(state, params), state


def step(key: jax.Array, state: State, actions: jax.Array, params: Params = Params()):
    """One simultaneous move. actions: (2,) ints (C = 0, D = 1)."""
    actions = jnp.asarray(actions)
    if actions.shape != (2,):
        raise ValueError(f"actions must have shape (2,) with values in {{0 (C), 1 (D)}}, got {actions.shape}")
    joint = (2 * actions[0] + actions[1]).astype(jnp.int32)
    rewards = jnp.stack([REWARD_1[joint], REWARD_2[joint]])
    new_state = State(last=joint, t=state.t + 1)
    done = new_state.t >= params.max_steps
    return observe(new_state, params), new_state, rewards, done, {"joint": joint}


def rollout(key: jax.Array, p1: jax.Array, p2: jax.Array, n_episodes: int,
            params: Params = Params()) -> dict[str, jax.Array]:
    """Sample ``n_episodes`` episodes of two memory-1 policies (cooperation probabilities).

    Returns ``actions`` (n, T, 2) int, ``rewards`` (n, T, 2) and ``joint`` (n, T) int.
    """
    _check_policy(p1, "p1")
    _check_policy(p2, "p2")
    if int(n_episodes) < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    return _rollout(key, p1, p2, int(n_episodes), params)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _rollout(key, p1, p2, n_episodes, params):
    pols = jnp.stack([p1, p2])

    def episode(k):
        obs, state = reset(k, params)

        def body(carry, kt):
            obs, state = carry
            q = jnp.sum(obs * pols, axis=-1)  # each agent's P(C)
            a = (jax.random.uniform(kt, (2,)) >= q).astype(jnp.int32)  # D when u >= P(C)
            obs, state, r, _, info = step(kt, state, a, params)
            return (obs, state), (a, r, info["joint"])

        _, (a, r, j) = jax.lax.scan(body, (obs, state), jax.random.split(k, params.max_steps))
        return {"actions": a, "rewards": r, "joint": j}

    return jax.vmap(episode)(jax.random.split(key, n_episodes))


def discounted_returns(rewards: jax.Array, gamma: float = GAMMA) -> jax.Array:
    """``sum_t gamma^t r_t`` over axis -2 of rewards (..., T, 2) -> (..., 2)."""
    T = rewards.shape[-2]
    return jnp.einsum("...tk,t->...k", rewards, gamma ** jnp.arange(T, dtype=rewards.dtype))

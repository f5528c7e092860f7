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
    if p.shape[-1] != 5:
        raise ValueError(f"{name} must have last dimension 5 [p_start, p_CC, p_CD, p_DC, p_DD], got shape {p.shape}")


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
    _, P = markov_chain(p1, p2)
    M = jnp.linalg.solve(jnp.eye(4) - gamma * P, P)  # sum_k gamma^{k-1} P^k
    return M @ REWARD_1, M @ REWARD_2

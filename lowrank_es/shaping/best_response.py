"""Exact best responses in the IPD (the Coin Game's planned best response: :mod:`lowrank_es.shaping.mcts`).

A memory-1 agent ``p = [p_start, p_CC, p_CD, p_DC, p_DD]`` (conventions of
:mod:`lowrank_es.games.ipd`) induces a 5-state MDP for its opponent: the states are
"start" and the last joint action; the opponent's action ``b`` and the agent's action
``a ~ p`` give the next joint action ``2a + b`` (agent first) and the opponent's reward
``REWARD_2[2a + b]``. Because the agent only looks at the last joint action, that MDP is
exact and its optimal policy is a *deterministic memory-1* policy.
:func:`ipd_best_response` solves it by policy iteration (exact linear solves; it ends in
finitely many steps, at most 32 policies exist) and returns that policy in the opponent's
own-view convention, so ``ipd.exact_value(p, br)`` gives both players' returns.
:func:`ipd_soft_best_response` is the entropy-regularised (temperature ``tau``) best
response by soft value iteration: differentiable in ``p`` and equal to the exact best
response as ``tau -> 0``. :func:`ipd_exploitability` reports, for any agent, its return
against its exact best response and the best response's return.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.games import ipd

# ---------------------------------------------------------------------------
# IPD: exact best response to a memory-1 agent
# ---------------------------------------------------------------------------


def _check_probs(p: jax.Array, name: str = "p_agent") -> jax.Array:
    p = jnp.asarray(p)
    if p.shape != (5,):
        raise ValueError(f"{name} must have shape (5,) [p_start, p_CC, p_CD, p_DC, p_DD], got {p.shape}")
    return p


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= float(gamma) < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")


def _q_values(p_agent: jax.Array, v_joint: jax.Array, gamma: float) -> jax.Array:
    """Q(state, b) of the opponent for the 5 MDP states, given the values of the 4 joint states.

    v_joint: (4,) value of *being in* joint state s' (reward of s' not included).
    Returns (5, 2).
    """
    q = p_agent  # (5,) P(agent plays C)
    pa = jnp.stack([q, 1.0 - q], axis=-1)  # (5, 2) over agent action a
    r2 = ipd.REWARD_2.reshape(2, 2)  # [a, b]
    v = v_joint.reshape(2, 2)  # [a, b]
    # Q(x, b) = sum_a P(a|x) [r2(a, b) + gamma v(a, b)]
    return jnp.einsum("xa,ab->xb", pa, r2 + gamma * v)


def _joint_values(p_agent: jax.Array, policy: jax.Array, gamma: float) -> jax.Array:
    """Opponent's value of *having arrived* in each joint state s (future rewards only), (4,)."""
    q = p_agent[1:]
    pa = jnp.stack([q, 1.0 - q], axis=-1)
    pb = policy[1:]
    P = (pa[:, :, None] * pb[:, None, :]).reshape(4, 4)
    # w(s) = sum_s' P[s, s'] (r(s') + gamma w(s'))  ->  (I - gamma P) w = P r
    return jnp.linalg.solve(jnp.eye(4) - gamma * P, P @ ipd.REWARD_2)


def _to_own_view(policy: jax.Array) -> jax.Array:
    """(5, 2) action probabilities in agent-first MDP states -> (5,) P(C) in the opponent's own view."""
    p_joint = policy[:, 0]
    own = jnp.zeros(5, policy.dtype).at[0].set(p_joint[0])
    # the opponent's own index of joint state s is SWAP[s]
    return own.at[1 + ipd.SWAP].set(p_joint[1:])


class BestResponse(NamedTuple):
    """An exact best response in the IPD.

    policy: (5,) the best responder's cooperation probabilities (its own view, 0 or 1).
    value_agent, value_response: the two players' exact discounted returns.
    iterations: policy-iteration steps taken.
    """

    policy: jax.Array
    value_agent: jax.Array
    value_response: jax.Array
    iterations: jax.Array


def ipd_best_response(p_agent: jax.Array, gamma: float = ipd.GAMMA, max_iterations: int = 64) -> BestResponse:
    """Exact best response to the memory-1 agent ``p_agent`` (5,) by policy iteration.

    The agent is player 1 and the best responder player 2 (the game is symmetric, so the
    same policy is the best response to the agent in either seat). Ties go to cooperation.
    """
    p_agent = _check_probs(p_agent)
    _check_gamma(gamma)
    if int(max_iterations) < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")

    def greedy(policy):
        w = _joint_values(p_agent, policy, gamma)
        Q = _q_values(p_agent, w, gamma)
        # keep the current action unless another is strictly better (guarantees termination)
        cur = jnp.argmax(policy, axis=-1)
        best = jnp.argmax(Q, axis=-1)
        q_cur = jnp.take_along_axis(Q, cur[:, None], axis=-1)[:, 0]
        q_best = jnp.max(Q, axis=-1)
        tol = 1e-9 * (1.0 + jnp.abs(q_best))
        act = jnp.where(q_best > q_cur + tol, best, cur)
        return jax.nn.one_hot(act, 2, dtype=p_agent.dtype)

    def cond(c):
        policy, prev, it = c
        return (it < max_iterations) & ((it == 0) | jnp.any(policy != prev))

    def body(c):
        policy, _, it = c
        return greedy(policy), policy, it + 1

    init = jnp.zeros((5, 2), p_agent.dtype).at[:, 0].set(1.0)  # start from always-cooperate
    policy, _, it = jax.lax.while_loop(cond, body, (init, init, jnp.asarray(0)))
    br = _to_own_view(policy)
    v1, v2 = ipd.exact_value(p_agent, br, gamma)
    return BestResponse(br, v1, v2, it)


def ipd_soft_best_response(p_agent: jax.Array, tau: float, gamma: float = ipd.GAMMA,
                           iterations: int = 400) -> jax.Array:
    """Entropy-regularised best response (5,) (own view) by soft value iteration.

    ``pi(b | x) ∝ exp(Q(x, b) / tau)``; differentiable in ``p_agent``; ``tau -> 0`` gives
    the exact best response. ``iterations`` unrolled steps (error ``<= gamma^iterations``).
    """
    p_agent = _check_probs(p_agent)
    _check_gamma(gamma)
    if isinstance(tau, (int, float)) and not tau > 0.0:
        raise ValueError(f"tau must be > 0, got {tau}")

    def body(w, _):
        Q = _q_values(p_agent, w, gamma)  # (5, 2)
        # value of arriving in joint state s = soft max over b of Q(1 + s, b)
        w_new = tau * jax.nn.logsumexp(Q[1:] / tau, axis=-1)
        return w_new, None

    w, _ = jax.lax.scan(body, jnp.zeros(4, p_agent.dtype), None, length=iterations)
    Q = _q_values(p_agent, w, gamma)
    policy = jax.nn.softmax(Q / tau, axis=-1)
    return _to_own_view(policy)


def ipd_random_q(p_agent: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Q-values (5, 2) [state, own action C / D] of a responder that plays uniformly at random
    afterwards, against the memory-1 agent ``p_agent``, per step (value times 1 - gamma).
    Differentiable in ``p_agent``: the IPD form of BRS's simulation-based questions."""
    p_agent = _check_probs(p_agent)
    uniform = jnp.full((5, 2), 0.5, p_agent.dtype)
    return _q_values(p_agent, _joint_values(p_agent, uniform, gamma), gamma) * (1.0 - gamma)


def ipd_exploitability(p_agent: jax.Array, gamma: float = ipd.GAMMA) -> dict[str, float]:
    """How much an agent loses against its exact best response.

    Returns per-step rewards (value * (1 - gamma)): ``agent_vs_br``, ``br_vs_agent``,
    ``mutual_cooperation`` (-1), and ``loss = mutual_cooperation - agent_vs_br``.
    """
    br = ipd_best_response(p_agent, gamma)
    scale = 1.0 - gamma
    a = float(br.value_agent) * scale
    return {
        "agent_vs_br": a,
        "br_vs_agent": float(br.value_response) * scale,
        "mutual_cooperation": float(ipd.REWARD_1[0]),
        "loss": float(ipd.REWARD_1[0]) - a,
        "br_policy": np.asarray(br.policy).round(3).tolist(),
    }


def exploitability_losses(p: np.ndarray, gamma: float = ipd.GAMMA) -> np.ndarray:
    """Per agent (rows of ``p``, (n, 5)): mutual cooperation (-1 per step) minus its per-step
    reward against its exact best response."""
    return np.array([ipd_exploitability(jnp.asarray(q), gamma)["loss"] for q in np.asarray(p)])


def deterministic_memory1_policies() -> jax.Array:
    """All 32 deterministic memory-1 policies, (32, 5) of 0/1 cooperation probabilities."""
    bits = (np.arange(32)[:, None] >> np.arange(5)[None, :]) & 1
    return jnp.asarray(bits, dtype=jnp.float32)

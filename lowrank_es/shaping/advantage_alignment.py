"""Advantage Alignment (Duque, Aghajohari et al., arXiv:2406.14662).

The aligned advantage of agent 1 at step ``t`` of a trajectory is::

    A*_t = A1_t + beta * gamma * (sum_{k<t} gamma^(t-k) A1_k) * A2_t

with ``A_i`` agent i's advantage. It replaces the advantage in the policy gradient
(**AdAlign**) or inside PPO's clipped surrogate (**Proximal AdAlign**). Past steps where agent
1 did well (positive running sum) make it favour actions that are good for agent 2 now; past
steps where it did badly make it favour actions bad for agent 2 (the four quadrants:
cooperative ``+ +``, vengeful ``- -``, spiteful ``- +`` and empathetic ``+ -`` in the signs of
(past A1, current A2)).

Contents:

* exact memory-1 IPD: :func:`aa_term` (the closed-form expectation of the alignment term,
  a linear solve on the five-state chain), :func:`direction` (learner interface of
  :mod:`lowrank_es.shaping.exact`), :func:`lola_term` and :func:`unification` (the LOLA /
  LOQA / AA comparison of the paper's Section 4 on the same tabular policies);
* sampled pieces used by :mod:`lowrank_es.shaping.training`: :func:`past_advantage_sum`,
  :func:`past_advantage_mean`, :func:`aligned_advantage`, :func:`adalign_loss`,
  :func:`proximal_adalign_loss`, and :func:`quadrants` / :func:`ipd_trajectory_advantages`
  for plots. Time is axis 0 everywhere.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lowrank_es.games import ipd
from lowrank_es.shaping import exact, loqa

# --------------------------------------------------------------------------------------
# Exact memory-1 IPD
# --------------------------------------------------------------------------------------


def _check_beta(beta: float) -> None:
    if not isinstance(beta, jax.core.Tracer) and not float(beta) >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")


def aa_term(
    theta1: jax.Array,
    theta2: jax.Array,
    gamma: float = ipd.GAMMA,
    beta: float = 1.0,
    weight: jax.Array | None = None,
    inner_discount: float | None = None,
) -> jax.Array:
    """Exact expectation (5,) of the alignment part of the AdAlign gradient::

        beta * gamma * E[ sum_t gamma^t F_t A2(s_t, a_t, b_t) grad_theta1 log pi1(a_t|s_t) ],
        F_t = sum_{k<t} gamma^(t-k) w(s_k, b_k) A1(s_k, a_k, b_k)

    on the infinite-horizon memory-1 IPD started in the start state, with exact joint
    advantages. ``weight`` (5, 2) over (state, opponent action b) defaults to 1; LOQA's
    predicted factor is ``(1 - pi_hat2(b|s)) / tau``. ``inner_discount`` replaces the
    ``gamma^(t-k)`` inside ``F_t`` by ``inner_discount^(t-k)`` (default ``gamma``).

    Method: ``m_t(s) = E[F_t 1{s_t = s}]`` obeys ``m_{t+1} = gamma (m_t T + d_t A~)`` with
    ``A~[s, 1+ab] = J[s, ab] w(s, b) A1(s, ab)``, so ``M = sum_t gamma^t m_t`` solves
    ``M (I - gamma^2 T) = gamma^2 D A~`` (``gamma * inner_discount`` in place of ``gamma^2``).
    """
    _check_beta(beta)
    lam = gamma if inner_discount is None else float(inner_discount)
    tab = loqa.tabular(theta1, theta2, gamma)
    w = jnp.ones((5, 2), tab.J.dtype) if weight is None else jnp.asarray(weight, tab.J.dtype)
    if w.shape != (5, 2):
        raise ValueError(f"weight must have shape (5, 2) over (state, opponent action), got {w.shape}")
    wab = w[:, loqa.B_OF]  # (5, 4)
    At = jnp.concatenate([jnp.zeros((5, 1), tab.J.dtype), tab.J * wab * tab.A1], axis=1)  # (5, 5)
    I = jnp.eye(5, dtype=tab.J.dtype)
    M = jnp.linalg.solve((I - gamma * lam * tab.T).T, gamma * lam * (tab.D @ At))
    # X(s) = sum_ab J[s, ab] A2(s, ab) (1{a = C} - q1(s)): derivative w.r.t. theta1[IDX1[s]].
    score = (loqa.A_OF[None, :] == 0) - tab.q1[:, None]  # (5, 4)
    X = jnp.sum(tab.J * tab.A2 * score, axis=1)
    g = jnp.zeros(5, tab.J.dtype).at[loqa.IDX1].add(M * X)
    return beta * gamma * g


def aa_term_loop(
    theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA, beta: float = 1.0, horizon: int = 50
) -> jax.Array:
    """The same expectation as :func:`aa_term`, truncated at ``t < horizon``, by the explicit
    forward recursion over time (a reference for tests and finite-horizon comparisons)."""
    tab = loqa.tabular(theta1, theta2, gamma)
    At = jnp.concatenate([jnp.zeros((5, 1), tab.J.dtype), tab.J * tab.A1], axis=1)
    score = (loqa.A_OF[None, :] == 0) - tab.q1[:, None]
    X = jnp.sum(tab.J * tab.A2 * score, axis=1)

    def body(carry, t):
        d, m = carry
        contrib = gamma**t * m * X
        return (d @ tab.T, gamma * (m @ tab.T + d @ At)), contrib

    d0 = jnp.eye(5, dtype=tab.J.dtype)[0]
    _, contribs = jax.lax.scan(body, (d0, jnp.zeros(5, tab.J.dtype)), jnp.arange(horizon))
    g = jnp.zeros(5, tab.J.dtype).at[loqa.IDX1].add(contribs.sum(0))
    return beta * gamma * g


@dataclasses.dataclass(frozen=True)
class AAConfig:
    """Exact-IPD Advantage Alignment. beta >= 0 (0 is the naive gradient); gamma in [0, 1)."""

    beta: float = 1.0
    gamma: float = ipd.GAMMA

    def __post_init__(self):
        _check_beta(self.beta)
        if not 0.0 <= float(self.gamma) < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")


def direction(theta_me: jax.Array, theta_other: jax.Array, cfg: AAConfig = AAConfig()) -> jax.Array:
    """Exact AdAlign ascent direction (5,): ``grad V1 + aa_term`` (the expectation of the
    policy gradient with the aligned advantage ``A*``)."""
    return exact.naive_gradient(theta_me, theta_other, cfg.gamma) + aa_term(theta_me, theta_other, cfg.gamma, cfg.beta)


def lola_term(theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA, eta: float = 1.0) -> jax.Array:
    """First-order LOLA shaping term (5,): ``eta * grad_theta1 [ (grad_theta2 V1)^T grad_theta2 V2 ]``
    with ``grad_theta2 V1`` held fixed (exact values, autodiff)."""

    def v(t1, t2):
        return ipd.exact_value(jax.nn.sigmoid(t1), jax.nn.sigmoid(t2), gamma)

    g2v1 = jax.lax.stop_gradient(jax.grad(lambda t2: v(theta1, t2)[0])(theta2))
    return eta * jax.grad(lambda t1: jnp.dot(g2v1, jax.grad(lambda t2: v(t1, t2)[1])(theta2)))(theta1)


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """Cosine similarity of two vectors (0 when one vanishes)."""
    return jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-30)


def _fit_rel_err(target: jax.Array, pred: jax.Array) -> jax.Array:
    """Relative error ``|target - c pred| / |target|`` of the best scalar multiple ``c``."""
    c = jnp.dot(target, pred) / (jnp.dot(pred, pred) + 1e-30)
    return jnp.linalg.norm(target - c * pred) / (jnp.linalg.norm(target) + 1e-30)


def unification(theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA, tau: float = 1.0) -> dict[str, jax.Array]:
    """LOLA, LOQA and AA shaping terms of player 1 on one tabular policy pair, and how well
    they agree (cosine similarity, relative error of the best scalar fit).

    ``loqa`` is LOQA as implemented (taken-action Q differentiated, ``taken_only=True``);
    ``aa_loqa`` is the AA term with LOQA's predicted per-step factor
    ``(1 - pi_hat2(b_k|s_k)) / tau`` on the past advantages.
    """
    lola = lola_term(theta1, theta2, gamma)
    lq = loqa.loqa_term(theta1, theta2, tau, gamma, taken_only=True)
    aa = aa_term(theta1, theta2, gamma)
    pi_hat = loqa.opponent_model(theta1, theta2, tau, gamma)
    aa_w = aa_term(theta1, theta2, gamma, weight=(1.0 - pi_hat) / tau)
    return {
        "lola": lola,
        "loqa": lq,
        "aa": aa,
        "aa_loqa": aa_w,
        "cos_lola_aa": cosine(lola, aa),
        "cos_loqa_aa": cosine(lq, aa),
        "cos_loqa_aa_factor": cosine(lq, aa_w),
        "relerr_lola_aa": _fit_rel_err(lola, aa),
        "relerr_loqa_aa": _fit_rel_err(lq, aa),
        "relerr_loqa_aa_factor": _fit_rel_err(lq, aa_w),
    }


def random_pairs(key: jax.Array, n: int, scale: float = 1.5) -> tuple[jax.Array, jax.Array]:
    """``n`` random logit pairs, each (n, 5), i.i.d. normal with standard deviation ``scale``."""
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    k1, k2 = jax.random.split(key)
    return scale * jax.random.normal(k1, (n, 5)), scale * jax.random.normal(k2, (n, 5))


def unification_sweep(key: jax.Array, n: int = 200, scale: float = 1.5, gamma: float = ipd.GAMMA, tau: float = 1.0):
    """:func:`unification` on ``n`` random policy pairs (vmapped). Returns the dict with a
    leading axis ``n`` on every entry."""
    t1, t2 = random_pairs(key, n, scale)
    return jax.vmap(lambda a, b: unification(a, b, gamma, tau))(t1, t2)


# --------------------------------------------------------------------------------------
# Sampled pieces: past advantages, the aligned advantage, AdAlign and Proximal AdAlign losses
# --------------------------------------------------------------------------------------


def past_advantage_sum(adv: jax.Array, gamma: float) -> jax.Array:
    """``F_t = sum_{k<t} gamma^(t-k) adv_k`` along axis 0 (F_0 = 0). (T, ...) -> (T, ...)."""

    def body(f, a):
        return gamma * (f + a), f

    _, F = jax.lax.scan(body, jnp.zeros_like(adv[0]), adv)
    return F


def past_advantage_mean(adv: jax.Array) -> jax.Array:
    """``M_t = mean_{k<t} adv_k`` along axis 0 (M_0 = 0): the running mean of the official
    Advantage Alignment code. (T, ...) -> (T, ...)."""
    csum = jnp.cumsum(adv, axis=0) - adv
    t = jnp.arange(adv.shape[0], dtype=adv.dtype).reshape((-1,) + (1,) * (adv.ndim - 1))
    return csum / jnp.maximum(t, 1.0)


def aligned_advantage(adv_me: jax.Array, adv_other: jax.Array, gamma: float, beta: float,
                      past: jax.Array | None = None) -> jax.Array:
    """``A*_t = A1_t + beta gamma P_t A2_t`` along axis 0, with ``P`` the agent's past
    advantages (default :func:`past_advantage_sum` of ``adv_me``; pass the sum of one-step
    TD errors to keep the product free of shared rewards)."""
    _check_beta(beta)
    past = past_advantage_sum(adv_me, gamma) if past is None else past
    return adv_me + beta * gamma * past * adv_other


def quadrants(adv_me: jax.Array, adv_other: jax.Array, gamma: float) -> tuple[jax.Array, jax.Array]:
    """Quadrant of the alignment term at every step, along axis 0: 0 cooperative (past > 0,
    A2 > 0), 1 empathetic (past > 0, A2 < 0), 2 vengeful (past < 0, A2 < 0), 3 spiteful
    (past < 0, A2 > 0), where "past" is ``sum_{k<t} gamma^(t-k) A1_k``. Also returns the
    alignment term ``gamma * past * A2`` (both (T, ...))."""
    past = past_advantage_sum(adv_me, gamma)
    q = jnp.where(past >= 0, jnp.where(adv_other >= 0, 0, 1), jnp.where(adv_other < 0, 2, 3))
    return q, gamma * past * adv_other


QUADRANT_NAMES = ("cooperative", "empathetic", "vengeful", "spiteful")


def adalign_loss(logp: jax.Array, adv_star: jax.Array) -> jax.Array:
    """Policy-gradient loss ``-mean(A* log pi(a_t|s_t))`` (A* held fixed)."""
    return -jnp.mean(jax.lax.stop_gradient(adv_star) * logp)


def proximal_adalign_loss(logp: jax.Array, logp_old: jax.Array, adv_star: jax.Array, clip: float = 0.2) -> jax.Array:
    """PPO clipped surrogate with the aligned advantage:
    ``-mean(min(r A*, clip(r, 1 - eps, 1 + eps) A*))``, ``r = pi / pi_old``."""
    if not isinstance(clip, jax.core.Tracer) and not float(clip) > 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    a = jax.lax.stop_gradient(adv_star)
    ratio = jnp.exp(logp - jax.lax.stop_gradient(logp_old))
    return -jnp.mean(jnp.minimum(ratio * a, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * a))


def ipd_trajectory_advantages(key: jax.Array, theta1: jax.Array, theta2: jax.Array, horizon: int = 50,
                              gamma: float = ipd.GAMMA, batch: int = 1):
    """Sample IPD episodes and attach the *exact* joint advantages of both players.

    Returns states (T, batch) int (0 start, 1 + joint action of the previous step, player 1's
    view), a, b (T, batch) actions (0 = C) and A1, A2 (T, batch) with ``A_i = Q_i(ab) - V_i(s)``
    from :func:`lowrank_es.shaping.loqa.tabular`, for plotting the quadrants."""
    ep = ipd.rollout(key, exact.policy(theta1), exact.policy(theta2), batch, ipd.Params(max_steps=int(horizon)))
    joint = jnp.swapaxes(ep["joint"], 0, 1)  # (T, B)
    states = jnp.concatenate([jnp.zeros_like(joint[:1]), 1 + joint[:-1]])
    tab = loqa.tabular(theta1, theta2, gamma)
    return states, joint // 2, joint % 2, tab.A1[states, joint], tab.A2[states, joint]

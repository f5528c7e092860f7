"""The interface every learner plugs into, fixed reference opponents, and metrics.

Exact IPD learners
------------------
* A policy is a vector of logits ``theta`` of shape ``(5,)``; ``p = sigmoid(theta)`` are the
  cooperation probabilities ``[p_start, p_CC, p_CD, p_DC, p_DD]`` in the convention of
  :mod:`lowrank_es.games.ipd` (indexed by *(my last action, the other's last action)*).
* Each player sees the game from its own point of view: its value is
  ``value(theta_me, theta_other) = exact_value(sigmoid(theta_me), sigmoid(theta_other))[0]``
  (player 2's value is ``exact_value(p2, p1)[0]`` by the symmetry of the game).
* An exact learner is a function ``direction(theta_me, theta_other, cfg) -> (5,)``
  returning the ascent direction of ``theta_me`` (naive: ``grad value``; LOLA: plus its
  shaping term). ``cfg`` is a config dataclass (e.g. :class:`ExactConfig`) whose fields are
  pytree leaves, so it can be traced and vmapped.
* :func:`simulate_exact` takes two *bound* directions ``dir(theta_me, theta_other)`` (use
  ``functools.partial(learner.direction, cfg=cfg)``) and runs simultaneous gradient-ascent
  steps ``theta_i <- theta_i + lr_i * dir_i(theta_i, theta_-i)`` with ``lax.scan``. Leading
  batch dimensions of the initial logits are vmapped over (many random initialisations).

Fixed reference opponents
-------------------------
IPD memory-1 policies as cooperation probabilities in :data:`IPD_FIXED`
(always-cooperate, always-defect, tit-for-tat, random), as logits by :func:`fixed_theta`
(clipped at ``±LOGIT_CAP``). Their learner is :func:`fixed_direction` (zero update).
Coin Game scripted agents are :func:`lowrank_es.games.coin.scripted_action`
(``"cooperative"``: own coin only; ``"selfish"``: nearest coin; ``"random"``); Negotiation
reference policies are :data:`lowrank_es.games.negotiation.REFERENCE`.

Metrics
-------
All per-step quantities are normalised discounted averages ``(1 - gamma) * sum_t gamma^t x_t``
(exact, for memory-1 policies): :func:`reward_per_step`, :func:`mutual_cooperation`,
:func:`ipd_pareto_gap`, :func:`exploitability`, :func:`classify_outcome`, :func:`is_tft_like`;
sampled games: :func:`own_coin_rate`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from lowrank_es.games import ipd

Direction = Callable[[jax.Array, jax.Array], jax.Array]

LOGIT_CAP = 10.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ExactConfig:
    """Config of the exact IPD learners. ``gamma``: discount in [0, 1);
    ``lookahead``: the LOLA look-ahead step size ``eta`` (ignored by naive learners)."""

    gamma: float = ipd.GAMMA
    lookahead: float = 1.0


def policy(theta: jax.Array) -> jax.Array:
    """Cooperation probabilities of logits. (..., 5) -> (..., 5)."""
    return jax.nn.sigmoid(theta)


def value(theta_me: jax.Array, theta_other: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """My exact discounted value (scalar), from my own point of view."""
    return ipd.exact_value(policy(theta_me), policy(theta_other), gamma)[0]


def _check_theta(theta: jax.Array, name: str) -> None:
    if theta.ndim < 1 or theta.shape[-1] != 5:
        raise ValueError(f"{name} must have shape (..., 5) of logits [start, CC, CD, DC, DD], got {theta.shape}")


def simulate_exact(
    dir1: Direction,
    dir2: Direction,
    theta1: jax.Array,
    theta2: jax.Array,
    lr: float | tuple[float, float],
    steps: int,
) -> tuple[jax.Array, jax.Array]:
    """Simultaneous updates of two exact learners.

    dir1, dir2: bound directions ``(theta_me, theta_other) -> (5,)``; theta1, theta2:
    (..., 5) initial logits (leading dims are vmapped over); lr: one step size or one per
    player; steps: number of updates. Returns the trajectories ``(..., steps + 1, 5)`` of
    both players' logits (index 0 is the initialisation).
    """
    theta1, theta2 = jnp.asarray(theta1), jnp.asarray(theta2)
    _check_theta(theta1, "theta1")
    _check_theta(theta2, "theta2")
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    lr1, lr2 = lr if isinstance(lr, (tuple, list)) else (lr, lr)
    if theta1.shape != theta2.shape:
        theta1, theta2 = jnp.broadcast_arrays(theta1, theta2)

    def run(t1, t2):
        def body(carry, _):
            a, b = carry
            a_new = a + lr1 * dir1(a, b)
            b_new = b + lr2 * dir2(b, a)
            return (a_new, b_new), (a_new, b_new)

        _, (tr1, tr2) = jax.lax.scan(body, (t1, t2), None, length=int(steps))
        return jnp.concatenate([t1[None], tr1]), jnp.concatenate([t2[None], tr2])

    f = run
    for _ in range(theta1.ndim - 1):
        f = jax.vmap(f)
    return jax.jit(f)(theta1, theta2)


def fixed_direction(theta_me: jax.Array, theta_other: jax.Array, cfg=None) -> jax.Array:
    """A fixed opponent never changes its policy."""
    return jnp.zeros_like(theta_me)


# ---------------------------------------------------------------------------
# Fixed reference opponents (IPD memory-1)
# ---------------------------------------------------------------------------

#: Cooperation probabilities [start, CC, CD, DC, DD] (own point of view).
IPD_FIXED = {
    "always_cooperate": jnp.array([1.0, 1.0, 1.0, 1.0, 1.0]),
    "always_defect": jnp.array([0.0, 0.0, 0.0, 0.0, 0.0]),
    # Cooperate first, then copy the other's last action: C after (., C), D after (., D).
    "tit_for_tat": jnp.array([1.0, 1.0, 0.0, 1.0, 0.0]),
    "random": jnp.array([0.5, 0.5, 0.5, 0.5, 0.5]),
}


def fixed_theta(name: str) -> jax.Array:
    """Logits of a fixed IPD opponent, probabilities 0/1 clipped to ``±LOGIT_CAP``."""
    if name not in IPD_FIXED:
        raise ValueError(f"name must be one of {sorted(IPD_FIXED)}, got {name!r}")
    p = IPD_FIXED[name]
    return jnp.where(p == 0.5, 0.0, jnp.where(p > 0.5, LOGIT_CAP, -LOGIT_CAP))


# ---------------------------------------------------------------------------
# Metrics (exact, memory-1 IPD policies given as probabilities)
# ---------------------------------------------------------------------------


def visitation(p1: jax.Array, p2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Normalised discounted visitation of the joint actions (CC, CD, DC, DD), player 1's
    ordering: ``(1 - gamma) sum_t gamma^t P(a_t = s)``; sums to 1. (4,)"""
    d0, P = ipd.markov_chain(p1, p2)
    return (1 - gamma) * jnp.linalg.solve((jnp.eye(4) - gamma * P).T, d0)


def reward_per_step(p1: jax.Array, p2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Both players' normalised discounted reward per step, (2,): −1 for mutual
    cooperation, −2 for mutual defection."""
    v1, v2 = ipd.exact_value(p1, p2, gamma)
    return (1 - gamma) * jnp.stack([v1, v2])


def mutual_cooperation(p1: jax.Array, p2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Normalised discounted probability of mutual cooperation (CC)."""
    return visitation(p1, p2, gamma)[0]


def ipd_pareto_gap(r1: jax.Array, r2: jax.Array) -> jax.Array:
    """How much both players could gain equally per step before reaching the Pareto front.

    The feasible per-step payoffs are the convex hull of (−1,−1), (−3,0), (0,−3), (−2,−2);
    its Pareto front is ``r1 + 2 r2 <= -3`` and ``2 r1 + r2 <= -3``. Returns
    ``min((-3 - r1 - 2 r2) / 3, (-3 - 2 r1 - r2) / 3)``: 0 on the front (mutual cooperation,
    exploitation), 1 at mutual defection.
    """
    return jnp.minimum((-3.0 - r1 - 2.0 * r2) / 3.0, (-3.0 - 2.0 * r1 - r2) / 3.0)


def exploitability(p: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Reward per step of policy ``p`` against always-defect (−2 at best, −3 at worst)."""
    return reward_per_step(p, IPD_FIXED["always_defect"], gamma)[0]


OUTCOMES = ("mutual defection", "mutual cooperation", "exploitation", "other")


def classify_outcome(p1: jax.Array, p2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Outcome index into :data:`OUTCOMES` from the per-step rewards (r1, r2):
    mutual defection if both <= −1.8, mutual cooperation if both >= −1.2, exploitation if
    they differ by more than 1, else other. Vectorised over leading dims of p1, p2."""
    r = jnp.vectorize(lambda a, b: reward_per_step(a, b, gamma), signature="(5),(5)->(2)")(p1, p2)
    r1, r2 = r[..., 0], r[..., 1]
    return jnp.select(
        [(r1 <= -1.8) & (r2 <= -1.8), (r1 >= -1.2) & (r2 >= -1.2), jnp.abs(r1 - r2) > 1.0],
        [0, 1, 2],
        default=3,
    )


def is_tft_like(p: jax.Array) -> jax.Array:
    """Reciprocity: the policy rounded to deterministic actions is tit-for-tat on the four
    memory states, i.e. cooperates after the other cooperated (p_CC > 0.5, p_DC > 0.5) and
    defects after the other defected (p_CD < 0.5, p_DD < 0.5). (..., 5) -> (...,) bool."""
    return (p[..., 1] > 0.5) & (p[..., 2] < 0.5) & (p[..., 3] > 0.5) & (p[..., 4] < 0.5)


def own_coin_rate(picked_own: jax.Array, picked_other: jax.Array) -> jax.Array:
    """Fraction of the coins picked up that were the picker's own colour (sampled Coin Game).
    Inputs: bool arrays of any matching shape (summed over everything); nan if no pick-ups."""
    own = jnp.sum(picked_own)
    total = own + jnp.sum(picked_other)
    return jnp.where(total > 0, own / jnp.maximum(total, 1), jnp.nan)


# ---------------------------------------------------------------------------
# A 2-D slice of the 5-D policy space for vector-field plots
# ---------------------------------------------------------------------------


def reciprocity_policy(x: jax.Array, y: jax.Array, start: float = 0.9) -> jax.Array:
    """The memory-1 policy ``[start, x, y, x, y]``: cooperate with probability ``x`` after
    the other cooperated and ``y`` after it defected. (1, 0) is TFT, (1, 1) always-cooperate,
    (0, 0) always-defect. Returns (..., 5) probabilities."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    s = jnp.full(jnp.broadcast_shapes(x.shape, y.shape), start)
    return jnp.stack([s, *jnp.broadcast_arrays(x, y, x, y)], axis=-1)


def reciprocity_field(direction: Direction, xs: jax.Array, ys: jax.Array, start: float = 0.9) -> tuple[jax.Array, jax.Array]:
    """Update of the slice coordinates when both players play ``reciprocity_policy(x, y)``.

    For each grid point the learner's logit direction ``d = direction(theta, theta)`` is
    mapped to probabilities (``dp = p (1 - p) d``) and projected onto the slice:
    ``dx = (dp_CC + dp_DC) / 2``, ``dy = (dp_CD + dp_DD) / 2``. By symmetry both players move
    the same way. xs, ys: (n,) grids in (0, 1). Returns (dx, dy), each (len(ys), len(xs)).
    """
    X, Y = jnp.meshgrid(jnp.asarray(xs), jnp.asarray(ys))
    p = reciprocity_policy(X, Y, start)
    theta = jnp.log(p) - jnp.log1p(-p)

    def one(t):
        dp = jax.nn.sigmoid(t) * (1 - jax.nn.sigmoid(t)) * direction(t, t)
        return jnp.stack([(dp[1] + dp[3]) / 2, (dp[2] + dp[4]) / 2])

    d = jax.jit(jax.vmap(one))(theta.reshape(-1, 5)).reshape(X.shape + (2,))
    return d[..., 0], d[..., 1]

"""The IPD meta-game of Model-Free Opponent Shaping (M-FOS, Lu et al. 2022, arXiv:2205.01447).

One *meta-step* is one whole episode of the inner game, the IPD with memory-1 policies, played
in closed form (:func:`lowrank_es.games.ipd.exact_value`, discount ``gamma`` = 0.96):

* the meta-state is both players' inner policies of the last episode, as cooperation
  probabilities ``[p_shaper (5), p_opponent (5)]`` (10,), each from its own point of view;
* the meta-action is the shaper's inner policy for the next episode, as logits (5,);
* the meta-reward is the shaper's normalised discounted reward per step of that episode,
  ``(1 - gamma) V`` (-1 for mutual cooperation, -2 for mutual defection);
* the opponent is a *learner*: after each episode it takes one exact gradient step on its
  own value against the shaper's policy of that episode, naive (``grad V``) or LOLA (it
  anticipates one naive step of the shaper, :func:`lowrank_es.shaping.lola.direction`).

A meta-episode is ``meta_steps`` such episodes against a batch of opponents whose initial
logits are drawn ``N(0, init_std^2)``, as is the shaper's policy of the "episode before the
first" that the first meta-state shows. Everything is pure and vmaps: :func:`rollout` scans
the meta-steps over a batch ``(B,)`` of opponents, :func:`selfplay_rollout` plays two
meta-policies against each other (no inner learners: each meta-policy sets its own policy).
A meta-policy is any function ``obs (B, 10) -> logits (B, 5)``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from lowrank_es.games import ipd
from lowrank_es.shaping import lola
from lowrank_es.shaping.exact import ExactConfig, naive_direction, policy, simulate

OPPONENTS = ("naive", "lola")
OBS_DIM = 10
ACTION_DIM = 5

MetaPolicy = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class MetaGameConfig:
    """The meta-game. M-FOS's IPD setting: naive learners with step size 1, 100 meta-steps,
    initial logits N(0, 1), gamma 0.96.

    opponent: ``"naive"`` or ``"lola"``; lr: the opponent's step size (> 0); lookahead: LOLA's
    look-ahead step ``eta`` (M-FOS uses the step size); meta_steps: inner episodes per
    meta-episode (>= 1); init_std: std of the random initial logits (>= 0).
    """

    opponent: str = "naive"
    lr: float = 1.0
    lookahead: float = 1.0
    gamma: float = ipd.GAMMA
    meta_steps: int = 100
    init_std: float = 1.0

    def __post_init__(self) -> None:
        if self.opponent not in OPPONENTS:
            raise ValueError(f"opponent must be one of {OPPONENTS}, got {self.opponent!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.lookahead >= 0:
            raise ValueError(f"lookahead must be >= 0, got {self.lookahead}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")
        if not isinstance(self.meta_steps, int) or self.meta_steps < 1:
            raise ValueError(f"meta_steps must be an integer >= 1, got {self.meta_steps!r}")
        if not self.init_std >= 0:
            raise ValueError(f"init_std must be >= 0, got {self.init_std}")


class MetaState(NamedTuple):
    """The meta-game's state for a batch of B opponents.

    opponent: (B, 5) the learners' current logits; obs: (B, 10) the meta-state the shaper
    sees, ``sigmoid([shaper's last logits, opponent's logits it played with])``.
    """

    opponent: jax.Array
    obs: jax.Array


def observe(shaper: jax.Array, opponent: jax.Array) -> jax.Array:
    """Meta-state of an episode played by logits ``shaper`` and ``opponent`` (..., 5) -> (..., 10)."""
    return policy(jnp.concatenate([shaper, opponent], axis=-1))


def rewards_per_step(shaper: jax.Array, opponent: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Both players' normalised discounted reward per step of one inner episode, from logits.
    (..., 5), (..., 5) -> (..., 2) as (shaper, opponent)."""
    def one(a, b):
        return (1.0 - gamma) * jnp.stack(ipd.exact_value(policy(a), policy(b), gamma))

    return jnp.vectorize(one, signature="(5),(5)->(2)")(shaper, opponent)


def opponent_update(opponent: jax.Array, shaper: jax.Array, cfg: MetaGameConfig) -> jax.Array:
    """The learner's step after an episode: ``theta + lr * direction(theta, shaper)``, (..., 5)."""
    d = jnp.vectorize(learner_direction(cfg.opponent, cfg), signature="(5),(5)->(5)")(opponent, shaper)
    return opponent + cfg.lr * d


def reset(key: jax.Array, batch: int, cfg: MetaGameConfig) -> MetaState:
    """B fresh opponents with N(0, init_std^2) logits, and a random previous shaper policy."""
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    k_opp, k_shaper = jax.random.split(key)
    opponent = cfg.init_std * jax.random.normal(k_opp, (int(batch), ACTION_DIM))
    shaper = cfg.init_std * jax.random.normal(k_shaper, (int(batch), ACTION_DIM))
    return MetaState(opponent, observe(shaper, opponent))


def step(state: MetaState, shaper: jax.Array, cfg: MetaGameConfig) -> tuple[MetaState, jax.Array]:
    """One meta-step: play the episode ``shaper`` (B, 5) vs the learners, then let them learn.
    Returns the new state and the rewards per step (B, 2) as (shaper, opponent)."""
    rewards = rewards_per_step(shaper, state.opponent, cfg.gamma)
    new_opponent = opponent_update(state.opponent, shaper, cfg)
    return MetaState(new_opponent, observe(shaper, state.opponent)), rewards


class Trajectory(NamedTuple):
    """A meta-episode: rewards (T, B, 2) as (shaper, opponent) per step, and the inner
    policies played, as cooperation probabilities, shaper (T, B, 5) and opponent (T, B, 5)."""

    rewards: jax.Array
    shaper: jax.Array
    opponent: jax.Array


def rollout(meta_policy: MetaPolicy, key: jax.Array, batch: int, cfg: MetaGameConfig) -> Trajectory:
    """One meta-episode of ``meta_policy`` against ``batch`` fresh learners (``lax.scan``)."""
    state = reset(key, batch, cfg)

    def body(s, _):
        action = meta_policy(s.obs)
        s_new, r = step(s, action, cfg)
        return s_new, (r, policy(action), policy(s.opponent))

    _, (r, ps, po) = jax.lax.scan(body, state, None, length=cfg.meta_steps)
    return Trajectory(r, ps, po)


def meta_return(meta_policy: MetaPolicy, key: jax.Array, batch: int, cfg: MetaGameConfig) -> jax.Array:
    """The shaper's mean reward per step over the meta-episode and the batch (scalar)."""
    return rollout(meta_policy, key, batch, cfg).rewards[..., 0].mean()


def selfplay_rollout(policy_a: MetaPolicy, policy_b: MetaPolicy, key: jax.Array, batch: int,
                     cfg: MetaGameConfig) -> Trajectory:
    """Meta-self-play: two meta-policies set their own inner policies every episode, each
    seeing ``[own last policy, other's last policy]``; the first meta-state comes from random
    logits. ``cfg.opponent`` and ``lr`` are unused. The Trajectory's ``shaper`` is player A,
    ``opponent`` player B; rewards (T, B, 2) as (A, B)."""
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    ka, kb = jax.random.split(key)
    a0 = cfg.init_std * jax.random.normal(ka, (int(batch), ACTION_DIM))
    b0 = cfg.init_std * jax.random.normal(kb, (int(batch), ACTION_DIM))

    def body(carry, _):
        a_prev, b_prev = carry
        a = policy_a(observe(a_prev, b_prev))
        b = policy_b(observe(b_prev, a_prev))
        return (a, b), (rewards_per_step(a, b, cfg.gamma), policy(a), policy(b))

    _, (r, pa, pb) = jax.lax.scan(body, (a0, b0), None, length=cfg.meta_steps)
    return Trajectory(r, pa, pb)


def learner_direction(learner: str, cfg: MetaGameConfig) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The bound exact direction ``(theta_me, theta_other) -> (5,)`` of ``"naive"`` or ``"lola"``."""
    if learner not in OPPONENTS:
        raise ValueError(f"learner must be one of {OPPONENTS}, got {learner!r}")
    exact = ExactConfig(gamma=cfg.gamma, lookahead=cfg.lookahead)
    d = {"naive": naive_direction, "lola": lola.direction}[learner]
    return lambda me, other: d(me, other, exact)


def learner_rollout(learner: str, key: jax.Array, batch: int, cfg: MetaGameConfig, lr: float | None = None) -> Trajectory:
    """A gradient learner (``"naive"`` or ``"lola"``, step ``lr``, default ``cfg.lr``) in the
    shaper's seat against the same learners as :func:`rollout` (same key = same learners and
    the learner starts from the "previous shaper policy" of the first meta-state): the
    baseline a meta-shaper is compared with. Both learn simultaneously after each episode
    (the exact-learner simulation)."""
    state = reset(key, batch, cfg)
    theta = jnp.log(state.obs[:, :ACTION_DIM]) - jnp.log1p(-state.obs[:, :ACTION_DIM])
    mine, theirs = learner_direction(learner, cfg), learner_direction(cfg.opponent, cfg)
    t1, t2 = simulate(mine, theirs, theta, state.opponent, (cfg.lr if lr is None else lr, cfg.lr), cfg.meta_steps)
    t1, t2 = jnp.swapaxes(t1[:, :-1], 0, 1), jnp.swapaxes(t2[:, :-1], 0, 1)  # (T, B, 5): the policies played
    return Trajectory(rewards_per_step(t1, t2, cfg.gamma), policy(t1), policy(t2))


# ---------------------------------------------------------------------------
# Zero-determinant extortion (Press & Dyson 2012) in this IPD
# ---------------------------------------------------------------------------
#
# With payoffs (R, S, T, P) = (-1, -3, 0, -2), a memory-1 strategy with
# p - [1, 1, 0, 0] = phi * ((S_X - P) - chi (S_Y - P)) over the states (CC, CD, DC, DD)
# (S_X = (R, S, T, P), S_Y = (R, T, S, P)) enforces s_X - P = chi (s_Y - P) on the
# long-run average rewards: chi > 1 extorts (the opponent's best reply, full cooperation,
# gives the extortioner more than mutual cooperation does).


def zd_extortion(chi: float, phi: float) -> jax.Array:
    """The ZD extortion policy ``[p_CC, p_CD, p_DC, p_DD]`` (4,) of factor ``chi >= 1``;
    ``phi`` in ``(0, 1 / (1 + 2 chi)]`` keeps every probability in [0, 1]."""
    if not chi >= 1:
        raise ValueError(f"chi must be >= 1, got {chi}")
    if not 0 < phi <= 1.0 / (1.0 + 2.0 * chi):
        raise ValueError(f"phi must be in (0, 1 / (1 + 2 chi)] = (0, {1.0 / (1.0 + 2.0 * chi):.4g}], got {phi}")
    sx, sy = _surplus()
    return jnp.array([1.0, 1.0, 0.0, 0.0]) + phi * (sx - chi * sy)


def _surplus() -> tuple[jax.Array, jax.Array]:
    """``S_X - P`` and ``S_Y - P`` over the states (CC, CD, DC, DD) of X's point of view."""
    return ipd.REWARD_1 - ipd.REWARD_1[3], ipd.REWARD_2 - ipd.REWARD_2[3]


@functools.partial(jax.jit, static_argnames=("grid",))
def fit_zd(p: jax.Array, grid: int = 400) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The ZD extortion policy nearest (least squares) to the memory states of ``p`` (5,)
    (start probability ignored), over a log-spaced grid of ``chi`` in [1, 1000] with the best
    ``phi`` per ``chi`` (closed form, clipped to its valid range). Returns ``(chi, phi, rms
    distance)``; a large distance says ``p`` is no ZD strategy at all."""
    q = p[1:] - jnp.array([1.0, 1.0, 0.0, 0.0])
    sx, sy = _surplus()
    chis = jnp.logspace(0.0, 3.0, grid)

    def one(chi):
        v = sx - chi * sy
        phi = jnp.clip(jnp.dot(q, v) / jnp.dot(v, v), 1e-6, 1.0 / (1.0 + 2.0 * chi))
        return phi, jnp.sqrt(jnp.mean((q - phi * v) ** 2))

    phis, errs = jax.vmap(one)(chis)
    i = jnp.argmin(errs)
    return chis[i], phis[i], errs[i]

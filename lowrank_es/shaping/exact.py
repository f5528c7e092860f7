"""The one exact-IPD learner layer: values, the naive gradient, simultaneous learning,
reciprocity and the metrics every exact learner is judged by.

Policies and learners
---------------------
* A policy is a vector of logits ``theta`` (5,); ``p = sigmoid(theta)`` are the cooperation
  probabilities ``[p_start, p_CC, p_CD, p_DC, p_DD]`` of :mod:`lowrank_es.games.ipd`, indexed
  by *(my last action, the other's last action)* from the player's own point of view.
* :func:`value` is my exact discounted value ``exact_value(p_me, p_other)[0]`` (player 2's is
  ``value(theta2, theta1)`` by the symmetry of the game).
* An exact learner is a direction ``direction(theta_me, theta_other, cfg) -> (5,)`` (naive:
  :func:`naive_gradient`; LOLA, LOQA, AdAlign add their shaping terms). :func:`simulate` runs
  two bound directions ``dir(theta_me, theta_other)`` with simultaneous steps
  ``theta_i <- theta_i + lr_i dir_i(theta_i, theta_-i)``; :func:`selfplay` does so from
  ``n`` random N(0, std^2) initialisations.

Reciprocity (one definition for every IPD claim)
------------------------------------------------
:func:`reciprocity` classifies a memory-1 policy. **strict**: the policy, rounded to its more
likely action in each of the four memory states, is tit-for-tat (cooperate after the other
cooperated, CC and DC; defect after the other defected, CD and DD); the start state is left
out. This is our reading of the LOLA paper's "% TFT" (Table 1: "the probability of agents
playing TFT" over 50 runs), which the paper does not define: its naive learners are 20.8 %
"TFT" at -1.98 per step, i.e. in mutual defection, which a criterion asking for C at the start
would not allow (a TFT that opens with D stays in DD against its copy). **generous**: the
same on the reactive averages, P(C | the other cooperated) = (p_CC + p_DC) / 2 > 1/2 and
P(C | the other defected) = (p_CD + p_DD) / 2 < 1/2, so one lenient memory state is
tolerated. The threshold 1/2 is also the largest forgiveness of generous TFT for these
payoffs (Nowak & Sigmund: ``min(1 - (T-R)/(R-S), (R-P)/(T-P)) = 1/2``). ``tft_probability``,
the mean probability of TFT's action over the four memory states, is the literal reading of
the paper's caption.

The papers themselves show reciprocity as a bar chart of P(C | state) over runs (LOLA Fig. 3,
LOQA Fig. 1, Advantage Alignment Fig. 1b) and call it TFT by eye; none of the official codes
computes a "% TFT". :func:`tft_profile` makes that reading a test: the 95 % interval of the
run-mean P(C | state) lies on TFT's side of 1/2 in each of the four memory states.

Official IPD setting
--------------------
:func:`shared_selfplay` runs the IPD setting of the official LOQA code (``ipd.py`` with the
README's flags; Advantage Alignment's authors publish no IPD code): one policy playing itself,
actions replaced by uniform ones with probability ``epsilon`` = 0.2 (:func:`epsilon_greedy`),
Adam 1e-3, 7,000 updates, logits starting at 0 (and, for a spread over runs, at N(0, 1)).
Exploration matters: without it the state DC (I defected, the other cooperated) is almost never
visited in self-play, and its probability stays wherever it started.

Metrics are normalised discounted averages ``(1 - gamma) sum_t gamma^t x_t`` (exact).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats as st

from lowrank_es.games import ipd

Direction = Callable[[jax.Array, jax.Array], jax.Array]

LOGIT_CAP = 10.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ExactConfig:
    """Config of the exact naive and LOLA learners (fields are pytree leaves, so it can be
    traced). ``gamma``: discount in [0, 1); ``lookahead``: LOLA's look-ahead step ``eta``."""

    gamma: float = ipd.GAMMA
    lookahead: float = 1.0


def policy(theta: jax.Array) -> jax.Array:
    """Cooperation probabilities of logits. (..., 5) -> (..., 5)."""
    return jax.nn.sigmoid(theta)


def value(theta_me: jax.Array, theta_other: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """My exact discounted value (scalar), from my own point of view."""
    return ipd.exact_value(policy(theta_me), policy(theta_other), gamma)[0]


def naive_gradient(theta_me: jax.Array, theta_other: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """``grad_me value(theta_me, theta_other)`` (5,): the naive learner's direction."""
    return jax.grad(value)(theta_me, theta_other, gamma)


def naive_direction(theta_me: jax.Array, theta_other: jax.Array, cfg: ExactConfig = ExactConfig()) -> jax.Array:
    """The naive learner in the direction interface (5,)."""
    return naive_gradient(theta_me, theta_other, cfg.gamma)


def fixed_direction(theta_me: jax.Array, theta_other: jax.Array, cfg=None) -> jax.Array:
    """A fixed opponent never changes its policy."""
    return jnp.zeros_like(theta_me)


def _check_theta(theta: jax.Array, name: str) -> None:
    if theta.ndim < 1 or theta.shape[-1] != 5:
        raise ValueError(f"{name} must have shape (..., 5) of logits [start, CC, CD, DC, DD], got {theta.shape}")


def trajectory(dir1: Direction, dir2: Direction, theta1: jax.Array, theta2: jax.Array, lr1: float, lr2: float,
               steps: int) -> tuple[jax.Array, jax.Array]:
    """One pair of learners, (5,) logits each, ``steps`` simultaneous updates (not jitted, no
    checks: the building block of :func:`simulate` and the league). Returns (steps + 1, 5) x 2."""

    def body(carry, _):
        a, b = carry
        new = (a + lr1 * dir1(a, b), b + lr2 * dir2(b, a))
        return new, new

    _, (tr1, tr2) = jax.lax.scan(body, (theta1, theta2), None, length=int(steps))
    return jnp.concatenate([theta1[None], tr1]), jnp.concatenate([theta2[None], tr2])


def simulate(dir1: Direction, dir2: Direction, theta1: jax.Array, theta2: jax.Array,
             lr: float | tuple[float, float], steps: int) -> tuple[jax.Array, jax.Array]:
    """Simultaneous updates of two exact learners.

    dir1, dir2: bound directions ``(theta_me, theta_other) -> (5,)``; theta1, theta2: (..., 5)
    initial logits (leading dims are vmapped over); lr: one step size or one per player.
    Returns both players' logits after every step, ``(..., steps + 1, 5)`` (index 0 is the
    initialisation)."""
    theta1, theta2 = jnp.asarray(theta1), jnp.asarray(theta2)
    _check_theta(theta1, "theta1")
    _check_theta(theta2, "theta2")
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    lr1, lr2 = lr if isinstance(lr, (tuple, list)) else (lr, lr)
    if theta1.shape != theta2.shape:
        theta1, theta2 = jnp.broadcast_arrays(theta1, theta2)
    f = lambda a, b: trajectory(dir1, dir2, a, b, lr1, lr2, steps)  # noqa: E731
    for _ in range(theta1.ndim - 1):
        f = jax.vmap(f)
    return jax.jit(f)(theta1, theta2)


def random_inits(seed: int, n: int, std: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Independent N(0, std^2) logits for both players, (n, 5) each (the LOLA paper's start)."""
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return std * jax.random.normal(k1, (int(n), 5)), std * jax.random.normal(k2, (int(n), 5))


def selfplay(direction: Direction, n: int = 50, steps: int = 200, lr: float = 1.0, seed: int = 0,
             std: float = 1.0, every: int = 5) -> dict[str, np.ndarray]:
    """Two copies of one learner from ``n`` random starts. Returns the logit histories
    ``h1``, ``h2`` (n, steps + 1, 5), final probabilities ``p1``, ``p2`` (n, 5), reward per
    step ``r`` (n, 2) and ``curve``: player 1's reward per step after every ``every``-th
    step, (n, steps // every + 1)."""
    t1, t2 = random_inits(seed, n, std)
    h1, h2 = simulate(direction, direction, t1, t2, lr, steps)
    p1, p2 = policy(h1[:, -1]), policy(h2[:, -1])
    r = jax.vmap(reward_per_step)(p1, p2)
    curve = jax.vmap(jax.vmap(lambda a, b: reward_per_step(policy(a), policy(b))[0]))(h1[:, ::every], h2[:, ::every])
    return {"h1": np.asarray(h1), "h2": np.asarray(h2), "p1": np.asarray(p1), "p2": np.asarray(p2), "r": np.asarray(r),
            "curve": np.asarray(curve)}


def final_policies(result: dict) -> np.ndarray:
    """Both players' final cooperation probabilities of a :func:`selfplay` result (or its saved
    record), player 1's runs first: (2 n, 5)."""
    return np.concatenate([np.asarray(result["p1"]), np.asarray(result["p2"])])


def behaviour_logits(theta: jax.Array, epsilon: float) -> jax.Array:
    """Logits of the policy that plays ``sigmoid(theta)`` but replaces its action by a uniformly
    random one with probability ``epsilon``: ``logit((1 - epsilon) sigmoid(theta) + epsilon / 2)``."""
    p = (1 - epsilon) * jax.nn.sigmoid(theta) + epsilon / 2
    return jnp.log(p) - jnp.log1p(-p)


def epsilon_greedy(direction: Direction, epsilon: float) -> Direction:
    """The direction of a learner whose every action is replaced by a uniformly random one with
    probability ``epsilon`` (both players): the game is played by the behaviour policies
    ``(1 - epsilon) sigmoid(theta) + epsilon / 2``; ``direction`` is evaluated at their logits
    and mapped back to ``theta`` by the chain rule (for a gradient, the exact gradient of the
    behaviour policy's objective). ``epsilon = 0`` is ``direction`` itself."""
    if not 0.0 <= float(epsilon) < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")

    def d(theta_me: jax.Array, theta_other: jax.Array) -> jax.Array:
        s = jax.nn.sigmoid(theta_me)
        p_me = (1 - epsilon) * s + epsilon / 2
        # d behaviour_logits / d theta, elementwise: (1 - eps) s (1 - s) / (p (1 - p))
        return (direction(behaviour_logits(theta_me, epsilon), behaviour_logits(theta_other, epsilon))
                * (1 - epsilon) * s * (1 - s) / (p_me * (1 - p_me)))

    return d


@dataclasses.dataclass(frozen=True)
class SharedSelfPlay:
    """The official LOQA IPD setting (``ipd.py``, README flags): one shared policy in self-play
    (``just_self_play``), ``epsilon``-greedy exploration 0.2, Adam ``lr`` 1e-3 for ``steps``
    7,000 (the paper's figure reads step 7,000), logits from 0; ``runs`` extra runs from
    N(0, ``std``^2) logits give a spread; the zero-start run's policy is kept every
    ``every`` updates."""

    epsilon: float = 0.2
    lr: float = 1e-3
    steps: int = 7000
    runs: int = 20
    std: float = 1.0
    every: int = 100

    def __post_init__(self):
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {self.epsilon}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.steps < 1 or self.runs < 2 or self.every < 1:
            raise ValueError(f"steps >= 1, runs >= 2 and every >= 1 needed, got {self.steps}, {self.runs}, {self.every}")


def shared_selfplay(direction: Direction, cfg: SharedSelfPlay = SharedSelfPlay(), seed: int = 0) -> dict[str, np.ndarray]:
    """One policy playing itself as in :class:`SharedSelfPlay`: it ascends
    ``epsilon_greedy(direction)(theta, theta)`` with Adam (a shared policy gets the same
    direction from both seats). Returns ``p_zero`` (5,) and ``curve_zero`` (steps // every + 1, 5),
    the zero-start run's final and intermediate cooperation probabilities; ``p`` (runs, 5) the
    N(0, std^2)-start runs' final ones; ``r`` (runs,) and ``r_zero`` their reward per step in
    self-play without exploration."""
    d = epsilon_greedy(direction, cfg.epsilon)
    opt = optax.adam(cfg.lr)

    def train(theta0):
        def body(carry, _):
            theta, state = carry
            upd, state = opt.update(-d(theta, theta), state, theta)
            theta = optax.apply_updates(theta, upd)
            return (theta, state), theta

        (theta, _), hist = jax.lax.scan(body, (theta0, opt.init(theta0)), None, length=int(cfg.steps))
        return theta, jnp.concatenate([theta0[None], hist])[::cfg.every]

    t0, _ = random_inits(seed, cfg.runs, cfg.std)
    # The zero start rides in the same vmapped batch as the random starts: one program per
    # learner instead of two (compiling dominates these runs); row 0 is the zero start.
    thetas, hists = jax.jit(jax.vmap(train))(jnp.concatenate([jnp.zeros((1, 5)), t0]))
    theta_zero, hist_zero, thetas = thetas[0], hists[0], thetas[1:]
    p, p_zero = policy(thetas), policy(theta_zero)
    r = jax.vmap(lambda q: reward_per_step(q, q)[0])(p)
    return {"p_zero": np.asarray(p_zero), "curve_zero": np.asarray(policy(hist_zero)), "p": np.asarray(p),
            "r": np.asarray(r), "r_zero": float(reward_per_step(p_zero, p_zero)[0])}


# ---------------------------------------------------------------------------
# Fixed reference opponents (memory-1, own view)
# ---------------------------------------------------------------------------

#: Cooperation probabilities [start, CC, CD, DC, DD].
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
# Metrics (exact, memory-1 policies given as probabilities)
# ---------------------------------------------------------------------------


def visitation(p1: jax.Array, p2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Normalised discounted visitation of the joint actions (CC, CD, DC, DD), player 1's
    ordering: ``(1 - gamma) sum_t gamma^t P(a_t = s)``; sums to 1. (4,)"""
    d0, P = ipd.markov_chain(p1, p2)
    return (1 - gamma) * jnp.linalg.solve((jnp.eye(4) - gamma * P).T, d0)


def reward_per_step(p1: jax.Array, p2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Both players' normalised discounted reward per step (2,): -1 for mutual cooperation,
    -2 for mutual defection."""
    v1, v2 = ipd.exact_value(p1, p2, gamma)
    return (1 - gamma) * jnp.stack([v1, v2])


def mutual_cooperation(p1: jax.Array, p2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Normalised discounted probability of mutual cooperation (CC)."""
    return visitation(p1, p2, gamma)[0]


def ipd_pareto_gap(r1: jax.Array, r2: jax.Array) -> jax.Array:
    """How much both players could gain equally per step before reaching the Pareto front of
    the convex hull of (-1,-1), (-3,0), (0,-3), (-2,-2): ``min((-3 - r1 - 2 r2) / 3,
    (-3 - 2 r1 - r2) / 3)``; 0 on the front, 1 at mutual defection."""
    return jnp.minimum((-3.0 - r1 - 2.0 * r2) / 3.0, (-3.0 - 2.0 * r1 - r2) / 3.0)


def exploitability(p: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Reward per step of policy ``p`` against always-defect (-2 at best, -3 at worst)."""
    return reward_per_step(p, IPD_FIXED["always_defect"], gamma)[0]


OUTCOMES = ("mutual defection", "mutual cooperation", "exploitation", "other")


def classify_outcome(p1: jax.Array, p2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Outcome index into :data:`OUTCOMES` from the per-step rewards (r1, r2): mutual
    defection if both <= -1.8, mutual cooperation if both >= -1.2, exploitation if they differ
    by more than 1, else other. Vectorised over leading dims of p1, p2."""
    r = jnp.vectorize(lambda a, b: reward_per_step(a, b, gamma), signature="(5),(5)->(2)")(p1, p2)
    r1, r2 = r[..., 0], r[..., 1]
    return jnp.select([(r1 <= -1.8) & (r2 <= -1.8), (r1 >= -1.2) & (r2 >= -1.2), jnp.abs(r1 - r2) > 1.0],
                      [0, 1, 2], default=3)


def reciprocity(p) -> dict[str, np.ndarray]:
    """The reciprocity test of every IPD claim (module docstring). p: (..., 5) cooperation
    probabilities. Returns ``strict`` and ``generous`` (...,) bool, and ``tft_probability``
    (...,): the mean over the four memory states of the probability of TFT's action."""
    p = np.asarray(p, dtype=float)
    if p.shape[-1] != 5:
        raise ValueError(f"p must have shape (..., 5) [start, CC, CD, DC, DD], got {p.shape}")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p must hold probabilities in [0, 1]")
    cc, cd, dc, dd = p[..., 1], p[..., 2], p[..., 3], p[..., 4]
    strict = (cc > 0.5) & (dc > 0.5) & (cd < 0.5) & (dd < 0.5)
    generous = ((cc + dc) / 2 > 0.5) & ((cd + dd) / 2 < 0.5)
    return {"strict": strict, "generous": generous, "tft_probability": (cc + dc + (1 - cd) + (1 - dd)) / 4}


#: TFT's action in the four memory states CC, CD, DC, DD (1 = cooperate): it copies the other's last action.
TFT_MEMORY = np.array([1, 0, 1, 0])


def tft_profile(p, level: float = 0.95) -> dict[str, np.ndarray | float]:
    """The papers' reading of reciprocity as a test: their figures show the run-mean P(C | state)
    with its spread and call the bars TFT when they are high after CC and DC and low after CD
    and DD. p: (runs, 5) cooperation probabilities. Returns ``mean`` and ``half`` (5,), the
    Student-t ``level`` interval's half-width over runs, and ``margin``: over the four memory
    states, the smallest distance from 1/2 of the interval's end nearest to it, counted positive
    on TFT's side (> 0: every bar is TFT-like at that confidence)."""
    p = np.asarray(p, dtype=float)
    if p.ndim != 2 or p.shape[-1] != 5 or p.shape[0] < 2:
        raise ValueError(f"p must have shape (runs >= 2, 5) [start, CC, CD, DC, DD], got {p.shape}")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p must hold probabilities in [0, 1]")
    mean = p.mean(0)
    half = st.t.ppf(0.5 + level / 2, p.shape[0] - 1) * p.std(0, ddof=1) / np.sqrt(p.shape[0])
    side = np.where(TFT_MEMORY == 1, mean[1:] - half[1:] - 0.5, 0.5 - mean[1:] - half[1:])
    return {"mean": mean, "half": half, "margin": float(side.min())}


# ---------------------------------------------------------------------------
# A 2-D slice of the 5-D policy space for vector-field plots
# ---------------------------------------------------------------------------


def reciprocity_policy(x: jax.Array, y: jax.Array, start: float = 0.9) -> jax.Array:
    """The memory-1 policy ``[start, x, y, x, y]``: cooperate with probability ``x`` after the
    other cooperated and ``y`` after it defected. (1, 0) is TFT, (1, 1) always-cooperate,
    (0, 0) always-defect. Returns (..., 5) probabilities."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    s = jnp.full(jnp.broadcast_shapes(x.shape, y.shape), start)
    return jnp.stack([s, *jnp.broadcast_arrays(x, y, x, y)], axis=-1)


def reciprocity_plane(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of policies (..., 5) in the reciprocity plane: ``x = (p_CC + p_DC) / 2``,
    ``y = (p_CD + p_DD) / 2``."""
    p = np.asarray(p)
    return (p[..., 1] + p[..., 3]) / 2, (p[..., 2] + p[..., 4]) / 2


def reciprocity_field(direction: Direction, xs: jax.Array, ys: jax.Array, start: float = 0.9) -> tuple[jax.Array, jax.Array]:
    """Update of the slice coordinates when both players play ``reciprocity_policy(x, y)``:
    the logit direction ``d = direction(theta, theta)`` mapped to probabilities
    (``dp = p (1 - p) d``) and projected, ``dx = (dp_CC + dp_DC) / 2``,
    ``dy = (dp_CD + dp_DD) / 2``. xs, ys: (n,) grids in (0, 1). Returns (dx, dy), each
    (len(ys), len(xs))."""
    X, Y = jnp.meshgrid(jnp.asarray(xs), jnp.asarray(ys))
    p = reciprocity_policy(X, Y, start)
    theta = jnp.log(p) - jnp.log1p(-p)

    def one(t):
        dp = jax.nn.sigmoid(t) * (1 - jax.nn.sigmoid(t)) * direction(t, t)
        return jnp.stack([(dp[1] + dp[3]) / 2, (dp[2] + dp[4]) / 2])

    d = jax.jit(jax.vmap(one))(theta.reshape(-1, 5)).reshape(X.shape + (2,))
    return d[..., 0], d[..., 1]

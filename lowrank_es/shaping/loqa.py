"""LOQA — Learning with Opponent Q-learning Awareness (Aghajohari et al., arXiv:2405.01035).

The agent models the opponent as acting by a softmax over the opponent's Q-values,
``pi_hat2(b|s) = softmax_b(Q2(s, b) / tau)``. Because ``Q2`` depends on the agent's own
policy, the agent can differentiate the opponent's modelled policy through it, and adds the
term ``E[sum_t gamma^t A1(s_t, b_t) grad_theta1 log pi_hat2(b_t|s_t)]`` to its own policy
gradient.

Two forms live here:

* **Exact IPD** (memory-1 policies, logits ``theta`` in R^5, ``p = sigmoid(theta)``, the
  conventions of :mod:`lowrank_es.games.ipd`): closed-form Q-values of both players on the
  five-state chain (``start, CC, CD, DC, DD``), ``Q2`` differentiated by autodiff through
  the linear solve. :func:`direction` has the learner interface
  ``direction(theta_me, theta_other, cfg) -> (5,)``.
* **Sampled Coin Game** (:func:`coin_init`, :func:`coin_train`): an actor and a Q critic per
  agent (MLPs on the flat observation), a Polyak target critic, an entropy bonus, self-play
  against the current agent or one drawn from a replay buffer of past agents, and the LOQA
  actor loss in which ``Q2`` of the taken opponent action is the opponent's Monte Carlo
  return, made differentiable in the agent's policy with DiCE "magic box" weights.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.games import ipd
from lowrank_es.shaping.naive import returns_to_go

# --------------------------------------------------------------------------------------
# Exact memory-1 IPD: closed-form values on the five-state chain
# --------------------------------------------------------------------------------------

#: Player 1's policy index for each of the five chain states (start, CC, CD, DC, DD).
IDX1 = jnp.array([0, 1, 2, 3, 4])
#: Player 2's own policy index in the same chain states (joint state seen swapped).
IDX2 = jnp.array([0, 1, 3, 2, 4])
#: Joint actions ab (0 CC, 1 CD, 2 DC, 3 DD): player 1's action a and player 2's action b.
A_OF = jnp.array([0, 0, 1, 1])
B_OF = jnp.array([0, 1, 0, 1])


class Tabular(NamedTuple):
    """Exact quantities of the memory-1 IPD for logits ``theta1, theta2`` (5,) each.

    States ``s`` are ``(start, CC, CD, DC, DD)`` in player 1's ordering; joint actions
    ``ab`` are ``(CC, CD, DC, DD)`` and lead to state ``1 + ab``.

    q1, q2: (5,) P(C) of each player in each state. J: (5, 4) joint-action probabilities.
    T: (5, 5) state transition matrix. D: (5,) discounted visitation ``sum_t gamma^t P(s_t=s)``
    from the start state. V1, V2: (5,) state values. Qab1, Qab2: (4,) joint-action values
    ``r(ab) + gamma V(1+ab)`` (the same in every state). A1, A2: (5, 4) joint advantages
    ``Q(ab) - V(s)``.
    """

    q1: jax.Array
    q2: jax.Array
    J: jax.Array
    T: jax.Array
    D: jax.Array
    V1: jax.Array
    V2: jax.Array
    Qab1: jax.Array
    Qab2: jax.Array
    A1: jax.Array
    A2: jax.Array


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= float(gamma) < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")


def _check_theta(theta: jax.Array, name: str) -> None:
    if jnp.shape(theta) != (5,):
        raise ValueError(f"{name} must have shape (5,) (logits of [p_start, p_CC, p_CD, p_DC, p_DD]), got {jnp.shape(theta)}")


def tabular(theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA) -> Tabular:
    """Closed-form values of the memory-1 IPD for logits ``theta1, theta2`` (5,)."""
    _check_theta(theta1, "theta1")
    _check_theta(theta2, "theta2")
    _check_gamma(gamma)
    q1 = jax.nn.sigmoid(theta1)[IDX1]
    q2 = jax.nn.sigmoid(theta2)[IDX2]
    J = ipd.joint_action_probs(q1, q2)  # (5, 4)
    T = jnp.concatenate([jnp.zeros((5, 1), J.dtype), J], axis=1)  # (5, 5): s -> 1 + ab
    I = jnp.eye(5, dtype=J.dtype)
    r1 = ipd.REWARD_1.astype(J.dtype)
    r2 = ipd.REWARD_2.astype(J.dtype)
    V1 = jnp.linalg.solve(I - gamma * T, J @ r1)
    V2 = jnp.linalg.solve(I - gamma * T, J @ r2)
    D = jnp.linalg.solve((I - gamma * T).T, I[0])
    Qab1 = r1 + gamma * V1[1:]
    Qab2 = r2 + gamma * V2[1:]
    A1 = Qab1[None, :] - V1[:, None]
    A2 = Qab2[None, :] - V2[:, None]
    return Tabular(q1, q2, J, T, D, V1, V2, Qab1, Qab2, A1, A2)


def opponent_q(theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Player 2's Q-values ``Q2(s, b)`` (5, 2), own action ``b`` in (C, D), averaged over
    player 1's action ``a ~ pi1(.|s)``: ``sum_a pi1(a|s) [r2(ab) + gamma V2(1+ab)]``."""
    tab = tabular(theta1, theta2, gamma)
    pa = jnp.stack([tab.q1, 1 - tab.q1], axis=-1)  # (5, 2) over a
    Qab = tab.Qab2.reshape(2, 2)  # [a, b]
    return pa @ Qab


def own_q(theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Player 1's Q-values ``Q1(s, a)`` (5, 2), averaged over ``b ~ pi2(.|s)``."""
    tab = tabular(theta1, theta2, gamma)
    pb = jnp.stack([tab.q2, 1 - tab.q2], axis=-1)  # (5, 2) over b
    Qab = tab.Qab1.reshape(2, 2)  # [a, b]
    return pb @ Qab.T


def opponent_model(theta1: jax.Array, theta2: jax.Array, tau: float, gamma: float = ipd.GAMMA) -> jax.Array:
    """LOQA's model of the opponent: ``pi_hat2(b|s) = softmax_b(Q2(s, b) / tau)``, (5, 2)."""
    if not float(tau) > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    return jax.nn.softmax(opponent_q(theta1, theta2, gamma) / tau, axis=-1)


@dataclasses.dataclass(frozen=True)
class LOQAConfig:
    """Exact-IPD LOQA. tau: opponent-model temperature (> 0); gamma in [0, 1);
    shaping: weight of the opponent-model term (1 is LOQA, 0 the naive gradient);
    lr: step size used by :func:`simulate`; taken_only: see :func:`loqa_term`."""

    tau: float = 1.0
    gamma: float = ipd.GAMMA
    shaping: float = 1.0
    lr: float = 1.0
    taken_only: bool = False

    def __post_init__(self):
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        _check_gamma(self.gamma)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def naive_gradient(theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """``grad_theta1 V1`` (5,) by autodiff of :func:`lowrank_es.games.ipd.exact_value`."""
    return jax.grad(lambda t: ipd.exact_value(jax.nn.sigmoid(t), jax.nn.sigmoid(theta2), gamma)[0])(theta1)


def loqa_term(
    theta1: jax.Array, theta2: jax.Array, tau: float = 1.0, gamma: float = ipd.GAMMA, taken_only: bool = False
) -> jax.Array:
    """The exact LOQA opponent-shaping term (5,)::

        sum_s D(s) sum_b pi2(b|s) A1(s, b) grad_theta1 log pi_hat2(b|s)

    the expectation, under the real play, of the sampled LOQA term
    ``sum_t gamma^t A1(s_t, b_t) grad log pi_hat2(b_t|s_t)``. ``A1(s, b) = Q1(s, b) - V1(s)``
    is player 1's advantage of the opponent's action (``a`` averaged out); ``D``, ``pi2`` and
    ``A1`` are held fixed, only ``pi_hat2`` is differentiated (through ``Q2``'s dependence
    on ``theta1``).

    ``taken_only=True`` is LOQA as implemented: only the *taken* action's ``Q2`` (a Monte
    Carlo return) carries a gradient, the other action's comes from the critic, so
    ``grad log pi_hat2(b|s) = (1 - pi_hat2(b|s)) grad Q2(s, b) / tau``. With
    ``taken_only=False`` the full softmax is differentiated; in expectation over ``b ~ pi2``
    the ``(1 - pi_hat2)`` factors then cancel (see ``theory/advantage_alignment.md``).
    """
    tab = tabular(theta1, theta2, gamma)
    pb = jnp.stack([tab.q2, 1 - tab.q2], axis=-1)
    Q1b = jnp.stack([tab.q1, 1 - tab.q1], axis=-1) @ tab.Qab1.reshape(2, 2)  # (5, 2) over b
    A1b = Q1b - tab.V1[:, None]
    w = jax.lax.stop_gradient(tab.D[:, None] * pb * A1b)

    if taken_only:
        factor = jax.lax.stop_gradient(1.0 - opponent_model(theta1, theta2, tau, gamma)) / tau

        def f(t1):
            return jnp.sum(w * factor * opponent_q(t1, theta2, gamma))

    else:

        def f(t1):
            return jnp.sum(w * jnp.log(opponent_model(t1, theta2, tau, gamma)))

    return jax.grad(f)(theta1)


def direction(theta_me: jax.Array, theta_other: jax.Array, cfg: LOQAConfig = LOQAConfig()) -> jax.Array:
    """LOQA ascent direction (5,): naive policy gradient plus ``shaping`` x :func:`loqa_term`."""
    return naive_gradient(theta_me, theta_other, cfg.gamma) + cfg.shaping * loqa_term(
        theta_me, theta_other, cfg.tau, cfg.gamma, cfg.taken_only
    )


def simulate(
    direction_fn, cfg: Any, theta1: jax.Array, theta2: jax.Array, steps: int, lr: float | None = None
) -> tuple[jax.Array, jax.Array]:
    """Simultaneous exact-gradient self-play of ``direction_fn(theta_me, theta_other, cfg)``.

    Both players ascend their own direction with step ``lr`` (default ``cfg.lr``); the game
    is symmetric and policies are written from each player's own view, so player 2's
    direction is ``direction_fn(theta2, theta1, cfg)``. Returns the logits of both players
    after every step, (steps + 1, 5) each (row 0 is the initialisation).
    """
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    lr = cfg.lr if lr is None else lr

    def body(carry, _):
        t1, t2 = carry
        n1 = t1 + lr * direction_fn(t1, t2, cfg)
        n2 = t2 + lr * direction_fn(t2, t1, cfg)
        return (n1, n2), (n1, n2)

    (_, _), (h1, h2) = jax.lax.scan(body, (theta1, theta2), None, length=int(steps))
    return jnp.concatenate([theta1[None], h1]), jnp.concatenate([theta2[None], h2])


# --------------------------------------------------------------------------------------
# Sampled LOQA on the Coin Game (or any game of naive.game_spec with one discrete action)
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SampledLOQAConfig:
    """Sampled LOQA with parameter-shared self-play.

    tau: opponent-model temperature; lr: Adam step size (actor and critic);
    entropy_coef: entropy bonus; polyak: target-critic averaging per update;
    n_envs: episodes per update; buffer: number of past agents kept; replay_prob:
    probability that the opponent of an update is a past agent; snapshot_every: updates
    between snapshots; hidden: MLP widths."""

    tau: float = 0.5
    gamma: float = 0.96
    lr: float = 3e-3
    entropy_coef: float = 0.01
    polyak: float = 0.9
    n_envs: int = 16
    buffer: int = 8
    replay_prob: float = 0.3
    snapshot_every: int = 10
    hidden: tuple = (32,)
    shaping: float = 1.0

    def __post_init__(self):
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        _check_gamma(self.gamma)
        if not 0.0 <= self.polyak < 1.0:
            raise ValueError(f"polyak must be in [0, 1), got {self.polyak}")
        if not 0.0 <= self.replay_prob <= 1.0:
            raise ValueError(f"replay_prob must be in [0, 1], got {self.replay_prob}")
        for name in ("n_envs", "buffer", "snapshot_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def sampled_init(key: jax.Array, spec, cfg: SampledLOQAConfig) -> dict:
    """Actor (obs -> logits) and Q critic (obs + t/T -> one Q per action) MLPs, plus a
    target copy of the critic."""
    from lowrank_es.models.mlp import mlp_init
    from lowrank_es.shaping import naive

    k1, k2 = jax.random.split(key)
    actor = naive.init_agent(k1, spec, naive.SampledConfig(hidden=cfg.hidden))["actor"]
    critic = mlp_init(k2, (spec.obs_dim + 1, *cfg.hidden, spec.n_choices))
    return {"actor": actor, "critic": critic, "target": jax.tree.map(jnp.copy, critic)}


def _q(critic, obs: jax.Array, T: int) -> jax.Array:
    """Q-values (n, T, A) of observations (n, T, d), time appended as t/T."""
    from lowrank_es.models.mlp import mlp_apply

    t = jnp.broadcast_to((jnp.arange(T) / T)[None, :, None], obs.shape[:-1] + (1,))
    return mlp_apply(critic, jnp.concatenate([obs, t], -1))


def loqa_side_loss(me: dict, opp: dict, obs_me, obs_opp, a, b, r_me, r_opp, spec, cfg: SampledLOQAConfig):
    """LOQA loss of one side of a batch (n, T): actor loss with the opponent-model term,
    entropy bonus and the expected-SARSA critic loss against the target critic."""
    from lowrank_es.shaping import naive

    T = spec.max_steps
    g = cfg.gamma
    lg = naive.logits({"actor": me["actor"]}, obs_me, spec)  # (n, T, A)
    logpi = jax.nn.log_softmax(lg)
    lp = jnp.take_along_axis(logpi, a[..., None], -1)[..., 0]
    ent = -jnp.sum(jnp.exp(logpi) * logpi, -1)
    # Own advantage with a baseline from the target critic.
    G_me = returns_to_go(r_me, g)
    Qt_me = jax.lax.stop_gradient(_q(me["target"], obs_me, T))
    V_me = jnp.sum(jax.lax.stop_gradient(jnp.exp(logpi)) * Qt_me, -1)
    A_me = jax.lax.stop_gradient(G_me - V_me)
    # Opponent model: softmax of the opponent's Q / tau; the taken action's Q is its Monte
    # Carlo return, differentiable in my policy through a DiCE-style surrogate.
    Qt_opp = jax.lax.stop_gradient(_q(opp["target"], obs_opp, T))
    pi_opp = jax.nn.softmax(naive.logits({"actor": opp["actor"]}, obs_opp, spec))
    G_opp = returns_to_go(r_opp, g)
    A_opp = jax.lax.stop_gradient(G_opp - jnp.sum(pi_opp * Qt_opp, -1))
    dice = returns_to_go(A_opp * (lp - jax.lax.stop_gradient(lp)), g)  # value 0, gradient sum_j g^(j-t) A2_j grad log pi1_j
    q_taken = jax.lax.stop_gradient(G_opp) + dice
    onehot = jax.nn.one_hot(b, spec.n_choices)
    q_model = Qt_opp * (1 - onehot) + q_taken[..., None] * onehot
    logpi_hat = jnp.take_along_axis(jax.nn.log_softmax(q_model / cfg.tau), b[..., None], -1)[..., 0]
    actor = -jnp.mean(A_me * lp) - cfg.shaping * jnp.mean(A_me * logpi_hat) - cfg.entropy_coef * jnp.mean(ent)
    # Critic: expected SARSA towards the target network (terminal after T steps).
    Q_me = _q(me["critic"], obs_me, T)
    q_sa = jnp.take_along_axis(Q_me, a[..., None], -1)[..., 0]
    v_next = jnp.concatenate([V_me[:, 1:], jnp.zeros_like(V_me[:, :1])], 1)
    critic = jnp.mean((q_sa - jax.lax.stop_gradient(r_me + g * v_next)) ** 2)
    return actor + critic


def sampled_train(key: jax.Array, spec, cfg: SampledLOQAConfig, n_updates: int):
    """Parameter-shared LOQA self-play with a replay buffer of past agents.

    Every update plays ``n_envs`` episodes of the current agent (player 0) against either
    itself (then both sides are learned from) or, with probability ``replay_prob``, a past
    agent from the buffer (only player 0's side is learned from). Returns the final agent
    and a history dict: ``reward`` (U, 2) reward per step, ``own`` / ``other`` (U,)
    pick-ups per episode (Coin Game), ``replayed`` (U,) bool.
    """
    from lowrank_es.shaping import naive

    if int(n_updates) < 1:
        raise ValueError(f"n_updates must be >= 1, got {n_updates}")
    k_init, k_run = jax.random.split(key)
    agent = sampled_init(k_init, spec, cfg)
    K = int(cfg.buffer)
    buf = jax.tree.map(lambda x: jnp.broadcast_to(x, (K,) + x.shape), agent)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.lr))
    learn = {"actor": agent["actor"], "critic": agent["critic"]}
    opt_state = opt.init(learn)

    def update(carry, xs):
        agent, buf, opt_state = carry
        u, k = xs
        k_r, k_i, k_e = jax.random.split(k, 3)
        n_filled = jnp.minimum(u // cfg.snapshot_every + 1, K)
        replay = (jax.random.uniform(k_r) < cfg.replay_prob) & (u >= cfg.snapshot_every)
        past = jax.tree.map(lambda x: x[jax.random.randint(k_i, (), 0, n_filled)], buf)
        opp = jax.tree.map(lambda c, p: jnp.where(replay, p, c), agent, past)
        traj = naive.sample_episodes(k_e, (agent, opp), spec, cfg.n_envs)
        o, act, rew = traj["obs"], traj["actions"], traj["rewards"]

        def loss(lp):
            me = {**lp, "target": agent["target"]}
            opp_live = jax.tree.map(lambda c, p: jnp.where(replay, p, c), me, past)
            l0 = loqa_side_loss(me, opp_live, o[:, :, 0], o[:, :, 1], act[:, :, 0], act[:, :, 1],
                                rew[:, :, 0], rew[:, :, 1], spec, cfg)
            l1 = loqa_side_loss(me, jax.tree.map(jax.lax.stop_gradient, me), o[:, :, 1], o[:, :, 0],
                                act[:, :, 1], act[:, :, 0], rew[:, :, 1], rew[:, :, 0], spec, cfg)
            return l0 + jnp.where(replay, 0.0, l1)

        lp = {"actor": agent["actor"], "critic": agent["critic"]}
        grads = jax.grad(loss)(lp)
        upd, opt_state = opt.update(grads, opt_state, lp)
        lp = optax.apply_updates(lp, upd)
        target = jax.tree.map(lambda t, c: cfg.polyak * t + (1 - cfg.polyak) * c, agent["target"], lp["critic"])
        agent = {**lp, "target": target}
        slot = (u // cfg.snapshot_every) % K
        buf = jax.tree.map(
            lambda b_, x: jnp.where((u % cfg.snapshot_every) == 0, b_.at[slot].set(x), b_), buf, agent
        )
        return (agent, buf, opt_state), {**naive.episode_stats(traj, spec), "replayed": replay}

    n = int(n_updates)
    run = jax.jit(lambda c, xs: jax.lax.scan(update, c, xs))
    (agent, _, _), hist = run((agent, buf, opt_state), (jnp.arange(n), jax.random.split(k_run, n)))
    return agent, hist

"""Advantage Alignment (Duque, Aghajohari et al., arXiv:2406.14662).

The aligned advantage of agent 1 at step ``t`` of a trajectory is::

    A*_t = A1_t + beta * gamma * (sum_{k<t} gamma^(t-k) A1_k) * A2_t

with ``A_i`` agent i's advantage of the joint action. It replaces the advantage in the
policy gradient (**AdAlign**) or inside PPO's clipped surrogate (**Proximal AdAlign**).
Past steps where agent 1 did well (positive running sum) make it favour actions that are
good for agent 2 now; past steps where it did badly make it favour actions bad for agent 2
(the four quadrants: cooperative ``+ +``, vengeful ``- -``, spiteful ``- +`` and empathetic
``+ -`` in the signs of (past A1, current A2)).

Contents:

* exact memory-1 IPD: :func:`aa_term` (the closed-form expectation of the alignment term,
  a linear solve on the five-state chain), :func:`direction` (learner interface),
  :func:`lola_term` and :func:`unification` (the LOLA / LOQA / AA comparison of the paper's
  Section 4 on the same tabular policies);
* sampled machinery: :func:`gae`, :func:`aligned_advantage`, :func:`adalign_loss`,
  :func:`proximal_adalign_loss`;
* a sampled IPD trainer with a tabular critic indexed by ``(state, time)`` or by state
  alone (:func:`ipd_train`), to show why the critic has to see time.
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
from lowrank_es.shaping import loqa

# --------------------------------------------------------------------------------------
# Exact memory-1 IPD
# --------------------------------------------------------------------------------------


def _check_beta(beta: float) -> None:
    if not float(beta) >= 0:
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
    """Exact-IPD Advantage Alignment. beta >= 0 (0 is the naive gradient); gamma in [0, 1);
    lr: step size used by :func:`lowrank_es.shaping.loqa.simulate`."""

    beta: float = 1.0
    gamma: float = ipd.GAMMA
    lr: float = 1.0

    def __post_init__(self):
        _check_beta(self.beta)
        loqa._check_gamma(self.gamma)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def direction(theta_me: jax.Array, theta_other: jax.Array, cfg: AAConfig = AAConfig()) -> jax.Array:
    """Exact AdAlign ascent direction (5,): ``grad V1 + aa_term`` (the expectation of the
    policy gradient with the aligned advantage ``A*``)."""
    return loqa.naive_gradient(theta_me, theta_other, cfg.gamma) + aa_term(theta_me, theta_other, cfg.gamma, cfg.beta)


def lola_term(theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA, eta: float = 1.0) -> jax.Array:
    """First-order LOLA shaping term (5,): ``eta * grad_theta1 [ (grad_theta2 V1)^T grad_theta2 V2 ]``
    with ``grad_theta2 V1`` held fixed (exact values, autodiff)."""

    def v(t1, t2):
        return ipd.exact_value(jax.nn.sigmoid(t1), jax.nn.sigmoid(t2), gamma)

    g2v1 = jax.lax.stop_gradient(jax.grad(lambda t2: v(theta1, t2)[0])(theta2))
    return eta * jax.grad(lambda t1: jnp.dot(g2v1, jax.grad(lambda t2: v(t1, t2)[1])(theta2)))(theta1)


def _cos(a: jax.Array, b: jax.Array) -> jax.Array:
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
        "cos_lola_aa": _cos(lola, aa),
        "cos_loqa_aa": _cos(lq, aa),
        "cos_loqa_aa_factor": _cos(lq, aa_w),
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
# Sampled machinery: GAE, the aligned advantage, AdAlign and Proximal AdAlign losses
# --------------------------------------------------------------------------------------


def gae(rewards: jax.Array, values: jax.Array, gamma: float, lam: float) -> jax.Array:
    """Generalised advantage estimates along axis 0.

    rewards: (T, ...); values: (T + 1, ...) with ``values[T]`` the bootstrap value (0 at the
    end of an episode). ``delta_t = r_t + gamma V_{t+1} - V_t``,
    ``A_t = delta_t + gamma lam A_{t+1}``. Returns (T, ...).
    """
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    loqa._check_gamma(gamma)
    if values.shape[0] != rewards.shape[0] + 1:
        raise ValueError(f"values must have length T + 1 = {rewards.shape[0] + 1} along axis 0, got {values.shape[0]}")
    deltas = rewards + gamma * values[1:] - values[:-1]

    def body(acc, d):
        acc = d + gamma * lam * acc
        return acc, acc

    _, adv = jax.lax.scan(body, jnp.zeros_like(deltas[0]), deltas, reverse=True)
    return adv


def past_advantage_sum(adv: jax.Array, gamma: float) -> jax.Array:
    """``F_t = sum_{k<t} gamma^(t-k) adv_k`` along axis 0 (F_0 = 0). (T, ...) -> (T, ...)."""

    def body(f, a):
        return gamma * (f + a), f

    _, F = jax.lax.scan(body, jnp.zeros_like(adv[0]), adv)
    return F


def aligned_advantage(adv_me: jax.Array, adv_other: jax.Array, gamma: float, beta: float) -> jax.Array:
    """``A*_t = A1_t + beta gamma (sum_{k<t} gamma^(t-k) A1_k) A2_t`` along axis 0."""
    _check_beta(beta)
    return adv_me + beta * gamma * past_advantage_sum(adv_me, gamma) * adv_other


def quadrants(adv_me: jax.Array, adv_other: jax.Array, gamma: float) -> jax.Array:
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
    if not float(clip) > 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    a = jax.lax.stop_gradient(adv_star)
    ratio = jnp.exp(logp - jax.lax.stop_gradient(logp_old))
    return -jnp.mean(jnp.minimum(ratio * a, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * a))


# --------------------------------------------------------------------------------------
# Sampled IPD: memory-1 actors, tabular critics with or without time
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IPDTrainConfig:
    """Sampled AdAlign on the 50-step IPD. critic_time: critic table indexed by (time, state)
    (True) or by state alone (False); proximal: PPO surrogate (``ppo_epochs`` passes, clip
    ``clip``) instead of the plain policy gradient."""

    beta: float = 1.0
    gamma: float = ipd.GAMMA
    lam: float = 0.95
    lr_actor: float = 0.05
    lr_critic: float = 0.5
    batch: int = 64
    horizon: int = ipd.EPISODE_LENGTH
    critic_time: bool = True
    proximal: bool = False
    ppo_epochs: int = 4
    clip: float = 0.2
    normalise: bool = True

    def __post_init__(self):
        _check_beta(self.beta)
        loqa._check_gamma(self.gamma)
        for name in ("lr_actor", "lr_critic"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("batch", "horizon", "ppo_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def ipd_rollout(key: jax.Array, theta1: jax.Array, theta2: jax.Array, batch: int, horizon: int):
    """Sample ``batch`` IPD episodes of ``horizon`` steps. Returns ``states`` (T, B) int in
    0..4 (start, CC, CD, DC, DD; player 1's view), ``a``, ``b`` (T, B) actions (0 = C),
    ``r1``, ``r2`` (T, B) rewards."""
    p1 = jax.nn.sigmoid(theta1)
    p2 = jax.nn.sigmoid(theta2)

    def body(s, k):
        ka, kb = jax.random.split(k)
        a = (jax.random.uniform(ka, s.shape) > p1[loqa.IDX1[s]]).astype(jnp.int32)
        b = (jax.random.uniform(kb, s.shape) > p2[loqa.IDX2[s]]).astype(jnp.int32)
        ab = 2 * a + b
        return 1 + ab, (s, a, b, ipd.REWARD_1[ab], ipd.REWARD_2[ab])

    s0 = jnp.zeros((batch,), jnp.int32)
    _, (states, a, b, r1, r2) = jax.lax.scan(body, s0, jax.random.split(key, horizon))
    return states, a, b, r1, r2


def _logp(theta: jax.Array, own_states: jax.Array, acts: jax.Array) -> jax.Array:
    z = theta[own_states]
    return jnp.where(acts == 0, jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z))


def ipd_train(key: jax.Array, cfg: IPDTrainConfig, n_updates: int, init_scale: float = 1.0):
    """Two sampled AdAlign (or Proximal AdAlign) agents learning against each other.

    Each agent has 5 actor logits and a tabular critic of its own discounted return
    (``(horizon + 1, 5)`` with time, ``(5,)`` without; the value after the last step is 0).
    ``A2`` for agent 1 comes from agent 2's critic and rewards (and vice versa).
    Returns ``(theta_history (n_updates + 1, 2, 5), reward_per_step (n_updates, 2))``.
    """
    if int(n_updates) < 1:
        raise ValueError(f"n_updates must be >= 1, got {n_updates}")
    T, B = cfg.horizon, cfg.batch
    k_init, k_run = jax.random.split(key)
    theta = init_scale * jax.random.normal(k_init, (2, 5))
    crit = jnp.zeros((2, T + 1, 5)) if cfg.critic_time else jnp.zeros((2, 5))
    opt_a = optax.adam(cfg.lr_actor)
    sa, sc = opt_a.init(theta), ()
    tidx = jnp.arange(T)[:, None] * jnp.ones((1, B), jnp.int32)

    def values(c, own_states):  # (T, B) -> (T + 1, B), terminal value 0
        v = c[tidx, own_states] if cfg.critic_time else c[own_states]
        return jnp.concatenate([v, jnp.zeros((1, B))])

    def update(carry, k):
        theta, crit, sa, sc = carry
        states, a, b, r1, r2 = ipd_rollout(k, theta[0], theta[1], B, T)
        own = (loqa.IDX1[states], loqa.IDX2[states])
        acts, rews = (a, b), (r1, r2)
        advs = [gae(rews[i], values(crit[i], own[i]), cfg.gamma, cfg.lam) for i in range(2)]
        if cfg.normalise:
            advs = [x / (jnp.std(x) + 1e-8) for x in advs]
        astar = [aligned_advantage(advs[i], advs[1 - i], cfg.gamma, cfg.beta) for i in range(2)]
        if cfg.normalise:
            astar = [x / (jnp.std(x) + 1e-8) for x in astar]

        def actor_loss(th, th_old):
            tot = 0.0
            for i in range(2):
                lp = _logp(th[i], own[i], acts[i])
                if cfg.proximal:
                    tot += proximal_adalign_loss(lp, _logp(th_old[i], own[i], acts[i]), astar[i], cfg.clip)
                else:
                    tot += adalign_loss(lp, astar[i])
            return tot

        th_old = theta
        n_epochs = cfg.ppo_epochs if cfg.proximal else 1
        for _ in range(n_epochs):
            g = jax.grad(actor_loss)(theta, th_old)
            upd, sa = opt_a.update(g, sa, theta)
            theta = optax.apply_updates(theta, upd)

        # Critic: move every visited cell a fraction lr_critic towards the mean discounted
        # Monte Carlo return-to-go observed in it (tabular every-visit Monte Carlo).
        new = []
        for i in range(2):
            G = gae(rews[i], jnp.zeros((T + 1, B)), cfg.gamma, 1.0)
            cell = (tidx * 5 + own[i]) if cfg.critic_time else own[i]
            n_cells = (T + 1) * 5 if cfg.critic_time else 5
            tot = jax.ops.segment_sum(G.ravel(), cell.ravel(), n_cells)
            cnt = jax.ops.segment_sum(jnp.ones(G.size), cell.ravel(), n_cells)
            c = crit[i].reshape(-1)
            c = jnp.where(cnt > 0, c + cfg.lr_critic * (tot / jnp.maximum(cnt, 1.0) - c), c)
            new.append(c.reshape(crit[i].shape))
        crit = jnp.stack(new)
        return (theta, crit, sa, sc), (theta, jnp.stack([r1.mean(), r2.mean()]))

    (_, _, _, _), (hist, rps) = jax.lax.scan(update, (theta, crit, sa, sc), jax.random.split(k_run, int(n_updates)))
    return jnp.concatenate([theta[None], hist]), rps


# --------------------------------------------------------------------------------------
# Sampled AdAlign / Proximal AdAlign on the Coin Game and the Negotiation Game
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SampledAAConfig:
    """Sampled (Proximal) AdAlign with MLP actor and critic on a game of
    :func:`lowrank_es.shaping.naive.game_spec`. The critic sees ``t / T`` appended to the
    observation. n_envs: episodes per update; ppo_epochs > 1 or proximal=True uses the
    clipped surrogate."""

    beta: float = 1.0
    gamma: float = 0.96
    lam: float = 0.95
    lr: float = 3e-3
    n_envs: int = 32
    hidden: tuple = (32,)
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    proximal: bool = False
    ppo_epochs: int = 2
    clip: float = 0.2

    def __post_init__(self):
        _check_beta(self.beta)
        loqa._check_gamma(self.gamma)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if int(self.n_envs) < 1:
            raise ValueError(f"n_envs must be >= 1, got {self.n_envs}")


def continuous_negotiation_spec(max_steps: int | None = None):
    """A :class:`lowrank_es.shaping.naive.GameSpec` for the continuous-proposal Negotiation
    Game (``n_choices = 0`` marks a Gaussian policy over the 3 proposals)."""
    from lowrank_es.games import negotiation
    from lowrank_es.shaping import naive

    p = negotiation.Params(continuous=True, **({} if max_steps is None else {"max_steps": max_steps}))
    return naive.GameSpec("negotiation", negotiation.reset, negotiation.step, p, negotiation.OBS_SIZE,
                          (negotiation.N_ITEMS,), 0, p.max_steps)


def sampled_init(key: jax.Array, spec, cfg: SampledAAConfig) -> dict:
    """Actor and a critic on obs + time. Categorical games: the actor of
    :func:`lowrank_es.shaping.naive.init_agent`; continuous (``spec.n_choices == 0``): an MLP
    for the Gaussian mean (squashed to [0, 5]) and a learned log standard deviation."""
    from lowrank_es.models.mlp import mlp_init
    from lowrank_es.shaping import naive

    k1, k2 = jax.random.split(key)
    if spec.n_choices == 0:
        d = int(np.prod(spec.action_shape))
        actor = mlp_init(k1, (spec.obs_dim, *cfg.hidden, d))
        actor[-1]["W"] = actor[-1]["W"] * 0.0
        agent = {"actor": actor, "log_std": jnp.zeros(d)}
    else:
        agent = {"actor": naive.init_agent(k1, spec, naive.SampledConfig(hidden=cfg.hidden))["actor"]}
    agent["critic"] = mlp_init(k2, (spec.obs_dim + 1, *cfg.hidden, 1))
    return agent


def _critic_values(agent: dict, obs: jax.Array, T: int) -> jax.Array:
    from lowrank_es.models.mlp import mlp_apply

    t = jnp.broadcast_to((jnp.arange(T) / T)[None, :, None], obs.shape[:-1] + (1,))
    return mlp_apply(agent["critic"], jnp.concatenate([obs, t], -1))[..., 0]


def policy_sample(agent: dict, key: jax.Array, obs: jax.Array, spec) -> jax.Array:
    """One action of a sampled agent for observation ``obs`` (d,)."""
    from lowrank_es.models.mlp import mlp_apply
    from lowrank_es.shaping import naive

    if spec.n_choices == 0:
        mean = 5.0 * jax.nn.sigmoid(mlp_apply(agent["actor"], obs))
        return mean + jnp.exp(agent["log_std"]) * jax.random.normal(key, mean.shape)
    return jax.random.categorical(key, naive.logits(agent, obs, spec)).astype(jnp.int32)


def policy_logp_entropy(agent: dict, obs: jax.Array, act: jax.Array, spec) -> tuple[jax.Array, jax.Array]:
    """Log-probability and entropy of actions (n, T, ...) under a sampled agent -> (n, T) each.
    Continuous actions are scored under the unclipped Gaussian they were drawn from."""
    from lowrank_es.models.mlp import mlp_apply
    from lowrank_es.shaping import naive

    if spec.n_choices == 0:
        mean = 5.0 * jax.nn.sigmoid(mlp_apply(agent["actor"], obs))
        ls = agent["log_std"]
        lp = -0.5 * ((act - mean) / jnp.exp(ls)) ** 2 - ls - 0.5 * jnp.log(2 * jnp.pi)
        ent = jnp.broadcast_to(jnp.sum(ls + 0.5 * jnp.log(2 * jnp.pi * jnp.e)), lp.shape[:-1])
        return lp.sum(-1), ent
    lg = naive.logits(agent, obs, spec)
    lp = naive._log_prob(lg, act, spec)
    ent = -jnp.sum(jax.nn.softmax(lg) * jax.nn.log_softmax(lg), axis=-1)
    return lp, ent.sum(axis=tuple(range(2, ent.ndim)))


def sample_episodes(key: jax.Array, agents, spec, n_envs: int) -> dict:
    """``n_envs`` episodes of two sampled agents: obs (n, T, 2, d), actions (n, T, 2, ...),
    rewards (n, T, 2) and, in the Coin Game, picked_own / picked_other (n, T, 2)."""

    def episode(k):
        k0, kr = jax.random.split(k)
        obs, state = spec.reset(k0, spec.params)

        def body(carry, kt):
            obs, state = carry
            k1, k2, ks = jax.random.split(kt, 3)
            a = jnp.stack([policy_sample(agents[0], k1, obs[0], spec), policy_sample(agents[1], k2, obs[1], spec)])
            obs2, state2, r, _, info = spec.step(ks, state, a, spec.params)
            out = {"obs": obs, "actions": a, "rewards": r}
            if spec.name == "coin":
                out["picked_own"], out["picked_other"] = info["picked_own"], info["picked_other"]
            return (obs2, state2), out

        _, traj = jax.lax.scan(body, (obs, state), jax.random.split(kr, spec.max_steps))
        return traj

    return jax.vmap(episode)(jax.random.split(key, n_envs))


def sampled_train(key: jax.Array, spec, cfg: SampledAAConfig, n_updates: int, agents=None):
    """Two (Proximal) AdAlign agents learning against each other on ``spec``'s game
    (categorical policies, or Gaussian ones for :func:`continuous_negotiation_spec`).

    Returns the final agents and a history dict: ``reward`` (U, 2) mean reward per step and,
    for the Coin Game, ``own`` / ``other`` (U,) pick-ups per episode.
    """
    from lowrank_es.shaping import naive

    if int(n_updates) < 1:
        raise ValueError(f"n_updates must be >= 1, got {n_updates}")
    T = spec.max_steps
    k_init, k_run = jax.random.split(key)
    if agents is None:
        ka, kb = jax.random.split(k_init)
        agents = (sampled_init(ka, spec, cfg), sampled_init(kb, spec, cfg))
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.lr))
    opt_state = opt.init(agents)

    def update(carry, k):
        agents, opt_state = carry
        traj = sample_episodes(k, agents, spec, cfg.n_envs)
        rew = jnp.swapaxes(traj["rewards"], 0, 1)  # (T, n, 2)
        vals = [jnp.swapaxes(_critic_values(agents[i], traj["obs"][:, :, i], T), 0, 1) for i in range(2)]
        vals = [jnp.concatenate([v, jnp.zeros((1, v.shape[1]))]) for v in vals]
        advs = [gae(rew[..., i], vals[i], cfg.gamma, cfg.lam) for i in range(2)]
        targets = [jnp.swapaxes(advs[i] + vals[i][:-1], 0, 1) for i in range(2)]
        nadv = [x / (jnp.std(x) + 1e-8) for x in advs]
        astar = [aligned_advantage(nadv[i], nadv[1 - i], cfg.gamma, cfg.beta) for i in range(2)]
        astar = [jnp.swapaxes((x - x.mean()) / (jnp.std(x) + 1e-8), 0, 1) for x in astar]  # (n, T)
        obs_i = [traj["obs"][:, :, i] for i in range(2)]
        act_i = [traj["actions"][:, :, i] for i in range(2)]
        old = [jax.lax.stop_gradient(policy_logp_entropy(agents[i], obs_i[i], act_i[i], spec)[0]) for i in range(2)]

        def loss(ags):
            tot = 0.0
            for i in range(2):
                lp, ent = policy_logp_entropy(ags[i], obs_i[i], act_i[i], spec)
                pl = proximal_adalign_loss(lp, old[i], astar[i], cfg.clip) if cfg.proximal else adalign_loss(lp, astar[i])
                vl = jnp.mean((_critic_values(ags[i], obs_i[i], T) - targets[i]) ** 2)
                tot += pl + cfg.value_coef * vl - cfg.entropy_coef * jnp.mean(ent)
            return tot

        for _ in range(cfg.ppo_epochs if cfg.proximal else 1):
            g = jax.grad(loss)(agents)
            upd, opt_state = opt.update(g, opt_state, agents)
            agents = optax.apply_updates(agents, upd)
        return (agents, opt_state), naive.episode_stats(traj, spec)

    run = jax.jit(lambda a, s, ks: jax.lax.scan(update, (a, s), ks))
    (agents, _), hist = run(agents, opt_state, jax.random.split(k_run, int(n_updates)))
    return agents, hist


def sampled_eval(key: jax.Array, spec, agent, opponent, n_envs: int = 256) -> jax.Array:
    """Mean reward per step (2,) of ``agent`` (player 0) against ``opponent`` (player 1), where
    each is a trained agent dict, a scripted Coin Game kind (``"cooperative"``, ``"selfish"``)
    or a Negotiation reference policy (``"always_cooperate"``, ``"always_defect"``).
    Agents with the same parameter structure share one compiled evaluation."""
    from lowrank_es.games import coin, negotiation

    for who, name in ((agent, "agent"), (opponent, "opponent")):
        if isinstance(who, str):
            valid = sorted(negotiation.REFERENCE) if spec.name == "negotiation" else list(coin.SCRIPTED)
            if who not in valid:
                raise ValueError(f"{name} must be an agent dict or one of {valid}, got {who!r}")
    kinds = tuple(w if isinstance(w, str) else None for w in (agent, opponent))
    params = tuple(None if isinstance(w, str) else w for w in (agent, opponent))
    if int(n_envs) < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    return _eval(key, params, spec, kinds, int(n_envs))


@partial(jax.jit, static_argnums=(2, 3, 4))
def _eval(key, params, spec, kinds, n_envs):
    from lowrank_es.games import coin, negotiation

    def act(i, k, obs_i, state):
        kind = kinds[i]
        if kind is None:
            return policy_sample(params[i], k, obs_i, spec)
        if spec.name == "negotiation":
            return negotiation.REFERENCE[kind](obs_i)
        return coin.scripted_action(k, state, i, kind, spec.params)

    def episode(k):
        k0, kr = jax.random.split(k)
        obs, state = spec.reset(k0, spec.params)

        def body(carry, kt):
            obs, state = carry
            k1, k2, ks = jax.random.split(kt, 3)
            a = jnp.stack([act(0, k1, obs[0], state), act(1, k2, obs[1], state)])
            obs2, state2, r, _, _ = spec.step(ks, state, a, spec.params)
            return (obs2, state2), r

        _, r = jax.lax.scan(body, (obs, state), jax.random.split(kr, spec.max_steps))
        return r.mean(0)

    return jax.vmap(episode)(jax.random.split(key, n_envs)).mean(0)


def ipd_trajectory_advantages(key: jax.Array, theta1: jax.Array, theta2: jax.Array, horizon: int = 50,
                              gamma: float = ipd.GAMMA, batch: int = 1):
    """Sample IPD episodes and attach the *exact* joint advantages of both players.

    Returns states, a, b (T, batch) and A1, A2 (T, batch) with ``A_i = Q_i(ab) - V_i(s)``
    from :func:`lowrank_es.shaping.loqa.tabular` (player 2's advantage in the same joint
    state), for plotting the four quadrants of the alignment term.
    """
    states, a, b, _, _ = ipd_rollout(key, theta1, theta2, batch, horizon)
    tab = loqa.tabular(theta1, theta2, gamma)
    ab = 2 * a + b
    return states, a, b, tab.A1[states, ab], tab.A2[states, ab]

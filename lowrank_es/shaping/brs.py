"""Best Response Shaping (BRS, arXiv:2404.06519) in the IPD.

BRS trains an *agent* (the leader) against a *detective* (the follower): a policy that
is conditioned on a representation of the agent and approximates its best response.
The agent differentiates its return against the detective's response *through the
conditioning*, so it learns how the best response changes when it changes, and adds a
cooperative self-play term. The detective is thrown away after training.

Choices made here where the paper is vague (or where this project is small)
--------------------------------------------------------------------------
IPD
  * The agent is tabular memory-1: logits ``theta`` (5,), ``p = sigmoid(theta)``.
  * Conditioning (question answering): by default the detective sees the agent's answers
    to the five states, its cooperation probabilities ``p`` (rescaled to ``2p - 1``);
    ``conditioning="random_q"`` gives it instead the Q-values of a uniformly random
    responder in each state (the paper's simulation-based questions of the Coin Game,
    computed exactly). Its output is its own memory-1 policy (5 logits), from an MLP
    ``features -> hidden -> hidden -> 5`` (tanh).
  * Returns are exact (``ipd.exact_value``, the closed form) instead of sampled
    rollouts: the detective maximises ``V_2(p', d(p'))`` by gradient ascent (Adam) and
    the agent's gradient is the exact gradient of its objective. This removes the
    variance of policy-gradient estimates; everything else follows the paper.
  * Detective training distribution: agents drawn uniformly from a ring buffer of the
    agent's past logits (``buffer_size``, one entry pushed per agent step), each
    perturbed by i.i.d. Gaussian noise of scale ``noise`` on the logits. The buffer
    starts full of the initial agent, and the detective is trained for
    ``pretrain_steps`` on it before the agent's first step; then ``detective_steps``
    detective steps alternate with one agent step.
  * Agent objective (per-step rewards, i.e. values times ``1 - gamma``)::

        J(theta) = V_1(p, d_psi(p))  +  self_play * 0.5 * [V_1(p, sg p) + V_2(p, sg p)]

    The first term is differentiated through the conditioning ``p -> d_psi(p)``
    (psi fixed). With ``sp_lr > 0`` the two terms get separate Adam optimisers (the
    paper's), the self-play one at step size ``sp_lr``; otherwise one Adam on the sum. The second is "self-play with reward sharing": the agent plays a
    copy of itself and ascends the welfare of both players, differentiating only its own
    copy (``sg`` = stop-gradient); by symmetry of the game that is half the gradient of
    the welfare with both copies differentiated.
  * Exact form: :func:`train_ipd` with ``detective="exact"`` replaces the learned
    detective by the entropy-regularised exact best response
    (:func:`lowrank_es.shaping.best_response.ipd_soft_best_response`, temperature ``tau``),
    differentiated through its soft value iteration. (The hard best response is
    piecewise constant in ``p``: its gradient through the response is zero almost
    everywhere, so a temperature is needed to shape through it.)

The Coin Game form (recurrent agents, question answering) lives in :mod:`lowrank_es.shaping.brs_coin`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.games import ipd
from lowrank_es.models.mlp import mlp_apply, mlp_init
from lowrank_es.shaping import best_response as br

PyTree = Any

# ---------------------------------------------------------------------------
# IPD
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IPDConfig:
    """Hyper-parameters of BRS in the IPD (defaults: the notebook's small run)."""

    gamma: float = ipd.GAMMA
    agent_steps: int = 200
    agent_lr: float = 0.05
    self_play: float = 1.0
    sp_lr: float = 0.0  # > 0: the self-play term gets its own Adam at this step size (the paper's)
    detective: str = "learned"  # "learned" or "exact"
    conditioning: str = "answers"  # what the learned detective sees: see detective_features
    tau: float = 0.05  # temperature of the exact (soft) best response
    detective_lr: float = 3e-3
    detective_steps: int = 10
    pretrain_steps: int = 300
    detective_batch: int = 64
    noise: float = 1.0
    buffer_size: int = 32
    hidden: int = 64
    init_scale: float = 1.0

    def __post_init__(self):
        for name in ("agent_steps", "detective_steps", "detective_batch", "buffer_size", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.pretrain_steps) < 0:
            raise ValueError(f"pretrain_steps must be >= 0, got {self.pretrain_steps}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.detective not in ("learned", "exact"):
            raise ValueError(f"detective must be 'learned' or 'exact', got {self.detective!r}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")
        if self.noise < 0.0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        if not self.tau > 0.0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.self_play < 0.0:
            raise ValueError(f"self_play must be >= 0, got {self.self_play}")
        if self.sp_lr < 0.0:
            raise ValueError(f"sp_lr must be >= 0, got {self.sp_lr}")


CONDITIONINGS = ("answers", "random_q")


def detective_features(p_agent: jax.Array, conditioning: str = "answers", gamma: float = ipd.GAMMA) -> jax.Array:
    """What the detective sees of agents ``p_agent`` (..., 5): ``"answers"``, the agent's five
    cooperation probabilities (its answers to the five states, rescaled to ``2p - 1``, (..., 5));
    ``"random_q"``, the per-step Q-values of a uniformly random responder in each state for
    each of its actions (:func:`lowrank_es.shaping.best_response.ipd_random_q`, shifted by 1.5,
    (..., 10)): the paper's simulation-based questions, computed exactly."""
    if conditioning == "answers":
        return 2.0 * p_agent - 1.0
    if conditioning == "random_q":
        f = lambda p: br.ipd_random_q(p, gamma).reshape(-1) + 1.5  # noqa: E731
        for _ in range(p_agent.ndim - 1):
            f = jax.vmap(f)
        return f(p_agent)
    raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")


def detective_init(key: jax.Array, hidden: int = 64, conditioning: str = "answers") -> list[dict[str, jax.Array]]:
    """Parameters of the IPD detective MLP ``features (5 or 10) -> hidden -> hidden -> 5``."""
    n_in = 5 if conditioning == "answers" else 10
    params = mlp_init(key, (n_in, hidden, hidden, 5))
    params[-1]["W"] = params[-1]["W"] * 0.1  # start near the uniform policy
    return params


def detective_policy(params: PyTree, p_agent: jax.Array, conditioning: str = "answers",
                     gamma: float = ipd.GAMMA) -> jax.Array:
    """The detective's memory-1 response (..., 5) to agents ``p_agent`` (..., 5): P(C) per state."""
    return jax.nn.sigmoid(mlp_apply(params, detective_features(p_agent, conditioning, gamma)))


def detective_value(params: PyTree, p_agent: jax.Array, gamma: float = ipd.GAMMA,
                    conditioning: str = "answers") -> jax.Array:
    """Per-step reward (value * (1 - gamma)) of the detective against each agent, (...,)."""
    d = detective_policy(params, p_agent, conditioning, gamma)
    f = lambda p, q: ipd.exact_value(p, q, gamma)[1]
    for _ in range(p_agent.ndim - 1):
        f = jax.vmap(f)
    return f(p_agent, d) * (1.0 - gamma)


def train_detective(key: jax.Array, agents_logits: jax.Array, *, steps: int, noise: float,
                    batch: int = 64, lr: float = 3e-3, hidden: int = 64, gamma: float = ipd.GAMMA,
                    params: PyTree | None = None, conditioning: str = "answers") -> tuple[PyTree, jax.Array]:
    """Train a detective against agents drawn from ``agents_logits`` (B, 5) plus Gaussian logit noise.

    Returns the parameters and the loss curve (steps,) (minus the mean per-step reward).
    """
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    k_init, k_train = jax.random.split(key)
    if params is None:
        params = detective_init(k_init, hidden, conditioning)
    opt = optax.adam(lr)
    state = opt.init(params)

    def step(carry, k):
        params, state = carry
        params, state, loss = _detective_step(params, state, opt, k, agents_logits, noise, batch, gamma, conditioning)
        return (params, state), loss

    (params, _), losses = jax.lax.scan(step, (params, state), jax.random.split(k_train, steps))
    return params, losses


def _detective_step(params, state, opt, key, buffer, noise, batch, gamma, conditioning="answers"):
    k1, k2 = jax.random.split(key)
    idx = jax.random.randint(k1, (batch,), 0, buffer.shape[0])
    logits = buffer[idx] + noise * jax.random.normal(k2, (batch, 5), buffer.dtype)
    p = jax.nn.sigmoid(logits)
    loss, g = jax.value_and_grad(lambda w: -jnp.mean(detective_value(w, p, gamma, conditioning)))(params)
    upd, state = opt.update(g, state, params)
    return optax.apply_updates(params, upd), state, loss


def agent_objective(theta: jax.Array, response: Any, cfg: IPDConfig) -> jax.Array:
    """BRS objective of the agent (per-step reward), to be ascended: :func:`brs_term` plus
    ``self_play`` times :func:`self_play_term`."""
    return brs_term(theta, response, cfg) + cfg.self_play * self_play_term(theta, cfg)


def brs_term(theta: jax.Array, response: Any, cfg: IPDConfig) -> jax.Array:
    """The agent's per-step reward against ``response(p) -> (5,)``, the detective (learned or
    exact) as a function of the agent's probabilities, through which the gradient flows."""
    p = jax.nn.sigmoid(theta)
    return ipd.exact_value(p, response(p), cfg.gamma)[0] * (1.0 - cfg.gamma)


def self_play_term(theta: jax.Array, cfg: IPDConfig) -> jax.Array:
    """Self-play with reward sharing: half the welfare of the agent against a stopped copy of
    itself (per step); its gradient is half the gradient of the welfare of two copies."""
    p = jax.nn.sigmoid(theta)
    v1, v2 = ipd.exact_value(p, jax.lax.stop_gradient(p), cfg.gamma)
    return 0.5 * (v1 + v2) * (1.0 - cfg.gamma)


class IPDHistory(NamedTuple):
    """Per agent step (leading axis ``agent_steps``)."""

    p: jax.Array  # (T, 5) agent's cooperation probabilities
    vs_detective: jax.Array  # (T,) agent's per-step reward against the detective
    detective_reward: jax.Array  # (T,) detective's per-step reward
    vs_exact_br: jax.Array  # (T,) agent's per-step reward against its exact best response
    exact_br_reward: jax.Array  # (T,) the exact best response's per-step reward
    self_play: jax.Array  # (T,) agent's per-step reward in self-play


def train_ipd(key: jax.Array, cfg: IPDConfig = IPDConfig(), theta0: jax.Array | None = None
              ) -> tuple[jax.Array, PyTree, IPDHistory]:
    """Run BRS in the IPD. Returns the final agent logits (5,), the detective and the history."""
    k_agent, k_det, k_pre, k_loop = jax.random.split(key, 4)
    theta = cfg.init_scale * jax.random.normal(k_agent, (5,)) if theta0 is None else jnp.asarray(theta0)
    if theta.shape != (5,):
        raise ValueError(f"theta0 must have shape (5,), got {theta.shape}")
    buffer = jnp.tile(theta[None], (cfg.buffer_size, 1))
    det_opt = optax.adam(cfg.detective_lr)
    det = detective_init(k_det, cfg.hidden, cfg.conditioning)
    det_state = det_opt.init(det)
    if cfg.detective == "learned" and cfg.pretrain_steps > 0:
        def pre(c, k):
            d, s = c
            d, s, _ = _detective_step(d, s, det_opt, k, buffer, cfg.noise, cfg.detective_batch, cfg.gamma,
                                      cfg.conditioning)
            return (d, s), None

        (det, det_state), _ = jax.lax.scan(pre, (det, det_state), jax.random.split(k_pre, cfg.pretrain_steps))
    agent_opt, sp_opt = optax.adam(cfg.agent_lr), optax.adam(cfg.sp_lr if cfg.sp_lr > 0 else 1.0)
    agent_state = (agent_opt.init(theta), sp_opt.init(theta))

    def outer(carry, xs):
        theta, agent_state, det, det_state, buffer = carry
        k, t = xs
        if cfg.detective == "learned":
            def inner(c, kk):
                d, s = c
                d, s, _ = _detective_step(d, s, det_opt, kk, buffer, cfg.noise, cfg.detective_batch, cfg.gamma,
                                      cfg.conditioning)
                return (d, s), None

            (det, det_state), _ = jax.lax.scan(inner, (det, det_state), jax.random.split(k, cfg.detective_steps))
            response = lambda p: detective_policy(det, p, cfg.conditioning, cfg.gamma)
        else:
            response = lambda p: br.ipd_soft_best_response(p, cfg.tau, cfg.gamma)
        p = jax.nn.sigmoid(theta)
        d = response(p)
        v1_det, v2_det = ipd.exact_value(p, d, cfg.gamma)
        best = br.ipd_best_response(p, cfg.gamma)
        sp = ipd.exact_value(p, p, cfg.gamma)[0]
        if cfg.sp_lr > 0:  # the paper's separate optimisers for the two terms
            upd, s_brs = agent_opt.update(-jax.grad(brs_term)(theta, response, cfg), agent_state[0], theta)
            upd_sp, s_sp = sp_opt.update(-cfg.self_play * jax.grad(self_play_term)(theta, cfg), agent_state[1], theta)
            theta, agent_state = optax.apply_updates(optax.apply_updates(theta, upd), upd_sp), (s_brs, s_sp)
        else:
            upd, s_brs = agent_opt.update(-jax.grad(agent_objective)(theta, response, cfg), agent_state[0], theta)
            theta, agent_state = optax.apply_updates(theta, upd), (s_brs, agent_state[1])
        buffer = buffer.at[t % cfg.buffer_size].set(theta)
        s = 1.0 - cfg.gamma
        rec = IPDHistory(p, v1_det * s, v2_det * s, best.value_agent * s, best.value_response * s, sp * s)
        return (theta, agent_state, det, det_state, buffer), rec

    xs = (jax.random.split(k_loop, cfg.agent_steps), jnp.arange(cfg.agent_steps))
    (theta, _, det, _, _), hist = jax.lax.scan(outer, (theta, agent_state, det, det_state, buffer), xs)
    return theta, det, hist


def train_ipd_seeds(seed: int, n_seeds: int, cfg: IPDConfig = IPDConfig()):
    """:func:`train_ipd` for ``n_seeds`` seeds (vmapped). Returns stacked (theta, detective, history)."""
    if int(n_seeds) < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
    keys = jax.random.split(jax.random.PRNGKey(seed), n_seeds)
    return jax.jit(jax.vmap(lambda k: train_ipd(k, cfg)))(keys)


def ipd_cross_play(policies: dict[str, jax.Array], gamma: float = ipd.GAMMA) -> tuple[list[str], np.ndarray]:
    """Exact per-step reward of the row policy against the column policy (fixed memory-1
    policies given as probabilities (5,)). Returns names and an (n, n) array."""
    names = list(policies)
    P = jnp.stack([jnp.asarray(policies[n], jnp.float32) for n in names])
    f = jax.vmap(jax.vmap(lambda a, b: ipd.exact_value(a, b, gamma)[0], (None, 0)), (0, None))
    return names, np.asarray(f(P, P)) * (1.0 - gamma)


def ipd_response_grid(det: PyTree, i: int = 1, j: int = 2, base: tuple = (1.0, 1.0, 0.0, 1.0, 0.0), n: int = 21,
                      gamma: float = ipd.GAMMA) -> dict[str, np.ndarray]:
    """The detective's learned response vs the exact best response over a grid of agents.

    Agents are ``base`` with probabilities ``i`` and ``j`` swept over ``[0, 1]`` (``n`` values
    each). Returns (n, n) arrays indexed ``[value of j, value of i]``: ``exact`` / ``detective``
    per-step rewards of the responder, ``gap = exact - detective``, ``agent_vs_exact`` (the
    agent's reward against its exact best response) and the axis values ``grid`` (n,).
    """
    if not (0 <= i < 5 and 0 <= j < 5 and i != j):
        raise ValueError(f"i and j must be distinct indices in [0, 5), got {i}, {j}")
    if int(n) < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    g = jnp.linspace(0.0, 1.0, int(n))
    J, I = jnp.meshgrid(g, g, indexing="ij")
    P = jnp.broadcast_to(jnp.asarray(base, jnp.float32), (int(n), int(n), 5)).at[..., i].set(I).at[..., j].set(J)
    flat = P.reshape(-1, 5)
    best = jax.jit(jax.vmap(lambda p: br.ipd_best_response(p, gamma)))(flat)
    s = 1.0 - gamma
    exact = np.asarray(best.value_response * s).reshape(n, n)
    det_v = np.asarray(detective_value(det, flat, gamma)).reshape(n, n)
    return {"exact": exact, "detective": det_v, "gap": exact - det_v,
            "agent_vs_exact": np.asarray(best.value_agent * s).reshape(n, n), "grid": np.asarray(g)}

"""Best Response Shaping (BRS, arXiv:2404.06519) in the IPD and the Coin Game.

BRS trains an *agent* (the leader) against a *detective* (the follower): a policy that
is conditioned on a representation of the agent and approximates its best response.
The agent differentiates its return against the detective's response *through the
conditioning*, so it learns how the best response changes when it changes, and adds a
cooperative self-play term. The detective is thrown away after training.

Choices made here where the paper is vague (or where this project is small)
--------------------------------------------------------------------------
IPD
  * The agent is tabular memory-1: logits ``theta`` (5,), ``p = sigmoid(theta)``.
  * Conditioning: the detective sees the agent's five cooperation probabilities ``p``
    (rescaled to ``2p - 1``). Its output is its own memory-1 policy (5 logits), from an
    MLP ``5 -> hidden -> hidden -> 5`` (tanh).
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
    (psi fixed). The second is "self-play with reward sharing": the agent plays a
    copy of itself and ascends the welfare of both players, differentiating only its own
    copy (``sg`` = stop-gradient); by symmetry of the game that is half the gradient of
    the welfare with both copies differentiated.
  * Exact form: :func:`train_ipd` with ``detective="exact"`` replaces the learned
    detective by the entropy-regularised exact best response
    (:func:`lowrank_es.shaping.best_response.ipd_soft_best_response`, temperature ``tau``),
    differentiated through its soft value iteration. (The hard best response is
    piecewise constant in ``p``: its gradient through the response is zero almost
    everywhere, so a temperature is needed to shape through it.)

Coin Game (see the ``coin_*`` functions)
  * Question answering: the agent's representation is its action distributions on a
    fixed set of ``n_questions`` query states, drawn once (seeded) from the game's
    reset distribution and kept for the whole run; the answers (``n_questions x 4``
    probabilities) are flattened and fed to the detective with its observation. They are
    a differentiable function of the agent's parameters.
  * Detective and agent are small MLP policies on the flattened observation, trained by
    REINFORCE (Adam) with a per-time-step mean baseline over the batch; the detective
    trains against noisy copies (Gaussian noise on every parameter) of agents from a ring
    buffer of the agent's past parameters. The agent's surrogate is the
    score function of *both* players' actions weighted by the agent's return: the
    detective's log-probabilities depend on the agent's parameters through the answers,
    which is the gradient "through the conditioning"; the self-play term is REINFORCE on
    both copies' actions in self-play weighted by the summed (shared) return, times 1/4 —
    in expectation the same as the IPD's one-copy 1/2 weighting.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.shaping import best_response as br
from lowrank_es.games import ipd
from lowrank_es.models.mlp import mlp_apply, mlp_init
from lowrank_es.shaping.naive import GameSpec, play_episodes, returns_to_go

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
    detective: str = "learned"  # "learned" or "exact"
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


def detective_init(key: jax.Array, hidden: int = 64) -> list[dict[str, jax.Array]]:
    """Parameters of the IPD detective MLP ``5 -> hidden -> hidden -> 5``."""
    params = mlp_init(key, (5, hidden, hidden, 5))
    params[-1]["W"] = params[-1]["W"] * 0.1  # start near the uniform policy
    return params


def detective_policy(params: PyTree, p_agent: jax.Array) -> jax.Array:
    """The detective's memory-1 response (..., 5) to agents ``p_agent`` (..., 5): P(C) per state."""
    return jax.nn.sigmoid(mlp_apply(params, 2.0 * p_agent - 1.0))


def detective_value(params: PyTree, p_agent: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Per-step reward (value * (1 - gamma)) of the detective against each agent, (...,)."""
    d = detective_policy(params, p_agent)
    f = lambda p, q: ipd.exact_value(p, q, gamma)[1]
    for _ in range(p_agent.ndim - 1):
        f = jax.vmap(f)
    return f(p_agent, d) * (1.0 - gamma)


def train_detective(key: jax.Array, agents_logits: jax.Array, *, steps: int, noise: float,
                    batch: int = 64, lr: float = 3e-3, hidden: int = 64, gamma: float = ipd.GAMMA,
                    params: PyTree | None = None) -> tuple[PyTree, jax.Array]:
    """Train a detective against agents drawn from ``agents_logits`` (B, 5) plus Gaussian logit noise.

    Returns the parameters and the loss curve (steps,) (minus the mean per-step reward).
    """
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    k_init, k_train = jax.random.split(key)
    if params is None:
        params = detective_init(k_init, hidden)
    opt = optax.adam(lr)
    state = opt.init(params)

    def step(carry, k):
        params, state = carry
        params, state, loss = _detective_step(params, state, opt, k, agents_logits, noise, batch, gamma)
        return (params, state), loss

    (params, _), losses = jax.lax.scan(step, (params, state), jax.random.split(k_train, steps))
    return params, losses


def _detective_step(params, state, opt, key, buffer, noise, batch, gamma):
    k1, k2 = jax.random.split(key)
    idx = jax.random.randint(k1, (batch,), 0, buffer.shape[0])
    logits = buffer[idx] + noise * jax.random.normal(k2, (batch, 5), buffer.dtype)
    p = jax.nn.sigmoid(logits)
    loss, g = jax.value_and_grad(lambda w: -jnp.mean(detective_value(w, p, gamma)))(params)
    upd, state = opt.update(g, state, params)
    return optax.apply_updates(params, upd), state, loss


def agent_objective(theta: jax.Array, response: Any, cfg: IPDConfig) -> jax.Array:
    """BRS objective of the agent (per-step reward), to be ascended.

    ``response(p) -> (5,)`` is the detective (learned or exact) as a function of the
    agent's probabilities, through which the gradient flows.
    """
    p = jax.nn.sigmoid(theta)
    v_br = ipd.exact_value(p, response(p), cfg.gamma)[0]
    q = jax.lax.stop_gradient(p)
    v1, v2 = ipd.exact_value(p, q, cfg.gamma)
    return (v_br + cfg.self_play * 0.5 * (v1 + v2)) * (1.0 - cfg.gamma)


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
    det = detective_init(k_det, cfg.hidden)
    det_state = det_opt.init(det)
    if cfg.detective == "learned" and cfg.pretrain_steps > 0:
        def pre(c, k):
            d, s = c
            d, s, _ = _detective_step(d, s, det_opt, k, buffer, cfg.noise, cfg.detective_batch, cfg.gamma)
            return (d, s), None

        (det, det_state), _ = jax.lax.scan(pre, (det, det_state), jax.random.split(k_pre, cfg.pretrain_steps))
    agent_opt = optax.adam(cfg.agent_lr)
    agent_state = agent_opt.init(theta)

    def outer(carry, xs):
        theta, agent_state, det, det_state, buffer = carry
        k, t = xs
        if cfg.detective == "learned":
            def inner(c, kk):
                d, s = c
                d, s, _ = _detective_step(d, s, det_opt, kk, buffer, cfg.noise, cfg.detective_batch, cfg.gamma)
                return (d, s), None

            (det, det_state), _ = jax.lax.scan(inner, (det, det_state), jax.random.split(k, cfg.detective_steps))
            response = lambda p: detective_policy(det, p)
        else:
            response = lambda p: br.ipd_soft_best_response(p, cfg.tau, cfg.gamma)
        p = jax.nn.sigmoid(theta)
        d = response(p)
        v1_det, v2_det = ipd.exact_value(p, d, cfg.gamma)
        best = br.ipd_best_response(p, cfg.gamma)
        sp = ipd.exact_value(p, p, cfg.gamma)[0]
        g = jax.grad(agent_objective)(theta, response, cfg)
        upd, agent_state = agent_opt.update(-g, agent_state, theta)
        theta = optax.apply_updates(theta, upd)
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


def reciprocity(p: jax.Array) -> dict[str, float]:
    """TFT-likeness of a memory-1 policy (own view): P(C|CC), P(C|CD) (the other defected),
    P(C|DD)."""
    p = np.asarray(p)
    return {"p_CC": float(p[..., 1]), "p_CD": float(p[..., 2]), "p_DD": float(p[..., 4])}


# ---------------------------------------------------------------------------
# Coin Game: question-answering conditioning, detective and agent by REINFORCE
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CoinConfig:
    """Hyper-parameters of BRS in the Coin Game (defaults: the notebook's small run).

    ``noise`` is the std of the Gaussian noise added to every parameter of a buffered agent
    before the detective trains against it. Per update: ``detective_updates`` detective
    steps, each on ``n_agents`` noisy buffered agents x ``episodes_per_agent`` episodes, then
    one agent step on ``agent_episodes`` episodes against the detective and as many in
    self-play. Training episodes last ``max_steps`` (16 here to fit a CPU budget; the
    game's standard 50 is used for evaluation).
    """

    updates: int = 200
    n_questions: int = 16
    hidden: int = 32
    det_hidden: int = 64
    agent_lr: float = 0.02
    detective_lr: float = 0.02
    detective_updates: int = 1
    n_agents: int = 4
    episodes_per_agent: int = 4
    agent_episodes: int = 32
    noise: float = 0.05
    buffer_size: int = 16
    self_play: float = 1.0
    entropy: float = 0.01
    gamma: float = 0.96
    max_steps: int = 16
    question_seed: int = 1234

    def __post_init__(self):
        for name in ("updates", "n_questions", "hidden", "det_hidden", "detective_updates", "n_agents",
                     "episodes_per_agent", "agent_episodes", "buffer_size", "max_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        if self.self_play < 0:
            raise ValueError(f"self_play must be >= 0, got {self.self_play}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")


def _coin_mod():
    from lowrank_es.games import coin

    return coin


def coin_agent_init(key: jax.Array, cfg: CoinConfig = CoinConfig()) -> PyTree:
    """Agent policy MLP ``obs (36) -> hidden -> 4`` logits, starting uniform."""
    coin = _coin_mod()
    p = mlp_init(key, (coin.obs_size(), cfg.hidden, coin.N_ACTIONS))
    p[-1]["W"] = p[-1]["W"] * 0.0
    return p


def coin_agent_logits(params: PyTree, obs: jax.Array) -> jax.Array:
    """obs (..., 36) -> logits (..., 4)."""
    return mlp_apply(params, obs)


def question_states(key: jax.Array, n: int, game_params=None):
    """``n`` fixed query states (a batched ``coin.State``) from the game's reset distribution."""
    coin = _coin_mod()
    game_params = coin.Params() if game_params is None else game_params
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return jax.vmap(lambda k: coin.reset(k, game_params)[1])(jax.random.split(key, int(n)))


def question_answers(agent_params: PyTree, questions, seat: int = 0, game_params=None) -> jax.Array:
    """The agent's answers: its action distributions on the query states, (n_questions, 4).

    Differentiable in ``agent_params``; this is the detective's representation of the agent.
    """
    coin = _coin_mod()
    game_params = coin.Params() if game_params is None else game_params
    obs = jax.vmap(lambda s: coin.observe(s, game_params)[seat])(questions)
    return jax.nn.softmax(coin_agent_logits(agent_params, obs), axis=-1)


def coin_detective_init(key: jax.Array, cfg: CoinConfig = CoinConfig()) -> PyTree:
    """Detective MLP ``[obs (36), answers (4 n_questions)] -> det_hidden -> det_hidden -> 4``."""
    coin = _coin_mod()
    p = mlp_init(key, (coin.obs_size() + 4 * cfg.n_questions, cfg.det_hidden, cfg.det_hidden, coin.N_ACTIONS))
    p[-1]["W"] = p[-1]["W"] * 0.0
    return p


def coin_detective_logits(params: PyTree, obs: jax.Array, answers: jax.Array) -> jax.Array:
    """obs (..., 36), answers (n_questions, 4) -> logits (..., 4)."""
    a = jnp.broadcast_to(answers.reshape(-1), obs.shape[:-1] + (answers.size,))
    return mlp_apply(params, jnp.concatenate([obs, 2.0 * a - 0.5], axis=-1))


def coin_play(key: jax.Array, logits0, logits1, n_episodes: int, game_params) -> dict:
    """Play ``n_episodes`` episodes; ``logits_i(obs_i) -> (4,)`` for seat i. Returns obs (n, T, 2, 36),
    actions (n, T, 2), rewards (n, T, 2), picked_own / picked_other (n, T, 2)."""
    coin = _coin_mod()
    spec = GameSpec("coin", coin.reset, coin.step, game_params, coin.obs_size(game_params), (),
                    coin.N_ACTIONS, game_params.max_steps)
    return play_episodes(key, (logits0, logits1), spec, n_episodes)


def _logp(logits: jax.Array, a: jax.Array) -> jax.Array:
    return jnp.take_along_axis(jax.nn.log_softmax(logits), a[..., None], axis=-1)[..., 0]


def _entropy(logits: jax.Array) -> jax.Array:
    return -jnp.sum(jax.nn.softmax(logits) * jax.nn.log_softmax(logits), axis=-1)


def _adv(G: jax.Array) -> jax.Array:
    """Advantage with a per-time-step mean baseline over the batch, (n, T)."""
    return G - G.mean(axis=0, keepdims=True)


def coin_detective_loss(det: PyTree, agent_params: PyTree, traj: dict, questions, cfg: CoinConfig) -> jax.Array:
    """REINFORCE loss of the detective (seat 1) on episodes against one agent."""
    ans = jax.lax.stop_gradient(question_answers(agent_params, questions, 0))
    lg = coin_detective_logits(det, traj["obs"][:, :, 1], ans)
    G = returns_to_go(traj["rewards"][..., 1], cfg.gamma)
    return -jnp.mean(_logp(lg, traj["actions"][:, :, 1]) * _adv(G)) - cfg.entropy * jnp.mean(_entropy(lg))


def coin_agent_loss(theta: PyTree, det: PyTree, traj: dict, sp_traj: dict, questions, cfg: CoinConfig) -> jax.Array:
    """BRS loss of the agent (seat 0): score function of both players' actions against the
    detective, weighted by the agent's advantage (the detective's log-probabilities depend on
    ``theta`` through the answers), plus the reward-sharing self-play term."""
    ans = question_answers(theta, questions, 0)
    lp_a = _logp(coin_agent_logits(theta, traj["obs"][:, :, 0]), traj["actions"][:, :, 0])
    lp_d = _logp(coin_detective_logits(jax.lax.stop_gradient(det), traj["obs"][:, :, 1], ans), traj["actions"][:, :, 1])
    adv = jax.lax.stop_gradient(_adv(returns_to_go(traj["rewards"][..., 0], cfg.gamma)))
    loss = -jnp.mean((lp_a + lp_d) * adv)
    lg_sp = coin_agent_logits(theta, sp_traj["obs"])  # (n, T, 2, 4)
    lp_sp = _logp(lg_sp, sp_traj["actions"])  # (n, T, 2)
    welfare = returns_to_go(sp_traj["rewards"].sum(-1), cfg.gamma)
    adv_sp = jax.lax.stop_gradient(_adv(welfare))
    # both copies differentiated, weight 1/4 = one copy with weight 1/2 (same expectation)
    loss = loss - cfg.self_play * 0.25 * jnp.mean(lp_sp.sum(-1) * adv_sp)
    ent = jnp.mean(_entropy(coin_agent_logits(theta, traj["obs"][:, :, 0])))
    return loss - cfg.entropy * ent


def _own_rate(own, other):
    o, t = jnp.sum(own), jnp.sum(own) + jnp.sum(other)
    return jnp.where(t > 0, o / jnp.maximum(t, 1), jnp.nan)


def train_coin(key: jax.Array, cfg: CoinConfig = CoinConfig()) -> tuple[PyTree, PyTree, dict]:
    """Run BRS in the Coin Game. Returns (agent params, detective params, history) with
    per-update arrays: ``vs_detective`` / ``detective_reward`` (reward per step of agent /
    detective in the agent's batch), ``self_play`` (mean reward per step of the agent in
    self-play), ``self_play_own`` and ``detective_own`` (own-coin rates)."""
    coin = _coin_mod()
    gp = coin.Params(max_steps=cfg.max_steps)
    questions = question_states(jax.random.PRNGKey(cfg.question_seed), cfg.n_questions, gp)
    k_a, k_d, k_loop = jax.random.split(key, 3)
    theta = coin_agent_init(k_a, cfg)
    det = coin_detective_init(k_d, cfg)
    buffer = jax.tree_util.tree_map(lambda x: jnp.tile(x[None], (cfg.buffer_size,) + (1,) * x.ndim), theta)
    a_opt, d_opt = optax.adam(cfg.agent_lr), optax.adam(cfg.detective_lr)
    a_state, d_state = a_opt.init(theta), d_opt.init(det)

    def det_update(carry, k):
        det, d_state, buffer = carry
        k_i, k_n, k_p = jax.random.split(k, 3)
        idx = jax.random.randint(k_i, (cfg.n_agents,), 0, cfg.buffer_size)
        agents = jax.tree_util.tree_map(lambda b: b[idx], buffer)
        leaves, tdef = jax.tree_util.tree_flatten(agents)
        nk = jax.random.split(k_n, len(leaves))
        agents = tdef.unflatten([l + cfg.noise * jax.random.normal(kk, l.shape, l.dtype) for l, kk in zip(leaves, nk)])

        def one(ag, kk):
            ans = question_answers(ag, questions, 0, gp)
            traj = coin_play(kk, lambda o: coin_agent_logits(ag, o), lambda o: coin_detective_logits(det, o, ans),
                             cfg.episodes_per_agent, gp)
            return traj

        trajs = jax.vmap(one)(agents, jax.random.split(k_p, cfg.n_agents))
        g = jax.grad(lambda d: jnp.mean(jax.vmap(lambda ag, tr: coin_detective_loss(d, ag, tr, questions, cfg))(agents, trajs)))(det)
        upd, d_state = d_opt.update(g, d_state, det)
        return (optax.apply_updates(det, upd), d_state, buffer), trajs["rewards"][..., 1].mean()

    def update(carry, xs):
        theta, a_state, det, d_state, buffer = carry
        k, t = xs
        k_d, k_p, k_s = jax.random.split(k, 3)
        (det, d_state, _), _ = jax.lax.scan(det_update, (det, d_state, buffer), jax.random.split(k_d, cfg.detective_updates))
        ans = question_answers(theta, questions, 0, gp)
        traj = coin_play(k_p, lambda o: coin_agent_logits(theta, o), lambda o: coin_detective_logits(det, o, ans),
                         cfg.agent_episodes, gp)
        sp = coin_play(k_s, lambda o: coin_agent_logits(theta, o), lambda o: coin_agent_logits(theta, o),
                       cfg.agent_episodes, gp)
        g = jax.grad(coin_agent_loss)(theta, det, traj, sp, questions, cfg)
        upd, a_state = a_opt.update(g, a_state, theta)
        theta = optax.apply_updates(theta, upd)
        buffer = jax.tree_util.tree_map(lambda b, x: b.at[t % cfg.buffer_size].set(x), buffer, theta)
        hist = {
            "vs_detective": traj["rewards"][..., 0].mean(),
            "detective_reward": traj["rewards"][..., 1].mean(),
            "detective_own": _own_rate(traj["picked_own"][..., 1], traj["picked_other"][..., 1]),
            "self_play": sp["rewards"].mean(),
            "self_play_own": _own_rate(sp["picked_own"], sp["picked_other"]),
        }
        return (theta, a_state, det, d_state, buffer), hist

    run = jax.jit(lambda c, xs: jax.lax.scan(update, c, xs))
    xs = (jax.random.split(k_loop, cfg.updates), jnp.arange(cfg.updates))
    (theta, _, det, _, _), hist = run((theta, a_state, det, d_state, buffer), xs)
    return theta, det, hist


def coin_self_play(key: jax.Array, theta: PyTree, n_episodes: int = 64, game_params=None) -> dict[str, float]:
    """Reward per step and own-coin rate of the agent playing a copy of itself."""
    coin = _coin_mod()
    gp = coin.Params() if game_params is None else game_params
    f = lambda o: coin_agent_logits(theta, o)
    tr = jax.jit(lambda k: coin_play(k, f, f, n_episodes, gp))(key)
    return {"reward_per_step": float(tr["rewards"].mean()),
            "own_coin_rate": float(_own_rate(tr["picked_own"], tr["picked_other"]))}


def coin_scripted_self_play(key: jax.Array, kind: str = "cooperative", n_episodes: int = 64,
                            game_params=None) -> dict[str, float]:
    """Reward per step and own-coin rate of two scripted agents of ``kind`` (e.g. always-cooperate:
    each goes for its own coins only) playing each other."""
    coin = _coin_mod()
    gp = coin.Params() if game_params is None else game_params
    if kind not in coin.SCRIPTED:
        raise ValueError(f"kind must be one of {coin.SCRIPTED}, got {kind!r}")

    def episode(k):
        k0, kr = jax.random.split(k)
        _, state = coin.reset(k0, gp)

        def body(s, kt):
            k0, k1, ks = jax.random.split(kt, 3)
            a = jnp.stack([coin.scripted_action(k0, s, 0, kind, gp), coin.scripted_action(k1, s, 1, kind, gp)])
            _, s2, r, _, info = coin.step(ks, s, a, gp)
            return s2, (r, info["picked_own"], info["picked_other"])

        _, out = jax.lax.scan(body, state, jax.random.split(kr, gp.max_steps))
        return out

    r, own, other = jax.jit(jax.vmap(episode))(jax.random.split(key, n_episodes))
    return {"reward_per_step": float(r.mean()), "own_coin_rate": float(_own_rate(own, other))}


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

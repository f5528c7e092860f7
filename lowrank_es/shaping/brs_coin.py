"""Best Response Shaping (BRS, arXiv:2404.06519) in the Coin Game (the IPD form and the
method's description: :mod:`lowrank_es.shaping.brs`).

Choices made here
-----------------
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
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lowrank_es.models.mlp import mlp_apply, mlp_init
from lowrank_es.shaping import agents, episodes

PyTree = Any

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
    """Play ``n_episodes`` episodes (:func:`lowrank_es.shaping.episodes.rollout`);
    ``logits_i(obs_i) -> (4,)`` for seat i. Returns batch-major obs (n, T, 2, 36), actions
    (n, T, 2), rewards (n, T, 2), picked_own / picked_other (n, T, 2)."""
    spec = episodes.game_spec("coin", grid_size=game_params.grid_size, max_steps=game_params.max_steps)
    ep = episodes.rollout(key, (episodes.logit_player(logits0), episodes.logit_player(logits1)), spec, n_episodes)
    out = {"obs": ep.obs, "actions": ep.actions, "rewards": ep.rewards, **ep.info}
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), out)


def returns_to_go(rewards: jax.Array, gamma: float) -> jax.Array:
    """Discounted returns-to-go along axis 1 of batch-major (n, T, ...) rewards."""
    return jnp.swapaxes(episodes.returns_to_go(jnp.swapaxes(rewards, 0, 1), gamma), 0, 1)


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
    spec = episodes.game_spec("coin", grid_size=gp.grid_size, max_steps=gp.max_steps)
    player = agents.scripted(f"coin/{kind}", gp.grid_size)
    st = episodes.evaluate(key, player, player, spec, n_episodes)
    return {"reward_per_step": float(st["reward"].mean()), "own_coin_rate": float(st["own_rate"])}

"""Best Response Shaping (BRS, arXiv:2404.06519) in the Coin Game, with recurrent agents.

The *agent* is the GRU agent of every sampled learner (:mod:`lowrank_es.shaping.agents`,
:mod:`lowrank_es.shaping.recurrent`). The *detective* is a GRU policy of the same shape whose
input at step ``t`` is its own observation and the agent's **answers** ``q_t`` (4,): the
paper's simulation-based question answering. The question at step ``t`` is the current
state, asked of the agent *with its current memory* ``h_t``: "if I (the detective) play ``b``
now and then at random for ``depth - 1`` steps, while you play your policy, what do I get?"
The answer is the Monte Carlo estimate over ``rollouts`` simulations of the detective's
discounted reward, divided by ``sum_k gamma^k`` (a reward per step), one per ``b``. It is a
differentiable function of the agent's parameters: through ``h_t`` and through the agent's
sampled actions, by DiCE (the reward of simulation step ``k`` weighted by
``exp(L_k - stop_gradient(L_k))``, ``L_k`` the agent's summed log-probabilities up to ``k``).

:class:`Detective` is a player of :mod:`lowrank_es.shaping.episodes`: it holds the detective's
networks and the agent's actor it is conditioned on, rebuilds the board from its own
observation (the Coin Game observation shows the whole board; the step count is not needed
by the ``depth``-step simulations) and advances its own copy of the agent's memory by running
the agent on the agent's view of that board. The random numbers of the simulations are a pure
function of ``(qa_key, t, board)``, so :func:`detective_log_prob` recomputes exactly the
answers the detective acted on, now as a function of the agent's parameters.

One update (:func:`update`; everything jitted, :func:`train_seeds` vmaps seeds):

1. ``n_envs`` episodes agent (seat 0) vs detective (seat 1) and ``sp_envs`` self-play
   episodes, plus ``det_agents x det_envs`` episodes of the detective against noisy copies
   (Gaussian noise ``noise`` on every actor parameter) of agents drawn from a buffer of past
   agents (the paper's replay buffer; ``det_agents = 0`` is its BRS-NORB ablation);
2. the detective takes one actor-critic step on its own reward in all its episodes (GAE
   advantages from its critic, entropy bonus, Huber critic against a Polyak target);
3. the agent takes the paper's two steps with separate Adam optimisers: the BRS term
   ``-(log pi_agent(a_t) + log pi_detective(b_t | q_t(theta))) A_t`` on the episodes against the
   detective (the second log-probability is the gradient *through the conditioning*), and
   self-play with reward sharing ``-(1/2) sum_seats log pi(a_t^seat) (A_t^0 + A_t^1)``
   (lr ``sp_lr``); its critic takes a Huber step on its own returns in both kinds of episode.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lowrank_es.games import coin
from lowrank_es.shaping import agents, episodes, recurrent
from lowrank_es.shaping.agents import Agent
from lowrank_es.shaping.recurrent import Architecture

STATIC_FIELDS = ("n_envs", "sp_envs", "det_agents", "det_envs", "hidden", "det_hidden", "buffer", "snapshot_every",
                 "rollouts", "depth", "grid_size", "steps", "gamma")


@dataclasses.dataclass(frozen=True)
class CoinConfig:
    """Hyper-parameters of BRS in the Coin Game (module docstring). Shapes (episodes per update,
    widths, buffer, question answering ``rollouts`` x ``depth``, episode length ``steps``) and
    the discount ``gamma`` are static; learning rates, weights and ``noise`` are traced, so
    changing them reuses the compiled update."""

    n_envs: int = 32
    sp_envs: int = 32
    det_agents: int = 4
    det_envs: int = 8
    hidden: int = 32
    det_hidden: int = 32
    buffer: int = 16
    snapshot_every: int = 10
    rollouts: int = 2
    depth: int = 3
    grid_size: int = 3
    steps: int = 50
    lr: float = 1e-3
    sp_lr: float = 1e-3
    det_lr: float = 1e-3
    critic_lr: float = 1e-2
    gamma: float = 0.96
    lam: float = 0.95
    entropy: float = 0.05
    det_entropy: float = 0.02
    noise: float = 0.01
    max_grad_norm: float = 1.0
    target_ema: float = 0.99

    def __post_init__(self):
        for name in ("n_envs", "sp_envs", "det_envs", "hidden", "det_hidden", "buffer", "snapshot_every", "rollouts",
                     "depth", "steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.det_agents) < 0:
            raise ValueError(f"det_agents must be >= 0, got {self.det_agents}")
        if int(self.grid_size) < 2:
            raise ValueError(f"grid_size must be >= 2, got {self.grid_size}")
        if not 0.0 <= float(self.gamma) < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in STATIC_FIELDS}
        if not all(isinstance(v, (int, float)) for v in values.values()):
            return  # traced leaves: checked when the config was made
        for name in ("lr", "det_lr", "critic_lr", "max_grad_norm"):
            if not values[name] > 0:
                raise ValueError(f"{name} must be > 0, got {values[name]}")
        for name in ("lam", "target_ema"):
            if not 0.0 <= values[name] <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {values[name]}")
        for name in ("sp_lr", "entropy", "det_entropy", "noise"):
            if values[name] < 0:
                raise ValueError(f"{name} must be >= 0, got {values[name]}")


jax.tree_util.register_dataclass(
    CoinConfig, data_fields=[f.name for f in dataclasses.fields(CoinConfig) if f.name not in STATIC_FIELDS],
    meta_fields=list(STATIC_FIELDS))


def spec_of(cfg: CoinConfig) -> episodes.GameSpec:
    return episodes.game_spec("coin", grid_size=cfg.grid_size, max_steps=cfg.steps)


def agent_arch(cfg: CoinConfig) -> Architecture:
    """The agent's networks: those of every sampled learner (a state-value critic)."""
    return Architecture(4 * cfg.grid_size ** 2, coin.N_ACTIONS, 1, cfg.hidden, 1)


def detective_arch(cfg: CoinConfig) -> Architecture:
    """The detective's networks: the same GRU actor-critic on ``[observation, answers (4)]``."""
    return Architecture(4 * cfg.grid_size ** 2 + coin.N_ACTIONS, coin.N_ACTIONS, 1, cfg.det_hidden, 1)


# ---------------------------------------------------------------------------
# Question answering
# ---------------------------------------------------------------------------


def board_code(state: coin.State, grid_size: int) -> jax.Array:
    """An integer naming the board (positions, coin cell and colour), for the simulations' keys."""
    n = grid_size * grid_size
    cells = state.pos[:, 0] * grid_size + state.pos[:, 1]
    coin_cell = state.coin_pos[0] * grid_size + state.coin_pos[1]
    return ((cells[0] * n + cells[1]) * n + coin_cell) * 2 + state.coin_colour


def qa_key(key: jax.Array, t: jax.Array, state: coin.State, grid_size: int) -> jax.Array:
    """The key of the simulations asked at step ``t`` on ``state``: a pure function of both."""
    return jax.random.fold_in(jax.random.fold_in(key, t.astype(jnp.int32)), board_code(state, grid_size))


def answers(actor: Any, arch: Architecture, h: jax.Array, state: coin.State, key: jax.Array, *, rollouts: int,
            depth: int, gamma: float, grid_size: int = 3) -> jax.Array:
    """The agent's answers (4,) on one board (detective = seat 0 of ``state``, agent = seat 1).

    For each first detective action ``b``: ``rollouts`` simulations of ``depth`` steps in
    which the agent (actor params ``actor``, memory ``h (hidden,)``) samples its actions and
    the detective plays ``b`` then uniformly; the mean DiCE-weighted discounted reward of the
    detective, divided by ``sum_k gamma^k``. Differentiable in ``actor`` and ``h``."""
    params = coin.Params(grid_size=grid_size, max_steps=depth + 1)
    keys = jax.random.split(key, 4 * rollouts).reshape(4, rollouts, -1)

    def simulate(b, k):
        def step(c, kk):
            s, hh, lsum, disc, ret, first = c
            k_a, k_d, k_env = jax.random.split(kk, 3)
            lg, hh = recurrent.actor_step(actor, coin.observe(s, params)[1][None], hh[None], arch)
            logp = jax.nn.log_softmax(lg[0, 0])
            a = jax.random.categorical(k_a, jax.lax.stop_gradient(logp)).astype(jnp.int32)
            d = jnp.where(first, b, jax.random.randint(k_d, (), 0, coin.N_ACTIONS))
            _, s2, r, _, _ = coin.step(k_env, s, jnp.stack([d, a]), params)
            lsum = lsum + logp[a]
            ret = ret + disc * r[0] * jnp.exp(lsum - jax.lax.stop_gradient(lsum))
            return (s2, hh[0], lsum, disc * gamma, ret, False), None

        init = (state, h, jnp.zeros(()), jnp.ones(()), jnp.zeros(()), True)
        (_, _, _, _, ret, _), _ = jax.lax.scan(step, init, jax.random.split(k, depth))
        return ret

    q = jax.vmap(lambda b, kb: jax.vmap(lambda kk: simulate(b, kk))(kb))(jnp.arange(coin.N_ACTIONS), keys)
    norm = (1.0 - gamma ** depth) / (1.0 - gamma) if gamma < 1.0 else float(depth)
    return q.mean(-1) / norm


@dataclasses.dataclass(frozen=True)
class Detective:
    """The detective as a player of :mod:`lowrank_es.shaping.episodes` (module docstring).

    params: its networks ``{"actor", "critic"}`` on ``[obs, answers]``; agent: the actor
    parameters of the agent it is conditioned on; key: the simulations' key (one per update);
    static: both architectures, ``rollouts``, ``depth``, ``gamma``, ``grid_size``. Its carry
    ``(batch, agent hidden + detective hidden + 1)`` holds the agent's memory, its own and the
    step count."""

    params: Any
    agent: Any
    key: jax.Array
    arch: Architecture
    agent_arch: Architecture
    rollouts: int = 2
    depth: int = 3
    gamma: float = 0.96
    grid_size: int = 3

    def initial_carry(self, batch: int) -> jax.Array:
        if int(batch) < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        return jnp.zeros((int(batch), self.agent_arch.hidden + self.arch.hidden + 1))

    def answer(self, h: jax.Array, state: coin.State, t: jax.Array) -> jax.Array:
        """Answers (4,) of the agent with memory ``h`` on one board at step ``t``."""
        return answers(self.agent, self.agent_arch, h, state, qa_key(self.key, t, state, self.grid_size),
                       rollouts=self.rollouts, depth=self.depth, gamma=self.gamma, grid_size=self.grid_size)

    def step_inputs(self, obs: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The detective's input ``[obs, answers]`` (batch, d + 4) on its observations
        (batch, d) and the carry with the agent's memory and the step count advanced."""
        ha, H = self.agent_arch.hidden, self.arch.hidden
        h_agent, t = carry[:, :ha], carry[:, -1]
        states = jax.vmap(lambda o: agents.coin_state_from_obs(o, self.grid_size))(obs)
        q = jax.vmap(self.answer)(h_agent, states, t)
        agent_obs = jax.vmap(lambda s: coin.observe(s, coin.Params(grid_size=self.grid_size))[1])(states)
        _, h_agent = recurrent.actor_step(self.agent, agent_obs, h_agent, self.agent_arch)
        return jnp.concatenate([obs, q], -1), jnp.concatenate([h_agent, carry[:, ha:ha + H], t[:, None] + 1.0], -1)

    def act(self, key: jax.Array, obs: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
        ha, H = self.agent_arch.hidden, self.arch.hidden
        x, carry = self.step_inputs(obs, carry)
        lg, h_det = recurrent.actor_step(self.params["actor"], x, carry[:, ha:ha + H], self.arch)
        action = recurrent.sample(key, lg)[:, 0]
        return action, carry.at[:, ha:ha + H].set(h_det)


jax.tree_util.register_dataclass(Detective, data_fields=["params", "agent", "key"],
                                 meta_fields=["arch", "agent_arch", "rollouts", "depth", "gamma", "grid_size"])


def detective(params: Any, agent_actor: Any, key: jax.Array, cfg: CoinConfig) -> Detective:
    """The detective with networks ``params`` conditioned on the agent actor ``agent_actor``."""
    return Detective(params, agent_actor, key, detective_arch(cfg), agent_arch(cfg), cfg.rollouts, cfg.depth,
                     float(cfg.gamma), cfg.grid_size)


def agent_memory(actor: Any, obs: jax.Array, arch: Architecture) -> tuple[jax.Array, jax.Array]:
    """The agent's logits (T, B, 1, 4) on its own observations (T, B, d) and its memory
    *before* each step (T, B, hidden), from a zero carry."""
    def body(h, o):
        lg, h2 = recurrent.actor_step(actor, o, h, arch)
        return h2, (lg, h)

    _, (lg, hs) = jax.lax.scan(body, jnp.zeros(obs.shape[1:-1] + (arch.hidden,), obs.dtype), obs)
    return lg, hs


def detective_inputs(det: Detective, det_obs: jax.Array, agent_obs: jax.Array) -> jax.Array:
    """``[obs, answers]`` (T, B, d + 4) of the detective along whole episodes: the answers it
    acted on, recomputed in parallel over steps; differentiable in ``det.agent``.
    det_obs / agent_obs: (T, B, d) the detective's and the agent's views."""
    _, hs = agent_memory(det.agent, agent_obs, det.agent_arch)
    T = det_obs.shape[0]
    states = jax.vmap(jax.vmap(lambda o: agents.coin_state_from_obs(o, det.grid_size)))(det_obs)
    t = jnp.broadcast_to(jnp.arange(T, dtype=jnp.float32)[:, None], det_obs.shape[:2])
    q = jax.vmap(jax.vmap(det.answer))(hs, states, t)
    return jnp.concatenate([det_obs, q], -1)


def detective_log_prob(det: Detective, det_obs: jax.Array, agent_obs: jax.Array, det_actions: jax.Array) -> jax.Array:
    """Log-probabilities (T, B) of the detective's actions (T, B) along whole episodes, as a
    function of the agent's actor ``det.agent`` (the gradient through the conditioning)."""
    x = detective_inputs(det, det_obs, agent_obs)
    lg = recurrent.actor_sequence(det.params["actor"], x, det.arch)
    return recurrent.log_prob(lg, det_actions[..., None])


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


class BRSState(NamedTuple):
    """agent: the learner (:class:`lowrank_es.shaping.agents.Agent`); target: its critic's
    Polyak average; opt_brs / opt_sp / opt_critic: its optimiser states; det: the detective's
    networks, det_target, det_opt_actor, det_opt_critic likewise; buffer: past agents' actor
    parameters stacked on a leading axis; step: updates done."""

    agent: Agent
    target: Any
    opt_brs: Any
    opt_sp: Any
    opt_critic: Any
    det: Any
    det_target: Any
    det_opt_actor: Any
    det_opt_critic: Any
    buffer: Any
    step: jax.Array


def _adam(lr, cfg: CoinConfig):
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(lr))


def init(key: jax.Array, cfg: CoinConfig) -> BRSState:
    """A fresh agent and detective (both uniform); the buffer full of copies of the agent."""
    k_a, k_d = jax.random.split(key)
    agent = agents.network(k_a, agent_arch(cfg))
    det = recurrent.init(k_d, detective_arch(cfg))
    actor, critic = agent.params["actor"], agent.params["critic"]
    buffer = jax.tree.map(lambda x: jnp.broadcast_to(x, (cfg.buffer,) + x.shape), actor)
    return BRSState(agent, critic, _adam(cfg.lr, cfg).init(actor), _adam(cfg.sp_lr, cfg).init(actor),
                    _adam(cfg.critic_lr, cfg).init(critic), det, det["critic"], _adam(cfg.det_lr, cfg).init(det["actor"]),
                    _adam(cfg.critic_lr, cfg).init(det["critic"]), buffer, jnp.int32(0))


def _advantages(critic, target, obs, rew, cfg: CoinConfig):
    """GAE advantages (T, B) of a view from ``critic`` and lambda-return targets from ``target``."""
    sg = jax.lax.stop_gradient
    V = sg(recurrent.critic_sequence(critic, obs)[..., 0])
    Vt = sg(recurrent.critic_sequence(target, obs)[..., 0])
    adv = episodes.gae(rew, episodes.with_terminal(V), cfg.gamma, cfg.lam)
    return adv, episodes.gae(rew, episodes.with_terminal(Vt), cfg.gamma, cfg.lam) + Vt


def _critic_step(critic, opt_state, target, obs, targets, cfg: CoinConfig):
    loss = lambda c: jnp.mean(optax.huber_loss(recurrent.critic_sequence(c, obs)[..., 0], targets))  # noqa: E731
    upd, opt_state = _adam(cfg.critic_lr, cfg).update(jax.grad(loss)(critic), opt_state, critic)
    critic = optax.apply_updates(critic, upd)
    return critic, opt_state, jax.tree.map(lambda t, c: cfg.target_ema * t + (1 - cfg.target_ema) * c, target, critic)


def _noisy_episodes(key, state: BRSState, det_params, cfg: CoinConfig, spec):
    """``det_agents`` noisy buffered agents, ``det_envs`` episodes each against the detective
    conditioned on them: the detective's view (T, B', ...) and its inputs."""
    k_i, k_n, k_p, k_q = jax.random.split(key, 4)
    n_filled = jnp.minimum(state.step // cfg.snapshot_every + 1, cfg.buffer)
    idx = jax.random.randint(k_i, (cfg.det_agents,), 0, n_filled)
    leaves, tdef = jax.tree_util.tree_flatten(jax.tree.map(lambda b: b[idx], state.buffer))
    keys = jax.random.split(k_n, len(leaves))
    actors = tdef.unflatten([x + cfg.noise * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    arch = agent_arch(cfg)

    def one(actor, kp, kq):
        det = detective(det_params, actor, kq, cfg)
        ep = episodes.rollout(kp, (Agent({"actor": actor, "critic": None}, "network", arch), det), spec, cfg.det_envs)
        x = detective_inputs(det, ep.obs[:, :, 1], ep.obs[:, :, 0])
        return x, ep.actions[:, :, 1], ep.rewards[:, :, 1]

    x, a, r = jax.vmap(one)(actors, jax.random.split(k_p, cfg.det_agents), jax.random.split(k_q, cfg.det_agents))
    merge = lambda v: jnp.moveaxis(v, 0, 1).reshape((v.shape[1], -1) + v.shape[3:])  # noqa: E731
    return merge(x), merge(a), merge(r)


def _own_rate(ep: episodes.Episodes, seat: int) -> jax.Array:
    own, other = ep.info["picked_own"][..., seat].sum(), ep.info["picked_other"][..., seat].sum()
    return own / jnp.maximum(own + other, 1.0)


def update(state: BRSState, key: jax.Array, cfg: CoinConfig) -> tuple[BRSState, dict]:
    """One BRS update (module docstring). Metrics: self-play ``reward`` (2,), ``own`` /
    ``other`` / ``own_rate``; ``vs_detective`` (2,) rewards of agent and detective,
    ``detective_own_rate`` and ``agent_own_rate`` in those episodes; ``entropy``."""
    sg = jax.lax.stop_gradient
    spec = spec_of(cfg)
    k_vs, k_sp, k_q, k_noisy = jax.random.split(key, 4)
    agent, actor = state.agent, state.agent.params["actor"]
    det = detective(state.det, actor, k_q, cfg)
    ep_vs = episodes.rollout(k_vs, (agent, det), spec, cfg.n_envs)
    ep_sp = episodes.rollout(k_sp, (agent, agent), spec, cfg.sp_envs)

    # --- detective: actor-critic on its own reward against the agent and noisy past agents
    x_det = sg(detective_inputs(det, ep_vs.obs[:, :, 1], ep_vs.obs[:, :, 0]))
    a_det, r_det = ep_vs.actions[:, :, 1], ep_vs.rewards[:, :, 1]
    if cfg.det_agents > 0:
        xn, an, rn = _noisy_episodes(k_noisy, state, state.det, cfg, spec)
        x_det, a_det, r_det = (jnp.concatenate(p, 1) for p in ((x_det, xn), (a_det, an), (r_det, rn)))
    A_det, tgt_det = _advantages(state.det["critic"], state.det_target, x_det, r_det, cfg)
    darch = detective_arch(cfg)

    def det_loss(p):
        lg = recurrent.actor_sequence(p, x_det, darch)
        ent = recurrent.entropy(lg).mean()
        return -jnp.mean(recurrent.log_prob(lg, a_det[..., None]) * A_det) - cfg.det_entropy * ent

    g = jax.grad(det_loss)(state.det["actor"])
    upd, det_opt_actor = _adam(cfg.det_lr, cfg).update(g, state.det_opt_actor, state.det["actor"])
    det_actor = optax.apply_updates(state.det["actor"], upd)
    det_critic, det_opt_critic, det_target = _critic_step(state.det["critic"], state.det_opt_critic, state.det_target,
                                                          x_det, tgt_det, cfg)

    # --- agent: BRS term through the detective's conditioning, and self-play with reward sharing
    arch = agent.arch
    o_vs, a_vs, r_vs = ep_vs.obs[:, :, 0], ep_vs.actions[:, :, 0], ep_vs.rewards[:, :, 0]
    o_sp = jnp.concatenate([ep_sp.obs[:, :, 0], ep_sp.obs[:, :, 1]], 1)
    a_sp = jnp.concatenate([ep_sp.actions[:, :, 0], ep_sp.actions[:, :, 1]], 1)
    r_sp = jnp.concatenate([ep_sp.rewards[:, :, 0], ep_sp.rewards[:, :, 1]], 1)
    critic = agent.params["critic"]
    A_vs, tgt_vs = _advantages(critic, state.target, o_vs, r_vs, cfg)
    A_sp, tgt_sp = _advantages(critic, state.target, o_sp, r_sp, cfg)
    n = cfg.sp_envs
    welfare = A_sp[:, :n] + A_sp[:, n:]
    welfare = jnp.concatenate([welfare, welfare], 1)

    def brs_loss(act):
        lg = recurrent.actor_sequence(act, o_vs, arch)
        lp_det = detective_log_prob(Detective(sg(state.det), act, det.key, det.arch, det.agent_arch, det.rollouts,
                                              det.depth, det.gamma, det.grid_size), ep_vs.obs[:, :, 1], o_vs, ep_vs.actions[:, :, 1])
        ent = recurrent.entropy(lg).mean()
        return -jnp.mean((recurrent.log_prob(lg, a_vs[..., None]) + lp_det) * A_vs) - cfg.entropy * ent, ent

    def sp_loss(act):
        lg = recurrent.actor_sequence(act, o_sp, arch)
        return -jnp.mean(recurrent.log_prob(lg, a_sp[..., None]) * welfare)

    g_brs, ent = jax.grad(brs_loss, has_aux=True)(actor)
    u_brs, opt_brs = _adam(cfg.lr, cfg).update(g_brs, state.opt_brs, actor)
    u_sp, opt_sp = _adam(cfg.sp_lr, cfg).update(jax.grad(sp_loss)(actor), state.opt_sp, actor)
    new_actor = optax.apply_updates(optax.apply_updates(actor, u_brs), u_sp)
    critic, opt_critic, target = _critic_step(critic, state.opt_critic, state.target, jnp.concatenate([o_vs, o_sp], 1),
                                              jnp.concatenate([tgt_vs, tgt_sp], 1), cfg)
    slot = (state.step // cfg.snapshot_every) % cfg.buffer
    snap = (state.step % cfg.snapshot_every) == 0
    buffer = jax.tree.map(lambda b, x: jnp.where(snap, b.at[slot].set(x), b), state.buffer, actor)

    metrics = episodes.stats(ep_sp, spec)
    metrics.update(vs_detective=ep_vs.rewards.mean((0, 1)), detective_own_rate=_own_rate(ep_vs, 1),
                   agent_own_rate=_own_rate(ep_vs, 0), entropy=ent)
    new = BRSState(Agent({"actor": new_actor, "critic": critic}, "network", arch), target, opt_brs, opt_sp, opt_critic,
                   {"actor": det_actor, "critic": det_critic}, det_target, det_opt_actor, det_opt_critic, buffer,
                   state.step + 1)
    return new, metrics


def update_keys(key: jax.Array, start: int, n: int) -> jax.Array:
    """Keys of updates ``start .. start + n - 1``: ``fold_in(key, u)``, so a run gives the same
    numbers whatever chunks it is split into."""
    return jax.vmap(lambda u: jax.random.fold_in(key, u))(jnp.arange(start, start + n))


@jax.jit
def _train_many(keys, states, cfg):
    def run(ks, s):
        return jax.lax.scan(lambda c, k: update(c, k, cfg), s, ks)

    return jax.vmap(run)(keys, states)


def train_seeds(seeds: tuple[int, ...], cfg: CoinConfig, n_updates: int, chunk: int | None = None,
                progress=None) -> tuple[BRSState, dict]:
    """BRS for every seed at once (vmapped; seed ``s`` starts from ``PRNGKey(s)``), in chunks
    of ``chunk`` updates (``progress(n_done)`` after each). Returns the states and the
    per-update metrics with leading axes (seeds, updates)."""
    if int(n_updates) < 1:
        raise ValueError(f"n_updates must be >= 1, got {n_updates}")
    if not len(seeds):
        raise ValueError("seeds must not be empty")
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    k_init, k_run = jax.vmap(jax.random.split, out_axes=1)(keys)
    state = jax.vmap(lambda k: init(k, cfg))(k_init)
    chunk = int(n_updates) if chunk is None else max(1, int(chunk))
    hist, done = [], 0
    while done < n_updates:
        n = min(chunk, int(n_updates) - done)
        state, h = _train_many(jax.vmap(lambda k: update_keys(k, done, n))(k_run), state, cfg)
        hist.append(h)
        done += n
        if progress is not None:
            progress(done)
    return state, jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *hist)

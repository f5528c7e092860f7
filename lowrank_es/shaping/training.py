"""The one self-play trainer of the sampled learners: naive, LOQA, AdAlign, Proximal AdAlign.

One recurrent agent (:mod:`lowrank_es.shaping.recurrent`) plays seat 0 of every episode of a
batch; seat 1 is the agent itself in a fraction ``1 - replay`` of the episodes (self-play,
both seats are learned from) and, in the others, an agent drawn uniformly from a buffer of
past snapshots (only seat 0 is learned from), as the official LOQA code does to keep the
opponent distribution from chasing the learner. Each update:

1. plays ``n_envs`` episodes through :func:`lowrank_es.shaping.episodes.rollout`;
2. evaluates both critics on the whole sequences (the opponent's own critic gives its values
   and, for LOQA, its Q-values);
3. takes one Adam step on the actor loss of ``cfg.method`` (gradient clipped to
   ``max_grad_norm``; ``ppo_epochs`` clipped steps for Proximal AdAlign) and one on the
   critic loss (Huber, against a Polyak-averaged target critic);
4. snapshots the agent into the buffer every ``snapshot_every`` updates.

Methods (actor losses; ``delta`` is the one-step TD error, ``A`` a GAE advantage):

* ``"naive"``: policy gradient with ``A1`` (GAE, lambda ``lam``);
* ``"adalign"`` / ``"proximal_adalign"``: the aligned advantage
  ``A*_t = A1_t + beta gamma P_t A2_t`` with ``P_t`` the discounted sum (or running mean,
  ``past="mean"``) of the agent's past one-step advantages ``delta1_k, k < t``, in the policy
  gradient or PPO's clipped surrogate (:mod:`lowrank_es.shaping.advantage_alignment`);
* ``"loqa"``: policy gradient with ``delta1`` plus ``shaping`` times LOQA's opponent-model term
  (:func:`lowrank_es.shaping.loqa.opponent_model_loss`); its critic predicts one Q per action.

Past advantages are one-step TD errors on purpose: a Monte Carlo or GAE advantage of step
``k < t`` contains the rewards after ``t`` as well, and its product with the opponent's
advantage at ``t`` then carries the covariance of the two players' future rewards, which in
the Coin Game is negative and largest for actions that make coins change hands: the
estimator then rewards avoiding coins altogether (``theory/advantage_alignment.md``, section 5).

Everything in an update is jitted; :func:`train` scans updates and :func:`train_seeds` vmaps
seeds.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lowrank_es.shaping import advantage_alignment as aa
from lowrank_es.shaping import agents as agents_mod
from lowrank_es.shaping import episodes, loqa, recurrent
from lowrank_es.shaping.agents import Agent
from lowrank_es.shaping.episodes import GameSpec

METHODS = ("naive", "loqa", "adalign", "proximal_adalign")


#: Fields that fix shapes or code paths (static under jit); all others are numbers that jit
#: traces, so changing them (e.g. LOQA's shaping weight, AdAlign's beta, a learning rate)
#: reuses the compiled update.
STATIC_FIELDS = ("method", "n_envs", "hidden", "replay", "buffer", "snapshot_every", "past", "ppo_epochs",
                 "past_of", "advantage_critic", "critic_target")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train` (defaults: the Coin Game reference runs).

    Common: n_envs episodes per update; hidden GRU width; lr / critic_lr Adam steps;
    gamma discount; lam GAE lambda of the own advantage; entropy bonus weight;
    max_grad_norm gradient clipping; target_ema Polyak factor of the target critic; replay
    fraction of episodes against past agents; buffer snapshots kept, one every
    snapshot_every updates.
    LOQA: tau opponent-model temperature; shaping weight of its term; dice_discount extra
    discount of the differentiable opponent return.
    AdAlign: beta weight of the alignment term; past ``"discounted"`` (the paper) or
    ``"mean"`` (the official code's running mean) of past_of ``"td"`` (one-step TD errors,
    free of shared rewards) or ``"gae"`` (the GAE advantages, as the official code);
    clip and ppo_epochs of Proximal AdAlign.
    Critic: advantage_critic ``"online"`` or ``"target"`` (the official code: the Polyak
    target critic's values give every advantage, and a past opponent, whose target is not kept,
    uses its own critic); critic_target ``"lambda"`` (lambda-return of the target critic) or
    ``"interpolate"`` (the official mean of the Monte Carlo return and the TD(0) target).

    A pytree: the fields of :data:`STATIC_FIELDS` are static, the others are leaves."""

    method: str = "adalign"
    n_envs: int = 64
    hidden: int = 32
    lr: float = 1e-3
    critic_lr: float = 1e-2
    gamma: float = 0.96
    lam: float = 0.95
    entropy: float = 0.05
    max_grad_norm: float = 1.0
    target_ema: float = 0.99
    replay: float = 0.5
    buffer: int = 32
    snapshot_every: int = 10
    tau: float = 1.0
    shaping: float = 1.0
    dice_discount: float = 0.9
    beta: float = 1.0
    past: str = "discounted"
    past_of: str = "td"
    clip: float = 0.2
    ppo_epochs: int = 2
    advantage_critic: str = "online"
    critic_target: str = "lambda"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name, allowed in (("past", ("discounted", "mean")), ("past_of", ("td", "gae")),
                              ("advantage_critic", ("online", "target")),
                              ("critic_target", ("lambda", "interpolate"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.method == "loqa" and (self.advantage_critic, self.critic_target) != ("online", "lambda"):
            raise ValueError("advantage_critic='target' and critic_target='interpolate' are AdAlign options "
                             "(LOQA's critic has one Q per action): with method='loqa' use "
                             "advantage_critic='online' and critic_target='lambda'")
        for name in ("n_envs", "hidden", "buffer", "snapshot_every", "ppo_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.replay < 1.0:
            raise ValueError(f"replay must be in [0, 1) (some episodes must be self-play), got {self.replay}")
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in STATIC_FIELDS}
        if not all(isinstance(v, (int, float)) for v in values.values()):
            return  # traced leaves (inside jit / vmap): checked when the config was made
        for name in ("lr", "critic_lr", "tau", "max_grad_norm", "clip"):
            if not values[name] > 0:
                raise ValueError(f"{name} must be > 0, got {values[name]}")
        for name in ("gamma", "lam", "target_ema", "dice_discount"):
            if not 0.0 <= values[name] <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {values[name]}")
        for name in ("entropy", "shaping", "beta"):
            if values[name] < 0:
                raise ValueError(f"{name} must be >= 0, got {values[name]}")

    @property
    def n_self(self) -> int:
        """Self-play episodes per update (at least one)."""
        return max(1, int(round(self.n_envs * (1.0 - self.replay))))


jax.tree_util.register_dataclass(
    TrainConfig, data_fields=[f.name for f in dataclasses.fields(TrainConfig) if f.name not in STATIC_FIELDS],
    meta_fields=list(STATIC_FIELDS))


def architecture(spec: GameSpec, cfg: TrainConfig) -> recurrent.Architecture:
    """The agent's networks for a game and method (LOQA's critic has one Q per action)."""
    if cfg.method == "loqa" and spec.action_dims != 1:
        raise ValueError(f"LOQA needs one categorical action per step; {spec.name} has {spec.action_dims}")
    return recurrent.Architecture(spec.obs_dim, spec.n_choices, spec.action_dims, cfg.hidden,
                                  spec.n_choices if cfg.method == "loqa" else 1)


class LearnerState(NamedTuple):
    """agent: the learner; target: Polyak-averaged critic parameters; opt_actor / opt_critic:
    optimiser states; buffer: past agents stacked on a leading axis; step: updates done."""

    agent: Agent
    target: Any
    opt_actor: Any
    opt_critic: Any
    buffer: Agent
    step: jax.Array


def _optimisers(cfg: TrainConfig):
    clip = optax.clip_by_global_norm(cfg.max_grad_norm)
    return optax.chain(clip, optax.adam(cfg.lr)), optax.chain(clip, optax.adam(cfg.critic_lr))


def init(key: jax.Array, spec: GameSpec, cfg: TrainConfig) -> LearnerState:
    """A fresh learner (uniform policy); the buffer starts full of copies of it."""
    agent = agents_mod.network(key, architecture(spec, cfg))
    opt_a, opt_c = _optimisers(cfg)
    buffer = jax.tree.map(lambda x: jnp.broadcast_to(x, (cfg.buffer,) + x.shape), agent)
    return LearnerState(agent, agent.params["critic"], opt_a.init(agent.params["actor"]),
                        opt_c.init(agent.params["critic"]), buffer, jnp.int32(0))


def _values(critic_out: jax.Array, logits: jax.Array | None) -> jax.Array:
    """State values (T, B) from a critic's outputs: V directly, or sum_a pi(a) Q(a)."""
    if critic_out.shape[-1] == 1:
        return critic_out[..., 0]
    return jnp.sum(jax.nn.softmax(logits[..., 0, :]) * critic_out, -1)


def _per_view(fn, params, obs):
    """Apply ``fn(params, obs (T, 1, d))`` with one parameter set per episode (axis 1 of obs)."""
    return jax.vmap(lambda p, o: fn(p, o[:, None])[:, 0], in_axes=(0, 1), out_axes=1)(params, obs)


def _self_or(is_self: jax.Array, current: Any, per_env: Any) -> Any:
    """Per-episode parameters (B, ...): ``current`` where ``is_self`` (B,), else ``per_env``'s."""
    return jax.tree.map(lambda c, o: jnp.where(is_self.reshape(is_self.shape + (1,) * c.ndim), c, o),
                        current, per_env)


def _with_self_play_seats(per_env: Any, current: Any, n_self: int) -> Any:
    """Parameters of the opponent in each of :func:`_views`' episodes: the B seat-1 players
    ``per_env`` (B, ...), then ``current`` for the seat-0 player of the ``n_self`` self-play ones."""
    return jax.tree.map(lambda o, c: jnp.concatenate([o, jnp.broadcast_to(c, (n_self,) + c.shape)]), per_env, current)


def _views(ep: episodes.Episodes, n_self: int):
    """Seat-0 views of every episode and seat-1 views of the self-play ones (the first
    ``n_self``): my obs / actions / rewards and the opponent's, each (T, B', ...)."""
    cat = lambda x0, x1: jnp.concatenate([x0, x1[:, :n_self]], axis=1)  # noqa: E731
    me = {k: cat(v[:, :, 0], v[:, :, 1]) for k, v in (("obs", ep.obs), ("act", ep.actions), ("rew", ep.rewards))}
    opp = {k: cat(v[:, :, 1], v[:, :, 0]) for k, v in (("obs", ep.obs), ("act", ep.actions), ("rew", ep.rewards))}
    return me, opp


def actor_loss(actor: Any, arch, me: dict, opp: dict, adv: dict, cfg: TrainConfig,
               old_logp: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """The actor loss of ``cfg.method`` on views (T, B'); ``adv`` holds the (stopped)
    advantages and the opponent's critic quantities computed by :func:`update`."""
    acts = me["act"] if arch.action_dims > 1 else me["act"][..., None]
    lg = recurrent.actor_sequence(actor, me["obs"], arch)
    lp = recurrent.log_prob(lg, acts)
    ent = recurrent.entropy(lg).mean()
    aux = {"entropy": ent}
    if cfg.method == "loqa":
        pg = -jnp.mean(adv["delta_me"] * lp)
        opp_term = loqa.opponent_model_loss(lp, adv["delta_me"], opp["act"], adv["q_opp"], adv["G_opp"] - adv["V_opp"],
                                            adv["G_opp"], cfg.gamma, cfg.dice_discount, cfg.tau)
        aux["opponent_term"] = opp_term
        return pg + cfg.shaping * opp_term - cfg.entropy * ent, aux
    beta = 0.0 if cfg.method == "naive" else cfg.beta
    src = adv["delta_me"] if cfg.past_of == "td" else adv["A_me"]
    past = aa.past_advantage_mean(src) if cfg.past == "mean" else aa.past_advantage_sum(src, cfg.gamma)
    astar = aa.aligned_advantage(adv["A_me"], adv["A_opp"], cfg.gamma, beta, past=past)
    if cfg.method == "proximal_adalign":
        pg = aa.proximal_adalign_loss(lp, old_logp, astar, cfg.clip)
    else:
        pg = aa.adalign_loss(lp, astar)
    return pg - cfg.entropy * ent, aux


def value_targets(rewards: jax.Array, v_target: jax.Array, gamma: float, lam: float, mode: str) -> jax.Array:
    """Targets (T, B) of a state-value critic from rewards and the target critic's values
    (T, B), 0 after the last step: ``"lambda"`` the lambda-return; ``"interpolate"`` the
    official Advantage Alignment code's mean of the Monte Carlo return and the TD(0) target."""
    v_next = episodes.with_terminal(v_target)
    if mode == "interpolate":
        return 0.5 * (episodes.returns_to_go(rewards, gamma) + rewards + gamma * v_next[1:])
    if mode == "lambda":
        return episodes.gae(rewards, v_next, gamma, lam) + v_target
    raise ValueError(f"mode must be 'lambda' or 'interpolate', got {mode!r}")


def critic_loss(critic: Any, me: dict, targets: jax.Array) -> jax.Array:
    """Huber loss of the critic's value (V, or Q of the action taken) against ``targets``."""
    out = recurrent.critic_sequence(critic, me["obs"])
    pred = out[..., 0] if out.shape[-1] == 1 else jnp.take_along_axis(out, me["act"][..., None], -1)[..., 0]
    return jnp.mean(optax.huber_loss(pred, targets))


def update(state: LearnerState, key: jax.Array, spec: GameSpec, cfg: TrainConfig) -> tuple[LearnerState, dict]:
    """One training update (module docstring). Returns the new state and per-update metrics:
    self-play ``reward`` (2,) and, in the Coin Game, ``own`` / ``other`` pick-ups per episode
    and ``own_rate``; ``reward_vs_past``; actor ``entropy``."""
    agent, arch = state.agent, state.agent.arch
    B, n_self = cfg.n_envs, cfg.n_self
    k_idx, k_play = jax.random.split(key)
    n_filled = jnp.minimum(state.step // cfg.snapshot_every + 1, cfg.buffer)
    idx = jax.random.randint(k_idx, (B,), 0, n_filled)
    is_self = jnp.arange(B) < n_self
    opponents = _self_or(is_self, agent, jax.tree.map(lambda buf: buf[idx], state.buffer))
    ep = episodes.rollout(k_play, (agent, opponents), spec, B, per_env=(False, True))
    me, opp = _views(ep, n_self)
    opp_params = _with_self_play_seats(opponents.params, agent.params, n_self)

    # Critic quantities (no gradient): mine from my critics, the opponent's from its own.
    sg = jax.lax.stop_gradient
    lg_me = sg(recurrent.actor_sequence(agent.params["actor"], me["obs"], arch))
    c_me = sg(recurrent.critic_sequence(agent.params["critic"], me["obs"]))
    c_tgt = sg(recurrent.critic_sequence(state.target, me["obs"]))
    lg_opp = sg(_per_view(lambda p, o: recurrent.actor_sequence(p["actor"], o, arch), opp_params, opp["obs"]))
    c_opp = sg(_per_view(lambda p, o: recurrent.critic_sequence(p["critic"], o), opp_params, opp["obs"]))
    V_me, V_opp = _values(c_me, lg_me), _values(c_opp, lg_opp)
    r_me, r_opp = me["rew"], opp["rew"]
    V_me_a, V_opp_a = V_me, V_opp
    if cfg.advantage_critic == "target":  # the official code: advantages from the target critics
        # the opponent's target is mine in self-play; a past agent's target is not kept: its own critic
        tgt_opp = _with_self_play_seats(_self_or(is_self, state.target, opponents.params["critic"]),
                                        state.target, n_self)
        V_me_a = c_tgt[..., 0]
        V_opp_a = sg(_per_view(recurrent.critic_sequence, tgt_opp, opp["obs"]))[..., 0]
    adv = {"delta_me": episodes.td_errors(r_me, episodes.with_terminal(V_me_a), cfg.gamma),
           "A_me": episodes.gae(r_me, episodes.with_terminal(V_me_a), cfg.gamma, cfg.lam),
           "A_opp": episodes.gae(r_opp, episodes.with_terminal(V_opp_a), cfg.gamma, cfg.lam),
           "G_opp": episodes.returns_to_go(r_opp, cfg.gamma), "V_opp": V_opp, "q_opp": c_opp}
    if arch.critic_outputs == 1:
        targets = value_targets(r_me, c_tgt[..., 0], cfg.gamma, cfg.lam, cfg.critic_target)
    else:  # one-step SARSA target on the next action taken (the official LOQA 'mean' mode)
        q_next = jnp.take_along_axis(c_tgt, me["act"][..., None], -1)[..., 0]
        targets = r_me + cfg.gamma * jnp.concatenate([q_next[1:], jnp.zeros_like(q_next[:1])])

    opt_a, opt_c = _optimisers(cfg)
    actor, oa = agent.params["actor"], state.opt_actor
    acts = me["act"] if arch.action_dims > 1 else me["act"][..., None]
    old_logp = recurrent.log_prob(lg_me, acts)
    for _ in range(cfg.ppo_epochs if cfg.method == "proximal_adalign" else 1):
        (_, aux), g = jax.value_and_grad(actor_loss, has_aux=True)(actor, arch, me, opp, adv, cfg, old_logp)
        upd, oa = opt_a.update(g, oa, actor)
        actor = optax.apply_updates(actor, upd)
    critic, oc = agent.params["critic"], state.opt_critic
    g = jax.grad(critic_loss)(critic, me, sg(targets))
    upd, oc = opt_c.update(g, oc, critic)
    critic = optax.apply_updates(critic, upd)
    target = jax.tree.map(lambda t, c: cfg.target_ema * t + (1 - cfg.target_ema) * c, state.target, critic)
    new_agent = Agent({"actor": actor, "critic": critic}, "network", arch)
    slot = (state.step // cfg.snapshot_every) % cfg.buffer
    snap = (state.step % cfg.snapshot_every) == 0
    buffer = jax.tree.map(lambda b, x: jnp.where(snap, b.at[slot].set(x), b), state.buffer, agent)

    self_play = episodes.Episodes(ep.obs[:, :n_self], ep.actions[:, :n_self], ep.rewards[:, :n_self],
                                  jax.tree.map(lambda x: x[:, :n_self], ep.info))
    metrics = episodes.stats(self_play, spec)
    metrics["reward_vs_past"] = ep.rewards[:, n_self:, 0].mean() if n_self < B else jnp.nan
    metrics.update(aux)
    return LearnerState(new_agent, target, oa, oc, buffer, state.step + 1), metrics


def _update_keys(key: jax.Array, start: int, n: int) -> jax.Array:
    """Keys of updates ``start .. start + n - 1``: ``fold_in(key, u)``, so a run gives the
    same numbers whatever chunks it is split into."""
    return jax.vmap(lambda u: jax.random.fold_in(key, u))(jnp.arange(start, start + n))


@functools.partial(jax.jit, static_argnums=2)
def _train(keys, state, spec, cfg):
    def body(s, k):
        return update(s, k, spec, cfg)

    return jax.lax.scan(body, state, keys)


def train(key: jax.Array, spec: GameSpec, cfg: TrainConfig, n_updates: int,
          state: LearnerState | None = None) -> tuple[LearnerState, dict]:
    """``n_updates`` updates from a fresh learner (or ``state``). Returns the final state and
    the metrics of every update stacked on a leading axis."""
    if int(n_updates) < 1:
        raise ValueError(f"n_updates must be >= 1, got {n_updates}")
    k_init, k_run = jax.random.split(key)
    state = init(k_init, spec, cfg) if state is None else state
    start = int(state.step)
    return _train(_update_keys(k_run, start, int(n_updates)), state, spec, cfg)


@functools.partial(jax.jit, static_argnums=2)
def _train_many(keys, states, spec, cfg):
    return jax.vmap(lambda k, s: _train(k, s, spec, cfg))(keys, states)


def train_seeds(seeds: tuple[int, ...], spec: GameSpec, cfg: TrainConfig, n_updates: int,
                chunk: int | None = None, progress=None) -> tuple[LearnerState, dict]:
    """:func:`train` for every seed at once (vmapped; seed ``s`` uses ``PRNGKey(s)``, the same
    numbers as ``train(PRNGKey(s), ...)``), in chunks of ``chunk`` updates
    (``progress(n_done)`` is called after each). Returns the states and histories with a
    leading seed axis."""
    if int(n_updates) < 1:
        raise ValueError(f"n_updates must be >= 1, got {n_updates}")
    if not len(seeds):
        raise ValueError("seeds must not be empty")
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    k_init, k_run = jax.vmap(jax.random.split, out_axes=1)(keys)
    state = jax.vmap(lambda k: init(k, spec, cfg))(k_init)
    chunk = int(n_updates) if chunk is None else max(1, int(chunk))
    hist, done = [], 0
    while done < n_updates:
        n = min(chunk, int(n_updates) - done)
        ks = jax.vmap(lambda k: _update_keys(k, done, n))(k_run)
        state, h = _train_many(ks, state, spec, cfg)
        hist.append(h)
        done += n
        if progress is not None:
            progress(done)
    return state, jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *hist)


def summarise(history: dict, points: int = 150) -> dict:
    """Block means of a training history over the update axis (axis 1 of ``(seeds, U, ...)``)
    down to at most ``points`` blocks, for results files; adds ``update`` (the last update of
    each block, 1-based)."""
    out = {}
    for k, v in history.items():
        v = jnp.asarray(v)
        U = v.shape[1]
        b = max(1, -(-U // int(points)))
        n = U // b
        out[k] = v[:, :n * b].reshape((v.shape[0], n, b) + v.shape[2:]).mean(2)
    U = next(iter(history.values())).shape[1]
    b = max(1, -(-U // int(points)))
    out["update"] = jnp.arange(1, U // b + 1) * b
    return out

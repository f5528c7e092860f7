"""Naive (independent) learners: each agent ascends its own return, treating the other
agent as part of a stationary environment.

Exact (IPD)
-----------
``direction(theta_me, theta_other, cfg)``: the exact policy gradient
``grad_me exact_value(sigmoid(theta_me), sigmoid(theta_other))[0]`` (interface of
:mod:`lowrank_es.shaping.common`).

Sampled (all three games)
-------------------------
:func:`train_sampled` trains two independent actor-critic learners (REINFORCE with a learned
state-value baseline and Monte-Carlo discounted returns-to-go, optax Adam) on batches of
full episodes of any of the games, described by a :class:`GameSpec`. Policies are MLPs of
the agent's own observation (``lowrank_es.models.mlp``); with no hidden layer and the IPD's
one-hot observation the policy is exactly the tabular memory-1 policy. Per-update metrics:
mean reward per step of each agent and, for the Coin Game, pick-ups of own / other coins.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from lowrank_es.games import coin, ipd, negotiation
from lowrank_es.models.mlp import mlp_apply, mlp_init
from lowrank_es.shaping.common import ExactConfig, value


def direction(theta_me: jax.Array, theta_other: jax.Array, cfg: ExactConfig = ExactConfig()) -> jax.Array:
    """Exact naive policy gradient of my value w.r.t. my logits, (5,)."""
    return jax.grad(value)(theta_me, theta_other, cfg.gamma)


# ---------------------------------------------------------------------------
# Sampled actor-critic
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GameSpec:
    """How a learner talks to a game. ``action_shape`` is () for one discrete action with
    ``n_choices`` options, (k,) for k independent discrete choices (Negotiation items)."""

    name: str
    reset: Callable
    step: Callable
    params: Any
    obs_dim: int
    action_shape: tuple
    n_choices: int
    max_steps: int


def game_spec(name: str, **params) -> GameSpec:
    """``"ipd"``, ``"coin"`` or ``"negotiation"`` with optional game ``Params`` fields."""
    if name == "ipd":
        p = ipd.Params(**params)
        return GameSpec(name, ipd.reset, ipd.step, p, 5, (), 2, p.max_steps)
    if name == "coin":
        p = coin.Params(**params)
        return GameSpec(name, coin.reset, coin.step, p, coin.obs_size(p), (), coin.N_ACTIONS, p.max_steps)
    if name == "negotiation":
        p = negotiation.Params(**params)
        if p.continuous:
            raise ValueError("continuous must be False for the sampled learners (they use discrete proposals)")
        return GameSpec(name, negotiation.reset, negotiation.step, p, negotiation.OBS_SIZE,
                        (negotiation.N_ITEMS,), negotiation.N_CHOICES, p.max_steps)
    raise ValueError(f"name must be one of 'ipd', 'coin', 'negotiation', got {name!r}")


@dataclasses.dataclass(frozen=True)
class SampledConfig:
    """n_envs: episodes per update; hidden: MLP hidden widths (() = linear/tabular);
    lr: Adam step size; gamma: discount; value_coef / entropy_coef: loss weights."""

    n_envs: int = 64
    hidden: tuple = (32,)
    lr: float = 0.01
    gamma: float = 0.96
    value_coef: float = 0.5
    entropy_coef: float = 0.0

    def __post_init__(self):
        if int(self.n_envs) < 1:
            raise ValueError(f"n_envs must be >= 1, got {self.n_envs}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def init_agent(key: jax.Array, spec: GameSpec, cfg: SampledConfig) -> dict:
    """Actor and critic MLP parameters of one agent."""
    k1, k2 = jax.random.split(key)
    n_out = int(jnp.prod(jnp.array(spec.action_shape, int))) * spec.n_choices if spec.action_shape else spec.n_choices
    actor = mlp_init(k1, (spec.obs_dim, *cfg.hidden, n_out))
    actor[-1]["W"] = actor[-1]["W"] * 0.0  # start from the uniform policy
    critic = mlp_init(k2, (spec.obs_dim, *cfg.hidden, 1))
    return {"actor": actor, "critic": critic}


def logits(agent: dict, obs: jax.Array, spec: GameSpec) -> jax.Array:
    """obs (..., obs_dim) -> logits (..., *action_shape, n_choices)."""
    out = mlp_apply(agent["actor"], obs)
    return out.reshape(out.shape[:-1] + tuple(spec.action_shape) + (spec.n_choices,))


def _log_prob(lg: jax.Array, a: jax.Array, spec: GameSpec) -> jax.Array:
    lp = jnp.take_along_axis(jax.nn.log_softmax(lg), a[..., None], axis=-1)[..., 0]
    return lp.sum(axis=tuple(range(-len(spec.action_shape), 0))) if spec.action_shape else lp


def play_episodes(key: jax.Array, policies: tuple[Callable, Callable], spec: GameSpec, n_envs: int) -> dict:
    """Play ``n_envs`` episodes with seat i acting from ``policies[i](obs_i) -> logits``
    (``(*action_shape, n_choices)``). Returns obs (n, T, 2, d), actions (n, T, 2, ...),
    rewards (n, T, 2) and, for the Coin Game, picked_own / picked_other (n, T, 2)."""

    def episode(k):
        k0, kr = jax.random.split(k)
        obs, state = spec.reset(k0, spec.params)

        def body(carry, kt):
            obs, state = carry
            ka, ks = jax.random.split(kt)
            lg = jnp.stack([policies[0](obs[0]), policies[1](obs[1])])
            a = jax.random.categorical(ka, lg).astype(jnp.int32)
            obs2, state2, r, _, info = spec.step(ks, state, a, spec.params)
            out = {"obs": obs, "actions": a, "rewards": r}
            if spec.name == "coin":
                out["picked_own"], out["picked_other"] = info["picked_own"], info["picked_other"]
            return (obs2, state2), out

        _, traj = jax.lax.scan(body, (obs, state), jax.random.split(kr, spec.max_steps))
        return traj

    return jax.vmap(episode)(jax.random.split(key, n_envs))


def sample_episodes(key: jax.Array, agents: tuple[dict, dict], spec: GameSpec, n_envs: int) -> dict:
    """:func:`play_episodes` with two learner agents (MLP actors)."""
    policies = (lambda o: logits(agents[0], o, spec), lambda o: logits(agents[1], o, spec))
    return play_episodes(key, policies, spec, n_envs)


def returns_to_go(rewards: jax.Array, gamma: float) -> jax.Array:
    """``G_t = sum_{k>=t} gamma^(k-t) r_k`` along axis 1 of (n, T, ...)."""

    def body(g, r):
        g = r + gamma * g
        return g, g

    _, G = jax.lax.scan(body, jnp.zeros_like(rewards[:, 0]), jnp.swapaxes(rewards, 0, 1), reverse=True)
    return jnp.swapaxes(G, 0, 1)


def _loss(agents, traj, spec: GameSpec, cfg: SampledConfig):
    G = returns_to_go(traj["rewards"], cfg.gamma)  # (n, T, 2)
    total = 0.0
    for i in range(2):
        obs = traj["obs"][:, :, i]
        lg = logits(agents[i], obs, spec)
        lp = _log_prob(lg, traj["actions"][:, :, i], spec)
        v = mlp_apply(agents[i]["critic"], obs)[..., 0]
        adv = jax.lax.stop_gradient(G[..., i] - v)
        ent = -jnp.sum(jax.nn.softmax(lg) * jax.nn.log_softmax(lg), axis=-1)
        ent = ent.sum(axis=tuple(range(2, ent.ndim)))
        total += -jnp.mean(lp * adv) + cfg.value_coef * jnp.mean((G[..., i] - v) ** 2) - cfg.entropy_coef * jnp.mean(ent)
    return total


def episode_stats(traj: dict, spec: GameSpec) -> dict:
    """Per-batch summary of sampled episodes: ``reward`` (2,) mean reward per step and, for the
    Coin Game, ``own`` / ``other``: coins picked per episode of their own / the other's colour
    (both agents together)."""
    stats = {"reward": traj["rewards"].mean(axis=(0, 1))}
    if spec.name == "coin":
        stats["own"] = traj["picked_own"].sum(axis=(1, 2)).mean()
        stats["other"] = traj["picked_other"].sum(axis=(1, 2)).mean()
    return stats


def train_sampled(key: jax.Array, spec: GameSpec, cfg: SampledConfig = SampledConfig(), n_updates: int = 200,
                  agents: tuple[dict, dict] | None = None) -> tuple[tuple[dict, dict], dict]:
    """Train two independent actor-critic learners for ``n_updates`` batches.

    Returns the final agents and a history dict of per-update arrays: ``reward`` (U, 2)
    mean reward per step, and for the Coin Game ``own`` / ``other`` (U,) pick-ups per
    episode of own / other coins (both agents together).
    """
    if int(n_updates) < 1:
        raise ValueError(f"n_updates must be >= 1, got {n_updates}")
    k_init, k_train = jax.random.split(key)
    if agents is None:
        ka, kb = jax.random.split(k_init)
        agents = (init_agent(ka, spec, cfg), init_agent(kb, spec, cfg))
    opt = optax.adam(cfg.lr)
    opt_state = opt.init(agents)

    def update(carry, k):
        agents, opt_state = carry
        traj = sample_episodes(k, agents, spec, cfg.n_envs)
        grads = jax.grad(_loss)(agents, traj, spec, cfg)
        upd, opt_state = opt.update(grads, opt_state, agents)
        agents = optax.apply_updates(agents, upd)
        return (agents, opt_state), episode_stats(traj, spec)

    run = jax.jit(lambda a, s, ks: jax.lax.scan(update, (a, s), ks))
    (agents, _), hist = run(agents, opt_state, jax.random.split(k_train, int(n_updates)))
    return agents, hist


def ipd_policy(agent: dict, spec: GameSpec) -> jax.Array:
    """Cooperation probabilities (5,) of a sampled IPD learner (its policy on the 5 one-hot
    observations)."""
    return jax.nn.softmax(logits(agent, jnp.eye(5), spec))[:, ipd.C]

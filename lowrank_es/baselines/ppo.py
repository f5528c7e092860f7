"""PPO in pure JAX (PureJaxRL style): the gradient-based reference of notebooks/03_rl.

``make_train(config)`` returns a jittable ``train(key)``; the whole run is one ``lax.scan``
over updates, and ``jax.vmap(train)`` runs several seeds at once. Discrete actions use a
categorical policy, continuous actions a diagonal Gaussian (state-independent log-std,
actions clipped to the bounds). gymnax 1.x's two flags are handled separately: an episode
boundary is ``terminated or truncated`` (GAE does not look across it), but only
``terminated`` zeroes the bootstrap; on truncation the value of the true final observation
(``info['final_observation']``) is added to the reward as ``gamma * V(s_T)``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.tasks.control import EnvSpec, episode_limit, make_env

PyTree = Any


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """One PPO run. Defaults are PureJaxRL's CartPole settings."""

    env_id: str = "CartPole-v1"
    total_timesteps: int = 500_000
    num_envs: int = 4
    num_steps: int = 128
    update_epochs: int = 4
    num_minibatches: int = 4
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (64, 64)
    max_steps: int | None = None  # episode cap; None = the environment's limit

    def __post_init__(self) -> None:
        for name in ("total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError(f"num_minibatches must divide num_envs * num_steps = {self.num_envs * self.num_steps}, "
                             f"got {self.num_minibatches}")
        if self.total_timesteps < self.num_envs * self.num_steps:
            raise ValueError(f"total_timesteps must be >= num_envs * num_steps = {self.num_envs * self.num_steps}, "
                             f"got {self.total_timesteps}")
        for name in ("gamma", "gae_lambda"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if not self.clip_eps > 0:
            raise ValueError(f"clip_eps must be > 0, got {self.clip_eps}")

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // (self.num_envs * self.num_steps)


# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------


def _dense_init(key, n_in, n_out, scale):
    W = jax.nn.initializers.orthogonal(scale)(key, (n_in, n_out), jnp.float32)
    return {"W": W, "b": jnp.zeros(n_out, jnp.float32)}


def init_network(key: jax.Array, spec: EnvSpec, hidden=(64, 64)) -> PyTree:
    """Separate actor and critic MLPs (tanh, orthogonal init as in PureJaxRL)."""
    ka, kc = jax.random.split(key)
    sizes = (spec.obs_dim, *hidden)

    def tower(k, out, out_scale):
        ks = jax.random.split(k, len(sizes))
        layers = [_dense_init(ks[i], sizes[i], sizes[i + 1], np.sqrt(2)) for i in range(len(sizes) - 1)]
        layers.append(_dense_init(ks[-1], sizes[-1], out, out_scale))
        return layers

    net = {"actor": tower(ka, spec.action_dim, 0.01), "critic": tower(kc, 1, 1.0)}
    if not spec.discrete:
        net["log_std"] = jnp.zeros(spec.action_dim, jnp.float32)
    return net


def _mlp(layers, x):
    for i, l in enumerate(layers):
        x = x @ l["W"] + l["b"]
        if i < len(layers) - 1:
            x = jnp.tanh(x)
    return x


def apply_network(net: PyTree, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """obs (..., obs_dim) -> (actor output (..., action_dim), value (...,))."""
    return _mlp(net["actor"], obs), _mlp(net["critic"], obs)[..., 0]


def log_prob_entropy(spec: EnvSpec, net: PyTree, out: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Log-probability of ``action`` and the policy's entropy, per sample."""
    if spec.discrete:
        logp_all = jax.nn.log_softmax(out)
        logp = jnp.take_along_axis(logp_all, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
        ent = -(jnp.exp(logp_all) * logp_all).sum(-1)
        return logp, ent
    log_std = net["log_std"]
    z = (action - out) / jnp.exp(log_std)
    logp = (-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)
    ent = jnp.broadcast_to((log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e)).sum(), logp.shape)
    return logp, ent


def sample_action(spec: EnvSpec, net: PyTree, out: jax.Array, key: jax.Array) -> jax.Array:
    if spec.discrete:
        return jax.random.categorical(key, out)
    return out + jnp.exp(net["log_std"]) * jax.random.normal(key, out.shape)


# ---------------------------------------------------------------------------
# Loss terms (each checked against a hand example in tests/test_ppo.py)
# ---------------------------------------------------------------------------


def gae(rewards: jax.Array, values: jax.Array, dones: jax.Array, last_value: jax.Array, gamma: float,
        lam: float, bootstrap_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over a (T, ...) rollout.

    ``dones[t]``: the episode ended at step t (no GAE across it). ``bootstrap_mask[t]`` (default
    ``1 - dones[t]``) multiplies ``gamma V(s_{t+1})`` in the TD error. Returns (advantages, targets).
    """
    if bootstrap_mask is None:
        bootstrap_mask = 1.0 - dones

    def body(carry, xs):
        adv, next_value = carry
        r, v, d, b = xs
        delta = r + gamma * next_value * b - v
        adv = delta + gamma * lam * (1.0 - d) * adv
        return (adv, v), adv

    _, advs = jax.lax.scan(body, (jnp.zeros_like(last_value), last_value),
                           (rewards, values, dones.astype(values.dtype), bootstrap_mask.astype(values.dtype)),
                           reverse=True)
    return advs, advs + values


def clipped_surrogate(logp_new: jax.Array, logp_old: jax.Array, adv: jax.Array, clip_eps: float) -> jax.Array:
    """PPO's policy loss ``-mean(min(rho A, clip(rho, 1-eps, 1+eps) A))``."""
    ratio = jnp.exp(logp_new - logp_old)
    return -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * adv).mean()


def clipped_value_loss(v_new: jax.Array, v_old: jax.Array, targets: jax.Array, clip_eps: float) -> jax.Array:
    """``0.5 * mean(max((v - R)^2, (v_old + clip(v - v_old, -eps, eps) - R)^2))``."""
    v_clip = v_old + jnp.clip(v_new - v_old, -clip_eps, clip_eps)
    return 0.5 * jnp.maximum((v_new - targets) ** 2, (v_clip - targets) ** 2).mean()


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    logp: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array
    ep_return: jax.Array  # return of the episode that finished at this step (else 0)
    finished: jax.Array  # an episode finished at this step


def make_train(config: PPOConfig):
    """Return ``train(key) -> metrics`` (jittable; ``jax.vmap`` it over seeds).

    metrics: ``mean_return`` (U,) mean return of the episodes finished during each update's
    rollout (nan if none), ``env_steps`` (U,).
    """
    env, env_params, spec = make_env(config.env_id)
    env_params = env_params.replace(max_steps_in_episode=episode_limit(spec, config.max_steps))
    E, T = config.num_envs, config.num_steps
    batch = E * T
    mb = batch // config.num_minibatches
    U = config.num_updates

    def lr(count):
        frac = 1.0 - (count // (config.num_minibatches * config.update_epochs)) / U
        return config.learning_rate * frac

    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                     optax.adam(lr if config.anneal_lr else config.learning_rate, eps=1e-5))

    def flat(o):
        return o.reshape(o.shape[0], -1).astype(jnp.float32)

    def train(key):
        key, kn, kr = jax.random.split(key, 3)
        net = init_network(kn, spec, config.hidden)
        opt_state = tx.init(net)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(kr, E), env_params)
        obs = flat(obs)
        ep_ret = jnp.zeros(E)

        def env_step(carry, _):
            net, obs, env_state, ep_ret, key = carry
            key, ka, ks = jax.random.split(key, 3)
            out, value = apply_network(net, obs)
            action = sample_action(spec, net, out, ka)
            logp, _ = log_prob_entropy(spec, net, out, action)
            env_action = action if spec.discrete else jnp.clip(action, -spec.action_high, spec.action_high)
            obs2, env_state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(ks, E), env_state, env_action, env_params)
            obs2 = flat(obs2)
            done = terminated | truncated
            # Truncation (not termination): bootstrap from the true final observation.
            _, v_final = apply_network(net, flat(info["final_observation"]))
            trunc_only = truncated & ~terminated
            reward_b = reward + config.gamma * jax.lax.stop_gradient(v_final) * trunc_only
            ep_ret = ep_ret + reward
            tr = Transition(obs, action, logp, value, reward_b, done, ep_ret * done, done)
            ep_ret = ep_ret * (1.0 - done)
            return (net, obs2, env_state, ep_ret, key), tr

        def update(carry, u):
            net, opt_state, obs, env_state, ep_ret, key = carry
            (net, obs, env_state, ep_ret, key), traj = jax.lax.scan(
                env_step, (net, obs, env_state, ep_ret, key), None, T)
            _, last_val = apply_network(net, obs)
            # After an episode ends the next obs belongs to a new episode: no bootstrap across it.
            adv, targets = gae(traj.reward, traj.value, traj.done, last_val, config.gamma, config.gae_lambda)

            def epoch(carry, _):
                net, opt_state, key = carry
                key, kp = jax.random.split(key)
                perm = jax.random.permutation(kp, batch)
                data = jax.tree_util.tree_map(lambda x: x.reshape((batch,) + x.shape[2:])[perm],
                                              (traj.obs, traj.action, traj.logp, traj.value, adv, targets))
                data = jax.tree_util.tree_map(lambda x: x.reshape((config.num_minibatches, mb) + x.shape[1:]), data)

                def minibatch(carry, d):
                    net, opt_state = carry
                    o, a, lp_old, v_old, A, R = d

                    def loss_fn(net):
                        out, v = apply_network(net, o)
                        lp, ent = log_prob_entropy(spec, net, out, a)
                        An = (A - A.mean()) / (A.std() + 1e-8)
                        pl = clipped_surrogate(lp, lp_old, An, config.clip_eps)
                        vl = clipped_value_loss(v, v_old, R, config.clip_eps)
                        return pl + config.vf_coef * vl - config.ent_coef * ent.mean(), (pl, vl, ent.mean())

                    grads, aux = jax.grad(loss_fn, has_aux=True)(net)
                    updates, opt_state = tx.update(grads, opt_state, net)
                    return (optax.apply_updates(net, updates), opt_state), aux

                (net, opt_state), aux = jax.lax.scan(minibatch, (net, opt_state), data)
                return (net, opt_state, key), aux

            (net, opt_state, key), aux = jax.lax.scan(epoch, (net, opt_state, key), None, config.update_epochs)
            n_fin = traj.finished.sum()
            mean_ret = jnp.where(n_fin > 0, traj.ep_return.sum() / jnp.maximum(n_fin, 1), jnp.nan)
            m = {"mean_return": mean_ret, "env_steps": (u + 1) * batch, "policy_loss": aux[0].mean(),
                 "value_loss": aux[1].mean(), "entropy": aux[2].mean()}
            return (net, opt_state, obs, env_state, ep_ret, key), m

        carry = (net, opt_state, obs, env_state, ep_ret, key)
        carry, metrics = jax.lax.scan(update, carry, jnp.arange(U))
        return {"net": carry[0], "metrics": metrics}

    return train


def carry_forward(x: np.ndarray) -> np.ndarray:
    """Replace each NaN by the last finite value before it along the last axis (NaN until the first)."""
    x = np.array(x, dtype=float)
    for t in range(1, x.shape[-1]):
        x[..., t] = np.where(np.isfinite(x[..., t]), x[..., t], x[..., t - 1])
    return x


def run(config: PPOConfig, seeds: Sequence[int]) -> dict[str, Any]:
    """Train ``seeds`` (vmapped, one compiled program) and summarise the runs.

    Returns ``mean_return`` (S, U): the mean return of the episodes finished during each
    update's rollout, carried forward over updates where none finished; ``env_steps`` (U,);
    ``final_return`` (S,), the last of those; ``seconds`` (U,), the measured run time (compile
    excluded) spread evenly over updates, since the whole run is one compiled scan; and
    ``compile_seconds``.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    train = jax.jit(jax.vmap(make_train(config)))
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    t0 = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - t0
    m = jax.tree_util.tree_map(np.asarray, out["metrics"])
    ret = carry_forward(m["mean_return"])
    U = config.num_updates
    return {"mean_return": ret, "env_steps": m["env_steps"][0], "final_return": ret[:, -1],
            "seconds": run_s * np.arange(1, U + 1) / U, "compile_seconds": compile_s, "seeds": np.asarray(seeds)}

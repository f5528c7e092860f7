"""Recurrent (GRU) actor and critic networks of the sampled learners.

The official LOQA and Advantage Alignment code act with GRU policies: the agent sees its own
observation each step and carries a hidden state through the episode, so it can condition on
the history (who took whose coin) and not only on the current board. Here:

* **actor**: ``obs -> Dense(hidden) + ReLU -> GRU(hidden) -> Dense(action_dims * n_choices)``
  logits of ``action_dims`` independent categorical choices (one in the Coin Game and the
  IPD, one per item in the Negotiation Game). The output layer starts at zero, so a fresh
  agent plays the uniform policy.
* **critic**: the same shape on ``[obs, t / T]`` with ``critic_outputs`` values per step:
  1 (a state value ``V``) or ``n_choices`` (one ``Q`` per own action, LOQA's critic).

Shapes: a single step takes ``obs (B, obs_dim)`` and a carry ``(B, hidden)``; a sequence takes
``obs (T, B, obs_dim)`` (time-major, the layout of :mod:`lowrank_es.shaping.episodes`) and
starts from a zero carry. Logits have shape ``(..., action_dims, n_choices)``; actions
``(..., action_dims)`` int. :func:`gru_cell` is the standard GRU (the PyTorch / flax
equations, reset gate applied to the recurrent candidate term).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

Params = Any


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Static description of an agent's networks (hashable).

    obs_dim: observation size; n_choices: options per categorical choice; action_dims: number
    of independent choices per step; hidden: width of the dense layer and of the GRU;
    critic_outputs: 1 for a state value, ``n_choices`` for one Q-value per own action."""

    obs_dim: int
    n_choices: int
    action_dims: int = 1
    hidden: int = 32
    critic_outputs: int = 1

    def __post_init__(self):
        for name in ("obs_dim", "n_choices", "action_dims", "hidden", "critic_outputs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def dense_init(key: jax.Array, n_in: int, n_out: int, scale: float = 1.0) -> dict:
    """LeCun-normal weights ``W (n_out, n_in)`` times ``scale``, zero bias."""
    W = jax.random.normal(key, (n_out, n_in)) * (scale / jnp.sqrt(n_in))
    return {"W": W, "b": jnp.zeros((n_out,))}


def dense(p: dict, x: jax.Array) -> jax.Array:
    """(..., n_in) -> (..., n_out)."""
    return x @ p["W"].T + p["b"]


def gru_init(key: jax.Array, n_in: int, n_hidden: int) -> dict:
    """GRU weights: ``Wi (3H, n_in)``, ``Wh (3H, H)``, biases ``bi, bh (3H,)``; gate order
    (reset, update, candidate)."""
    k1, k2 = jax.random.split(key)
    return {"Wi": jax.random.normal(k1, (3 * n_hidden, n_in)) / jnp.sqrt(n_in),
            "Wh": jax.random.normal(k2, (3 * n_hidden, n_hidden)) / jnp.sqrt(n_hidden),
            "bi": jnp.zeros((3 * n_hidden,)), "bh": jnp.zeros((3 * n_hidden,))}


def gru_cell(p: dict, h: jax.Array, x: jax.Array) -> jax.Array:
    """One GRU step. h: (..., H), x: (..., n_in) -> new h (..., H)::

        r = sigmoid(Wi_r x + bi_r + Wh_r h + bh_r)
        z = sigmoid(Wi_z x + bi_z + Wh_z h + bh_z)
        n = tanh(Wi_n x + bi_n + r * (Wh_n h + bh_n))
        h' = (1 - z) * n + z * h
    """
    gi = x @ p["Wi"].T + p["bi"]
    gh = h @ p["Wh"].T + p["bh"]
    ir, iz, in_ = jnp.split(gi, 3, axis=-1)
    hr, hz, hn = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(ir + hr)
    z = jax.nn.sigmoid(iz + hz)
    n = jnp.tanh(in_ + r * hn)
    return (1.0 - z) * n + z * h


def _net_init(key: jax.Array, n_in: int, hidden: int, n_out: int, out_scale: float) -> dict:
    k1, k2, k3 = jax.random.split(key, 3)
    return {"embed": dense_init(k1, n_in, hidden, jnp.sqrt(2.0)), "gru": gru_init(k2, hidden, hidden),
            "head": dense_init(k3, hidden, n_out, out_scale)}


def init(key: jax.Array, arch: Architecture) -> dict:
    """Parameters ``{"actor": ..., "critic": ...}``; the actor's output layer is zero (uniform
    policy), the critic's small."""
    ka, kc = jax.random.split(key)
    return {"actor": _net_init(ka, arch.obs_dim, arch.hidden, arch.action_dims * arch.n_choices, 0.0),
            "critic": _net_init(kc, arch.obs_dim + 1, arch.hidden, arch.critic_outputs, 0.1)}


def _step(p: dict, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = gru_cell(p["gru"], h, jax.nn.relu(dense(p["embed"], x)))
    return dense(p["head"], h), h


def _sequence(p: dict, x: jax.Array) -> jax.Array:
    h0 = jnp.zeros(x.shape[1:-1] + (p["gru"]["Wh"].shape[1],), x.dtype)

    def body(h, xt):
        out, h = _step(p, h, xt)
        return h, out

    _, out = jax.lax.scan(body, h0, x)
    return out


def initial_carry(arch: Architecture, batch: int) -> jax.Array:
    """Zero actor carry ``(batch, hidden)``."""
    return jnp.zeros((int(batch), arch.hidden))


def actor_step(actor: dict, obs: jax.Array, carry: jax.Array, arch: Architecture) -> tuple[jax.Array, jax.Array]:
    """obs (B, obs_dim), carry (B, hidden) -> logits (B, action_dims, n_choices), new carry."""
    out, carry = _step(actor, carry, obs)
    return out.reshape(out.shape[:-1] + (arch.action_dims, arch.n_choices)), carry


def actor_sequence(actor: dict, obs: jax.Array, arch: Architecture) -> jax.Array:
    """obs (T, B, obs_dim) -> logits (T, B, action_dims, n_choices), from a zero carry."""
    out = _sequence(actor, obs)
    return out.reshape(out.shape[:-1] + (arch.action_dims, arch.n_choices))


def critic_sequence(critic: dict, obs: jax.Array) -> jax.Array:
    """obs (T, B, obs_dim) -> critic outputs (T, B, critic_outputs); step t sees t / T."""
    T = obs.shape[0]
    t = jnp.broadcast_to((jnp.arange(T) / T).reshape((T,) + (1,) * (obs.ndim - 1)), obs.shape[:-1] + (1,))
    return _sequence(critic, jnp.concatenate([obs, t.astype(obs.dtype)], axis=-1))


def log_prob(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """Log-probability of actions (..., action_dims) under logits (..., action_dims, n) -> (...)."""
    lp = jnp.take_along_axis(jax.nn.log_softmax(logits), actions[..., None], axis=-1)[..., 0]
    return lp.sum(-1)


def entropy(logits: jax.Array) -> jax.Array:
    """Entropy of the product of categoricals, (..., action_dims, n) -> (...)."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(logp) * logp, axis=(-2, -1))


def sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    """Actions (..., action_dims) int32 drawn from logits (..., action_dims, n)."""
    return jax.random.categorical(key, logits).astype(jnp.int32)

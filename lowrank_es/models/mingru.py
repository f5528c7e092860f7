"""A minGRU-style recurrent character language model written against the EGGROLL layers.

The recurrence is the minimal GRU of Feng et al. (2024, "Were RNNs all we needed?"): the gate and
the candidate depend on the layer input only, so one layer step is

    u  = rms_norm(x) * (1 + g)                      # pre-norm with a learned gain g
    z  = sigmoid(u @ Wz.T + bz)                     # update gate, (..., hidden)
    c  = u @ Wh.T + bh                              # candidate state
    h' = (1 - z) * h + z * c

and a layer's output is the residual ``x + h'``. The model is

    x_0 = embed[token];  x_{l+1} = x_l + h'_l;  logits = rms_norm(x_L) * (1 + g_out) @ W_out.T + b_out

Every parameter is used through :func:`lowrank_es.es.eggroll.linear`, :func:`embedding` or
:func:`add`, so the same function gives plain inference (``noise=None``), the factored EGGROLL
population forward (``noise`` = one member's noise from ``EGGROLL.member_noise``) and, through
:func:`lowrank_es.es.eggroll.materialise`, the naive materialised-weights reference.

Parameters (a pytree of arrays; ``L = n_layers``, ``d = hidden``, ``V = vocab_size``)::

    {"embed": (V, d),
     "layers": [{"g": (d,), "Wz": (d, d), "bz": (d,), "Wh": (d, d), "bh": (d,)}] * L,
     "head": {"g": (d,), "W": (V, d), "b": (V,)}}

API (stable):

- :func:`init_params` ``(key, vocab_size, hidden, n_layers=1, dtype=float32) -> params``
- :func:`cell` ``(layer_params, h, x, noise=None) -> h_new``: one layer, one step; x, h: (..., d).
- :func:`apply` ``(params, tokens, noise=None) -> logits``: tokens (T,) int -> (T, V), via
  ``lax.scan`` from a zero state.
- :func:`step` ``(params, h, token, noise=None) -> (h, logits)``: one token for sampling;
  h: (L, d) (see :func:`init_state`), token: int scalar, logits: (V,).
- :func:`loss` ``(params, tokens, noise=None) -> mean next-token cross-entropy in nats``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lowrank_es.es.eggroll import add, embedding, linear

PyTree = Any

_EPS = 1e-5


def init_params(key: jax.Array, vocab_size: int, hidden: int, n_layers: int = 1, dtype=jnp.float32) -> PyTree:
    """Random parameters (see the module docstring for the tree layout).

    Weights are ``N(0, 1/fan_in)``, the embedding ``N(0, 1)``, biases and gains zero; the gate
    bias starts at -1 so a fresh model keeps most of its state.
    """
    for name, v, lo in (("vocab_size", vocab_size, 2), ("hidden", hidden, 1), ("n_layers", n_layers, 1)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    d = hidden
    keys = jax.random.split(key, 2 + 2 * n_layers)
    scale = jnp.asarray(1.0 / jnp.sqrt(d), dtype)
    layers = []
    for i in range(n_layers):
        layers.append(
            {
                "g": jnp.zeros((d,), dtype),
                "Wz": jax.random.normal(keys[2 + 2 * i], (d, d), dtype) * scale,
                "bz": jnp.full((d,), -1.0, dtype),
                "Wh": jax.random.normal(keys[3 + 2 * i], (d, d), dtype) * scale,
                "bh": jnp.zeros((d,), dtype),
            }
        )
    return {
        "embed": jax.random.normal(keys[0], (vocab_size, d), dtype),
        "layers": layers,
        "head": {
            "g": jnp.zeros((d,), dtype),
            "W": jax.random.normal(keys[1], (vocab_size, d), dtype) * scale,
            "b": jnp.zeros((vocab_size,), dtype),
        },
    }


def _none_like(tree: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda _: None, tree)


def _noise_or_none(params: PyTree, noise: PyTree | None) -> PyTree:
    return _none_like(params) if noise is None else noise


def rms_norm(x: jax.Array) -> jax.Array:
    """``x / sqrt(mean(x^2) + eps)`` over the last axis."""
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + _EPS)


def cell(layer_params: dict[str, jax.Array], h: jax.Array, x: jax.Array, noise: PyTree | None = None) -> jax.Array:
    """One minGRU layer, one step: new hidden state. x, h: (..., d) -> (..., d)."""
    nz = _noise_or_none(layer_params, noise)
    u = rms_norm(x) * (1 + add(layer_params["g"], nz["g"]))
    z = jax.nn.sigmoid(linear(u, layer_params["Wz"], nz["Wz"]) + add(layer_params["bz"], nz["bz"]))
    c = linear(u, layer_params["Wh"], nz["Wh"]) + add(layer_params["bh"], nz["bh"])
    return (1 - z) * h + z * c


def init_state(params: PyTree, batch_shape: tuple[int, ...] = ()) -> jax.Array:
    """Zero hidden state of every layer: (L, *batch_shape, d)."""
    L = len(params["layers"])
    d = params["embed"].shape[1]
    return jnp.zeros((L, *batch_shape, d), params["embed"].dtype)


def _readout(params: PyTree, x: jax.Array, nz: PyTree) -> jax.Array:
    u = rms_norm(x) * (1 + add(params["head"]["g"], nz["head"]["g"]))
    return linear(u, params["head"]["W"], nz["head"]["W"]) + add(params["head"]["b"], nz["head"]["b"])


def step(params: PyTree, h: jax.Array, token: jax.Array, noise: PyTree | None = None) -> tuple[jax.Array, jax.Array]:
    """Consume one token. h: (L, ..., d), token: (...) int -> (h_new (L, ..., d), logits (..., V))."""
    nz = _noise_or_none(params, noise)
    x = embedding(token, params["embed"], nz["embed"])
    hs = []
    for i, lp in enumerate(params["layers"]):
        hn = cell(lp, h[i], x, nz["layers"][i])
        hs.append(hn)
        x = x + hn
    return jnp.stack(hs), _readout(params, x, nz)


def apply(params: PyTree, tokens: jax.Array, noise: PyTree | None = None) -> jax.Array:
    """Logits for every position from a zero state. tokens: (T,) int -> (T, V)."""
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be a 1-D sequence (T,), got shape {tokens.shape}")

    def body(h, tok):
        h, logits = step(params, h, tok, noise)
        return h, logits

    _, logits = jax.lax.scan(body, init_state(params), tokens)
    return logits


def loss(params: PyTree, tokens: jax.Array, noise: PyTree | None = None) -> jax.Array:
    """Mean next-token cross-entropy (nats) of ``tokens[1:]`` given ``tokens[:-1]``. tokens: (T,)."""
    logits = apply(params, tokens[:-1], noise)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, tokens[1:, None], axis=-1))


def num_params(params: PyTree) -> int:
    """Total number of scalars in ``params``."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))

"""Small models written against the EGGROLL layers, so one definition serves plain
inference (``noise=None``), the factored population forward and the materialised reference."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp

from lowrank_es.es.eggroll import add, linear

PyTree = Any


def mlp_init(key: jax.Array, sizes: Sequence[int], dtype=jnp.float32) -> list[dict[str, jax.Array]]:
    """He-initialised MLP. sizes = (in, hidden..., out). Weights are (out, in)."""
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list at least two positive layer widths, got {sizes}")
    params = []
    keys = jax.random.split(key, len(sizes) - 1)
    for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:]):
        W = jax.random.normal(k, (n_out, n_in), dtype) * jnp.sqrt(2.0 / n_in).astype(dtype)
        params.append({"W": W, "b": jnp.zeros((n_out,), dtype)})
    return params


def mlp_apply(params: list[dict[str, jax.Array]], x: jax.Array, noise: PyTree | None = None,
              activation=jnp.tanh) -> jax.Array:
    """x: (..., in) -> (..., out). ``noise`` is one member's noise (or None for the mean)."""
    for i, layer in enumerate(params):
        nz = noise[i] if noise is not None else {"W": None, "b": None}
        x = linear(x, layer["W"], nz["W"]) + add(layer["b"], nz["b"])
        if i < len(params) - 1:
            x = activation(x)
    return x

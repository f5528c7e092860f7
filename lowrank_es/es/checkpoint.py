"""Checkpoints of an ES state (any pytree of arrays and PRNG keys) as one .npz file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def save_checkpoint(path: str | Path, state: Any) -> None:
    """Write the whole ES state to ``path`` (.npz). Resuming from it reproduces the run."""
    leaves, _ = jax.tree_util.tree_flatten(state)
    arrays = {}
    for i, leaf in enumerate(leaves):
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        arrays[f"leaf_{i:05d}"] = np.asarray(leaf)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load_checkpoint(path: str | Path, like: Any) -> Any:
    """Read a state written by :func:`save_checkpoint`; ``like`` gives the tree structure."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    with np.load(Path(path)) as data:
        stored = [data[f"leaf_{i:05d}"] for i in range(len(data.files))]
    if len(stored) != len(leaves):
        raise ValueError(f"checkpoint has {len(stored)} arrays, the state template has {len(leaves)}")
    out = []
    for ref, arr in zip(leaves, stored):
        ref = jnp.asarray(ref)
        if jnp.issubdtype(ref.dtype, jax.dtypes.prng_key):
            out.append(jax.random.wrap_key_data(jnp.asarray(arr)))
            continue
        if arr.shape != ref.shape:
            raise ValueError(f"checkpoint array of shape {arr.shape} does not match template shape {ref.shape}")
        out.append(jnp.asarray(arr, dtype=ref.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)

"""Fitness shaping for evolution strategies: what weight each member's fitness gets in the update."""

from __future__ import annotations

import jax
import jax.numpy as jnp

FITNESS_SHAPINGS = ("centered_rank", "zscore", "raw")


def centered_ranks(f: jax.Array) -> jax.Array:
    """Ranks scaled to [-0.5, 0.5]; tied values share their average rank. f: (N,) -> (N,).

    Ties matter: a capped return (CartPole at 500, a MinAtar score of 0) ties many members,
    and ranks broken by position would turn a fully tied generation into a random step.
    Here such a generation gets all-zero weights, hence no update.
    """
    n = f.shape[0]
    s = jnp.sort(f)
    # (members below) + (members equal - 1) / 2 = the average of the tied positions.
    ranks = (jnp.searchsorted(s, f, side="left") + jnp.searchsorted(s, f, side="right") - 1) / 2
    return ranks.astype(f.dtype) / (n - 1) - 0.5


def shape_fitness(f: jax.Array, method: str) -> jax.Array:
    """Fitness shaping: ``centered_rank``, ``zscore`` or ``raw``. f: (N,) -> (N,)."""
    if method == "centered_rank":
        return centered_ranks(f)
    if method == "zscore":
        return (f - f.mean()) / (f.std() + 1e-8)
    if method == "raw":
        return f
    raise ValueError(f"fitness_shaping must be one of {FITNESS_SHAPINGS}, got {method!r}")

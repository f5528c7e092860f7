"""The models and the programs the throughput benchmark compiles and times.

Three contenders run the *same* model on the *same* inputs, ``inputs[i]`` being member ``i``'s
``T`` tokens:

1. ``inference``: plain batched inference of the mean parameters (``noise=None``), the ceiling;
2. ``eggroll``: the EGGROLL population forward at rank ``r`` (``EGGROLL.map_members``): each
   antithetic pair's low-rank noise is regenerated from its key once per generation, shared by the
   pair's two members (opposite signs), reused for their ``T`` tokens, and consumed by
   :func:`lowrank_es.es.eggroll.linear` without being materialised;
3. ``naive``: full-rank ES, ``W + sigma * E_i`` materialised per member
   (:func:`lowrank_es.es.eggroll.materialise` with ``rank=None`` noise, also drawn once per pair) and
   batch-multiplied.

Besides the forward pass, one whole ES generation (noise + forward + fitness shaping + update,
``EGGROLL.step``) is a program of 2 and 3, and four profiling programs split a forward into its
noise and its arithmetic.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.es.eggroll import EGGROLL, ESState, materialise
from lowrank_es.models import mingru
from lowrank_es.models.mlp import mlp_apply, mlp_init

PyTree = Any
MODELS = ("mlp", "mingru")


@dataclasses.dataclass(frozen=True)
class Model:
    """A model written against the EGGROLL layers.

    init(key, hidden, dtype) -> params; inputs(key, population, tokens, hidden, dtype) -> (N, T, ...);
    apply(params, inputs_i, noise) -> (T, out) for one member; fitness(params, inputs_i, noise) -> ().
    """

    name: str
    init: Callable[..., PyTree]
    inputs: Callable[..., jax.Array]
    apply: Callable[[PyTree, jax.Array, PyTree | None], jax.Array]
    fitness: Callable[[PyTree, jax.Array, PyTree | None], jax.Array]


def mlp_model(depth: int = 2) -> Model:
    """``depth`` square linear layers of width ``hidden`` with tanh between them; one token is one
    input row. Fitness: ``-mean(y^2)`` over the member's tokens."""
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")

    def init(key, hidden, dtype=jnp.float32):
        return mlp_init(key, (hidden,) * (depth + 1), dtype)

    def inputs(key, population, tokens, hidden, dtype=jnp.float32):
        return jax.random.normal(key, (population, tokens, hidden), dtype)

    def fitness(params, x, noise):
        return -jnp.mean(mlp_apply(params, x, noise) ** 2)

    return Model("mlp", init, inputs, mlp_apply, fitness)


def mingru_model(vocab_size: int = 256, n_layers: int = 1) -> Model:
    """The minGRU character LM of :mod:`lowrank_es.models.mingru` (scan over the member's ``T`` tokens).
    Fitness: minus the cross-entropy of predicting the next token (cyclically) at all ``T`` steps."""

    def init(key, hidden, dtype=jnp.float32):
        return mingru.init_params(key, vocab_size, hidden, n_layers, dtype)

    def inputs(key, population, tokens, hidden, dtype=jnp.float32):
        return jax.random.randint(key, (population, tokens), 0, vocab_size)

    def fitness(params, tokens, noise):
        logp = jax.nn.log_softmax(mingru.apply(params, tokens, noise), axis=-1)
        return jnp.mean(jnp.take_along_axis(logp, jnp.roll(tokens, -1)[:, None], axis=-1))

    return Model("mingru", init, inputs, mingru.apply, fitness)


def get_model(name: str) -> Model:
    """The benchmark model called ``name`` (one of :data:`MODELS`)."""
    if name == "mlp":
        return mlp_model()
    if name == "mingru":
        return mingru_model()
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")


# -- the contenders -----------------------------------------------------------


def inference_forward(model: Model) -> Callable[[PyTree, jax.Array], jax.Array]:
    """Plain batched inference of the mean: (params, inputs (N, T, ...)) -> (N, T, out)."""
    return lambda params, inputs: jax.vmap(lambda x: model.apply(params, x, None))(inputs)


def eggroll_forward(model: Model, es: EGGROLL) -> Callable[[ESState, jax.Array], jax.Array]:
    """Population forward with each pair's noise regenerated once and consumed by the
    factored layers: (state, inputs (N, T, ...)) -> (N, T, out)."""

    def fwd(state: ESState, inputs: jax.Array) -> jax.Array:
        return es.map_members(state, lambda p, n, i, x: model.apply(p, x, n), inputs)

    return fwd


def naive_forward(model: Model, es: EGGROLL) -> Callable[[ESState, jax.Array], jax.Array]:
    """Naive ES: every member's ``W + sigma E_i`` materialised, then batch-multiplied.
    (state, inputs (N, T, ...)) -> (N, T, out). With ``es.rank=None`` this is full-rank ES."""

    def fwd(state: ESState, inputs: jax.Array) -> jax.Array:
        return es.map_members(state, lambda p, n, i, x: model.apply(materialise(p, n), x, None), inputs)

    return fwd


def eggroll_generation(model: Model, es: EGGROLL) -> Callable[[ESState, jax.Array], tuple[ESState, dict]]:
    """One ES generation through the factored layers (``EGGROLL.step``)."""
    return lambda state, inputs: es.step(state, lambda p, n, i: model.fitness(p, inputs[i], n))


def naive_generation(model: Model, es: EGGROLL) -> Callable[[ESState, jax.Array], tuple[ESState, dict]]:
    """One ES generation whose fitness evaluates materialised member weights."""
    return lambda state, inputs: es.step(state, lambda p, n, i: model.fitness(materialise(p, n), inputs[i], None))


# -- profiling programs: a forward split into its noise and its arithmetic ------


def population_noise(es: EGGROLL) -> Callable[[ESState], PyTree]:
    """Every draw's noise, stacked (num_pairs, ...): the noise generation alone."""
    return lambda state: jax.vmap(es.pair_noise, (None, 0))(state, jnp.arange(es.num_pairs))


def keyed_normals(es: EGGROLL) -> Callable[[ESState], PyTree]:
    """The population's normals drawn like ``noise="prng"`` (``jax.random.normal`` of the folded
    (key, generation, pair, leaf) keys, ``r (m + n)`` or all of a leaf's numbers per draw) with the
    state key's own implementation: times the draws of rbg / unsafe_rbg keys, which EGGROLL
    refuses (under vmap their draws depend on the batch, not only on the key)."""

    def one(state: ESState, pair: jax.Array) -> list[jax.Array]:
        k = jax.random.fold_in(jax.random.fold_in(state.key, state.generation), pair)
        out = []
        for j, leaf in enumerate(jax.tree_util.tree_leaves(state.params)):
            r = es.leaf_rank(leaf.shape)
            size = leaf.size if r is None else r * sum(leaf.shape)
            out.append(jax.random.normal(jax.random.fold_in(k, j), (size,), leaf.dtype))
        return out

    return lambda state: jax.vmap(one, (None, 0))(state, jnp.arange(es.num_pairs))


def forward_given_noise(model: Model, es: EGGROLL) -> Callable[[PyTree, PyTree, jax.Array], jax.Array]:
    """The factored forward with precomputed noise: the arithmetic alone."""
    return lambda params, noise, inputs: es.map_members_given_noise(
        params, noise, lambda p, n, i, x: model.apply(p, x, n), inputs)


def materialised_weights(es: EGGROLL) -> Callable[[ESState], PyTree]:
    """All members' materialised weights: naive ES's noise + materialisation alone."""
    return lambda state: es.map_members(state, lambda p, n, i: materialise(p, n))


def forward_given_weights(model: Model) -> Callable[[PyTree, jax.Array], jax.Array]:
    """Batched forward of given per-member weights: naive ES's batched GEMMs alone."""
    return lambda weights, inputs: jax.vmap(lambda w, x: model.apply(w, x, None))(weights, inputs)


# -- analytic sizes --------------------------------------------------------------


def noise_floats_per_member(params: PyTree, rank: int | None) -> int:
    """Floats of one member's noise: ``r (m + n)`` per matrix (EGGROLL) or ``m n`` (``rank=None``),
    plus the size of every vector leaf."""
    total = 0
    for leaf in jax.tree_util.tree_leaves(params):
        shape = jnp.shape(leaf)
        if rank is not None and len(shape) == 2:
            total += min(rank, *shape) * (shape[0] + shape[1])
        else:
            total += int(np.prod(shape))
    return int(total)


def param_floats(params: PyTree) -> int:
    """Number of floats in ``params``."""
    return int(sum(int(np.prod(jnp.shape(x))) for x in jax.tree_util.tree_leaves(params)))

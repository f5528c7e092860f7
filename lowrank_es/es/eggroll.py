"""EGGROLL: evolution strategies with low-rank matrix perturbations (arXiv:2511.16652).

Member ``i`` of the population evaluates ``W + sigma * s_i * E_i`` for every matrix ``W``
(shape ``(m, n)``, used as ``y = x @ W.T``), with ``E_i = A_i B_i^T / sqrt(r)``,
``A_i ~ N(0, 1)^{m x r}``, ``B_i ~ N(0, 1)^{n x r}`` and ``s_i = ±1`` for antithetic pairs.
Vectors and other leaves get ordinary Gaussian noise. ``rank=None`` is full-rank
Gaussian ES (OpenES) behind the same API.

Nothing per member is stored: member noise is regenerated from
``(key, generation, pair, leaf)`` with ``jax.random.fold_in``, then drawn by the generator
``noise`` names (:mod:`lowrank_es.es.noise`: a hashed Gaussian table, or ``jax.random.normal``).

The forward pass never materialises ``E_i``: :func:`linear` computes
``x @ W.T + sigma * s_i / sqrt(r) * (x @ B_i) @ A_i.T``; under ``vmap`` over members the
``x @ W.T`` GEMM is shared when ``x`` is. The gradient estimate
``g = 1 / (N sigma) sum_i f_i s_i E_i`` is one ``(m x P r) @ (P r x n)`` product over the
``P`` noise draws, handed to an optax optimiser as ``-g`` (ascent on fitness).

Two options follow the official HyperscaleES code: ``frozen`` leaves (regular expressions on
the leaf path, e.g. the embedding and the head) get no noise and never move, and
``estimator="hyperscale"`` hands the optimiser ``(sigma / sqrt(N)) sum_i f_i s_i E_i`` (the
official update before its learning rate) instead of the ES gradient.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.es import noise as noise_gen
# re-exported: callers read fitness shaping and checkpoints from the ES module
from lowrank_es.es.checkpoint import load_checkpoint, save_checkpoint  # noqa: F401
from lowrank_es.es.fitness_shaping import FITNESS_SHAPINGS, centered_ranks, shape_fitness  # noqa: F401

PyTree = Any

#: What :meth:`EGGROLL.gradient` returns, for the same shaped fitness ``f`` and noise ``s_i E_i``:
#: ``"gradient"``: ``1 / (N sigma) sum_i f_i s_i E_i``, the gradient of the Gaussian-smoothed
#: objective; ``"hyperscale"``: ``(sigma / sqrt(N)) sum_i f_i s_i E_i`` = ``sigma^2 sqrt(N)`` times
#: that, the official code's update (a step's size then follows sigma and sqrt(N), so a
#: learning rate tuned there transfers).
ESTIMATORS = ("gradient", "hyperscale")


# ---------------------------------------------------------------------------
# Per-leaf noise and the layers that consume it
# ---------------------------------------------------------------------------


class LowRank(NamedTuple):
    """Low-rank noise of one matrix leaf: perturbation ``scale * A @ B.T``.

    A: (m, r), B: (n, r); ``scale = sign * sigma / sqrt(r)``.
    """

    A: jax.Array
    B: jax.Array
    scale: jax.Array


class Dense(NamedTuple):
    """Full Gaussian noise of one leaf: perturbation ``scale * eps``, ``scale = sign * sigma``."""

    eps: jax.Array
    scale: jax.Array


def sample_factors(key: jax.Array, m: int, n: int, rank: int, dtype=jnp.float32,
                   noise: str = "auto") -> tuple[jax.Array, jax.Array]:
    """Standard normal factors ``A`` (m, rank) and ``B`` (n, rank) from generator ``noise``
    (:func:`lowrank_es.es.noise.standard_normal`; each column is drawn as its own vector).

    The perturbation they define is ``E = A @ B.T / sqrt(rank)``, whose entries have mean 0
    and variance 1 for every rank (and fourth moment ``3 + 6 / rank``).
    """
    if not isinstance(rank, (int, np.integer)) or not 1 <= rank <= min(m, n):
        raise ValueError(f"rank must be an integer in [1, min(m, n)] = [1, {min(m, n)}], got {rank!r}")
    ka, kb = jax.random.split(key)
    if noise_gen.resolve(noise) == "prng":  # the original layout, so "prng" streams are unchanged
        return jax.random.normal(ka, (m, rank), dtype), jax.random.normal(kb, (n, rank), dtype)
    return (noise_gen.standard_normal(ka, (rank, m), dtype, noise).T,
            noise_gen.standard_normal(kb, (rank, n), dtype, noise).T)


def perturbation(noise: LowRank | Dense) -> jax.Array:
    """The materialised perturbation ``sigma * s * E`` of one leaf (reference path)."""
    if isinstance(noise, LowRank):
        return noise.scale * (noise.A @ noise.B.T)
    return noise.scale * noise.eps


def linear(x: jax.Array, W: jax.Array, noise: LowRank | Dense | None = None) -> jax.Array:
    """``x @ (W + perturbation).T`` without materialising a low-rank perturbation.

    x: (..., n), W: (m, n) -> (..., m).
    """
    if W.ndim != 2 or x.shape[-1] != W.shape[1]:
        raise ValueError(f"linear: x of shape {x.shape} does not match W of shape {W.shape} (need x[..., n], W[m, n])")
    y = x @ W.T
    if noise is None:
        return y
    if isinstance(noise, LowRank):
        # O(r (m + n)) extra per row instead of O(m n).
        return y + noise.scale * ((x @ noise.B) @ noise.A.T)
    return y + noise.scale * (x @ noise.eps.T)


def embedding(tokens: jax.Array, table: jax.Array, noise: LowRank | Dense | None = None) -> jax.Array:
    """Rows ``tokens`` of ``table + perturbation``. tokens: (...,) int, table: (V, d) -> (..., d)."""
    rows = table[tokens]
    if noise is None:
        return rows
    if isinstance(noise, LowRank):
        return rows + noise.scale * (noise.A[tokens] @ noise.B.T)
    return rows + noise.scale * noise.eps[tokens]


def add(v: jax.Array, noise: LowRank | Dense | None = None) -> jax.Array:
    """``v + perturbation`` for a vector leaf (biases, norms)."""
    return v if noise is None else v + perturbation(noise)


def materialise(params: PyTree, noise: PyTree | None) -> PyTree:
    """``params + perturbation`` leaf by leaf (the naive-ES reference path); a frozen leaf
    (``None`` noise) is left as it is."""
    if noise is None:
        return params
    return jax.tree_util.tree_map(lambda p, n: p if n is None else p + perturbation(n).astype(p.dtype), params, noise)


# ---------------------------------------------------------------------------
# The strategy
# ---------------------------------------------------------------------------


class ESState(NamedTuple):
    """The whole state of a run: a pytree, so it jits, checkpoints and shards.

    ``sigma``: ``None`` (the strategy's ``sigma``) or a float scalar array that replaces it
    (:meth:`EGGROLL.with_sigma`). As state, not config, it is traced: one compiled step then
    serves every sigma (a widget's slider, a schedule) instead of compiling again per value.
    """

    params: PyTree  # the search distribution's mean
    opt_state: optax.OptState
    key: jax.Array  # base key; member noise is a pure function of (key, generation)
    generation: jax.Array  # int32 scalar
    sigma: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class EGGROLL:
    """Low-rank (``rank=r``) or full-rank (``rank=None``: OpenES) evolution strategy.

    sigma: noise scale (> 0). population: N members (>= 2; even when antithetic).
    optimizer: any optax transformation; it receives ``-g`` so it ascends the fitness.
    estimator: ``"gradient"`` or ``"hyperscale"`` (:data:`ESTIMATORS`): the scale of ``g``.
    frozen: regular expressions searched in each leaf's path (``jax.tree_util.keystr``, e.g.
    ``"['tok']"``); a matching leaf gets no noise (``None`` in the noise pytree) and a zero
    gradient, so it never moves. Every pattern must match a leaf and one leaf must stay free.
    clip_rank: if True, a matrix smaller than ``rank`` uses ``min(rank, m, n)``;
    otherwise such a matrix is an error.
    noise: the generator of member noise (:mod:`lowrank_es.es.noise`): ``"table"`` (a hashed
    table of Gaussian quantiles: mean, variance and fourth moment exact, a sixth to an eighth
    of threefry's CPU time), ``"prng"`` (``jax.random.normal``; the streams of runs made before
    this field existed) or ``"auto"``, the device's default (``noise.DEFAULT_NOISE``:
    ``"table"``). The key must be a threefry2x32 key (rbg / unsafe_rbg draws under vmap
    depend on the batch, so member noise would not be a function of the key).
    """

    sigma: float
    population: int
    rank: int | None = 1
    antithetic: bool = True
    fitness_shaping: str = "centered_rank"
    optimizer: optax.GradientTransformation = dataclasses.field(default_factory=lambda: optax.sgd(1e-2))
    clip_rank: bool = False
    noise: str = "auto"
    estimator: str = "gradient"
    frozen: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        noise_gen.resolve(self.noise)  # validates
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if not (isinstance(self.frozen, tuple) and all(isinstance(f, str) for f in self.frozen)):
            raise ValueError(f"frozen must be a tuple of regular expressions (str), got {self.frozen!r}")
        for f in self.frozen:
            try:
                re.compile(f)
            except re.error as err:
                raise ValueError(f"frozen pattern {f!r} is not a regular expression: {err}") from None
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0, got {self.sigma!r}")
        if not isinstance(self.population, int) or self.population < 2:
            raise ValueError(f"population must be an integer >= 2, got {self.population!r}")
        if self.antithetic and self.population % 2:
            raise ValueError(f"population must be even with antithetic sampling, got {self.population}")
        if self.rank is not None and (not isinstance(self.rank, int) or self.rank < 1):
            raise ValueError(f"rank must be an integer >= 1 (or None for full-rank ES), got {self.rank!r}")
        if self.fitness_shaping not in FITNESS_SHAPINGS:
            raise ValueError(f"fitness_shaping must be one of {FITNESS_SHAPINGS}, got {self.fitness_shaping!r}")

    # -- sizes --------------------------------------------------------------

    @property
    def num_pairs(self) -> int:
        """Number of independent noise draws P (N/2 with antithetic sampling)."""
        return self.population // 2 if self.antithetic else self.population

    def leaf_rank(self, shape: tuple[int, ...]) -> int | None:
        """Rank used for a leaf of this shape; None means dense Gaussian noise."""
        if self.rank is None or len(shape) != 2:
            return None
        m, n = shape
        if self.rank > min(m, n):
            if self.clip_rank:
                return min(m, n)
            raise ValueError(
                f"rank must be in [1, min(m, n)] = [1, {min(m, n)}] for a matrix of shape {shape}, got {self.rank}"
                " (pass clip_rank=True to clip it per matrix)"
            )
        return self.rank

    def is_frozen(self, path: str) -> bool:
        """Whether the leaf at ``path`` (``jax.tree_util.keystr``) matches a ``frozen`` pattern."""
        return any(re.search(f, path) for f in self.frozen)

    def _check_frozen(self, params: PyTree) -> None:
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
        for f in self.frozen:
            if not any(re.search(f, p) for p in paths):
                raise ValueError(f"frozen pattern {f!r} matches no leaf of params; leaf paths: {paths}")
        if paths and all(self.is_frozen(p) for p in paths):
            raise ValueError(f"frozen {self.frozen!r} freezes every leaf of params: nothing would be searched")

    # -- state --------------------------------------------------------------

    def init(self, key: jax.Array, params: PyTree) -> ESState:
        """Start a run at mean ``params``; ``key`` seeds all noise of the run."""
        leaves = jax.tree_util.tree_leaves(params)
        if not leaves:
            raise ValueError("params must contain at least one array")
        for leaf in leaves:
            if not jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating):
                raise ValueError(f"params leaves must be floating point, got dtype {jnp.asarray(leaf).dtype}")
            self.leaf_rank(jnp.shape(leaf))  # validates rank against every matrix
        self._check_frozen(params)
        params = jax.tree_util.tree_map(jnp.asarray, params)
        return ESState(params, self.optimizer.init(params), key, jnp.zeros((), jnp.int32))

    def with_sigma(self, state: ESState, sigma: float | jax.Array) -> ESState:
        """``state`` with its noise scale set to ``sigma`` (> 0), as a traced value: a step
        compiled once serves every sigma. A Python number is checked here; a traced one
        cannot be, so the caller validates it."""
        if not isinstance(sigma, jax.core.Tracer):
            s = float(np.asarray(sigma))
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(state.params))  # the params' precision
        return state._replace(sigma=jnp.asarray(sigma, dtype))

    def sigma_of(self, state: ESState) -> float | jax.Array:
        """The noise scale of ``state``: its own ``sigma`` if set, else the strategy's."""
        return self.sigma if state.sigma is None else state.sigma

    # -- noise ----------------------------------------------------------------

    def member_noise(self, state: ESState, member: jax.Array) -> PyTree:
        """Noise of one member (a pytree like ``params`` of :class:`LowRank`/:class:`Dense`)."""
        member = jnp.asarray(member)
        if not self.antithetic:
            return self.pair_noise(state, member)
        return _signed(self.pair_noise(state, member // 2), 1.0 - 2.0 * (member % 2))

    def member_params(self, state: ESState, member: jax.Array) -> PyTree:
        """Materialised parameters of one member (reference path; avoid in hot loops)."""
        return materialise(state.params, self.member_noise(state, member))

    # -- evaluation -----------------------------------------------------------

    def evaluate(
        self,
        state: ESState,
        fitness_fn: Callable[[PyTree, PyTree, jax.Array], jax.Array],
        *,
        mesh: jax.sharding.Mesh | None = None,
    ) -> jax.Array:
        """Fitness of every member: ``fitness_fn(params, noise, member) -> scalar``, vmapped.

        ``fitness_fn`` receives the *unperturbed* mean and the member's noise and should
        use :func:`linear` / :func:`embedding` / :func:`add` so nothing is materialised.
        Returns (N,).
        """
        fitness = self.map_members(state, fitness_fn, mesh=mesh)
        if jnp.shape(fitness) != (self.population,):
            raise ValueError(f"fitness_fn must return a scalar per member, so fitness of shape (population,) = "
                             f"({self.population},); got {jnp.shape(fitness)}")
        return fitness

    def pair_noise(self, state: ESState, pair: jax.Array) -> PyTree:
        """The ``+`` noise of draw ``pair`` (members ``2 pair`` and ``2 pair + 1`` with antithetic
        sampling, member ``pair`` without): a pure function of (key, generation, pair, leaf).
        A frozen leaf's noise is ``None``; the other leaves draw what they draw unfrozen."""
        noise_gen.check_key(state.key)
        k = jax.random.fold_in(jax.random.fold_in(state.key, state.generation), jnp.asarray(pair))
        with_path, treedef = jax.tree_util.tree_flatten_with_path(state.params)
        out = []
        for j, (path, leaf) in enumerate(with_path):
            if self.frozen and self.is_frozen(jax.tree_util.keystr(path)):
                out.append(None)
                continue
            kl = jax.random.fold_in(k, j)
            r = self.leaf_rank(leaf.shape)
            if r is None:
                eps = noise_gen.standard_normal(kl, leaf.shape, leaf.dtype, self.noise)
                out.append(Dense(eps, self._scale(state, 1, leaf.dtype)))
            else:
                A, B = sample_factors(kl, *leaf.shape, r, leaf.dtype, self.noise)
                out.append(LowRank(A, B, self._scale(state, r, leaf.dtype)))
        return jax.tree_util.tree_unflatten(treedef, out)

    def _scale(self, state: ESState, r: int, dtype) -> jax.Array:
        """``sigma / sqrt(r)`` as ``dtype`` (from a Python float when sigma is config, so a
        run without a state sigma keeps the exact scale it always had)."""
        if state.sigma is None:
            return jnp.asarray(self.sigma / math.sqrt(r), dtype)
        return (state.sigma / math.sqrt(r)).astype(dtype)

    def map_members(
        self,
        state: ESState,
        fn: Callable[..., Any],
        *xs: Any,
        mesh: jax.sharding.Mesh | None = None,
    ) -> Any:
        """``fn(params, noise_i, i, *x_i)`` for every member ``i``, stacked on a leading axis (N, ...).

        ``xs``: per-member inputs with leading axis N (e.g. each member's tokens). With antithetic
        sampling the two members of a pair share one noise draw of opposite sign, so the noise is
        generated once per pair (``num_pairs`` draws, not N) and the pair's two members are batched
        over a sign axis: the values of :meth:`member_noise` at half the RNG work. The noise is
        generated inside the vmapped function, so XLA never holds all of it at once.
        """
        draws = jnp.arange(self.num_pairs)
        if mesh is not None:
            draws = shard_population_axis(draws, mesh)
        return self._map_draws(state.params, lambda d: self.pair_noise(state, d), fn, draws, xs)

    def map_members_given_noise(self, params: PyTree, noise: PyTree, fn: Callable[..., Any], *xs: Any) -> Any:
        """As :meth:`map_members`, with every draw's ``+`` noise given, stacked (num_pairs, ...)
        (e.g. ``jax.vmap(es.pair_noise, (None, 0))(state, jnp.arange(es.num_pairs))``)."""
        return self._map_draws(params, lambda d: jax.tree_util.tree_map(lambda a: a[d], noise),
                               fn, jnp.arange(self.num_pairs), xs)

    def _map_draws(self, params: PyTree, noise_of: Callable[[jax.Array], PyTree], fn: Callable[..., Any],
                   draws: jax.Array, xs: tuple) -> Any:
        N = self.population
        for x in jax.tree_util.tree_leaves(xs):
            if jnp.ndim(x) < 1 or jnp.shape(x)[0] != N:
                raise ValueError(f"xs must have leading axis population = {N}, got shape {jnp.shape(x)}")
        if not self.antithetic:
            return jax.vmap(lambda d, *x: fn(params, noise_of(d), d, *x))(draws, *xs)
        xs = jax.tree_util.tree_map(lambda x: jnp.reshape(x, (self.num_pairs, 2) + jnp.shape(x)[1:]), xs)
        signs = jnp.array([1.0, -1.0])

        def pair(d, *x_pair):
            noise = noise_of(d)  # one draw, shared (not batched) by the pair's two members

            def member(sign, j, *x):
                return fn(params, _signed(noise, sign), 2 * d + j, *x)

            return jax.vmap(member)(signs, jnp.arange(2), *x_pair)

        out = jax.vmap(pair)(draws, *xs)
        return jax.tree_util.tree_map(lambda y: jnp.reshape(y, (N,) + jnp.shape(y)[2:]), out)

    # -- update -------------------------------------------------------------------

    def gradient(self, state: ESState, fitness: jax.Array, *, mesh: jax.sharding.Mesh | None = None) -> PyTree:
        """ES gradient estimate ``1 / (N sigma) sum_i shaped_f_i s_i E_i`` in factored form
        (``estimator="hyperscale"``: ``(sigma / sqrt(N)) sum_i shaped_f_i s_i E_i``); zero for a
        frozen leaf."""
        w = shape_fitness(fitness, self.fitness_shaping)
        if self.antithetic:
            w = w[0::2] - w[1::2]  # the pair's two members carry +E and -E
        pairs = jnp.arange(self.num_pairs)
        if mesh is not None:
            pairs = shard_population_axis(pairs, mesh)
            w = shard_population_axis(w, mesh)
        noise = jax.vmap(lambda p: self.pair_noise(state, p))(pairs)
        # scale = sigma / sqrt(r) (or sigma), so scale * A B^T = sigma * E: dividing by N sigma^2
        # gives E / (N sigma); dividing by sqrt(N) gives the official sigma E / sqrt(N).
        sigma = self.sigma_of(state)
        denom = self.population * sigma * sigma if self.estimator == "gradient" else math.sqrt(self.population)

        def leaf_grad(p: jax.Array, n: LowRank | Dense | None) -> jax.Array:
            if n is None:  # frozen
                return jnp.zeros_like(p)
            if isinstance(n, LowRank):
                # (m x P r) @ (P r x n): one GEMM over all noise draws.
                P, m, r = n.A.shape
                Aw = (n.A * w[:, None, None].astype(n.A.dtype)).transpose(1, 0, 2).reshape(m, P * r)
                Bf = n.B.transpose(1, 0, 2).reshape(p.shape[1], P * r)
                return (Aw @ Bf.T) * (n.scale[0] / denom)
            return jnp.tensordot(w.astype(n.eps.dtype), n.eps, axes=1) * (n.scale[0] / denom)

        return jax.tree_util.tree_map(leaf_grad, state.params, noise)

    def tell(
        self, state: ESState, fitness: jax.Array, *, mesh: jax.sharding.Mesh | None = None
    ) -> tuple[ESState, dict[str, jax.Array]]:
        """Update the mean from the members' fitness (N,). Returns the new state and metrics."""
        fitness = jnp.asarray(fitness)
        if fitness.shape != (self.population,):
            raise ValueError(f"fitness must have shape (population,) = ({self.population},), got {fitness.shape}")
        if not isinstance(fitness, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(fitness))):
            bad = np.flatnonzero(~np.isfinite(np.asarray(fitness)))
            raise ValueError(f"fitness must be finite; non-finite values at members {bad[:10].tolist()}")
        return _tell_jit(self, state, fitness, mesh)

    def step(
        self,
        state: ESState,
        fitness_fn: Callable[[PyTree, PyTree, jax.Array], jax.Array],
        *,
        mesh: jax.sharding.Mesh | None = None,
    ) -> tuple[ESState, dict[str, jax.Array]]:
        """One generation (evaluate + tell), pure and jittable. Non-finite fitness is
        reported in ``metrics['nonfinite']`` and leaves the mean unchanged."""
        fitness = self.evaluate(state, fitness_fn, mesh=mesh)
        finite = jnp.all(jnp.isfinite(fitness))
        new, metrics = _tell(self, state, jnp.where(jnp.isfinite(fitness), fitness, 0.0), mesh)
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, state)
        new = new._replace(generation=state.generation + 1)
        return new, {**metrics, "nonfinite": ~finite}


def _signed(noise: PyTree, sign: jax.Array | float) -> PyTree:
    """The antithetic partner's noise: the same draw with its scale times ``sign`` (+-1, exact)."""
    return jax.tree_util.tree_map(lambda n: n._replace(scale=n.scale * jnp.asarray(sign, n.scale.dtype)),
                                  noise, is_leaf=lambda n: isinstance(n, (LowRank, Dense)))


def _tell(es: EGGROLL, state: ESState, fitness: jax.Array, mesh) -> tuple[ESState, dict[str, jax.Array]]:
    g = es.gradient(state, fitness, mesh=mesh)
    updates, opt_state = es.optimizer.update(jax.tree_util.tree_map(jnp.negative, g), state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    gnorm = optax.global_norm(g)
    metrics = {"fitness_mean": fitness.mean(), "fitness_max": fitness.max(), "grad_norm": gnorm}
    return ESState(params, opt_state, state.key, state.generation + 1, state.sigma), metrics


_tell_jit = jax.jit(_tell, static_argnums=(0, 3))


# ---------------------------------------------------------------------------
# Sharding and checkpoints
# ---------------------------------------------------------------------------


def population_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Shard the member axis over the mesh's first axis (devices, or hosts with jax.distributed)."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names[0]))


def shard_population_axis(x: jax.Array, mesh: jax.sharding.Mesh) -> jax.Array:
    """Lay the leading (member) axis of ``x`` out over the mesh's first axis.

    The mesh's axes must be ``AxisType.Auto`` (XLA then propagates the layout and inserts
    the all-reduce of the gradient sum): ``jax.make_mesh((n,), ("pop",),
    axis_types=(jax.sharding.AxisType.Auto,))``.
    """
    axis_types = getattr(mesh, "axis_types", ())
    if any("Auto" not in str(t) for t in axis_types):
        raise ValueError(
            f"mesh axes must be jax.sharding.AxisType.Auto, got {axis_types}; build the mesh with "
            "jax.make_mesh(shape, names, axis_types=(jax.sharding.AxisType.Auto,) * len(names))"
        )
    return jax.lax.with_sharding_constraint(x, population_sharding(mesh))

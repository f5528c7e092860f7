"""Integer EGGROLL: low-rank evolution strategies whose noise, forward layers and update are
integer arithmetic only (the int8 pre-training setting of arXiv:2511.16652, after nano-egg).

Fixed point
-----------
Activations are int8 with ``FRAC = 4`` fractional bits (real value ``q / 16``); products
accumulate in int32 and are shifted back with :func:`rshift_round`; :func:`sat8` saturates to
``[-127, 127]``.

Noise
-----
Member ``i`` (pair ``p = i // 2``, sign ``s = +1`` for even ``i``, ``-1`` for odd) adds to every
matrix ``W`` (m, n) the perturbation ``s A B^T / 2**sigma_shift`` with ``A`` (m, r) and ``B``
(n, r) int8 slices of one shared table of rounded Gaussians (:func:`noise_table`) starting at an
offset hashed from ``(seed, generation, pair, leaf)``; a vector leaf gets ``s a b / 2**sigma_shift``
from two slices. Nothing per member is stored, and the layers never form ``A B^T``:
:func:`int_linear` adds ``(s (x B) A^T) >> sigma_shift`` to ``x W^T``.

Rank scaling
------------
With ``rank_scaling`` (the default) a leaf of rank ``r`` slices its ``A`` and ``B`` from a table of
standard deviation ``noise_std / r**(1/4)``, so every entry of ``A B^T`` has standard deviation
``noise_std**2`` whatever ``r``: the float strategy's ``A B^T / sqrt(r)``, so rank and the sigma
shift are separate knobs. Without it (the earlier behaviour) the perturbation grows as ``sqrt(r)``.

Update
------
Each pair votes ``w_p = sign(f_{2p} - f_{2p+1})``; ``G = sum_p w_p A_p B_p^T`` is one int32 GEMM
per matrix, and a weight moves by ``sign(G)`` (one integer step) where ``|G|`` passes an integer
threshold: ``z_t`` standard deviations of ``G`` under random votes (``sqrt(P r) std_r^2``). ``z_t``
comes from a :class:`ThresholdSchedule`: fixed, or nano-egg's annealing of the two-sided tail mass
``alpha_t = 1 / ((2**a - 1) t / T + 1)`` (from 1, every weight moves, to ``2**-a`` at ``t = T``),
``z_t = Phi^{-1}(1 - alpha_t / 2)``, tabulated on the host as integers for every generation of the
run, so the program stays integer. Parameters stay int8 throughout.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.es.noise import mix32

PyTree = Any
FitnessFn = Callable[[PyTree, PyTree, jax.Array], jax.Array]

FRAC = 4
ONE = 1 << FRAC  # fixed-point 1.0
QMAX = 127


# ---------------------------------------------------------------------------
# Integer primitives
# ---------------------------------------------------------------------------


def sat8(x: jax.Array) -> jax.Array:
    """Saturate an integer array to ``[-127, 127]`` and store it as int8."""
    return jnp.clip(x, -QMAX, QMAX).astype(jnp.int8)


def rshift_round(x: jax.Array, s: int) -> jax.Array:
    """``round(x / 2**s)`` (halves up) on int32 by an arithmetic shift."""
    if s == 0:
        return x
    return jnp.right_shift(x + (1 << (s - 1)), s)


def int_dot(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x @ w.T`` with int32 accumulation. x: (..., n) integer, w: (m, n) integer -> (..., m) int32."""
    return jax.lax.dot_general(x, w, (((x.ndim - 1,), (1,)), ((), ())), preferred_element_type=jnp.int32)


class IntLowRank(NamedTuple):
    """One member's integer noise of a matrix: perturbation ``sign * A @ B.T / 2**shift``."""

    A: jax.Array  # (m, r) int8
    B: jax.Array  # (n, r) int8
    sign: jax.Array  # int32 scalar, +1 or -1
    shift: int


class IntVec(NamedTuple):
    """One member's integer noise of a vector: perturbation ``sign * a * b / 2**shift``."""

    a: jax.Array  # (m,) int8
    b: jax.Array  # (m,) int8
    sign: jax.Array
    shift: int


jax.tree_util.register_pytree_node(
    IntLowRank, lambda n: ((n.A, n.B, n.sign), n.shift), lambda s, c: IntLowRank(*c, s)
)
jax.tree_util.register_pytree_node(IntVec, lambda n: ((n.a, n.b, n.sign), n.shift), lambda s, c: IntVec(*c, s))


def is_noise(x: Any) -> bool:
    """Whether ``x`` is one leaf's integer noise (for ``tree_map(..., is_leaf=is_noise)``)."""
    return isinstance(x, (IntLowRank, IntVec))


def perturbation(noise: IntLowRank | IntVec) -> jax.Array:
    """The materialised perturbation of one leaf, int32, in units of ``2**-shift``."""
    if isinstance(noise, IntLowRank):
        return noise.sign * (noise.A.astype(jnp.int32) @ noise.B.astype(jnp.int32).T)
    return noise.sign * noise.a.astype(jnp.int32) * noise.b.astype(jnp.int32)


def int_linear(x: jax.Array, W: jax.Array, noise: IntLowRank | None = None) -> jax.Array:
    """int32 accumulator of ``x @ (W + perturbation).T`` (in W's scale). x: (..., n) int8 -> (..., m) int32.

    The low-rank term ``(s * (x @ B) @ A.T) >> shift`` is computed without forming ``A B^T``.
    """
    acc = int_dot(x, W)
    if noise is None:
        return acc
    xb = int_dot(x.astype(jnp.int32), noise.B.astype(jnp.int32).T)  # (..., r)
    lr = int_dot(xb, noise.A.astype(jnp.int32))  # (..., m)
    return acc + jnp.right_shift(noise.sign * lr, noise.shift)


def int_vec(v: jax.Array, noise: IntVec | None = None) -> jax.Array:
    """int32 value of a (perturbed) int8 vector leaf."""
    v = v.astype(jnp.int32)
    if noise is None:
        return v
    return v + jnp.right_shift(perturbation(noise), noise.shift)


def int_embedding(tokens: jax.Array, table: jax.Array, noise: IntLowRank | None = None) -> jax.Array:
    """int8 rows of the (perturbed) embedding. tokens: (...,) -> (..., d) int8."""
    rows = table[tokens].astype(jnp.int32)
    if noise is None:
        return rows.astype(jnp.int8)
    lr = int_dot(noise.A[tokens].astype(jnp.int32), noise.B.astype(jnp.int32))
    return sat8(rows + jnp.right_shift(noise.sign * lr, noise.shift))


def materialise(params: PyTree, noise: PyTree) -> PyTree:
    """Integer reference path: every matrix as ``W * 2**k + s * A B^T`` (int32, scale ``2**k``
    with ``k = sigma_shift``); vectors exactly as the factored path sees them."""

    def leaf(p, n):
        p = p.astype(jnp.int32)
        if isinstance(n, IntLowRank):
            return (p << n.shift) + perturbation(n)
        return int_vec(p, n)

    return jax.tree_util.tree_map(leaf, params, noise, is_leaf=is_noise)


# ---------------------------------------------------------------------------
# The shared noise table and the hash that indexes it
# ---------------------------------------------------------------------------


def noise_table(seed: int = 0, size: int = 1 << 16, std: float = 8.0) -> np.ndarray:
    """The one shared table of rounded Gaussians every member slices its noise from. -> (size,) int8

    Entries are clipped to ``+-min(4 std, 127)``: int8 holds -128 but not +128, and a symmetric
    range keeps antithetic pairs exact.
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if not 0.5 <= std <= 32:
        raise ValueError(f"std must be in [0.5, 32], got {std}")
    rng = np.random.default_rng(seed)
    lim = min(4 * std, QMAX)
    return np.clip(np.round(rng.standard_normal(size) * std), -lim, lim).astype(np.int8)


def table_offset(seed, generation, pair, leaf, span: int, table_size: int) -> jax.Array:
    """Start of a member's slice of ``span`` entries in the table, hashed from its indices."""
    u = lambda v: jnp.asarray(v).astype(jnp.uint32)
    h = mix32(u(seed) ^ mix32(u(generation) * jnp.uint32(0x9E3779B1) + mix32(u(pair) * jnp.uint32(0x85EBCA77) + u(leaf))))
    return (h % jnp.uint32(table_size - span + 1)).astype(jnp.int32)


def key_to_seed(key: jax.Array) -> jax.Array:
    """A uint32 seed from a JAX key (typed ``jax.random.key`` or raw ``PRNGKey``)."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    if key.dtype != jnp.uint32 or key.ndim != 1:
        raise ValueError(f"key must be a JAX PRNG key (jax.random.key or PRNGKey), got dtype {key.dtype}, "
                         f"shape {key.shape}")
    h = jnp.uint32(0x9E3779B9)
    for i in range(key.shape[0]):
        h = mix32(h ^ key[i])
    return h


# ---------------------------------------------------------------------------
# The strategy
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ThresholdSchedule:
    """The vote threshold ``z_t`` per generation, as nano-egg sets it (``run.py``, ``alpha``).

    ``alpha > 1``: annealed, two-sided tail mass ``alpha_t = 1 / ((2**alpha - 1) t / horizon + 1)``,
    falling from 1 (``z = 0``: every weight with a nonzero vote sum moves) to ``2**-alpha`` at
    ``t = horizon`` and on past it (nano-egg's default ``alpha = 4``: ``z = 1.86`` at the horizon).
    ``0 < alpha <= 1``: a fixed tail mass ``alpha`` (nano-egg's sweeps use 0.125 and 0.25).
    ``generations``: how many generations the integer table covers; a run longer than that is
    refused (:meth:`IntEGGROLL.check_generations`) rather than silently holding the last value.
    """

    alpha: float = 4.0
    horizon: int = 1000
    generations: int = 1000

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha <= 16):
            raise ValueError(f"alpha must be in (0, 16] (tail mass when <= 1, annealing exponent when > 1), "
                             f"got {self.alpha!r}")
        for name in ("horizon", "generations"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")

    def tail_mass(self, t: np.ndarray | int) -> np.ndarray:
        """Two-sided tail mass ``alpha_t`` at generation(s) ``t`` (float64)."""
        t = np.asarray(t, np.float64)
        if self.alpha <= 1:
            return np.full(t.shape, float(self.alpha))
        return 1.0 / ((2.0**self.alpha - 1.0) * t / self.horizon + 1.0)

    def z(self, t: np.ndarray | int) -> np.ndarray:
        """``z_t = Phi^{-1}(1 - alpha_t / 2)`` at generation(s) ``t`` (float64)."""
        from scipy.stats import norm

        return norm.isf(self.tail_mass(t) / 2)

    def table(self) -> np.ndarray:
        """``z_t`` for ``t = 0 .. generations``. -> (generations + 1,) float64"""
        return self.z(np.arange(self.generations + 1))


class IntESState(NamedTuple):
    params: PyTree  # int8 leaves
    table: jax.Array  # (K, S) int8, shared by all members: one row per distinct table std
    seed: jax.Array  # uint32 scalar
    generation: jax.Array  # int32 scalar


@dataclasses.dataclass(frozen=True)
class IntEGGROLL:
    """Integer EGGROLL with antithetic pairs (satisfies :class:`lowrank_es.es.protocol.Strategy`).

    population: N (even, >= 2). rank: r of every matrix perturbation (clipped to min(m, n)).
    sigma_shift: the perturbation ``A B^T`` is scaled by ``2**-sigma_shift`` (in [0, 15]).
    noise_std: standard deviation of the table's rounded Gaussians (in [0.5, 32]); with
    ``rank_scaling`` a rank-``r`` leaf uses ``noise_std / r**(1/4)`` (see the module docstring).
    threshold: z, in standard deviations of ``G`` under random votes, that ``|G|`` must exceed
    for a weight to move: a number (fixed) or a :class:`ThresholdSchedule`.
    """

    population: int = 64
    rank: int = 1
    sigma_shift: int = 4
    noise_std: float = 8.0
    threshold: float | ThresholdSchedule = 1.0
    rank_scaling: bool = True
    table_size: int = 1 << 16
    table_seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.population, int) or self.population < 2 or self.population % 2:
            raise ValueError(f"population must be an even integer >= 2, got {self.population!r}")
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank must be an integer >= 1, got {self.rank!r}")
        if not isinstance(self.sigma_shift, int) or not 0 <= self.sigma_shift <= 15:
            raise ValueError(f"sigma_shift must be an integer in [0, 15], got {self.sigma_shift!r}")
        if not 0.5 <= self.noise_std <= 32:
            raise ValueError(f"noise_std must be in [0.5, 32], got {self.noise_std!r}")
        if not (isinstance(self.threshold, ThresholdSchedule)
                or (isinstance(self.threshold, (int, float)) and 0 <= self.threshold <= 8)):
            raise ValueError(f"threshold must be a number in [0, 8] or a ThresholdSchedule, got {self.threshold!r}")

    # -- sizes ----------------------------------------------------------------

    @property
    def num_pairs(self) -> int:
        """Number of independent noise draws P = N / 2."""
        return self.population // 2

    def leaf_rank(self, shape: tuple[int, ...]) -> int:
        return min(self.rank, *shape)

    def span(self, shape: tuple[int, ...]) -> int:
        """Table entries one member's noise of a leaf of this shape takes."""
        if len(shape) == 2:
            return (shape[0] + shape[1]) * self.leaf_rank(shape)
        return 2 * int(np.prod(shape))

    def leaf_std(self, shape: tuple[int, ...]) -> float:
        """Standard deviation of the table a leaf of this shape slices its noise from."""
        if len(shape) == 2 and self.rank_scaling:
            return float(self.noise_std / self.leaf_rank(shape) ** 0.25)
        return float(self.noise_std)

    def z_schedule(self) -> np.ndarray:
        """z per generation, float64: ``(generations + 1,)`` for a schedule, ``(1,)`` when fixed."""
        if isinstance(self.threshold, ThresholdSchedule):
            return self.threshold.table()
        return np.array([float(self.threshold)])

    def check_generations(self, generations: int) -> None:
        """Raise unless the threshold table covers a run of ``generations`` generations."""
        if isinstance(self.threshold, ThresholdSchedule) and generations > self.threshold.generations:
            raise ValueError(f"the threshold schedule is tabulated for {self.threshold.generations} generations; "
                             f"a run of {generations} needs ThresholdSchedule(generations >= {generations})")

    def int_threshold(self, shape: tuple[int, ...], generation: int | None = None) -> int | np.ndarray:
        """The integer vote threshold of a leaf of this shape: at ``generation``, or the whole
        schedule (int32) when ``generation`` is None. ``z sqrt(P r) std_r^2``: the standard
        deviation of ``G`` under random votes."""
        r = self.leaf_rank(shape) if len(shape) == 2 else 1
        scale = math.sqrt(self.num_pairs * r) * self.leaf_std(shape) ** 2
        table = np.round(self.z_schedule() * scale).astype(np.int32)
        if generation is None:
            return table
        return int(table[min(int(generation), len(table) - 1)])

    def table_stds(self, params: PyTree) -> tuple[float, ...]:
        """The distinct table standard deviations the leaves of ``params`` use, in a fixed order."""
        return tuple(sorted({self.leaf_std(jnp.shape(x)) for x in jax.tree_util.tree_leaves(params)}))

    # -- state ----------------------------------------------------------------

    def init(self, key: jax.Array, params: PyTree) -> IntESState:
        """Start a run at mean ``params`` (int8 leaves); ``key`` (a JAX key) seeds all noise of the run."""
        leaves = jax.tree_util.tree_leaves(params)
        if not leaves:
            raise ValueError("params must contain at least one array")
        for leaf in leaves:
            if jnp.asarray(leaf).dtype != jnp.int8:
                raise ValueError(f"params leaves must be int8, got dtype {jnp.asarray(leaf).dtype}")
            if self.leaf_std(jnp.shape(leaf)) < 0.5:
                raise ValueError(f"noise_std / rank**(1/4) must be >= 0.5 (a table of rounded Gaussians that fine "
                                 f"is mostly zeros); got noise_std={self.noise_std}, rank {self.leaf_rank(jnp.shape(leaf))}")
            if self.span(jnp.shape(leaf)) > self.table_size:
                raise ValueError(f"table_size must be >= {self.span(jnp.shape(leaf))} for a leaf of shape {jnp.shape(leaf)}")
        # one table per distinct standard deviation (one, without rank scaling), rows in table_stds order
        table = jnp.asarray(np.stack([noise_table(self.table_seed, self.table_size, std)
                                      for std in self.table_stds(params)]))
        return IntESState(params, table, key_to_seed(key), jnp.zeros((), jnp.int32))

    # -- noise ----------------------------------------------------------------

    def pair_noise(self, state: IntESState, pair: jax.Array, sign: jax.Array) -> PyTree:
        """Noise of draw ``pair`` with ``sign`` (+1 or -1): a pure function of (seed, generation, pair, leaf)."""
        leaves, treedef = jax.tree_util.tree_flatten(state.params)
        stds = self.table_stds(state.params)
        out = []
        for j, leaf in enumerate(leaves):
            span = self.span(leaf.shape)
            off = table_offset(state.seed, state.generation, pair, j, span, self.table_size)
            sl = jax.lax.dynamic_slice(state.table[stds.index(self.leaf_std(leaf.shape))], (off,), (span,))
            if leaf.ndim == 2:
                m, n = leaf.shape
                r = self.leaf_rank(leaf.shape)
                out.append(IntLowRank(sl[: m * r].reshape(m, r), sl[m * r :].reshape(n, r), sign, self.sigma_shift))
            else:
                k = leaf.size
                out.append(IntVec(sl[:k].reshape(leaf.shape), sl[k:].reshape(leaf.shape), sign, self.sigma_shift))
        return jax.tree_util.tree_unflatten(treedef, out)

    def member_noise(self, state: IntESState, member: jax.Array) -> PyTree:
        """Integer noise of member ``member`` (pair ``member // 2``, sign ``+1`` then ``-1``)."""
        member = jnp.asarray(member, jnp.int32)
        return self.pair_noise(state, member // 2, 1 - 2 * (member % 2))

    def member_params(self, state: IntESState, member: jax.Array) -> PyTree:
        """Materialised perturbed weights of one member, as int32 at scale ``2**sigma_shift``
        (matrices): the reference path."""
        return materialise(state.params, self.member_noise(state, member))

    # -- evaluation -----------------------------------------------------------

    def evaluate(self, state: IntESState, fitness_fn: FitnessFn) -> jax.Array:
        """``fitness_fn(params, noise, member) -> scalar`` for every member, vmapped. -> (N,)

        ``fitness_fn`` receives the int8 mean and the member's integer noise (use
        :func:`int_linear` / :func:`int_embedding` / :func:`int_vec`). An integer fitness keeps
        the whole generation integer.
        """
        f = jax.vmap(lambda i: fitness_fn(state.params, self.member_noise(state, i), i))(
            jnp.arange(self.population, dtype=jnp.int32))
        if f.shape != (self.population,):
            raise ValueError(f"fitness_fn must return a scalar per member, so fitness of shape (population,) = "
                             f"({self.population},); got {f.shape}")
        return f

    # -- update ---------------------------------------------------------------

    def votes(self, fitness: jax.Array) -> jax.Array:
        """Antithetic votes ``sign(f_+ - f_-)`` per pair. (N,) -> (P,) int32"""
        fitness = jnp.asarray(fitness)
        if jnp.issubdtype(fitness.dtype, jnp.integer):
            # compare, rather than subtract, so extreme int32 values cannot overflow
            plus, minus = fitness[0::2], fitness[1::2]
            return (plus > minus).astype(jnp.int32) - (plus < minus).astype(jnp.int32)
        return jnp.sign(fitness[0::2] - fitness[1::2]).astype(jnp.int32)

    def aggregate(self, state: IntESState, votes: jax.Array) -> PyTree:
        """``G = sum_p w_p A_p B_p^T`` per matrix (``sum_p w_p a_p b_p`` per vector), int32."""
        noise = jax.vmap(lambda p: self.pair_noise(state, p, jnp.int32(1)))(jnp.arange(self.num_pairs))

        def leaf(p, n):
            if isinstance(n, IntLowRank):
                P, m, r = n.A.shape
                Aw = (n.A.astype(jnp.int32) * votes[:, None, None]).transpose(1, 0, 2).reshape(m, P * r)
                Bf = n.B.astype(jnp.int32).transpose(1, 0, 2).reshape(p.shape[1], P * r)
                return int_dot(Aw, Bf)
            return jnp.tensordot(votes, n.a.astype(jnp.int32) * n.b.astype(jnp.int32), axes=1)

        return jax.tree_util.tree_map(leaf, state.params, noise, is_leaf=is_noise)

    def tell(self, state: IntESState, fitness: jax.Array) -> tuple[IntESState, dict[str, jax.Array]]:
        """Integer update ``W <- sat8(W + sign(G) [|G| > threshold])`` from fitness (N,); advances
        the generation. Returns the new state and metrics (``moved``: weights that moved)."""
        fitness = jnp.asarray(fitness)
        if fitness.shape != (self.population,):
            raise ValueError(f"fitness must have shape (population,) = ({self.population},), got {fitness.shape}")
        if (jnp.issubdtype(fitness.dtype, jnp.inexact) and not isinstance(fitness, jax.core.Tracer)
                and not bool(jnp.all(jnp.isfinite(fitness)))):
            bad = np.flatnonzero(~np.isfinite(np.asarray(fitness)))
            raise ValueError(f"fitness must be finite; non-finite values at members {bad[:10].tolist()}")
        return _tell_jit(self, state, fitness)

    def step(self, state: IntESState, fitness_fn: FitnessFn) -> tuple[IntESState, dict[str, jax.Array]]:
        """One generation (:meth:`evaluate` then :meth:`tell`), pure and jittable. A float fitness
        with non-finite values leaves the mean unchanged (``metrics['nonfinite']``)."""
        fitness = self.evaluate(state, fitness_fn)
        if not jnp.issubdtype(fitness.dtype, jnp.inexact):
            new, metrics = _tell(self, state, fitness)
            return new, {**metrics, "nonfinite": jnp.zeros((), bool)}
        finite = jnp.all(jnp.isfinite(fitness))
        new, metrics = _tell(self, state, jnp.where(jnp.isfinite(fitness), fitness, 0))
        new = new._replace(params=jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new.params, state.params))
        return new, {**metrics, "nonfinite": ~finite}


def _tell(es: IntEGGROLL, state: IntESState, fitness: jax.Array) -> tuple[IntESState, dict[str, jax.Array]]:
    G = es.aggregate(state, es.votes(fitness))
    g = state.generation

    def upd(p, gl):
        schedule = es.int_threshold(p.shape)
        thr = jnp.asarray(schedule)[jnp.minimum(g, len(schedule) - 1)]
        move = jnp.where(jnp.abs(gl) > thr, jnp.sign(gl), 0)
        return sat8(p.astype(jnp.int32) + move), jnp.sum(move != 0)

    pairs = jax.tree_util.tree_map(upd, state.params, G)
    params = jax.tree_util.tree_map(lambda _, pr: pr[0], state.params, pairs)
    moved = sum(pr[1] for pr in jax.tree_util.tree_leaves(pairs, is_leaf=lambda x: isinstance(x, tuple)))
    new = IntESState(params, state.table, state.seed, g + 1)
    # an integer mean by parts, so a sum over the population cannot overflow int32
    mean = fitness.mean() if jnp.issubdtype(fitness.dtype, jnp.inexact) else jnp.sum(fitness // es.population)
    return new, {"fitness_mean": mean, "fitness_max": fitness.max(), "moved": moved}


_tell_jit = jax.jit(_tell, static_argnums=0)

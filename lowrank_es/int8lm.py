"""An integer-only minGRU language model, trained by integer EGGROLL, and its float baselines.

Model (same tree layout and parameter count as :mod:`lowrank_es.models.mingru`, every leaf int8)
---------------------------------------------------------------------------------------------
Activations are int8 in fixed point with ``FRAC = 4`` fractional bits (real value ``q / 16``,
range ``[-127/16, 127/16]``). A weight matrix ``W`` of shape ``(m, n)`` has real value
``W / 2**w_shift(n)`` with ``w_shift(n) = FRAC + ceil(log2(n) / 2)``, so int8 weights of
standard deviation ~16 represent the usual ``1/sqrt(n)`` scale. Biases and gains are int8 with
``FRAC`` bits, the embedding is int8 activations. Every operation is an integer operation:

- ``linear``: int8 x int8 products accumulated in int32, then a rounding right shift by
  ``w_shift`` back to the activation scale, plus the bias, then saturation to ``[-127, 127]``
  (saturating arithmetic is the only nonlinearity besides the gate).
- normalisation: ``u = x * 16 / rms(x)`` with ``rms = ISQRT[sum(x^2) // n]`` read from an
  integer square-root lookup table, times the gain ``(16 + g) / 16``; all integer divisions.
- update gate: ``z = SIGMOID[a + 127]``, a 255-entry lookup table of ``round(128 sigmoid(a/16))``,
  so ``z`` is in ``[0, 128]`` and ``h' = (h (128 - z) + c z + 64) >> 7``.
- logits: the head's int32 output in the ``FRAC`` scale; only they are converted (``/ 16``) to
  floating point for the cross-entropy, outside the forward pass.

Integer EGGROLL
---------------
Member ``i`` (pair ``p = i // 2``, sign ``s = +1, -1`` for antithetic members) adds to every
matrix ``W`` the low-rank integer perturbation ``s * A B^T`` scaled by ``2**-sigma_shift``, in
factored form: ``x @ W.T + (s * (x @ B) @ A.T) >> sigma_shift``. ``A`` (m, r) and ``B`` (n, r)
are int8 slices of one shared table of rounded Gaussians (``noise_std`` standard deviation),
starting at an offset given by an integer hash of ``(seed, generation, pair, leaf)``; vectors
get ``s * a * b`` with ``a, b`` two such slices. Nothing per member is stored.

Fitness is the log-likelihood of a batch of training windows. Each pair votes
``w_p = sign(f_{2p} - f_{2p+1})`` and the aggregated update ``G = sum_p w_p A_p B_p^T`` (one
int32 GEMM) moves each weight by ``sign(G)`` (one integer step) where ``|G|`` passes an integer
threshold, then saturates to ``[-127, 127]``: parameters are int8 throughout training.

Baselines (same architecture in float32, :mod:`lowrank_es.models.mingru`, same parameter count):
float EGGROLL (:class:`lowrank_es.es.eggroll.EGGROLL` + optax Adam) and backprop (optax Adam).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.models import mingru
from lowrank_es.es.eggroll import EGGROLL
from lowrank_es.tasks.text_data import bits_per_char

PyTree = Any

FRAC = 4
ONE = 1 << FRAC  # fixed-point 1.0
QMAX = 127
GATE_BITS = 7  # the gate z is in [0, 2**GATE_BITS]

# Integer lookup tables (built once with numpy, held as int32 constants).
SIGMOID_LUT = np.round((1 << GATE_BITS) / (1.0 + np.exp(-np.arange(-QMAX, QMAX + 1) / ONE))).astype(np.int32)
ISQRT_LUT = np.round(np.sqrt(np.arange(QMAX * QMAX + 1))).astype(np.int32)


def w_shift(fan_in: int) -> int:
    """Right shift that maps an int32 accumulator of ``fan_in`` products back to the FRAC scale."""
    return FRAC + int(math.ceil(math.log2(fan_in) / 2))


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


def _dot(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x @ w.T`` with int32 accumulation. x: (..., n) int8/int32, w: (m, n) -> (..., m) int32."""
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


def int_linear(x: jax.Array, W: jax.Array, noise: IntLowRank | None = None) -> jax.Array:
    """int32 accumulator of ``x @ (W + perturbation).T`` (in W's scale). x: (..., n) int8 -> (..., m) int32.

    The low-rank term ``(s * (x @ B) @ A.T) >> shift`` is computed without forming ``A B^T``.
    """
    acc = _dot(x, W)
    if noise is None:
        return acc
    xb = _dot(x.astype(jnp.int32), noise.B.astype(jnp.int32).T)  # (..., r)
    lr = _dot(xb, noise.A.astype(jnp.int32))  # (..., m)
    return acc + jnp.right_shift(noise.sign * lr, noise.shift)


def int_vec(v: jax.Array, noise: IntVec | None = None) -> jax.Array:
    """int32 value of a (perturbed) int8 vector leaf."""
    v = v.astype(jnp.int32)
    if noise is None:
        return v
    return v + jnp.right_shift(noise.sign * noise.a.astype(jnp.int32) * noise.b.astype(jnp.int32), noise.shift)


def int_embedding(tokens: jax.Array, table: jax.Array, noise: IntLowRank | None = None) -> jax.Array:
    """int8 rows of the (perturbed) embedding. tokens: (...,) -> (..., d) int8."""
    rows = table[tokens].astype(jnp.int32)
    if noise is None:
        return rows.astype(jnp.int8)
    lr = _dot(noise.A[tokens].astype(jnp.int32), noise.B.astype(jnp.int32))
    return sat8(rows + jnp.right_shift(noise.sign * lr, noise.shift))


def int_norm(x: jax.Array, g: jax.Array) -> jax.Array:
    """Integer RMS normalisation with gain: ``x * 16 / rms(x) * (16 + g) / 16``. x: (..., n) int8, g: int32."""
    xi = x.astype(jnp.int32)
    n = x.shape[-1]
    ms = jnp.sum(xi * xi, axis=-1, keepdims=True) // n
    rms = jnp.maximum(jnp.asarray(ISQRT_LUT)[ms], 1)
    u = (2 * ONE * xi + rms) // (2 * rms)  # round(x * 16 / rms)
    return sat8(rshift_round(u * (ONE + g), FRAC))


def _none_like(tree: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda _: None, tree)


def cell(layer: dict[str, jax.Array], h: jax.Array, x: jax.Array, noise: PyTree | None = None) -> jax.Array:
    """One integer minGRU layer, one step. x, h: (..., d) int8 -> h_new (..., d) int8."""
    nz = _none_like(layer) if noise is None else noise
    d = x.shape[-1]
    s = w_shift(d)
    u = int_norm(x, int_vec(layer["g"], nz["g"]))
    a = jnp.clip(rshift_round(int_linear(u, layer["Wz"], nz["Wz"]), s) + int_vec(layer["bz"], nz["bz"]), -QMAX, QMAX)
    z = jnp.asarray(SIGMOID_LUT)[a + QMAX]  # [0, 128]
    c = jnp.clip(rshift_round(int_linear(u, layer["Wh"], nz["Wh"]), s) + int_vec(layer["bh"], nz["bh"]), -QMAX, QMAX)
    hn = rshift_round(h.astype(jnp.int32) * ((1 << GATE_BITS) - z) + c * z, GATE_BITS)
    return sat8(hn)


def init_state(params: PyTree, batch_shape: tuple[int, ...] = ()) -> jax.Array:
    """Zero int8 hidden state of every layer: (L, *batch_shape, d)."""
    return jnp.zeros((len(params["layers"]), *batch_shape, params["embed"].shape[1]), jnp.int8)


def step(params: PyTree, h: jax.Array, token: jax.Array, noise: PyTree | None = None) -> tuple[jax.Array, jax.Array]:
    """One token. h: (L, ..., d) int8, token: (...) int -> (h (L, ..., d) int8, logits (..., V) int32)."""
    nz = _none_like(params) if noise is None else noise
    x = int_embedding(token, params["embed"], nz["embed"])
    hs = []
    for i, lp in enumerate(params["layers"]):
        hn = cell(lp, h[i], x, nz["layers"][i])
        hs.append(hn)
        x = sat8(x.astype(jnp.int32) + hn.astype(jnp.int32))
    d = x.shape[-1]
    u = int_norm(x, int_vec(params["head"]["g"], nz["head"]["g"]))
    logits = rshift_round(int_linear(u, params["head"]["W"], nz["head"]["W"]), w_shift(d)) + int_vec(
        params["head"]["b"], nz["head"]["b"]
    )
    return jnp.stack(hs), logits


def apply(params: PyTree, tokens: jax.Array, noise: PyTree | None = None) -> jax.Array:
    """Integer logits (FRAC scale) at every position from a zero state. tokens: (T,) -> (T, V) int32."""
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be a 1-D sequence (T,), got shape {tokens.shape}")
    _, logits = jax.lax.scan(lambda h, t: step(params, h, t, noise), init_state(params), tokens)
    return logits


def logits_to_float(logits: jax.Array) -> jax.Array:
    """The one conversion out of the integer domain: FRAC-scale int32 logits -> float32 nats."""
    return logits.astype(jnp.float32) / ONE


def nll(logits_int: jax.Array, targets: jax.Array) -> jax.Array:
    """Summed next-token negative log-likelihood (nats). logits_int: (..., T, V), targets: (..., T)."""
    logp = jax.nn.log_softmax(logits_to_float(logits_int), axis=-1)
    return -jnp.sum(jnp.take_along_axis(logp, targets[..., None], axis=-1))


# ---------------------------------------------------------------------------
# Initialisation and conversions
# ---------------------------------------------------------------------------


def init_params(key: jax.Array, vocab_size: int, hidden: int, n_layers: int = 1) -> PyTree:
    """Random int8 parameters with the real-valued distribution of :func:`mingru.init_params`."""
    if not isinstance(hidden, int) or hidden < 2:
        raise ValueError(f"hidden must be an integer >= 2, got {hidden!r}")
    fp = mingru.init_params(key, vocab_size, hidden, n_layers)
    return quantise(fp)


def _leaf_scale(path: tuple, leaf_shape: tuple[int, ...]) -> int:
    name = getattr(path[-1], "key", None)
    if len(leaf_shape) == 2 and name != "embed":
        return 1 << w_shift(leaf_shape[1])
    return ONE


def quantise(fparams: PyTree) -> PyTree:
    """Float :mod:`mingru` parameters -> int8 parameters (round to nearest, saturate)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: sat8(jnp.round(jnp.asarray(x) * _leaf_scale(p, jnp.shape(x))).astype(jnp.int32)), fparams
    )


def dequantise(params: PyTree, dtype=jnp.float32) -> PyTree:
    """int8 parameters -> their real values, a :mod:`mingru` parameter tree (gains as ``g``)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.asarray(x, dtype) / _leaf_scale(p, jnp.shape(x)), params
    )


def reference_apply(params: PyTree, tokens: jax.Array, dtype=jnp.float32) -> jax.Array:
    """Float reference of :func:`apply` in ``dtype`` (float64 in tests, under ``jax.enable_x64``):
    the same real-valued computation with exact sigmoid, square root and division and no
    rounding, keeping the saturations. Returns real-valued logits (T, V)."""
    fp = dequantise(params, dtype)
    lim = QMAX / ONE

    def sat(v):
        return jnp.clip(v, -lim, lim)

    def norm(x, g):
        rms = jnp.sqrt(jnp.mean(x * x, -1, keepdims=True))
        return sat(x / jnp.maximum(rms, 1.0 / ONE) * (1 + g))

    def body(h, tok):
        x = fp["embed"][tok]
        hs = []
        for i, lp in enumerate(fp["layers"]):
            u = norm(x, lp["g"])
            z = jax.nn.sigmoid(sat(u @ lp["Wz"].T + lp["bz"]))
            c = sat(u @ lp["Wh"].T + lp["bh"])
            hn = sat((1 - z) * h[i] + z * c)
            hs.append(hn)
            x = sat(x + hn)
        u = norm(x, fp["head"]["g"])
        return jnp.stack(hs), u @ fp["head"]["W"].T + fp["head"]["b"]

    h0 = jnp.zeros((len(fp["layers"]), fp["embed"].shape[1]), fp["embed"].dtype)
    _, logits = jax.lax.scan(body, h0, jnp.asarray(tokens))
    return logits


# ---------------------------------------------------------------------------
# Integer EGGROLL
# ---------------------------------------------------------------------------


def noise_table(seed: int = 0, size: int = 1 << 16, std: float = 8.0) -> np.ndarray:
    """The one shared table of rounded Gaussians every member slices its noise from. -> (size,) int8"""
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if not 0.5 <= std <= 32:
        raise ValueError(f"std must be in [0.5, 32], got {std}")
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.standard_normal(size) * std), -4 * std, 4 * std).astype(np.int8)


def _mix(h: jax.Array) -> jax.Array:
    """A 32-bit integer hash (xor-shift-multiply finaliser)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x7FEB352D)
    h = h ^ (h >> 15)
    h = h * jnp.uint32(0x846CA68B)
    return h ^ (h >> 16)


def table_offset(seed, generation, pair, leaf, span: int, table_size: int) -> jax.Array:
    """Start of a member's slice of ``span`` entries in the table, hashed from its indices."""
    u = lambda v: jnp.asarray(v).astype(jnp.uint32)
    h = _mix(u(seed) ^ _mix(u(generation) * jnp.uint32(0x9E3779B1) + _mix(u(pair) * jnp.uint32(0x85EBCA77) + u(leaf))))
    return (h % jnp.uint32(table_size - span + 1)).astype(jnp.int32)


class IntESState(NamedTuple):
    params: PyTree  # int8 leaves
    table: jax.Array  # (S,) int8, shared by all members
    seed: jax.Array  # uint32 scalar
    generation: jax.Array  # int32 scalar


@dataclasses.dataclass(frozen=True)
class IntEGGROLL:
    """Integer EGGROLL with antithetic pairs.

    population: N (even, >= 2). rank: r of every matrix perturbation (clipped to min(m, n)).
    sigma_shift: the perturbation ``A B^T`` is scaled by ``2**-sigma_shift`` (in [0, 15]).
    noise_std: standard deviation of the table's rounded Gaussians (in [0.5, 32]).
    threshold: a weight moves by ``sign(G)`` where ``|G|`` exceeds ``threshold`` standard
    deviations of ``G`` under random votes (``sqrt(P r) noise_std^2``), fixed at construction.
    """

    population: int = 64
    rank: int = 1
    sigma_shift: int = 4
    noise_std: float = 8.0
    threshold: float = 1.0
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
        if not (isinstance(self.threshold, (int, float)) and self.threshold >= 0):
            raise ValueError(f"threshold must be a number >= 0, got {self.threshold!r}")

    @property
    def num_pairs(self) -> int:
        return self.population // 2

    def leaf_rank(self, shape: tuple[int, ...]) -> int:
        return min(self.rank, *shape)

    def _span(self, shape: tuple[int, ...]) -> int:
        if len(shape) == 2:
            return (shape[0] + shape[1]) * self.leaf_rank(shape)
        return 2 * int(np.prod(shape))

    def int_threshold(self, shape: tuple[int, ...]) -> int:
        """The integer vote threshold of a leaf of this shape."""
        r = self.leaf_rank(shape) if len(shape) == 2 else 1
        return int(round(self.threshold * math.sqrt(self.num_pairs * r) * self.noise_std**2))

    def init(self, seed: int, params: PyTree) -> IntESState:
        for leaf in jax.tree_util.tree_leaves(params):
            if jnp.asarray(leaf).dtype != jnp.int8:
                raise ValueError(f"params leaves must be int8, got dtype {jnp.asarray(leaf).dtype}")
            if self._span(jnp.shape(leaf)) > self.table_size:
                raise ValueError(f"table_size must be >= {self._span(jnp.shape(leaf))} for a leaf of shape {jnp.shape(leaf)}")
        table = jnp.asarray(noise_table(self.table_seed, self.table_size, self.noise_std))
        return IntESState(params, table, jnp.asarray(seed, jnp.uint32), jnp.zeros((), jnp.int32))

    def _pair_noise(self, state: IntESState, pair: jax.Array, sign: jax.Array) -> PyTree:
        leaves, treedef = jax.tree_util.tree_flatten(state.params)
        out = []
        for j, leaf in enumerate(leaves):
            span = self._span(leaf.shape)
            off = table_offset(state.seed, state.generation, pair, j, span, self.table_size)
            sl = jax.lax.dynamic_slice(state.table, (off,), (span,))
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
        return self._pair_noise(state, member // 2, 1 - 2 * (member % 2))

    def member_params(self, state: IntESState, member: jax.Array) -> PyTree:
        """Materialised perturbed weights of one member, as int32 at scale ``2**sigma_shift``
        (matrices) — the reference path; see :func:`apply_materialised`."""
        return materialise(state.params, self.member_noise(state, member))

    def evaluate(self, state: IntESState, windows: jax.Array) -> jax.Array:
        """Fitness (summed log-likelihood of ``windows`` (B, T)) of every member. -> (N,) float32"""

        def fit(i):
            nz = self.member_noise(state, i)
            logits = jax.vmap(lambda w: apply(state.params, w[:-1], nz))(windows)
            return -nll(logits, windows[:, 1:])

        return jax.vmap(fit)(jnp.arange(self.population))

    def votes(self, fitness: jax.Array) -> jax.Array:
        """Antithetic votes ``sign(f_+ - f_-)`` per pair. (N,) -> (P,) int32"""
        return jnp.sign(fitness[0::2] - fitness[1::2]).astype(jnp.int32)

    def aggregate(self, state: IntESState, votes: jax.Array) -> PyTree:
        """``G = sum_p w_p A_p B_p^T`` per matrix (``sum_p w_p a_p b_p`` per vector), int32."""
        noise = jax.vmap(lambda p: self._pair_noise(state, p, jnp.int32(1)))(jnp.arange(self.num_pairs))

        def leaf(p, n):
            if isinstance(n, IntLowRank):
                P, m, r = n.A.shape
                Aw = (n.A.astype(jnp.int32) * votes[:, None, None]).transpose(1, 0, 2).reshape(m, P * r)
                Bf = n.B.astype(jnp.int32).transpose(1, 0, 2).reshape(p.shape[1], P * r)
                return _dot(Aw, Bf)
            return jnp.tensordot(votes, n.a.astype(jnp.int32) * n.b.astype(jnp.int32), axes=1)

        return jax.tree_util.tree_map(leaf, state.params, noise, is_leaf=lambda x: isinstance(x, (IntLowRank, IntVec)))

    def tell(self, state: IntESState, fitness: jax.Array) -> tuple[IntESState, dict[str, jax.Array]]:
        """Integer update: ``W <- sat8(W + sign(G) [|G| > threshold])``. fitness: (N,)."""
        G = self.aggregate(state, self.votes(fitness))

        def upd(p, g):
            thr = self.int_threshold(p.shape)
            move = jnp.where(jnp.abs(g) > thr, jnp.sign(g), 0)
            return sat8(p.astype(jnp.int32) + move), jnp.sum(move != 0)

        pairs = jax.tree_util.tree_map(upd, state.params, G)
        params = jax.tree_util.tree_map(lambda _, pr: pr[0], state.params, pairs)
        moved = sum(pr[1] for pr in jax.tree_util.tree_leaves(pairs, is_leaf=lambda x: isinstance(x, tuple)))
        new = IntESState(params, state.table, state.seed, state.generation + 1)
        return new, {"fitness_mean": fitness.mean(), "fitness_max": fitness.max(), "moved": moved}

    def step(self, state: IntESState, windows: jax.Array) -> tuple[IntESState, dict[str, jax.Array]]:
        """One generation on the batch ``windows`` (B, T)."""
        return self.tell(state, self.evaluate(state, windows))


def materialise(params: PyTree, noise: PyTree) -> PyTree:
    """Integer reference path: every matrix as ``W * 2**k + s * A B^T`` (int32, scale ``2**k``
    with ``k = sigma_shift``); vectors and the embedding exactly as the factored path sees them."""

    def leaf(p, n):
        p = p.astype(jnp.int32)
        if isinstance(n, IntLowRank):
            return (p << n.shift) + n.sign * (n.A.astype(jnp.int32) @ n.B.astype(jnp.int32).T)
        return int_vec(p, n)

    return jax.tree_util.tree_map(leaf, params, noise, is_leaf=lambda x: isinstance(x, (IntLowRank, IntVec)))


def apply_materialised(params: PyTree, noise: PyTree, tokens: jax.Array, shift: int) -> jax.Array:
    """:func:`apply` for a perturbed member computed from materialised weights (test reference)."""
    wm = materialise(params, noise)
    d = params["embed"].shape[1]
    s = w_shift(d)

    def lin(x, W):  # W at scale 2**shift: floor-shift the exact product back, like the factored path
        return jnp.right_shift(_dot(x.astype(jnp.int32), W), shift)

    def body(h, tok):
        x = sat8(jnp.right_shift(wm["embed"][tok], shift))
        hs = []
        for i, lp in enumerate(wm["layers"]):
            u = int_norm(x, lp["g"])
            a = jnp.clip(rshift_round(lin(u, lp["Wz"]), s) + lp["bz"], -QMAX, QMAX)
            z = jnp.asarray(SIGMOID_LUT)[a + QMAX]
            c = jnp.clip(rshift_round(lin(u, lp["Wh"]), s) + lp["bh"], -QMAX, QMAX)
            hn = sat8(rshift_round(h[i].astype(jnp.int32) * ((1 << GATE_BITS) - z) + c * z, GATE_BITS))
            hs.append(hn)
            x = sat8(x.astype(jnp.int32) + hn.astype(jnp.int32))
        u = int_norm(x, wm["head"]["g"])
        return jnp.stack(hs), rshift_round(lin(u, wm["head"]["W"]), s) + wm["head"]["b"]

    _, logits = jax.lax.scan(body, init_state(params), jnp.asarray(tokens))
    return logits


# ---------------------------------------------------------------------------
# The integer-only check
# ---------------------------------------------------------------------------


def _sub_jaxprs(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jax.extend.core.Jaxpr):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _sub_jaxprs(v)


def jaxpr_dtypes(jaxpr) -> dict[str, set[str]]:
    """Every dtype in a (closed) jaxpr and its sub-jaxprs (scan, cond, pjit, ...), mapped to the
    primitives that produce or consume it. Walks input, constant, and every equation's variables."""
    if isinstance(jaxpr, jax.extend.core.ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    found: dict[str, set[str]] = {}

    def note(v, where):
        aval = getattr(v, "aval", None)
        dt = getattr(aval, "dtype", None)
        if dt is not None:
            found.setdefault(str(dt), set()).add(where)

    def walk(jx):
        for v in list(jx.invars) + list(jx.constvars):
            note(v, "input")
        for eqn in jx.eqns:
            for v in list(eqn.invars) + list(eqn.outvars):
                note(v, eqn.primitive.name)
            for p in eqn.params.values():
                for sub in _sub_jaxprs(p):
                    walk(sub)

    walk(jaxpr)
    return found


def float_dtypes_in(fn: Callable, *args) -> dict[str, set[str]]:
    """Floating-point (and complex) dtypes in the jaxpr of ``fn(*args)`` -> {dtype: primitives}."""
    found = jaxpr_dtypes(jax.make_jaxpr(fn)(*args))
    return {d: p for d, p in found.items() if np.issubdtype(np.dtype(d), np.inexact)}


def member_forward(es: IntEGGROLL, state: IntESState, member: jax.Array, tokens: jax.Array) -> jax.Array:
    """A population member's whole forward, noise generation included: (T,) -> (T, V) int32."""
    return apply(state.params, tokens, es.member_noise(state, member))


# ---------------------------------------------------------------------------
# Training: integer EGGROLL, float EGGROLL and backprop on the same data
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Shared settings of the three training methods. Every generation (or backprop step) sees
    ``batch`` random training windows of ``context`` tokens; validation bits/char is measured
    every ``eval_every`` generations on ``eval_windows`` fixed windows of ``eval_length`` tokens,
    each read from a zero state."""

    hidden: int = 16
    n_layers: int = 1
    context: int = 32  # window length T (T - 1 predictions)
    batch: int = 4  # windows per generation
    generations: int = 400
    eval_every: int = 50
    eval_windows: int = 16
    eval_length: int = 128
    population: int = 128
    rank: int = 4
    # integer EGGROLL
    sigma_shift: int = 5
    noise_std: float = 8.0
    threshold: float = 0.5
    # float baselines
    sigma: float = 0.03
    es_lr: float = 0.01
    bp_lr: float = 0.01

    def __post_init__(self) -> None:
        for name in ("hidden", "n_layers", "batch", "generations", "eval_every", "eval_windows", "population", "rank"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.context < 2 or self.eval_length < 2:
            raise ValueError(f"context and eval_length must be >= 2, got {self.context}, {self.eval_length}")
        if self.generations % self.eval_every:
            raise ValueError(f"generations ({self.generations}) must be a multiple of eval_every ({self.eval_every})")


class History(NamedTuple):
    """One method's run over S seeds trained side by side (vmapped)."""

    method: str
    seeds: tuple[int, ...]
    generations: np.ndarray  # (K,) generation at each evaluation (0 = init)
    wall: np.ndarray  # (K,) cumulative training seconds for all S seeds together (evaluation excluded)
    val_bpc: np.ndarray  # (S, K) validation bits/char
    checkpoints: dict  # generation -> params with a leading seed axis
    params: PyTree  # final parameters, leading seed axis
    num_params: int  # per model


def _stack(trees: list) -> PyTree:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def train(method: str, cfg: RunConfig, seeds: tuple[int, ...], train_tokens: np.ndarray, valid_tokens: np.ndarray,
          vocab_size: int, checkpoint_at: tuple[int, ...] = ()) -> History:
    """Train ``method`` (``int8_es``, ``float_es`` or ``backprop``) from each seed in ``seeds``
    (all seeds vmapped in one program) for ``cfg.generations`` steps. Seed ``s`` fixes the
    initial parameters, the training windows and the noise; the same seed gives the same
    initial real-valued parameters and windows to every method."""
    from lowrank_es.tasks.text_data import eval_windows, sample_windows

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    train_j = jnp.asarray(train_tokens)
    ev = jnp.asarray(eval_windows(valid_tokens, cfg.eval_windows, cfg.eval_length))
    n_pred = ev.shape[0] * (ev.shape[1] - 1)
    keys = [jax.random.split(jax.random.key(s), 3) for s in seeds]
    k_data = jnp.stack([k[1] for k in keys])

    def batch_at(kd, g):
        return sample_windows(jax.random.fold_in(kd, g), train_j, cfg.batch, cfg.context)

    fparams = [mingru.init_params(k[0], vocab_size, cfg.hidden, cfg.n_layers) for k in keys]
    if method == "int8_es":
        es = IntEGGROLL(cfg.population, cfg.rank, cfg.sigma_shift, cfg.noise_std, cfg.threshold)
        state = _stack([es.init(s, quantise(p)) for s, p in zip(seeds, fparams)])

        def gen(state, kd, g):
            return es.step(state, batch_at(kd, g))[0]

        get_params = lambda s: s.params
        eval_nll = lambda p: nll(jax.vmap(lambda x: apply(p, x[:-1]))(ev), ev[:, 1:])
    else:
        eval_nll = lambda p: jnp.sum(jax.vmap(mingru.loss, (None, 0))(p, ev)) * (ev.shape[1] - 1)
        if method == "float_es":
            es = EGGROLL(sigma=cfg.sigma, population=cfg.population, rank=cfg.rank,
                         optimizer=optax.adam(cfg.es_lr), clip_rank=True)
            state = _stack([es.init(k[2], p) for k, p in zip(keys, fparams)])

            def gen(state, kd, g):
                w = batch_at(kd, g)
                fit = lambda p, nz, i: -jnp.sum(jax.vmap(mingru.loss, (None, 0, None))(p, w, nz))
                return es.step(state, fit)[0]

            get_params = lambda s: s.params
        else:
            opt = optax.adam(cfg.bp_lr)
            state = _stack([(p, opt.init(p)) for p in fparams])

            def gen(state, kd, g):
                p, o = state
                grads = jax.grad(lambda q: jnp.mean(jax.vmap(mingru.loss, (None, 0))(q, batch_at(kd, g))))(p)
                upd, o = opt.update(grads, o, p)
                return optax.apply_updates(p, upd), o

            get_params = lambda s: s[0]

    def one_chunk(state, kd, g0):
        return jax.lax.scan(lambda s, g: (gen(s, kd, g), None), state, g0 + jnp.arange(cfg.eval_every))[0]

    chunk = jax.jit(jax.vmap(one_chunk, (0, 0, None)))
    evaluate = jax.jit(jax.vmap(lambda s: bits_per_char(eval_nll(get_params(s)) / n_pred)))

    gens, walls, bpcs, ckpts = [0], [0.0], [np.asarray(evaluate(state))], {}
    if 0 in checkpoint_at:
        ckpts[0] = get_params(state)
    chunk = chunk.lower(state, k_data, jnp.int32(0)).compile()  # compile outside the timed region
    wall = 0.0
    for g in range(0, cfg.generations, cfg.eval_every):
        t0 = time.perf_counter()
        state = jax.block_until_ready(chunk(state, k_data, jnp.int32(g)))
        wall += time.perf_counter() - t0
        gens.append(g + cfg.eval_every)
        walls.append(wall)
        bpcs.append(np.asarray(evaluate(state)))
        if g + cfg.eval_every in checkpoint_at:
            ckpts[g + cfg.eval_every] = get_params(state)
    params = get_params(state)
    n = int(sum(x[0].size for x in jax.tree_util.tree_leaves(params)))
    return History(method, seeds, np.array(gens), np.array(walls), np.stack(bpcs, axis=1), ckpts, params, n)


def unstack(tree: PyTree, i: int) -> PyTree:
    """Seed ``i`` of a tree with a leading seed axis."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def max_rise(bpc: np.ndarray) -> np.ndarray:
    """Largest rise of a curve above its best value so far: ``max_t (b_t - min_{s<=t} b_s)``.
    bpc: (..., K) -> (...)"""
    bpc = np.asarray(bpc)
    return np.max(bpc - np.minimum.accumulate(bpc, axis=-1), axis=-1)


METHODS = ("int8_es", "float_es", "backprop")


def sample(params: PyTree, key: jax.Array, length: int, prompt: np.ndarray, integer: bool) -> np.ndarray:
    """Sample ``length`` tokens after ``prompt`` (temperature 1). Integer or float model."""
    mod_step = step if integer else mingru.step
    h = init_state(params) if integer else mingru.init_state(params)

    def to_float(lg):
        return logits_to_float(lg) if integer else lg

    @jax.jit
    def run(h, key):
        def feed(h, t):
            h, lg = mod_step(params, h, t)
            return h, lg

        h, lgs = jax.lax.scan(feed, h, jnp.asarray(prompt))

        def gen(carry, k):
            h, lg = carry
            t = jax.random.categorical(k, to_float(lg))
            h, lg = mod_step(params, h, t)
            return (h, lg), t

        _, toks = jax.lax.scan(gen, (h, lgs[-1]), jax.random.split(key, length))
        return toks

    return np.asarray(run(h, key))


# ---------------------------------------------------------------------------
# Figures and the default experiment of notebook 04
# ---------------------------------------------------------------------------

LABELS = {"int8_es": "int8 EGGROLL", "float_es": "float EGGROLL", "backprop": "backprop (Adam)"}


def full_config() -> RunConfig:
    """The longer run (``FULL=1``): same model, 2x the population, 5x the generations."""
    return RunConfig(population=256, generations=2000, eval_every=200, eval_windows=32)


def compare(cfg: RunConfig, seeds: tuple[int, ...] = (0, 1, 2), checkpoint_at: tuple[int, ...] = ()) -> dict:
    """Train the three methods on tiny-shakespeare (char vocabulary) from the same seeds and
    compute the exact n-gram baselines. -> {"runs": {method: History}, "unigram": bits,
    "bigram": bits (add-one), "bigram_kn": bits, "vocab": Vocab, "config": cfg}"""
    from lowrank_es.tasks import ngram
    from lowrank_es.tasks.text_data import load_corpus

    c = load_corpus("char")
    V = c.vocab.size
    runs = {m: train(m, cfg, seeds, c.train, c.valid, V, checkpoint_at) for m in METHODS}
    return {
        "runs": runs,
        "unigram": ngram.unigram_bits(c.train, c.valid, V),
        "bigram": ngram.bigram_bits(c.train, c.valid, V),
        "bigram_kn": ngram.bigram_bits(c.train, c.valid, V, "kneser_ney"),
        "vocab": c.vocab,
        "config": cfg,
    }


def plot_curves(result: dict, title: str | None = None):
    """Validation bits/char vs generations and vs wall-clock (mean over seeds, min-max band),
    with the unigram and bigram lines. -> matplotlib Figure"""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colors = {"int8_es": "C3", "float_es": "C0", "backprop": "C2"}
    for m, h in result["runs"].items():
        mean, lo, hi = h.val_bpc.mean(0), h.val_bpc.min(0), h.val_bpc.max(0)
        # wall-clock on a log axis: drop the evaluation at t = 0 (the untrained model)
        for ax, x, sl in zip(axes, (h.generations, h.wall), (slice(None), slice(1, None))):
            ax.plot(x[sl], mean[sl], "-o", ms=3, color=colors[m], label=f"{LABELS[m]} ({len(h.seeds)} seeds)")
            ax.fill_between(x[sl], lo[sl], hi[sl], color=colors[m], alpha=0.2)
    for ax in axes:
        ax.axhline(result["unigram"], color="0.4", ls=":", label=f"unigram {result['unigram']:.3f}")
        ax.axhline(result["bigram"], color="k", ls="--", label=f"bigram (add-one) {result['bigram']:.3f}")
        ax.set_ylim(top=min(7.0, max(h.val_bpc.max() for h in result["runs"].values()) + 0.1))
    axes[0].set_xlabel("generation (backprop: step)")
    axes[1].set_xlabel("training wall-clock, all seeds together (s)")
    axes[1].set_xscale("log")
    axes[0].set_ylabel("validation bits / char")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or "Validation bits/char of the three training methods")
    fig.tight_layout()
    return fig


def final_bpc(h: History) -> np.ndarray:
    """Final validation bits/char of every seed. -> (S,)"""
    return h.val_bpc[:, -1]


def weight_histogram(params_int: PyTree, params_init: PyTree | None = None, title: str | None = None):
    """Histogram of every int8 parameter (and of the initial ones). -> matplotlib Figure"""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = np.arange(-128, 129, 4)
    flat = lambda t: np.concatenate([np.asarray(x, np.int32).ravel() for x in jax.tree_util.tree_leaves(t)])
    if params_init is not None:
        ax.hist(flat(params_init), bins=bins, alpha=0.5, color="0.5", label="initial")
    w = flat(params_int)
    ax.hist(w, bins=bins, alpha=0.7, color="C3", label="after integer EGGROLL")
    ax.set_xlabel("int8 parameter value")
    ax.set_ylabel("count")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(title or f"int8 parameters: {np.mean(np.abs(w) == 127):.2%} saturated at ±127")
    fig.tight_layout()
    return fig

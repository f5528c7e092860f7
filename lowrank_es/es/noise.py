"""Standard-normal member noise as a pure function of a JAX key: two generators.

``"prng"``: ``jax.random.normal`` with the key's own implementation (threefry2x32 for
``jax.random.PRNGKey`` / ``jax.random.key``; ``rbg`` or ``unsafe_rbg`` for keys made with
``impl=``). Exact Gaussians; about 25 integer operations per 32 random bits plus an inverse-erf
transform per number.

``"table"``: windows of a fixed table of Gaussian quantiles at hashed offsets, with hashed
signs. The table holds ``2**16`` values ``a q + b q**3`` of the midpoint quantiles
``q_k = Phi^-1((k + 1/2) / 2**16)``, ``a`` and ``b`` fitted so that the table's mean is 0, its
variance 1 and its fourth moment 3 (the Gaussian's), in a fixed shuffled order. A vector of
``L`` numbers is cut into windows of :data:`WINDOW` = 16 entries; window ``w`` of a key
hashes ``(key, w)`` to 32 bits, whose top 16 bits are the window's cyclic offset into the
table and whose low 16 bits are the signs of its 16 entries. Per window: one 32-bit hash and
a 64-byte copy; on the 2-core CPU the population's noise takes a sixth to an eighth of the CPU
time threefry2x32 takes, and ``rbg`` / ``unsafe_rbg`` take twice threefry's (benchmarks/RESULTS.md).

What holds exactly for ``"table"`` (taking the hash's bits as uniform and independent):

* every entry has the table's law (offsets are uniform over the cyclic table): mean 0,
  variance 1, third moment 0, fourth moment 3 (the float32 table's moments in float64:
  within 1e-8 of these);
* any two distinct entries are uncorrelated, in one vector or across keys (independent
  signs), and entries of different windows or different keys are independent. Hence member
  noise is independent across members, leaves and generations (each has its own key), and
  rank-``r`` factors, whose ``r`` columns are separate vectors, give ``E = A B^T / sqrt(r)``
  entries of mean 0, variance 1 and fourth moment ``3 + 6 / r``.

What is not Gaussian: the law is a symmetric distribution on ``2**16`` values (up to
``4.33`` standard deviations; sixth moment 14.98 against 15), and the 16 entries of one
window share one offset, so their squares are weakly dependent:
``E[x_a**2 x_b**2] - 1`` is the table's lag correlation of its squares, at most 0.016 in
magnitude for lags 1-15 (:func:`window_square_correlations`, pinned by a test; 0 for i.i.d.).
A table sliced without random signs would not do: overlapping slices repeat the same numbers
at shifted positions, and in one slice neighbouring entries carry the table's (nonzero)
lag correlations.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

#: The noise generators; ``"auto"`` picks :data:`DEFAULT_NOISE` for the default backend.
NOISE_KINDS = ("table", "prng")
#: The generator ``"auto"`` uses per platform (``jax.default_backend()``). CPU: measured side
#: by side (benchmarks/RESULTS.md). GPU / TPU: not yet measured; the table is chosen there for
#: its operation count (a hash per 16 numbers and a coalesced copy, against threefry's ~25
#: integer operations per number and an inverse erf); ``python -m benchmarks.throughput``'s
#: noise profile on the device decides. Platforms not listed use ``"table"``.
DEFAULT_NOISE = {"cpu": "table", "gpu": "table", "tpu": "table"}
TABLE_BITS = 16
WINDOW = 16
_TABLE_SEED = 20251120


def resolve(kind: str) -> str:
    """``"auto"`` -> the default generator of the current backend; validates ``kind``."""
    if kind == "auto":
        return DEFAULT_NOISE.get(jax.default_backend(), "table")
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {('auto',) + NOISE_KINDS}, got {kind!r}")
    return kind


@functools.lru_cache(maxsize=None)
def gaussian_table() -> np.ndarray:
    """The fixed table: ``2**TABLE_BITS`` float32 values with mean 0, variance 1 and fourth
    moment 3, in a fixed shuffled order. -> (2**TABLE_BITS,) float32"""
    from scipy.special import erfinv

    size = 1 << TABLE_BITS
    q = math.sqrt(2.0) * erfinv(2.0 * (np.arange(size) + 0.5) / size - 1.0)
    m2, m4, m6, m8, m10, m12 = ((q ** k).mean() for k in (2, 4, 6, 8, 10, 12))
    a, b = 1.0, 0.0
    for _ in range(50):  # Newton on (variance - 1, fourth moment - 3) of a q + b q^3
        v = a * a * m2 + 2 * a * b * m4 + b * b * m6 - 1.0
        f = a**4 * m4 + 4 * a**3 * b * m6 + 6 * a * a * b * b * m8 + 4 * a * b**3 * m10 + b**4 * m12 - 3.0
        jac = np.array([[2 * a * m2 + 2 * b * m4, 2 * a * m4 + 2 * b * m6],
                        [4 * a**3 * m4 + 12 * a * a * b * m6 + 12 * a * b * b * m8 + 4 * b**3 * m10,
                         4 * a**3 * m6 + 12 * a * a * b * m8 + 12 * a * b * b * m10 + 4 * b**3 * m12]])
        da, db = np.linalg.solve(jac, [v, f])
        a, b = a - da, b - db
    t = (a * q + b * q**3).astype(np.float32)
    return t[np.random.default_rng(_TABLE_SEED).permutation(size)]


def window_square_correlations() -> np.ndarray:
    """``E[x_a^2 x_{a+d}^2] - 1`` for two entries ``d = 1 .. WINDOW - 1`` apart in one window
    (for entries in different windows it is 0). -> (WINDOW - 1,) float64"""
    t2 = gaussian_table().astype(np.float64) ** 2
    return np.array([np.mean(t2 * np.roll(t2, -d)) - 1.0 for d in range(1, WINDOW)])


def mix32(h: jax.Array) -> jax.Array:
    """32-bit avalanche finaliser (MurmurHash3's fmix32): a bijection of uint32."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _seed_words(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two uint32 words from a key of any implementation (typed or raw uint32)."""
    data = key if jnp.issubdtype(key.dtype, jnp.unsignedinteger) else jax.random.key_data(key)
    words = data.reshape(-1).astype(jnp.uint32)
    s0, s1 = words[0::2], words[1::2]
    return (jnp.bitwise_xor.reduce(s0) if s0.shape[0] > 1 else s0[0],
            jnp.bitwise_xor.reduce(s1) if s1.shape[0] > 1 else s1[0])


def _table_normal(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    lead, length = (shape[:-1], shape[-1]) if shape else ((), 1)
    vectors = int(np.prod(lead, dtype=np.int64))
    windows = -(-length // WINDOW)  # each vector starts a fresh window
    if vectors * windows >= 2**32:
        raise ValueError(f"shape {shape} needs more than 2**32 noise windows")
    s0, s1 = _seed_words(key)
    i = jnp.arange(vectors * windows, dtype=jnp.uint32)
    h = mix32(mix32(i * jnp.uint32(0x9E3779B9) + s0) ^ s1)
    table = np.asarray(gaussian_table())
    table = jnp.asarray(np.concatenate([table, table[:WINDOW]]))  # cyclic: offsets are uniform
    offsets = (h >> (32 - TABLE_BITS)).astype(jnp.int32)
    rows = jax.vmap(lambda o: jax.lax.dynamic_slice(table, (o,), (WINDOW,)))(offsets)
    # bit k of h's low half becomes the sign of entry k (xor into the float's sign bit)
    signs = (h[:, None] << (31 - jnp.arange(WINDOW, dtype=jnp.uint32))) & jnp.uint32(0x80000000)
    vals = jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(rows, jnp.uint32) ^ signs, jnp.float32)
    vals = vals.reshape(vectors, windows * WINDOW)[:, :length]
    return vals.reshape(shape).astype(dtype)


def standard_normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32, kind: str = "auto") -> jax.Array:
    """Mean-0, variance-1 noise of ``shape``, a pure function of ``key``.

    ``kind``: ``"prng"`` (``jax.random.normal``), ``"table"`` (see the module docstring;
    each slice along the last axis is a separate vector) or ``"auto"``.
    """
    shape = tuple(int(s) for s in shape)
    if resolve(kind) == "prng":
        return jax.random.normal(key, shape, dtype)
    return _table_normal(key, shape, dtype)

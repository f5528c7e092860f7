"""An integer-only minGRU language model and its integer log-likelihood.

Same tree layout and parameter count as :mod:`lowrank_es.models.mingru`, every leaf int8.
Activations are int8 in fixed point with ``FRAC = 4`` fractional bits (real value ``q / 16``,
range ``[-127/16, 127/16]``). A weight matrix ``W`` of shape ``(m, n)`` has real value
``W / 2**w_shift(n)`` with ``w_shift(n) = FRAC + ceil(log2(n) / 2)``, so int8 weights of standard
deviation ~16 represent the usual ``1/sqrt(n)`` scale. Biases and gains are int8 with ``FRAC``
bits; the embedding holds int8 activations. Every operation is an integer operation:

- linear: int8 x int8 products accumulated in int32, a rounding right shift by ``w_shift`` back to
  the activation scale, plus the bias, then saturation to ``[-127, 127]`` (with the gate, the only
  nonlinearity); the layers of :mod:`lowrank_es.es.integer` add a member's low-rank noise.
- normalisation: ``u = x * 16 / rms(x)`` with ``rms = ISQRT[sum(x^2) // n]`` from an integer
  square-root table, times the gain ``(16 + g) / 16``; integer divisions only.
- update gate: ``z = SIGMOID[a + 127]``, a 255-entry table of ``round(128 sigmoid(a / 16))``, so
  ``z`` is in ``[0, 128]`` and ``h' = (h (128 - z) + c z + 64) >> 7``.
- logits: the head's int32 output in the ``FRAC`` scale (nats).

Integer log-likelihood (:func:`log_softmax`, after nano-egg's table-based log-likelihood)
---------------------------------------------------------------------------------------------
``log p(t) = l_t - max(l) - ln sum_v exp(l_v - max(l))`` with ``exp`` from a table of
``round(2**16 exp(-d / 16))`` over the gaps ``d = max(l) - l_v`` (0 past ``EXP_CUTOFF``), and
``ln S`` of the int32 sum ``S`` as ``k ln 2`` (``k`` = position of the leading bit, by
count-leading-zeros) plus ``ln(mantissa)`` from a table of the next 10 bits. The result is int32
in units of ``2**-LOGP_FRAC`` nats, within about 0.01 nats of the exact value (tested); only
integer operations, so a whole EGGROLL generation, fitness included, stays integer.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.es.integer import (FRAC, ONE, QMAX, int_dot, int_embedding, int_linear, int_vec,
                                   materialise, rshift_round, sat8)
from lowrank_es.models import mingru

PyTree = Any

GATE_BITS = 7  # the gate z is in [0, 2**GATE_BITS]

# Integer lookup tables (built once with numpy, used as int32 constants).
SIGMOID_LUT = np.round((1 << GATE_BITS) / (1.0 + np.exp(-np.arange(-QMAX, QMAX + 1) / ONE))).astype(np.int32)
ISQRT_LUT = np.round(np.sqrt(np.arange(QMAX * QMAX + 1))).astype(np.int32)

LOGP_FRAC = 8  # log-probabilities in units of 1/256 nat
EXP_BITS = 16  # exp table values in units of 2**-16
EXP_CUTOFF = int(math.ceil(ONE * math.log(2.0 ** (EXP_BITS + 1))))  # gaps past this round to 0
EXP_LUT = np.round(2.0**EXP_BITS * np.exp(-np.arange(EXP_CUTOFF + 1) / ONE)).astype(np.int32)
MANT_BITS = 10
LN_MANT_LUT = np.round((1 << LOGP_FRAC) * np.log1p(np.arange(1 << MANT_BITS) / (1 << MANT_BITS))).astype(np.int32)
LN2_LUT = np.round((1 << LOGP_FRAC) * np.log(2.0) * (np.arange(32) - EXP_BITS)).astype(np.int32)


def w_shift(fan_in: int) -> int:
    """Right shift that maps an int32 accumulator of ``fan_in`` products back to the FRAC scale."""
    return FRAC + int(math.ceil(math.log2(fan_in) / 2))


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


def _none_like(tree: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda _: None, tree)


def int_norm(x: jax.Array, g: jax.Array) -> jax.Array:
    """Integer RMS normalisation with gain: ``x * 16 / rms(x) * (16 + g) / 16``. x: (..., n) int8, g: int32."""
    xi = x.astype(jnp.int32)
    n = x.shape[-1]
    ms = jnp.sum(xi * xi, axis=-1, keepdims=True) // n
    rms = jnp.maximum(jnp.asarray(ISQRT_LUT)[ms], 1)
    u = (2 * ONE * xi + rms) // (2 * rms)  # round(x * 16 / rms)
    return sat8(rshift_round(u * (ONE + g), FRAC))


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


# ---------------------------------------------------------------------------
# Log-likelihood: integer (the fitness) and exact (the measurement)
# ---------------------------------------------------------------------------


def log_softmax(logits: jax.Array) -> jax.Array:
    """Integer log-softmax of FRAC-scale int32 logits over the last axis. (..., V) -> (..., V)
    int32 in units of ``2**-LOGP_FRAC`` nats (see the module docstring)."""
    logits = logits.astype(jnp.int32)
    top = jnp.max(logits, axis=-1, keepdims=True)
    gap = jnp.minimum(top - logits, EXP_CUTOFF)
    s = jnp.sum(jnp.asarray(EXP_LUT)[gap], axis=-1, keepdims=True)  # in [2**16, V 2**16]
    k = 31 - jax.lax.clz(s)  # leading bit: s in [2**k, 2**(k+1))
    # the MANT_BITS bits after the leading one (k >= 16 > MANT_BITS, so a right shift)
    mant = jnp.right_shift(s, k - MANT_BITS) - (1 << MANT_BITS)
    ln_s = jnp.asarray(LN2_LUT)[k] + jnp.asarray(LN_MANT_LUT)[mant]  # ln(s / 2**16), 2**-LOGP_FRAC nats
    return jnp.left_shift(logits - top, LOGP_FRAC - FRAC) - ln_s


def log_likelihood(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Summed integer log-likelihood of ``targets`` (int32, ``2**-LOGP_FRAC`` nats).
    logits: (..., T, V) int32, targets: (..., T)."""
    lp = log_softmax(logits)
    return jnp.sum(jnp.take_along_axis(lp, targets[..., None].astype(jnp.int32), axis=-1))


def window_log_likelihood(params: PyTree, windows: jax.Array, noise: PyTree | None = None) -> jax.Array:
    """Integer log-likelihood of every next token of ``windows`` (B, T), each read from a zero
    state: the integer fitness of a member. -> int32 scalar (``2**-LOGP_FRAC`` nats)."""
    logits = jax.vmap(lambda w: apply(params, w[:-1], noise))(windows)
    return log_likelihood(logits, windows[:, 1:])


def logits_to_float(logits: jax.Array) -> jax.Array:
    """FRAC-scale int32 logits -> float32 nats (for measurement and sampling, outside training)."""
    return logits.astype(jnp.float32) / ONE


def nll(logits_int: jax.Array, targets: jax.Array) -> jax.Array:
    """Exact summed next-token negative log-likelihood (nats, float32) of integer logits.
    logits_int: (..., T, V), targets: (..., T)."""
    logp = jax.nn.log_softmax(logits_to_float(logits_int), axis=-1)
    return -jnp.sum(jnp.take_along_axis(logp, targets[..., None], axis=-1))


# ---------------------------------------------------------------------------
# Initialisation and conversions
# ---------------------------------------------------------------------------


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
    return jax.tree_util.tree_map_with_path(lambda p, x: jnp.asarray(x, dtype) / _leaf_scale(p, jnp.shape(x)), params)


def init_params(key: jax.Array, vocab_size: int, hidden: int, n_layers: int = 1) -> PyTree:
    """Random int8 parameters: the rounding of :func:`mingru.init_params` from the same key."""
    if not isinstance(hidden, int) or hidden < 2:
        raise ValueError(f"hidden must be an integer >= 2, got {hidden!r}")
    return quantise(mingru.init_params(key, vocab_size, hidden, n_layers))


# ---------------------------------------------------------------------------
# References for the tests
# ---------------------------------------------------------------------------


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


def apply_materialised(params: PyTree, noise: PyTree, tokens: jax.Array, shift: int) -> jax.Array:
    """:func:`apply` for a perturbed member computed from materialised weights (test reference)."""
    wm = materialise(params, noise)
    s = w_shift(params["embed"].shape[1])

    def lin(x, W):  # W at scale 2**shift: floor-shift the exact product back, like the factored path
        return jnp.right_shift(int_dot(x.astype(jnp.int32), W), shift)

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


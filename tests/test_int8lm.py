"""The integer-only LM and integer EGGROLL: a mechanical jaxpr check that no floating-point dtype
appears, integer arithmetic against a float reference within stated quantisation errors,
factored vs materialised integer perturbations (exact), the aggregated update against a
brute-force sum, and the int8 range of parameters under updates."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es import int8lm as il
from lowrank_es.models import mingru

V, D = 13, 8

_apply = jax.jit(il.apply)
_reference = jax.jit(il.reference_apply, static_argnums=2)
_cell = jax.jit(il.cell)


def _params(seed=0, n_layers=2):
    return il.init_params(jax.random.key(seed), V, D, n_layers)


def test_forward_jaxpr_has_no_float():
    params = _params()
    toks = jnp.arange(6) % V
    es = il.IntEGGROLL(population=4, rank=2)
    state = es.init(7, params)
    # the mean's forward, and a member's forward including its noise generation (hash + table slice)
    assert il.float_dtypes_in(il.apply, params, toks) == {}
    assert il.float_dtypes_in(lambda s, m, t: il.member_forward(es, s, m, t), state, jnp.int32(3), toks) == {}
    # the integer update itself (votes in, int8 parameters out) is integer too
    votes_update = lambda s, v: jax.tree_util.tree_map(
        lambda p, g: il.sat8(p.astype(jnp.int32) + jnp.sign(g)), s.params, es.aggregate(s, v))
    assert il.float_dtypes_in(votes_update, state, jnp.array([1, -1], jnp.int32)) == {}
    # the walker does see floats, including inside scan and cond sub-jaxprs
    assert "float32" in il.float_dtypes_in(mingru.apply, mingru.init_params(jax.random.key(0), V, D), toks)

    def hidden_float(x):
        def body(c, t):
            return jax.lax.cond(t > 2, lambda: c + (t.astype(jnp.float32) > 1.5).astype(jnp.int32), lambda: c), None

        return jax.lax.scan(body, x, jnp.arange(4))[0]

    found = il.float_dtypes_in(hidden_float, jnp.int32(0))
    assert set(found) == {"float32"} and "convert_element_type" in found["float32"]


def test_lookup_tables_and_rounding_shift():
    a = np.arange(-127, 128)
    np.testing.assert_array_less(np.abs(il.SIGMOID_LUT - 128 / (1 + np.exp(-a / 16))), 0.5 + 1e-9)
    s = np.arange(127 * 127 + 1)
    np.testing.assert_array_less(np.abs(il.ISQRT_LUT - np.sqrt(s)), 0.5 + 1e-9)
    x = np.random.default_rng(0).integers(-(2**20), 2**20, 1000).astype(np.int32)
    for sh in (1, 4, 7):
        np.testing.assert_array_equal(il.rshift_round(jnp.asarray(x), sh), np.floor(x / 2**sh + 0.5))


def test_integer_norm_within_quantisation_error():
    """|u_int - 16 x / rms(x) * (1 + g/16)| <= 3 LSB, and <= 0.5 LSB on average: 0.5 from the
    rounded division, 0.5 from the gain shift, the rest from the integer square root of the
    floored mean square (relative error ~ 1/rms, largest for small-rms inputs)."""
    rng = np.random.default_rng(1)
    x = rng.integers(-127, 128, (2000, 16))
    x[:1000] //= 4
    g = rng.integers(-8, 9, 16)
    u = np.asarray(il.int_norm(jnp.asarray(x, jnp.int8), jnp.asarray(g, jnp.int32))).astype(float)
    ref = np.clip(16 * x / np.sqrt(np.mean(x.astype(float) ** 2, -1, keepdims=True)) * (16 + g) / 16, -127, 127)
    err = np.abs(u - ref)
    assert err.max() <= 3.0 and err.mean() <= 0.5


def test_cell_and_forward_match_float_reference():
    """One cell step: <= 2.5 LSB (1 LSB = 1/16) max, <= 0.5 LSB mean. Whole forward (2 layers,
    16 steps, errors carried through the recurrence): logits within 0.4 nats max, 1 LSB mean."""
    rng = np.random.default_rng(2)
    for seed in range(2):
        p = _params(seed)
        lp = p["layers"][0]
        h = rng.integers(-100, 100, (64, D))
        x = rng.integers(-100, 100, (64, D))
        hn = np.asarray(_cell(lp, jnp.asarray(h, jnp.int8), jnp.asarray(x, jnp.int8))).astype(float)
        f = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), il.dequantise(lp))
        lim = 127 / 16
        xr, hr = x / 16, h / 16
        u = np.clip(xr / np.sqrt(np.mean(xr**2, -1, keepdims=True)) * (1 + f["g"]), -lim, lim)
        z = 1 / (1 + np.exp(-np.clip(u @ f["Wz"].T + f["bz"], -lim, lim)))
        c = np.clip(u @ f["Wh"].T + f["bh"], -lim, lim)
        want = np.clip((1 - z) * hr + z * c, -lim, lim) * 16
        err = np.abs(hn - want)
        assert err.max() <= 2.5 and err.mean() <= 0.5, (err.max(), err.mean())

        toks = jnp.asarray(rng.integers(0, V, 16))
        logits = np.asarray(_apply(p, toks)) / 16
        with jax.enable_x64(True):
            ref = np.asarray(_reference(p, toks, jnp.float64))
        e = np.abs(logits - ref)
        assert e.max() <= 0.4 and e.mean() <= 1 / 16, (e.max(), e.mean())
        assert np.std(ref) > 0.3  # the comparison is not between near-constant outputs


@pytest.mark.parametrize("rank", [1, 3])
def test_factored_integer_perturbation_equals_materialised(rank):
    params = _params(3)
    es = il.IntEGGROLL(population=6, rank=rank, sigma_shift=3)
    state = es.init(11, params)
    toks = jnp.asarray(np.random.default_rng(3).integers(0, V, 10))

    @jax.jit
    def both(m):
        nz = es.member_noise(state, m)
        return il.apply(params, toks, nz), il.apply_materialised(params, nz, toks, es.sigma_shift)

    fast, ref = jax.vmap(both)(jnp.arange(es.population))
    assert fast.dtype == jnp.int32
    np.testing.assert_array_equal(fast, ref)  # exact: both are integer computations
    base = np.asarray(_apply(params, toks))
    assert (np.abs(fast - base).max(axis=(1, 2)) > 0).all()
    # antithetic members carry +A B^T and -A B^T; noise is a pure function of (seed, gen, member)
    n0, n1 = es.member_noise(state, 0), es.member_noise(state, 1)
    np.testing.assert_array_equal(n0["head"]["W"].A, n1["head"]["W"].A)
    assert int(n0["head"]["W"].sign) == 1 and int(n1["head"]["W"].sign) == -1
    again = es.member_noise(state, 0)
    np.testing.assert_array_equal(again["embed"].B, n0["embed"].B)
    later = es.member_noise(state._replace(generation=state.generation + 1), 0)
    assert not np.array_equal(later["embed"].B, n0["embed"].B)


def test_aggregate_equals_bruteforce_sum():
    params = _params(4, n_layers=1)
    es = il.IntEGGROLL(population=8, rank=2)
    state = es.init(5, params)
    votes = jnp.array([1, -1, 0, 1], jnp.int32)
    G = jax.jit(es.aggregate)(state, votes)
    noise = jax.jit(jax.vmap(lambda m: es.member_noise(state, m)))(jnp.arange(0, 8, 2))  # sign +1 members
    A = np.asarray(noise["layers"][0]["Wz"].A, np.int64)
    B = np.asarray(noise["layers"][0]["Wz"].B, np.int64)
    want_W = sum(int(v) * (A[p] @ B[p].T) for p, v in enumerate(votes))
    np.testing.assert_array_equal(G["layers"][0]["Wz"], want_W)
    a = np.asarray(noise["head"]["b"].a, np.int64)
    b = np.asarray(noise["head"]["b"].b, np.int64)
    np.testing.assert_array_equal(G["head"]["b"], sum(int(v) * a[p] * b[p] for p, v in enumerate(votes)))


def test_integer_update_keeps_parameters_int8():
    rng = np.random.default_rng(6)
    params = _params(6, n_layers=1)
    # push every parameter to the edges of the int8 range so saturation is exercised
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.choice([-127, -126, 126, 127], p.shape), jnp.int8), params)
    es = il.IntEGGROLL(population=8, rank=2, threshold=0.0)
    state = es.init(1, params)
    tell = jax.jit(es.tell)
    moved_total = 0
    for gen in range(5):
        fitness = jnp.asarray(rng.standard_normal(8), jnp.float32)
        new, metrics = tell(state, fitness)
        for p0, p1 in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(new.params)):
            assert p1.dtype == jnp.int8
            d = np.asarray(p1, np.int32) - np.asarray(p0, np.int32)
            assert np.abs(d).max() <= 1  # one integer step at most
            assert np.asarray(p1, np.int32).min() >= -127 and np.asarray(p1, np.int32).max() <= 127
        moved_total += int(metrics["moved"])
        state = new
    assert moved_total > 0
    # a threshold no |G| can pass moves nothing
    frozen = il.IntEGGROLL(population=8, rank=2, threshold=1e6)
    st = frozen.init(1, params)
    same, m = jax.jit(frozen.tell)(st, jnp.arange(8.0))
    assert int(m["moved"]) == 0
    for a, b in zip(jax.tree_util.tree_leaves(st.params), jax.tree_util.tree_leaves(same.params)):
        np.testing.assert_array_equal(a, b)


def test_max_rise():
    np.testing.assert_allclose(il.max_rise(np.array([[5.0, 4.0, 4.5, 3.0, 3.2], [3.0, 2.0, 1.0, 1.0, 1.0]])), [0.5, 0.0])


def test_votes_and_threshold_scale():
    es = il.IntEGGROLL(population=6, rank=2, noise_std=4.0, threshold=1.5)
    np.testing.assert_array_equal(es.votes(jnp.array([1.0, 0.0, 2.0, 2.0, -1.0, 3.0])), [1, 0, -1])
    # sqrt(P r) * std^2 * threshold with P = 3 pairs
    assert es.int_threshold((5, 7)) == round(1.5 * math.sqrt(3 * 2) * 16)
    assert es.int_threshold((7,)) == round(1.5 * math.sqrt(3) * 16)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="population"):
        il.IntEGGROLL(population=5)
    with pytest.raises(ValueError, match="sigma_shift"):
        il.IntEGGROLL(sigma_shift=16)
    with pytest.raises(ValueError, match="int8"):
        il.IntEGGROLL().init(0, mingru.init_params(jax.random.key(0), V, D))
    with pytest.raises(ValueError, match="method"):
        il.train("sgd", il.RunConfig(), (0,), np.zeros(100, np.int32), np.zeros(100, np.int32), 3)


def test_int8_es_learns_a_repeating_sequence():
    """End to end: on the periodic text 'abcd...' integer EGGROLL lowers the cross-entropy."""
    seq = np.tile(np.arange(4), 400).astype(np.int32)
    cfg = il.RunConfig(hidden=8, context=12, batch=2, generations=60, eval_every=30, eval_windows=4,
                       eval_length=16, population=32, rank=2, sigma_shift=4, threshold=0.5)
    h = il.train("int8_es", cfg, (0,), seq, seq, 4)
    assert h.val_bpc.shape == (1, 3) and h.val_bpc[0, -1] < 0.5 * h.val_bpc[0, 0]
    for leaf in jax.tree_util.tree_leaves(h.params):
        assert leaf.dtype == jnp.int8

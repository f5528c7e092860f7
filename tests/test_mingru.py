"""The float minGRU LM: factored population forward vs materialised weights, the recurrence
against a hand-written numpy reference, and scan vs step-by-step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.models import mingru
from lowrank_es.es.eggroll import EGGROLL, materialise


@pytest.mark.parametrize("rank", [1, 3])
def test_factored_population_forward_equals_materialised(rank):
    with jax.enable_x64(True):
        params = mingru.init_params(jax.random.key(0), 11, 6, n_layers=2, dtype=jnp.float64)
        es = EGGROLL(sigma=0.2, population=6, rank=rank)
        state = es.init(jax.random.key(1), params)
        toks = jax.random.randint(jax.random.key(2), (9,), 0, 11)

        @jax.jit
        def both(m):
            noise = es.member_noise(state, m)
            return mingru.apply(params, toks, noise), mingru.apply(materialise(params, noise), toks)

        fast, ref = jax.vmap(both)(jnp.arange(es.population))
        assert fast.dtype == jnp.float64 and fast.shape == (6, 9, 11)
        np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-12)
        base = mingru.apply(params, toks)
        assert (np.abs(fast - base).max(axis=(1, 2)) > 1e-3).all()  # every member's noise reaches the output


def _np_cell(lp, h, x):
    u = x / np.sqrt(np.mean(x**2) + 1e-5) * (1 + lp["g"])
    z = 1 / (1 + np.exp(-(lp["Wz"] @ u + lp["bz"])))
    return (1 - z) * h + z * (lp["Wh"] @ u + lp["bh"])


def test_cell_and_apply_match_numpy_reference():
    with jax.enable_x64(True):
        params = mingru.init_params(jax.random.key(4), 7, 5, n_layers=2, dtype=jnp.float64)
        rng = np.random.default_rng(0)
        params = jax.tree_util.tree_map(lambda p: p + 0.1 * rng.standard_normal(p.shape), params)
        P = jax.tree_util.tree_map(np.asarray, params)
        toks = np.array([1, 4, 4, 0, 6, 2])
        h = np.zeros((2, 5))
        want = []
        for t in toks:
            x = P["embed"][t]
            for i in range(2):
                h[i] = _np_cell(P["layers"][i], h[i], x)
                x = x + h[i]
            u = x / np.sqrt(np.mean(x**2) + 1e-5) * (1 + P["head"]["g"])
            want.append(P["head"]["W"] @ u + P["head"]["b"])
        np.testing.assert_allclose(mingru.apply(params, toks), np.array(want), rtol=1e-12, atol=1e-12)
        # one-token steps reproduce the scan; batched cells act row by row
        hs = mingru.init_state(params)
        for t, w in zip(toks, want):
            hs, lg = mingru.step(params, hs, t)
            np.testing.assert_allclose(lg, w, rtol=1e-12, atol=1e-12)
        xb, hb = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
        out = mingru.cell(params["layers"][0], hb, xb)
        for r in range(3):
            np.testing.assert_allclose(out[r], _np_cell(P["layers"][0], hb[r], xb[r]), rtol=1e-12)
        # loss: mean next-token cross-entropy from log-softmax of the reference logits
        lg = np.array(want)[:-1]
        lse = np.log(np.exp(lg).sum(1))
        nll = np.mean(lse - lg[np.arange(5), toks[1:]])
        assert float(mingru.loss(params, toks)) == pytest.approx(nll, rel=1e-12)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="hidden"):
        mingru.init_params(jax.random.key(0), 5, 0)
    params = mingru.init_params(jax.random.key(0), 5, 4)
    with pytest.raises(ValueError, match="tokens"):
        mingru.apply(params, jnp.zeros((2, 3), jnp.int32))

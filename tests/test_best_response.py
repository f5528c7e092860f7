"""Exact IPD best responses against brute force over the 32 deterministic memory-1 responses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.shaping import best_response as br
from lowrank_es.games import ipd


def _brute_force(p, gamma=ipd.GAMMA):
    """Best value over the 32 deterministic memory-1 responses (an optimal one exists among them)."""
    dets = br.deterministic_memory1_policies().astype(p.dtype)
    vals = jax.vmap(lambda q: ipd.exact_value(p, q, gamma)[1])(dets)
    return float(vals.max())


def test_best_response_matches_brute_force():
    with jax.enable_x64(True):
        f = jax.jit(br.ipd_best_response)
        key = jax.random.PRNGKey(0)
        agents = [jax.random.uniform(k, (5,), jnp.float64) for k in jax.random.split(key, 40)]
        agents += list(br.deterministic_memory1_policies().astype(jnp.float64))
        for p in agents:
            r = f(p)
            assert abs(float(r.value_response) - _brute_force(p)) < 1e-9
            # the returned policy is deterministic and its exact value is the reported one
            assert set(np.unique(np.asarray(r.policy))) <= {0.0, 1.0}
            v1, v2 = ipd.exact_value(p, r.policy)
            assert abs(float(v2) - float(r.value_response)) < 1e-9
            assert abs(float(v1) - float(r.value_agent)) < 1e-9


def test_best_response_other_discount():
    with jax.enable_x64(True):
        f = jax.jit(lambda p: br.ipd_best_response(p, 0.5))
        for k in jax.random.split(jax.random.PRNGKey(1), 10):
            p = jax.random.uniform(k, (5,), jnp.float64)
            r = f(p)
            assert abs(float(r.value_response) - _brute_force(p, 0.5)) < 1e-9


def test_known_best_responses():
    with jax.enable_x64(True):
        f = jax.jit(br.ipd_best_response)
        tft = jnp.array([1.0, 1.0, 0.0, 1.0, 0.0], jnp.float64)
        r = f(tft)
        # against TFT at gamma = 0.96 cooperating forever (-25) beats any defection
        assert abs(float(r.value_response) + 1.0 / (1 - ipd.GAMMA)) < 1e-9
        assert float(r.policy[0]) == 1.0 and float(r.policy[1]) == 1.0
        for name in ([1.0] * 5, [0.0] * 5, [0.5] * 5):
            r = f(jnp.array(name, jnp.float64))
            np.testing.assert_array_equal(np.asarray(r.policy), np.zeros(5))  # always defect
        e = br.ipd_exploitability(jnp.array([1.0] * 5, jnp.float64))
        assert abs(e["agent_vs_br"] + 3.0) < 1e-9 and abs(e["loss"] - 2.0) < 1e-9


def test_soft_best_response_tends_to_exact():
    with jax.enable_x64(True):
        exact_f = jax.jit(lambda p: br.ipd_best_response(p).value_response)
        soft_f = jax.jit(lambda p, tau: ipd.exact_value(p, br.ipd_soft_best_response(p, tau))[1])
        for k in jax.random.split(jax.random.PRNGKey(2), 5):
            p = jax.random.uniform(k, (5,), jnp.float64)
            exact = float(exact_f(p))
            prev = -np.inf
            for tau in (1.0, 0.1, 0.001):
                v = float(soft_f(p, tau))
                assert v <= exact + 1e-9
                prev = v
            assert abs(prev - exact) < 1e-2


def test_bad_inputs():
    with pytest.raises(ValueError, match="p_agent"):
        br.ipd_best_response(jnp.ones(4))
    with pytest.raises(ValueError, match="gamma"):
        br.ipd_best_response(jnp.ones(5), gamma=1.0)
    with pytest.raises(ValueError, match="tau"):
        br.ipd_soft_best_response(jnp.ones(5), tau=0.0)

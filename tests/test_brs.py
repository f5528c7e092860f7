"""Best Response Shaping: conditioning gradients, the learned detective vs the exact best response."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.shaping import best_response as br
from lowrank_es.games import ipd
from lowrank_es.shaping import brs


def _fd_check(f, x, eps=1e-6, rtol=1e-5, atol=1e-8, n_dirs=None):
    """Gradient of f at x vs central finite differences, per coordinate (or along n_dirs random
    unit directions)."""
    g = np.asarray(jax.jit(jax.grad(f))(x)).ravel()
    f = jax.jit(f)
    flat = np.asarray(x).ravel()
    if n_dirs is None:
        dirs = np.eye(flat.size)
    else:
        dirs = np.random.default_rng(0).normal(size=(n_dirs, flat.size))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    fd = [(float(f(jnp.asarray((flat + eps * d).reshape(x.shape)))) - float(f(jnp.asarray((flat - eps * d).reshape(x.shape))))) / (2 * eps)
          for d in dirs]
    np.testing.assert_allclose(dirs @ g, np.array(fd), rtol=rtol, atol=atol)


def test_ipd_conditioning_gradient_matches_finite_differences():
    """The agent's BRS objective is differentiated through the detective's conditioning."""
    with jax.enable_x64(True):
        det = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), brs.detective_init(jax.random.PRNGKey(0), 16))
        det[-1]["W"] = det[-1]["W"] * 30.0  # a detective that actually depends on the agent
        cfg = brs.IPDConfig(self_play=0.0)
        theta = jax.random.normal(jax.random.PRNGKey(1), (5,), jnp.float64)
        _fd_check(lambda t: brs.agent_objective(t, lambda p: brs.detective_policy(det, p), cfg), theta)
        # the self-play term differentiates the agent's own copy only (the other copy is held fixed)
        sp = brs.IPDConfig(self_play=0.7)
        g_sp = jax.grad(brs.agent_objective)(theta, lambda p: jnp.full(5, 0.5), sp) - jax.grad(
            brs.agent_objective)(theta, lambda p: jnp.full(5, 0.5), cfg)
        q = jax.nn.sigmoid(theta)
        welfare = lambda t: 0.7 * 0.5 * sum(ipd.exact_value(jax.nn.sigmoid(t), q)) * (1 - ipd.GAMMA)
        _fd_check(lambda t: welfare(t) + 0.0 * t.sum(), theta)
        np.testing.assert_allclose(np.asarray(g_sp), np.asarray(jax.grad(welfare)(theta)), rtol=1e-10, atol=1e-12)
        # the conditioning term is not zero: the response's dependence on the agent matters
        g_full = jax.grad(lambda t: brs.agent_objective(t, lambda p: brs.detective_policy(det, p), cfg))(theta)
        g_frozen = jax.grad(lambda t: brs.agent_objective(
            t, lambda p: brs.detective_policy(det, jax.lax.stop_gradient(p)), cfg))(theta)
        assert float(jnp.linalg.norm(g_full - g_frozen)) > 1e-3
        # and the exact (soft best response) form
        _fd_check(lambda t: brs.agent_objective(t, lambda p: br.ipd_soft_best_response(p, 0.3), cfg), theta, rtol=1e-4)


def test_learned_detective_close_to_exact_best_response():
    """A detective trained on noisy random agents gets, on held-out agents, a mean per-step
    reward within 0.02 of the exact best response (2% of the mutual-cooperation reward),
    and never more than 0.15 below it."""
    agents = 2.0 * jax.random.normal(jax.random.PRNGKey(0), (256, 5))
    det, losses = jax.jit(lambda k, a: brs.train_detective(k, a, steps=1000, noise=0.5))(jax.random.PRNGKey(1), agents)
    assert float(losses[-100:].mean()) < float(losses[:100].mean())
    test = jax.nn.sigmoid(2.0 * jax.random.normal(jax.random.PRNGKey(2), (64, 5)))
    dv = brs.detective_value(det, test)
    bv = jax.vmap(lambda p: br.ipd_best_response(p).value_response)(test) * (1 - ipd.GAMMA)
    gap = np.asarray(bv - dv)
    assert gap.min() > -1e-4  # nothing beats the exact best response
    assert gap.mean() < 0.02
    assert gap.max() < 0.15


def test_exact_form_brs_learns_reciprocity():
    """With the exact (soft) best response as detective, BRS ends cooperating with its best
    response (per-step reward about -1) and retaliates after being defected on."""
    cfg = brs.IPDConfig(detective="exact", agent_steps=300, agent_lr=0.1, self_play=3.0)
    theta, _, hist = jax.jit(lambda k: brs.train_ipd(k, cfg))(jax.random.PRNGKey(0))
    p = np.asarray(jax.nn.sigmoid(theta))
    assert p[1] > 0.9 and p[2] < 0.5
    assert float(hist.vs_exact_br[-1]) > -1.05
    assert float(hist.vs_exact_br[-1]) > float(hist.vs_exact_br[0])


def test_config_validation():
    with pytest.raises(ValueError, match="detective"):
        brs.IPDConfig(detective="oracle")
    with pytest.raises(ValueError, match="noise"):
        brs.IPDConfig(noise=-1.0)
    with pytest.raises(ValueError, match="steps"):
        brs.train_detective(jax.random.PRNGKey(0), jnp.zeros((2, 5)), steps=0, noise=0.1)


def test_experiment_parts_select_jobs():
    """The long_budget scale trains the Coin Game BRS agents alone, with the reference's
    settings and twice its updates; an unknown or empty part list is a clear error."""
    from lowrank_es.experiments import brs as bx

    long, ref = bx.SCALES["long_budget"], bx.SCALES["reference"]
    assert list(bx.jobs(long, (0,))) == ["coin_brs"]
    assert long.coin == ref.coin and long.coin_updates == 2 * ref.coin_updates
    assert list(bx.jobs(ref, (0,))) == list(bx.PARTS)
    with pytest.raises(ValueError, match="parts"):
        bx.Config(parts=("coin_brss",))
    with pytest.raises(ValueError, match="parts"):
        bx.Config(parts=())

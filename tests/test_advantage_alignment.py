"""Advantage Alignment: GAE, the aligned advantage, the exact AA / LOLA terms and the
state-only-critic collapse, against hand-worked examples and independent computations."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.games import ipd
from lowrank_es.shaping import advantage_alignment as aa
from lowrank_es.shaping import loqa


def _pair(seed):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return jax.random.normal(k1, (5,), jnp.float64), jax.random.normal(k2, (5,), jnp.float64)


def test_gae_hand_worked():
    # gamma = 0.5, lam = 0.5, r = (1, 0, 2), V = (1, 2, 0, 0 terminal)
    # deltas: 1 + 0.5*2 - 1 = 1;  0 + 0.5*0 - 2 = -2;  2 + 0 - 0 = 2
    # A2 = 2; A1 = -2 + 0.25*2 = -1.5; A0 = 1 + 0.25*(-1.5) = 0.625
    adv = aa.gae(jnp.array([1.0, 0.0, 2.0]), jnp.array([1.0, 2.0, 0.0, 0.0]), 0.5, 0.5)
    np.testing.assert_allclose(adv, [0.625, -1.5, 2.0], rtol=1e-6)
    # lam = 1 with zero values gives the discounted return-to-go: (1 + 0 + 0.25*2, 0 + 0.5*2, 2)
    np.testing.assert_allclose(aa.gae(jnp.array([1.0, 0.0, 2.0]), jnp.zeros(4), 0.5, 1.0), [1.5, 1.0, 2.0])


def test_aligned_advantage_hand_worked():
    # gamma = 0.5, beta = 2: A1 = (1, -2, 3), A2 = (4, 5, -1)
    # past sums F = (0, 0.5*1, 0.5*(0.5 + -2)) = (0, 0.5, -0.75)
    # A* = A1 + beta*gamma*F*A2 = (1, -2 + 1*0.5*5, 3 + 1*(-0.75)*(-1)) = (1, 0.5, 3.75)
    a1, a2 = jnp.array([1.0, -2.0, 3.0]), jnp.array([4.0, 5.0, -1.0])
    np.testing.assert_allclose(aa.past_advantage_sum(a1, 0.5), [0.0, 0.5, -0.75])
    np.testing.assert_allclose(aa.aligned_advantage(a1, a2, 0.5, 2.0), [1.0, 0.5, 3.75])
    q, term = aa.quadrants(a1, a2, 0.5)
    # F_0 = 0 counts as non-negative with A2 > 0: cooperative; then cooperative; vengeful.
    np.testing.assert_array_equal(q, [0, 0, 2])
    np.testing.assert_allclose(term, [0.0, 0.5 * 0.5 * 5, 0.5 * -0.75 * -1])


def test_aa_term_closed_form_matches_time_recursion():
    with jax.enable_x64(True):
        for seed in range(3):
            t1, t2 = _pair(seed)
            np.testing.assert_allclose(
                aa.aa_term(t1, t2, 0.9, 1.5), aa.aa_term_loop(t1, t2, 0.9, 1.5, horizon=800), rtol=1e-9, atol=1e-12
            )


def test_aa_term_loop_by_trajectory_enumeration():
    """Finite-horizon AA term from every joint trajectory of 5 steps, weighted by its probability."""
    with jax.enable_x64(True):
        t1, t2 = _pair(7)
        g, beta, H = 0.8, 1.0, 5
        tab = loqa.tabular(t1, t2, g)
        q1, q2 = np.asarray(tab.q1), np.asarray(tab.q2)
        A1, A2 = np.asarray(tab.A1), np.asarray(tab.A2)
        ref = np.zeros(5)
        for seq in itertools.product(range(4), repeat=H):
            prob, s, F, contrib = 1.0, 0, 0.0, np.zeros(5)
            for t, ab in enumerate(seq):
                a, b = ab // 2, ab % 2
                prob *= (q1[s] if a == 0 else 1 - q1[s]) * (q2[s] if b == 0 else 1 - q2[s])
                score = (1.0 if a == 0 else 0.0) - q1[s]
                contrib[s] += g**t * F * A2[s, ab] * score
                F = g * (F + A1[s, ab])
                s = 1 + ab
            ref += prob * contrib
        ref = beta * g * ref
        np.testing.assert_allclose(aa.aa_term_loop(t1, t2, g, beta, horizon=H), ref, rtol=1e-9, atol=1e-12)


def test_policy_gradient_part_is_exact_gradient():
    """E[sum_t gamma^t A1 grad log pi1] over the chain equals autodiff of the closed form."""
    with jax.enable_x64(True):
        t1, t2 = _pair(5)
        tab = loqa.tabular(t1, t2)
        score = (loqa.A_OF[None, :] == 0) - tab.q1[:, None]
        pg = tab.D * jnp.sum(tab.J * tab.A1 * score, axis=1)
        np.testing.assert_allclose(pg, loqa.naive_gradient(t1, t2), rtol=1e-9)


def test_lola_term_against_finite_differences():
    with jax.enable_x64(True):
        t1, t2 = _pair(6)
        v = lambda a, b: ipd.exact_value(jax.nn.sigmoid(a), jax.nn.sigmoid(b))
        h = 1e-5

        def grad2(a, i):  # central differences in theta2
            return np.array([(v(a, t2 + h * e)[i] - v(a, t2 - h * e)[i]) / (2 * h) for e in np.eye(5)])

        g2v1 = grad2(t1, 0)
        fd = np.array([(g2v1 @ grad2(t1 + 1e-4 * e, 1) - g2v1 @ grad2(t1 - 1e-4 * e, 1)) / 2e-4 for e in np.eye(5)])
        np.testing.assert_allclose(aa.lola_term(t1, t2), fd, rtol=1e-4, atol=1e-4)


def test_loqa_as_implemented_is_weighted_advantage_alignment():
    """Unification: the taken-action LOQA term lines up with the AA term weighted by
    (1 - pi_hat2) / tau (cosine > 0.9 on most random pairs), far better than plain AA."""
    with jax.enable_x64(True):
        t1, t2 = aa.random_pairs(jax.random.PRNGKey(3), 40)
        tau = 1.0

        def cosines(a, b):
            lq = loqa.loqa_term(a, b, tau, taken_only=True)
            w = (1 - loqa.opponent_model(a, b, tau)) / tau
            return aa._cos(lq, aa.aa_term(a, b, weight=w)), aa._cos(lq, aa.aa_term(a, b))

        cw, cp = jax.vmap(cosines)(t1, t2)
        assert np.median(cw) > 0.9
        assert np.median(cw) > np.median(cp) + 0.3


def test_state_only_critic_collapses_time_critic_cooperates():
    cfg_t = aa.IPDTrainConfig(batch=32, critic_time=True)
    cfg_s = aa.IPDTrainConfig(batch=32, critic_time=False)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    rt = jax.vmap(lambda k: aa.ipd_train(k, cfg_t, 150)[1])(keys)[:, -20:].mean()
    rs = jax.vmap(lambda k: aa.ipd_train(k, cfg_s, 150)[1])(keys)[:, -20:].mean()
    assert rs < -1.9  # mutual defection
    assert rt > -1.6  # mostly cooperating


def test_bad_input_raises():
    with pytest.raises(ValueError, match="lam"):
        aa.gae(jnp.zeros(3), jnp.zeros(4), 0.9, 1.5)
    with pytest.raises(ValueError, match="values"):
        aa.gae(jnp.zeros(3), jnp.zeros(3), 0.9, 0.5)
    with pytest.raises(ValueError, match="beta"):
        aa.AAConfig(beta=-1.0)
    with pytest.raises(ValueError, match="clip"):
        aa.proximal_adalign_loss(jnp.zeros(2), jnp.zeros(2), jnp.ones(2), 0.0)


def test_proximal_loss_hand_worked():
    # ratio 1.5 with A = 2 is clipped to 1.2: -1.2 * 2; ratio 0.5 with A = -1: min(-0.5, -0.8) = -0.8.
    lp_old = jnp.zeros(2)
    lp = jnp.log(jnp.array([1.5, 0.5]))
    adv = jnp.array([2.0, -1.0])
    np.testing.assert_allclose(aa.proximal_adalign_loss(lp, lp_old, adv, 0.2), -(1.2 * 2.0 + -0.8) / 2, rtol=1e-6)
    # Inside the clip range the surrogate's gradient is the AdAlign policy gradient.
    g_ppo = jax.grad(lambda l: aa.proximal_adalign_loss(l, jnp.zeros(2), adv, 0.2))(jnp.zeros(2))
    g_pg = jax.grad(lambda l: aa.adalign_loss(l, adv))(jnp.zeros(2))
    np.testing.assert_allclose(g_ppo, g_pg, rtol=1e-6)


def test_gaussian_policy_logp_matches_scipy():
    from scipy.stats import norm

    spec = aa.continuous_negotiation_spec()
    agent = aa.sampled_init(jax.random.PRNGKey(0), spec, aa.SampledAAConfig())
    agent["log_std"] = jnp.array([-0.5, 0.0, 0.3])
    obs = jax.random.uniform(jax.random.PRNGKey(1), (2, 4, spec.obs_dim))
    act = 5 * jax.random.uniform(jax.random.PRNGKey(2), (2, 4, 3))
    lp, _ = aa.policy_logp_entropy(agent, obs, act, spec)
    from lowrank_es.models.mlp import mlp_apply

    mean = 5 * jax.nn.sigmoid(mlp_apply(agent["actor"], obs))
    ref = norm.logpdf(np.asarray(act), np.asarray(mean), np.exp(np.asarray(agent["log_std"]))).sum(-1)
    np.testing.assert_allclose(lp, ref, rtol=1e-5, atol=1e-5)


def test_aa_term_vanishes_at_deterministic_equilibrium():
    """At (near-)deterministic always-defect vs always-defect (a Nash equilibrium of the IPD)
    the alignment term vanishes with the scores, so AA adds no force there."""
    with jax.enable_x64(True):
        for L in (6.0, 10.0, 14.0):
            ad = -L * jnp.ones(5)
            g = aa.aa_term(ad, ad)
            # sigmoid(-L) ~ e^-L: the term is O(e^-L) times bounded advantages
            assert float(jnp.max(jnp.abs(g))) < 200 * np.exp(-L)
        # and it is not identically zero away from the equilibrium
        assert float(jnp.max(jnp.abs(aa.aa_term(-2.0 * jnp.ones(5), -2.0 * jnp.ones(5))))) > 1e-3

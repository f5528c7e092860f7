"""Advantage Alignment: the aligned advantage and the exact AA / LOLA terms, against
hand-worked examples and independent computations."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.games import ipd
from lowrank_es.shaping import advantage_alignment as aa
from lowrank_es.shaping import exact, loqa


def _pair(seed):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return jax.random.normal(k1, (5,), jnp.float64), jax.random.normal(k2, (5,), jnp.float64)


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
        np.testing.assert_allclose(pg, exact.naive_gradient(t1, t2), rtol=1e-9)


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
            return aa.cosine(lq, aa.aa_term(a, b, weight=w)), aa.cosine(lq, aa.aa_term(a, b))

        cw, cp = jax.vmap(cosines)(t1, t2)
        assert np.median(cw) > 0.9
        assert np.median(cw) > np.median(cp) + 0.3


def test_bad_input_raises():
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


def test_trajectory_advantages_are_the_exact_joint_advantages():
    with jax.enable_x64(True):
        t1, t2 = _pair(2)
        states, a, b, A1, A2 = aa.ipd_trajectory_advantages(jax.random.PRNGKey(0), t1, t2, horizon=7, batch=3)
        assert states.shape == (7, 3) and int(states[0, 0]) == 0
        np.testing.assert_array_equal(states[1:], 1 + 2 * a[:-1] + b[:-1])
        tab = loqa.tabular(t1, t2)
        np.testing.assert_allclose(A1, tab.Qab1[2 * a + b] - tab.V1[states])
        np.testing.assert_allclose(A2, tab.Qab2[2 * a + b] - tab.V2[states])


def test_experiment_parts_select_jobs():
    """The gpu scale runs only the Negotiation jobs, at the official 8,192 episodes per update;
    an unknown part is a clear error."""
    from lowrank_es.experiments import advantage_alignment as ax

    gpu = ax.SCALES["gpu"]
    assert gpu.negotiation.n_envs == 8192
    assert list(ax.jobs(gpu, (0,))) == ["negotiation_adalign", "negotiation_naive", "negotiation_league"]
    assert {k.split("_")[0] for k in ax.jobs(ax.SCALES["reference"], (0,))} == set(ax.PARTS)
    with pytest.raises(ValueError, match="parts"):
        ax.Config(parts=("negotiaton",))
    with pytest.raises(ValueError, match="parts"):
        ax.Config(parts=())

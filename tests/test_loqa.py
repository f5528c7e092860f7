"""LOQA: closed-form IPD quantities and the LOQA term against independent computations."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.games import ipd
from lowrank_es.shaping import exact, loqa

GAMMA = 0.9


def _pair(seed):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return jax.random.normal(k1, (5,), jnp.float64), jax.random.normal(k2, (5,), jnp.float64)


def test_tabular_values_match_ipd_closed_form():
    with jax.enable_x64(True):
        t1, t2 = _pair(0)
        tab = loqa.tabular(t1, t2, GAMMA)
        v1, v2 = ipd.exact_value(jax.nn.sigmoid(t1), jax.nn.sigmoid(t2), GAMMA)
        np.testing.assert_allclose([tab.V1[0], tab.V2[0]], [v1, v2], rtol=1e-12)
        s1, s2 = ipd.state_values(jax.nn.sigmoid(t1), jax.nn.sigmoid(t2), GAMMA)
        np.testing.assert_allclose(tab.V1[1:], s1, rtol=1e-12)
        np.testing.assert_allclose(tab.V2[1:], s2, rtol=1e-12)
        # Discounted visitation sums to 1 / (1 - gamma).
        np.testing.assert_allclose(tab.D.sum(), 1 / (1 - GAMMA), rtol=1e-12)


def test_opponent_q_by_brute_force_enumeration():
    """Q2(s, b) from a truncated brute-force sum over every joint trajectory."""
    with jax.enable_x64(True):
        t1, t2 = _pair(1)
        p1, p2 = np.asarray(jax.nn.sigmoid(t1)), np.asarray(jax.nn.sigmoid(t2))
        H = 6  # steps after the first one, enumerated exactly; the tail is bounded by gamma^H
        g = 0.5
        Q2 = np.asarray(loqa.opponent_q(t1, t2, g))
        r2 = np.asarray(ipd.REWARD_2)
        idx2 = [0, 1, 3, 2, 4]
        for s in range(5):
            for b in range(2):
                total = 0.0
                for a in range(2):
                    pa = p1[s] if a == 0 else 1 - p1[s]
                    first = 2 * a + b
                    for seq in itertools.product(range(4), repeat=H):
                        prob, val, state = pa, r2[first], 1 + first
                        for k, ab in enumerate(seq):
                            qa, qb = p1[state], p2[idx2[state]]
                            prob *= (qa if ab // 2 == 0 else 1 - qa) * (qb if ab % 2 == 0 else 1 - qb)
                            val += g ** (k + 1) * r2[ab]
                            state = 1 + ab
                        total += prob * val
                # rewards lie in [-3, 0]: the neglected tail is within 3 g^(H+1) / (1 - g)
                assert abs(Q2[s, b] - total) <= 3 * g ** (H + 1) / (1 - g) + 1e-9


def _loqa_term_fd(t1, t2, tau, gamma, taken_only, h=1e-5):
    """LOQA term by central finite differences of log pi_hat2 (or of Q2)."""
    tab = loqa.tabular(t1, t2, gamma)
    pa = jnp.stack([tab.q1, 1 - tab.q1], -1)
    pb = jnp.stack([tab.q2, 1 - tab.q2], -1)
    A1b = pa @ tab.Qab1.reshape(2, 2) - tab.V1[:, None]
    w = tab.D[:, None] * pb * A1b
    pi_hat = loqa.opponent_model(t1, t2, tau, gamma)
    out = np.zeros(5)
    for i in range(5):
        e = jnp.zeros(5).at[i].set(h)
        if taken_only:
            dq = (loqa.opponent_q(t1 + e, t2, gamma) - loqa.opponent_q(t1 - e, t2, gamma)) / (2 * h)
            out[i] = jnp.sum(w * (1 - pi_hat) / tau * dq)
        else:
            lp = lambda t: jnp.log(loqa.opponent_model(t, t2, tau, gamma))
            out[i] = jnp.sum(w * (lp(t1 + e) - lp(t1 - e)) / (2 * h))
    return out


@pytest.mark.parametrize("taken_only", [False, True])
@pytest.mark.parametrize("tau", [0.5, 3.0])
def test_loqa_term_against_finite_differences(taken_only, tau):
    with jax.enable_x64(True):
        for seed in range(3):
            t1, t2 = _pair(10 + seed)
            got = loqa.loqa_term(t1, t2, tau, GAMMA, taken_only)
            ref = _loqa_term_fd(t1, t2, tau, GAMMA, taken_only)
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)


def test_full_softmax_term_independent_of_model_factor():
    """With b ~ pi2 and the on-policy baseline, the (1 - pi_hat2) factors cancel:
    the full-softmax LOQA term equals sum_s D(s) sum_b pi2 A1(s, b) grad Q2(s, b) / tau."""
    with jax.enable_x64(True):
        t1, t2 = _pair(3)
        tau = 0.7
        tab = loqa.tabular(t1, t2, GAMMA)
        pa = jnp.stack([tab.q1, 1 - tab.q1], -1)
        pb = jnp.stack([tab.q2, 1 - tab.q2], -1)
        w = tab.D[:, None] * pb * (pa @ tab.Qab1.reshape(2, 2) - tab.V1[:, None])
        ref = jax.jacobian(lambda t: loqa.opponent_q(t, t2, GAMMA))(t1)  # (5, 2, 5)
        ref = jnp.einsum("sb,sbi->i", w, ref) / tau
        np.testing.assert_allclose(loqa.loqa_term(t1, t2, tau, GAMMA, taken_only=False), ref, rtol=1e-9, atol=1e-10)


def test_naive_gradient_finite_differences_and_direction():
    with jax.enable_x64(True):
        t1, t2 = _pair(4)
        h = 1e-6
        v = lambda t: ipd.exact_value(jax.nn.sigmoid(t), jax.nn.sigmoid(t2), GAMMA)[0]
        fd = np.array([(v(t1 + h * e) - v(t1 - h * e)) / (2 * h) for e in np.eye(5)])
        np.testing.assert_allclose(exact.naive_gradient(t1, t2, GAMMA), fd, rtol=1e-6)
        cfg = loqa.LOQAConfig(tau=2.0, gamma=GAMMA, shaping=0.5, taken_only=True)
        np.testing.assert_allclose(
            loqa.direction(t1, t2, cfg), fd + 0.5 * loqa.loqa_term(t1, t2, 2.0, GAMMA, True), rtol=1e-6
        )


def test_bad_input_raises():
    with pytest.raises(ValueError, match="tau"):
        loqa.LOQAConfig(tau=0.0)
    with pytest.raises(ValueError, match="gamma"):
        loqa.tabular(jnp.zeros(5), jnp.zeros(5), 1.0)
    with pytest.raises(ValueError, match="theta1"):
        loqa.tabular(jnp.zeros(4), jnp.zeros(5))


def test_paper_form_is_the_default():
    """The exact LOQA direction differentiates only the taken action's Q unless told otherwise."""
    with jax.enable_x64(True):
        t1, t2 = _pair(5)
        np.testing.assert_allclose(loqa.direction(t1, t2), exact.naive_gradient(t1, t2) + loqa.loqa_term(t1, t2, 1.0, ipd.GAMMA, True))
        assert not np.allclose(loqa.loqa_term(t1, t2, 1.0, ipd.GAMMA, True), loqa.loqa_term(t1, t2, 1.0, ipd.GAMMA, False))


def test_taken_only_term_is_half_the_full_term_plus_a_common_mode_term():
    """loqa_term(taken_only=True) = loqa_term(taken_only=False) / 2 + common, with common built
    independently: finite differences of k_s (pi_hat2(D|s) - 1/2) (Q2(s,C) + Q2(s,D)) / tau."""
    tau = 0.7
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        for _ in range(3):
            t1, t2 = jnp.array(1.5 * rng.normal(size=5)), jnp.array(1.5 * rng.normal(size=5))
            reciprocity, common = loqa.taken_only_decomposition(t1, t2, tau)
            np.testing.assert_allclose(reciprocity + common, loqa.loqa_term(t1, t2, tau, taken_only=True), rtol=1e-9, atol=1e-11)
            tab = loqa.tabular(t1, t2)
            a1c = jnp.stack([tab.q1, 1 - tab.q1], -1) @ tab.Qab1.reshape(2, 2)[:, 0] - tab.V1
            k = tab.D * tab.q2 * a1c
            delta = loqa.opponent_model(t1, t2, tau)[:, 1] - 0.5
            f = lambda t: float(jnp.sum(k * delta * loqa.opponent_q(t, t2).sum(-1)) / tau)  # noqa: E731
            h = 1e-6
            fd = np.array([(f(t1.at[i].add(h)) - f(t1.at[i].add(-h))) / (2 * h) for i in range(5)])
            np.testing.assert_allclose(common, fd, rtol=1e-5, atol=1e-8)


def _opponent_q_time_varying(eps, t1, t2, gamma, d, current_step, horizon=400):
    """Q2(s, b) (5, 2) when player 1 plays logits ``t1 + c_k eps`` k steps ahead, c_0 = 1 or 0
    (``current_step``) and c_k = d^(k-1) after: its derivative in ``eps`` at 0 is the gradient
    the loaded-DiCE estimator weighs (by backward induction over ``horizon`` steps, then the
    stationary values of the last policy)."""
    q2 = jax.nn.sigmoid(t2)[loqa.IDX2]
    r2 = ipd.REWARD_2.astype(t1.dtype)
    c = lambda k: d ** (k - 1)  # noqa: E731
    v = loqa.tabular(t1 + c(horizon) * eps, t2, gamma).V2

    def back(v_next, k):
        q1 = jax.nn.sigmoid(t1 + c(k) * eps)[loqa.IDX1]
        return ipd.joint_action_probs(q1, q2) @ (r2 + gamma * v_next[1:]), None

    v, _ = jax.lax.scan(back, v, jnp.arange(horizon - 1, 0, -1).astype(t1.dtype))
    q1 = jax.nn.sigmoid(t1 + (eps if current_step else 0.0 * eps))[loqa.IDX1]
    pa = jnp.stack([q1, 1 - q1], -1)
    return pa @ (r2 + gamma * v[1:]).reshape(2, 2)


@pytest.mark.parametrize("d,current_step", [(0.9, False), (0.9, True), (1.0, False), (0.6, False)])
def test_estimator_weighted_jacobian_against_a_time_varying_policy(d, current_step):
    """The closed form of the loaded-DiCE weights against autodiff through a policy that changes
    with the steps ahead (float64); with d = 1 and the current step it is the exact Jacobian."""
    with jax.enable_x64(True):
        for seed in range(3):
            t1, t2 = _pair(10 + seed)
            got = loqa.opponent_q_jacobian(t1, t2, GAMMA, d, current_step)
            ref = jax.jacobian(_opponent_q_time_varying)(jnp.zeros(5), t1, t2, GAMMA, d, current_step)
            np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-10)
        exact_jac = jax.jacobian(lambda a: loqa.opponent_q(a, t2, GAMMA))(t1)
        np.testing.assert_allclose(loqa.opponent_q_jacobian(t1, t2, GAMMA), exact_jac, rtol=1e-10, atol=1e-12)
        # the paper-form term with those weights: the exact one at d = 1 with the current step
        np.testing.assert_allclose(loqa.loqa_term(t1, t2, 1.5, GAMMA, True, 1.0 - 1e-12, True),
                                   loqa.loqa_term(t1, t2, 1.5, GAMMA, True), rtol=1e-8, atol=1e-10)


def test_decomposition_with_the_estimator_weights_adds_up():
    """With the official weights the two parts still add up to the paper-form term, and the
    reciprocity part is the estimator-weighted Jacobian of Q2(s,C) - Q2(s,D) (independent: the
    time-varying-policy construction above)."""
    tau = 0.7
    with jax.enable_x64(True):
        t1, t2 = _pair(21)
        rec, com = loqa.taken_only_decomposition(t1, t2, tau, GAMMA, 0.9, False)
        np.testing.assert_allclose(rec + com, loqa.loqa_term(t1, t2, tau, GAMMA, True, 0.9, False), rtol=1e-9, atol=1e-11)
        tab = loqa.tabular(t1, t2, GAMMA)
        a1c = jnp.stack([tab.q1, 1 - tab.q1], -1) @ tab.Qab1.reshape(2, 2)[:, 0] - tab.V1
        k = tab.D * tab.q2 * a1c
        jac = jax.jacobian(_opponent_q_time_varying)(jnp.zeros(5), t1, t2, GAMMA, 0.9, False)
        np.testing.assert_allclose(rec, k @ (jac[:, 0] - jac[:, 1]) / (2 * tau), rtol=1e-8, atol=1e-10)


def test_estimator_weights_bad_input():
    with pytest.raises(ValueError, match="dice_discount"):
        loqa.LOQAConfig(dice_discount=0.0)
    with pytest.raises(ValueError, match="dice_discount"):
        loqa.opponent_q_jacobian(jnp.zeros(5), jnp.zeros(5), GAMMA, 1.5)
    with pytest.raises(ValueError, match="taken_only"):
        loqa.loqa_term(jnp.zeros(5), jnp.zeros(5), 1.0, GAMMA, False, 0.9)

"""IPD: closed form vs brute force / power series, corner cases, sampled returns, conventions."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.games import ipd

G = ipd.GAMMA
AC = jnp.ones(5)
AD = jnp.zeros(5)
TFT = jnp.array([1.0, 1.0, 0.0, 1.0, 0.0])


def _brute_force(p1, p2, gamma, T):
    """Enumerate every sequence of T joint actions with its probability (numpy, float64).
    Player 2's policy is looked up with *its own* (my, other) ordering, written out here
    independently of ipd.SWAP."""
    p1, p2 = np.asarray(p1, np.float64), np.asarray(p2, np.float64)
    r1 = {(0, 0): -1, (0, 1): -3, (1, 0): 0, (1, 1): -2}
    v1 = v2 = 0.0
    for seq in itertools.product([(0, 0), (0, 1), (1, 0), (1, 1)], repeat=T):
        prob, ret1, ret2, last = 1.0, 0.0, 0.0, None
        for t, (a1, a2) in enumerate(seq):
            if last is None:
                q1, q2 = p1[0], p2[0]
            else:
                b1, b2 = last
                q1 = p1[1 + 2 * b1 + b2]  # player 1: (my=b1, other=b2)
                q2 = p2[1 + 2 * b2 + b1]  # player 2: (my=b2, other=b1)
            prob *= (q1 if a1 == 0 else 1 - q1) * (q2 if a2 == 0 else 1 - q2)
            ret1 += gamma**t * r1[(a1, a2)]
            ret2 += gamma**t * r1[(a2, a1)]
            last = (a1, a2)
        v1 += prob * ret1
        v2 += prob * ret2
    return v1, v2


def test_exact_horizon_matches_brute_force_enumeration():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        for _ in range(3):
            p1, p2 = rng.uniform(size=5), rng.uniform(size=5)
            b1, b2 = _brute_force(p1, p2, 0.9, 5)
            e1, e2 = ipd.exact_value_horizon(jnp.array(p1), jnp.array(p2), 0.9, 5)
            np.testing.assert_allclose([e1, e2], [b1, b2], rtol=1e-12)


def test_exact_value_matches_power_series():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        p1, p2 = rng.uniform(size=5), rng.uniform(size=5)
        d0, P = ipd.markov_chain(jnp.array(p1), jnp.array(p2))
        d0, P = np.asarray(d0), np.asarray(P)
        r1, r2 = np.array([-1.0, -3, 0, -2]), np.array([-1.0, 0, -3, -2])
        x, s1, s2 = d0.copy(), 0.0, 0.0
        for t in range(2000):  # gamma^2000 ~ 1e-36
            s1 += G**t * x @ r1
            s2 += G**t * x @ r2
            x = x @ P
        v1, v2 = ipd.exact_value(jnp.array(p1), jnp.array(p2))
        np.testing.assert_allclose([v1, v2], [s1, s2], rtol=1e-10)


@pytest.mark.parametrize(
    "p1,p2,expected",
    [
        (AC, AC, (-25.0, -25.0)),  # -1 / (1 - 0.96)
        (AD, AD, (-50.0, -50.0)),  # -2 / (1 - 0.96)
        (AC, AD, (-75.0, 0.0)),  # sucker forever vs temptation forever
        (TFT, AD, (-3.0 - 2 * 0.96 / 0.04, 0.0 - 2 * 0.96 / 0.04)),  # one sucker round then DD
        (TFT, AC, (-25.0, -25.0)),
    ],
)
def test_corner_cases(p1, p2, expected):
    with jax.enable_x64(True):
        v = ipd.exact_value(p1.astype(jnp.float64), p2.astype(jnp.float64))
        np.testing.assert_allclose(v, expected, rtol=1e-12)


def test_swapping_players_swaps_values():
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        for _ in range(5):
            p1, p2 = jnp.array(rng.uniform(size=5)), jnp.array(rng.uniform(size=5))
            v1, v2 = ipd.exact_value(p1, p2)
            w1, w2 = ipd.exact_value(p2, p1)
            np.testing.assert_allclose([v1, v2], [w2, w1], rtol=1e-12)
            h1, h2 = ipd.exact_value_horizon(p1, p2, G, 7)
            k1, k2 = ipd.exact_value_horizon(p2, p1, G, 7)
            np.testing.assert_allclose([h1, h2], [k2, k1], rtol=1e-12)


def test_asymmetric_convention_cd_vs_dc():
    """Player 2 defecting after being the sucker must hurt player 1, not player 2: a policy
    that cooperates only in its own 'DC' slot (I defected, other cooperated)."""
    with jax.enable_x64(True):
        p_only_dc = jnp.array([0.0, 0.0, 0.0, 1.0, 0.0])  # start D; C only after (me D, other C)
        # vs always-cooperate: t0 = (D, C) -> next I see DC -> C; then CC -> D; then DC -> C...
        v1, v2 = ipd.exact_value(p_only_dc, AC)
        # rewards alternate 0 (DC), -1 (CC): v1 = sum_k gamma^{2k} * 0 + gamma^{2k+1} * (-1)
        np.testing.assert_allclose(v1, -G / (1 - G**2), rtol=1e-12)
        np.testing.assert_allclose(v2, -3 / (1 - G**2) - G / (1 - G**2), rtol=1e-12)


def test_sampled_returns_converge_to_exact():
    """Mean of 8192 sampled 50-step discounted returns within 4 standard errors of the
    closed form (float32 sampling; the s.e. is about 0.03)."""
    rng = np.random.default_rng(3)
    for i in range(2):
        p1, p2 = jnp.array(rng.uniform(size=5)), jnp.array(rng.uniform(size=5))
        out = ipd.rollout(jax.random.PRNGKey(i), p1, p2, 8192)
        Gs = np.asarray(ipd.discounted_returns(out["rewards"]), np.float64)
        exact = np.array(ipd.exact_value_horizon(p1, p2))
        se = Gs.std(0, ddof=1) / np.sqrt(len(Gs))
        assert np.all(np.abs(Gs.mean(0) - exact) < 4 * se), (Gs.mean(0), exact, se)


def test_env_observations_are_own_point_of_view():
    obs, s = ipd.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(obs, np.eye(5)[[0, 0]])
    obs, s, r, done, info = ipd.step(jax.random.PRNGKey(0), s, jnp.array([0, 1]))  # player 1 C, player 2 D
    np.testing.assert_array_equal(r, [-3.0, 0.0])
    assert int(np.argmax(obs[0])) == 2  # player 1 sees (my C, other D) = CD
    assert int(np.argmax(obs[1])) == 3  # player 2 sees (my D, other C) = DC
    assert not bool(done)


def test_rollout_deterministic_policies():
    out = ipd.rollout(jax.random.PRNGKey(0), TFT, AD, 2, ipd.Params(max_steps=4))
    np.testing.assert_array_equal(out["actions"][0], [[0, 1], [1, 1], [1, 1], [1, 1]])
    np.testing.assert_array_equal(out["rewards"][0, :, 0], [-3, -2, -2, -2])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="p1"):
        ipd.exact_value(jnp.ones(4), AC)
    with pytest.raises(ValueError, match="gamma"):
        ipd.exact_value(AC, AC, 1.0)
    with pytest.raises(ValueError, match="horizon"):
        ipd.exact_value_horizon(AC, AC, 0.9, 0)
    with pytest.raises(ValueError, match="max_steps"):
        ipd.Params(max_steps=0)


def test_probabilities_outside_the_unit_interval_are_rejected_eagerly():
    good = jnp.full(5, 0.5)
    for bad in (jnp.array([2.0, 0, 0, 0, 0]), jnp.array([0.5, -0.1, 0.5, 0.5, 0.5]), jnp.array([jnp.nan, 0, 0, 0, 0])):
        for fn in (ipd.exact_value, ipd.exact_value_horizon, ipd.state_values, ipd.markov_chain):
            with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
                fn(bad, good)
            with pytest.raises(ValueError, match="p2"):
                fn(good, bad)
        with pytest.raises(ValueError, match="p1"):
            ipd.rollout(jax.random.PRNGKey(0), bad, good, 2)
    # under a transformation the values are unknown; valid inputs still differentiate
    g = jax.grad(lambda p: ipd.exact_value(p, good)[0])(good)
    assert g.shape == (5,) and bool(jnp.all(jnp.isfinite(g)))

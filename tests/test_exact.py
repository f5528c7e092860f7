"""The exact-IPD layer: naive and LOLA learners vs finite differences, simultaneous learning,
metrics and the one reciprocity test."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.games import ipd
from lowrank_es.shaping import exact, lola


def _fd_grad(f, x, h=1e-6):
    """Central finite differences of a scalar function (float64)."""
    g = np.zeros(x.shape)
    for i in range(x.size):
        e = jnp.zeros_like(x).at[i].set(h)
        g[i] = (float(f(x + e)) - float(f(x - e))) / (2 * h)
    return g


def _thetas(seed):
    rng = np.random.default_rng(seed)
    return jnp.array(rng.normal(size=5)), jnp.array(rng.normal(size=5))


def test_naive_direction_matches_finite_differences_of_closed_form():
    with jax.enable_x64(True):
        for seed in range(3):
            t1, t2 = _thetas(seed)
            fd = _fd_grad(lambda t: ipd.exact_value(jax.nn.sigmoid(t), jax.nn.sigmoid(t2))[0], t1)
            np.testing.assert_allclose(exact.naive_direction(t1, t2), fd, rtol=1e-6, atol=1e-8)
            # player 2's direction: its own value, exact_value(p1, p2)[1], w.r.t. its logits
            fd2 = _fd_grad(lambda t: ipd.exact_value(jax.nn.sigmoid(t1), jax.nn.sigmoid(t))[1], t2)
            np.testing.assert_allclose(exact.naive_direction(t2, t1), fd2, rtol=1e-6, atol=1e-8)


def test_lola_shaping_term_is_gradient_of_linearised_objective():
    """shaping = grad_1 [ g . grad_2 V2(theta1, theta2) ] with g = grad_2 V1 frozen."""
    with jax.enable_x64(True):
        cfg = exact.ExactConfig()
        t1, t2 = _thetas(4)
        g = jax.grad(exact.value, argnums=1)(t1, t2)
        f = lambda t: jnp.dot(g, jax.grad(exact.value)(t2, t))  # noqa: E731
        np.testing.assert_allclose(lola.shaping_term(t1, t2, cfg), _fd_grad(f, t1), rtol=1e-5, atol=1e-7)
        eta = 0.7
        np.testing.assert_allclose(
            lola.direction(t1, t2, exact.ExactConfig(lookahead=eta)),
            exact.naive_direction(t1, t2) + eta * lola.shaping_term(t1, t2, cfg), rtol=1e-10)


def test_lola_term_matches_finite_difference_of_lookahead_objective():
    """d/d eta at 0 of grad_1 V1(theta1, theta2 + eta grad_2 V2) is LOLA's shaping term plus
    the term LOLA drops, (d/d theta2 grad_1 V1) grad_2 V2; central difference in eta."""
    with jax.enable_x64(True):
        for seed in range(2):
            t1, t2 = _thetas(10 + seed)
            eta = 1e-4
            gl = lambda e: jax.grad(lola.lookahead_value)(t1, t2, exact.ExactConfig(lookahead=e))  # noqa: E731
            fd = (gl(eta) - gl(-eta)) / (2 * eta)
            g2 = jax.grad(exact.value)(t2, t1)
            dropped = jax.jvp(lambda t: jax.grad(exact.value)(t1, t), (t2,), (g2,))[1]
            np.testing.assert_allclose(fd, lola.shaping_term(t1, t2) + dropped, rtol=1e-5, atol=1e-8)
            np.testing.assert_allclose(gl(0.0), exact.naive_direction(t1, t2), rtol=1e-12)


def test_simulate_exact_steps_and_batching():
    d = functools.partial(exact.naive_direction, cfg=exact.ExactConfig())
    t1, t2 = _thetas(5)
    tr1, tr2 = exact.simulate(d, d, t1, t2, (0.5, 0.25), 3)
    assert tr1.shape == (4, 5)
    np.testing.assert_allclose(tr1[1], t1 + 0.5 * exact.naive_direction(t1, t2), atol=1e-5)
    np.testing.assert_allclose(tr2[1], t2 + 0.25 * exact.naive_direction(t2, t1), atol=1e-5)
    b1, b2 = exact.simulate(d, d, jnp.stack([t1, t2]), jnp.stack([t2, t1]), (0.5, 0.25), 3)
    assert b1.shape == (2, 4, 5)
    np.testing.assert_allclose(b1[0], tr1, atol=1e-5)
    # a fixed opponent never moves
    f1, f2 = exact.simulate(d, exact.fixed_direction, t1, exact.fixed_theta("tit_for_tat"), 1.0, 5)
    np.testing.assert_array_equal(f2[-1], exact.fixed_theta("tit_for_tat"))
    with pytest.raises(ValueError, match="theta1"):
        exact.simulate(d, d, jnp.zeros(4), jnp.zeros(4), 1.0, 3)


def test_naive_learners_defect_and_naive_vs_always_defect_defects():
    d = functools.partial(exact.naive_direction, cfg=exact.ExactConfig())
    t1, t2 = _thetas(6)
    tr1, tr2 = exact.simulate(d, d, t1, t2, 1.0, 300)
    r = exact.reward_per_step(exact.policy(tr1[-1]), exact.policy(tr2[-1]))
    np.testing.assert_allclose(r, [-2.0, -2.0], atol=0.05)


def test_metrics_on_reference_policies():
    with jax.enable_x64(True):
        F = {k: v.astype(jnp.float64) for k, v in exact.IPD_FIXED.items()}
        ac, ad, tft, rnd = F["always_cooperate"], F["always_defect"], F["tit_for_tat"], F["random"]
        np.testing.assert_allclose(exact.reward_per_step(ac, ac), [-1, -1])
        np.testing.assert_allclose(exact.reward_per_step(ad, ad), [-2, -2])
        np.testing.assert_allclose(exact.mutual_cooperation(ac, ac), 1.0)
        np.testing.assert_allclose(exact.mutual_cooperation(rnd, rnd), 0.25)
        np.testing.assert_allclose(exact.visitation(tft, rnd).sum(), 1.0)
        np.testing.assert_allclose(exact.exploitability(ac), -3.0)
        np.testing.assert_allclose(exact.exploitability(ad), -2.0)
        # TFT vs AD: one sucker step then DD: (1-g)(-3) + g(-2)
        np.testing.assert_allclose(exact.exploitability(tft), 0.04 * -3 + 0.96 * -2)
        np.testing.assert_allclose(exact.ipd_pareto_gap(-2.0, -2.0), 1.0)
        np.testing.assert_allclose(exact.ipd_pareto_gap(-1.0, -1.0), 0.0)
        np.testing.assert_allclose(exact.ipd_pareto_gap(0.0, -3.0), 0.0)
        # (-1.5, -2) + 2/3 = (-5/6, -4/3) lies on 2 r1 + r2 = -3 (the other facet needs 5/6)
        np.testing.assert_allclose(exact.ipd_pareto_gap(-1.5, -2.0), 2 / 3)
        out = exact.classify_outcome(jnp.stack([ad, ac, ac, rnd]), jnp.stack([ad, ac, ad, rnd]))
        np.testing.assert_array_equal(out, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="name"):
        exact.fixed_theta("grim")


def test_reciprocity_slice_and_field():
    np.testing.assert_allclose(exact.reciprocity_policy(1.0, 0.0, start=1.0), exact.IPD_FIXED["tit_for_tat"])
    d = functools.partial(exact.naive_direction, cfg=exact.ExactConfig())
    xs, ys = jnp.array([0.3, 0.7]), jnp.array([0.2, 0.5, 0.8])
    dx, dy = exact.reciprocity_field(d, xs, ys)
    assert dx.shape == (3, 2)
    # grid point (x=0.7, y=0.5) by hand
    p = exact.reciprocity_policy(0.7, 0.5)
    t = jnp.log(p / (1 - p))
    dp = p * (1 - p) * exact.naive_direction(t, t)
    np.testing.assert_allclose([dx[1, 1], dy[1, 1]], [(dp[1] + dp[3]) / 2, (dp[2] + dp[4]) / 2], rtol=1e-4, atol=1e-7)


def test_reciprocity_strict_generous_and_tft_probability():
    rec = exact.reciprocity(np.stack([
        [1.0, 1.0, 0.0, 1.0, 0.0],    # TFT
        [0.0, 1.0, 0.0, 1.0, 0.0],    # TFT opening with D: still TFT on the memory states
        [1.0, 1.0, 0.4, 1.0, 0.0],    # generous TFT (forgives 40 % after CD): strict too
        [1.0, 1.0, 0.6, 1.0, 0.0],    # lenient after CD: only generous (reactive average 0.3)
        [1.0, 1.0, 0.0, 0.0, 0.0],    # grim trigger: neither (defects after DC)
        [1.0, 1.0, 1.0, 1.0, 1.0],    # always cooperate: neither
    ]))
    np.testing.assert_array_equal(rec["strict"], [True, True, True, False, False, False])
    np.testing.assert_array_equal(rec["generous"], [True, True, True, True, False, False])
    np.testing.assert_allclose(rec["tft_probability"], [1.0, 1.0, 0.9, 0.85, 0.75, 0.5])
    with pytest.raises(ValueError, match="probabilities"):
        exact.reciprocity(np.array([2.0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="shape"):
        exact.reciprocity(np.zeros(4))


def test_selfplay_and_random_inits():
    d = functools.partial(exact.naive_direction, cfg=exact.ExactConfig())
    out = exact.selfplay(d, n=3, steps=4, lr=0.5, seed=1)
    t1, t2 = exact.random_inits(1, 3)
    np.testing.assert_allclose(out["h1"][:, 0], t1)
    h1, h2 = exact.simulate(d, d, t1, t2, 0.5, 4)
    np.testing.assert_allclose(out["p2"], exact.policy(h2[:, -1]), rtol=1e-6)
    assert out["r"].shape == (3, 2)


def test_epsilon_greedy_is_the_gradient_of_the_behaviour_policy_value():
    """The wrapped naive direction equals finite differences of my value when both players play
    (1 - eps) sigmoid(theta) + eps / 2 (an independent route: probabilities, not logits)."""
    eps = 0.2
    with jax.enable_x64(True):
        d = exact.epsilon_greedy(exact.naive_direction, eps)
        for seed in range(2):
            t1, t2 = _thetas(seed)

            def v(t, other=t2):
                mix = lambda x: (1 - eps) * jax.nn.sigmoid(x) + eps / 2  # noqa: E731
                return ipd.exact_value(mix(t), mix(other))[0]

            np.testing.assert_allclose(d(t1, t2), _fd_grad(v, t1), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(exact.epsilon_greedy(exact.naive_direction, 0.0)(t1, t2),
                                   exact.naive_direction(t1, t2), rtol=1e-12)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="epsilon"):
            exact.epsilon_greedy(exact.naive_direction, bad)


def test_shared_selfplay_is_adam_on_one_policy():
    """Against a plain optax loop on the zero start, and the runs' shapes; a policy that never
    moves stays at P(C) = 1/2."""
    import optax

    cfg = exact.SharedSelfPlay(steps=30, runs=3, every=10, lr=0.05)
    out = exact.shared_selfplay(exact.naive_direction, cfg, seed=0)
    d = exact.epsilon_greedy(exact.naive_direction, cfg.epsilon)
    theta, opt = jnp.zeros(5), optax.adam(cfg.lr)
    state = opt.init(theta)
    for _ in range(cfg.steps):
        upd, state = opt.update(-d(theta, theta), state, theta)
        theta = optax.apply_updates(theta, upd)
    np.testing.assert_allclose(out["p_zero"], jax.nn.sigmoid(theta), atol=1e-5)
    assert out["p"].shape == (3, 5) and out["curve_zero"].shape == (4, 5) and out["r"].shape == (3,)
    np.testing.assert_allclose(out["curve_zero"][0], 0.5)
    still = exact.shared_selfplay(exact.fixed_direction, cfg, seed=0)
    np.testing.assert_allclose(still["p_zero"], 0.5)
    with pytest.raises(ValueError, match="runs"):
        exact.SharedSelfPlay(runs=1)


def test_tft_profile_margin_by_hand():
    tft = np.tile([0.9, 0.9, 0.1, 0.9, 0.1], (4, 1))
    prof = exact.tft_profile(tft)
    np.testing.assert_allclose(prof["half"], 0.0, atol=1e-12)
    assert prof["margin"] == pytest.approx(0.4)
    # two runs, DC = 0.6 and 0.8: mean 0.7, half-width t(0.975, 1) * std / sqrt(2) = 12.706 * 0.1
    p = np.array([[0.5, 0.9, 0.1, 0.6, 0.1], [0.5, 0.9, 0.1, 0.8, 0.1]])
    assert exact.tft_profile(p)["margin"] == pytest.approx(0.2 - 12.7062 * np.std([0.6, 0.8], ddof=1) / np.sqrt(2), abs=1e-4)
    # always-cooperate fails in CD and DD
    assert exact.tft_profile(np.full((3, 5), 0.95))["margin"] == pytest.approx(-0.45)
    with pytest.raises(ValueError, match="runs >= 2"):
        exact.tft_profile(tft[:1])

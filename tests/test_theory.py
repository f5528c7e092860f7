"""The convergence theory of low-rank ES against independent references: float64 Monte Carlo
(tolerances stated in standard-error units), quadrature vs closed forms, brute-force matrix ranks
and synthetic data with a known slope."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es import theory
from lowrank_es.es import eggroll
from lowrank_es.es.eggroll import EGGROLL

SIGMA = 0.5
# Monte Carlo tolerances: every entry within Z_MAX standard errors, and the mean squared
# z-score (about 1 under agreement) below Z2_MEAN_MAX.
Z_MAX = 5.0
Z2_MEAN_MAX = 2.0


def _z(est: theory.MCEstimate, exact: np.ndarray) -> np.ndarray:
    return (est.mean - exact) / est.se


def test_fourth_moment_fingerprint_monte_carlo():
    """E[E_ij^2] = 1 and E[E_ij^4] = 3 + 6/r for E drawn by EGGROLL.member_noise (float64 MC)."""
    draws = 20000
    with jax.enable_x64(True):
        for r in (1, 3, 10):
            es = EGGROLL(sigma=1.0, population=2, rank=r, antithetic=False)
            state = es.init(jax.random.key(r), jnp.zeros((10, 10), jnp.float64))
            noise = jax.vmap(lambda i: es.member_noise(state, i))(jnp.arange(draws))
            E = np.asarray(jnp.einsum("kmr,knr->kmn", noise.A, noise.B) * noise.scale[:, None, None])
            e = E[:, 0, 0]  # one entry, independent across draws
            m2, m4 = np.mean(e**2), np.mean(e**4)
            se2, se4 = np.std(e**2) / math.sqrt(draws), np.std(e**4) / math.sqrt(draws)
            assert abs(m2 - 1.0) < Z_MAX * se2
            assert abs(m4 - theory.fourth_moment(r)) < Z_MAX * se4
            # The characteristic function (1 + t^2/r)^(-r/2), checked at t = 1.
            cf = np.mean(np.cos(e))
            assert abs(cf - theory.characteristic_function(1.0, r)) < Z_MAX * np.std(np.cos(e)) / math.sqrt(draws)
            # Identity covariance across entries: E[E_00 E_01] = 0, E[E_00 E_11] = 0.
            for other in (E[:, 0, 1], E[:, 1, 1]):
                prod = e * other
                assert abs(prod.mean()) < Z_MAX * prod.std() / math.sqrt(draws)
    # The fingerprint distinguishes ranks: 3 + 6/r at r = 1 vs r = 10 differ by 5.4.
    assert theory.fourth_moment(1) == 9.0 and theory.fourth_moment(None) == 3.0


@pytest.mark.parametrize("name", ["quartic", "cosine", "bump"])
def test_closed_forms_match_float64_monte_carlo(name):
    problem = theory.make_problem(name, 4, 3, seed=1)
    for rank in (1, 3, None):
        exact = theory.expected_gradient(problem, SIGMA, rank)
        # Three independent estimates: at rank 1 the per-draw terms are heavy-tailed (products
        # of normals), so one estimate's 12 correlated z-scores fluctuate too much on their own.
        z2 = []
        for seed in (5, 6, 7):
            z = _z(theory.mc_gradient(problem, SIGMA, rank, samples=2**13, seed=seed), exact)
            assert np.max(np.abs(z)) < Z_MAX, (rank, z)
            z2.append(np.mean(z**2))
        assert np.mean(z2) < Z2_MEAN_MAX, (rank, z2)
    # The coupled gap estimator is unbiased for g_r - g_inf, and resolves it.
    gap_exact = theory.expected_gradient(problem, SIGMA, 2) - theory.expected_gradient(problem, SIGMA, None)
    gap = theory.mc_gap(problem, SIGMA, 2, samples=2**14, seed=6)
    z = _z(gap, gap_exact)
    assert np.max(np.abs(z)) < Z_MAX and np.mean(z**2) < Z2_MEAN_MAX
    value, se = gap.norm()
    assert abs(value - np.linalg.norm(gap_exact)) < Z_MAX * se
    assert se < 0.2 * np.linalg.norm(gap_exact)


def test_closed_forms_reject_the_gaussian_answer():
    """Power check: at rank 1 the MC low-rank gradient is many SEs away from the Gaussian one."""
    problem = theory.make_problem("quartic", 4, 3, seed=1)
    est = theory.mc_gradient(problem, SIGMA, 1, samples=2**14, seed=5)
    z = _z(est, theory.expected_gradient(problem, SIGMA, None))
    assert np.mean(z**2) > 20.0


def test_quadrature_agrees_with_closed_forms():
    """The scale-mixture quadrature (Gamma(r/2+1, 2/r) over Gaussian smoothing) reproduces the
    moment (quartic) and characteristic-function (cosine) derivations."""
    problem_q = theory.make_problem("quartic", 5, 4, seed=3)
    problem_c = theory.make_problem("cosine", 5, 4, seed=3, omega=1.7)
    w = problem_c.omega
    for sigma in (0.1, 0.7, 2.0):
        for rank in (1, 2, 7, 64, 256, None):
            q = theory.separable_expected_gradient(lambda x, t: 4 * (x**3 + 3 * x * t**2), problem_q.W, sigma, rank)
            np.testing.assert_allclose(q, theory.expected_gradient(problem_q, sigma, rank), rtol=1e-10, atol=1e-12)
            c = theory.separable_expected_gradient(
                lambda x, t: -w * np.sin(w * x) * np.exp(-0.5 * (w * t) ** 2), problem_c.W, sigma, rank
            )
            np.testing.assert_allclose(c, theory.expected_gradient(problem_c, sigma, rank), rtol=1e-8, atol=1e-12)


def test_quartic_gap_is_exactly_24_w_sigma2_over_r():
    problem = theory.make_problem("quartic", 3, 5, seed=4)
    g_inf = theory.expected_gradient(problem, 0.3, None)
    np.testing.assert_allclose(g_inf, 4 * problem.W**3 + 12 * 0.09 * problem.W, rtol=1e-13)
    for r in (1, 4, 100):
        gap = theory.expected_gradient(problem, 0.3, r) - g_inf
        np.testing.assert_allclose(gap, 24 * problem.W * 0.09 / r, rtol=1e-12, atol=1e-14)
        # Relative error is exactly proportional to 1/r.
        assert theory.relative_error(problem, 0.3, r) * r == pytest.approx(theory.relative_error(problem, 0.3, 1))


def test_cosine_closed_form_limits():
    problem = theory.make_problem("cosine", 3, 3, seed=0, omega=2.0)
    true = -2.0 * np.sin(2.0 * problem.W)
    np.testing.assert_allclose(theory.expected_gradient(problem, 1e-6, 1), true, rtol=1e-9)
    big_r = theory.expected_gradient(problem, 0.4, 10**7)
    np.testing.assert_allclose(big_r, theory.expected_gradient(problem, 0.4, None), rtol=1e-6)


def test_quadratic_has_no_gap_at_any_rank():
    problem = theory.make_problem("quadratic", 8, 8, seed=2)
    grad = theory.true_gradient(problem)  # autodiff, independent of the closed form
    for r in (1, 2, 8, 64, None):
        np.testing.assert_allclose(theory.expected_gradient(problem, 0.7, r), grad, rtol=1e-12, atol=1e-12)
    # Plain Monte Carlo (no control variate) at rank 1 agrees with the true gradient in SE units.
    est = theory.mc_gradient(problem, 0.7, 1, samples=2**14, seed=9, control_variate=False)
    z = _z(est, grad)
    assert np.max(np.abs(z)) < Z_MAX and np.mean(z**2) < Z2_MEAN_MAX


def test_mc_relative_error_tracks_exact_curve():
    problem = theory.make_problem("cosine", 4, 3, seed=1)
    exact = theory.error_curve(problem, 0.8, [1, 3], method="exact")
    mc = theory.error_curve(problem, 0.8, [1, 3], method="mc", samples=2**14, seed=2)
    assert np.all(np.abs(mc["error"] - exact["error"]) < Z_MAX * mc["se"])
    assert np.all(mc["se"] < 0.2 * exact["error"])


def test_slope_fit_recovers_known_slope():
    x = np.array([1, 2, 4, 8, 16, 32, 64], float)
    exact = theory.fit_loglog_slope(x, 3.0 * x**-1.0)
    assert exact.slope == pytest.approx(-1.0, abs=1e-12) and exact.high - exact.low < 1e-9
    rng = np.random.default_rng(0)
    covered, slopes = 0, []
    for _ in range(400):
        rel = 0.05
        y = 2.0 * x**-0.5 * (1 + rel * rng.standard_normal(x.shape))
        fit = theory.fit_loglog_slope(x, y, y_se=rel * 2.0 * x**-0.5)
        covered += fit.low <= -0.5 <= fit.high
        slopes.append(fit.slope)
    assert abs(np.mean(slopes) + 0.5) < 0.01
    assert 0.91 <= covered / 400 <= 0.99  # nominal 95% coverage
    # Without stated errors: the t-interval from residuals also covers.
    y = 2.0 * x**-1.0 * np.exp(0.05 * rng.standard_normal(x.shape))
    fit = theory.fit_loglog_slope(x, y)
    assert fit.low < fit.slope < fit.high and fit.within(-1.15, -0.85)
    assert not theory.fit_loglog_slope(x, x**-0.5).within(-1.15, -0.85)


def test_closed_form_slope_is_minus_one_not_minus_half():
    study = theory.slope_study(("quartic", "cosine", "bump"), sigma=0.3, m=4, n=4)
    for name, res in study.items():
        assert res["fit"].within(-1.15, -0.85), (name, str(res["fit"]))


@pytest.mark.parametrize("m,n,rank", [(16, 16, 1), (12, 20, 3)])
def test_update_rank_is_min_of_Nr_m_n(m, n, rank):
    pops = [2, 3, 4, 6, 10, 40]
    got = theory.update_ranks(m, n, rank, pops, seed=1)
    want = [min(p * rank, m, n) for p in pops]
    np.testing.assert_array_equal(got, want)
    # Brute force for one N: sum of N materialised rank-r perturbations.
    es = EGGROLL(sigma=1.0, population=4, rank=rank, antithetic=False, fitness_shaping="raw")
    with jax.enable_x64(True):
        state = es.init(jax.random.key(3), jnp.zeros((m, n), jnp.float64))
        f = np.array([0.3, -1.2, 0.8, 2.0])
        total = sum(f[i] * np.asarray(es.member_noise(state, i).A @ es.member_noise(state, i).B.T) for i in range(4))
    assert np.linalg.matrix_rank(total) == min(4 * rank, m, n)
    # Antithetic pairs share a draw: N members give N/2 independent directions.
    assert theory.update_rank(m, n, rank, 4, antithetic=True) == min(2 * rank, m, n)


def test_population_split_predicts_measured_mse():
    problem = theory.make_problem("quartic", 4, 4, seed=0)
    split = theory.population_split(problem, 1.0, [1, 4], [8, 64], samples=2**14, seed=1)
    assert np.allclose(split["mse"], split["bias2"][:, None] + split["variance"])
    # Variance falls as 1/N; bias does not depend on N.
    np.testing.assert_allclose(split["variance"][:, 0] / split["variance"][:, 1], 8.0)
    mse, se = theory.population_mse(problem, 1.0, 1, 64, repeats=300, seed=2)
    predicted = split["mse"][0, 1]
    # Direct measurement within 4 SE (plus 5% for the MC error of the predicted variance).
    assert abs(mse - predicted) < 4 * se + 0.05 * predicted, (mse, predicted, se)
    assert split["bias_share"][0, 1] > split["bias_share"][1, 1]


def test_bad_input_raises_value_error():
    problem = theory.make_problem("quartic", 3, 3)
    with pytest.raises(ValueError, match="sigma"):
        theory.expected_gradient(problem, -1.0, 2)
    with pytest.raises(ValueError, match="rank"):
        theory.expected_gradient(problem, 0.1, 0)
    with pytest.raises(ValueError, match="objective"):
        theory.make_problem("sextic")
    with pytest.raises(ValueError, match="closed form"):
        theory.expected_gradient(theory.make_problem("mlp", 3, 3), 0.1, 2)
    with pytest.raises(ValueError, match="samples"):
        theory.mc_gradient(problem, 0.1, 2, samples=1)
    with pytest.raises(ValueError, match="rank"):
        theory.update_rank(4, 4, 5, 8)
    with pytest.raises(ValueError, match="x and y"):
        theory.fit_loglog_slope([1, 2], [1, 2])
    with pytest.raises(ValueError, match="populations"):
        theory.population_split(problem, 0.1, [1], [3])


def _without_inverse_sqrt_rank(pair_noise):
    """EGGROLL.pair_noise with the 1/sqrt(r) taken out of every low-rank scale (a broken optimiser)."""

    def broken(self, state, pair):
        noise = pair_noise(self, state, pair)
        return jax.tree_util.tree_map(
            lambda n: n._replace(scale=n.scale * jnp.sqrt(jnp.asarray(n.A.shape[-1], n.scale.dtype)))
            if isinstance(n, eggroll.LowRank) else n, noise, is_leaf=lambda n: isinstance(n, (eggroll.LowRank, eggroll.Dense)))

    return broken


def test_estimators_take_the_scale_from_the_optimiser(monkeypatch):
    """The Monte Carlo draws its perturbations from EGGROLL.member_noise and scales them by the
    noise's own LowRank.scale: with the optimiser as it is, rank-4 entries have variance 1 and
    the quadratic's low-rank gradient is the true gradient; with the 1/sqrt(r) removed from the
    optimiser, the same estimators see entries of variance r and a gradient r times too large,
    so the claims built on them (eggroll.theory.quadratic_exact, slope, slope_mlp) fail."""
    quad = theory.make_problem("quadratic", 4, 4, seed=3)
    grad = theory.true_gradient(quad)
    # Shapes and draw counts used nowhere else, so no compiled sampler is shared with other tests.
    good_m2 = theory.entry_moments(4, draws=4099, seed=1)["m2"]
    good_ratio = theory.noise_ratio(quad, 0.5, 4, grad, samples=3 * 1021, seed=2)
    assert abs(good_m2 - 1.0) < 0.1 and 0.2 < good_ratio < 3.0
    monkeypatch.setattr(eggroll.EGGROLL, "pair_noise", _without_inverse_sqrt_rank(eggroll.EGGROLL.pair_noise))
    bad_m2 = theory.entry_moments(4, draws=4097, seed=1)["m2"]
    bad_ratio = theory.noise_ratio(quad, 0.5, 4, grad, samples=3 * 1019, seed=2)
    assert abs(bad_m2 - 4.0) < 0.4
    assert bad_ratio > 10.0, bad_ratio  # the claim holds only up to 2

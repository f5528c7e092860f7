"""lowrank_es.stats against scipy / brute-force references."""

import numpy as np
import pytest
from scipy import stats as st

from lowrank_es import stats


@pytest.mark.parametrize("n", [4, 5, 7, 10, 23])
def test_iqm_matches_scipy_trim_mean(n):
    x = np.random.default_rng(n).normal(size=n) ** 3
    assert stats.iqm(x) == pytest.approx(st.trim_mean(x, 0.25), rel=1e-12)


def test_iqm_hand_example():
    # sorted: 1 2 3 4 100 1000 -> drop one each side -> mean(2, 3, 4, 100)
    assert stats.iqm([1000, 3, 1, 4, 2, 100]) == pytest.approx(27.25)


def test_bootstrap_single_task_matches_scipy():
    x = np.random.default_rng(0).normal(1.0, 2.0, size=30)
    point, lo, hi = stats.stratified_bootstrap_ci(x, np.mean, reps=20000, seed=1)
    ref = st.bootstrap((x,), np.mean, n_resamples=20000, method="percentile", confidence_level=0.95,
                       random_state=np.random.default_rng(2)).confidence_interval
    width = ref.high - ref.low
    assert point == pytest.approx(x.mean())
    assert lo == pytest.approx(ref.low, abs=0.03 * width)
    assert hi == pytest.approx(ref.high, abs=0.03 * width)


def test_bootstrap_is_stratified_by_task():
    # Each task is constant: resampling within tasks never changes the mean; pooled
    # resampling across tasks would.
    x = np.column_stack([np.zeros(5), np.ones(5), np.full(5, 3.0)])
    point, lo, hi = stats.stratified_bootstrap_ci(x, np.mean, reps=500)
    assert point == lo == hi == pytest.approx(4.0 / 3.0)


def test_performance_profile_brute_force():
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(5, 4))
    taus = np.linspace(0, 1, 11)
    ref = [sum(v > t for v in x.ravel()) / x.size for t in taus]
    np.testing.assert_allclose(stats.performance_profile(x, taus), ref)
    prof, lo, hi = stats.performance_profile_ci(x, taus, reps=200)
    assert np.all(lo <= prof + 1e-12) and np.all(prof <= hi + 1e-12)


@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5])
def test_non_inferiority_matches_welch_ttest(margin):
    rng = np.random.default_rng(4)
    a, b = rng.normal(0.9, 0.1, size=5), rng.normal(1.0, 0.3, size=7)
    res = stats.non_inferiority(a, b, margin)
    ref = st.ttest_ind(a + margin, b, equal_var=False, alternative="greater")
    assert res["p_value"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert res["non_inferior"] == (res["lower"] > -margin) == (ref.pvalue < 0.05)


def test_non_inferiority_decides_both_ways():
    b = np.array([1.0, 1.01, 0.99, 1.0, 1.02])
    assert stats.non_inferiority(b - 0.02, b, margin=0.1)["non_inferior"]
    assert not stats.non_inferiority(b - 0.3, b, margin=0.1)["non_inferior"]


def test_mann_whitney_matches_scipy():
    a, b = np.arange(6.0), np.arange(6.0) + 0.5
    res = stats.indistinguishable(a, b)
    assert res["p_value"] == pytest.approx(st.mannwhitneyu(a, b).pvalue)
    assert res["same"]
    assert not stats.indistinguishable(np.arange(8.0), np.arange(8.0) + 100)["same"]


def test_bad_input():
    with pytest.raises(ValueError, match="margin"):
        stats.non_inferiority([1, 2], [1, 2], margin=-1)
    with pytest.raises(ValueError, match="alpha"):
        stats.stratified_bootstrap_ci([1, 2, 3], alpha=2)
    with pytest.raises(ValueError, match="best"):
        stats.normalise([1.0], random=1.0, best=1.0)


def test_fraction_se_is_the_smoothed_binomial_se_and_never_zero():
    # (k + 1) / (n + 2): 5 of 5 -> q = 6/7; 2 of 4 -> q = 1/2
    assert stats.fraction_se([True] * 5) == pytest.approx(np.sqrt(6 / 7 * 1 / 7 / 5))
    assert stats.fraction_se([0, 1, 1, 0]) == pytest.approx(np.sqrt(0.25 / 4))
    assert stats.fraction_se([False] * 50) > 0
    with pytest.raises(ValueError, match="at least one seed"):
        stats.fraction_se([])


def test_difference_ci_single_task_matches_scipy_two_sample_bootstrap():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1.0, 2.0, size=25), rng.normal(0.2, 1.0, size=18)
    point, lo, hi = stats.stratified_bootstrap_difference_ci(a, b, np.mean, reps=20000, seed=1)
    ref = st.bootstrap((a, b), lambda x, y: np.mean(x) - np.mean(y), n_resamples=20000, method="percentile",
                       vectorized=False, random_state=np.random.default_rng(2)).confidence_interval
    width = ref.high - ref.low
    assert point == pytest.approx(a.mean() - b.mean())
    assert lo == pytest.approx(ref.low, abs=0.03 * width)
    assert hi == pytest.approx(ref.high, abs=0.03 * width)


def test_difference_ci_is_stratified_and_checks_tasks():
    # Constant tasks: resampling within a task changes nothing, so the interval is a point.
    a = np.column_stack([np.zeros(4), np.full(4, 2.0)])
    b = np.column_stack([np.ones(6), np.ones(6)])
    point, lo, hi = stats.stratified_bootstrap_difference_ci(a, b, np.mean, reps=300)
    assert point == lo == hi == pytest.approx(0.0)
    with pytest.raises(ValueError, match="same tasks"):
        stats.stratified_bootstrap_difference_ci(a, np.ones((3, 3)))


def test_median_ci_order_statistics_and_coverage():
    from lowrank_es.stats import median_ci

    assert median_ci(np.arange(1, 16)) == (4.0, 12.0)  # n = 15: x_(4), x_(12)
    assert median_ci(np.arange(6)[::-1]) == (0.0, 5.0)
    with pytest.raises(ValueError, match="need >= 6"):
        median_ci(np.arange(5))
    # float64 Monte Carlo: coverage of the true median >= 95% (exact 0.9648 at n = 15), 4 s.e. slack
    rng = np.random.default_rng(0)
    x = rng.standard_exponential((20000, 15))
    lo_hi = np.array([median_ci(row) for row in x])
    cover = np.mean((lo_hi[:, 0] <= np.log(2)) & (np.log(2) <= lo_hi[:, 1]))
    assert cover >= 0.9648 - 4 * np.sqrt(0.9648 * 0.0352 / 20000)


def test_non_inferiority_power_matches_a_float64_monte_carlo_of_the_test():
    """The noncentral-t power of the one-sided Welch test against the rejection rate of
    stats.non_inferiority itself on 4,000 simulated experiments per case (float64); binomial
    standard error <= 0.008, tolerance 0.03 (the approximation's own error is smaller)."""
    rng = np.random.default_rng(0)
    for sd_a, sd_b, n, true_diff in ((0.2, 0.2, 16, 0.0), (0.5, 0.3, 40, 0.0), (0.3, 0.1, 8, 0.05)):
        hits = [stats.non_inferiority(rng.normal(true_diff, sd_a, n), rng.normal(0.0, sd_b, n), 0.1)["non_inferior"]
                for _ in range(4000)]
        assert abs(np.mean(hits) - stats.non_inferiority_power(sd_a, sd_b, n, 0.1, true_diff=true_diff)) < 0.03


def test_seeds_for_power_is_the_smallest_n_reaching_it():
    n = stats.seeds_for_power(0.3, 0.3, 0.1)
    assert stats.non_inferiority_power(0.3, 0.3, n, 0.1) >= 0.8 > stats.non_inferiority_power(0.3, 0.3, n - 1, 0.1)
    # the normal-approximation formula 2 (z_0.95 + z_0.8)^2 sd^2 / margin^2 = 111.3 for sd 0.3
    assert 105 <= n <= 118
    assert stats.seeds_for_power(0.01, 0.01, 0.1) == 2
    with pytest.raises(ValueError, match="power"):
        stats.seeds_for_power(0.3, 0.3, 0.1, power=1.0)
    with pytest.raises(ValueError, match="n must be"):
        stats.non_inferiority_power(0.3, 0.3, 1, 0.1)

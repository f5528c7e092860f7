"""Member noise generators (lowrank_es.es.noise) against their stated laws.

Every generator the package offers is checked by float64 Monte Carlo: the entries of
``E = A B^T / sqrt(r)`` have mean 0, variance 1 and fourth moment ``3 + 6 / r``, dense noise
has mean 0, variance 1 and fourth moment 3, and distinct members (different antithetic
pairs), leaves and entries are uncorrelated. Tolerances: 5 standard errors estimated from
the spread of the per-draw statistics, or the stated relative bound on a chi-square-like sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from lowrank_es.es import eggroll, noise
from lowrank_es.es.eggroll import EGGROLL

KINDS = noise.NOISE_KINDS


def _draws(kind: str, rank: int, draws: int, shape=(8, 8)) -> tuple[np.ndarray, np.ndarray]:
    """``draws`` independent members' materialised ``E`` (draws, m n) and bias noise (draws, m)."""
    es = EGGROLL(sigma=1.0, population=draws, rank=rank, antithetic=False, noise=kind)
    state = es.init(jax.random.PRNGKey(rank), {"W": jnp.zeros(shape), "b": jnp.zeros(shape[0])})
    nz = jax.jit(jax.vmap(lambda i: es.member_noise(state, i)))(jnp.arange(draws))
    E = jax.vmap(eggroll.perturbation)(nz["W"])
    return np.asarray(E).reshape(draws, -1), np.asarray(nz["b"].eps)


def _assert_moments(x: np.ndarray, expected: dict[int, float]) -> None:
    for power, want in expected.items():
        per_draw = (x**power).mean(axis=1)
        se = per_draw.std(ddof=1) / np.sqrt(len(per_draw))
        assert abs(per_draw.mean() - want) < 5 * se, (power, per_draw.mean(), want, se)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rank", [1, 2, 8])
def test_lowrank_entries_have_mean_0_variance_1_fourth_moment_3_plus_6_over_r(kind, rank):
    with jax.enable_x64(True):
        E, b = _draws(kind, rank, 60_000)
        _assert_moments(E, {1: 0.0, 2: 1.0, 4: 3.0 + 6.0 / rank})
        _assert_moments(b, {1: 0.0, 2: 1.0, 3: 0.0, 4: 3.0})
        if rank == 1:  # the test can fail: a rank-1 entry is a product of two normals, not a normal
            assert abs((E**4).mean() - 3.0) > 1.0


def _mean_z2(a: np.ndarray, b: np.ndarray, expected: np.ndarray | float = 0.0) -> float:
    """Mean over entry pairs (i, j) of z_ij^2, z_ij = (mean_k a_ki b_kj - expected_ij) / its s.e.
    With the stated covariance, each z_ij is about N(0, 1), so this is about 1."""
    K = a.shape[0]
    m1 = a.T @ b / K
    var = (a**2).T @ (b**2) / K - m1**2
    return float(np.mean((m1 - expected) ** 2 * K / var))


@pytest.mark.parametrize("kind", KINDS)
def test_members_leaves_and_entries_are_uncorrelated(kind):
    """Cross-covariance of two members' noise (entries of E and of the bias) over K generations
    is 0, and one member's own covariance is the identity: the mean squared z-score over all
    pairs of entries is 1 +- 0.25. The antithetic partner (the same draw) must fail it."""
    with jax.enable_x64(True):
        K = 10_000
        es = EGGROLL(sigma=1.0, population=8, rank=2, noise=kind)
        state = es.init(jax.random.PRNGKey(5), {"W": jnp.zeros((6, 5)), "b": jnp.zeros(6)})

        def flat(g, member):  # E and the bias noise, the antithetic sign removed (sigma = 1)
            nz = es.member_noise(state._replace(generation=g), member)
            return jnp.concatenate([eggroll.perturbation(nz["W"]).ravel() * nz["b"].scale, nz["b"].eps])

        members = jnp.array([0, 2, 5, 1])
        x = jax.jit(jax.vmap(jax.vmap(flat, (None, 0)), (0, None)))(jnp.arange(K), members)
        x0, x2, x5, x1 = np.moveaxis(np.asarray(x), 1, 0)
        for other in (x2, x5):  # members of other pairs
            assert abs(_mean_z2(x0, other) - 1.0) < 0.25
        assert abs(_mean_z2(x0[:, :30], x0[:, 30:]) - 1.0) < 0.25  # two leaves of one member
        assert abs(_mean_z2(x0, x0, np.eye(x0.shape[1])) - 1.0) < 0.25  # one member's entries
        assert _mean_z2(x0, x1) > 10  # the antithetic partner: the same draw


@pytest.mark.parametrize("kind", KINDS)
def test_same_key_same_bits_and_every_index_changes_the_noise(kind):
    es = EGGROLL(sigma=0.1, population=8, rank=2, noise=kind)
    params = {"W": jnp.zeros((40, 24)), "b": jnp.zeros(40)}
    s = es.init(jax.random.PRNGKey(9), params)
    pair_noise = jax.jit(es.pair_noise)
    a = jax.tree_util.tree_leaves(pair_noise(s, 1))
    b = jax.tree_util.tree_leaves(pair_noise(es.init(jax.random.PRNGKey(9), params), 1))
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    others = [pair_noise(s, 2), pair_noise(s._replace(generation=s.generation + 1), 1),
              pair_noise(es.init(jax.random.PRNGKey(10), params), 1)]
    for o in others:
        assert not np.allclose(np.asarray(a[0]), np.asarray(jax.tree_util.tree_leaves(o)[0]))
    # the two leaves (and A, B of one leaf, and the two columns of A) differ
    nz = pair_noise(s, 1)
    assert not np.allclose(nz["W"].A[:, 0], nz["W"].A[:, 1])
    assert not np.allclose(nz["W"].A[:24, 0], nz["W"].B[:, 0])
    assert not np.allclose(nz["W"].A[:, 0], nz["b"].eps)


def test_prng_kind_keeps_the_original_stream():
    """``noise="prng"`` draws exactly what EGGROLL drew before the generator became a field:
    ``jax.random.normal`` of the folded (key, generation, pair, leaf) key, split into A and B."""
    es = EGGROLL(sigma=0.5, population=4, rank=2, noise="prng")
    params = {"W": jnp.zeros((7, 5)), "b": jnp.zeros(7)}
    s = es.init(jax.random.PRNGKey(3), params)
    nz = es.pair_noise(s, 1)
    k = jax.random.fold_in(jax.random.fold_in(s.key, 0), 1)
    # leaves flatten in key order: "W" (leaf 0), then "b" (leaf 1)
    ka, kb = jax.random.split(jax.random.fold_in(k, 0))
    np.testing.assert_array_equal(nz["W"].A, jax.random.normal(ka, (7, 2)))
    np.testing.assert_array_equal(nz["W"].B, jax.random.normal(kb, (5, 2)))
    np.testing.assert_array_equal(nz["b"].eps, jax.random.normal(jax.random.fold_in(k, 1), (7,)))


def test_table_has_exact_moments_and_a_gaussian_shape():
    t = noise.gaussian_table().astype(np.float64)
    assert t.shape == (2**noise.TABLE_BITS,) and noise.gaussian_table().dtype == np.float32
    assert abs(t.mean()) < 1e-9 and abs((t**2).mean() - 1) < 1e-7 and abs((t**4).mean() - 3) < 1e-6
    assert abs((t**3).mean()) < 1e-9  # symmetric
    assert stats.kstest(t, "norm").statistic < 1e-4  # its values are Gaussian quantiles
    assert np.max(np.abs(noise.window_square_correlations())) < 0.02


def test_table_noise_covers_the_table_and_flips_signs():
    """Offsets reach the whole cyclic table and signs are balanced: the values drawn from many
    keys are the table's law (two-sample KS against the table itself)."""
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    x = np.asarray(jax.vmap(lambda k: noise.standard_normal(k, (3, 50), kind="table"))(keys)).ravel()
    assert stats.ks_2samp(x, noise.gaussian_table()).pvalue > 1e-3
    assert abs(np.mean(x > 0) - 0.5) < 5 * 0.5 / np.sqrt(x.size)


@pytest.mark.parametrize("shape", [(), (1,), (17,), (3, 33), (2, 3, 16)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_table_noise_shapes_and_dtypes(shape, dtype):
    x = noise.standard_normal(jax.random.PRNGKey(1), shape, dtype, "table")
    assert x.shape == shape and x.dtype == dtype and bool(jnp.all(jnp.isfinite(x)))


def test_auto_resolves_per_platform_and_bad_kinds_raise():
    assert noise.resolve("auto") == noise.DEFAULT_NOISE.get(jax.default_backend(), "table")
    assert EGGROLL(sigma=0.1, population=4).noise == "auto"
    with pytest.raises(ValueError, match="noise must be one of"):
        EGGROLL(sigma=0.1, population=4, noise="philox")
    with pytest.raises(ValueError, match="noise must be one of"):
        noise.standard_normal(jax.random.PRNGKey(0), (3,), kind="uniform")

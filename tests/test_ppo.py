"""PPO loss terms against small hand-worked examples."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as st

from lowrank_es.baselines import ppo
from lowrank_es.tasks.control import EnvSpec


def test_clipped_surrogate_hand_example():
    # ratios 1.5, 0.5, 1.0 with advantages 1, -1, 2 and eps 0.2:
    # min(1.5, 1.2) = 1.2; min(-0.5, -0.8) = -0.8; min(2, 2) = 2 -> loss = -(1.2 - 0.8 + 2) / 3
    logp_old = jnp.zeros(3)
    logp_new = jnp.log(jnp.array([1.5, 0.5, 1.0]))
    adv = jnp.array([1.0, -1.0, 2.0])
    assert float(ppo.clipped_surrogate(logp_new, logp_old, adv, 0.2)) == pytest.approx(-0.8, rel=1e-6)


def test_clipped_value_loss_hand_example():
    # v_clip = (0.7, 2.0); max((1-2)^2, (0.7-2)^2) = 1.69, max(1, 1) = 1 -> 0.5 * 1.345
    v = ppo.clipped_value_loss(jnp.array([1.0, 2.0]), jnp.array([0.5, 2.0]), jnp.array([2.0, 1.0]), 0.2)
    assert float(v) == pytest.approx(0.6725, rel=1e-6)


def test_gae_hand_example():
    # T = 3, episode ends after step 1 (index 1); gamma 0.9, lambda 0.5, last value 10.
    r = jnp.array([1.0, 2.0, 3.0])
    v = jnp.array([0.5, 1.0, 1.5])
    d = jnp.array([0.0, 1.0, 0.0])
    adv, tgt = ppo.gae(r, v, d, jnp.asarray(10.0), 0.9, 0.5)
    d2 = 3.0 + 0.9 * 10.0 - 1.5  # 10.5
    d1 = 2.0 - 1.0  # episode ends: no bootstrap, 1.0
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    a2, a1 = d2, d1
    a0 = d0 + 0.9 * 0.5 * a1  # 1.85
    np.testing.assert_allclose(adv, [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose(tgt, [a0 + 0.5, a1 + 1.0, a2 + 1.5], rtol=1e-6)


def test_gae_bootstrap_mask_for_truncation():
    # Truncated step: episode boundary for the GAE recursion but the TD error keeps gamma V(next).
    r, v = jnp.array([1.0, 1.0]), jnp.array([0.0, 0.0])
    adv, _ = ppo.gae(r, v, jnp.array([1.0, 0.0]), jnp.asarray(5.0), 0.5, 1.0, bootstrap_mask=jnp.array([1.0, 1.0]))
    # delta_1 = 1 + 0.5 * 5 = 3.5; delta_0 = 1 + 0.5 * v_1 = 1; no propagation across the boundary.
    np.testing.assert_allclose(adv, [1.0, 3.5], rtol=1e-6)


def test_entropy_and_log_prob_discrete():
    spec = EnvSpec("x", 1, True, 2, 0.0, 1)
    logits = jnp.array([[0.0, jnp.log(3.0)]])
    logp, ent = ppo.log_prob_entropy(spec, {}, logits, jnp.array([1]))
    assert float(logp[0]) == pytest.approx(np.log(0.75), rel=1e-6)
    assert float(ent[0]) == pytest.approx(-(0.25 * np.log(0.25) + 0.75 * np.log(0.75)), rel=1e-6)


def test_entropy_and_log_prob_gaussian():
    spec = EnvSpec("x", 1, False, 2, 2.0, 1)
    net = {"log_std": jnp.array([0.0, np.log(2.0)])}
    mean = jnp.array([[0.5, -1.0]])
    a = jnp.array([[1.0, 0.0]])
    logp, ent = ppo.log_prob_entropy(spec, net, mean, a)
    ref = st.norm.logpdf(1.0, 0.5, 1.0) + st.norm.logpdf(0.0, -1.0, 2.0)
    assert float(logp[0]) == pytest.approx(ref, rel=1e-5)
    assert float(ent[0]) == pytest.approx(st.norm.entropy(0, 1) + st.norm.entropy(0, 2), rel=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="num_minibatches"):
        ppo.PPOConfig(num_envs=3, num_steps=5, num_minibatches=4)
    with pytest.raises(ValueError, match="gamma"):
        ppo.PPOConfig(gamma=1.5)
    assert ppo.PPOConfig(total_timesteps=500_000).num_updates == 976


def test_carry_forward_fills_updates_without_finished_episodes():
    x = np.array([[np.nan, 1.0, np.nan, np.nan, 3.0], [2.0, np.nan, 5.0, np.nan, np.nan]])
    np.testing.assert_array_equal(ppo.carry_forward(x), [[np.nan, 1.0, 1.0, 1.0, 3.0], [2.0, 2.0, 5.0, 5.0, 5.0]])


def test_run_is_vmapped_over_seeds_and_deterministic():
    cfg = ppo.PPOConfig(total_timesteps=4 * 32 * 3, num_steps=32, update_epochs=1, num_minibatches=1, hidden=(8,))
    a, b = ppo.run(cfg, [0, 1]), ppo.run(cfg, [0, 1])
    assert a["mean_return"].shape == (2, 3) and list(a["env_steps"]) == [128, 256, 384]
    np.testing.assert_array_equal(a["mean_return"], b["mean_return"])
    assert not np.array_equal(a["mean_return"][0], a["mean_return"][1])  # seeds differ

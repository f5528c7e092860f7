"""GRPO loss terms against hand-worked examples."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lowrank_es.baselines.grpo import group_advantages, grpo_objective_terms, k3_kl, make_update


def test_group_advantages_hand_worked():
    r = jnp.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    a = np.asarray(group_advantages(r, eps=0.0 + 1e-12))
    # group 1: mean 0.5, std 0.5 -> +-1; group 2: all equal -> 0 (0 / eps)
    np.testing.assert_allclose(a[0], [1, -1, -1, 1], atol=1e-6)
    np.testing.assert_allclose(a[1], [0, 0, 0, 0], atol=1e-6)
    # group 3: mean 0.75, std sqrt(mean([2.25^2, 0.75^2 x3])) = sqrt(27/16) = 1.299
    sd = math.sqrt((2.25**2 + 3 * 0.75**2) / 4)
    np.testing.assert_allclose(a[2], [2.25 / sd, -0.75 / sd, -0.75 / sd, -0.75 / sd], rtol=1e-5)
    with pytest.raises(ValueError, match="rewards"):
        group_advantages(jnp.ones(4))


def test_clipping_hand_worked():
    # one token per sequence; ratios 1.5 and 0.5 with advantages +1 and -1, eps = 0.2
    ratio = jnp.array([1.5, 1.5, 0.5, 0.5])
    adv = jnp.array([1.0, -1.0, 1.0, -1.0])
    lp_old = jnp.zeros((4, 1))
    lp_new = jnp.log(ratio)[:, None]
    mask = jnp.ones((4, 1))
    t = grpo_objective_terms(lp_new, lp_old, lp_new, adv, mask, clip_eps=0.2, beta=0.0)
    # min(1.5, 1.2) = 1.2 ; min(-1.5, -1.2) = -1.5 ; min(0.5, 0.8) = 0.5 ; min(-0.5, -0.8) = -0.8
    expected = (1.2 - 1.5 + 0.5 - 0.8) / 4
    np.testing.assert_allclose(float(t["surrogate"]), expected, rtol=1e-6)
    np.testing.assert_allclose(float(t["loss"]), -expected, rtol=1e-6)
    assert float(t["kl"]) == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(float(t["clip_frac"]), 0.5)  # sequences 0 and 3 are clipped


def test_kl_k3_and_masking_hand_worked():
    # sequence 0: two generated tokens, logp_ref - logp_new = log 2 and 0; a third masked token.
    lp_new = jnp.array([[-1.0, -2.0, -5.0]])
    lp_ref = jnp.array([[-1.0 + math.log(2.0), -2.0, 7.0]])
    mask = jnp.array([[1.0, 1.0, 0.0]])
    kl_tok = 2.0 - math.log(2.0) - 1.0  # exp(d) - d - 1
    np.testing.assert_allclose(float(k3_kl(lp_new, lp_ref)[0, 0]), kl_tok, rtol=1e-6)
    t = grpo_objective_terms(lp_new, lp_new, lp_ref, jnp.array([0.5]), mask, clip_eps=0.2, beta=0.1)
    np.testing.assert_allclose(float(t["kl"]), kl_tok / 2, rtol=1e-6)
    np.testing.assert_allclose(float(t["surrogate"]), 0.5, rtol=1e-6)  # ratio 1 on every token
    np.testing.assert_allclose(float(t["loss"]), -(0.5 - 0.1 * kl_tok / 2), rtol=1e-6)
    # k3 is non-negative and zero only when the two agree
    d = jnp.linspace(-3, 3, 61)
    k = k3_kl(jnp.zeros_like(d), d)
    assert bool(jnp.all(k >= 0)) and float(k[30]) == 0.0


def test_gradient_is_policy_gradient_at_ratio_one():
    # At logp_new == logp_old and beta = 0, d loss / d logp_new[s, t] = -A_s / (n_tokens_s * S).
    lp = jnp.array([[-1.0, -0.5, -0.2], [-0.3, -0.7, -0.9]])
    mask = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    adv = jnp.array([2.0, -1.0])
    g = jax.grad(lambda x: grpo_objective_terms(x, lp, lp, adv, mask, 0.2, 0.0)["loss"])(lp)
    expected = np.array([[-2 / 3 / 2] * 3, [1 / 1 / 2, 0, 0]])
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-6)


def test_update_raises_the_advantaged_logprob():
    # A softmax policy over 3 tokens: one update with advantage +1 on token 2 raises its probability.
    def logprob_fn(params, tokens):
        return jax.nn.log_softmax(params["logits"])[tokens]

    params = {"logits": jnp.zeros(3)}
    opt = optax.sgd(0.5)
    update = jax.jit(make_update(logprob_fn, opt, clip_eps=0.2, beta=0.0))
    toks = jnp.array([[2], [0]])
    lp = logprob_fn(params, toks)
    new, _, m = update(params, opt.init(params), toks, jnp.ones((2, 1)), jnp.array([1.0, -1.0]), lp, lp)
    p = jax.nn.softmax(new["logits"])
    assert float(p[2]) > 1 / 3 > float(p[0])
    with pytest.raises(ValueError, match="clip_eps"):
        make_update(logprob_fn, opt, clip_eps=0.0)

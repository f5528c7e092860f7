"""Group Relative Policy Optimisation (GRPO, DeepSeekMath arXiv:2402.03300) in pure JAX.

For each prompt a group of ``G`` answers is sampled from the current policy; each answer's
advantage is its reward normalised by the group's mean and standard deviation, shared by all its
tokens. The objective per generated token ``t`` of answer ``i`` is

    min(rho * A_i, clip(rho, 1 - eps, 1 + eps) * A_i) - beta * KL_t,
    rho = exp(logp_new - logp_old),
    KL_t = exp(logp_ref - logp_new) - (logp_ref - logp_new) - 1     (the "k3" estimator),

averaged over the answer's tokens, then over answers; the loss is its negative. The
optimiser is any optax transformation.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def group_advantages(rewards: jax.Array, eps: float = 1e-6) -> jax.Array:
    """(r - group mean) / (group std + eps), std with ddof=0. rewards: (P, G) -> (P, G)."""
    if rewards.ndim != 2:
        raise ValueError(f"rewards must have shape (prompts, group), got {rewards.shape}")
    mu = rewards.mean(axis=1, keepdims=True)
    sd = rewards.std(axis=1, keepdims=True)
    return (rewards - mu) / (sd + eps)


def k3_kl(logp_new: jax.Array, logp_ref: jax.Array) -> jax.Array:
    """Per-token unbiased, non-negative estimate of KL(new || ref) from samples of ``new``."""
    d = logp_ref - logp_new
    return jnp.exp(d) - d - 1.0


def grpo_objective_terms(
    logp_new: jax.Array,
    logp_old: jax.Array,
    logp_ref: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    clip_eps: float = 0.2,
    beta: float = 0.0,
) -> dict[str, jax.Array]:
    """GRPO loss and its parts.

    logp_*: (S, T) per-token log-probabilities of the sampled tokens under the policy being
    optimised, the sampling policy and the reference; advantages: (S,); mask: (S, T), 1 on
    generated tokens. Returns ``loss`` (scalar, to minimise), ``surrogate`` and ``kl`` (means of
    the per-sequence token averages), ``clip_frac`` (fraction of tokens whose ratio is clipped
    in the direction that matters).
    """
    mask = mask.astype(logp_new.dtype)
    ratio = jnp.exp(logp_new - logp_old)
    A = advantages[:, None]
    unclipped = ratio * A
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * A
    surr = jnp.minimum(unclipped, clipped)
    kl = k3_kl(logp_new, logp_ref)
    n_tok = jnp.maximum(mask.sum(axis=1), 1.0)

    def seq_mean(x):
        return ((x * mask).sum(axis=1) / n_tok).mean()

    surrogate = seq_mean(surr)
    kl_mean = seq_mean(kl)
    clip_frac = ((clipped < unclipped) * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    return {"loss": -(surrogate - beta * kl_mean), "surrogate": surrogate, "kl": kl_mean, "clip_frac": clip_frac}


def make_update(
    logprob_fn: Callable[[PyTree, jax.Array], jax.Array],
    optimizer: optax.GradientTransformation,
    clip_eps: float = 0.2,
    beta: float = 0.0,
) -> Callable:
    """A jittable GRPO update ``(params, opt_state, tokens, mask, adv, logp_old, logp_ref) ->
    (params, opt_state, metrics)``; ``logprob_fn(params, tokens (S, T)) -> (S, T)``."""
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")

    def loss_fn(params, tokens, mask, adv, logp_old, logp_ref):
        terms = grpo_objective_terms(logprob_fn(params, tokens), logp_old, logp_ref, adv, mask, clip_eps, beta)
        return terms["loss"], terms

    def update(params, opt_state, tokens, mask, adv, logp_old, logp_ref):
        (_, terms), g = jax.value_and_grad(loss_fn, has_aux=True)(params, tokens, mask, adv, logp_old, logp_ref)
        updates, opt_state = optimizer.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {**terms, "grad_norm": optax.global_norm(g)}

    return update

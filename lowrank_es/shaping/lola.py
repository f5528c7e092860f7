"""LOLA (Foerster et al. 2018, arXiv:1709.04326) with exact gradients in the IPD.

Player 1 looks one naive learning step of size ``eta`` (``cfg.lookahead``) ahead,
``theta2' = theta2 + eta * grad_2 V2(theta1, theta2)``, and ascends the first-order Taylor
expansion of ``V1(theta1, theta2')``:

    direction = grad_1 V1 + eta * grad_1 [ stopgrad(grad_2 V1) . grad_2 V2 ]
              = grad_1 V1 + eta * (grad_1 grad_2 V2) grad_2 V1

As in the paper, the dependence of ``grad_2 V1`` on ``theta1`` is dropped (``stop_gradient``):
the extra term only *shapes* the opponent's anticipated step. :func:`lookahead_value` is the
un-expanded look-ahead objective (tests compare against its finite differences).

``direction(theta_me, theta_other, cfg)`` follows :mod:`lowrank_es.shaping.exact`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lowrank_es.shaping.exact import ExactConfig, naive_gradient, value


def shaping_term(theta_me: jax.Array, theta_other: jax.Array, cfg: ExactConfig = ExactConfig()) -> jax.Array:
    """``grad_me [ stopgrad(grad_other V_me) . grad_other V_other ]`` (5,), without eta."""
    g_me_wrt_other = jax.lax.stop_gradient(jax.grad(value, argnums=1)(theta_me, theta_other, cfg.gamma))

    def inner(t_me):
        # The other's naive gradient of its own value, seen from its point of view.
        g_other = jax.grad(value, argnums=0)(theta_other, t_me, cfg.gamma)
        return jnp.dot(g_me_wrt_other, g_other)

    return jax.grad(inner)(theta_me)


def direction(theta_me: jax.Array, theta_other: jax.Array, cfg: ExactConfig = ExactConfig()) -> jax.Array:
    """LOLA's ascent direction for ``theta_me`` (5,)."""
    return naive_gradient(theta_me, theta_other, cfg.gamma) + cfg.lookahead * shaping_term(theta_me, theta_other, cfg)


def lookahead_value(theta_me: jax.Array, theta_other: jax.Array, cfg: ExactConfig = ExactConfig()) -> jax.Array:
    """``V_me(theta_me, theta_other + eta * grad_other V_other(theta_other, theta_me))``."""
    g_other = jax.grad(value)(theta_other, theta_me, cfg.gamma)
    return value(theta_me, theta_other + cfg.lookahead * g_other, cfg.gamma)

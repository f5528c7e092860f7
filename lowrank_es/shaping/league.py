"""Cross-play league of exact IPD learners and fixed opponents.

An entry is a name and a bound direction ``dir(theta_me, theta_other) -> (5,)`` (a learner)
or a fixed policy's logits (a fixed opponent). :func:`ipd_league` plays every ordered pair
from the same random initialisations (``n_seeds`` of them), lets both sides learn with
simultaneous exact updates for ``steps`` steps, and reports the row player's normalised
discounted reward per step at the end. To add an agent, add an entry to the dict passed to
:func:`ipd_league` (see :func:`default_ipd_agents`).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.shaping import advantage_alignment as aa
from lowrank_es.shaping import common, lola, loqa, naive


def default_ipd_agents(
    gamma: float = 0.96, beta: float = 1.0, tau: float = 1.0, lookahead: float = 1.0
) -> dict[str, Callable | jax.Array]:
    """{naive, LOLA, LOQA, AdAlign, AC, AD, TFT}: learners as bound directions, fixed
    opponents as logits (5,). (Proximal AdAlign differs from AdAlign only in how sampled
    advantages are used; with exact expectations its first step is AdAlign's, so it is not a
    separate exact entry.)"""
    ex = common.ExactConfig(gamma=gamma, lookahead=lookahead)
    return {
        "naive": partial(naive.direction, cfg=ex),
        "LOLA": partial(lola.direction, cfg=ex),
        "LOQA": partial(loqa.direction, cfg=loqa.LOQAConfig(tau=tau, gamma=gamma)),
        "AdAlign": partial(aa.direction, cfg=aa.AAConfig(beta=beta, gamma=gamma)),
        "AC": common.fixed_theta("always_cooperate"),
        "AD": common.fixed_theta("always_defect"),
        "TFT": common.fixed_theta("tit_for_tat"),
    }


def ipd_league(
    key: jax.Array,
    agents: dict[str, Callable | jax.Array],
    n_seeds: int = 5,
    steps: int = 200,
    lr: float = 0.1,
    gamma: float = 0.96,
    init_scale: float = 1.0,
) -> tuple[list[str], np.ndarray]:
    """Cross-play of every ordered pair. Returns the names and an array
    ``(n_seeds, n_agents, n_agents)`` of the row agent's reward per step after learning."""
    if int(n_seeds) < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    names = list(agents)
    n, S = len(names), int(n_seeds)
    dirs = [agents[a] if callable(agents[a]) else common.fixed_direction for a in names]
    fixed = jnp.stack([jnp.zeros(5) if callable(agents[a]) else jnp.asarray(agents[a], jnp.float32) for a in names])
    is_fixed = jnp.array([not callable(agents[a]) for a in names])
    init = init_scale * jax.random.normal(key, (2, S, 5))

    def direction(k, me, other):
        return jax.lax.switch(k, [lambda a, b, d=d: d(a, b) for d in dirs], me, other)

    def play(i, j, t1, t2):
        t1 = jnp.where(is_fixed[i], fixed[i], t1)
        t2 = jnp.where(is_fixed[j], fixed[j], t2)

        def body(carry, _):
            a, b = carry
            return (a + lr * direction(i, a, b), b + lr * direction(j, b, a)), None

        (a, b), _ = jax.lax.scan(body, (t1, t2), None, length=int(steps))
        return common.reward_per_step(jax.nn.sigmoid(a), jax.nn.sigmoid(b), gamma)[0]

    ii, jj, ss = jnp.meshgrid(jnp.arange(n), jnp.arange(n), jnp.arange(S), indexing="ij")
    ii, jj, ss = ii.ravel(), jj.ravel(), ss.ravel()
    r = jax.jit(jax.vmap(play))(ii, jj, init[0][ss], init[1][ss])
    out = np.asarray(r).reshape(n, n, S).transpose(2, 0, 1)
    return names, out

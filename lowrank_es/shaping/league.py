"""Cross-play leagues: every ordered pair of a set of agents, the row agent's reward per step.

* IPD (exact): an entry is a bound direction ``dir(theta_me, theta_other) -> (5,)`` (a
  learner, see :mod:`lowrank_es.shaping.exact`) or a fixed policy's logits (5,).
  :func:`ipd_league` plays every ordered pair from the same random initialisations, both
  sides learning with simultaneous exact updates (:func:`lowrank_es.shaping.exact.trajectory`),
  and reports the row player's normalised discounted reward per step at the end.
* Sampled games: an entry is any player of :mod:`lowrank_es.shaping.episodes` (a trained
  :class:`lowrank_es.shaping.agents.Agent`, a scripted one, ...); :func:`sampled_league` plays
  ``n_envs`` episodes per ordered pair and evaluation seed.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.shaping import advantage_alignment as aa
from lowrank_es.shaping import episodes, exact, lola, loqa
from lowrank_es.shaping.episodes import GameSpec


def default_ipd_agents(gamma: float = 0.96, beta: float = 1.0, tau: float = 1.0,
                       lookahead: float = 1.0) -> dict[str, Callable | jax.Array]:
    """{naive, LOLA, LOQA, AdAlign, AC, AD, TFT}: learners as bound directions, fixed
    opponents as logits (5,). (Proximal AdAlign differs from AdAlign only in how sampled
    advantages are used; with exact expectations its first step is AdAlign's, so it is not a
    separate exact entry.)"""
    ex = exact.ExactConfig(gamma=gamma, lookahead=lookahead)
    return {
        "naive": partial(exact.naive_direction, cfg=ex),
        "LOLA": partial(lola.direction, cfg=ex),
        "LOQA": partial(loqa.direction, cfg=loqa.LOQAConfig(tau=tau, gamma=gamma)),
        "AdAlign": partial(aa.direction, cfg=aa.AAConfig(beta=beta, gamma=gamma)),
        "AC": exact.fixed_theta("always_cooperate"),
        "AD": exact.fixed_theta("always_defect"),
        "TFT": exact.fixed_theta("tit_for_tat"),
    }


def ipd_league(key: jax.Array, agents: dict[str, Callable | jax.Array], n_seeds: int = 5, steps: int = 200,
               lr: float = 0.1, gamma: float = 0.96, init_scale: float = 1.0) -> tuple[list[str], np.ndarray]:
    """Cross-play of every ordered pair. Returns the names and an array
    ``(n_seeds, n_agents, n_agents)`` of the row agent's reward per step after learning."""
    if int(n_seeds) < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    names = list(agents)
    n, S = len(names), int(n_seeds)
    dirs = [agents[a] if callable(agents[a]) else exact.fixed_direction for a in names]
    fixed = jnp.stack([jnp.zeros(5) if callable(agents[a]) else jnp.asarray(agents[a], jnp.float32) for a in names])
    is_fixed = jnp.array([not callable(agents[a]) for a in names])
    init = init_scale * jax.random.normal(key, (2, S, 5))

    def play(i, j, t1, t2):
        def by_index(k):
            return lambda me, other: jax.lax.switch(k, [lambda a, b, d=d: d(a, b) for d in dirs], me, other)

        t1 = jnp.where(is_fixed[i], fixed[i], t1)
        t2 = jnp.where(is_fixed[j], fixed[j], t2)
        h1, h2 = exact.trajectory(by_index(i), by_index(j), t1, t2, lr, lr, steps)
        return exact.reward_per_step(exact.policy(h1[-1]), exact.policy(h2[-1]), gamma)[0]

    ii, jj, ss = (x.ravel() for x in jnp.meshgrid(jnp.arange(n), jnp.arange(n), jnp.arange(S), indexing="ij"))
    r = jax.jit(jax.vmap(play))(ii, jj, init[0][ss], init[1][ss])
    return names, np.asarray(r).reshape(n, n, S).transpose(2, 0, 1)


def policy_league(policies: dict[str, jax.Array], gamma: float = 0.96) -> tuple[list[str], np.ndarray]:
    """Cross-play of learned (or fixed) IPD policies, nobody learning: ``policies`` maps a name
    to cooperation probabilities ``(runs, 5)`` (run ``k`` of each entry meets run ``k`` of every
    other) or ``(5,)`` (the same policy in every run). Returns the names and ``(runs, n, n)``,
    the row player's exact reward per step."""
    names = list(policies)
    arrays = {k: np.asarray(v, np.float64) for k, v in policies.items()}
    bad = [k for k, v in arrays.items() if v.ndim not in (1, 2) or v.shape[-1] != 5]
    if bad or not names:
        raise ValueError(f"policies must map names to arrays of shape (runs, 5) or (5,), got shapes "
                         f"{ {k: arrays[k].shape for k in bad} } (and at least one entry)")
    runs = {v.shape[0] for v in arrays.values() if v.ndim == 2}
    if len(runs) > 1:
        raise ValueError(f"policies of shape (runs, 5) must share the number of runs, got {sorted(runs)}")
    R = runs.pop() if runs else 1
    p = jnp.stack([jnp.broadcast_to(jnp.asarray(arrays[k], jnp.float32), (R, 5)) for k in names], 1)  # (R, n, 5)

    def one_run(pk):  # (n, 5) -> (n, n): row i's reward per step against column j
        return jax.vmap(lambda a: jax.vmap(lambda b: exact.reward_per_step(a, b, gamma)[0])(pk))(pk)

    return names, np.asarray(jax.jit(jax.vmap(one_run))(p))


def sampled_league(key: jax.Array, players: dict, spec: GameSpec, n_envs: int = 256,
                   n_seeds: int = 1) -> tuple[list[str], dict[str, np.ndarray]]:
    """Every ordered pair of ``players`` (name -> player) for ``n_seeds`` evaluation keys of
    ``n_envs`` episodes each. Returns the names and ``{"reward": (n_seeds, n, n)}`` of the
    row player's reward per step (plus ``"own_rate"`` of the row player in the Coin Game)."""
    if int(n_seeds) < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
    names = list(players)
    n = len(names)
    out = {"reward": np.zeros((int(n_seeds), n, n))}
    if spec.name == "coin":
        out["own_rate"] = np.zeros((int(n_seeds), n, n))
    for s, k in enumerate(jax.random.split(key, int(n_seeds))):
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                st = episodes.evaluate(jax.random.fold_in(k, i * n + j), players[a], players[b], spec, n_envs)
                out["reward"][s, i, j] = float(st["reward"][0])
                if "own_rate" in out:
                    own, other = np.asarray(st["own"])[0], np.asarray(st["other"])[0]
                    out["own_rate"][s, i, j] = own / max(own + other, 1e-9)
    return names, out

"""Agents: one type for everything that plays a game of :mod:`lowrank_es.shaping.episodes`.

An :class:`Agent` is a pytree (its ``params`` are the leaves, its kind and architecture are
static), so it can be vmapped over seeds, passed into jitted functions and stacked into
buffers of past agents. Every agent has the same two methods::

    carry = agent.initial_carry(batch)            # (batch, hidden); a dummy for scripted agents
    action, carry = agent.act(key, obs, carry)    # obs (batch, obs_size): the agent's own view

Kinds:

* ``"network"``: a recurrent (GRU) learner of :mod:`lowrank_es.shaping.recurrent`; ``params``
  holds ``{"actor": ..., "critic": ...}``.
* ``"coin/scripted"``: the scripted Coin Game agents of
  :func:`lowrank_es.games.coin.scripted_action` (``params``: the index of ``"cooperative"``,
  ``"selfish"`` or ``"random"`` in ``coin.SCRIPTED``, so all three share one compiled
  rollout), acting from their observation (which shows both positions and the coin's colour
  relative to the agent).
* ``"ipd/memory1"``: a memory-1 IPD policy, ``params`` its five cooperation probabilities;
  :func:`scripted` (``"ipd/tit_for_tat"``, ...) gives the references of
  :data:`lowrank_es.shaping.exact.IPD_FIXED`.
* ``"negotiation/scripted"``: the reference negotiators of
  :data:`lowrank_es.games.negotiation.REFERENCE` (``params``: 0 always-cooperate, 1
  always-defect).

Trained reference agents ship with the package (``lowrank_es/shaping/trained/*.npz``)::

    from lowrank_es.shaping import agents
    agents.available()                   # e.g. ["coin/adalign/0", ..., "coin/loqa/2", ...]
    agent = agents.load("coin/loqa/0")   # game / method / seed
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.games import coin, negotiation
from lowrank_es.shaping import recurrent
from lowrank_es.shaping.exact import IPD_FIXED
from lowrank_es.shaping.recurrent import Architecture

TRAINED_DIR = Path(__file__).resolve().parent / "trained"

SCRIPTED = ("coin/scripted", "ipd/memory1", "negotiation/scripted")
NEGOTIATION_SCRIPTED = ("always_cooperate", "always_defect")


@dataclasses.dataclass(frozen=True)
class Agent:
    """A player: ``params`` (pytree leaves), ``kind`` and ``arch`` / ``grid_size`` (static)."""

    params: Any = None
    kind: str = "network"
    arch: Architecture | None = None
    grid_size: int = 3

    def __post_init__(self):
        if self.kind != "network" and self.kind not in SCRIPTED:
            raise ValueError(f"kind must be 'network' or one of {SCRIPTED}, got {self.kind!r}")
        if self.kind == "network" and self.arch is None:
            raise ValueError("a network agent needs its arch (a recurrent.Architecture)")

    def initial_carry(self, batch: int) -> jax.Array:
        """The carry before the first step: ``(batch, hidden)`` zeros (``(batch, 1)`` when scripted)."""
        if int(batch) < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if self.kind == "network":
            return recurrent.initial_carry(self.arch, batch)
        return jnp.zeros((int(batch), 1))

    def logits(self, obs: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Network agents: logits ``(batch, action_dims, n_choices)`` and the new carry."""
        if self.kind != "network":
            raise ValueError(f"only network agents have logits, this one is {self.kind!r}")
        return recurrent.actor_step(self.params["actor"], obs, carry, self.arch)

    def act(self, key: jax.Array, obs: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step: ``obs (batch, obs_size)`` -> ``action`` int32 and the new carry.

        Actions are ``(batch,)`` for one choice per step (Coin Game, IPD), ``(batch, 3)`` in
        the Negotiation Game (the amount asked of each item)."""
        if obs.ndim != 2:
            raise ValueError(f"obs must have shape (batch, obs_size), got {obs.shape}")
        if self.kind == "network":
            lg, carry = self.logits(obs, carry)
            a = recurrent.sample(key, lg)
            return (a[:, 0] if self.arch.action_dims == 1 else a), carry
        return scripted_action(self, key, obs), carry


jax.tree_util.register_dataclass(Agent, data_fields=["params"], meta_fields=["kind", "arch", "grid_size"])


def network(key: jax.Array, arch: Architecture) -> Agent:
    """A fresh recurrent agent (uniform policy)."""
    return Agent(recurrent.init(key, arch), "network", arch)


def scripted(name: str, grid_size: int = 3) -> Agent:
    """A scripted agent by name: ``"coin/cooperative"``, ``"coin/selfish"``, ``"coin/random"``,
    ``"negotiation/always_cooperate"``, ``"negotiation/always_defect"``, or an IPD name of
    :data:`lowrank_es.shaping.exact.IPD_FIXED` (``"ipd/tit_for_tat"``, ...)."""
    game, _, who = name.partition("/")
    if game == "coin" and who in coin.SCRIPTED:
        return Agent(jnp.int32(coin.SCRIPTED.index(who)), "coin/scripted", None, int(grid_size))
    if game == "negotiation" and who in NEGOTIATION_SCRIPTED:
        return Agent(jnp.int32(NEGOTIATION_SCRIPTED.index(who)), "negotiation/scripted")
    if game == "ipd" and who in IPD_FIXED:
        return ipd_memory1(IPD_FIXED[who])
    valid = ([f"coin/{k}" for k in coin.SCRIPTED] + [f"negotiation/{k}" for k in NEGOTIATION_SCRIPTED]
             + [f"ipd/{k}" for k in IPD_FIXED])
    raise ValueError(f"name must be one of {valid}, got {name!r}")


def ipd_memory1(p: jax.Array) -> Agent:
    """A memory-1 IPD agent with cooperation probabilities ``p`` (5,) [start, CC, CD, DC, DD]."""
    p = jnp.asarray(p, jnp.float32)
    if p.shape != (5,):
        raise ValueError(f"p must have shape (5,) [start, CC, CD, DC, DD], got {p.shape}")
    return Agent(p, "ipd/memory1")


def coin_state_from_obs(obs_i: jax.Array, grid_size: int = 3) -> coin.State:
    """The board as seen by an agent, as a ``coin.State`` in which that agent is red (seat 0):
    its own coins are red. obs_i: (4 g g,) one agent's observation."""
    g = grid_size
    grid = coin.obs_grid(obs_i, coin.Params(grid_size=g))

    def cell(m):
        idx = jnp.argmax(m.reshape(-1))
        return jnp.stack([idx // g, idx % g]).astype(jnp.int32)

    mine = grid[2].sum() > 0
    return coin.State(pos=jnp.stack([cell(grid[0]), cell(grid[1])]), coin_pos=cell(grid[2] + grid[3]),
                      coin_colour=jnp.where(mine, coin.RED, coin.BLUE).astype(jnp.int32), t=jnp.int32(0))


def scripted_action(agent: Agent, key: jax.Array, obs: jax.Array) -> jax.Array:
    """Actions of a scripted agent for a batch of its observations (batch, obs_size)."""
    if agent.kind == "coin/scripted":
        params = coin.Params(grid_size=agent.grid_size)
        branches = [lambda k, s, kind=kind: coin.scripted_action(k, s, 0, kind, params) for kind in coin.SCRIPTED]
        act = lambda k, o: jax.lax.switch(agent.params, branches, k, coin_state_from_obs(o, agent.grid_size))  # noqa: E731
        return jax.vmap(act)(jax.random.split(key, obs.shape[0]), obs)
    if agent.kind == "ipd/memory1":
        q = obs @ agent.params  # P(C) in the state each row is in
        return (jax.random.uniform(key, q.shape) >= q).astype(jnp.int32)
    branches = [negotiation.REFERENCE[k] for k in NEGOTIATION_SCRIPTED]
    return jax.lax.switch(agent.params, branches, obs).astype(jnp.int32)


def actor_only(agent: Agent) -> Agent:
    """The same agent without its critic (all that acting needs): trained agents of every
    method then share one structure, hence one compiled evaluation."""
    if agent.kind != "network":
        return agent
    arch = dataclasses.replace(agent.arch, critic_outputs=1)
    return Agent({"actor": agent.params["actor"], "critic": None}, "network", arch)


# ---------------------------------------------------------------------------
# Trained agents shipped with the package
# ---------------------------------------------------------------------------


def _file(name: str) -> Path:
    parts = name.split("/")
    if len(parts) != 3 or not all(p.replace("_", "").isalnum() for p in parts):
        raise ValueError(f"name must look like 'game/method/seed' (e.g. 'coin/loqa/0'), got {name!r}")
    return TRAINED_DIR / ("__".join(parts) + ".npz")


def available() -> list[str]:
    """Names ``game/method/seed`` of the trained agents shipped with the package."""
    return sorted(p.stem.replace("__", "/") for p in TRAINED_DIR.glob("*.npz"))


def save(agent: Agent, name: str, meta: dict | None = None, directory: Path | None = None) -> Path:
    """Write a network agent as ``<directory>/<game>__<method>__<seed>.npz`` (float32
    parameters, architecture and ``meta`` as JSON)."""
    if agent.kind != "network":
        raise ValueError(f"only network agents are saved, got {agent.kind!r}")
    path = _file(name) if directory is None else Path(directory) / _file(name).name
    path.parent.mkdir(parents=True, exist_ok=True)
    flat, _ = jax.tree_util.tree_flatten_with_path(agent.params)
    arrays = {jax.tree_util.keystr(k): np.asarray(v, np.float32) for k, v in flat}
    header = json.dumps({"arch": dataclasses.asdict(agent.arch), "meta": meta or {}})
    np.savez_compressed(path, __header__=np.array(header), **arrays)
    return path


def load(name: str, directory: Path | None = None) -> Agent:
    """A trained agent by name (``agents.available()`` lists them)."""
    path = _file(name) if directory is None else Path(directory) / _file(name).name
    if not path.exists():
        raise ValueError(f"no trained agent {name!r}; available: {available()}")
    data = np.load(path)
    header = json.loads(str(data["__header__"]))
    arch = Architecture(**header["arch"])
    template = recurrent.init(jax.random.PRNGKey(0), arch)
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = [jnp.asarray(data[jax.tree_util.keystr(k)]) for k, _ in flat]
    return Agent(jax.tree_util.tree_unflatten(treedef, leaves), "network", arch)


def metadata(name: str) -> dict:
    """The ``meta`` dict saved with a trained agent (method, config, training seed, ...)."""
    path = _file(name)
    if not path.exists():
        raise ValueError(f"no trained agent {name!r}; available: {available()}")
    return json.loads(str(np.load(path)["__header__"]))["meta"]


def index(agents: Agent, i: int) -> Agent:
    """Agent ``i`` of a stack of agents (leading axis of every parameter, e.g. seeds)."""
    return jax.tree.map(lambda x: x[i], agents)

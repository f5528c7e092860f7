"""A Monte Carlo tree search best response in the Coin Game (``mctx``), against recurrent agents.

:class:`MCTSPlayer` is a player of :mod:`lowrank_es.shaping.episodes` that knows its
opponent: it holds the opponent (any player whose action distribution :func:`policy_step`
can compute: a recurrent :class:`lowrank_es.shaping.agents.Agent`, a scripted one, or
:class:`GrimTrigger`) and, in its carry, a copy of the opponent's memory, advanced every step
by running the opponent on the opponent's view of the board (rebuilt from the player's own
observation, which shows the whole board; the step count is in the carry). Every step it runs
``mctx.stochastic_muzero_policy`` from the true board, with the true game as the model and the
**search embedding = (board, the opponent's memory)**:

* a decision edge (the planner's move ``b``) leads to an afterstate whose **chance node** has
  one outcome per (opponent action, cell the coin respawns on): probability = the opponent's
  policy x (uniform over the free cells if a coin was picked up, else a single "no respawn"
  outcome). Each outcome is an exact next board, with the planner's reward, and the opponent's
  memory advanced on the board it saw. Chance outcomes are visited in proportion to their
  probability, so no line of play exploits a lucky opponent move or respawn (the failure of an
  earlier version that kept one sampled outcome per edge: it got -0.22 per step against the
  selfish agent, which gets 0 against itself);
* an afterstate's value is the exact expectation over the opponent's action of the planner's
  reward plus the discounted value of the board it leads to; a board's value is the discounted
  planner return of ``rollout_depth`` steps in which the opponent plays its policy (with its
  memory) and the planner moves towards the coin (``rollout="greedy"``) or uniformly; no prior.
  Greedy rollouts make the planner race agents that race for coins; uniform ones see a
  trigger's punishment better (the planner moving at random seldom provokes it).

Every agent here updates its memory from its observation alone (the GRU's input is the
observation), so the memory after a step does not depend on the action sampled in it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.games import coin
from lowrank_es.shaping import agents

def _towards(me: jax.Array, to: jax.Array, g: int) -> jax.Array:
    d = coin._torus_delta(me, to, g)
    good = jnp.array([d[1] > 0, d[1] < 0, d[0] > 0, d[0] < 0])
    good = jnp.where(jnp.any(good), good, jnp.ones(4, bool))
    return good / jnp.sum(good)


def _avoiding(me: jax.Array, avoid: jax.Array, g: int) -> jax.Array:
    ok = ~jnp.all((me[None, :] + coin.MOVES) % g == avoid[None, :], axis=-1)
    return ok / jnp.sum(ok)


def scripted_probs(kind: str, state: coin.State, seat: int, grid_size: int = 3) -> jax.Array:
    """The action distribution (4,) of :func:`lowrank_es.games.coin.scripted_action` of ``kind``
    for the player in ``seat`` of ``state``."""
    me = state.pos[seat]
    if kind == "random":
        return jnp.full((4,), 0.25)
    if kind == "selfish":
        return _towards(me, state.coin_pos, grid_size)
    if kind == "cooperative":
        return jnp.where(state.coin_colour == seat, _towards(me, state.coin_pos, grid_size),
                         _avoiding(me, state.coin_pos, grid_size))
    raise ValueError(f"kind must be one of {coin.SCRIPTED}, got {kind!r}")


@dataclasses.dataclass(frozen=True)
class GrimTrigger:
    """A scripted *recurrent* Coin Game agent: always-cooperate until the other player picks
    up one of its coins, then selfish for the rest of the episode. Its carry
    ``(batch, obs_size + 1)`` holds its previous observation and the trigger; it detects a
    stolen coin as "my coin was on the cell the other player now stands on" (a coin never
    lies on an occupied cell, so that cell's coin was just picked up)."""

    grid_size: int = 3

    def initial_carry(self, batch: int) -> jax.Array:
        return jnp.zeros((int(batch), 4 * self.grid_size ** 2 + 1))

    def probs(self, obs: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Action distributions (batch, 4) and the new carry, from obs (batch, obs_size)."""
        g = self.grid_size
        prev, angry = carry[:, :-1], carry[:, -1]
        stolen = jnp.sum(coin.obs_grid(prev, coin.Params(g))[:, 2] * coin.obs_grid(obs, coin.Params(g))[:, 1], (-2, -1))
        angry = jnp.maximum(angry, (stolen > 0).astype(obs.dtype))
        states = jax.vmap(lambda o: agents.coin_state_from_obs(o, g))(obs)
        coop = jax.vmap(lambda s: scripted_probs("cooperative", s, 0, g))(states)
        selfish = jax.vmap(lambda s: scripted_probs("selfish", s, 0, g))(states)
        p = jnp.where(angry[:, None] > 0, selfish, coop)
        return p, jnp.concatenate([obs, angry[:, None]], -1)

    def act(self, key: jax.Array, obs: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
        p, carry = self.probs(obs, carry)
        return jax.random.categorical(key, jnp.log(p)).astype(jnp.int32), carry


jax.tree_util.register_dataclass(GrimTrigger, data_fields=[], meta_fields=["grid_size"])


def policy_step(player: Any, obs: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The action distribution (batch, 4) of a Coin Game player on its observations
    (batch, obs_size) with memory ``carry``, and its next memory."""
    if isinstance(player, agents.Agent) and player.kind == "network":
        lg, carry = player.logits(obs, carry)
        return jax.nn.softmax(lg[:, 0]), carry
    if isinstance(player, agents.Agent) and player.kind == "coin/scripted":
        g = player.grid_size
        branches = [lambda s, k=k: scripted_probs(k, s, 0, g) for k in coin.SCRIPTED]
        states = jax.vmap(lambda o: agents.coin_state_from_obs(o, g))(obs)
        return jax.vmap(lambda s: jax.lax.switch(player.params, branches, s))(states), carry
    if hasattr(player, "probs"):
        return player.probs(obs, carry)
    raise ValueError("player must be a network or coin/scripted Agent, or have a probs(obs, carry) method")


def _obs(state: coin.State, seat: int, grid_size: int) -> jax.Array:
    return coin.observe(state, coin.Params(grid_size=grid_size))[seat]


ROLLOUTS = ("greedy", "uniform")


def _moved(state: coin.State, b: jax.Array, a: jax.Array, params: coin.Params):
    """The deterministic part of one step (planner ``b`` at seat 0, opponent ``a`` at seat 1):
    the board before the coin respawns, the rewards (2,), done, and whether a coin was picked."""
    _, s2, r, done, info = coin.step(jax.random.PRNGKey(0), state, jnp.stack([b, a]), params)
    picked = jnp.any(info["picked_own"] | info["picked_other"])
    return s2, r, done, picked


@dataclasses.dataclass(frozen=True)
class MCTSPlayer:
    """The planner as a player (module docstring). ``opponent``: the player it best-responds
    to (a pytree leaf set), ``gamma`` (traced); static: ``num_simulations``, ``rollout_depth``,
    ``rollout`` (how the planner moves in leaf rollouts: ``"greedy"``, towards the coin, or
    ``"uniform"``), ``grid_size``, ``max_steps`` (the episode length the search sees). Its carry
    ``(batch, C + 1)`` is the opponent's memory (C floats) and the step count."""

    opponent: Any
    num_simulations: int = 64
    rollout_depth: int = 3
    gamma: float = 0.96
    rollout: str = "greedy"
    grid_size: int = 3
    max_steps: int = 50

    def __post_init__(self):
        if int(self.num_simulations) < 1:
            raise ValueError(f"num_simulations must be >= 1, got {self.num_simulations}")
        if int(self.rollout_depth) < 0:
            raise ValueError(f"rollout_depth must be >= 0, got {self.rollout_depth}")
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"rollout must be one of {ROLLOUTS}, got {self.rollout!r}")
        # gamma is a pytree leaf: only a number given by the caller is checked (JAX rebuilds
        # players with tracers and placeholders in its place)
        if isinstance(self.gamma, (int, float, np.number)) and not 0.0 <= float(self.gamma) < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")

    @property
    def params(self) -> coin.Params:
        return coin.Params(grid_size=self.grid_size, max_steps=self.max_steps)

    @property
    def num_chance_outcomes(self) -> int:
        """Chance outcomes of one step: the opponent's action x the cell the coin respawns on
        (cell 0 stands for "no respawn" when no coin is picked up)."""
        return coin.N_ACTIONS * self.grid_size ** 2

    def initial_carry(self, batch: int) -> jax.Array:
        c = self.opponent.initial_carry(batch)
        return jnp.concatenate([c.astype(jnp.float32), jnp.zeros((int(batch), 1))], -1)

    def _policy(self, state, c):
        """Opponent (seat 1) distribution (4,) and next memory on one board."""
        p, c2 = policy_step(self.opponent, _obs(state, 1, self.grid_size)[None], c[None])
        return p[0], c2[0]

    def rollout_value(self, key: jax.Array, state: coin.State, c: jax.Array) -> jax.Array:
        """Discounted planner return of ``rollout_depth`` steps: the opponent plays its policy
        with memory ``c``, the planner uniformly or greedily (``rollout``)."""
        def body(carry, k):
            s, c, disc, ret, alive = carry
            k1, k2, k3 = jax.random.split(k, 3)
            p, c = self._policy(s, c)
            a = jax.random.categorical(k1, jnp.log(p + 1e-20)).astype(jnp.int32)
            mine = (_towards(s.pos[0], s.coin_pos, self.grid_size) if self.rollout == "greedy"
                    else jnp.full((coin.N_ACTIONS,), 0.25))
            b = jax.random.categorical(k2, jnp.log(mine + 1e-20)).astype(jnp.int32)
            _, s2, r, done, _ = coin.step(k3, s, jnp.stack([b, a]), self.params)
            return (s2, c, disc * self.gamma, ret + alive * disc * r[0], alive * (1.0 - done)), None

        alive = 1.0 - (state.t >= self.max_steps)
        init = (state, c, jnp.ones(()), jnp.zeros(()), alive.astype(jnp.float32))
        (_, _, _, ret, _), _ = jax.lax.scan(body, init, jax.random.split(key, self.rollout_depth))
        return ret

    def _value(self, key, state, c):
        return self.rollout_value(key, state, c) if self.rollout_depth > 0 else jnp.zeros(())

    def _chance_logits(self, state, b, p):
        """log P(outcome) (A * G,) after the planner's move ``b``: the opponent's action from
        its policy ``p``, then, if a coin was picked up, a uniform free cell."""
        g2 = self.grid_size ** 2
        cells = jnp.arange(g2)

        def per_action(a):
            s2, _, _, picked = _moved(state, b, a, self.params)
            idx = s2.pos[:, 0] * self.grid_size + s2.pos[:, 1]
            free = (cells != idx[0]) & (cells != idx[1])
            respawn = jnp.where(free, -jnp.log(jnp.sum(free)), -jnp.inf)
            stay = jnp.where(cells == 0, 0.0, -jnp.inf)
            return jnp.log(p[a] + 1e-20) + jnp.where(picked, respawn, stay)

        return jax.vmap(per_action)(jnp.arange(coin.N_ACTIONS)).reshape(-1)

    def _decision_fn(self, _, rng_key, action, embedding):
        """Planner edge -> afterstate (board, the opponent's next memory, the move): the value
        is the exact expectation over the opponent's action of the planner's reward, plus the
        discounted rollout value of the board it leads to (respawn sampled)."""
        import mctx

        def one(key, b, emb):
            state, c = emb
            p, c2 = self._policy(state, c)
            alive = 1.0 - (state.t >= self.max_steps)

            def per_action(a, k):
                k_env, k_v = jax.random.split(k)
                _, s2, r, done, _ = coin.step(k_env, state, jnp.stack([b, a]), self.params)
                return r[0] + self.gamma * (1.0 - done) * self._value(k_v, s2, c2)

            q = jax.vmap(per_action)(jnp.arange(coin.N_ACTIONS), jax.random.split(key, coin.N_ACTIONS))
            out = mctx.DecisionRecurrentFnOutput(chance_logits=self._chance_logits(state, b, p),
                                                 afterstate_value=alive * (p @ q))
            return out, (state, c2, b)

        b = jnp.clip(action, 0, coin.N_ACTIONS - 1)  # mctx also calls this on chance nodes
        return jax.vmap(one)(jax.random.split(rng_key, action.shape[0]), b, embedding)

    def _chance_fn(self, _, rng_key, outcome, afterstate):
        """Chance outcome (opponent action, respawn cell) -> the next board, exactly."""
        import mctx

        def one(key, o, aft):
            state, c2, b = aft
            a, cell = o // self.grid_size ** 2, o % self.grid_size ** 2
            s2, r, done, picked = _moved(state, b, a, self.params)
            respawn = jnp.stack([cell // self.grid_size, cell % self.grid_size]).astype(jnp.int32)
            s2 = dataclasses.replace(s2, coin_pos=jnp.where(picked, respawn, s2.coin_pos))
            alive = 1.0 - (state.t >= self.max_steps)
            out = mctx.ChanceRecurrentFnOutput(action_logits=jnp.zeros(coin.N_ACTIONS), value=self._value(key, s2, c2),
                                               reward=alive * r[0], discount=alive * self.gamma * (1.0 - done))
            return out, (s2, c2)

        o = jnp.clip(outcome, 0, self.num_chance_outcomes - 1)  # mctx also calls this on decision nodes
        return jax.vmap(one)(jax.random.split(rng_key, outcome.shape[0]), o, afterstate)

    def plan(self, key: jax.Array, states: coin.State, c: jax.Array) -> jax.Array:
        """The planner's actions (B,) on boards ``states`` (batched, planner = seat 0) with the
        opponent's memories ``c`` (B, C)."""
        import mctx

        k_root, k_search = jax.random.split(key)
        B = states.t.shape[0]
        v = jax.vmap(self._value)(jax.random.split(k_root, B), states, c)
        root = mctx.RootFnOutput(prior_logits=jnp.zeros((B, coin.N_ACTIONS)), value=v, embedding=(states, c))
        # no Dirichlet noise on the root and the most visited move: a best response, not an explorer
        out = mctx.stochastic_muzero_policy(params=None, rng_key=k_search, root=root,
                                            decision_recurrent_fn=self._decision_fn,
                                            chance_recurrent_fn=self._chance_fn,
                                            num_simulations=self.num_simulations, dirichlet_fraction=0.0,
                                            temperature=0.0)
        return out.action.astype(jnp.int32)

    def act(self, key: jax.Array, obs: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
        c, t = carry[:, :-1], carry[:, -1]
        states = jax.vmap(lambda o: agents.coin_state_from_obs(o, self.grid_size))(obs)
        states = dataclasses.replace(states, t=t.astype(jnp.int32))
        action = self.plan(key, states, c)
        _, c2 = policy_step(self.opponent, jax.vmap(lambda s: _obs(s, 1, self.grid_size))(states), c)
        return action, jnp.concatenate([c2, t[:, None] + 1.0], -1)


# gamma is data (traced), not static: players that differ only in discount share one compiled search.
jax.tree_util.register_dataclass(MCTSPlayer, data_fields=["opponent", "gamma"],
                                 meta_fields=["num_simulations", "rollout_depth", "rollout", "grid_size", "max_steps"])


def best_response_action(key: jax.Array, opponent: Any, state: coin.State, carry: jax.Array | None = None,
                         **kwargs: Any) -> jax.Array:
    """The planner's action (int) on one board ``state`` (planner = seat 0, ``opponent`` = seat
    1) with the opponent's memory ``carry`` (C,) (default: its initial carry); ``kwargs`` go to
    :class:`MCTSPlayer`. For tests and inspection."""
    player = MCTSPlayer(opponent, **kwargs)
    c = opponent.initial_carry(1)[0] if carry is None else jnp.asarray(carry)
    return player.plan(key, jax.tree.map(lambda x: x[None], state), c[None].astype(jnp.float32))[0]

"""Coin Game (Lerer & Peysakhovich 2017; the single-coin form of LOLA / POLA / LOQA).

Variant
-------
This is the **single-coin** game of the LOLA, POLA and LOQA papers, not the two-coin
variant of PAX / JaxMARL: it is the one those opponent-shaping papers report results on,
so their numbers (own-coin rate, return per step) are comparable here.

* 3x3 torus (``Params.grid_size``), two agents: red (agent 0) and blue (agent 1).
* Four moves, ``MOVES``: 0 right ``(0, +1)``, 1 left ``(0, -1)``, 2 down ``(+1, 0)``,
  3 up ``(-1, 0)`` as ``(row, col)`` offsets, wrapping around the torus. No "stay".
* One coin at a time, red or blue. After both agents move: every agent standing on the coin
  picks it up and gets +1; if the coin is the *other* agent's colour, the coin's owner gets
  −2 (once per picker). Both agents can pick up the same coin on the same step.
* After a pick-up a new coin appears on a cell occupied by neither agent (uniform over the
  free cells) and its colour flips (as in the LOLA reference implementation), so the two
  colours alternate. At reset the agents are placed uniformly at random (they may share a
  cell), the first coin's colour is uniform and its cell avoids both agents.
* Episodes last ``Params.max_steps`` = 50 steps; discount 0.96 is the learners' choice.

Observations (per agent, own point of view)
--------------------------------------------
``obs`` has shape ``(2, 4 * g * g)``: ``obs[i]`` is agent ``i``'s view, the flattened
``(4, g, g)`` one-hot grid with channels ``[me, other, my-colour coin, other-colour coin]``.
For red that is ``[red, blue, red coin, blue coin]``; blue sees the same board with the
channels swapped. :func:`obs_grid` reshapes to ``(..., 4, g, g)``.

API (gymnax / JaxMARL style, pure, jittable, vmappable)
-------------------------------------------------------
``reset(key, params) -> (obs, state)``;
``step(key, state, actions, params) -> (obs, state, rewards, done, info)`` with
``actions`` int ``(2,)``, ``rewards`` float ``(2,)``, ``done`` bool scalar
(``state.t >= params.max_steps``; there is no automatic reset) and ``info`` a dict with
``picked_own`` / ``picked_other`` bool ``(2,)`` (agent ``i`` picked up a coin of its own /
of the other's colour this step). ``Params`` is static (hashable) and ``State`` a pytree,
so ``jax.vmap(step, in_axes=(0, 0, 0, None))`` runs thousands of games at once.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

#: (row, col) offsets of the four moves: right, left, down, up.
MOVES = jnp.array([[0, 1], [0, -1], [1, 0], [-1, 0]], dtype=jnp.int32)
MOVE_NAMES = ("right", "left", "down", "up")
N_ACTIONS = 4
RED, BLUE = 0, 1
GAMMA = 0.96
EPISODE_LENGTH = 50


@dataclasses.dataclass(frozen=True)
class Params:
    """Static game parameters (hashable; a pytree with no leaves)."""

    grid_size: int = 3
    max_steps: int = EPISODE_LENGTH

    def __post_init__(self):
        if int(self.grid_size) < 2:
            raise ValueError(f"grid_size must be >= 2, got {self.grid_size}")
        if int(self.max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")


jax.tree_util.register_dataclass(Params, data_fields=[], meta_fields=["grid_size", "max_steps"])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class State:
    """Board state. pos: (2, 2) int (row, col) of red and blue; coin_pos: (2,) int;
    coin_colour: int scalar (0 red, 1 blue); t: int scalar steps taken."""

    pos: jax.Array
    coin_pos: jax.Array
    coin_colour: jax.Array
    t: jax.Array


def obs_size(params: Params = Params()) -> int:
    return 4 * params.grid_size * params.grid_size


def obs_grid(obs: jax.Array, params: Params = Params()) -> jax.Array:
    """(..., 4*g*g) -> (..., 4, g, g)."""
    g = params.grid_size
    return obs.reshape(obs.shape[:-1] + (4, g, g))


def _one_hot_cell(pos: jax.Array, g: int) -> jax.Array:
    return jnp.zeros((g, g), jnp.float32).at[pos[0], pos[1]].set(1.0)


def observe(state: State, params: Params = Params()) -> jax.Array:
    """Both agents' observations, (2, 4*g*g), each from its own point of view."""
    g = params.grid_size
    red = _one_hot_cell(state.pos[RED], g)
    blue = _one_hot_cell(state.pos[BLUE], g)
    coin = _one_hot_cell(state.coin_pos, g)
    red_coin = coin * (state.coin_colour == RED)
    blue_coin = coin * (state.coin_colour == BLUE)
    o_red = jnp.stack([red, blue, red_coin, blue_coin])
    o_blue = jnp.stack([blue, red, blue_coin, red_coin])
    return jnp.stack([o_red.reshape(-1), o_blue.reshape(-1)])


def _free_cell(key: jax.Array, pos: jax.Array, g: int) -> jax.Array:
    """A uniform cell occupied by neither agent, (2,) int."""
    cells = jnp.arange(g * g)
    occupied = (cells == pos[0, 0] * g + pos[0, 1]) | (cells == pos[1, 0] * g + pos[1, 1])
    idx = jax.random.categorical(key, jnp.where(occupied, -jnp.inf, 0.0))
    return jnp.stack([idx // g, idx % g]).astype(jnp.int32)


def reset(key: jax.Array, params: Params = Params()) -> tuple[jax.Array, State]:
    """Random agent cells, random first coin colour, coin on a free cell."""
    g = params.grid_size
    k_pos, k_col, k_coin = jax.random.split(key, 3)
    pos = jax.random.randint(k_pos, (2, 2), 0, g, dtype=jnp.int32)
    colour = jax.random.randint(k_col, (), 0, 2, dtype=jnp.int32)
    state = State(pos=pos, coin_pos=_free_cell(k_coin, pos, g), coin_colour=colour, t=jnp.int32(0))
    return observe(state, params), state


def step(
    key: jax.Array, state: State, actions: jax.Array, params: Params = Params()
) -> tuple[jax.Array, State, jax.Array, jax.Array, dict[str, jax.Array]]:
    """One simultaneous move of both agents. actions: (2,) ints in [0, 4)."""
    g = params.grid_size
    actions = jnp.asarray(actions)
    if actions.shape != (2,):
        raise ValueError(f"actions must have shape (2,) with values in [0, {N_ACTIONS}), got shape {actions.shape}")
    if not isinstance(actions, jax.core.Tracer) and not bool(jnp.all((actions >= 0) & (actions < N_ACTIONS))):
        raise ValueError(f"actions must have values in [0, {N_ACTIONS}), got {actions.tolist()}")
    pos = (state.pos + MOVES[actions]) % g
    on_coin = jnp.all(pos == state.coin_pos[None, :], axis=-1)  # (2,)
    own = jnp.array([RED, BLUE]) == state.coin_colour  # (2,) is the coin agent i's colour
    picked_own = on_coin & own
    picked_other = on_coin & ~own
    # +1 per pick-up; -2 to the coin's owner for each pick-up by the other agent.
    penalty = -2.0 * jnp.sum(picked_other)  # goes to the owner of the coin
    rewards = on_coin.astype(jnp.float32) + jnp.where(own, penalty, 0.0)
    picked = jnp.any(on_coin)
    new_coin = _free_cell(key, pos, g)
    coin_pos = jnp.where(picked, new_coin, state.coin_pos)
    colour = jnp.where(picked, 1 - state.coin_colour, state.coin_colour)
    new_state = State(pos=pos, coin_pos=coin_pos, coin_colour=colour, t=state.t + 1)
    done = new_state.t >= params.max_steps
    info = {"picked_own": picked_own, "picked_other": picked_other}
    return observe(new_state, params), new_state, rewards, done, info


# ---------------------------------------------------------------------------
# Scripted reference agents
# ---------------------------------------------------------------------------


def _torus_delta(frm: jax.Array, to: jax.Array, g: int) -> jax.Array:
    """Signed shortest offset from ``frm`` to ``to`` on the torus, per coordinate, in
    (-g/2, g/2]."""
    d = (to - frm) % g
    return jnp.where(d > g // 2, d - g, d)


def _move_towards(key: jax.Array, frm: jax.Array, to: jax.Array, g: int) -> jax.Array:
    """A move that shortens the torus distance to ``to`` (random tie-break); random if there."""
    d = _torus_delta(frm, to, g)
    # Candidate moves: right (d_col>0), left (d_col<0), down (d_row>0), up (d_row<0).
    good = jnp.array([d[1] > 0, d[1] < 0, d[0] > 0, d[0] < 0])
    good = jnp.where(jnp.any(good), good, jnp.ones(4, bool))
    return jax.random.categorical(key, jnp.where(good, 0.0, -jnp.inf)).astype(jnp.int32)


def _move_avoiding(key: jax.Array, frm: jax.Array, avoid: jax.Array, g: int) -> jax.Array:
    """A uniformly random move that does not land on ``avoid``."""
    dest = (frm[None, :] + MOVES) % g
    bad = jnp.all(dest == avoid[None, :], axis=-1)
    return jax.random.categorical(key, jnp.where(bad, -jnp.inf, 0.0)).astype(jnp.int32)


def scripted_action(key: jax.Array, state: State, agent: int, kind: str, params: Params = Params()) -> jax.Array:
    """Action of a scripted agent.

    kind: ``"cooperative"`` goes for its own coin only (and never steps onto the other's
    coin), ``"selfish"`` goes for the coin whatever its colour, ``"random"`` moves uniformly.
    """
    g = params.grid_size
    me = state.pos[agent]
    if kind == "random":
        return jax.random.randint(key, (), 0, N_ACTIONS, dtype=jnp.int32)
    if kind == "selfish":
        return _move_towards(key, me, state.coin_pos, g)
    if kind == "cooperative":
        mine = state.coin_colour == agent
        return jnp.where(
            mine, _move_towards(key, me, state.coin_pos, g), _move_avoiding(key, me, state.coin_pos, g)
        )
    raise ValueError(f"kind must be one of 'cooperative', 'selfish', 'random', got {kind!r}")


SCRIPTED = ("cooperative", "selfish", "random")


#: RGB colours of the rendering: red agent, blue agent, background.
_RED_RGB = jnp.array([0.85, 0.15, 0.15])
_BLUE_RGB = jnp.array([0.15, 0.3, 0.85])


def render_rgb(state: State, params: Params = Params(), cell: int = 12) -> jax.Array:
    """An RGB image ``(g*cell, g*cell, 3)`` in [0, 1] of one state: agents fill their cell
    in their colour (purple where both stand), the coin is a small square of its colour
    with a black border in the middle of its cell."""
    g = params.grid_size
    img = jnp.ones((g, g, 3))
    red = _one_hot_cell(state.pos[RED], g)[..., None]
    blue = _one_hot_cell(state.pos[BLUE], g)[..., None]
    tint = lambda rgb: 0.55 + 0.45 * rgb  # noqa: E731  (light fill for agents)
    img = jnp.where(red * blue > 0, tint((_RED_RGB + _BLUE_RGB) / 2), jnp.where(red > 0, tint(_RED_RGB), img))
    img = jnp.where((blue > 0) & (red == 0), tint(_BLUE_RGB), img)
    img = jnp.repeat(jnp.repeat(img, cell, 0), cell, 1)
    # coin: a square of side cell/2 centred in its cell, with a 1-pixel black border.
    r0, c0 = state.coin_pos[0] * cell + cell // 4, state.coin_pos[1] * cell + cell // 4
    rows, cols = jnp.arange(g * cell)[:, None], jnp.arange(g * cell)[None, :]
    side = cell // 2
    inside = (rows >= r0) & (rows < r0 + side) & (cols >= c0) & (cols < c0 + side)
    border = inside & ~((rows > r0) & (rows < r0 + side - 1) & (cols > c0) & (cols < c0 + side - 1))
    colour = jnp.where(state.coin_colour == RED, _RED_RGB, _BLUE_RGB)
    img = jnp.where(inside[..., None], colour, img)
    img = jnp.where(border[..., None], 0.0, img)
    # grid lines
    lines = (rows % cell == 0) | (cols % cell == 0)
    return jnp.where(lines[..., None], 0.6, img)

"""Coin Game: hand-worked steps, the -2 penalty, spawning, torus wrap, observations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.games import coin

RIGHT, LEFT, DOWN, UP = 0, 1, 2, 3
P = coin.Params()


def state(red, blue, coin_pos, colour, t=0):
    return coin.State(pos=jnp.array([red, blue], jnp.int32), coin_pos=jnp.array(coin_pos, jnp.int32),
                      coin_colour=jnp.int32(colour), t=jnp.int32(t))


def test_red_picks_up_own_coin():
    s = state((0, 0), (2, 2), (0, 1), coin.RED)
    obs, s2, r, done, info = coin.step(jax.random.PRNGKey(0), s, jnp.array([RIGHT, UP]))
    np.testing.assert_array_equal(s2.pos, [[0, 1], [1, 2]])
    np.testing.assert_array_equal(r, [1.0, 0.0])
    np.testing.assert_array_equal(info["picked_own"], [True, False])
    np.testing.assert_array_equal(info["picked_other"], [False, False])
    assert int(s2.coin_colour) == coin.BLUE  # colour alternates after a pick-up
    assert int(s2.t) == 1 and not bool(done)


def test_blue_takes_red_coin_with_wrap_and_penalty():
    # blue at (0,0) moves left and wraps to (0,2), where the red coin is: blue +1, red -2.
    s = state((1, 1), (0, 0), (0, 2), coin.RED)
    _, s2, r, _, info = coin.step(jax.random.PRNGKey(1), s, jnp.array([DOWN, LEFT]))
    np.testing.assert_array_equal(s2.pos, [[2, 1], [0, 2]])
    np.testing.assert_array_equal(r, [-2.0, 1.0])
    np.testing.assert_array_equal(info["picked_other"], [False, True])


def test_both_pick_up_same_coin():
    # red coin at (1,1); red from (1,0) moves right, blue from (0,1) moves down.
    s = state((1, 0), (0, 1), (1, 1), coin.RED)
    _, _, r, _, info = coin.step(jax.random.PRNGKey(2), s, jnp.array([RIGHT, DOWN]))
    np.testing.assert_array_equal(r, [1.0 - 2.0, 1.0])
    np.testing.assert_array_equal(info["picked_own"], [True, False])
    np.testing.assert_array_equal(info["picked_other"], [False, True])


def test_no_pickup_keeps_coin():
    s = state((0, 0), (2, 2), (1, 1), coin.BLUE)
    _, s2, r, _, _ = coin.step(jax.random.PRNGKey(3), s, jnp.array([RIGHT, RIGHT]))
    np.testing.assert_array_equal(r, [0.0, 0.0])
    np.testing.assert_array_equal(s2.coin_pos, [1, 1])
    assert int(s2.coin_colour) == coin.BLUE


@pytest.mark.parametrize(
    "start,action,end",
    [((0, 0), UP, (2, 0)), ((2, 1), DOWN, (0, 1)), ((1, 2), RIGHT, (1, 0)), ((1, 0), LEFT, (1, 2))],
)
def test_torus_wrap(start, action, end):
    s = state(start, (1, 1), (0, 0) if start != (0, 0) else (2, 2), coin.RED)
    _, s2, _, _, _ = coin.step(jax.random.PRNGKey(4), s, jnp.array([action, RIGHT]))
    np.testing.assert_array_equal(s2.pos[0], end)


def test_new_coin_never_on_a_player_and_uniform_over_free_cells():
    # red picks up the coin at (0,1) and lands there; blue sits at (2,2): 7 free cells.
    s = state((0, 0), (2, 1), (0, 1), coin.BLUE)
    keys = jax.random.split(jax.random.PRNGKey(5), 4000)
    step = jax.vmap(coin.step, in_axes=(0, None, None, None))
    _, s2, _, _, _ = step(keys, s, jnp.array([RIGHT, RIGHT]), P)
    cells = np.asarray(s2.coin_pos[:, 0] * 3 + s2.coin_pos[:, 1])
    occupied = {0 * 3 + 1, 2 * 3 + 2}
    assert not (set(cells.tolist()) & occupied)
    counts = np.bincount(cells, minlength=9)
    free = [c for c in range(9) if c not in occupied]
    # 4000 draws over 7 cells: each ~571 +- 22; allow 5 s.d.
    assert np.all(np.abs(counts[free] - 4000 / 7) < 5 * np.sqrt(4000 / 7 * 6 / 7))


def test_reset_coin_avoids_players():
    _, s = jax.vmap(coin.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(6), 2000), P)
    assert not np.any(np.all(np.asarray(s.coin_pos) == np.asarray(s.pos[:, 0]), axis=-1))
    assert not np.any(np.all(np.asarray(s.coin_pos) == np.asarray(s.pos[:, 1]), axis=-1))
    assert 0.45 < float(np.mean(np.asarray(s.coin_colour))) < 0.55


def test_observations_from_own_point_of_view():
    s = state((0, 0), (2, 1), (1, 2), coin.RED)
    g = coin.obs_grid(coin.observe(s))
    assert g.shape == (2, 4, 3, 3)
    # red: me (0,0), other (2,1), my coin (1,2), no other-colour coin
    assert g[0, 0, 0, 0] == 1 and g[0, 1, 2, 1] == 1 and g[0, 2, 1, 2] == 1 and g[0, 3].sum() == 0
    # blue: me (2,1), other (0,0), no coin of mine, the other's coin at (1,2)
    assert g[1, 0, 2, 1] == 1 and g[1, 1, 0, 0] == 1 and g[1, 2].sum() == 0 and g[1, 3, 1, 2] == 1
    assert float(g.sum()) == 6


def test_episode_ends_after_max_steps():
    s = state((0, 0), (2, 2), (1, 1), coin.RED, t=49)
    _, _, _, done, _ = coin.step(jax.random.PRNGKey(7), s, jnp.array([RIGHT, RIGHT]))
    assert bool(done)


def test_scripted_agents():
    keys = jax.random.split(jax.random.PRNGKey(8), 200)
    # red coin at (0,2), red at (0,0): the torus-shortest move is LEFT (wrap), never right/down/up.
    s = state((0, 0), (1, 1), (0, 2), coin.RED)
    a = jax.vmap(lambda k: coin.scripted_action(k, s, coin.RED, "selfish"))(keys)
    assert set(np.asarray(a).tolist()) == {LEFT}
    # blue is cooperative and the coin is red, adjacent to blue at (0,1)->(0,2): never RIGHT onto it.
    s = state((2, 0), (0, 1), (0, 2), coin.RED)
    a = jax.vmap(lambda k: coin.scripted_action(k, s, coin.BLUE, "cooperative"))(keys)
    assert RIGHT not in set(np.asarray(a).tolist()) and len(set(np.asarray(a).tolist())) == 3
    # blue is selfish: takes it.
    a = jax.vmap(lambda k: coin.scripted_action(k, s, coin.BLUE, "selfish"))(keys)
    assert set(np.asarray(a).tolist()) == {RIGHT}
    with pytest.raises(ValueError, match="kind"):
        coin.scripted_action(keys[0], s, 0, "greedy")


def test_bad_input_raises():
    with pytest.raises(ValueError, match="grid_size"):
        coin.Params(grid_size=1)
    s = state((0, 0), (2, 2), (1, 1), coin.RED)
    with pytest.raises(ValueError, match="actions"):
        coin.step(jax.random.PRNGKey(0), s, jnp.array([0, 1, 2]))


def test_render_and_action_values():
    s = state((0, 0), (2, 1), (1, 2), coin.BLUE)
    img = np.asarray(coin.render_rgb(s, cell=8))
    assert img.shape == (24, 24, 3) and img.min() >= 0 and img.max() <= 1
    # red agent's cell is reddish, blue agent's bluish, the coin centre is blue
    assert img[4, 4, 0] > img[4, 4, 2] and img[20, 12, 2] > img[20, 12, 0]
    np.testing.assert_allclose(img[8 + 4, 16 + 4], [0.15, 0.3, 0.85], rtol=1e-6)
    with pytest.raises(ValueError, match="values"):
        coin.step(jax.random.PRNGKey(0), s, jnp.array([0, 4]))

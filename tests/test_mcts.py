"""The MCTS best response against agents whose best response is known, recurrent ones included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.games import coin
from lowrank_es.shaping import agents, episodes, mcts, recurrent

SIMS = dict(num_simulations=64, rollout_depth=3)
NEIGHBOURS = (((1, 2), 0), ((1, 0), 1), ((2, 1), 2), ((0, 1), 3))  # coin cell next to (1, 1), the move onto it


def _board(me, other, coin_pos, colour):
    """A board with the planner (seat 0) at ``me`` and its opponent (seat 1) at ``other``;
    colour 0 is the planner's coin, 1 the opponent's."""
    return coin.State(pos=jnp.array([me, other], jnp.int32), coin_pos=jnp.array(coin_pos, jnp.int32),
                      coin_colour=jnp.int32(colour), t=jnp.int32(0))


_PLAN = jax.jit(lambda player, key, states, c: player.plan(key, states, c))  # one compile per opponent type


def _plan(opponent, boards, carries=None, seed=0, **kw):
    """The planner's moves on ``boards``, padded to a batch of 32 so that tests share compiles."""
    player = mcts.MCTSPlayer(opponent, **{**SIMS, **kw})
    n = len(boards)
    assert n <= 32
    states = jax.tree.map(lambda *x: jnp.stack(x), *(list(boards) + [boards[-1]] * (32 - n)))
    c = opponent.initial_carry(n) if carries is None else carries
    c = jnp.concatenate([c, jnp.repeat(c[-1:], 32 - n, 0)])
    return np.asarray(_PLAN(player, jax.random.PRNGKey(seed), states, c.astype(jnp.float32)))[:n]


def test_scripted_probs_match_coin_sampler():
    """The distributions the planner plans against are those coin.scripted_action samples from."""
    n = 4000
    for i, kind in enumerate(coin.SCRIPTED):
        _, state = coin.reset(jax.random.PRNGKey(10 + i))
        probs = np.asarray(mcts.scripted_probs(kind, state, 1))
        acts = jax.vmap(lambda k: coin.scripted_action(k, state, 1, kind))(jax.random.split(jax.random.PRNGKey(i), n))
        freq = np.bincount(np.asarray(acts), minlength=4) / n
        assert np.max(np.abs(freq - probs)) < 5 * np.sqrt(0.25 / n)  # 5 standard errors


def test_a_players_view_rebuilt_from_the_others_observation():
    """The planner and the detective rebuild the board from their own view and give the
    opponent the view it really has."""
    for k in jax.random.split(jax.random.PRNGKey(0), 20):
        obs, state = coin.reset(k)
        state = coin.step(k, state, jnp.array([0, 2]), coin.Params())[1]
        obs = coin.observe(state)
        rebuilt = agents.coin_state_from_obs(obs[1])
        np.testing.assert_array_equal(np.asarray(coin.observe(rebuilt)[1]), np.asarray(obs[0]))
        np.testing.assert_array_equal(np.asarray(coin.observe(rebuilt)[0]), np.asarray(obs[1]))


def test_policy_step_of_every_kind():
    spec = episodes.game_spec("coin")
    net = agents.network(jax.random.PRNGKey(0), recurrent.Architecture(spec.obs_dim, 4, hidden=8))
    net = agents.Agent(jax.tree.map(lambda x: 3.0 * x + 0.1, net.params), "network", net.arch)
    obs = coin.observe(coin.reset(jax.random.PRNGKey(1))[1])
    c = net.initial_carry(2)
    p, c2 = mcts.policy_step(net, obs, c)
    lg, c_ref = recurrent.actor_step(net.params["actor"], obs, c, net.arch)
    np.testing.assert_allclose(np.asarray(p), np.asarray(jax.nn.softmax(lg[:, 0])), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(c2), np.asarray(c_ref))
    state = agents.coin_state_from_obs(obs[0])
    p, _ = mcts.policy_step(agents.scripted("coin/selfish"), obs[:1], jnp.zeros((1, 1)))
    np.testing.assert_allclose(np.asarray(p[0]), np.asarray(mcts.scripted_probs("selfish", state, 0)))
    with pytest.raises(ValueError, match="player"):
        mcts.policy_step(agents.scripted("ipd/tit_for_tat"), obs, c)


def test_grim_trigger_turns_selfish_after_a_stolen_coin():
    grim = mcts.GrimTrigger()
    me, other = 1, 0  # grim plays seat 1: its coins are blue
    s0 = _board((0, 0), (2, 2), (0, 1), me)  # grim's coin next to the other player (seat 0)
    p, c = grim.probs(coin.observe(s0)[me][None], grim.initial_carry(1))
    assert float(c[0, -1]) == 0.0
    _, s1, r, _, _ = coin.step(jax.random.PRNGKey(0), s0, jnp.array([0, 1]), coin.Params())  # seat 0 steps onto it
    assert float(r[other]) == 1.0 and float(r[me]) == -2.0
    p, c = grim.probs(coin.observe(s1)[me][None], c)
    assert float(c[0, -1]) == 1.0
    np.testing.assert_allclose(np.asarray(p[0]), np.asarray(mcts.scripted_probs("selfish", s1, me)))


def _codes(states: coin.State) -> np.ndarray:
    """One integer per board of a batch (positions, coin cell and colour)."""
    cols = np.concatenate([np.asarray(states.pos).reshape(len(states.t), -1), np.asarray(states.coin_pos),
                           np.asarray(states.coin_colour)[:, None]], -1)
    return cols @ (3 ** np.arange(cols.shape[1]))


def test_chance_outcomes_are_the_games_transition():
    """The search's chance node (opponent action x respawn cell, exact next boards) gives every
    next board the probability coin.step gives it when the opponent samples from its policy
    (Monte Carlo, 5 standard errors)."""
    opp = agents.scripted("coin/random")
    player = mcts.MCTSPlayer(opp)
    n = 20000
    outcomes = jnp.arange(player.num_chance_outcomes)

    @jax.jit
    def exact_and_sampled(board, b):
        emb = jax.tree.map(lambda x: x[None], (board, opp.initial_carry(1)[0].astype(jnp.float32)))
        dec, aft = player._decision_fn(None, jax.random.PRNGKey(0), b[None], emb)
        _, nxt = player._chance_fn(None, jax.random.PRNGKey(1), outcomes,
                                   jax.tree.map(lambda x: jnp.repeat(x, len(outcomes), 0), aft))

        def sample(k):
            k_a, k_env = jax.random.split(k)
            return coin.step(k_env, board, jnp.stack([b, jax.random.randint(k_a, (), 0, 4)]))[1]

        return jax.nn.softmax(dec.chance_logits[0]), nxt[0], jax.vmap(sample)(jax.random.split(jax.random.PRNGKey(2), n))

    for board, b in ((_board((1, 1), (2, 2), (1, 2), 0), 0), (_board((1, 1), (1, 1), (0, 1), 1), 3),
                     (_board((0, 0), (2, 2), (1, 1), 1), 2)):
        probs, nxt, sampled = exact_and_sampled(board, jnp.int32(b))
        probs, exact_codes = np.asarray(probs), _codes(nxt)
        assert abs(probs.sum() - 1.0) < 1e-5
        boards = np.unique(exact_codes[probs > 0])
        exact = np.array([probs[exact_codes == c].sum() for c in boards])
        sampled_codes = _codes(sampled)
        assert np.isin(sampled_codes, boards).all()  # no board the chance node misses
        freq = np.array([np.mean(sampled_codes == c) for c in boards])
        np.testing.assert_array_less(np.abs(freq - exact), 5 * np.sqrt(exact * (1 - exact) / n) + 1e-9)


def test_mcts_takes_every_adjacent_coin_from_always_cooperate():
    """Against a memoryless cooperator, a coin of either colour next to the planner is worth +1
    now and nothing later: the best response steps onto it. (At discount
    0.5, so that taking it now beats taking it a step later by a margin the search resolves;
    at 0.96 the two differ by about 0.04.)"""
    boards, moves = [], []
    for (cell, move) in NEIGHBOURS:
        for colour in (0, 1):
            for other in ((2, 2), (0, 0)):
                boards.append(_board((1, 1), other, cell, colour))
                moves.append(move)
    np.testing.assert_array_equal(_plan(agents.scripted("coin/cooperative"), boards, gamma=0.5), np.array(moves))


def test_mcts_races_the_selfish_agent_for_an_adjacent_coin():
    """The selfish agent, diagonal to the planner, is one step from every coin next to the
    planner and takes it: the planner's own coin costs it -2 unless it steps on it too (-1),
    the other colour is +1 if it does. Either way the best response steps onto the coin (at the
    default discount 0.96)."""
    boards, moves = [], []
    for (cell, move) in NEIGHBOURS:
        for colour in (0, 1):
            other = (2, 2) if cell in ((1, 2), (2, 1)) else (0, 0)  # diagonal to (1, 1), next to the coin
            boards.append(_board((1, 1), other, cell, colour))
            moves.append(move)
    np.testing.assert_array_equal(_plan(agents.scripted("coin/selfish"), boards), np.array(moves))


def test_mcts_goes_for_coins_it_reaches_first_against_always_cooperate():
    """Two steps away from a coin that always-cooperate does not reach first (its own coin
    farther from it, or the planner's coin), the planner moves closer on (nearly) every board."""
    boards, good = [], []
    for k in jax.random.split(jax.random.PRNGKey(3), 80):
        _, s = coin.reset(k)
        d = lambda a, b: int(sum(min((x - y) % 3, (y - x) % 3) for x, y in zip(a, b)))  # noqa: E731
        me, other, cp = (np.asarray(s.pos[0]), np.asarray(s.pos[1]), np.asarray(s.coin_pos))
        if d(me, cp) == 2 and (int(s.coin_colour) == 0 or d(other, cp) >= 2):
            boards.append(s)
            good.append([d((me + np.asarray(coin.MOVES[a])) % 3, cp) == 1 for a in range(4)])
    boards, good = boards[:32], good[:32]
    acts = _plan(agents.scripted("coin/cooperative"), boards, gamma=0.5)
    closer = np.array([g[a] for g, a in zip(good, acts)])
    assert len(boards) >= 10 and closer.mean() >= 0.9, (len(boards), closer.mean())


def test_mcts_plans_with_the_opponents_memory():
    """The same boards, two memories of a grim-trigger opponent (at (0, 0)), its coin next to
    the planner: while it still cooperates the planner leaves the coin alone (taking it turns
    the opponent selfish for the rest of the episode); once it is angry the planner takes some
    of the coins the opponent would otherwise take this step (the two cells next to both; the
    search at 32 simulations does not resolve every one of them). Uniform rollouts: greedy ones
    provoke the trigger on every line, whatever the first move."""
    grim = mcts.GrimTrigger()
    boards = [_board((1, 1), (0, 0), cell, 1) for cell, _ in NEIGHBOURS]
    moves = np.array([m for _, m in NEIGHBOURS])
    calm = grim.initial_carry(len(boards))
    angry = calm.at[:, -1].set(1.0)
    both = np.array([cell in ((1, 0), (0, 1)) for cell, _ in NEIGHBOURS])
    kw = dict(rollout_depth=16, num_simulations=32, rollout="uniform")
    taken = 0
    for seed in range(2):
        assert np.all(_plan(grim, boards, calm, seed, **kw) != moves)
        taken += int(np.sum(_plan(grim, boards, angry, seed, **kw)[both] == moves[both]))
    assert taken >= 2, taken  # of 4: the same boards, a different memory, a different move


def test_mcts_player_in_episodes():
    """As a player of the episode layer: against always-cooperate it takes most coins of both
    colours; against the selfish agent it earns what another selfish agent earns, within 0.1
    per step (about 2.5 standard errors at 32 episodes; the planner that kept one sampled
    outcome per edge got -0.22 against 0); against the grim trigger (uniform rollouts) it takes
    (almost) only its own coins."""
    spec = episodes.game_spec("coin", max_steps=20)
    key = jax.random.PRNGKey(0)
    selfish = agents.scripted("coin/selfish")
    mirror = float(episodes.evaluate(key, selfish, selfish, spec, 32)["reward"][1])
    grim_kw = dict(rollout="uniform", rollout_depth=16, num_simulations=32)
    for opp, kw, lo, hi in ((agents.scripted("coin/cooperative"), {}, 0.0, 0.65), (selfish, {}, 0.0, 1.0),
                            (mcts.GrimTrigger(), grim_kw, 0.85, 1.0)):
        player = mcts.MCTSPlayer(opp, max_steps=20, **kw)
        st = episodes.evaluate(key, opp, player, spec, 32)
        own, other = np.asarray(st["own"])[1], np.asarray(st["other"])[1]
        assert lo <= own / (own + other) <= hi, (type(opp).__name__, own, other)
        assert own + other > 4
        if opp is selfish:
            assert float(st["reward"][1]) >= mirror - 0.1, (float(st["reward"][1]), mirror)


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_simulations"):
        mcts.MCTSPlayer(mcts.GrimTrigger(), num_simulations=0)
    with pytest.raises(ValueError, match="rollout"):
        mcts.MCTSPlayer(mcts.GrimTrigger(), rollout="alphabeta")
    with pytest.raises(ValueError, match="kind"):
        mcts.scripted_probs("nice", coin.reset(jax.random.PRNGKey(0))[1], 0)

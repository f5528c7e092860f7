"""The episode layer and the agents: GRU against a NumPy reference, rollouts, scripted agents
from observations, returns and advantages by hand, saving and loading."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.games import coin, negotiation
from lowrank_es.shaping import agents, episodes, recurrent


def _np_gru(p, h, x):
    """The GRU equations written out in NumPy (reset gate on the recurrent candidate term)."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    Wi, Wh, bi, bh = (np.asarray(p[k], np.float64) for k in ("Wi", "Wh", "bi", "bh"))
    H = h.shape[-1]
    r = sig(x @ Wi[:H].T + bi[:H] + h @ Wh[:H].T + bh[:H])
    z = sig(x @ Wi[H:2 * H].T + bi[H:2 * H] + h @ Wh[H:2 * H].T + bh[H:2 * H])
    n = np.tanh(x @ Wi[2 * H:].T + bi[2 * H:] + r * (h @ Wh[2 * H:].T + bh[2 * H:]))
    return (1 - z) * n + z * h


def test_gru_cell_matches_numpy_and_sequence_matches_steps():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    p = recurrent.gru_init(k1, 3, 4)
    p = {k: v + 0.1 * jax.random.normal(k2, v.shape) for k, v in p.items()}  # non-zero biases
    h = np.asarray(jax.random.normal(k3, (2, 4)))
    x = np.asarray(jax.random.normal(k2, (2, 3)))
    np.testing.assert_allclose(recurrent.gru_cell(p, jnp.asarray(h), jnp.asarray(x)), _np_gru(p, h, x), rtol=1e-5, atol=1e-6)
    arch = recurrent.Architecture(obs_dim=5, n_choices=3, action_dims=2, hidden=4)
    params = recurrent.init(jax.random.PRNGKey(1), arch)
    params["actor"]["head"]["W"] = jax.random.normal(k3, params["actor"]["head"]["W"].shape)
    obs = jax.random.normal(k1, (6, 2, 5))
    seq = recurrent.actor_sequence(params["actor"], obs, arch)
    carry = recurrent.initial_carry(arch, 2)
    for t in range(6):
        lg, carry = recurrent.actor_step(params["actor"], obs[t], carry, arch)
        np.testing.assert_allclose(seq[t], lg, rtol=1e-5, atol=1e-6)
    assert seq.shape == (6, 2, 2, 3)
    # a fresh actor is uniform
    assert np.allclose(recurrent.actor_sequence(recurrent.init(k2, arch)["actor"], obs, arch), 0.0)


def test_returns_td_and_gae_hand_worked():
    r = jnp.array([1.0, 0.0, 2.0])
    # gamma 0.5: G = (1 + 0 + 0.25*2, 0 + 0.5*2, 2)
    np.testing.assert_allclose(episodes.returns_to_go(r, 0.5), [1.5, 1.0, 2.0])
    v = jnp.array([1.0, 2.0, 0.0, 0.0])
    # deltas: 1 + 0.5*2 - 1 = 1;  0 + 0 - 2 = -2;  2 + 0 - 0 = 2
    np.testing.assert_allclose(episodes.td_errors(r, v, 0.5), [1.0, -2.0, 2.0])
    # lam 0.5: A2 = 2; A1 = -2 + 0.25*2 = -1.5; A0 = 1 + 0.25*(-1.5) = 0.625
    np.testing.assert_allclose(episodes.gae(r, v, 0.5, 0.5), [0.625, -1.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(episodes.gae(r, jnp.zeros(4), 0.5, 1.0), [1.5, 1.0, 2.0])
    np.testing.assert_allclose(episodes.with_terminal(jnp.ones((2, 3))), [[1, 1, 1], [1, 1, 1], [0, 0, 0]])
    with pytest.raises(ValueError, match="lam"):
        episodes.gae(r, v, 0.9, 1.5)
    with pytest.raises(ValueError, match="values"):
        episodes.td_errors(r, v[:3], 0.9)


def test_scripted_coin_agents_from_observations_match_the_game_state():
    """An agent acting on its observation must do what the state-based scripted agent does
    (30 random boards, both colours, both seats; one jitted batch, not 120 eager calls)."""
    params = coin.Params()
    n = 30
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(n))
    k_act = jax.random.PRNGKey(1)

    @jax.jit
    def both():
        states = jax.vmap(lambda k: coin.reset(k, params)[1])(keys)
        states = coin.State(states.pos, states.coin_pos, jnp.arange(n, dtype=jnp.int32) % 2, states.t)
        obs = jax.vmap(lambda s: coin.observe(s, params))(states)  # (n, 2, d)
        ks = jax.random.split(k_act, n)  # the keys act() gives each row of its batch
        out = {}
        for kind in ("cooperative", "selfish"):
            for seat in (0, 1):
                from_obs = agents.scripted(f"coin/{kind}").act(k_act, obs[:, seat], jnp.zeros((n, 1)))[0]
                from_state = jax.vmap(lambda k, s: coin.scripted_action(k, s, seat, kind, params))(ks, states)
                out[kind, seat] = (from_obs, from_state)
        return out

    for (kind, seat), (from_obs, from_state) in both().items():
        np.testing.assert_array_equal(from_obs, from_state, err_msg=f"{kind}, seat {seat}")


def test_rollout_shapes_determinism_and_cooperative_pair():
    spec = episodes.game_spec("coin")
    coop = agents.scripted("coin/cooperative")
    ep = episodes.rollout(jax.random.PRNGKey(0), (coop, coop), spec, 4, record_states=True)
    assert ep.obs.shape == (50, 4, 2, 36) and ep.actions.shape == (50, 4, 2) and ep.rewards.shape == (50, 4, 2)
    assert ep.states.pos.shape == (51, 4, 2, 2)
    # observations are those of the recorded states
    np.testing.assert_array_equal(ep.obs[7, 2], coin.observe(jax.tree.map(lambda x: x[7, 2], ep.states)))
    # cooperative agents never take the other's coin, so nobody is ever penalised
    assert not np.any(np.asarray(ep.info["picked_other"])) and np.all(np.asarray(ep.rewards) >= 0)
    again = episodes.rollout(jax.random.PRNGKey(0), (coop, coop), spec, 4)
    np.testing.assert_array_equal(ep.actions, again.actions)
    st = episodes.stats(ep, spec)
    assert float(st["own_rate"]) == 1.0 and np.all(np.asarray(st["own"]) > 0)


def test_per_env_players_act_with_their_own_parameters():
    """Seat 1 with one parameter set per episode: episode i's opponent always plays the action
    its own (near-deterministic) head prefers."""
    spec = episodes.game_spec("coin", max_steps=8)
    arch = recurrent.Architecture(spec.obs_dim, spec.n_choices, hidden=6)
    a = agents.network(jax.random.PRNGKey(1), arch)
    prefer = jnp.array([2, 3, 0, 1, 2])
    bias = 30.0 * jax.nn.one_hot(prefer, 4)  # (5, 4): logit bias of each episode's opponent
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (5,) + x.shape), a)
    stacked.params["actor"]["head"]["b"] = bias
    ep = episodes.rollout(jax.random.PRNGKey(3), (a, stacked), spec, 5, per_env=(False, True))
    np.testing.assert_array_equal(ep.actions[:, :, 1], jnp.broadcast_to(prefer, (8, 5)))
    # seat 0 (shared, uniform) is not constant
    assert len(np.unique(np.asarray(ep.actions[:, :, 0]))) > 1


def test_negotiation_reference_payoffs_through_the_episode_layer():
    spec = episodes.game_spec("negotiation", max_steps=20)
    ac, ad = agents.scripted("negotiation/always_cooperate"), agents.scripted("negotiation/always_defect")
    r = np.asarray(episodes.evaluate(jax.random.PRNGKey(0), ac, ad, spec, 512)["reward"])
    exact = np.asarray(negotiation.expected_payoffs(negotiation.always_cooperate, negotiation.always_defect))
    np.testing.assert_allclose(r, exact, atol=0.01)  # s.e. of the mean over 10,240 rounds is ~0.002


def test_ipd_memory_one_agents_through_the_episode_layer():
    spec = episodes.game_spec("ipd")
    tft, ad = agents.scripted("ipd/tit_for_tat"), agents.scripted("ipd/always_defect")
    r = np.asarray(episodes.evaluate(jax.random.PRNGKey(0), tft, ad, spec, 8)["reward"])
    # TFT cooperates once (-3 vs 0), then mutual defection (-2) for 49 steps
    np.testing.assert_allclose(r, [(-3 - 2 * 49) / 50, (0 - 2 * 49) / 50], rtol=1e-6)


def test_agents_save_load_roundtrip_and_validation(tmp_path):
    arch = recurrent.Architecture(obs_dim=36, n_choices=4, hidden=5, critic_outputs=4)
    a = agents.network(jax.random.PRNGKey(0), arch)
    path = agents.save(a, "coin/test/0", {"note": "x"}, directory=tmp_path)
    assert path.name == "coin__test__0.npz"
    b = agents.load("coin/test/0", directory=tmp_path)
    assert b.arch == arch
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)
    obs = jnp.zeros((3, 36)).at[:, 0].set(1.0)
    act, carry = b.act(jax.random.PRNGKey(1), obs, b.initial_carry(3))
    assert act.shape == (3,) and carry.shape == (3, 5)
    with pytest.raises(ValueError, match="game/method/seed"):
        agents.load("coin-loqa-0")
    with pytest.raises(ValueError, match="no trained agent"):
        agents.load("coin/nothing/0")
    with pytest.raises(ValueError, match="name must be one of"):
        agents.scripted("coin/greedy")
    with pytest.raises(ValueError, match="obs"):
        b.act(jax.random.PRNGKey(0), jnp.zeros(36), b.initial_carry(1))
    with pytest.raises(ValueError, match="n_envs"):
        episodes.rollout(jax.random.PRNGKey(0), (a, a), episodes.game_spec("coin"), 0)
    with pytest.raises(ValueError, match="continuous"):
        episodes.game_spec("negotiation", continuous=True)


def test_published_on_off_plays_the_shipped_agents_and_reads_the_difference():
    """Shaping on against off on the published Coin Game agents: each entry is the agent's
    reward of episodes.evaluate on that seed's key; a copy of itself gets the same reward in
    expectation (symmetric seats, 256 episodes: within 0.05); bad opponents are clear errors."""
    from lowrank_es.experiments import sampled_shaping as ss

    methods = {"LOQA": "loqa", "off": "loqa_noshaping"}
    res = ss.published_on_off("coin", methods, "self", seeds=(0, 1))
    spec = episodes.game_spec("coin")
    a0 = agents.actor_only(agents.load("coin/loqa/0"))
    direct = episodes.evaluate(jax.random.PRNGKey(3000), a0, a0, spec, 256)
    assert res["LOQA"]["reward"][0] == pytest.approx(float(direct["reward"][0]))
    assert res["LOQA"]["own_rate"][0] == pytest.approx(float(direct["own_rate"]))
    for v in res.values():
        assert v["reward"].shape == (2,) and np.all(np.abs(v["reward"] - v["opponent_reward"]) < 0.05)
    with pytest.raises(ValueError, match="opponent must be"):
        ss.published_on_off("coin", methods, "greedy")


def test_plot_on_off_reading_follows_the_welch_interval():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lowrank_es.experiments import sampled_shaping as ss

    apart = {"on": {"reward": np.array([0.25, 0.26, 0.27])}, "off": {"reward": np.array([0.0, 0.01, -0.01])}}
    close = {"on": {"reward": np.array([0.0, 0.2, -0.1])}, "off": {"reward": np.array([0.05, -0.05, 0.1])}}
    fig, ax = plt.subplots(1, 2)
    assert "+0.260 per step" in ss.plot_on_off(ax, apart) and "excludes 0" in ss.plot_on_off(ax, apart)
    assert "includes 0" in ss.plot_on_off(ax, close)
    plt.close(fig)

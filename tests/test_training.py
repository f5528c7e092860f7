"""The sampled learners: LOQA's differentiable opponent Q, the shaping estimators' bias (the
Coin Game collapse), and the self-play trainer."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.shaping import advantage_alignment as aa
from lowrank_es.shaping import episodes, loqa, training

GAMMA = 0.9


def test_differentiable_opponent_q_value_and_gradient():
    """Value: the opponent's return; d Q_t / d log pi1(a_j) = gamma (gamma d)^(j-t-1) A2_j for
    j > t, and 0 for j <= t (the agent's action at t is simultaneous with b_t)."""
    d = 0.8
    A2 = jnp.array([0.5, -1.0, 2.0, 0.25])
    R2 = jnp.array([1.0, 2.0, 3.0, 4.0])
    lp0 = jnp.array([-0.3, -1.2, -0.7, -0.1])
    f = lambda lp: loqa.differentiable_opponent_q(lp, A2, R2, GAMMA, d)  # noqa: E731
    np.testing.assert_allclose(f(lp0), R2, rtol=1e-6)
    J = np.asarray(jax.jacobian(f)(lp0))  # (t, j)
    ref = np.array([[GAMMA * (GAMMA * d) ** (j - t - 1) * float(A2[j]) if j > t else 0.0 for j in range(4)]
                    for t in range(4)])
    np.testing.assert_allclose(J, ref, rtol=1e-5, atol=1e-7)


def test_opponent_model_loss_gradient_by_hand():
    """grad_lp_j of -mean_t A1_t log softmax(Q_t / tau)[b_t] = -mean_t A1_t (1 - pi_hat_t(b_t)) / tau dQ_t/dlp_j."""
    T, A, tau = 4, 3, 0.7
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    lp0 = -jax.random.uniform(k[0], (T, 1))
    A1, A2 = jax.random.normal(k[1], (T, 1)), jax.random.normal(k[2], (T, 1))
    R2 = jax.random.normal(k[3], (T, 1))
    q_opp = jax.random.normal(k[4], (T, 1, A))
    b = jnp.array([[0], [2], [1], [2]])
    g = jax.grad(lambda lp: loqa.opponent_model_loss(lp, A1, b, q_opp, A2, R2, GAMMA, 1.0, tau))(lp0)[:, 0]
    q = np.asarray(q_opp[:, 0]).copy()
    q[np.arange(T), np.asarray(b[:, 0])] = np.asarray(R2[:, 0])
    pi_hat = np.exp(q / tau) / np.exp(q / tau).sum(-1, keepdims=True)
    w = np.asarray(A1[:, 0]) * (1 - pi_hat[np.arange(T), np.asarray(b[:, 0])]) / tau
    dq = np.array([[GAMMA ** (j - t) * float(A2[j, 0]) if j > t else 0.0 for j in range(T)] for t in range(T)])
    np.testing.assert_allclose(g, -(w @ dq) / T, rtol=1e-5, atol=1e-7)


def _gamble_data(n=20000, T=6, seed=0):
    """A game in which the shaping gradient is exactly 0: 'gamble' (action 1) moves x = +-1
    from the opponent to the agent, 'safe' moves nothing, so neither player's expected reward
    depends on the agent's policy. Rewards change hands, as picked-up coins do."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    a = jax.random.bernoulli(k1, 0.5, (T, n)).astype(jnp.int32)  # policy: logit theta = 0
    x = jnp.where(jax.random.bernoulli(k2, 0.5, (T, n)), 1.0, -1.0)
    b = jax.random.bernoulli(k3, 0.5, (T, n)).astype(jnp.int32)
    return a, a * x, -a * x, b


def _per_episode_grads(loss_fn, a, *data):
    """d loss / d theta at theta = 0 for each episode, where pi(gamble) = sigmoid(theta) and
    loss_fn(logp (T, 1), *data (T, 1))."""

    def one(ai, *di):
        lp = lambda th: jax.nn.log_softmax(jnp.stack([jnp.zeros_like(th), th]))[ai][:, None]  # noqa: E731
        return jax.grad(lambda th: loss_fn(lp(th), *(d[:, None] for d in di)))(0.0)

    return jax.vmap(one, in_axes=1)(a, *data)


def _z(g):
    g = np.asarray(g)
    return g.mean() / (g.std() / np.sqrt(len(g)))


def test_loqa_term_is_unbiased_where_the_monte_carlo_form_avoids_coins():
    """The estimator of the trainer (one-step own advantage, agent's actions after t) has mean 0
    here; the previous one (Monte Carlo own advantage, current step inside the DiCE sum) pushes
    away from the reward-exchanging action: the Coin Game collapse into avoiding coins."""
    a, r1, r2, b = _gamble_data()

    def fixed(lp, r1, r2, b):  # critics V = Q = 0: one-step own advantage delta1 = r1
        G2 = episodes.returns_to_go(r2, GAMMA)
        return loqa.opponent_model_loss(lp, r1, b, jnp.zeros(b.shape + (2,)), G2, G2, GAMMA)

    def monte_carlo(lp, r1, r2, b):  # own advantage G1 - V, DiCE sum from the current step on
        G1, G2 = episodes.returns_to_go(r1, GAMMA), episodes.returns_to_go(r2, GAMMA)
        dice = episodes.discounted_cumsum(G2 * (lp - jax.lax.stop_gradient(lp)), GAMMA)
        onehot = jax.nn.one_hot(b, 2)
        return -jnp.mean(G1 * jnp.sum(jax.nn.log_softmax(onehot * (G2 + dice)[..., None]) * onehot, -1))

    assert abs(_z(_per_episode_grads(fixed, a, r1, r2, b))) < 4.0
    # loss gradient > 0: the policy is pushed away from exchanging rewards
    assert _z(_per_episode_grads(monte_carlo, a, r1, r2, b)) > 8.0


def test_alignment_term_is_unbiased_with_one_step_past_advantages():
    """The same game for AdAlign: past = discounted sum of one-step TD errors gives a zero-mean
    alignment gradient; past Monte Carlo advantages share rewards with A2_t and do not."""
    a, r1, r2, b = _gamble_data(seed=1)
    A2 = episodes.returns_to_go(r2, GAMMA)  # V = 0: Monte Carlo advantages
    G1 = episodes.returns_to_go(r1, GAMMA)

    def grads(past):
        term = GAMMA * past * A2  # the alignment part of A* (beta = 1), per step and episode
        score = jnp.where(a == 1, 0.5, -0.5)  # d log pi(a) / d theta at theta = 0
        return (term * score).sum(0)  # per-episode ascent direction

    assert abs(_z(grads(aa.past_advantage_sum(r1, GAMMA)))) < 4.0
    assert _z(grads(aa.past_advantage_sum(G1, GAMMA))) < -8.0


def test_past_advantage_mean_and_aligned_advantage_with_given_past():
    adv = jnp.array([1.0, 3.0, -1.0, 2.0])
    np.testing.assert_allclose(aa.past_advantage_mean(adv), [0.0, 1.0, 2.0, 1.0])
    a1, a2, past = jnp.array([1.0, 2.0]), jnp.array([3.0, -1.0]), jnp.array([0.0, 4.0])
    np.testing.assert_allclose(aa.aligned_advantage(a1, a2, 0.5, 2.0, past=past), [1.0, 2.0 + 2.0 * 0.5 * 4.0 * -1.0])


@pytest.fixture(scope="module")
def tiny():
    spec = episodes.game_spec("coin", max_steps=6)
    cfg = training.TrainConfig(method="loqa", n_envs=6, hidden=4, snapshot_every=2, buffer=2, replay=0.5)
    return spec, cfg


def test_training_runs_snapshots_and_is_chunk_independent(tiny):
    spec, cfg = tiny
    state, h = training.train(jax.random.PRNGKey(0), spec, cfg, 4)
    assert h["reward"].shape == (4, 2) and h["own"].shape == (4, 2)
    assert int(state.step) == 4 and np.all(np.isfinite(np.asarray(h["opponent_term"])))
    # snapshots at steps 0 and 2 fill both buffer slots with the agent as it was then
    assert not np.allclose(state.buffer.params["actor"]["head"]["W"][0], state.buffer.params["actor"]["head"]["W"][1])
    assert np.all(np.abs(np.asarray(h["reward"])) <= 4.0)  # one step's reward lies in [-4, 2]
    states, hs = training.train_seeds((0, 3), spec, cfg, 4, chunk=3)
    np.testing.assert_allclose(hs["reward"][0], h["reward"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(states.agent.params["actor"]["head"]["W"][0], state.agent.params["actor"]["head"]["W"],
                               rtol=1e-5, atol=1e-6)


def test_proximal_adalign_on_negotiation_learns_three_choices():
    spec = episodes.game_spec("negotiation", max_steps=5)
    cfg = training.TrainConfig(method="proximal_adalign", n_envs=4, hidden=4, ppo_epochs=2, replay=0.0)
    state, h = training.train(jax.random.PRNGKey(1), spec, cfg, 2)
    assert state.agent.arch.action_dims == 3 and h["reward"].shape == (2, 2)
    assert np.all(np.isfinite(np.asarray(h["reward"])))


def test_value_targets_by_hand():
    """lambda-return and the official (MC + TD(0)) / 2 interpolation on a 3-step episode."""
    r, v, g, lam = jnp.array([[1.0], [0.0], [2.0]]), jnp.array([[0.5], [1.0], [-1.0]]), 0.5, 0.5
    mc = np.array([1.0 + 0.5 * 0.0 + 0.25 * 2.0, 0.0 + 0.5 * 2.0, 2.0])
    td0 = np.array([1.0 + 0.5 * 1.0, 0.0 + 0.5 * -1.0, 2.0 + 0.0])
    np.testing.assert_allclose(training.value_targets(r, v, g, lam, "interpolate")[:, 0], (mc + td0) / 2, rtol=1e-6)
    # lambda-return G^lam_t = r_t + g((1 - lam) V_{t+1} + lam G^lam_{t+1}), G^lam_3 = 0
    g2 = 2.0
    g1 = 0.0 + g * ((1 - lam) * -1.0 + lam * g2)
    g0 = 1.0 + g * ((1 - lam) * 1.0 + lam * g1)
    np.testing.assert_allclose(training.value_targets(r, v, g, lam, "lambda")[:, 0], [g0, g1, g2], rtol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        training.value_targets(r, v, g, lam, "mc")


@pytest.mark.parametrize("replay", [0.0, 0.5])
def test_target_critic_advantages_are_the_online_ones_of_the_target(replay):
    """advantage_critic='target' computes every advantage from the target critic: the actor step
    equals the online-critic step of a learner whose critic is that target (past agents, whose
    target is not kept, use their own critic in both)."""
    spec = episodes.game_spec("negotiation", max_steps=5)
    base = dict(method="adalign", n_envs=4, hidden=4, replay=replay, buffer=2, beta=2.0, past="mean", past_of="gae")
    cfg_t = training.TrainConfig(advantage_critic="target", **base)
    cfg_o = training.TrainConfig(advantage_critic="online", **base)
    s0 = training.init(jax.random.PRNGKey(0), spec, cfg_t)
    other = training.init(jax.random.PRNGKey(5), spec, cfg_t).agent.params["critic"]  # a target unlike the critic
    s_t = s0._replace(target=other)
    s_o = s0._replace(target=other, agent=dataclasses.replace(s0.agent, params={**s0.agent.params, "critic": other}))
    new_t, _ = training.update(s_t, jax.random.PRNGKey(1), spec, cfg_t)
    new_o, _ = training.update(s_o, jax.random.PRNGKey(1), spec, cfg_o)
    for a, b in zip(jax.tree.leaves(new_t.agent.params["actor"]), jax.tree.leaves(new_o.agent.params["actor"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # and it is not the online critic's step of the original learner
    new_plain, _ = training.update(s_t, jax.random.PRNGKey(1), spec, cfg_o)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(new_t.agent.params["actor"]),
                                                           jax.tree.leaves(new_plain.agent.params["actor"])))
    assert diff > 1e-6


def test_config_validation():
    with pytest.raises(ValueError, match="method"):
        training.TrainConfig(method="lola")
    with pytest.raises(ValueError, match="replay"):
        training.TrainConfig(replay=1.0)
    with pytest.raises(ValueError, match="past"):
        training.TrainConfig(past="sum")
    for name in ("past_of", "advantage_critic", "critic_target"):
        with pytest.raises(ValueError, match=name):
            training.TrainConfig(**{name: "official"})
    with pytest.raises(ValueError, match="AdAlign options"):
        training.TrainConfig(method="loqa", critic_target="interpolate")
    with pytest.raises(ValueError, match="LOQA"):
        training.architecture(episodes.game_spec("negotiation"), training.TrainConfig(method="loqa"))
    with pytest.raises(ValueError, match="tau"):
        loqa.opponent_model_loss(jnp.zeros((2, 1)), jnp.zeros((2, 1)), jnp.zeros((2, 1), int), jnp.zeros((2, 1, 2)),
                                 jnp.zeros((2, 1)), jnp.zeros((2, 1)), 0.9, 1.0, 0.0)

"""BRS in the Coin Game: the question answering against exact enumeration, the detective's
answers recomputed exactly as it acted on them, the gradient through the conditioning."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.games import coin
from lowrank_es.shaping import agents, brs_coin, episodes, recurrent


def _net(key, arch, scale=2.0):
    p = recurrent.init(key, arch)
    p = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.fold_in(key, x.size), x.shape, x.dtype), p)
    p["actor"]["head"]["W"] = scale * jax.random.normal(jax.random.fold_in(key, 7), p["actor"]["head"]["W"].shape)
    return p


def _two_step_tree(state):
    """Every way two simulated steps can go, for exact enumeration: rewards ``r1 [b, a]`` of
    the detective (seat 0) in the first step, and for each first-step pair ``(b, a)`` the
    possible boards after it (the coin respawns uniformly on a free cell) with their
    probabilities and the detective's rewards ``r2 [b2, a2]`` on each."""
    params = coin.Params(max_steps=3)
    pairs = jnp.array(list(itertools.product(range(4), range(4))))
    _, s1, r1, _, _ = jax.vmap(lambda ba: coin.step(jax.random.PRNGKey(0), state, ba, params))(pairs)
    children, parent, prob = [], [], []
    for i in range(16):
        s = jax.tree.map(lambda x: x[i], s1)
        picked = bool(jnp.any(jnp.all(s.pos == state.coin_pos[None], -1)))
        cells = [(r, c) for r, c in itertools.product(range(3), range(3))
                 if not any(bool(jnp.all(s.pos[k] == jnp.array([r, c]))) for k in (0, 1))] if picked else [None]
        for c in cells:
            children.append(s if c is None else coin.State(s.pos, jnp.array(c, jnp.int32), s.coin_colour, s.t))
            parent.append(i)
            prob.append(1.0 / len(cells))
    kids = jax.tree.map(lambda *x: jnp.stack(x), *children)
    r2 = jax.vmap(lambda s: jax.vmap(lambda ba: coin.step(jax.random.PRNGKey(0), s, ba, params)[2][0])(pairs))(kids)
    return r1[:, 0].reshape(4, 4), kids, np.array(parent), jnp.array(prob), r2.reshape(-1, 4, 4)


def _exact_answers(actor, arch, h, state, tree, gamma):
    """The detective's expected discounted reward over two steps for each first action ``b``
    (then uniform), enumerating the agent's actions, the detective's and the coin's respawn,
    divided by 1 + gamma."""
    r1, kids, parent, prob, r2 = tree
    lg, h1 = recurrent.actor_step(actor, coin.observe(state)[1][None], h[None], arch)
    p0 = jax.nn.softmax(lg[0, 0])
    lg2, _ = recurrent.actor_step(actor, jax.vmap(lambda s: coin.observe(s)[1])(kids),
                                  jnp.broadcast_to(h1, (len(parent), h.shape[0])), arch)
    p1 = jax.nn.softmax(lg2[:, 0])
    later = prob * jnp.einsum("kba,ka->k", r2, p1) / 4.0  # uniform b2, the agent's a2
    cont = jax.ops.segment_sum(later, jnp.asarray(parent), 16).reshape(4, 4)
    return jnp.einsum("a,ba->b", p0, r1 + gamma * cont) / (1.0 + gamma)


def test_answers_are_an_unbiased_dice_estimate_of_the_exact_expectation():
    """Values and gradients (with respect to the agent's actor and its memory) of the Monte
    Carlo answers match exact enumeration within 5 standard errors."""
    with jax.enable_x64(True):
        arch = recurrent.Architecture(36, 4, hidden=4)
        actor = jax.tree.map(lambda x: x.astype(jnp.float64), _net(jax.random.PRNGKey(0), arch)["actor"])
        h = 0.5 * jax.random.normal(jax.random.PRNGKey(1), (4,), jnp.float64)
        state = coin.State(pos=jnp.array([[1, 1], [0, 2]], jnp.int32), coin_pos=jnp.array([1, 2], jnp.int32),
                           coin_colour=jnp.int32(1), t=jnp.int32(0))
        gamma, depth, n, reps = 0.9, 2, 4000, 8
        tree = _two_step_tree(state)
        direction = jax.tree.map(lambda x: jax.random.normal(jax.random.PRNGKey(x.size), x.shape, x.dtype), actor)

        def along(f):  # directional derivative in the actor and the gradient in the memory, of each answer
            def proj(eps, dh):
                return f(jax.tree.map(lambda a, d: a + eps * d, actor, direction), h + dh)
            return jax.jacfwd(proj, argnums=(0, 1))(0.0, jnp.zeros(4))

        v_exact = _exact_answers(actor, arch, h, state, tree, gamma)
        d_exact = along(lambda a, hh: _exact_answers(a, arch, hh, state, tree, gamma))
        mc = jax.jit(lambda k, a, hh: brs_coin.answers(a, arch, hh, state, k, rollouts=n, depth=depth, gamma=gamma))
        runs = [(mc(k, actor, h), along(lambda a, hh, k=k: mc(k, a, hh))) for k in jax.random.split(jax.random.PRNGKey(2), reps)]
        for est, ref in ((np.stack([r[0] for r in runs]), v_exact), (np.stack([r[1][0] for r in runs]), d_exact[0]),
                         (np.stack([r[1][1] for r in runs]), d_exact[1])):
            mean, se = est.mean(0), est.std(0, ddof=1) / np.sqrt(reps)
            assert np.all(np.abs(mean - np.asarray(ref)) <= 5 * se + 1e-9), (mean, np.asarray(ref), se)
        assert float(jnp.abs(d_exact[0]).max()) > 1e-3 and float(jnp.abs(d_exact[1]).max()) > 1e-3


@functools.cache  # two tests share it (arrays are immutable); the rollout takes about 10 s
def _setup(det_hidden=6, hidden=5, steps=8):
    cfg = brs_coin.CoinConfig(hidden=hidden, det_hidden=det_hidden, steps=steps, rollouts=2, depth=2)
    agent = agents.Agent(_net(jax.random.PRNGKey(3), brs_coin.agent_arch(cfg)), "network", brs_coin.agent_arch(cfg))
    det = brs_coin.detective(_net(jax.random.PRNGKey(4), brs_coin.detective_arch(cfg)), agent.params["actor"],
                             jax.random.PRNGKey(5), cfg)
    ep = episodes.rollout(jax.random.PRNGKey(6), (agent, det), brs_coin.spec_of(cfg), 3)
    return cfg, agent, det, ep


def test_detective_acts_on_the_answers_it_is_later_trained_on():
    """Stepping the detective along an episode gives the inputs recomputed in parallel from the
    agent's own observations (the simulations' keys depend only on the step and the board)."""
    cfg, agent, det, ep = _setup()
    carry = det.initial_carry(3)
    online = []
    step = jax.jit(det.step_inputs)  # one compile for every step: run eagerly the loop took 20 s
    for t in range(cfg.steps):
        x, carry = step(ep.obs[t, :, 1], carry)
        online.append(x)
    replay = jax.jit(brs_coin.detective_inputs)(det, ep.obs[:, :, 1], ep.obs[:, :, 0])
    np.testing.assert_allclose(np.stack(online), np.asarray(replay), atol=1e-5)
    assert float(jnp.abs(replay[..., -4:]).max()) > 0  # the answers are there


def test_gradient_through_the_conditioning():
    """The detective's log-probabilities depend on the agent's parameters only through the
    answers: zero the detective's answer inputs and that gradient vanishes."""
    cfg, agent, det, ep = _setup()
    f = lambda a, d: brs_coin.detective_log_prob(  # noqa: E731
        brs_coin.Detective(d, a, det.key, det.arch, det.agent_arch, det.rollouts, det.depth, det.gamma, det.grid_size),
        ep.obs[:, :, 1], ep.obs[:, :, 0], ep.actions[:, :, 1]).sum()
    grad = jax.jit(jax.grad(f))  # one compile serves both parameter sets (eager grads took 3x longer)
    assert float(optax_norm(grad(agent.params["actor"], det.params))) > 1e-4
    blind = jax.tree.map(lambda x: x, det.params)
    blind["actor"]["embed"]["W"] = blind["actor"]["embed"]["W"].at[:, -4:].set(0.0)
    assert float(optax_norm(grad(agent.params["actor"], blind))) == 0.0


def optax_norm(tree):
    return jnp.sqrt(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(tree)))


def test_training_runs_and_is_deterministic():
    # the quick scale's config, seeds and chunks: the program notebook 13 runs (compiled once for both
    # through the persistent compilation cache; compiling the update dominates on a 2-core CPU)
    from lowrank_es.experiments import brs as brs_experiment

    cfg = brs_experiment.SCALES["quick"].coin
    s1, h1 = brs_coin.train_seeds((0,), cfg, 2, chunk=1)
    s2, h2 = brs_coin.train_seeds((0,), cfg, 2, chunk=1)
    for k in h1:
        np.testing.assert_array_equal(np.asarray(h1[k]), np.asarray(h2[k]))
        assert np.all(np.isfinite(np.asarray(h1[k]))), k
    init = brs_coin.init(jax.random.split(jax.random.PRNGKey(0))[0], cfg)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a[0] - b).max()), s1.agent.params["actor"], init.agent.params["actor"])
    assert max(jax.tree.leaves(moved)) > 0
    assert set(h1) >= {"reward", "own_rate", "vs_detective", "detective_own_rate"}


def test_config_validation():
    with pytest.raises(ValueError, match="rollouts"):
        brs_coin.CoinConfig(rollouts=0)
    with pytest.raises(ValueError, match="det_agents"):
        brs_coin.CoinConfig(det_agents=-1)
    with pytest.raises(ValueError, match="gamma"):
        brs_coin.CoinConfig(gamma=1.0)
    with pytest.raises(ValueError, match="lr"):
        brs_coin.CoinConfig(lr=0.0)
    with pytest.raises(ValueError, match="n_updates"):
        brs_coin.train_seeds((0,), brs_coin.CoinConfig(), 0)

"""Best responses: exact in the IPD, planned with MCTS (``mctx``) in the Coin Game.

IPD (exact)
-----------
A memory-1 agent ``p = [p_start, p_CC, p_CD, p_DC, p_DD]`` (conventions of
:mod:`lowrank_es.games.ipd`) induces a 5-state MDP for its opponent: the states are
"start" and the last joint action; the opponent's action ``b`` and the agent's action
``a ~ p`` give the next joint action ``2a + b`` (agent first) and the opponent's reward
``REWARD_2[2a + b]``. Because the agent only looks at the last joint action, that MDP is
exact and its optimal policy is a *deterministic memory-1* policy.
:func:`ipd_best_response` solves it by policy iteration (exact linear solves; it ends in
finitely many steps, at most 32 policies exist) and returns that policy in the opponent's
own-view convention, so ``ipd.exact_value(p, br)`` gives both players' returns.
:func:`ipd_soft_best_response` is the entropy-regularised (temperature ``tau``) best
response by soft value iteration: differentiable in ``p`` and equal to the exact best
response as ``tau -> 0``. :func:`ipd_exploitability` reports, for any agent, its return
against its exact best response and the best response's return.

Coin Game (MCTS)
----------------
:func:`mcts_best_response_episode` plays an MCTS player that knows the agent's policy
against it. The search is ``mctx.gumbel_muzero_policy`` (or ``mctx.muzero_policy``) with
the *true* environment as ``recurrent_fn``: the agent's action distribution is folded into
the transition by taking the expectation of the reward over the agent's action and, for the
next state, one sample of the agent's action per expanded edge (drawn from a key carried in
the embedding). Leaf values are the discounted return of a short random rollout of both
players (``rollout_depth`` steps, the agent playing its own policy). The MCTS player
is player 2 of the Coin Game unless told otherwise.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.games import ipd

# ---------------------------------------------------------------------------
# IPD: exact best response to a memory-1 agent
# ---------------------------------------------------------------------------


def _check_probs(p: jax.Array, name: str = "p_agent") -> jax.Array:
    p = jnp.asarray(p)
    if p.shape != (5,):
        raise ValueError(f"{name} must have shape (5,) [p_start, p_CC, p_CD, p_DC, p_DD], got {p.shape}")
    return p


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= float(gamma) < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")


def _q_values(p_agent: jax.Array, v_joint: jax.Array, gamma: float) -> jax.Array:
    """Q(state, b) of the opponent for the 5 MDP states, given the values of the 4 joint states.

    v_joint: (4,) value of *being in* joint state s' (reward of s' not included).
    Returns (5, 2).
    """
    q = p_agent  # (5,) P(agent plays C)
    pa = jnp.stack([q, 1.0 - q], axis=-1)  # (5, 2) over agent action a
    r2 = ipd.REWARD_2.reshape(2, 2)  # [a, b]
    v = v_joint.reshape(2, 2)  # [a, b]
    # Q(x, b) = sum_a P(a|x) [r2(a, b) + gamma v(a, b)]
    return jnp.einsum("xa,ab->xb", pa, r2 + gamma * v)


def _joint_values(p_agent: jax.Array, policy: jax.Array, gamma: float) -> jax.Array:
    """Opponent's value of *having arrived* in each joint state s (future rewards only), (4,)."""
    q = p_agent[1:]
    pa = jnp.stack([q, 1.0 - q], axis=-1)
    pb = policy[1:]
    P = (pa[:, :, None] * pb[:, None, :]).reshape(4, 4)
    # w(s) = sum_s' P[s, s'] (r(s') + gamma w(s'))  ->  (I - gamma P) w = P r
    return jnp.linalg.solve(jnp.eye(4) - gamma * P, P @ ipd.REWARD_2)


def _to_own_view(policy: jax.Array) -> jax.Array:
    """(5, 2) action probabilities in agent-first MDP states -> (5,) P(C) in the opponent's own view."""
    p_joint = policy[:, 0]
    own = jnp.zeros(5, policy.dtype).at[0].set(p_joint[0])
    # the opponent's own index of joint state s is SWAP[s]
    return own.at[1 + ipd.SWAP].set(p_joint[1:])


class BestResponse(NamedTuple):
    """An exact best response in the IPD.

    policy: (5,) the best responder's cooperation probabilities (its own view, 0 or 1).
    value_agent, value_response: the two players' exact discounted returns.
    iterations: policy-iteration steps taken.
    """

    policy: jax.Array
    value_agent: jax.Array
    value_response: jax.Array
    iterations: jax.Array


def ipd_best_response(p_agent: jax.Array, gamma: float = ipd.GAMMA, max_iterations: int = 64) -> BestResponse:
    """Exact best response to the memory-1 agent ``p_agent`` (5,) by policy iteration.

    The agent is player 1 and the best responder player 2 (the game is symmetric, so the
    same policy is the best response to the agent in either seat). Ties go to cooperation.
    """
    p_agent = _check_probs(p_agent)
    _check_gamma(gamma)
    if int(max_iterations) < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")

    def greedy(policy):
        w = _joint_values(p_agent, policy, gamma)
        Q = _q_values(p_agent, w, gamma)
        # keep the current action unless another is strictly better (guarantees termination)
        cur = jnp.argmax(policy, axis=-1)
        best = jnp.argmax(Q, axis=-1)
        q_cur = jnp.take_along_axis(Q, cur[:, None], axis=-1)[:, 0]
        q_best = jnp.max(Q, axis=-1)
        tol = 1e-9 * (1.0 + jnp.abs(q_best))
        act = jnp.where(q_best > q_cur + tol, best, cur)
        return jax.nn.one_hot(act, 2, dtype=p_agent.dtype)

    def cond(c):
        policy, prev, it = c
        return (it < max_iterations) & ((it == 0) | jnp.any(policy != prev))

    def body(c):
        policy, _, it = c
        return greedy(policy), policy, it + 1

    init = jnp.zeros((5, 2), p_agent.dtype).at[:, 0].set(1.0)  # start from always-cooperate
    policy, _, it = jax.lax.while_loop(cond, body, (init, init, jnp.asarray(0)))
    br = _to_own_view(policy)
    v1, v2 = ipd.exact_value(p_agent, br, gamma)
    return BestResponse(br, v1, v2, it)


def ipd_soft_best_response(p_agent: jax.Array, tau: float, gamma: float = ipd.GAMMA,
                           iterations: int = 400) -> jax.Array:
    """Entropy-regularised best response (5,) (own view) by soft value iteration.

    ``pi(b | x) ∝ exp(Q(x, b) / tau)``; differentiable in ``p_agent``; ``tau -> 0`` gives
    the exact best response. ``iterations`` unrolled steps (error ``<= gamma^iterations``).
    """
    p_agent = _check_probs(p_agent)
    _check_gamma(gamma)
    if isinstance(tau, (int, float)) and not tau > 0.0:
        raise ValueError(f"tau must be > 0, got {tau}")

    def body(w, _):
        Q = _q_values(p_agent, w, gamma)  # (5, 2)
        # value of arriving in joint state s = soft max over b of Q(1 + s, b)
        w_new = tau * jax.nn.logsumexp(Q[1:] / tau, axis=-1)
        return w_new, None

    w, _ = jax.lax.scan(body, jnp.zeros(4, p_agent.dtype), None, length=iterations)
    Q = _q_values(p_agent, w, gamma)
    policy = jax.nn.softmax(Q / tau, axis=-1)
    return _to_own_view(policy)


def ipd_exploitability(p_agent: jax.Array, gamma: float = ipd.GAMMA) -> dict[str, float]:
    """How much an agent loses against its exact best response.

    Returns per-step rewards (value * (1 - gamma)): ``agent_vs_br``, ``br_vs_agent``,
    ``mutual_cooperation`` (-1), and ``loss = mutual_cooperation - agent_vs_br``.
    """
    br = ipd_best_response(p_agent, gamma)
    scale = 1.0 - gamma
    a = float(br.value_agent) * scale
    return {
        "agent_vs_br": a,
        "br_vs_agent": float(br.value_response) * scale,
        "mutual_cooperation": float(ipd.REWARD_1[0]),
        "loss": float(ipd.REWARD_1[0]) - a,
        "br_policy": np.asarray(br.policy).round(3).tolist(),
    }


def exploitability_losses(p: np.ndarray, gamma: float = ipd.GAMMA) -> np.ndarray:
    """Per agent (rows of ``p``, (n, 5)): mutual cooperation (-1 per step) minus its per-step
    reward against its exact best response."""
    return np.array([ipd_exploitability(jnp.asarray(q), gamma)["loss"] for q in np.asarray(p)])


def deterministic_memory1_policies() -> jax.Array:
    """All 32 deterministic memory-1 policies, (32, 5) of 0/1 cooperation probabilities."""
    bits = (np.arange(32)[:, None] >> np.arange(5)[None, :]) & 1
    return jnp.asarray(bits, dtype=jnp.float32)


# ---------------------------------------------------------------------------
# Coin Game: agents as action distributions, and an MCTS best response (mctx)
# ---------------------------------------------------------------------------

#: An agent in the Coin Game: ``agent(agent_params, state) -> (4,)`` its action distribution
#: in ``state`` (it knows its own seat). The MCTS player plans against exactly this.
#: Agents are hashable functions (built by :func:`scripted_agent` / :func:`network_agent`,
#: which cache them) so that the search compiles once per agent *kind*, not per parameters.
AgentFn = Callable[[Any, Any], jax.Array]


def _coin():
    from lowrank_es.games import coin

    return coin


SCRIPTED_KINDS = ("cooperative", "selfish", "random", "right")


@functools.lru_cache(maxsize=None)
def scripted_agent(kind: str, seat: int, params=None) -> AgentFn:
    """Action distribution of :func:`lowrank_es.games.coin.scripted_action` as a function of the state.

    ``"cooperative"``: uniform over the moves that shorten the torus distance to the coin
    when it is its own colour, else uniform over the moves that do not land on the coin;
    ``"selfish"``: uniform over the moves towards the coin whatever its colour;
    ``"random"``: uniform; ``"right"``: always moves right (a fixed, coin-blind agent).
    The returned function ignores its ``agent_params`` argument.
    """
    coin = _coin()
    params = coin.Params() if params is None else params
    if kind not in SCRIPTED_KINDS:
        raise ValueError(f"kind must be one of {SCRIPTED_KINDS}, got {kind!r}")
    if seat not in (0, 1):
        raise ValueError(f"seat must be 0 or 1, got {seat}")
    g = params.grid_size

    def towards(me, to):
        d = (to - me) % g
        d = jnp.where(d > g // 2, d - g, d)
        good = jnp.array([d[1] > 0, d[1] < 0, d[0] > 0, d[0] < 0])
        good = jnp.where(jnp.any(good), good, jnp.ones(4, bool))
        return good / jnp.sum(good)

    def avoiding(me, avoid):
        dest = (me[None, :] + coin.MOVES) % g
        ok = ~jnp.all(dest == avoid[None, :], axis=-1)
        return ok / jnp.sum(ok)

    def probs(_, state):
        me = state.pos[seat]
        if kind == "random":
            return jnp.full((4,), 0.25)
        if kind == "right":
            return jnp.array([1.0, 0.0, 0.0, 0.0])
        if kind == "selfish":
            return towards(me, state.coin_pos)
        mine = state.coin_colour == seat
        return jnp.where(mine, towards(me, state.coin_pos), avoiding(me, state.coin_pos))

    return probs


@functools.lru_cache(maxsize=None)
def network_agent(apply_fn: Callable[[Any, jax.Array], jax.Array], seat: int, game_params=None) -> AgentFn:
    """An agent given by a network ``apply_fn(params, obs) -> (4,) logits`` of its own observation."""
    coin = _coin()
    game_params = coin.Params() if game_params is None else game_params
    if seat not in (0, 1):
        raise ValueError(f"seat must be 0 or 1, got {seat}")

    def probs(agent_params, state):
        return jax.nn.softmax(apply_fn(agent_params, coin.observe(state, game_params)[seat]))

    return probs


class MCTSResult(NamedTuple):
    """Per episode (n_episodes,): returns per step (undiscounted mean over the episode) of the
    agent and of the MCTS player, and the coins each picked up (own / other colour)."""

    agent_reward: jax.Array
    mcts_reward: jax.Array
    mcts_own: jax.Array
    mcts_other: jax.Array
    agent_own: jax.Array
    agent_other: jax.Array

    def summary(self) -> dict[str, float]:
        """Means over episodes; own-coin rates pool the pick-ups of all episodes."""
        def rate(own, other):
            tot = float(jnp.sum(own) + jnp.sum(other))
            return float(jnp.sum(own)) / tot if tot > 0 else float("nan")

        return {
            "agent_reward": float(jnp.mean(self.agent_reward)),
            "mcts_reward": float(jnp.mean(self.mcts_reward)),
            "mcts_own_coin_rate": rate(self.mcts_own, self.mcts_other),
            "agent_own_coin_rate": rate(self.agent_own, self.agent_other),
            "mcts_coins_per_episode": float(jnp.mean(self.mcts_own + self.mcts_other)),
        }


def _make_recurrent_fn(agent: AgentFn, mcts_seat: int, params, gamma: float, rollout_depth: int):
    """``(recurrent_fn, rollout_value)`` of the MCTS player's model: the true Coin Game with the
    agent's policy folded into the transition. ``recurrent_fn``'s ``params`` are the agent's."""
    import mctx

    coin = _coin()
    agent_seat = 1 - mcts_seat

    def joint(a_agent, b):
        return jnp.zeros(2, jnp.int32).at[agent_seat].set(a_agent).at[mcts_seat].set(b)

    def rollout_value(agent_params, key, state):
        """Discounted MCTS-player return of a rollout: agent plays its policy, MCTS player uniform."""
        def body(c, k):
            s, disc, ret, alive = c
            k1, k2, k3 = jax.random.split(k, 3)
            a = jax.random.categorical(k1, jnp.log(agent(agent_params, s) + 1e-20))
            b = jax.random.randint(k2, (), 0, coin.N_ACTIONS)
            _, s2, r, done, _ = coin.step(k3, s, joint(a, b), params)
            ret = ret + alive * disc * r[mcts_seat]
            return (s2, disc * gamma, ret, alive * (1.0 - done)), None

        alive0 = 1.0 - (state.t >= params.max_steps)
        (_, _, ret, _), _ = jax.lax.scan(body, (state, 1.0, 0.0, alive0), jax.random.split(key, rollout_depth))
        return ret

    def one(agent_params, key, b, state):
        k_env, k_a, k_v = jax.random.split(key, 3)
        probs = agent(agent_params, state)
        # expectation of the MCTS player's reward over the agent's action; the coin respawn
        # does not change the reward, so one environment key serves all four branches
        s_all, r_all, d_all = jax.vmap(lambda a: coin.step(k_env, state, joint(a, b), params)[1:4])(jnp.arange(4))
        exp_r = probs @ r_all[:, mcts_seat]
        a = jax.random.categorical(k_a, jnp.log(probs + 1e-20))
        s2 = jax.tree_util.tree_map(lambda x: x[a], s_all)
        alive = 1.0 - (state.t >= params.max_steps)
        value = rollout_value(agent_params, k_v, s2) if rollout_depth > 0 else jnp.float32(0.0)
        return (exp_r * alive, gamma * (1.0 - d_all[a]) * alive, jnp.zeros(coin.N_ACTIONS), value), s2

    def recurrent_fn(agent_params, rng_key, action, embedding):
        keys = jax.random.split(rng_key, action.shape[0])
        (r, disc, logits, v), emb = jax.vmap(one, in_axes=(None, 0, 0, 0))(agent_params, keys, action, embedding)
        return mctx.RecurrentFnOutput(reward=r, discount=disc, prior_logits=logits, value=v), emb

    return recurrent_fn, rollout_value


def _search(agent_params, key, states, recurrent_fn, rollout_value, num_simulations, rollout_depth, search):
    import mctx

    coin = _coin()
    k_root, k_search = jax.random.split(key)
    B = states.t.shape[0]
    if rollout_depth > 0:
        v = jax.vmap(rollout_value, in_axes=(None, 0, 0))(agent_params, jax.random.split(k_root, B), states)
    else:
        v = jnp.zeros(B)
    root = mctx.RootFnOutput(prior_logits=jnp.zeros((B, coin.N_ACTIONS)), value=v, embedding=states)
    if search == "gumbel":
        out = mctx.gumbel_muzero_policy(params=agent_params, rng_key=k_search, root=root, recurrent_fn=recurrent_fn,
                                        num_simulations=num_simulations, max_num_considered_actions=coin.N_ACTIONS)
    else:
        out = mctx.muzero_policy(params=agent_params, rng_key=k_search, root=root, recurrent_fn=recurrent_fn,
                                 num_simulations=num_simulations, temperature=0.0)
    return out.action


@functools.lru_cache(maxsize=64)
def _episode_runner(agent: AgentFn, n_episodes: int, num_simulations: int, rollout_depth: int, mcts_seat: int,
                    gamma: float, params, search: str):
    coin = _coin()
    agent_seat = 1 - mcts_seat
    recurrent_fn, rollout_value = _make_recurrent_fn(agent, mcts_seat, params, gamma, rollout_depth)

    def run(key, agent_params):
        k_reset, k_loop = jax.random.split(key)
        _, states = jax.vmap(lambda k: coin.reset(k, params))(jax.random.split(k_reset, n_episodes))

        def body(states, k):
            k_m, k_a, k_s = jax.random.split(k, 3)
            b = _search(agent_params, k_m, states, recurrent_fn, rollout_value, num_simulations, rollout_depth, search)
            probs = jax.vmap(agent, in_axes=(None, 0))(agent_params, states)
            a = jax.random.categorical(k_a, jnp.log(probs + 1e-20)).astype(jnp.int32)
            acts = jnp.zeros((n_episodes, 2), jnp.int32).at[:, agent_seat].set(a).at[:, mcts_seat].set(b)
            _, s2, r, _, info = jax.vmap(lambda kk, s, ac: coin.step(kk, s, ac, params))(
                jax.random.split(k_s, n_episodes), states, acts)
            return s2, (r, info["picked_own"], info["picked_other"])

        _, (r, own, other) = jax.lax.scan(body, states, jax.random.split(k_loop, params.max_steps))
        return MCTSResult(
            agent_reward=r[:, :, agent_seat].mean(0), mcts_reward=r[:, :, mcts_seat].mean(0),
            mcts_own=own[:, :, mcts_seat].sum(0), mcts_other=other[:, :, mcts_seat].sum(0),
            agent_own=own[:, :, agent_seat].sum(0), agent_other=other[:, :, agent_seat].sum(0))

    return jax.jit(run)


def _check_mcts_args(num_simulations, rollout_depth, mcts_seat, search="gumbel", n_episodes=1):
    if int(num_simulations) < 1:
        raise ValueError(f"num_simulations must be >= 1, got {num_simulations}")
    if int(rollout_depth) < 0:
        raise ValueError(f"rollout_depth must be >= 0, got {rollout_depth}")
    if int(n_episodes) < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if mcts_seat not in (0, 1):
        raise ValueError(f"mcts_seat must be 0 or 1, got {mcts_seat}")
    if search not in ("gumbel", "muzero"):
        raise ValueError(f"search must be 'gumbel' or 'muzero', got {search!r}")


def mcts_best_response_episode(key: jax.Array, agent: AgentFn, agent_params: Any = None, *, n_episodes: int = 8,
                               num_simulations: int = 32, rollout_depth: int = 4, mcts_seat: int = 1,
                               gamma: float = 0.96, params=None, search: str = "gumbel") -> MCTSResult:
    """Play ``n_episodes`` Coin Game episodes of the agent against an MCTS player that knows it.

    At every step the MCTS player runs ``mctx.gumbel_muzero_policy`` (``search="gumbel"``)
    or ``mctx.muzero_policy`` (``search="muzero"``, greedy in visit counts) with
    ``num_simulations`` simulations from the true current state and plays the selected
    action; the agent samples from ``agent(agent_params, state)``. Returns per-episode
    returns and pick-up counts (:class:`MCTSResult`).
    """
    coin = _coin()
    params = coin.Params() if params is None else params
    _check_mcts_args(num_simulations, rollout_depth, mcts_seat, search, n_episodes)
    run = _episode_runner(agent, int(n_episodes), int(num_simulations), int(rollout_depth), int(mcts_seat),
                          float(gamma), params, search)
    return run(key, agent_params)


def mcts_action(key: jax.Array, state, agent: AgentFn, agent_params: Any = None, *, num_simulations: int = 32,
                rollout_depth: int = 4, mcts_seat: int = 1, gamma: float = 0.96, params=None) -> jax.Array:
    """The MCTS player's action (int) in one state (gumbel MuZero search); for tests and inspection."""
    coin = _coin()
    params = coin.Params() if params is None else params
    _check_mcts_args(num_simulations, rollout_depth, mcts_seat)
    recurrent_fn, rollout_value = _make_recurrent_fn(agent, mcts_seat, params, gamma, int(rollout_depth))
    states = jax.tree_util.tree_map(lambda x: x[None], state)
    return _search(agent_params, key, states, recurrent_fn, rollout_value, int(num_simulations),
                   int(rollout_depth), "gumbel")[0]


def mcts_table(key: jax.Array, agents: dict[str, tuple[AgentFn, Any]], n_seeds: int = 3, **kwargs) -> dict[str, dict]:
    """MCTS best response against several agents, ``n_seeds`` evaluation seeds each.

    agents: {name: (agent_fn, agent_params)}; kwargs go to :func:`mcts_best_response_episode`.
    Returns {name: {"mean": summary dict averaged over seeds, "sd": across-seed std,
    "seeds": list of per-seed summaries}}.
    """
    if int(n_seeds) < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
    out = {}
    for idx, (name, (fn, params)) in enumerate(agents.items()):
        per = [mcts_best_response_episode(jax.random.fold_in(key, s), fn, params, **kwargs).summary()
               for s in range(int(n_seeds))]
        keys = per[0].keys()
        out[name] = {"mean": {k: float(np.mean([p[k] for p in per])) for k in keys},
                     "sd": {k: float(np.std([p[k] for p in per])) for k in keys}, "seeds": per}
    return out

"""LOQA — Learning with Opponent Q-learning Awareness (Aghajohari et al., arXiv:2405.01035).

The agent models the opponent as acting by a softmax over the opponent's Q-values,
``pi_hat2(b|s) = softmax_b(Q2(s, b) / tau)``. Because ``Q2`` depends on the agent's own
policy, the agent can differentiate the opponent's modelled policy through it, and adds the
term ``E[sum_t A1(s_t, b_t) grad_theta1 log pi_hat2(b_t|s_t)]`` to its own policy gradient.

Two forms live here:

* **Exact IPD** (memory-1 policies, logits ``theta`` in R^5, the conventions of
  :mod:`lowrank_es.shaping.exact`): closed-form Q-values of both players on the five-state
  chain (``start, CC, CD, DC, DD``), differentiated by autodiff through the linear solve.
  :func:`direction` has the learner interface ``direction(theta_me, theta_other, cfg)``. The
  paper's form differentiates only the *taken* action's Q (``taken_only=True``, the default);
  ``taken_only=False`` differentiates the whole softmax.
* **Sampled** (:func:`opponent_model_loss`, used by :mod:`lowrank_es.shaping.training`): the
  taken action's Q is the opponent's Monte Carlo return made differentiable in the agent's
  later actions with DiCE weights, the other actions' Q come from the opponent's critic.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lowrank_es.games import ipd
from lowrank_es.shaping import episodes, exact

# --------------------------------------------------------------------------------------
# Exact memory-1 IPD: closed-form values on the five-state chain
# --------------------------------------------------------------------------------------

#: Player 1's policy index for each of the five chain states (start, CC, CD, DC, DD).
IDX1 = jnp.array([0, 1, 2, 3, 4])
#: Player 2's own policy index in the same chain states (joint state seen swapped).
IDX2 = jnp.array([0, 1, 3, 2, 4])
#: Joint actions ab (0 CC, 1 CD, 2 DC, 3 DD): player 1's action a and player 2's action b.
A_OF = jnp.array([0, 0, 1, 1])
B_OF = jnp.array([0, 1, 0, 1])


class Tabular(NamedTuple):
    """Exact quantities of the memory-1 IPD for logits ``theta1, theta2`` (5,) each.

    States ``s`` are ``(start, CC, CD, DC, DD)`` in player 1's ordering; joint actions
    ``ab`` are ``(CC, CD, DC, DD)`` and lead to state ``1 + ab``.

    q1, q2: (5,) P(C) of each player in each state. J: (5, 4) joint-action probabilities.
    T: (5, 5) state transition matrix. D: (5,) discounted visitation ``sum_t gamma^t P(s_t=s)``
    from the start state. V1, V2: (5,) state values. Qab1, Qab2: (4,) joint-action values
    ``r(ab) + gamma V(1+ab)`` (the same in every state). A1, A2: (5, 4) joint advantages
    ``Q(ab) - V(s)``.
    """

    q1: jax.Array
    q2: jax.Array
    J: jax.Array
    T: jax.Array
    D: jax.Array
    V1: jax.Array
    V2: jax.Array
    Qab1: jax.Array
    Qab2: jax.Array
    A1: jax.Array
    A2: jax.Array


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= float(gamma) < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")


def _check_theta(theta: jax.Array, name: str) -> None:
    if jnp.shape(theta) != (5,):
        raise ValueError(f"{name} must have shape (5,) (logits of [p_start, p_CC, p_CD, p_DC, p_DD]), got {jnp.shape(theta)}")


def tabular(theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA) -> Tabular:
    """Closed-form values of the memory-1 IPD for logits ``theta1, theta2`` (5,)."""
    _check_theta(theta1, "theta1")
    _check_theta(theta2, "theta2")
    _check_gamma(gamma)
    q1 = jax.nn.sigmoid(theta1)[IDX1]
    q2 = jax.nn.sigmoid(theta2)[IDX2]
    J = ipd.joint_action_probs(q1, q2)  # (5, 4)
    T = jnp.concatenate([jnp.zeros((5, 1), J.dtype), J], axis=1)  # (5, 5): s -> 1 + ab
    I = jnp.eye(5, dtype=J.dtype)
    r1 = ipd.REWARD_1.astype(J.dtype)
    r2 = ipd.REWARD_2.astype(J.dtype)
    V1 = jnp.linalg.solve(I - gamma * T, J @ r1)
    V2 = jnp.linalg.solve(I - gamma * T, J @ r2)
    D = jnp.linalg.solve((I - gamma * T).T, I[0])
    Qab1 = r1 + gamma * V1[1:]
    Qab2 = r2 + gamma * V2[1:]
    A1 = Qab1[None, :] - V1[:, None]
    A2 = Qab2[None, :] - V2[:, None]
    return Tabular(q1, q2, J, T, D, V1, V2, Qab1, Qab2, A1, A2)


def opponent_q(theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Player 2's Q-values ``Q2(s, b)`` (5, 2), own action ``b`` in (C, D), averaged over
    player 1's action ``a ~ pi1(.|s)``: ``sum_a pi1(a|s) [r2(ab) + gamma V2(1+ab)]``."""
    tab = tabular(theta1, theta2, gamma)
    pa = jnp.stack([tab.q1, 1 - tab.q1], axis=-1)  # (5, 2) over a
    Qab = tab.Qab2.reshape(2, 2)  # [a, b]
    return pa @ Qab


def own_q(theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA) -> jax.Array:
    """Player 1's Q-values ``Q1(s, a)`` (5, 2), averaged over ``b ~ pi2(.|s)``."""
    tab = tabular(theta1, theta2, gamma)
    pb = jnp.stack([tab.q2, 1 - tab.q2], axis=-1)  # (5, 2) over b
    Qab = tab.Qab1.reshape(2, 2)  # [a, b]
    return pb @ Qab.T


def opponent_model(theta1: jax.Array, theta2: jax.Array, tau: float, gamma: float = ipd.GAMMA) -> jax.Array:
    """LOQA's model of the opponent: ``pi_hat2(b|s) = softmax_b(Q2(s, b) / tau)``, (5, 2)."""
    if not float(tau) > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    return jax.nn.softmax(opponent_q(theta1, theta2, gamma) / tau, axis=-1)


@dataclasses.dataclass(frozen=True)
class LOQAConfig:
    """Exact-IPD LOQA. tau: opponent-model temperature (> 0); gamma in [0, 1);
    shaping: weight of the opponent-model term (1 is LOQA, 0 the naive gradient);
    taken_only: the paper's form (only the taken action's Q differentiated, default) or
    the whole softmax (see :func:`loqa_term`); dice_discount, current_step: how the Q's
    gradient weighs the agent's moves (see :func:`opponent_q_jacobian`; the defaults 1 and
    ``True`` give the exact gradient, the official IPD code uses 0.9 and ``False``)."""

    tau: float = 1.0
    gamma: float = ipd.GAMMA
    shaping: float = 1.0
    taken_only: bool = True
    dice_discount: float = 1.0
    current_step: bool = True

    def __post_init__(self):
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        _check_gamma(self.gamma)
        _check_dice_discount(self.dice_discount)


def _check_dice_discount(d: float) -> None:
    if not 0.0 < float(d) <= 1.0:
        raise ValueError(f"dice_discount must be in (0, 1], got {d}")


def opponent_q_jacobian(theta1: jax.Array, theta2: jax.Array, gamma: float = ipd.GAMMA, dice_discount: float = 1.0,
                        current_step: bool = True) -> jax.Array:
    """``d Q2(s, b) / d theta1`` (5, 2, 5) as the sampled LOQA estimator weighs it, in closed form.

    The official IPD code makes the opponent's Q of the taken action differentiable with loaded
    DiCE: the agent's move ``j`` steps after ``t`` enters with weight
    ``gamma (gamma d)^(j - t - 1)`` (``d = dice_discount``), and its move at ``t`` itself not at all
    (``differentiable_current_reward: False``). In expectation that is::

        c0 grad sum_a pi1(a|s) Qab2(a, b) + gamma P1(s, b) (I - gamma d T)^-1 G

    with ``P1(s, b)`` the distribution of the next state after ``b`` in ``s``, ``T`` the state
    transition matrix and ``G = diag(sigma'(theta1) (Qa2(s, C) - Qa2(s, D)))`` the local policy
    gradient of the opponent's value (``Qa2(s, a) = sum_b pi2(b|s) Qab2(a, b)``); ``c0 = 1``
    with ``current_step``. ``d = 1`` with ``current_step`` is the exact gradient of
    :func:`opponent_q`."""
    _check_dice_discount(dice_discount)
    tab = tabular(theta1, theta2, gamma)
    Qab = tab.Qab2.reshape(2, 2)  # [a, b]
    dq1 = tab.q1 * (1 - tab.q1)  # d pi1(C|s) / d theta1[s] (player 1's parameter index is its state index)
    pb = jnp.stack([tab.q2, 1 - tab.q2], axis=-1)  # (5, 2) over b
    G = jnp.diag(dq1 * (pb @ (Qab[0] - Qab[1])))  # (5 states, 5 params)
    pa = jnp.stack([tab.q1, 1 - tab.q1], axis=-1)  # (5, 2) over a
    # P1[s, b, s']: after b in s the next state is 1 + 2a + b, with probability pi1(a|s)
    P1 = jnp.zeros((5, 2, 5), tab.J.dtype)
    for a in range(2):
        for b in range(2):
            P1 = P1.at[:, b, 1 + 2 * a + b].add(pa[:, a])
    I = jnp.eye(5, dtype=tab.J.dtype)
    future = jnp.linalg.solve((I - gamma * dice_discount * tab.T).T, P1.reshape(10, 5).T).T.reshape(5, 2, 5)
    jac = gamma * future @ G
    if current_step:
        jac = jac + (dq1[:, None] * (Qab[0] - Qab[1])[None, :])[:, :, None] * I[:, None, :]
    return jac


def loqa_term(
    theta1: jax.Array, theta2: jax.Array, tau: float = 1.0, gamma: float = ipd.GAMMA, taken_only: bool = True,
    dice_discount: float = 1.0, current_step: bool = True,
) -> jax.Array:
    """The exact LOQA opponent-shaping term (5,)::

        sum_s D(s) sum_b pi2(b|s) A1(s, b) grad_theta1 log pi_hat2(b|s)

    the expectation, under the real play, of the sampled LOQA term
    ``sum_t gamma^t A1(s_t, b_t) grad log pi_hat2(b_t|s_t)``. ``A1(s, b) = Q1(s, b) - V1(s)``
    is player 1's advantage of the opponent's action (``a`` averaged out); ``D``, ``pi2`` and
    ``A1`` are held fixed, only ``pi_hat2`` is differentiated (through ``Q2``'s dependence
    on ``theta1``).

    ``taken_only=True`` (default) is LOQA as in the paper and its code: only the *taken*
    action's ``Q2`` (a Monte Carlo return) carries a gradient, the other action's comes from
    the critic, so
    ``grad log pi_hat2(b|s) = (1 - pi_hat2(b|s)) grad Q2(s, b) / tau``. With
    ``taken_only=False`` the full softmax is differentiated; in expectation over ``b ~ pi2``
    the ``(1 - pi_hat2)`` factors then cancel (see ``theory/advantage_alignment.md``).

    ``dice_discount < 1`` or ``current_step=False`` weigh the taken action's ``grad Q2`` as the
    official estimator does (:func:`opponent_q_jacobian`; the paper form only).
    """
    estimator_weights = float(dice_discount) != 1.0 or not current_step
    if estimator_weights and not taken_only:
        raise ValueError("dice_discount < 1 or current_step=False weigh the paper form: they need taken_only=True")
    tab = tabular(theta1, theta2, gamma)
    pb = jnp.stack([tab.q2, 1 - tab.q2], axis=-1)
    Q1b = jnp.stack([tab.q1, 1 - tab.q1], axis=-1) @ tab.Qab1.reshape(2, 2)  # (5, 2) over b
    A1b = Q1b - tab.V1[:, None]
    w = jax.lax.stop_gradient(tab.D[:, None] * pb * A1b)

    if taken_only and estimator_weights:
        factor = jax.lax.stop_gradient(1.0 - opponent_model(theta1, theta2, tau, gamma)) / tau
        return jnp.einsum("sb,sbp->p", w * factor, opponent_q_jacobian(theta1, theta2, gamma, dice_discount, current_step))
    if taken_only:
        factor = jax.lax.stop_gradient(1.0 - opponent_model(theta1, theta2, tau, gamma)) / tau

        def f(t1):
            return jnp.sum(w * factor * opponent_q(t1, theta2, gamma))

    else:

        def f(t1):
            return jnp.sum(w * jnp.log(opponent_model(t1, theta2, tau, gamma)))

    return jax.grad(f)(theta1)


def taken_only_decomposition(theta1: jax.Array, theta2: jax.Array, tau: float = 1.0, gamma: float = ipd.GAMMA,
                             dice_discount: float = 1.0, current_step: bool = True) -> tuple[jax.Array, jax.Array]:
    """Split the paper-form term (``taken_only=True``) into ``(reciprocity, common)``, (5,) each,
    with ``loqa_term(taken_only=True) = reciprocity + common``:

    * ``reciprocity = loqa_term(taken_only=False) / 2 = sum_s k_s grad (Q2(s,C) - Q2(s,D)) / (2 tau)``:
      make the opponent's cooperation worth more to it than its defection;
    * ``common = sum_s k_s (pi_hat2(D|s) - 1/2) grad (Q2(s,C) + Q2(s,D)) / tau``: raise the opponent's
      values of *both* actions, in proportion to how much the model expects it to defect,

    where ``k_s = D(s) pi2(C|s) A1(s,C) = -D(s) pi2(D|s) A1(s,D)`` (the advantages average to 0
    under ``pi2``). The second part pulls towards unconditional cooperation wherever the opponent
    is modelled as more likely to defect; it is what keeps the paper form away from TFT in
    :mod:`lowrank_es.experiments.ipd_reciprocity`.

    With ``dice_discount < 1`` or ``current_step=False`` both parts use the official estimator's
    weighting of ``grad Q2`` (:func:`opponent_q_jacobian`) and add up to that paper-form term."""
    tab = tabular(theta1, theta2, gamma)
    pb = jnp.stack([tab.q2, 1 - tab.q2], axis=-1)
    A1b = jnp.stack([tab.q1, 1 - tab.q1], axis=-1) @ tab.Qab1.reshape(2, 2) - tab.V1[:, None]
    k = jax.lax.stop_gradient(tab.D * pb[:, 0] * A1b[:, 0])  # (5,)
    delta = jax.lax.stop_gradient(opponent_model(theta1, theta2, tau, gamma)[:, 1] - 0.5)
    if float(dice_discount) != 1.0 or not current_step:
        jac = opponent_q_jacobian(theta1, theta2, gamma, dice_discount, current_step)  # (5, 2, 5)
        return k @ (jac[:, 0] - jac[:, 1]) / (2 * tau), (k * delta) @ (jac[:, 0] + jac[:, 1]) / tau
    common = jax.grad(lambda t1: jnp.sum(k * delta * opponent_q(t1, theta2, gamma).sum(-1)))(theta1) / tau
    return loqa_term(theta1, theta2, tau, gamma, taken_only=False) / 2, common


def direction(theta_me: jax.Array, theta_other: jax.Array, cfg: LOQAConfig = LOQAConfig()) -> jax.Array:
    """LOQA ascent direction (5,): naive policy gradient plus ``shaping`` x :func:`loqa_term`."""
    return exact.naive_gradient(theta_me, theta_other, cfg.gamma) + cfg.shaping * loqa_term(
        theta_me, theta_other, cfg.tau, cfg.gamma, cfg.taken_only, cfg.dice_discount, cfg.current_step
    )


# --------------------------------------------------------------------------------------
# Sampled LOQA: the opponent-model term on a batch of episodes
# --------------------------------------------------------------------------------------


def differentiable_opponent_q(logp_me: jax.Array, adv_opp: jax.Array, returns_opp: jax.Array,
                              gamma: float, dice_discount: float = 1.0) -> jax.Array:
    """The opponent's Q of the action it took at each step, ``Q_t = r2_t + gamma R2_{t+1}``,
    as a value equal to its Monte Carlo return ``returns_opp`` whose gradient in the agent's
    policy is ``gamma sum_{j>t} (gamma d)^(j-t-1) adv_opp_j grad log pi1(a_j)`` (loaded DiCE
    with the baseline ``adv_opp = R2 - V2``, ``d = dice_discount``). Only the agent's actions
    *after* ``t`` enter: the opponent chose ``b_t`` without seeing ``a_t``, and the agent's
    own advantage at ``t`` (which weights this term) then shares no reward with it.

    All inputs (T, ...) time-major; returns (T, ...)."""
    dice = logp_me - jax.lax.stop_gradient(logp_me)  # value 0, gradient grad log pi1(a_j)
    z = episodes.discounted_cumsum(jax.lax.stop_gradient(adv_opp) * dice, gamma * dice_discount)
    z_next = jnp.concatenate([z[1:], jnp.zeros_like(z[:1])])
    return jax.lax.stop_gradient(returns_opp) + gamma * z_next


def opponent_model_loss(logp_me: jax.Array, adv_me: jax.Array, actions_opp: jax.Array, q_opp: jax.Array,
                        adv_opp: jax.Array, returns_opp: jax.Array, gamma: float, dice_discount: float = 1.0,
                        tau: float = 1.0) -> jax.Array:
    """LOQA's opponent term as a loss: ``-mean_t adv_me_t log pi_hat2(b_t | s_t)`` with
    ``pi_hat2 = softmax(Q / tau)``, the taken action's Q from
    :func:`differentiable_opponent_q` and the others from the opponent's critic ``q_opp``
    (T, B, A). ``adv_me`` (T, B) is the agent's own one-step advantage (held fixed)."""
    if not isinstance(tau, jax.core.Tracer) and not float(tau) > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    q_taken = differentiable_opponent_q(logp_me, adv_opp, returns_opp, gamma, dice_discount)
    onehot = jax.nn.one_hot(actions_opp, q_opp.shape[-1])
    q = jax.lax.stop_gradient(q_opp) * (1 - onehot) + q_taken[..., None] * onehot
    logpi_hat = jnp.sum(jax.nn.log_softmax(q / tau) * onehot, -1)
    return -jnp.mean(jax.lax.stop_gradient(adv_me) * logpi_hat)

"""Claims about the social dilemmas: naive learners defect, LOLA reciprocates, the sampled
IPD matches its closed form, naive Coin Game learners turn selfish, the Negotiation Game is
a dilemma. Each measure function runs its own small experiment with a fixed seed, or takes
the notebook's results."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.stats import fraction_se
from lowrank_es.games import ipd, negotiation
from lowrank_es.shaping import common, lola, naive

NOTEBOOK = "10_social_dilemmas"

#: Setup of the exact IPD experiments (LOLA paper: lr 1, look-ahead 1, gamma 0.96).
IPD_LR = 1.0
IPD_STEPS = 200
IPD_INIT_STD = 1.0

#: LOLA paper (AAMAS 2018 version, Table 1, 50 runs): LOLA-Ex agents play TFT in 81.0 % of
#: cases, with average reward per step -1.06 (std 0.19); NL-Ex -1.98.
LOLA_PAPER_TFT = 0.81


def random_inits(seed: int, n: int, std: float = IPD_INIT_STD) -> tuple[jax.Array, jax.Array]:
    """Independent N(0, std^2) logits for both players, (n, 5) each."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return std * jax.random.normal(k1, (n, 5)), std * jax.random.normal(k2, (n, 5))


def run_exact(learner: str, seed: int = 0, n: int = 50, lr: float = IPD_LR, steps: int = IPD_STEPS,
              lookahead: float = 1.0, gamma: float = ipd.GAMMA) -> tuple[jax.Array, jax.Array]:
    """Trajectories (n, steps+1, 5) of two identical exact learners ("naive" or "lola")
    from ``n`` random initialisations."""
    mods = {"naive": naive, "lola": lola}
    if learner not in mods:
        raise ValueError(f"learner must be one of {sorted(mods)}, got {learner!r}")
    d = functools.partial(mods[learner].direction, cfg=common.ExactConfig(gamma=gamma, lookahead=lookahead))
    t1, t2 = random_inits(seed, n)
    return common.simulate_exact(d, d, t1, t2, lr, steps)


def final_rewards(tr1, tr2, gamma=ipd.GAMMA):
    """Per-step rewards (n, 2) and final policies (n, 5) of both players of trajectories."""
    p1, p2 = common.policy(tr1[:, -1]), common.policy(tr2[:, -1])
    return np.asarray(jax.vmap(lambda a, b: common.reward_per_step(a, b, gamma))(p1, p2)), p1, p2


@register(
    "games.ipd.naive_defects",
    paper="LOLA",
    statement="Naive exact-gradient learners in the IPD end in mutual defection: reward per step near -2 in every seed.",
    target=Target(low=1.0, text="fraction of seeds with both players' reward/step <= -1.9 = 1"),
    quick=True,
    notebook=NOTEBOOK,
)
def naive_defects(trajectories=None) -> Measurement:
    tr1, tr2 = trajectories if trajectories is not None else run_exact("naive")
    r, _, _ = final_rewards(tr1, tr2)
    ok = np.all(r <= -1.9, axis=1)
    n = len(ok)
    frac = float(ok.mean())
    return Measurement(measured=frac, uncertainty=fraction_se(ok), seeds=n,
                       details={"reward_per_step_mean": float(r.mean()), "reward_per_step_std": float(r.std())})


@register(
    "games.ipd.lola_reciprocity",
    paper="LOLA",
    statement="Two exact LOLA learners in the IPD reach TFT-like reciprocity about as often as the LOLA paper "
    "reports (81 % TFT for LOLA-Ex).",
    target=Target(low=0.75, text=">= 0.75 of agents TFT-like (paper 0.81, minus one binomial s.e. at 50 runs)"),
    quick=True,
    notebook=NOTEBOOK,
)
def lola_reciprocity(trajectories=None) -> Measurement:
    """Fraction of agents (both players of 50 seeds) whose rounded policy after 200
    updates is TFT (C after CC and DC, D after CD and DD)."""
    tr1, tr2 = trajectories if trajectories is not None else run_exact("lola")
    r, p1, p2 = final_rewards(tr1, tr2)
    tft = np.concatenate([np.asarray(common.is_tft_like(p1)), np.asarray(common.is_tft_like(p2))])
    frac = float(tft.mean())
    n = int(tr1.shape[0])
    return Measurement(
        measured=frac,
        uncertainty=fraction_se(tft),
        seeds=n,
        details={
            "paper_tft_fraction": LOLA_PAPER_TFT,
            "both_tft_fraction": float(np.mean(tft[:n] & tft[n:])),
            "mutual_cooperation_fraction": float(np.mean(np.asarray(common.classify_outcome(p1, p2)) == 1)),
            "reward_per_step_mean": float(r.mean()),
            "reward_per_step_std": float(r.mean(axis=1).std()),
        },
    )


def sampled_vs_exact(seed: int = 0, n_pairs: int = 8, n_episodes: int = 4096) -> dict:
    """For ``n_pairs`` random memory-1 policy pairs: sampled mean 50-step discounted
    returns, their standard errors and the exact finite-horizon values, each (n_pairs, 2)."""
    key = jax.random.PRNGKey(seed)
    kp, ks = jax.random.split(key)
    pols = jax.random.uniform(kp, (n_pairs, 2, 5))
    est, se, exact = [], [], []
    for i, k in enumerate(jax.random.split(ks, n_pairs)):
        p1, p2 = pols[i, 0], pols[i, 1]
        G = ipd.discounted_returns(ipd.rollout(k, p1, p2, n_episodes)["rewards"])
        est.append(G.mean(0))
        se.append(G.std(0, ddof=1) / np.sqrt(n_episodes))
        exact.append(jnp.stack(ipd.exact_value_horizon(p1, p2)))
    return {"sampled": np.asarray(est), "se": np.asarray(se), "exact": np.asarray(exact)}


@register(
    "games.ipd.sampled_matches_exact",
    paper="LOLA",
    statement="Sampled 50-step discounted IPD returns agree with the closed-form value within Monte Carlo error.",
    target=Target(high=4.0, text="max |z| over 8 policy pairs x 2 players <= 4"),
    quick=True,
    notebook=NOTEBOOK,
)
def sampled_matches_exact(results=None) -> Measurement:
    res = results if results is not None else sampled_vs_exact()
    z = (res["sampled"] - res["exact"]) / res["se"]
    return Measurement(measured=float(np.abs(z).max()), uncertainty=None, seeds=int(z.shape[0]),
                       details={"mean_abs_z": float(np.abs(z).mean())})


COIN_CFG = naive.SampledConfig(n_envs=32, hidden=(16,), lr=0.02)
COIN_UPDATES = 150


def run_coin_naive(seed: int = 0, n_seeds: int = 5, n_updates: int = COIN_UPDATES,
                   cfg: naive.SampledConfig = COIN_CFG) -> dict:
    """History of naive actor-critic learners in the Coin Game, vmapped over seeds:
    ``own`` / ``other`` pick-ups per episode and ``reward`` per step, (n_seeds, U[, 2])."""
    spec = naive.game_spec("coin")
    keys = jax.random.split(jax.random.PRNGKey(seed), n_seeds)
    hist = jax.vmap(lambda k: naive.train_sampled(k, spec, cfg, n_updates)[1])(keys)
    return {k: np.asarray(v) for k, v in hist.items()}


@register(
    "games.coin.naive_selfish",
    paper="LOLA",
    statement="Naive learners in the Coin Game collapse to selfish play: they pick up more coins but only about "
    "half of them their own (own-coin rate near 0.5 or below).",
    target=Target(high=0.55, text="own-coin rate over the last 20 updates <= 0.55"),
    quick=False,
    notebook=NOTEBOOK,
)
def naive_selfish(history=None) -> Measurement:
    h = history if history is not None else run_coin_naive()
    own, other = h["own"][:, -20:].sum(axis=1), h["other"][:, -20:].sum(axis=1)
    rate = own / (own + other)
    n = len(rate)
    first = (h["own"][:, :10] + h["other"][:, :10]).mean()
    last = (h["own"][:, -20:] + h["other"][:, -20:]).mean()
    return Measurement(measured=float(rate.mean()), uncertainty=float(rate.std(ddof=1) / np.sqrt(n)), seeds=n,
                       details={"pickups_per_episode_start": float(first), "pickups_per_episode_end": float(last)})


NEGOTIATION_TARGETS = {"AC-AC": (0.50, 0.50), "AD-AD": (0.30, 0.30), "AC-AD": (0.25, 0.55)}


def negotiation_payoffs(seed: int = 0, n_seeds: int = 5, n_episodes: int = 512) -> dict:
    """Sampled mean reward per round of the reference pairs, (n_seeds, 2) each."""
    ac, ad = negotiation.always_cooperate, negotiation.always_defect
    pairs = {"AC-AC": (ac, ac), "AD-AD": (ad, ad), "AC-AD": (ac, ad)}
    out = {}
    keys = jax.random.split(jax.random.PRNGKey(seed), n_seeds)
    for name, (a, b) in pairs.items():
        out[name] = np.stack([np.asarray(negotiation.play(k, a, b, n_episodes)) for k in keys])
    return out


@register(
    "games.negotiation.dilemma",
    paper="AdvantageAlignment",
    statement="In the Negotiation Game always-cooperate vs always-defect forms a dilemma: AC-AC 0.50, "
    "AD-AD 0.30, AC vs AD 0.25 / 0.55 per round.",
    target=Target(high=0.01, text="max |sampled - stated| over the 6 payoffs <= 0.01"),
    quick=True,
    notebook=NOTEBOOK,
)
def negotiation_dilemma(payoffs=None) -> Measurement:
    pay = payoffs if payoffs is not None else negotiation_payoffs()
    devs, ses = [], []
    for name, target in NEGOTIATION_TARGETS.items():
        x = pay[name]
        devs.append(np.abs(x.mean(axis=0) - np.array(target)))
        ses.append(x.std(axis=0, ddof=1) / np.sqrt(len(x)))
    devs, ses = np.concatenate(devs), np.concatenate(ses)
    n = len(next(iter(pay.values())))
    return Measurement(measured=float(devs.max()), uncertainty=float(ses.max()), seeds=n,
                       details={k: v.mean(axis=0).round(4).tolist() for k, v in pay.items()})

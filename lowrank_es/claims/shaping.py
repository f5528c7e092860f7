"""Claims of LOQA (arXiv:2405.01035) and Advantage Alignment (arXiv:2406.14662) at small scale.

Each measure function takes the results a notebook already computed (keyword arguments) or,
without them, runs its default experiment.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.stats import fraction_se


def reciprocity_per_seed(p1: np.ndarray, p2: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per seed: both players have P(C|CC) > 0.9, P(C|CD) <= 0.2, P(C|DD) <= 0.2 and reward
    per step > -1.5. p1, p2: (n, 5) probabilities; r: (n, 2) reward per step. -> (n,) bool."""
    p1, p2, r = np.asarray(p1), np.asarray(p2), np.asarray(r)
    ok = lambda p: (p[:, 1] > 0.9) & (p[:, 2] <= 0.2) & (p[:, 4] <= 0.2)
    return ok(p1) & ok(p2) & np.all(r > -1.5, axis=1)


def ipd_selfplay(direction, n_seeds: int = 5, steps: int = 300, lr: float = 0.1, seed: int = 0):
    """Exact self-play of a bound direction from ``n_seeds`` random N(0, 1) logit pairs.
    Returns final probabilities p1, p2 (n, 5), reward per step (n, 2) and the logit
    histories (n, steps + 1, 5) x 2."""
    from lowrank_es.shaping import common

    init = jax.random.normal(jax.random.PRNGKey(seed), (2, int(n_seeds), 5))
    h1, h2 = common.simulate_exact(direction, direction, init[0], init[1], lr, steps)
    p1, p2 = jax.nn.sigmoid(h1[:, -1]), jax.nn.sigmoid(h2[:, -1])
    r = jax.vmap(common.reward_per_step)(p1, p2)
    return {"p1": np.asarray(p1), "p2": np.asarray(p2), "r": np.asarray(r), "h1": np.asarray(h1), "h2": np.asarray(h2)}


def _frac(ok: np.ndarray, details: dict) -> Measurement:
    n = len(ok)
    f = float(np.mean(ok))
    return Measurement(measured=f, uncertainty=fraction_se(ok), seeds=n, details=details)


_RECIP = ("Exact-gradient self-play in the memory-1 IPD (gamma 0.96) reaches reciprocity in every seed: "
          "P(C|CC) > 0.9, P(C|CD) and P(C|DD) <= 0.2, reward per step > -1.5 (naive learners get about -2).")


@register("loqa.ipd.reciprocity", paper="LOQA", statement="LOQA: " + _RECIP,
          target=Target(low=1.0, text="fraction of seeds reciprocal = 1 (every seed)"), notebook="11_loqa")
def _loqa_ipd(p1=None, p2=None, r=None) -> Measurement:
    if p1 is None:
        from lowrank_es.shaping import loqa

        res = ipd_selfplay(partial(loqa.direction, cfg=loqa.LOQAConfig()))
        p1, p2, r = res["p1"], res["p2"], res["r"]
    ok = reciprocity_per_seed(p1, p2, r)
    return _frac(ok, {"p1": np.round(p1, 3), "reward_per_step": np.round(r, 3)})


@register("aa.ipd.reciprocity", paper="AdvantageAlignment", statement="AdAlign: " + _RECIP,
          target=Target(low=1.0, text="fraction of seeds reciprocal = 1 (every seed)"), notebook="12_advantage_alignment")
def _aa_ipd(p1=None, p2=None, r=None) -> Measurement:
    if p1 is None:
        from lowrank_es.shaping import advantage_alignment as aa

        res = ipd_selfplay(partial(aa.direction, cfg=aa.AAConfig()))
        p1, p2, r = res["p1"], res["p2"], res["r"]
    ok = reciprocity_per_seed(p1, p2, r)
    return _frac(ok, {"p1": np.round(p1, 3), "reward_per_step": np.round(r, 3)})


def _median_ci(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x)
    med = float(np.median(x))
    # standard error of the median (normal approximation), from the sample spread
    se = float(1.2533 * np.std(x) / np.sqrt(len(x)))
    return med, se


@register("aa.unification.lola", paper="AdvantageAlignment",
          statement=("On random tabular (sigmoid-logit) memory-1 IPD policy pairs, the exact first-order LOLA "
                     "shaping term points the same way as the exact AA term (median cosine similarity >= 0.9)."),
          target=Target(low=0.9, text="median cosine(LOLA term, AA term) >= 0.9"), notebook="12_advantage_alignment")
def _unif_lola(cos=None, n: int = 100) -> Measurement:
    if cos is None:
        from lowrank_es.shaping import advantage_alignment as aa

        with jax.enable_x64(True):
            cos = np.asarray(aa.unification_sweep(jax.random.PRNGKey(0), n)["cos_lola_aa"])
    med, se = _median_ci(cos)
    return Measurement(measured=med, uncertainty=se, seeds=len(cos),
                       details={"p10": float(np.percentile(cos, 10)), "p90": float(np.percentile(cos, 90))})


@register("aa.unification.loqa", paper="AdvantageAlignment",
          statement=("On random memory-1 IPD policy pairs, LOQA's term (taken-action Q differentiated) equals the AA "
                     "term with each past advantage weighted by (1 - pi_hat2(b|s)) / tau, up to the discounting "
                     "inside the sum: median cosine similarity >= 0.9."),
          target=Target(low=0.9, text="median cosine(LOQA term, factor-weighted AA term) >= 0.9"),
          notebook="12_advantage_alignment")
def _unif_loqa(cos=None, n: int = 100) -> Measurement:
    if cos is None:
        from lowrank_es.shaping import advantage_alignment as aa

        with jax.enable_x64(True):
            cos = np.asarray(aa.unification_sweep(jax.random.PRNGKey(0), n)["cos_loqa_aa_factor"])
    med, se = _median_ci(cos)
    return Measurement(measured=med, uncertainty=se, seeds=len(cos),
                       details={"p10": float(np.percentile(cos, 10)), "p90": float(np.percentile(cos, 90))})


def _mean_se(x) -> tuple[float, float]:
    x = np.asarray(x, float)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _selfplay_gap(method: str, reward, naive_reward) -> Measurement:
    """Mean over seeds of ``method``'s self-play reward per step minus naive self-play's."""
    if reward is None or naive_reward is None:
        raise ValueError(f"{method}_reward and naive_reward (per-seed self-play reward per step) are required")
    d = np.asarray(reward, float) - np.asarray(naive_reward, float)
    m, se = _mean_se(d)
    return Measurement(measured=m, uncertainty=se, seeds=len(d),
                       details={method: np.round(reward, 4), "naive": np.round(naive_reward, 4)})


def _per_seed_mean(name: str, values, what: str) -> Measurement:
    """Mean and standard error over seeds of a per-seed measurement ``values`` (argument ``name``)."""
    if values is None:
        raise ValueError(f"{name} ({what}) is required")
    m, se = _mean_se(values)
    return Measurement(measured=m, uncertainty=se, seeds=len(values), details={"per_seed": np.round(values, 4)})


@register("aa.coin.vs_naive", paper="AdvantageAlignment",
          statement="Coin Game (3x3, 50 steps): AdAlign self-play reward per step exceeds naive (beta = 0) self-play's.",
          target=Target(low=0.0, text="AA minus naive self-play reward per step > 0 (mean over seeds)"),
          notebook="12_advantage_alignment")
def _aa_coin_vs_naive(aa_reward=None, naive_reward=None) -> Measurement:
    return _selfplay_gap("aa", aa_reward, naive_reward)


@register("aa.coin.unexploited", paper="AdvantageAlignment",
          statement="Coin Game: an AdAlign agent is not exploited by an always-defect (selfish) agent: reward per step >= -0.1.",
          target=Target(low=-0.1, text="reward per step vs selfish agent >= -0.1 (mean over seeds)"),
          notebook="12_advantage_alignment")
def _aa_coin_unexploited(vs_ad=None) -> Measurement:
    return _per_seed_mean("vs_ad", vs_ad, "per-seed reward per step against the selfish agent")


@register("aa.negotiation.above_defect", paper="AdvantageAlignment",
          statement="Negotiation Game (discrete proposals): AdAlign self-play reward per step is well above AD-AD (0.30).",
          target=Target(low=0.35, text="AA self-play reward per step >= 0.35 (AD-AD 0.30, AC-AC 0.50)"),
          notebook="12_advantage_alignment")
def _aa_negotiation(reward=None) -> Measurement:
    return _per_seed_mean("reward", reward, "per-seed AA self-play reward per step")


@register("loqa.coin.vs_naive", paper="LOQA",
          statement="Coin Game (3x3, 50 steps): LOQA self-play reward per step exceeds naive actor-critic self-play's.",
          target=Target(low=0.0, text="LOQA minus naive self-play reward per step > 0 (mean over seeds)"),
          notebook="11_loqa")
def _loqa_coin_vs_naive(loqa_reward=None, naive_reward=None) -> Measurement:
    return _selfplay_gap("loqa", loqa_reward, naive_reward)


@register("loqa.coin.unexploited", paper="LOQA",
          statement="Coin Game: a LOQA agent is not exploited by an always-defect (selfish) agent: reward per step >= -0.1.",
          target=Target(low=-0.1, text="reward per step vs selfish agent >= -0.1 (mean over seeds)"),
          notebook="11_loqa")
def _loqa_coin_unexploited(vs_ad=None) -> Measurement:
    return _per_seed_mean("vs_ad", vs_ad, "per-seed reward per step against the selfish agent")

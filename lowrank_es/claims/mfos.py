"""Claims of the ES-trained meta-shaper (M-FOS, arXiv:2205.01447) in the IPD, measured from the
``es_shaper`` results (default: the committed reference). Values are rewards per step
(normalised discounted, -1 mutual cooperation, -2 mutual defection) of the final mean
meta-policy over a meta-episode against each seed's evaluation learners."""

from __future__ import annotations

import numpy as np

from lowrank_es import experiments, stats
from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.experiments import es_shaper

NOTEBOOK = "14_es_shaper"
#: Non-inferiority margin: this fraction of the range from the naive-learner outcome to the best.
MARGIN_FRACTION = 0.1
ALPHA = 0.05


def _record(record: dict | None) -> dict:
    return record if record is not None else experiments.load("es_shaper", "reference")


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x)))


def _measurement(record: dict, measured: float, uncertainty: float | None, seeds: int, details: dict) -> Measurement:
    return Measurement(measured=float(measured), uncertainty=uncertainty, seeds=seeds, details=details,
                       scale=record["scale"], device=record.get("device"))


@register(
    "mfos.ipd.exploits_naive", paper="MFOS",
    statement=("A meta-shaper trained by rank-1 EGGROLL gets more than mutual cooperation (-1 per step) against "
               "naive learners over the meta-episode, i.e. it extorts them, and more than LOLA gets against the same "
               "learners. Measured: the smaller slack, min(shaper + 1, shaper - LOLA), of the seed-mean rewards "
               "per step."),
    target=Target(low=0.0, text="slack >= 0 (shaper > -1 and shaper > LOLA vs the same naive learners)"),
    notebook=NOTEBOOK)
def exploits_naive(record: dict | None = None) -> Measurement:
    rec = _record(record)
    shaper = es_shaper.final_eval(rec, "eggroll_naive")[:, 0]
    lola = np.asarray(rec["data"]["baselines"]["per_seed"]["lola vs naive"])[:, 0]
    slack = min(shaper.mean() + 1.0, shaper.mean() - lola.mean())
    return _measurement(rec, slack, _se(shaper), len(shaper), {
        "shaper_reward_per_step": np.round(shaper, 4).tolist(), "lola_reward_per_step": np.round(lola, 4).tolist(),
        "learner_reward_per_step": np.round(es_shaper.final_eval(rec, "eggroll_naive")[:, 1], 4).tolist()})


@register(
    "mfos.ipd.meta_self_play", paper="MFOS",
    statement=("Two meta-shapers trained against each other by rank-1 EGGROLL (after M-FOS's curriculum against "
               "naive learners) average at least -1.2 per step against each other, close to mutual cooperation (-1)."),
    target=Target(low=-1.2, text="mean of both shapers' reward per step >= -1.2 (mean over seeds)"),
    notebook=NOTEBOOK)
def meta_self_play(record: dict | None = None) -> Measurement:
    rec = _record(record)
    ev = np.asarray(rec["data"]["selfplay"]["eval"])[:, -1]  # (S, 2)
    both = ev.mean(axis=1)
    return _measurement(rec, both.mean(), _se(both), len(both), {
        "reward_per_step_A": np.round(ev[:, 0], 4).tolist(), "reward_per_step_B": np.round(ev[:, 1], 4).tolist()})


@register(
    "mfos.eggroll_vs_openes", paper="MFOS",
    statement=("At the same population, sigma, Adam step and generations, the rank-1 EGGROLL meta-shaper's final "
               "meta-return against naive learners is non-inferior to OpenES's (one-sided Welch test, alpha 0.05, "
               f"margin {MARGIN_FRACTION:g} of the range from the naive-learner outcome to the better method), at a "
               "lower wall-clock per generation (measured side by side). Measured: min((lower bound of EGGROLL - "
               "OpenES + margin) / margin, 1 - EGGROLL time / OpenES time)."),
    target=Target(low=0.0, text="slack >= 0 (non-inferior and faster per generation)"),
    notebook=NOTEBOOK)
def eggroll_vs_openes(record: dict | None = None) -> Measurement:
    rec = _record(record)
    egg = es_shaper.final_eval(rec, "eggroll_naive")[:, 0]
    ope = es_shaper.final_eval(rec, "openes_naive")[:, 0]
    naive_outcome = float(np.asarray(rec["data"]["baselines"]["per_seed"]["naive vs naive"])[:, 0].mean())
    margin = MARGIN_FRACTION * abs(max(egg.mean(), ope.mean()) - naive_outcome)
    ni = stats.non_inferiority(egg, ope, margin, ALPHA)
    t = rec["data"]["timing"]
    t_egg, t_ope = t["EGGROLL r=1"]["median_s"], t["OpenES (full rank)"]["median_s"]
    slack = min((ni["lower"] + margin) / margin, 1.0 - t_egg / t_ope)
    return _measurement(rec, slack, None, len(egg), {
        "eggroll": np.round(egg, 4).tolist(), "openes": np.round(ope, 4).tolist(), "margin": round(margin, 4),
        "alpha": ALPHA,
        "naive_outcome": round(naive_outcome, 4), "non_inferiority": {k: (round(v, 4) if isinstance(v, float) else v)
                                                                      for k, v in ni.items()},
        "s_per_generation": {"EGGROLL r=1": t_egg, "OpenES": t_ope}, "speedup": round(t_ope / t_egg, 3)})

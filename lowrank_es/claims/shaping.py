"""Claims of LOQA (arXiv:2405.01035) and Advantage Alignment (arXiv:2406.14662).

Each measure reads a results record (default: the committed reference of the ``loqa`` or
``advantage_alignment`` experiment) and never trains anything itself. IPD reciprocity is read
as the papers show it (:func:`lowrank_es.shaping.exact.tft_profile`, on the ``ipd_reciprocity``
experiment: the official LOQA IPD setting); the strict per-run test is in the details.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as st

from lowrank_es import experiments
from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.experiments import sampled_shaping as ss
from lowrank_es.shaping import exact

LOQA, AA = "loqa", "advantage_alignment"
NB = {LOQA: "11_loqa", AA: "12_advantage_alignment"}


def _record(record: dict | None, name: str) -> dict:
    return record if record is not None else experiments.load(name, "reference")


def _m(record: dict, **kw) -> Measurement:
    return Measurement(scale=record["scale"], device=record["device"], **kw)


def _mean_se(x) -> tuple[float, float | None]:
    x = np.asarray(x, float)
    return float(x.mean()), (float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else None)


def welch_interval(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """Difference of means ``mean(a) - mean(b)`` and its Welch t interval at ``level``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a and b need at least two seeds each for an interval")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    d, se = a.mean() - b.mean(), np.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
    h = st.t.ppf(0.5 + level / 2, dof) * se
    return float(d), float(d - h), float(d + h)


IPD = "ipd_reciprocity"


def _profile_measurement(record: dict, method: str, others: dict[str, np.ndarray]) -> Measurement:
    """Reciprocity as the papers show it (:func:`exact.tft_profile` of the runs' final
    policies), with the strict per-run fraction and ``others`` (label -> (runs, 5) policies of
    other learners or settings, reported by their margin and strict fraction) in the details."""
    d = record["data"][method]
    p = np.asarray(d["p"])
    prof, rec = exact.tft_profile(p), exact.reciprocity(p)
    details = {"mean_p_start_cc_cd_dc_dd": np.round(prof["mean"], 3).tolist(), "half_width": np.round(prof["half"], 3).tolist(),
               "strict_fraction": float(rec["strict"].mean()), "generous_fraction": float(rec["generous"].mean()),
               "zero_start_p": np.round(np.asarray(d["p_zero"]), 3).tolist(), "reward_per_step_mean": float(np.mean(d["r"]))}
    for label, q in others.items():
        q = np.asarray(q)
        details[f"{label}: margin"] = round(exact.tft_profile(q)["margin"], 3)
        details[f"{label}: strict_fraction"] = float(exact.reciprocity(q)["strict"].mean())
    return _m(record, measured=prof["margin"], uncertainty=None, seeds=len(p), details=details)


_RECIP = ("exact self-play in the memory-1 IPD (gamma 0.96) in the official LOQA IPD setting (one shared "
          "policy, actions replaced by uniform ones with probability 0.2, Adam 1e-3 for 7,000 updates, 20 runs from "
          "N(0, 1) logits) reaches tit-for-tat as the papers show it: the 95% interval of the run-mean P(C | state) "
          "is above 1/2 after CC and DC and below it after CD and DD (exact.tft_profile; the strict per-run fraction "
          "is in the details).")
_PROFILE = Target(low=0.0, text="TFT margin of the run-mean P(C | state), 95% interval, >= 0 in all four memory states")


@register("loqa.ipd.reciprocity", paper="LOQA", statement="LOQA as the official code computes it (only the taken "
          "action's Q differentiated, through the agent's later moves with the loaded-DiCE discount 0.9 of its IPD "
          "config, its current move left out): " + _RECIP, target=_PROFILE, quick=True, notebook=NB[LOQA])
def _loqa_ipd(record: dict | None = None) -> Measurement:
    record = record if record is not None else experiments.load(IPD, "reference")
    previous = experiments.load(LOQA, "reference")["data"]["ipd"]
    m = _profile_measurement(record, "LOQA (DiCE 0.9)", {
        "LOQA, exact gradient of the taken Q (d = 1, current move in), same setting": record["data"]["LOQA"]["p"],
        "LOQA (all actions), same setting": record["data"]["LOQA (all actions)"]["p"],
        "LOQA, independent N(0,1) starts, SGD 0.1, no exploration": exact.final_policies(previous["LOQA"]),
        "LOQA (all actions), independent starts, SGD 0.1, no exploration": exact.final_policies(previous["LOQA (all actions)"])})
    if "dice_sweep" in record["data"]:
        sw = record["data"]["dice_sweep"]
        m.details["dice_sweep_margin"] = {str(d): round(float(v), 3) for d, v in zip(sw["dice_discount"], sw["margin"])}
    return m


@register("aa.ipd.reciprocity", paper="AdvantageAlignment", statement="AdAlign (beta 1): " + _RECIP + " The "
          "paper's own IPD code is not published; this is its authors' LOQA setting.", target=_PROFILE, quick=True,
          notebook=NB[AA])
def _aa_ipd(record: dict | None = None) -> Measurement:
    record = record if record is not None else experiments.load(IPD, "reference")
    previous = experiments.load(AA, "reference")["data"]["ipd"]
    return _profile_measurement(record, "AdAlign", {
        "AdAlign, independent N(0,1) starts, SGD 0.1, no exploration": exact.final_policies(previous["AdAlign"])})


def _median_se(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x)
    return float(np.median(x)), float(1.2533 * np.std(x) / np.sqrt(len(x)))


def _cosine_claim(record: dict | None, key: str) -> Measurement:
    record = _record(record, AA)
    cos = np.asarray(record["data"]["unification"][key])
    med, se = _median_se(cos)
    return _m(record, measured=med, uncertainty=se, seeds=len(cos),
              details={"p10": float(np.percentile(cos, 10)), "p90": float(np.percentile(cos, 90))})


@register("aa.unification.lola", paper="AdvantageAlignment",
          statement=("On random tabular (sigmoid-logit) memory-1 IPD policy pairs, the exact first-order LOLA "
                     "shaping term points the same way as the exact AA term (median cosine similarity >= 0.9)."),
          target=Target(low=0.9, text="median cosine(LOLA term, AA term) >= 0.9"), quick=True, notebook=NB[AA])
def _unif_lola(record: dict | None = None) -> Measurement:
    return _cosine_claim(record, "cos_lola_aa")


@register("aa.unification.loqa", paper="AdvantageAlignment",
          statement=("On random memory-1 IPD policy pairs, LOQA's term (taken-action Q differentiated) equals the AA "
                     "term with each past advantage weighted by (1 - pi_hat2(b|s)) / tau, up to the discounting "
                     "inside the sum: median cosine similarity >= 0.9."),
          target=Target(low=0.9, text="median cosine(LOQA term, factor-weighted AA term) >= 0.9"), quick=True,
          notebook=NB[AA])
def _unif_loqa(record: dict | None = None) -> Measurement:
    return _cosine_claim(record, "cos_loqa_aa_factor")


def _self_play(record: dict, part: str) -> Measurement:
    x = ss.per_seed(record["data"][part], "self_play")
    m, se = _mean_se(x)
    return _m(record, measured=m, uncertainty=se, seeds=len(x),
              details={"per_seed": np.round(x, 4).tolist(),
                       "own_coin_rate": np.round(ss.per_seed(record["data"][part], "own_rate"), 3).tolist(),
                       "vs_always_cooperate": np.round(ss.per_seed(record["data"][part], "vs_always-cooperate"), 4).tolist()})


def _vs_naive(record: dict, part: str, naive: str) -> Measurement:
    a, b = ss.per_seed(record["data"][part], "self_play"), ss.per_seed(record["data"][naive], "self_play")
    d, lo, hi = welch_interval(a, b)
    return _m(record, measured=lo, uncertainty=None, seeds=len(a),
              details={"difference": round(d, 4), "interval_95": [round(lo, 4), round(hi, 4)],
                       "method": np.round(a, 4).tolist(), "naive": np.round(b, 4).tolist()})


def _vs(record: dict, part: str, opponent: str) -> Measurement:
    x = ss.per_seed(record["data"][part], f"vs_{opponent}")
    m, se = _mean_se(x)
    return _m(record, measured=m, uncertainty=se, seeds=len(x), details={"per_seed": np.round(x, 4).tolist()})


_COIN = "Coin Game (3x3, 50 steps, gamma 0.96, recurrent agents): "
_ANCH = "official league: 0.28; always-cooperate pair 0.347"


@register("loqa.coin.self_play", paper="LOQA", statement=_COIN + f"LOQA self-play earns at least 0.2 per step ({_ANCH}).",
          target=Target(low=0.2, text="LOQA self-play reward per step >= 0.2 (mean over seeds)"), notebook=NB[LOQA])
def _loqa_self(record: dict | None = None) -> Measurement:
    return _self_play(_record(record, LOQA), "coin_loqa")


@register("loqa.coin.vs_naive", paper="LOQA",
          statement=_COIN + "LOQA self-play earns more per step than the same learner without its shaping term.",
          target=Target(low=0.0, text="lower end of the 95% Welch interval of LOQA minus naive self-play reward > 0"),
          notebook=NB[LOQA])
def _loqa_vs_naive(record: dict | None = None) -> Measurement:
    return _vs_naive(_record(record, LOQA), "coin_loqa", "coin_naive")


@register("loqa.coin.unexploited", paper="LOQA",
          statement=_COIN + "a LOQA agent is not exploited by the selfish agent (always-defect): reward per step >= -0.2 "
          "(official league -0.11; a uniformly random agent gets -0.535).",
          target=Target(low=-0.2, text="reward per step vs selfish agent >= -0.2 (mean over seeds)"), notebook=NB[LOQA])
def _loqa_unexploited(record: dict | None = None) -> Measurement:
    return _vs(_record(record, LOQA), "coin_loqa", "selfish")


@register("aa.coin.self_play", paper="AdvantageAlignment",
          statement=_COIN + f"AdAlign self-play earns at least 0.2 per step ({_ANCH}).",
          target=Target(low=0.2, text="AdAlign self-play reward per step >= 0.2 (mean over seeds)"), notebook=NB[AA])
def _aa_self(record: dict | None = None) -> Measurement:
    return _self_play(_record(record, AA), "coin_adalign")


@register("aa.coin.vs_naive", paper="AdvantageAlignment",
          statement=_COIN + "AdAlign self-play earns more per step than the same learner with beta = 0.",
          target=Target(low=0.0, text="lower end of the 95% Welch interval of AdAlign minus naive self-play reward > 0"),
          notebook=NB[AA])
def _aa_vs_naive(record: dict | None = None) -> Measurement:
    return _vs_naive(_record(record, AA), "coin_adalign", "coin_naive")


@register("aa.coin.unexploited", paper="AdvantageAlignment",
          statement=_COIN + "an AdAlign agent is not exploited by the selfish agent: reward per step >= -0.2 "
          "(official league -0.08; a uniformly random agent gets -0.535).",
          target=Target(low=-0.2, text="reward per step vs selfish agent >= -0.2 (mean over seeds)"), notebook=NB[AA])
def _aa_unexploited(record: dict | None = None) -> Measurement:
    return _vs(_record(record, AA), "coin_adalign", "selfish")


_NEG = "Negotiation Game (discrete proposals, 50 rounds, recurrent agents): "


@register("aa.negotiation.above_defect", paper="AdvantageAlignment",
          statement=_NEG + "AdAlign self-play earns well above mutual defection (AD-AD 0.30, AC-AC 0.50; paper about 0.44).",
          target=Target(low=0.35, text="AdAlign self-play reward per round >= 0.35 (mean over seeds)"), notebook=NB[AA])
def _aa_negotiation(record: dict | None = None) -> Measurement:
    record = _record(record, AA)
    x = ss.per_seed(record["data"]["negotiation_adalign"], "self_play")
    m, se = _mean_se(x)
    naive = ss.per_seed(record["data"]["negotiation_naive"], "self_play")
    details = {"per_seed": np.round(x, 4).tolist(), "naive_per_seed": np.round(naive, 4).tolist()}
    for scale in ("large_batch", "gpu"):  # the batch-size checks, where they have been run
        try:
            big = experiments.load(AA, scale)
        except FileNotFoundError:
            continue
        details[f"{scale}: episodes per update"] = big["config"]["negotiation"]["n_envs"]
        details[f"{scale}: per_seed"] = np.round(ss.per_seed(big["data"]["negotiation_adalign"], "self_play"), 4).tolist()
        details[f"{scale}: naive_per_seed"] = np.round(ss.per_seed(big["data"]["negotiation_naive"], "self_play"), 4).tolist()
    return _m(record, measured=m, uncertainty=se, seeds=len(x), details=details)


@register("aa.negotiation.unexploited", paper="AdvantageAlignment",
          statement=_NEG + "AdAlign is not exploited by always-defect: at least 0.28 per round against it "
          "(always-cooperate gets 0.25 there, always-defect itself 0.30).",
          target=Target(low=0.28, text="AdAlign reward per round vs always-defect >= 0.28 (mean over seeds)"),
          notebook=NB[AA])
def _aa_negotiation_unexploited(record: dict | None = None) -> Measurement:
    return _vs(_record(record, AA), "negotiation_adalign", "always-defect")

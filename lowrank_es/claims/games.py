"""Claims about the social dilemmas: naive learners defect, LOLA reciprocates, the sampled
IPD matches its closed form, naive Coin Game learners turn selfish, the Negotiation Game is
a dilemma. Each measure reads a results record of the ``social_dilemmas`` experiment
(default: the committed reference, ``figures/results/social_dilemmas__reference.json``)."""

from __future__ import annotations

import numpy as np

from lowrank_es import experiments
from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.shaping import exact
from lowrank_es.stats import fraction_se

NOTEBOOK = "10_social_dilemmas"
EXPERIMENT = "social_dilemmas"


def _record(record: dict | None) -> dict:
    return record if record is not None else experiments.load(EXPERIMENT, "reference")


def _m(record: dict, **kw) -> Measurement:
    return Measurement(scale=record["scale"], device=record["device"], **kw)


@register(
    "games.ipd.naive_defects",
    paper="LOLA",
    statement="Naive exact-gradient learners in the IPD (50 runs, N(0, 1) logits, 200 steps of size 1) end in mutual "
    "defection: mean reward per step over the runs near -2, as the LOLA paper's NL-Ex (-1.98, std 0.14).",
    target=Target(high=-1.9, text="mean reward per step over the runs <= -1.9 (paper -1.98, std 0.14)"),
    quick=True,
    notebook=NOTEBOOK,
)
def naive_defects(record: dict | None = None) -> Measurement:
    record = _record(record)
    d = record["data"]["ipd"]["naive"]
    r = np.asarray(d["r"])
    runs = r.mean(1)
    p = exact.final_policies(d)
    defect = np.all(r <= -1.9, axis=1)
    return _m(record, measured=float(runs.mean()), uncertainty=float(runs.std(ddof=1) / np.sqrt(len(runs))),
              seeds=len(runs), details={"reward_per_step_std": float(runs.std()), "paper": -1.98, "paper_std": 0.14,
                                        "fraction_of_runs_both_below_-1.9": float(defect.mean()),
                                        "fraction_of_runs_both_below_-1.9_se": fraction_se(defect),
                                        "strict_tft_fraction": float(exact.reciprocity(p)["strict"].mean()),
                                        "paper_tft_fraction": 0.208})


@register(
    "games.ipd.lola_reciprocity",
    paper="LOLA",
    statement="Two exact LOLA learners in the IPD (the paper's setting: 50 runs from N(0, 1) logits, 200 simultaneous "
    "steps of size 1, look-ahead 1, gamma 0.96) reciprocate as the paper's Figure 3 shows: the 95% interval of the "
    "run-mean P(C | state) is above 1/2 after CC and DC and below it after CD and DD (exact.tft_profile). The "
    "paper's Table 1 '% TFT' (81 %) has no stated rule and its official code computes none; the strict per-run "
    "fraction is reported beside it.",
    target=Target(low=0.0, text="TFT margin of the run-mean P(C | state), 95% interval, >= 0 in all four memory states"),
    quick=True,
    notebook=NOTEBOOK,
)
def lola_reciprocity(record: dict | None = None) -> Measurement:
    record = _record(record)
    d = record["data"]["ipd"]["LOLA"]
    p = exact.final_policies(d)
    prof, rec = exact.tft_profile(p), exact.reciprocity(p)
    r = np.asarray(d["r"])
    n = r.shape[0]
    naive = record["data"]["ipd"]["naive"]
    q = exact.final_policies(naive)
    return _m(record, measured=prof["margin"], uncertainty=None, seeds=n,
              details={"mean_p_start_cc_cd_dc_dd": np.round(prof["mean"], 3).tolist(),
                       "strict_fraction": float(rec["strict"].mean()), "paper_tft_fraction": 0.81,
                       "naive_strict_fraction": float(exact.reciprocity(q)["strict"].mean()), "paper_naive_tft_fraction": 0.208,
                       "generous_fraction": float(rec["generous"].mean()),
                       "both_players_strict": float(np.mean(rec["strict"][:n] & rec["strict"][n:])),
                       "reward_per_step_mean": float(r.mean()), "reward_per_step_std": float(r.mean(1).std()),
                       "paper_reward": -1.06, "paper_reward_std": 0.19})


@register(
    "games.ipd.sampled_matches_exact",
    paper="LOLA",
    statement="Sampled 50-step discounted IPD returns agree with the closed-form value within Monte Carlo error.",
    target=Target(high=4.0, text="max |z| over 8 policy pairs x 2 players <= 4"),
    quick=True,
    notebook=NOTEBOOK,
)
def sampled_matches_exact(record: dict | None = None) -> Measurement:
    record = _record(record)
    res = record["data"]["sampled_ipd"]
    z = (np.asarray(res["sampled"]) - np.asarray(res["exact"])) / np.asarray(res["se"])
    return _m(record, measured=float(np.abs(z).max()), uncertainty=None, seeds=int(z.shape[0]),
              details={"mean_abs_z": float(np.abs(z).mean())})


@register(
    "games.coin.naive_selfish",
    paper="LOLA",
    statement="Naive learners in the Coin Game collapse to selfish play: they pick up more coins but only about "
    "half of them their own (own-coin rate near 0.5 or below).",
    target=Target(high=0.55, text="own-coin rate over the last 20 updates <= 0.55"),
    quick=False,
    notebook=NOTEBOOK,
)
def naive_selfish(record: dict | None = None) -> Measurement:
    record = _record(record)
    part = record["data"]["coin"]
    h = part["history"]
    upd = np.asarray(h["update"])
    last = upd > upd[-1] - 20
    own, other = np.asarray(h["own"]).sum(-1), np.asarray(h["other"]).sum(-1)
    rate = own[:, last].sum(1) / (own[:, last] + other[:, last]).sum(1)
    n = len(rate)
    picks = own + other
    return _m(record, measured=float(rate.mean()), uncertainty=float(rate.std(ddof=1) / np.sqrt(n)) if n > 1 else None,
              seeds=n, details={"pickups_per_episode_start": float(picks[:, 0].mean()),
                                "pickups_per_episode_end": float(picks[:, last].mean()),
                                "reward_vs_selfish": np.round(np.asarray(part["vs_selfish"]), 4).tolist()})


@register(
    "games.negotiation.dilemma",
    paper="AdvantageAlignment",
    statement="In the Negotiation Game always-cooperate vs always-defect forms a dilemma: AC-AC 0.50, "
    "AD-AD 0.30, AC vs AD 0.25 / 0.55 per round.",
    target=Target(high=0.01, text="max |sampled - stated| over the 6 payoffs <= 0.01"),
    quick=True,
    notebook=NOTEBOOK,
)
def negotiation_dilemma(record: dict | None = None) -> Measurement:
    record = _record(record)
    pay = record["data"]["negotiation_payoffs"]
    devs, ses = [], []
    for name, target in record["data"]["negotiation_stated"].items():
        x = np.asarray(pay[name])
        devs.append(np.abs(x.mean(axis=0) - np.array(target)))
        ses.append(x.std(axis=0, ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.full(2, np.nan))
    devs, ses = np.concatenate(devs), np.concatenate(ses)
    n = len(np.asarray(next(iter(pay.values()))))
    return _m(record, measured=float(devs.max()), uncertainty=float(np.nanmax(ses)) if n > 1 else None, seeds=n,
              details={k: np.asarray(v).mean(axis=0).round(4).tolist() for k, v in pay.items()})

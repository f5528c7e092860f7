"""Claims of Best Response Shaping (arXiv:2404.06519).

Each measure reads a results record of the ``brs`` experiment (default: the committed
reference) and never trains anything itself.
"""

from __future__ import annotations

import numpy as np

from lowrank_es import experiments
from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.stats import fraction_se

NOTEBOOK = "13_best_response_shaping"
NAME = "brs"


def _record(record: dict | None) -> dict:
    return record if record is not None else experiments.load(NAME, "reference")


def _long_budget_coin(record: dict | None) -> dict | None:
    """The ``coin_brs`` part of the committed ``long_budget`` run (twice the reference's updates),
    reported beside the default (reference) measurement; None for a given record or none committed."""
    if record is not None:
        return None
    try:
        return experiments.load(NAME, "long_budget")["data"]["coin_brs"]
    except FileNotFoundError:
        return None


def _cooperation_fraction(coin_brs: dict) -> np.ndarray:
    """Per seed: BRS self-play reward per step / always-cooperate self-play reward per step."""
    return np.asarray(coin_brs["eval"]["self_play"], float) / float(coin_brs["cooperative_self_play"])


def _m(record: dict, **kw) -> Measurement:
    return Measurement(scale=record["scale"], device=record.get("device"), **kw)


def _se(x) -> float | None:
    x = np.asarray(x, float)
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else None


@register(
    "brs.ipd.reciprocity", paper="BRS",
    statement=("BRS (learned detective conditioned on the five cooperation probabilities, exact IPD values, "
               "gamma 0.96) reaches tit-for-tat reciprocity in every seed: the policy rounded in the four memory "
               "states is TFT (exact.reciprocity, strict, the reciprocity test of every IPD claim)."),
    target=Target(low=1.0, text="fraction of seeds TFT (strict) = 1 (every seed)"), notebook=NOTEBOOK)
def _ipd_reciprocity(record: dict | None = None) -> Measurement:
    from lowrank_es.shaping import exact

    record = _record(record)
    p = np.asarray(record["data"]["ipd"]["BRS"]["p"])
    rec = exact.reciprocity(p)
    ok = rec["strict"]
    return _m(record, measured=float(ok.mean()), uncertainty=fraction_se(ok), seeds=len(ok),
              details={"p": np.round(p, 3).tolist(), "generous_fraction": float(rec["generous"].mean()),
                       "p_CD_max": float(p[:, 2].max()), "p_DD_max": float(p[:, 4].max())})


MARGIN = 0.1


@register(
    "brs.ipd.unexploitable", paper="BRS",
    statement=(f"Against its exact best response (policy iteration on its induced MDP) every BRS seed gets at "
               f"least mutual cooperation minus {MARGIN} per step, and naive and LOLA self-play agents lose more "
               "on average. Measured: the smallest slack of the three conditions, min(margin - max BRS loss, "
               "mean naive loss - mean BRS loss, mean LOLA loss - mean BRS loss), per step."),
    target=Target(low=0.0, text="slack >= 0 (all three conditions hold)"), notebook=NOTEBOOK)
def _ipd_unexploitable(record: dict | None = None) -> Measurement:
    record = _record(record)
    ex = {k: np.asarray(v) for k, v in record["data"]["ipd"]["exploitability"].items()}
    lb, ln, ll = ex["BRS"], ex["naive"], ex["LOLA"]
    slack = min(MARGIN - lb.max(), ln.mean() - lb.mean(), ll.mean() - lb.mean())
    return _m(record, measured=float(slack), seeds=len(lb), details={
        k: np.round(v, 4).tolist() for k, v in ex.items()})


def _mcts(record: dict, who: str) -> dict[str, np.ndarray]:
    """The planner's metrics against ``who`` (its best rollout policy), per seed."""
    return {k: np.asarray(v, float) for k, v in record["data"]["coin_mcts"][who].items()
            if k not in ("rollout", "by_rollout")}


OWN_RATE, BRS_VS_MCTS = 0.8, 0.2


@register(
    "brs.coin.mcts_cooperates", paper="BRS",
    statement=(f"In the Coin Game an MCTS best response (mctx Stochastic MuZero on the true game, chance nodes "
               f"over the opponent's move and the coin's respawn, planning with the recurrent agent's policy and "
               f"memory) picks up mostly its own coins against a BRS agent (own-coin "
               f"rate >= {OWN_RATE}) and the BRS agent earns >= {BRS_VS_MCTS} per step against it (LOQA repository "
               "league: 0.28). Measured: min(own-coin rate - 0.8, BRS reward - 0.2), means over seeds."),
    target=Target(low=0.0, text="slack >= 0 (both conditions hold)"), notebook=NOTEBOOK)
def _coin_mcts(record: dict | None = None) -> Measurement:
    record = _record(record)
    b = _mcts(record, "BRS")
    own, rew = b["mcts_own_rate"], b["agent_reward"]
    slack = min(own.mean() - OWN_RATE, rew.mean() - BRS_VS_MCTS)
    return _m(record, measured=float(slack), seeds=len(own), details={
        "mcts_own_rate": np.round(own, 4).tolist(), "brs_reward": np.round(rew, 4).tolist(),
        "always_cooperate_mcts_own_rate": np.round(_mcts(record, "always-cooperate")["mcts_own_rate"], 4).tolist()})


GAP = 0.1


@register(
    "brs.coin.mcts_exploits_naive", paper="BRS",
    statement=(f"Against the MCTS best response a naive recurrent learner earns at least {GAP} per step less than "
               "BRS does (the paper's contrast, with POLA there). Measured: mean over seeds of BRS's reward minus "
               f"the naive agent's, minus {GAP}."),
    target=Target(low=0.0, text=f"BRS reward - naive reward against MCTS >= {GAP}"), notebook=NOTEBOOK)
def _coin_mcts_naive(record: dict | None = None) -> Measurement:
    record = _record(record)
    d = _mcts(record, "BRS")["agent_reward"] - _mcts(record, "naive")["agent_reward"]
    return _m(record, measured=float(d.mean() - GAP), uncertainty=_se(d), seeds=len(d),
              details={"brs_minus_naive": np.round(d, 4).tolist()})


UNEXPLOITED = -0.2


@register(
    "brs.coin.unexploited", paper="BRS",
    statement=(f"BRS is not exploited by the selfish agent (always takes the nearest coin): its reward per step "
               f"against it is >= {UNEXPLOITED} (LOQA repository league: -0.10). Mean over seeds."),
    target=Target(low=UNEXPLOITED, text=f"BRS reward vs selfish >= {UNEXPLOITED}"), notebook=NOTEBOOK)
def _coin_unexploited(record: dict | None = None) -> Measurement:
    long = _long_budget_coin(record)
    record = _record(record)
    r = np.asarray(record["data"]["coin_brs"]["eval"]["vs_selfish"], float)
    details = {"per_seed": np.round(r, 4).tolist()}
    if long is not None:
        details["long_budget_per_seed"] = np.round(long["eval"]["vs_selfish"], 4).tolist()
    return _m(record, measured=float(r.mean()), uncertainty=_se(r), seeds=len(r), details=details)


@register(
    "brs.coin.self_play", paper="BRS",
    statement=("BRS self-play reward per step in the Coin Game, as a fraction of always-cooperate self-play "
               "(both players go for their own coins only); paper / LOQA repository league: 0.338 vs 0.347."),
    target=Target(low=0.9, text="BRS / always-cooperate self-play reward >= 0.9"), notebook=NOTEBOOK)
def _coin_self_play(record: dict | None = None) -> Measurement:
    long = _long_budget_coin(record)
    record = _record(record)
    d = record["data"]["coin_brs"]
    r = _cooperation_fraction(d)
    details = {"brs_self_play": np.round(d["eval"]["self_play"], 4).tolist(),
               "always_cooperate_self_play": round(float(d["cooperative_self_play"]), 4)}
    if long is not None:
        details["long_budget_fraction"] = round(float(_cooperation_fraction(long).mean()), 4)
        details["long_budget_self_play"] = np.round(long["eval"]["self_play"], 4).tolist()
    return _m(record, measured=float(r.mean()), uncertainty=_se(r), seeds=len(r), details=details)

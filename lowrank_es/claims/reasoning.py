"""Claims of EGGROLL's reasoning experiment at laptop scale: a small pre-trained character
transformer fine-tuned on a Countdown-style task by EGGROLL and by GRPO under the same budget of
generated tokens. Every measure reads the committed ``reasoning`` reference results (or a results
record passed as ``results``)."""

from __future__ import annotations

import numpy as np

from lowrank_es import experiments
from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.stats import mean_ci, proportion_ci, welch_ci

NOTEBOOK = "05_reasoning_vs_grpo"

#: Non-inferiority margin of EGGROLL against GRPO, in test accuracy.
MARGIN = 0.03


def _reference(results: dict | None) -> dict:
    return results if results is not None else experiments.load("reasoning", "reference")


@register(
    "eggroll.reasoning.improves",
    paper="EGGROLL",
    statement="EGGROLL fine-tuning raises the Countdown test accuracy of the pre-trained model: the 95% "
    "interval of its final accuracy over seeds lies above the 95% interval of the starting accuracy.",
    target=Target(low=0.0, text="EGGROLL 95% CI lower end - start 95% CI upper end > 0 (intervals apart)"),
    quick=False,
    notebook=NOTEBOOK,
)
def improves(results: dict | None = None) -> Measurement:
    rec = _reference(results)
    d = rec["data"]
    s_mean, s_half = proportion_ci(d["start"]["per_prompt"])
    final = d["eggroll"]["final"]
    e_mean, e_half = mean_ci(final)
    gap = (e_mean - e_half) - (s_mean + s_half)
    return Measurement(gap, None, seeds=len(final), scale=rec["scale"], device=rec.get("device"),
                       details={"start": s_mean, "start_ci_half": s_half, "eggroll": e_mean,
                                "eggroll_ci_half": e_half, "eggroll_per_seed": list(map(float, final))})


@register(
    "eggroll.reasoning.vs_grpo",
    paper="EGGROLL",
    statement=f"At an equal budget of generated tokens, EGGROLL's final Countdown test accuracy is not worse than "
    f"GRPO's by more than {MARGIN} (non-inferiority; paper, RWKV-7 on Countdown: 35% vs 23%).",
    target=Target(low=-MARGIN, text=f"lower end of the 95% CI of (EGGROLL - GRPO) test accuracy >= -{MARGIN}"),
    quick=False,
    notebook=NOTEBOOK,
)
def vs_grpo(results: dict | None = None) -> Measurement:
    """Welch's two-sided 95% interval of the difference of the seeds' final test accuracies."""
    rec = _reference(results)
    e, g = rec["data"]["eggroll"]["final"], rec["data"]["grpo"]["final"]
    diff, half = welch_ci(e, g)
    tokens = {m: [log["tokens"] for log in rec["data"][m]["logs"]] for m in ("eggroll", "grpo")}
    # the measured value is an interval's lower end: its half-width is in details, not an uncertainty
    return Measurement(diff - half, None, seeds=min(len(e), len(g)), scale=rec["scale"], device=rec.get("device"),
                       details={"difference": diff, "ci_half": half, "eggroll_mean": float(np.mean(e)),
                                "grpo_mean": float(np.mean(g)), "eggroll_per_seed": list(map(float, e)),
                                "grpo_per_seed": list(map(float, g)), "tokens": tokens, "margin": MARGIN})


@register(
    "eggroll.reasoning.signal",
    paper="EGGROLL",
    statement="EGGROLL's gain comes from the reward: from the same seeds and the same token budget, its final "
    "Countdown test accuracy is above that of the same run with each step's fitness shuffled across the "
    "population (the null control: same tokens, same update sizes, no signal). Both gains are over the same "
    "start, so the gain difference is the difference of the final accuracies.",
    target=Target(low=0.0, text="lower end of the 95% CI of (EGGROLL - shuffled-fitness EGGROLL) test accuracy > 0"),
    quick=False,
    notebook=NOTEBOOK,
)
def signal(results: dict | None = None) -> Measurement:
    """Welch's two-sided 95% interval of the difference of the seeds' final test accuracies."""
    rec = _reference(results)
    if "eggroll_null" not in rec["data"]:
        raise ValueError("results must hold the null-control arm 'eggroll_null' (a reasoning record made with it)")
    e, n = rec["data"]["eggroll"]["final"], rec["data"]["eggroll_null"]["final"]
    diff, half = welch_ci(e, n)
    start = float(np.mean(rec["data"]["start"]["per_prompt"]))
    return Measurement(diff - half, None, seeds=min(len(e), len(n)), scale=rec["scale"], device=rec.get("device"),
                       details={"difference": diff, "ci_half": half, "start": start,
                                "eggroll_gain": float(np.mean(e)) - start, "null_gain": float(np.mean(n)) - start,
                                "eggroll_per_seed": list(map(float, e)), "null_per_seed": list(map(float, n))})


@register(
    "eggroll.reasoning.memory",
    paper="EGGROLL",
    statement="EGGROLL needs no backward pass or optimiser moments per sample, so its peak memory per sampled "
    "sequence (compiled update step) is below GRPO's.",
    target=Target(low=1.0, text="GRPO bytes per sampled sequence / EGGROLL bytes per sampled sequence >= 1"),
    quick=False,
    notebook=NOTEBOOK,
)
def memory(results: dict | None = None) -> Measurement:
    """The compiled programs' ``memory_analysis()`` of the reference settings."""
    rec = _reference(results)
    m = rec["data"]["memory"]
    return Measurement(m["ratio_grpo_over_eggroll"], None, seeds=1, scale=rec["scale"], device=rec.get("device"),
                       details={k: float(v) for k, v in m.items()})

"""Claims of EGGROLL's reasoning experiment at laptop scale: a small pre-trained character
transformer fine-tuned on a Countdown-style task by EGGROLL and by GRPO under the same budget of
generated tokens (``notebooks/05_reasoning_vs_grpo.ipynb`` runs the experiment and passes its
results here)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.finetune import mean_ci, proportion_ci, welch_ci

NOTEBOOK = "05_reasoning_vs_grpo"


def _need(name, value):
    if value is None:
        raise ValueError(f"{name} is required: pass the notebook's results (see {NOTEBOOK}.ipynb)")
    return value


@register(
    "eggroll.reasoning.improves",
    paper="EGGROLL",
    statement="EGGROLL fine-tuning raises the Countdown test accuracy of the pre-trained model: the 95% "
    "interval of its final accuracy over seeds lies above the 95% interval of the starting accuracy.",
    target=Target(low=0.0, text="EGGROLL 95% CI lower end - start 95% CI upper end > 0 (intervals apart)"),
    quick=False,
    notebook=NOTEBOOK,
)
def improves(start_per_prompt: Sequence[float] | None = None, eggroll_final: Sequence[float] | None = None,
             **_) -> Measurement:
    """start_per_prompt: per-test-prompt accuracy of the checkpoint; eggroll_final: final test
    accuracy of each fine-tuning seed."""
    s_mean, s_half = proportion_ci(_need("start_per_prompt", start_per_prompt))
    e_mean, e_half = mean_ci(_need("eggroll_final", eggroll_final))
    gap = (e_mean - e_half) - (s_mean + s_half)
    return Measurement(gap, None, seeds=len(eggroll_final),
                       details={"start": s_mean, "start_ci_half": s_half, "eggroll": e_mean,
                                "eggroll_ci_half": e_half, "eggroll_per_seed": list(map(float, eggroll_final))})


@register(
    "eggroll.reasoning.vs_grpo",
    paper="EGGROLL",
    statement="At an equal budget of generated tokens, EGGROLL's final Countdown test accuracy is competitive "
    "with GRPO's (paper, RWKV-7 on Countdown: 35% vs 23%).",
    target=Target(low=0.0, text="upper end of the 95% CI of (EGGROLL - GRPO) test accuracy > 0"),
    quick=False,
    notebook=NOTEBOOK,
)
def vs_grpo(eggroll_final: Sequence[float] | None = None, grpo_final: Sequence[float] | None = None,
            **_) -> Measurement:
    """Final test accuracy per seed of each method, at the same token budget."""
    e, g = _need("eggroll_final", eggroll_final), _need("grpo_final", grpo_final)
    diff, half = welch_ci(e, g)
    return Measurement(diff + half, half, seeds=min(len(e), len(g)),
                       details={"difference": diff, "ci_half": half, "eggroll_mean": float(np.mean(e)),
                                "grpo_mean": float(np.mean(g)), "eggroll_per_seed": list(map(float, e)),
                                "grpo_per_seed": list(map(float, g))})


@register(
    "eggroll.reasoning.memory",
    paper="EGGROLL",
    statement="EGGROLL needs no backward pass or optimiser moments per sample, so its peak memory per sampled "
    "sequence (compiled update step) is below GRPO's.",
    target=Target(low=1.0, text="GRPO bytes per sampled sequence / EGGROLL bytes per sampled sequence >= 1"),
    quick=False,
    notebook=NOTEBOOK,
)
def memory(memory: dict | None = None, **_) -> Measurement:
    """memory: the dict of :func:`lowrank_es.finetune.memory_per_sequence`."""
    m = _need("memory", memory)
    return Measurement(m["ratio_grpo_over_eggroll"], None, seeds=1,
                       details={k: float(v) for k, v in m.items()})

"""Claims about the integer-only recurrent language model (EGGROLL's int8 pre-training claim,
at small scale): the forward pass is integer-only, int8 EGGROLL beats the bigram baseline,
training is stable over seeds, and the gap to backprop on the float model of the same size."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es import int8lm
from lowrank_es.claims.registry import Measurement, Target, register

NOTEBOOK = "04_int8_language_model"

#: A run is stable when its validation bits/char never rises more than this above its best so far.
STABLE_TOL = 0.05


@functools.lru_cache(maxsize=1)
def _default_result() -> dict:
    return int8lm.compare(int8lm.RunConfig())


def _se(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


@register(
    "eggroll.int8.integer_only",
    paper="EGGROLL",
    statement="The int8 minGRU language model's forward pass, a population member's hashed-table "
    "low-rank noise included, contains no floating-point dtype (checked on its jaxpr, sub-jaxprs included).",
    target=Target(low=0, high=0, text="0 floating-point dtypes in the jaxpr"),
    quick=True,
    notebook=NOTEBOOK,
)
def integer_only(vocab_size: int = 65, hidden: int = 16, n_layers: int = 2) -> Measurement:
    params = int8lm.init_params(jax.random.key(0), vocab_size, hidden, n_layers)
    es = int8lm.IntEGGROLL(population=4, rank=2)
    state = es.init(0, params)
    toks = jnp.arange(8) % vocab_size
    found = int8lm.float_dtypes_in(lambda s, m, t: int8lm.member_forward(es, s, m, t), state, jnp.int32(1), toks)
    found.update(int8lm.float_dtypes_in(int8lm.apply, params, toks))
    prims = sorted({p for eqn_dt in int8lm.jaxpr_dtypes(jax.make_jaxpr(int8lm.apply)(params, toks)).values() for p in eqn_dt})
    # the walker is not blind: the float model's jaxpr does show float32
    control = "float32" in int8lm.float_dtypes_in(
        lambda p, t: int8lm.mingru.apply(p, t), int8lm.mingru.init_params(jax.random.key(0), vocab_size, hidden), toks
    )
    return Measurement(
        measured=float(len(found)),
        seeds=1,
        details={"float_dtypes": {k: sorted(v) for k, v in found.items()}, "primitives": prims,
                 "float_model_shows_float32": control},
    )


@register(
    "eggroll.int8.learns",
    paper="EGGROLL",
    statement="Integer EGGROLL's validation bits/char (mean over seeds, end of the run) falls below "
    "the add-one bigram baseline on tiny-shakespeare.",
    target=Target(high=0.0, text="int8 bits/char - bigram bits/char <= 0"),
    quick=False,
    notebook=NOTEBOOK,
)
def learns(result: dict | None = None) -> Measurement:
    result = result or _default_result()
    f = int8lm.final_bpc(result["runs"]["int8_es"])
    return Measurement(
        measured=float(f.mean() - result["bigram"]),
        uncertainty=_se(f),
        seeds=len(f),
        details={"int8_final_bpc": f.round(4).tolist(), "bigram_bpc": round(result["bigram"], 4),
                 "generations": int(result["config"].generations), "population": int(result["config"].population)},
    )


@register(
    "eggroll.int8.stable",
    paper="EGGROLL",
    statement=f"Integer EGGROLL does not diverge: in every seed the validation bits/char never rises more "
    f"than {STABLE_TOL} above its best value so far.",
    target=Target(low=1.0, text=f"3 of 3 seeds with max rise above best-so-far <= {STABLE_TOL} bits/char"),
    quick=False,
    notebook=NOTEBOOK,
)
def stable(result: dict | None = None) -> Measurement:
    result = result or _default_result()
    rise = int8lm.max_rise(result["runs"]["int8_es"].val_bpc)
    ok = rise <= STABLE_TOL
    return Measurement(measured=float(ok.mean()), seeds=len(rise),
                       details={"max_rise_per_seed": rise.round(4).tolist(), "tolerance": STABLE_TOL})


@register(
    "eggroll.int8.gap_to_backprop",
    paper="EGGROLL",
    statement="Gap in validation bits/char between integer EGGROLL and backprop (Adam) on the float "
    "model of the same architecture and parameter count, after the same number of steps.",
    target=Target(),
    quick=False,
    notebook=NOTEBOOK,
)
def gap_to_backprop(result: dict | None = None) -> Measurement:
    result = result or _default_result()
    a = int8lm.final_bpc(result["runs"]["int8_es"])
    b = int8lm.final_bpc(result["runs"]["backprop"])
    fe = int8lm.final_bpc(result["runs"]["float_es"])
    unc = float(np.hypot(_se(a), _se(b)))
    return Measurement(
        measured=float(a.mean() - b.mean()),
        uncertainty=unc,
        seeds=len(a),
        details={"int8_es": a.round(4).tolist(), "backprop": b.round(4).tolist(), "float_es": fe.round(4).tolist(),
                 "float_es_minus_backprop": round(float(fe.mean() - b.mean()), 4),
                 "int8_minus_float_es": round(float(a.mean() - fe.mean()), 4)},
    )

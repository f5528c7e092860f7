"""Claims about the integer-only recurrent language model (EGGROLL's int8 pre-training claim, at
small scale): the forward pass and a whole training generation are integer-only, integer EGGROLL
beats the bigram baseline, training is stable over seeds, and the gap to backprop on the float
model of the same size. The last three read the committed ``int8_lm`` reference results."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es import experiments
from lowrank_es.claims.registry import Measurement, Target, register
from lowrank_es.es.jaxpr import float_dtypes_in, jaxpr_dtypes
from lowrank_es.experiments.int8_lm import final_bpc
from lowrank_es.models import mingru, mingru_int8
from lowrank_es.stats import max_rise
from lowrank_es.tasks import char_lm

NOTEBOOK = "04_int8_language_model"

#: A run is stable when its validation bits/char never rises more than this above its best so far.
STABLE_TOL = 0.05


def _reference(results: dict | None) -> dict:
    return results if results is not None else experiments.load("int8_lm", "reference")


def _se(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _small_setup(vocab_size: int, hidden: int, n_layers: int):
    cfg = experiments.get("int8_lm").config("reference")  # the reference run's strategy settings
    es = cfg.int_es()
    params = mingru_int8.init_params(jax.random.key(0), vocab_size, hidden, n_layers)
    return cfg, es, es.init(jax.random.key(0), params)


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
    _, es, state = _small_setup(vocab_size, hidden, n_layers)
    toks = jnp.arange(8) % vocab_size
    member = lambda s, m, t: mingru_int8.apply(s.params, t, es.member_noise(s, m))
    found = float_dtypes_in(member, state, jnp.int32(1), toks)
    found.update(float_dtypes_in(mingru_int8.apply, state.params, toks))
    prims = sorted({p for ps in jaxpr_dtypes(jax.make_jaxpr(mingru_int8.apply)(state.params, toks)).values() for p in ps})
    # the walker is not blind: the float model's jaxpr does show float32
    control = "float32" in float_dtypes_in(mingru.apply, mingru.init_params(jax.random.key(0), vocab_size, hidden), toks)
    return Measurement(measured=float(len(found)), seeds=1, scale="live",
                       details={"float_dtypes": {k: sorted(v) for k, v in found.items()}, "primitives": prims,
                                "float_model_shows_float32": control})


@register(
    "eggroll.int8.integer_step",
    paper="EGGROLL",
    statement="One whole generation of integer EGGROLL on the int8 language model (reading the training "
    "data, every member's noise and forward pass from its carried state, its fitness by an integer log-softmax, "
    "the votes and the integer update) contains no floating-point dtype in its jaxpr, sub-jaxprs included.",
    target=Target(low=0, high=0, text="0 floating-point dtypes in the jaxpr of one generation"),
    quick=True,
    notebook=NOTEBOOK,
)
def integer_step(vocab_size: int = 65, hidden: int = 16, n_layers: int = 1) -> Measurement:
    """Traced with the reference run's strategy settings and data layout (population, rank,
    shifts, threshold schedule, carried states) on a synthetic corpus; the float EGGROLL
    generation of the float twin is the control."""
    cfg, es, state = _small_setup(vocab_size, hidden, n_layers)
    cfg = dataclasses.replace(cfg, hidden=hidden, n_layers=n_layers)
    corpus = jnp.asarray(np.arange(es.population * (cfg.segment + 2) + 4096) * 7 % vocab_size, jnp.int32)
    gen, carry = char_lm.int8_program(cfg, es, corpus, state)
    found = float_dtypes_in(gen, carry, jax.random.key(1), jnp.int32(0))
    dtypes = sorted(jaxpr_dtypes(jax.make_jaxpr(gen)(carry, jax.random.key(1), jnp.int32(0))))
    fes = cfg.float_es()
    fstate = fes.init(jax.random.key(0), mingru.init_params(jax.random.key(0), vocab_size, hidden, n_layers))
    fit = lambda p, nz, i: -mingru.loss(p, corpus[: cfg.context], nz)
    control = "float32" in float_dtypes_in(lambda s: fes.step(s, fit)[0], fstate)
    return Measurement(measured=float(len(found)), seeds=1, scale="live",
                       details={"float_dtypes": {k: sorted(v) for k, v in found.items()}, "dtypes": dtypes,
                                "population": es.population, "float_generation_shows_float32": control})


@register(
    "eggroll.int8.learns",
    paper="EGGROLL",
    statement="Integer EGGROLL's validation bits/char (mean over seeds, end of the reference run) falls below "
    "the add-one bigram baseline on tiny-shakespeare.",
    target=Target(high=0.0, text="int8 bits/char - bigram bits/char <= 0"),
    quick=False,
    notebook=NOTEBOOK,
)
def learns(results: dict | None = None) -> Measurement:
    rec = _reference(results)
    bpc = final_bpc(rec, "int8_es")
    ng = rec["data"]["ngram"]
    bigram = ng["bigram"]
    details = {"int8_final_bpc": bpc.round(4).tolist(), "bigram_bpc": round(bigram, 4),
               "generations": rec["config"]["generations"], "population": rec["config"]["population"]}
    if "bigram_in_sample" in ng:  # nano-egg's own bar, fitted on the validation split itself
        details["minus_in_sample_bigram"] = round(float(bpc.mean() - ng["bigram_in_sample"]), 4)
    if "int8_null" in rec["data"]["runs"]:  # the shuffled-fitness control of the same run
        null = final_bpc(rec, "int8_null")
        details["null_final_bpc"] = null.round(4).tolist()
        details["minus_null"] = round(float(bpc.mean() - null.mean()), 4)
    return Measurement(measured=float(bpc.mean() - bigram), uncertainty=_se(bpc), seeds=len(bpc),
                       scale=rec["scale"], device=rec.get("device"), details=details)


@register(
    "eggroll.int8.stable",
    paper="EGGROLL",
    statement=f"Integer EGGROLL does not diverge: in every seed of the reference run the validation bits/char "
    f"never rises more than {STABLE_TOL} above its best value so far.",
    target=Target(low=1.0, text=f"all seeds with max rise above best-so-far <= {STABLE_TOL} bits/char"),
    quick=False,
    notebook=NOTEBOOK,
)
def stable(results: dict | None = None) -> Measurement:
    rec = _reference(results)
    rise = max_rise(np.asarray(rec["data"]["runs"]["int8_es"]["val_bpc"]))
    ok = rise <= STABLE_TOL
    return Measurement(measured=float(ok.mean()), seeds=len(rise), scale=rec["scale"], device=rec.get("device"),
                       details={"max_rise_per_seed": rise.round(4).tolist(), "tolerance": STABLE_TOL})


@register(
    "eggroll.int8.gap_to_backprop",
    paper="EGGROLL",
    statement="Gap in validation bits/char between integer EGGROLL and backprop (Adam) on the float "
    "model of the same architecture and parameter count, after the same number of steps (reference run).",
    target=Target(),
    quick=False,
    notebook=NOTEBOOK,
)
def gap_to_backprop(results: dict | None = None) -> Measurement:
    rec = _reference(results)
    a, b, fe = (final_bpc(rec, m) for m in ("int8_es", "backprop", "float_es"))
    return Measurement(measured=float(a.mean() - b.mean()), uncertainty=float(np.hypot(_se(a), _se(b))),
                       seeds=len(a), scale=rec["scale"], device=rec.get("device"),
                       details={"int8_es": a.round(4).tolist(), "backprop": b.round(4).tolist(),
                                "float_es": fe.round(4).tolist(),
                                "float_es_minus_backprop": round(float(fe.mean() - b.mean()), 4),
                                "int8_minus_float_es": round(float(a.mean() - fe.mean()), 4)})

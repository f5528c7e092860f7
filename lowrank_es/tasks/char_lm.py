"""Character language modelling on tiny-shakespeare with three training methods on one model size:
the int8 minGRU (:mod:`lowrank_es.models.mingru_int8`) by integer EGGROLL with an integer fitness,
and its float twin (:mod:`lowrank_es.models.mingru`) by float EGGROLL or by backprop (Adam).

Every generation (or backprop step) sees ``batch`` random training windows of ``context``
tokens, each read from a zero state. Seed ``s`` fixes the initial parameters (the int8 model's
are the rounding of the float twin's), the training windows and the noise; all seeds of a method
train side by side (vmapped) in one compiled program. Validation bits/char is measured every
``eval_every`` generations on fixed windows, exactly (float log-softmax of the logits): a
measurement outside the training program.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.es.eggroll import EGGROLL
from lowrank_es.es.integer import IntEGGROLL, IntESState
from lowrank_es.models import mingru, mingru_int8
from lowrank_es.tasks.text_data import bits_per_char, eval_windows, sample_windows

PyTree = Any

METHODS = ("int8_es", "float_es", "backprop")
LABELS = {"int8_es": "int8 EGGROLL", "float_es": "float EGGROLL", "backprop": "backprop (Adam)"}


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Model, data, schedule and the settings of each method.

    Integer EGGROLL: ``sigma_shift``, ``noise_std``, ``threshold`` (z) and ``anneal`` (anneal z
    from 0 over the whole run, nano-egg's schedule, or keep it fixed), see
    :class:`lowrank_es.es.integer.IntEGGROLL`. Float EGGROLL: ``sigma``, Adam ``es_lr``.
    Backprop: Adam ``bp_lr``. ``population`` and ``rank`` are shared by both ES methods.
    """

    hidden: int = 16
    n_layers: int = 1
    context: int = 32  # window length T (T - 1 predictions)
    batch: int = 4  # windows per generation
    generations: int = 400
    eval_every: int = 50
    eval_windows: int = 16
    eval_length: int = 128
    population: int = 128
    rank: int = 4
    sigma_shift: int = 5
    noise_std: float = 8.0
    threshold: float = 0.5
    anneal: bool = False
    sigma: float = 0.03
    es_lr: float = 0.01
    bp_lr: float = 0.01
    methods: tuple[str, ...] = METHODS

    def __post_init__(self) -> None:
        for name in ("hidden", "n_layers", "batch", "generations", "eval_every", "eval_windows", "population", "rank"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.context < 2 or self.eval_length < 2:
            raise ValueError(f"context and eval_length must be >= 2, got {self.context}, {self.eval_length}")
        if self.generations % self.eval_every:
            raise ValueError(f"generations ({self.generations}) must be a multiple of eval_every ({self.eval_every})")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {self.methods!r}")

    def int_es(self) -> IntEGGROLL:
        """The integer strategy of this config."""
        return IntEGGROLL(self.population, self.rank, self.sigma_shift, self.noise_std, self.threshold,
                          anneal_generations=self.generations if self.anneal else 0)

    def float_es(self) -> EGGROLL:
        """The float strategy of this config (Adam, centred ranks)."""
        return EGGROLL(sigma=self.sigma, population=self.population, rank=self.rank,
                       optimizer=optax.adam(self.es_lr), clip_rank=True)


def int8_generation(es: IntEGGROLL, train_tokens: jax.Array, batch: int, context: int) -> Callable:
    """One whole generation of integer EGGROLL: ``(state, data_key, g) -> state``. Draws the
    ``batch`` windows of generation ``g``, scores every member by its integer log-likelihood
    (:func:`mingru_int8.window_log_likelihood`) and applies the integer update."""

    def gen(state: IntESState, data_key: jax.Array, g: jax.Array) -> IntESState:
        windows = sample_windows(jax.random.fold_in(data_key, g), train_tokens, batch, context)
        return es.step(state, lambda p, nz, i: mingru_int8.window_log_likelihood(p, windows, nz))[0]

    return gen


def _stack(trees: list) -> PyTree:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def train(method: str, cfg: LMConfig, seeds: tuple[int, ...], train_tokens: np.ndarray, valid_tokens: np.ndarray,
          vocab_size: int, checkpoint_at: tuple[int, ...] = ()) -> dict:
    """Train ``method`` (one of :data:`METHODS`) from every seed in ``seeds`` for ``cfg.generations``.

    Returns ``generations`` (K,), ``wall`` (K,) cumulative training seconds of all seeds together
    (evaluation and compilation excluded), ``cpu`` (K,) the process CPU seconds of the same
    intervals (all threads; a measure of the work that a shared machine does not inflate),
    ``val_bpc`` (S, K), ``params`` (final, leading seed
    axis), ``checkpoints`` {generation: params with a seed axis} and ``num_params`` (per model)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    train_j = jnp.asarray(train_tokens)
    ev = jnp.asarray(eval_windows(valid_tokens, cfg.eval_windows, cfg.eval_length))
    n_pred = ev.shape[0] * (ev.shape[1] - 1)
    keys = [jax.random.split(jax.random.key(s), 3) for s in seeds]  # model, data, noise
    k_data = jnp.stack([k[1] for k in keys])
    fparams = [mingru.init_params(k[0], vocab_size, cfg.hidden, cfg.n_layers) for k in keys]

    def batch_at(kd, g):
        return sample_windows(jax.random.fold_in(kd, g), train_j, cfg.batch, cfg.context)

    if method == "int8_es":
        es = cfg.int_es()
        state = _stack([es.init(k[2], mingru_int8.quantise(p)) for k, p in zip(keys, fparams)])
        gen = int8_generation(es, train_j, cfg.batch, cfg.context)
        get_params = lambda s: s.params
        eval_nll = lambda p: mingru_int8.nll(jax.vmap(lambda x: mingru_int8.apply(p, x[:-1]))(ev), ev[:, 1:])
    else:
        eval_nll = lambda p: jnp.sum(jax.vmap(mingru.loss, (None, 0))(p, ev)) * (ev.shape[1] - 1)
        if method == "float_es":
            es = cfg.float_es()
            state = _stack([es.init(k[2], p) for k, p in zip(keys, fparams)])

            def gen(state, kd, g):
                w = batch_at(kd, g)
                fit = lambda p, nz, i: -jnp.sum(jax.vmap(mingru.loss, (None, 0, None))(p, w, nz))
                return es.step(state, fit)[0]

            get_params = lambda s: s.params
        else:
            opt = optax.adam(cfg.bp_lr)
            state = _stack([(p, opt.init(p)) for p in fparams])

            def gen(state, kd, g):
                p, o = state
                grads = jax.grad(lambda q: jnp.mean(jax.vmap(mingru.loss, (None, 0))(q, batch_at(kd, g))))(p)
                upd, o = opt.update(grads, o, p)
                return optax.apply_updates(p, upd), o

            get_params = lambda s: s[0]

    def one_chunk(state, kd, g0):
        return jax.lax.scan(lambda s, g: (gen(s, kd, g), None), state, g0 + jnp.arange(cfg.eval_every))[0]

    chunk = jax.jit(jax.vmap(one_chunk, (0, 0, None)))
    evaluate = jax.jit(jax.vmap(lambda s: bits_per_char(eval_nll(get_params(s)) / n_pred)))

    gens, walls, cpus, bpcs, ckpts = [0], [0.0], [0.0], [np.asarray(evaluate(state))], {}
    if 0 in checkpoint_at:
        ckpts[0] = get_params(state)
    chunk = chunk.lower(state, k_data, jnp.int32(0)).compile()  # compile outside the timed region
    wall = cpu = 0.0
    for g in range(0, cfg.generations, cfg.eval_every):
        t0, c0 = time.perf_counter(), time.process_time()
        state = jax.block_until_ready(chunk(state, k_data, jnp.int32(g)))
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        gens.append(g + cfg.eval_every)
        walls.append(wall)
        cpus.append(cpu)
        bpcs.append(np.asarray(evaluate(state)))
        if g + cfg.eval_every in checkpoint_at:
            ckpts[g + cfg.eval_every] = get_params(state)
    params = get_params(state)
    n = int(sum(x[0].size for x in jax.tree_util.tree_leaves(params)))
    return {"generations": np.array(gens), "wall": np.array(walls), "cpu": np.array(cpus), "val_bpc": np.stack(bpcs, axis=1),
            "params": params, "checkpoints": ckpts, "num_params": n}


def unstack(tree: PyTree, i: int) -> PyTree:
    """Seed ``i`` of a tree with a leading seed axis."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def sample(params: PyTree, key: jax.Array, length: int, prompt: np.ndarray, integer: bool) -> np.ndarray:
    """Sample ``length`` tokens after ``prompt`` at temperature 1 from the int8 (``integer``) or
    the float model. The integer model's logits are read exactly; only the draw uses floats."""
    mod_step = mingru_int8.step if integer else mingru.step
    h = mingru_int8.init_state(params) if integer else mingru.init_state(params)
    to_float = mingru_int8.logits_to_float if integer else (lambda lg: lg)

    @jax.jit
    def run(h, key):
        h, lgs = jax.lax.scan(lambda h, t: mod_step(params, h, t), h, jnp.asarray(prompt))

        def gen(carry, k):
            h, lg = carry
            t = jax.random.categorical(k, to_float(lg))
            h, lg = mod_step(params, h, t)
            return (h, lg), t

        _, toks = jax.lax.scan(gen, (h, lgs[-1]), jax.random.split(key, length))
        return toks

    return np.asarray(run(h, key))

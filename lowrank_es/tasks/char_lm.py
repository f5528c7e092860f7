"""Character language modelling on tiny-shakespeare with three training methods on one model size:
the int8 minGRU (:mod:`lowrank_es.models.mingru_int8`) by integer EGGROLL with an integer fitness,
and its float twin (:mod:`lowrank_es.models.mingru`) by float EGGROLL or by backprop (Adam).

Data, two layouts. Windows (``carry=False``): every generation (or backprop step) sees ``batch``
random training windows of ``context`` tokens, each read from a zero state. Streams
(``carry=True``, nano-egg's layout): the training split is cut into ``population / 2`` contiguous
streams; generation ``g`` reads the next ``segment`` tokens of every stream, antithetic pair ``p``
on stream ``p``, and each member (each backprop stream) carries its recurrent state from one
generation to the next, restarting from zero when its stream wraps around. Seed ``s`` fixes the initial parameters (the int8 model's
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
from lowrank_es.es.integer import IntEGGROLL, IntESState, ThresholdSchedule
from lowrank_es.models import mingru, mingru_int8
from lowrank_es.tasks.text_data import bits_per_char, eval_windows, sample_windows, stream_piece, streams

PyTree = Any

METHODS = ("int8_es", "int8_null", "float_es", "backprop")
LABELS = {"int8_es": "int8 EGGROLL", "int8_null": "int8 EGGROLL, shuffled fitness", "float_es": "float EGGROLL",
          "backprop": "backprop (Adam)"}
INT8_METHODS = ("int8_es", "int8_null")


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Model, data, schedule and the settings of each method.

    Integer EGGROLL: ``sigma_shift``, ``noise_std``, ``rank_scaling`` and the vote threshold: a
    fixed ``threshold`` (z) when ``alpha`` is 0, else nano-egg's schedule with that ``alpha`` over
    the run (:class:`lowrank_es.es.integer.ThresholdSchedule`). ``int8_null`` is the same run with
    the fitness shuffled within every generation (the null control). Float EGGROLL: ``sigma``,
    Adam ``es_lr``. Backprop: Adam ``bp_lr``. ``population`` and ``rank`` are shared by the ES
    methods. ``carry``: the stream layout with ``segment`` tokens per generation (module docstring).
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
    alpha: float = 0.0
    rank_scaling: bool = True
    carry: bool = False
    segment: int = 100
    sigma: float = 0.03
    es_lr: float = 0.01
    bp_lr: float = 0.01
    methods: tuple[str, ...] = METHODS

    def __post_init__(self) -> None:
        for name in ("hidden", "n_layers", "batch", "generations", "eval_every", "eval_windows", "population", "rank",
                     "segment"):
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
        thr = (ThresholdSchedule(self.alpha, horizon=self.generations, generations=self.generations)
               if self.alpha else self.threshold)
        return IntEGGROLL(self.population, self.rank, self.sigma_shift, self.noise_std, thr,
                          rank_scaling=self.rank_scaling)

    def float_es(self) -> EGGROLL:
        """The float strategy of this config (Adam, centred ranks)."""
        return EGGROLL(sigma=self.sigma, population=self.population, rank=self.rank,
                       optimizer=optax.adam(self.es_lr), clip_rank=True)


def _shuffled(fitness: jax.Array, key: jax.Array) -> jax.Array:
    """The null control's fitness: the generation's values in a random order (the same key gives
    the same order)."""
    return fitness[jax.random.permutation(key, fitness.shape[0])]


def int8_generation(es: IntEGGROLL, train_tokens: jax.Array, batch: int, context: int,
                    null: bool = False) -> Callable:
    """One whole generation of integer EGGROLL, window layout: ``(state, data_key, g) -> (state,
    moved)``. Draws the ``batch`` windows of generation ``g``, scores every member by its integer
    log-likelihood (:func:`mingru_int8.window_log_likelihood`), shuffles the scores when ``null``,
    and applies the integer update; ``moved`` counts the weights that moved."""

    def gen(state: IntESState, data_key: jax.Array, g: jax.Array) -> tuple[IntESState, jax.Array]:
        k = jax.random.fold_in(data_key, g)
        windows = sample_windows(k, train_tokens, batch, context)
        fit = es.evaluate(state, lambda p, nz, i: mingru_int8.window_log_likelihood(p, windows, nz))
        if null:
            fit = _shuffled(fit, jax.random.fold_in(k, 1))
        state, metrics = es.tell(state, fit)
        return state, metrics["moved"]

    return gen


def _next_piece(stream_tokens: jax.Array, g: jax.Array, segment: int, h: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Generation ``g``'s piece of every stream and the carried states ``h`` it is read from
    (zero where the streams wrap around: a new pass starts from a zero state)."""
    piece, first = stream_piece(stream_tokens, g, segment)
    return piece, jnp.where(first, jnp.zeros_like(h), h)


def int8_stream_generation(es: IntEGGROLL, stream_tokens: jax.Array, segment: int, null: bool = False) -> Callable:
    """One generation of integer EGGROLL, stream layout: ``((state, h), data_key, g) -> ((state,
    h), moved)`` with ``h`` (N, L, d) int8 every member's carried state. Pair ``p`` reads the
    ``g``-th piece of stream ``p``; the fitness is the integer log-likelihood of the piece."""

    def gen(carry, data_key: jax.Array, g: jax.Array):
        state, h = carry
        piece, h = _next_piece(stream_tokens, g, segment, h)

        def member(i, h_i):
            nz = es.member_noise(state, i)
            toks = piece[i // 2]
            h_i, logits = jax.lax.scan(lambda hh, t: mingru_int8.step(state.params, hh, t, nz), h_i, toks[:-1])
            return mingru_int8.log_likelihood(logits, toks[1:]), h_i

        fit, h = jax.vmap(member)(jnp.arange(es.population, dtype=jnp.int32), h)
        if null:
            fit = _shuffled(fit, jax.random.fold_in(jax.random.fold_in(data_key, g), 1))
        state, metrics = es.tell(state, fit)
        return (state, h), metrics["moved"]

    return gen


def int8_program(cfg: LMConfig, es: IntEGGROLL, train_tokens: jax.Array, state: IntESState,
                 null: bool = False) -> tuple[Callable, Any]:
    """One generation of integer EGGROLL in ``cfg``'s data layout and the carry it starts from:
    ``(gen, carry)`` with ``gen(carry, data_key, g) -> (carry, moved)``; the carry is ``state``
    (windows) or ``(state, h)`` with every member's zero recurrent state (streams)."""
    if not cfg.carry:
        return int8_generation(es, train_tokens, cfg.batch, cfg.context, null), state
    st = jnp.asarray(streams(np.asarray(train_tokens), es.population // 2, cfg.segment))
    h0 = jnp.zeros((es.population, cfg.n_layers, cfg.hidden), jnp.int8)
    return int8_stream_generation(es, st, cfg.segment, null), (state, h0)


def _stream_log_likelihood(step_fn: Callable, params: PyTree, h: jax.Array, toks: jax.Array, noise=None):
    """Float log-likelihood of ``toks[1:]`` read on from state ``h``; -> (summed log p, new state)."""
    h, logits = jax.lax.scan(lambda hh, t: step_fn(params, hh, t, noise), h, toks[:-1])
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.sum(jnp.take_along_axis(logp, toks[1:, None], axis=-1)), h


def _stack(trees: list) -> PyTree:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def train(method: str, cfg: LMConfig, seeds: tuple[int, ...], train_tokens: np.ndarray, valid_tokens: np.ndarray,
          vocab_size: int, checkpoint_at: tuple[int, ...] = ()) -> dict:
    """Train ``method`` (one of :data:`METHODS`) from every seed in ``seeds`` for ``cfg.generations``.

    Returns ``generations`` (K,), ``wall`` (K,) cumulative training seconds of all seeds together
    (evaluation and compilation excluded), ``cpu`` (K,) the process CPU seconds of the same
    intervals (all threads; a measure of the work that a shared machine does not inflate),
    ``val_bpc`` (S, K), ``params`` (final, leading seed
    axis), ``checkpoints`` {generation: params with a seed axis}, ``num_params`` (per model) and,
    for the integer methods, ``moved_fraction`` (S, generations): the fraction of the weights that
    moved in each generation."""
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

    zero = jnp.zeros((), jnp.int32)
    if cfg.carry:
        stream_j = jnp.asarray(streams(train_tokens, cfg.population // 2, cfg.segment))
    if method in INT8_METHODS:
        es = cfg.int_es()
        es.check_generations(cfg.generations)
        state = _stack([es.init(k[2], mingru_int8.quantise(p)) for k, p in zip(keys, fparams)])
        if cfg.carry:
            h0 = jnp.zeros((len(seeds), es.population, cfg.n_layers, cfg.hidden), jnp.int8)
            state = (state, h0)
            gen = int8_stream_generation(es, stream_j, cfg.segment, null=method == "int8_null")
            get_params = lambda s: s[0].params
        else:
            gen = int8_generation(es, train_j, cfg.batch, cfg.context, null=method == "int8_null")
            get_params = lambda s: s.params
        eval_nll = lambda p: mingru_int8.nll(jax.vmap(lambda x: mingru_int8.apply(p, x[:-1]))(ev), ev[:, 1:])
    else:
        eval_nll = lambda p: jnp.sum(jax.vmap(mingru.loss, (None, 0))(p, ev)) * (ev.shape[1] - 1)
        if method == "float_es":
            es = cfg.float_es()
            state = _stack([es.init(k[2], p) for k, p in zip(keys, fparams)])
            if cfg.carry:
                state = (state, jnp.zeros((len(seeds), es.population, cfg.n_layers, cfg.hidden), jnp.float32))

                def gen(carry, kd, g):
                    st, h = carry
                    piece, h = _next_piece(stream_j, g, cfg.segment, h)
                    fit, h = es.map_members(
                        st, lambda p, nz, i, h_i: _stream_log_likelihood(mingru.step, p, h_i, piece[i // 2], nz), h)
                    return (es.tell(st, fit)[0], h), zero

                get_params = lambda s: s[0].params
            else:
                def gen(state, kd, g):
                    w = batch_at(kd, g)
                    fit = lambda p, nz, i: -jnp.sum(jax.vmap(mingru.loss, (None, 0, None))(p, w, nz))
                    return es.step(state, fit)[0], zero

                get_params = lambda s: s.params
        else:
            opt = optax.adam(cfg.bp_lr)
            state = _stack([(p, opt.init(p)) for p in fparams])
            if cfg.carry:
                state = (state, jnp.zeros((len(seeds), cfg.population // 2, cfg.n_layers, cfg.hidden), jnp.float32))

                def gen(carry, kd, g):
                    (p, o), h = carry
                    piece, h = _next_piece(stream_j, g, cfg.segment, h)

                    def loss_fn(q):  # truncated backprop through time: the carried state is a constant
                        ll, hn = jax.vmap(lambda h_s, t: _stream_log_likelihood(mingru.step, q, h_s, t))(h, piece)
                        return -jnp.sum(ll) / ll.size / cfg.segment, hn

                    (_, h), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
                    upd, o = opt.update(grads, o, p)
                    return ((optax.apply_updates(p, upd), o), jax.lax.stop_gradient(h)), zero

                get_params = lambda s: s[0][0]
            else:
                def gen(state, kd, g):
                    p, o = state
                    grads = jax.grad(lambda q: jnp.mean(jax.vmap(mingru.loss, (None, 0))(q, batch_at(kd, g))))(p)
                    upd, o = opt.update(grads, o, p)
                    return (optax.apply_updates(p, upd), o), zero

                get_params = lambda s: s[0]

    def one_chunk(state, kd, g0):  # -> (state, weights moved per generation (eval_every,))
        return jax.lax.scan(lambda s, g: gen(s, kd, g), state, g0 + jnp.arange(cfg.eval_every))

    chunk = jax.jit(jax.vmap(one_chunk, (0, 0, None)))
    evaluate = jax.jit(jax.vmap(lambda s: bits_per_char(eval_nll(get_params(s)) / n_pred)))

    gens, walls, cpus, bpcs, ckpts = [0], [0.0], [0.0], [np.asarray(evaluate(state))], {}
    if 0 in checkpoint_at:
        ckpts[0] = get_params(state)
    chunk = chunk.lower(state, k_data, jnp.int32(0)).compile()  # compile outside the timed region
    wall = cpu = 0.0
    moved = []
    for g in range(0, cfg.generations, cfg.eval_every):
        t0, c0 = time.perf_counter(), time.process_time()
        state, moved_g = jax.block_until_ready(chunk(state, k_data, jnp.int32(g)))
        moved.append(np.asarray(moved_g))
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
    out = {"generations": np.array(gens), "wall": np.array(walls), "cpu": np.array(cpus), "val_bpc": np.stack(bpcs, axis=1),
           "params": params, "checkpoints": ckpts, "num_params": n}
    if method in INT8_METHODS:
        out["moved_fraction"] = np.concatenate(moved, axis=1) / n  # (S, generations)
    return out


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

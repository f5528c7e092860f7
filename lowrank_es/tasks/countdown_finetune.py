"""Fine-tuning the Countdown checkpoint on its verifiable reward with EGGROLL or with GRPO under
the same budget of generated tokens, and the memory one update step of each needs.

* :func:`eggroll_finetune`: a population of low-rank perturbations of the whole transformer, as in
  the official EGGROLL LLM code: each member answers one training prompt, ``group`` consecutive
  members (antithetic pairs included) answer the same prompt, a member's fitness is its reward
  minus its group's mean over the population's reward standard deviation, and the mean moves
  through ``EGGROLL.tell``. The members of a group share their sampling keys (common random
  numbers), so their answers differ only through their noise.
* :func:`grpo_finetune`: groups of answers per prompt, group-normalised advantages, clipped ratio,
  optional k3 KL to the starting checkpoint (:mod:`lowrank_es.baselines.grpo`).

Both loops stop once they have generated ``token_budget`` answer tokens (end tokens included),
or after the method config's ``steps`` updates when it sets them (equal training wall-clock is
then a number of steps per method, measured beforehand on the machine: a stop on the clock would
make a seed's numbers depend on the machine's load). They record accuracy on the evaluation
split, sampled and greedy, against tokens, steps and training seconds (evaluation excluded), and
return the final parameters.

The official EGGROLL LLM set-up is a set of options of :class:`EggrollConfig`: ``optimizer="sgd"``
with ``estimator="hyperscale"`` (the official update), ``sigma_relative`` (sigma given as
sigma * sqrt(width)), ``frozen=BLOCK_MATRICES_ONLY`` (only the blocks' matrices perturbed) and
``greedy`` fitness.
"""

from __future__ import annotations

import dataclasses
import time
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.baselines.grpo import group_advantages, make_update
from lowrank_es.es.eggroll import EGGROLL, ESState
from lowrank_es.models import transformer as tf
from lowrank_es.tasks import countdown as rs
from lowrank_es.tasks.countdown_lm import (DIFFICULTY, MODEL, SEQ_CHUNK, VAL_KEY, accuracy, answers_of,
                                           encode_prompts, generate, rewards_of, sample_batch, seq_len)

#: Frozen-leaf patterns that leave only the transformer blocks' matrices (attention and MLP)
#: perturbed, as the official code's ``freeze_nonlora``: embeddings, head, norms and biases fixed.
BLOCK_MATRICES_ONLY = (r"^\['(tok|pos|head|lnf_g|lnf_b)'\]$", r"\['(ln1_g|ln1_b|ln2_g|ln2_b|b1|b2)'\]$")
EVAL_SPLITS = ("val", "test")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Shared settings: budget in generated tokens, evaluation schedule, training problems."""

    token_budget: int | None = 40_000  # None: each method config's ``steps`` ends its runs
    eval_points: int = 6
    n_val: int = 200
    val_samples: int = 2
    partial_credit: float = 0.0
    difficulty: rs.Difficulty = DIFFICULTY
    n_train_problems: int = 2000
    #: the split the curve is measured on (``n_val`` prompts of it): "val" to choose settings,
    #: "test" for a comparison whose settings are already fixed (its curve is then test accuracy)
    eval_split: str = "val"

    def __post_init__(self) -> None:
        if self.eval_split not in EVAL_SPLITS:
            raise ValueError(f"eval_split must be one of {EVAL_SPLITS}, got {self.eval_split!r}")
        if self.token_budget is not None and not (isinstance(self.token_budget, int) and self.token_budget >= 1):
            raise ValueError(f"token_budget must be None (steps decide) or an integer >= 1, got {self.token_budget!r}")
        if not (isinstance(self.eval_points, int) and self.eval_points >= 2):
            raise ValueError(f"eval_points must be an integer >= 2, got {self.eval_points!r}")


@dataclasses.dataclass(frozen=True)
class EggrollConfig:
    """``population`` members per step, ``group`` of them (an even number) per training prompt,
    so ``population // group`` prompts per step; Adam (or SGD) with learning rate ``lr``.

    ``sigma_relative``: ``sigma`` is sigma * sqrt(d_model) and the noise scale is
    ``sigma / sqrt(d_model)`` (the official sigma 7e-4 at width 2,048 is 0.032 so stated).
    ``estimator``: :data:`lowrank_es.es.eggroll.ESTIMATORS`. ``frozen``: leaf patterns without
    noise (:data:`BLOCK_MATRICES_ONLY`). ``greedy``: members answer greedily (T = 0) for their
    fitness. ``steps``: stop after this many updates instead of at the token budget."""

    population: int = 32
    group: int = 8
    rank: int = 1
    sigma: float = 0.02
    lr: float = 3e-3
    optimizer: str = "adam"  # "adam" or "sgd"
    null_control: bool = False  # True: each step's fitness is shuffled across members (no signal left)
    estimator: str = "gradient"
    sigma_relative: bool = False
    frozen: tuple[str, ...] = ()
    greedy: bool = False
    steps: int | None = None

    def __post_init__(self) -> None:
        _check_steps(self.steps)
        if not (isinstance(self.group, int) and self.group >= 2 and self.group % 2 == 0):
            raise ValueError(f"group must be an even integer >= 2 (antithetic pairs), got {self.group!r}")
        if not (isinstance(self.population, int) and self.population >= self.group and self.population % self.group == 0):
            raise ValueError(f"population must be a positive multiple of group={self.group}, got {self.population!r}")

    @property
    def prompts(self) -> int:
        return self.population // self.group

    @property
    def noise_sigma(self) -> float:
        """The noise scale the strategy uses."""
        return self.sigma / MODEL.d_model ** 0.5 if self.sigma_relative else self.sigma


def _check_steps(steps) -> None:
    if steps is not None and not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be None (stop at the token budget) or an integer >= 1, got {steps!r}")


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """``sequences_per_step`` answers per step: ``sequences_per_step // group`` prompts x ``group``."""

    group: int = 8
    sequences_per_step: int = SEQ_CHUNK
    lr: float = 3e-4
    clip_eps: float = 0.2
    beta: float = 0.0
    inner_steps: int = 2
    steps: int | None = None  # stop after this many updates instead of at the token budget

    def __post_init__(self) -> None:
        _check_steps(self.steps)
        if not (isinstance(self.group, int) and self.group >= 2 and self.sequences_per_step % self.group == 0):
            raise ValueError(f"group must be an integer >= 2 dividing sequences_per_step="
                             f"{self.sequences_per_step}, got {self.group!r}")

    @property
    def prompts(self) -> int:
        return self.sequences_per_step // self.group


# ---------------------------------------------------------------------------
# EGGROLL
# ---------------------------------------------------------------------------


_OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd}


def make_es(e: EggrollConfig) -> EGGROLL:
    """The EGGROLL strategy of a config. Cached on the fields the strategy depends on, so its
    jitted steps are reused across seeds and by the null control (which differs only in what
    the loop does with the fitness)."""
    if e.optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {e.optimizer!r}")
    return _strategy(e.noise_sigma, e.population, e.rank, e.optimizer, e.lr, e.estimator, e.frozen)


@lru_cache(maxsize=32)
def _strategy(noise_sigma: float, population: int, rank: int, optimizer: str, lr: float, estimator: str,
              frozen: tuple[str, ...]) -> EGGROLL:
    opt = _OPTIMIZERS[optimizer](lr)
    # the fitness is already normalised per group (group_fitness): "raw" hands it on unchanged
    return EGGROLL(sigma=noise_sigma, population=population, rank=rank, antithetic=True,
                   fitness_shaping="raw", optimizer=opt, clip_rank=True, estimator=estimator, frozen=frozen)


@lru_cache(maxsize=32)
def _jitted_tell(es: EGGROLL):
    # one jitted update per strategy: a fresh jax.jit per run would compile it again each time
    return jax.jit(es.tell)


@partial(jax.jit, static_argnums=0, static_argnames="greedy")
def population_answers(es: EGGROLL, state: ESState, prompts, plens, keys, greedy: bool = False):
    """Member ``i`` answers ``prompts[i]`` with sampling key ``keys[i]`` (or greedily) through the
    factored layers (nothing materialised); the noise is drawn once per antithetic pair
    (``EGGROLL.map_members``). prompts: (N, T); plens, keys: (N,). -> tokens, generated (N, T)."""
    return es.map_members(state, lambda params, noise, i, p, l, k: generate(params, p, l, k, noise, greedy=greedy),
                          prompts, plens, keys)


def group_fitness(rewards: np.ndarray, group: int, eps: float = 1e-5) -> np.ndarray:
    """Rewards (N,) of members answering in groups of ``group`` consecutive members: reward minus
    its group's mean, over the standard deviation of all N rewards (the official EGGROLL code's
    fitness for LLM tasks). -> (N,); all zeros when every reward is equal."""
    r = np.asarray(rewards, np.float64)
    if r.ndim != 1 or r.size % group:
        raise ValueError(f"rewards must be (N,) with N a multiple of group={group}, got shape {r.shape}")
    g = r.reshape(-1, group)
    return ((g - g.mean(axis=1, keepdims=True)) / np.sqrt(r.var() + eps)).ravel()


#: Columns of a log's ``curve`` rows (records made before greedy curves have the first three).
CURVE_COLUMNS = ("tokens", "seconds", "sampled", "greedy", "step")


def _eval_point(params, val, fc: FinetuneConfig, tokens, seconds, step, curve):
    key = jax.random.key(VAL_KEY)
    acc = accuracy(params, val, key, samples=fc.val_samples, difficulty=fc.difficulty).mean()
    greedy = accuracy(params, val, key, greedy=True, difficulty=fc.difficulty).mean()
    curve.append((int(tokens), float(seconds), float(acc), float(greedy), int(step)))


def _problems(fc: FinetuneConfig):
    train = rs.make_problems("train", fc.n_train_problems, seed=0, difficulty=fc.difficulty)
    val = rs.make_problems(fc.eval_split, fc.n_val, seed=0, difficulty=fc.difficulty)
    return train, val


class _Budget:
    """When a run stops and where it is evaluated: ``steps`` updates if given, else
    ``fc.token_budget`` generated tokens; ``fc.eval_points`` evenly spaced marks in that unit."""

    def __init__(self, fc: FinetuneConfig, steps: int | None):
        if steps is None and fc.token_budget is None:
            raise ValueError("token_budget is None, so the method config must set steps (an integer >= 1), got None")
        self.steps = steps
        self.total = steps if steps is not None else fc.token_budget
        self.marks = np.linspace(0, self.total, fc.eval_points)
        self.next = 1

    def progress(self, tokens: int, steps: int) -> int:
        return steps if self.steps is not None else tokens

    def done(self, tokens: int, steps: int) -> bool:
        return self.progress(tokens, steps) >= self.total

    def due(self, tokens: int, steps: int) -> bool:
        """True once per mark passed (call until False)."""
        if self.next < len(self.marks) and self.progress(tokens, steps) >= self.marks[self.next]:
            self.next += 1
            return True
        return False


def eggroll_finetune(params: dict, seed: int, fc: FinetuneConfig = FinetuneConfig(),
                     ec: EggrollConfig = EggrollConfig()) -> tuple[dict, dict]:
    """EGGROLL fine-tuning until ``fc.token_budget`` answer tokens are generated.

    Returns (final params, log with ``curve`` [rows of :data:`CURVE_COLUMNS`], ``tokens``,
    ``seconds``, ``steps``, ``sequences_per_step``)."""
    es = make_es(ec)
    T = seq_len(fc.difficulty)
    train, val = _problems(fc)
    k_es, k_sample, _ = jax.random.split(jax.random.key(seed), 3)
    state = es.init(k_es, params)
    tell = _jitted_tell(es)

    def sample(state, step, rng):
        batch = [train[i] for i in rng.integers(0, len(train), ec.prompts)]
        prompts, plens = encode_prompts(batch, T)
        keys = jax.random.split(jax.random.fold_in(k_sample, step + 1), ec.prompts)
        rep = lambda x: jnp.repeat(jnp.asarray(x), ec.group, axis=0)  # member i answers prompt i // group
        toks, gen = population_answers(es, state, rep(prompts), rep(plens), rep(keys), greedy=ec.greedy)
        return [p for p in batch for _ in range(ec.group)], np.asarray(toks), np.asarray(gen)

    # compile outside the clock: one throw-away step on another stream of prompts and keys
    sample(state, -1, np.random.default_rng([seed, 2]))
    jax.block_until_ready(tell(state, jnp.zeros((es.population,), jnp.float32))[0].params)
    rng = np.random.default_rng([seed, 1])
    null_rng = np.random.default_rng([seed, 3])
    tokens, seconds, steps, curve = 0, 0.0, 0, []
    budget = _Budget(fc, ec.steps)
    _eval_point(state.params, val, fc, 0, 0.0, 0, curve)
    while not budget.done(tokens, steps):
        t0 = time.perf_counter()
        problems, toks, gen = sample(state, steps, rng)
        r = rewards_of(problems, answers_of(toks, gen), fc.partial_credit)
        fit = group_fitness(r, ec.group)
        if ec.null_control:  # same tokens, same update sizes, fitness unrelated to the member's noise
            fit = null_rng.permutation(fit)
        state, _ = tell(state, jnp.asarray(fit, jnp.float32))
        jax.block_until_ready(state.params)
        seconds += time.perf_counter() - t0
        tokens += int(gen.sum())
        steps += 1
        while budget.due(tokens, steps):
            _eval_point(state.params, val, fc, tokens, seconds, steps, curve)
    return state.params, {"curve": curve, "tokens": tokens, "seconds": seconds, "steps": steps,
                          "sequences_per_step": es.population}


# ---------------------------------------------------------------------------
# GRPO
# ---------------------------------------------------------------------------


def _batched_logprobs(params, tokens):
    return jax.vmap(lambda t: tf.sequence_logprobs(params, t, n_heads=MODEL.n_heads))(tokens)


@lru_cache(maxsize=32)
def grpo_functions(gc: GRPOConfig):
    """(jitted update, jitted log-probabilities, optimizer) of a GRPO config."""
    opt = optax.adam(gc.lr)
    update = make_update(_batched_logprobs, opt, gc.clip_eps, gc.beta)
    return jax.jit(update), jax.jit(_batched_logprobs), opt


def grpo_finetune(params: dict, seed: int, fc: FinetuneConfig = FinetuneConfig(),
                  gc: GRPOConfig = GRPOConfig()) -> tuple[dict, dict]:
    """GRPO fine-tuning until ``fc.token_budget`` answer tokens are generated. Each step samples
    ``group`` answers for each of ``sequences_per_step // group`` prompts. Same return as
    :func:`eggroll_finetune`."""
    update, logprobs, opt = grpo_functions(gc)
    T = seq_len(fc.difficulty)
    train, val = _problems(fc)
    _, k_sample, _ = jax.random.split(jax.random.key(seed), 3)
    ref = params
    opt_state = opt.init(params)
    G, B = gc.group, gc.prompts

    def sample(params, step, rng):
        batch = [train[i] for i in rng.integers(0, len(train), B)]
        prompts, plens = encode_prompts(batch, T)
        P, L = jnp.asarray(np.repeat(prompts, G, axis=0)), jnp.asarray(np.repeat(plens, G, axis=0))
        keys = jax.random.split(jax.random.fold_in(k_sample, step + 1), B * G)
        return batch, sample_batch(params, P, L, keys)

    # compile outside the clock: one throw-away step
    _, (toks, gen) = sample(params, -1, np.random.default_rng([seed, 2]))
    z = jnp.zeros(toks.shape, jnp.float32)
    jax.block_until_ready(update(params, opt_state, toks, z, z[:, 0], logprobs(params, toks), z)[0])
    rng = np.random.default_rng([seed, 1])
    tokens, seconds, steps, curve = 0, 0.0, 0, []
    budget = _Budget(fc, gc.steps)
    _eval_point(params, val, fc, 0, 0.0, 0, curve)
    while not budget.done(tokens, steps):
        t0 = time.perf_counter()
        batch, (toks, gen) = sample(params, steps, rng)
        gen_np = np.asarray(gen)
        r = rewards_of([p for p in batch for _ in range(G)], answers_of(np.asarray(toks), gen_np), fc.partial_credit)
        adv = group_advantages(jnp.asarray(r.reshape(B, G), jnp.float32)).reshape(B * G)
        mask = gen.astype(jnp.float32)
        logp_old = logprobs(params, toks)
        logp_ref = logprobs(ref, toks) if gc.beta > 0 else logp_old
        for _ in range(gc.inner_steps):
            params, opt_state, _ = update(params, opt_state, toks, mask, adv, logp_old, logp_ref)
        jax.block_until_ready(params)
        seconds += time.perf_counter() - t0
        tokens += int(gen_np.sum())
        steps += 1
        while budget.due(tokens, steps):
            _eval_point(params, val, fc, tokens, seconds, steps, curve)
    return params, {"curve": curve, "tokens": tokens, "seconds": seconds, "steps": steps,
                    "sequences_per_step": B * G}


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------


def _peak_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes)


def memory_per_sequence(params: dict, ec: EggrollConfig = EggrollConfig(), gc: GRPOConfig = GRPOConfig(),
                        difficulty: rs.Difficulty = DIFFICULTY) -> dict[str, float]:
    """Bytes per sampled sequence of one update step, from the compiled executables'
    ``memory_analysis()`` (arguments + outputs + temporaries). A step is the sampling program
    plus the update program; its peak is the larger of the two, divided by the sequences the
    step samples (the population for EGGROLL, prompts x group for GRPO)."""
    T = seq_len(difficulty)
    es = make_es(ec)
    N = es.population
    state = es.init(jax.random.key(0), params)
    prompts = jnp.zeros((N, T), jnp.int32)
    plens = jnp.full((N,), 5, jnp.int32)
    keys = jax.random.split(jax.random.key(0), N)
    e_sample = population_answers.lower(es, state, prompts, plens, keys).compile()
    e_tell = jax.jit(es.tell).lower(state, jnp.zeros((es.population,), jnp.float32)).compile()
    S = gc.sequences_per_step
    update, _, opt = grpo_functions(gc)
    P, L = jnp.zeros((S, T), jnp.int32), jnp.full((S,), 5, jnp.int32)
    g_sample = sample_batch.lower(params, P, L, jax.random.split(jax.random.key(0), S)).compile()
    z = jnp.zeros((S, T), jnp.float32)
    g_update = update.lower(params, opt.init(params), P, z, jnp.zeros((S,), jnp.float32), z, z).compile()
    e_peak = max(_peak_bytes(e_sample), _peak_bytes(e_tell))
    g_peak = max(_peak_bytes(g_sample), _peak_bytes(g_update))
    e_seq, g_seq = N, S
    return {"eggroll_bytes_per_seq": e_peak / e_seq, "grpo_bytes_per_seq": g_peak / g_seq,
            "eggroll_peak_bytes": e_peak, "grpo_peak_bytes": g_peak,
            "eggroll_sequences": e_seq, "grpo_sequences": g_seq,
            "ratio_grpo_over_eggroll": (g_peak / g_seq) / (e_peak / e_seq)}

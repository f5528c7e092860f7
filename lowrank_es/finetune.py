"""Pre-training a small language model on an imperfect solver, then fine-tuning it on the
verifiable Countdown reward with EGGROLL or GRPO under the same budget of generated tokens.

* :func:`pretrain`: supervised next-token learning (optax Adam) on answers written by
  :func:`~lowrank_es.tasks.countdown.imperfect_countdown_solver`; deterministic in its seed.
* :func:`eggroll_finetune`: a population of low-rank perturbations of the whole transformer; every
  member answers the same batch of training prompts (with the same sampling keys: common random
  numbers), its fitness is its mean reward, and the mean moves through ``EGGROLL.tell``.
* :func:`grpo_finetune`: groups of answers per prompt, group-normalised advantages, clipped ratio,
  optional k3 KL to the starting checkpoint (:mod:`lowrank_es.baselines.grpo`).

Both loops stop once they have generated ``token_budget`` answer tokens (end tokens included),
record validation accuracy against tokens and training seconds (evaluation time excluded), and
return the final parameters.
"""

from __future__ import annotations

import dataclasses
import time
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.tasks import countdown as rs
from lowrank_es.models import transformer as tf
from lowrank_es.es.eggroll import EGGROLL, ESState
from lowrank_es.baselines.grpo import group_advantages, make_update

PyTree = Any

DATA_DIR = Path(__file__).resolve().parent / "tasks" / "data"
CHECKPOINT = DATA_DIR / "countdown_pretrained.npz"

#: The model and pre-training recipe of the committed checkpoint.
MODEL = tf.Config(vocab=rs.VOCAB_SIZE, max_len=32, d_model=64, n_heads=4, n_layers=2, d_ff=256)
DIFFICULTY = rs.Difficulty(3, 9)

#: Members answered per compiled call (populations are multiples of it), and sequences per
#: compiled sampling / GRPO update call: fixed shapes, so sweeps reuse one compiled program.
MEMBER_CHUNK = 8
SEQ_CHUNK = 128


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    seed: int = 0
    steps: int = 800
    batch: int = 128
    lr: float = 2e-3
    p_correct: float = 0.35
    n_train_problems: int = 2000
    prefix_steps: int = 20  # parameters after this many steps are stored to test reproduction


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------


def seq_len(difficulty: rs.Difficulty = DIFFICULTY) -> int:
    return difficulty.max_prompt_len + difficulty.max_answer_len


def encode_prompts(problems: Sequence[rs.Problem], T: int) -> tuple[np.ndarray, np.ndarray]:
    """Prompts padded to (n, T) int32, and their lengths (n,)."""
    out = np.zeros((len(problems), T), np.int32)
    lens = np.zeros((len(problems),), np.int32)
    for i, p in enumerate(problems):
        ids = rs.encode(p.prompt)
        if len(ids) >= T:
            raise ValueError(f"T must exceed the prompt length {len(ids)}, got {T}")
        out[i, : len(ids)] = ids
        lens[i] = len(ids)
    return out, lens


def encode_examples(problems: Sequence[rs.Problem], answers: Sequence[str], T: int) -> tuple[np.ndarray, np.ndarray]:
    """Prompt + answer + end token, padded to (n, T); and a (n, T) mask of answer positions."""
    toks = np.zeros((len(problems), T), np.int32)
    mask = np.zeros((len(problems), T), np.float32)
    for i, (p, a) in enumerate(zip(problems, answers)):
        pr, an = rs.encode(p.prompt), rs.encode(a) + [rs.EOS]
        if len(pr) + len(an) > T:
            raise ValueError(f"T must be >= {len(pr) + len(an)} for example {p.prompt + a!r}, got {T}")
        toks[i, : len(pr) + len(an)] = pr + an
        mask[i, len(pr) : len(pr) + len(an)] = 1.0
    return toks, mask


def answers_of(tokens: np.ndarray, generated: np.ndarray) -> list[str]:
    """Decode the generated part of each row of (n, T) tokens."""
    tokens, generated = np.asarray(tokens), np.asarray(generated)
    return [rs.decode(t[g]) for t, g in zip(tokens, generated)]


def rewards_of(problems: Sequence[rs.Problem], answers: Sequence[str], partial_credit: float = 0.0) -> np.ndarray:
    return np.array([rs.countdown_reward(p.numbers, p.target, a, partial_credit) for p, a in zip(problems, answers)])


# ---------------------------------------------------------------------------
# Pre-training
# ---------------------------------------------------------------------------


def _xent(params, toks, mask, n_heads):
    lp = jax.vmap(lambda t: tf.sequence_logprobs(params, t, n_heads=n_heads))(toks)
    return -(lp * mask).sum() / mask.sum()


@partial(jax.jit, static_argnums=(4, 5))
def _pretrain_step(params, opt_state, toks, mask, opt, n_heads):
    loss, g = jax.value_and_grad(_xent)(params, toks, mask, n_heads)
    updates, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@lru_cache(maxsize=8)
def _adam(lr: float) -> optax.GradientTransformation:
    return optax.adam(lr)


def pretrain(
    cfg: PretrainConfig = PretrainConfig(), model: tf.Config = MODEL, difficulty: rs.Difficulty = DIFFICULTY,
    steps: int | None = None, snapshots: dict | None = None,
) -> tuple[dict, list[float]]:
    """Supervised pre-training from ``cfg.seed``; ``steps`` overrides ``cfg.steps`` (a prefix of the
    same run). Returns the parameters and the loss per step; if ``snapshots`` is a dict, the
    parameters after ``cfg.prefix_steps`` steps are stored in it under ``"prefix"``."""
    steps = cfg.steps if steps is None else steps
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    T = seq_len(difficulty)
    problems = rs.make_problems("train", cfg.n_train_problems, seed=cfg.seed, difficulty=difficulty)
    params = tf.init(jax.random.key(cfg.seed), model)
    opt = _adam(cfg.lr)
    opt_state = opt.init(params)
    rng = np.random.default_rng([cfg.seed, 12345])
    losses = []
    for step in range(steps):
        if snapshots is not None and step == cfg.prefix_steps:
            snapshots["prefix"] = params
        idx = rng.integers(0, len(problems), cfg.batch)
        batch = [problems[i] for i in idx]
        answers = [rs.imperfect_countdown_solver(p, rng, cfg.p_correct) for p in batch]
        toks, mask = encode_examples(batch, answers, T)
        params, opt_state, loss = _pretrain_step(params, opt_state, jnp.asarray(toks), jnp.asarray(mask), opt,
                                                 model.n_heads)
        losses.append(float(loss))
    return params, losses


def _flatten(params: dict) -> dict[str, np.ndarray]:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


def _unflatten(arrays: dict[str, np.ndarray], like: dict) -> dict:
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    leaves = []
    for k, v in flat:
        a = arrays[jax.tree_util.keystr(k)]
        if a.shape != v.shape:
            raise ValueError(f"checkpoint array {jax.tree_util.keystr(k)} has shape {a.shape}, expected {v.shape}")
        leaves.append(jnp.asarray(a, v.dtype))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def save_pretrained(path: Path, params: dict, prefix_params: dict, cfg: PretrainConfig) -> None:
    """Write the checkpoint (and the parameters after ``cfg.prefix_steps`` steps) to ``path``."""
    arrays = {f"final{k}": v for k, v in _flatten(params).items()}
    arrays |= {f"prefix{k}": v for k, v in _flatten(prefix_params).items()}
    arrays["config"] = np.array([cfg.seed, cfg.steps, cfg.batch, cfg.prefix_steps, cfg.n_train_problems])
    arrays["config_float"] = np.array([cfg.lr, cfg.p_correct])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_pretrained(path: Path = CHECKPOINT, which: str = "final") -> tuple[dict, PretrainConfig]:
    """The committed checkpoint (``which="final"``) or its ``prefix`` parameters, and its recipe."""
    if which not in ("final", "prefix"):
        raise ValueError(f"which must be 'final' or 'prefix', got {which!r}")
    like = tf.init(jax.random.key(0), MODEL)
    with np.load(path) as data:
        arrays = {k[len(which):]: data[k] for k in data.files if k.startswith(which)}
        c, cf = data["config"], data["config_float"]
    cfg = PretrainConfig(seed=int(c[0]), steps=int(c[1]), batch=int(c[2]), prefix_steps=int(c[3]),
                         n_train_problems=int(c[4]), lr=float(cf[0]), p_correct=float(cf[1]))
    return _unflatten(arrays, like), cfg


def build_checkpoint(cfg: PretrainConfig = PretrainConfig(), path: Path = CHECKPOINT) -> dict:
    """Pre-train from scratch and write the checkpoint (run once; the result is committed)."""
    snaps: dict = {}
    params, _ = pretrain(cfg, snapshots=snaps)
    save_pretrained(path, params, snaps["prefix"], cfg)
    return params


# ---------------------------------------------------------------------------
# Sampling and evaluation
# ---------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("n_heads", "greedy", "temperature"))
def sample_batch(params, prompts, plens, keys, *, n_heads: int, temperature: float = 1.0, greedy: bool = False):
    """Answers of the unperturbed model. prompts: (n, T), plens: (n,), keys: (n,) -> tokens, generated."""
    return jax.vmap(
        lambda p, l, k: tf.generate(params, p, l, k, None, n_heads=n_heads, temperature=temperature, greedy=greedy)
    )(prompts, plens, keys)


def accuracy(
    params: dict, problems: Sequence[rs.Problem], key: jax.Array, *, samples: int = 1, greedy: bool = False,
    difficulty: rs.Difficulty = DIFFICULTY, n_heads: int = MODEL.n_heads, return_answers: bool = False,
):
    """Fraction of correct answers (sampled at temperature 1, ``samples`` per problem, or greedy).

    Returns the per-problem mean reward (n,) (and the answers (n, samples) if asked)."""
    T = seq_len(difficulty)
    prompts, plens = encode_prompts(problems, T)
    n = len(problems)
    reps = 1 if greedy else samples
    P = jnp.asarray(np.repeat(prompts, reps, axis=0))
    L = jnp.asarray(np.repeat(plens, reps, axis=0))
    keys = jax.random.split(key, n * reps)
    answers = []
    for c in range(0, n * reps, SEQ_CHUNK):  # fixed-size calls: one compiled program
        idx = np.minimum(np.arange(c, c + SEQ_CHUNK), n * reps - 1)
        toks, gen = sample_batch(params, P[idx], L[idx], keys[idx], n_heads=n_heads, greedy=greedy)
        answers += answers_of(toks, gen)[: min(SEQ_CHUNK, n * reps - c)]
    r = rewards_of([p for p in problems for _ in range(reps)], answers).reshape(n, reps).mean(axis=1)
    if return_answers:
        return r, [answers[i * reps : (i + 1) * reps] for i in range(n)]
    return r


# ---------------------------------------------------------------------------
# Fine-tuning
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Shared settings: budget in generated tokens, prompts per step, evaluation schedule."""

    token_budget: int = 40_000
    eval_points: int = 6
    n_val: int = 200
    val_samples: int = 2
    partial_credit: float = 0.0
    difficulty: rs.Difficulty = DIFFICULTY
    n_train_problems: int = 2000


@dataclasses.dataclass(frozen=True)
class EggrollConfig:
    """population (a multiple of 8) members answer ``prompts`` training prompts per step."""

    population: int = 32
    prompts: int = 16
    rank: int = 1
    sigma: float = 0.02
    lr: float = 3e-3
    optimizer: str = "adam"  # "adam" or "sgd"
    fitness_shaping: str = "zscore"


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """``sequences_per_step`` answers per step: ``sequences_per_step // group`` prompts x ``group``."""

    group: int = 8
    sequences_per_step: int = SEQ_CHUNK
    lr: float = 3e-4
    clip_eps: float = 0.2
    beta: float = 0.0
    inner_steps: int = 2

    def __post_init__(self) -> None:
        if not (isinstance(self.group, int) and self.group >= 2 and self.sequences_per_step % self.group == 0):
            raise ValueError(f"group must be an integer >= 2 dividing sequences_per_step="
                             f"{self.sequences_per_step}, got {self.group!r}")

    @property
    def prompts(self) -> int:
        return self.sequences_per_step // self.group


@lru_cache(maxsize=32)
def make_es(e: EggrollConfig) -> EGGROLL:
    """The EGGROLL strategy of a config (cached so jitted steps are reused across seeds)."""
    opts = {"adam": optax.adam, "sgd": optax.sgd}
    if e.optimizer not in opts:
        raise ValueError(f"optimizer must be one of {sorted(opts)}, got {e.optimizer!r}")
    return EGGROLL(sigma=e.sigma, population=e.population, rank=e.rank, antithetic=True,
                   fitness_shaping=e.fitness_shaping, optimizer=opts[e.optimizer](e.lr), clip_rank=True)


@lru_cache(maxsize=32)
def noise_fn(es: EGGROLL):
    """Jitted ``(state, members (C,)) -> noise pytree with a leading (C,) axis``."""
    return jax.jit(jax.vmap(es.member_noise, in_axes=(None, 0)))


@partial(jax.jit, static_argnames=("n_heads",))
def population_sample(params, noise, prompts, plens, keys, *, n_heads: int):
    """Every member of a chunk answers every prompt, through the factored layers (nothing
    materialised), with the same sampling keys for every member (common random numbers).

    noise: member noise with a leading (C,) axis; prompts: (B, T); plens, keys: (B,).
    Returns tokens, generated: (C, B, T)."""

    def member(nz):
        return jax.vmap(lambda p, l, k: tf.generate(params, p, l, k, nz, n_heads=n_heads))(prompts, plens, keys)

    return jax.vmap(member)(noise)


def population_answers(es: EGGROLL, state: ESState, prompts, plens, keys, chunk: int = MEMBER_CHUNK):
    """tokens, generated: (N, B, T) numpy arrays for the whole population, ``chunk`` members per call."""
    if es.population % chunk:
        raise ValueError(f"population must be a multiple of {chunk}, got {es.population}")
    toks, gens = [], []
    for c in range(es.population // chunk):
        nz = noise_fn(es)(state, jnp.arange(c * chunk, (c + 1) * chunk))
        t, g = population_sample(state.params, nz, prompts, plens, keys, n_heads=MODEL.n_heads)
        toks.append(np.asarray(t))
        gens.append(np.asarray(g))
    return np.concatenate(toks), np.concatenate(gens)


#: Validation answers use one fixed key for every seed and method (common random numbers).
VAL_KEY = 20_000


def _eval_curve_point(params, val, fc: FinetuneConfig, tokens, seconds, curve):
    acc = accuracy(params, val, jax.random.key(VAL_KEY), samples=fc.val_samples, difficulty=fc.difficulty).mean()
    curve.append((int(tokens), float(seconds), float(acc)))


def eggroll_finetune(params: dict, seed: int, fc: FinetuneConfig = FinetuneConfig(),
                     ec: EggrollConfig = EggrollConfig()) -> tuple[dict, dict]:
    """EGGROLL fine-tuning until ``fc.token_budget`` answer tokens are generated.

    Returns (final params, log with ``curve`` [(tokens, seconds, val accuracy)], ``tokens``,
    ``seconds``, ``steps``, ``sequences_per_step``)."""
    es = make_es(ec)
    T = seq_len(fc.difficulty)
    train = rs.make_problems("train", fc.n_train_problems, seed=0, difficulty=fc.difficulty)
    val = rs.make_problems("val", fc.n_val, seed=0, difficulty=fc.difficulty)
    key = jax.random.key(seed)
    k_es, k_sample, _ = jax.random.split(key, 3)
    state = es.init(k_es, params)
    rng = np.random.default_rng([seed, 1])
    tokens, seconds, steps, curve = 0, 0.0, 0, []
    marks = np.linspace(0, fc.token_budget, fc.eval_points)
    _eval_curve_point(state.params, val, fc, 0, 0.0, curve)
    next_mark = 1
    def sample(state, step):
        batch = [train[i] for i in rng.integers(0, len(train), ec.prompts)]
        prompts, plens = encode_prompts(batch, T)
        keys = jax.random.split(jax.random.fold_in(k_sample, step + 1), ec.prompts)
        return batch, population_answers(es, state, jnp.asarray(prompts), jnp.asarray(plens), keys)

    # compile outside the clock: one throw-away step on another stream of prompts and keys
    _, (_, g0) = sample(state, -1)
    jax.block_until_ready(es.tell(state, jnp.zeros((es.population,), jnp.float32))[0].params)
    rng = np.random.default_rng([seed, 1])
    while tokens < fc.token_budget:
        t0 = time.perf_counter()
        batch, (toks, gen) = sample(state, steps)
        N, B = toks.shape[:2]
        r = rewards_of(batch * N, answers_of(toks.reshape(N * B, T), gen.reshape(N * B, T)), fc.partial_credit)
        fitness = r.reshape(N, B).mean(axis=1)
        state, _ = es.tell(state, jnp.asarray(fitness, jnp.float32))
        jax.block_until_ready(state.params)
        seconds += time.perf_counter() - t0
        tokens += int(gen.sum())
        steps += 1
        while next_mark < len(marks) and tokens >= marks[next_mark]:
            next_mark += 1
            _eval_curve_point(state.params, val, fc, tokens, seconds, curve)
    return state.params, {"curve": curve, "tokens": tokens, "seconds": seconds, "steps": steps,
                          "sequences_per_step": es.population * ec.prompts}


def _batched_logprobs(params, tokens, n_heads):
    return jax.vmap(lambda t: tf.sequence_logprobs(params, t, n_heads=n_heads))(tokens)


@lru_cache(maxsize=32)
def grpo_functions(gc: GRPOConfig, n_heads: int):
    """(jitted update, jitted log-probabilities, optimizer) of a GRPO config."""
    opt = optax.adam(gc.lr)
    update = make_update(lambda p, t: _batched_logprobs(p, t, n_heads), opt, gc.clip_eps, gc.beta)
    return jax.jit(update), jax.jit(partial(_batched_logprobs, n_heads=n_heads)), opt


def grpo_finetune(params: dict, seed: int, fc: FinetuneConfig = FinetuneConfig(),
                  gc: GRPOConfig = GRPOConfig()) -> tuple[dict, dict]:
    """GRPO fine-tuning until ``fc.token_budget`` answer tokens are generated. Each step samples
    ``group`` answers for each of ``sequences_per_step // group`` prompts. Same return as :func:`eggroll_finetune`."""
    update, logprobs, opt = grpo_functions(gc, MODEL.n_heads)
    T = seq_len(fc.difficulty)
    train = rs.make_problems("train", fc.n_train_problems, seed=0, difficulty=fc.difficulty)
    val = rs.make_problems("val", fc.n_val, seed=0, difficulty=fc.difficulty)
    key = jax.random.key(seed)
    _, k_sample, _ = jax.random.split(key, 3)
    ref = params
    opt_state = opt.init(params)
    rng = np.random.default_rng([seed, 1])
    tokens, seconds, steps, curve = 0, 0.0, 0, []
    marks = np.linspace(0, fc.token_budget, fc.eval_points)
    _eval_curve_point(params, val, fc, 0, 0.0, curve)
    next_mark = 1
    G, B = gc.group, gc.prompts

    def sample(params, step):
        batch = [train[i] for i in rng.integers(0, len(train), B)]
        prompts, plens = encode_prompts(batch, T)
        P, L = jnp.asarray(np.repeat(prompts, G, axis=0)), jnp.asarray(np.repeat(plens, G, axis=0))
        keys = jax.random.split(jax.random.fold_in(k_sample, step + 1), B * G)
        return batch, sample_batch(params, P, L, keys, n_heads=MODEL.n_heads)

    # compile outside the clock: one throw-away step
    _, (toks, gen) = sample(params, -1)
    z = jnp.zeros(toks.shape, jnp.float32)
    jax.block_until_ready(update(params, opt_state, toks, z, z[:, 0], logprobs(params, toks), z)[0])
    rng = np.random.default_rng([seed, 1])
    while tokens < fc.token_budget:
        t0 = time.perf_counter()
        batch, (toks, gen) = sample(params, steps)
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
        while next_mark < len(marks) and tokens >= marks[next_mark]:
            next_mark += 1
            _eval_curve_point(params, val, fc, tokens, seconds, curve)
    return params, {"curve": curve, "tokens": tokens, "seconds": seconds, "steps": steps,
                    "sequences_per_step": B * G}


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------


def _peak_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes)


def memory_per_sequence(params: dict, fc: FinetuneConfig = FinetuneConfig(), ec: EggrollConfig = EggrollConfig(),
                        gc: GRPOConfig = GRPOConfig()) -> dict[str, float]:
    """Bytes per sampled sequence of one update step, from the compiled executables'
    ``memory_analysis()`` (arguments + outputs + temporaries). A step is the sampling program
    plus the update program; its peak is the larger of the two, divided by the sequences the
    step samples (population x prompts for EGGROLL, prompts x group for GRPO)."""
    T = seq_len(fc.difficulty)
    B = ec.prompts
    es = make_es(ec)
    state = es.init(jax.random.key(0), params)
    prompts = jnp.zeros((B, T), jnp.int32)
    plens = jnp.full((B,), 5, jnp.int32)
    keys = jax.random.split(jax.random.key(0), B)
    noise = noise_fn(es)(state, jnp.arange(es.population))  # the whole population in one call
    e_sample = population_sample.lower(params, noise, prompts, plens, keys, n_heads=MODEL.n_heads).compile()
    fitness = jnp.zeros((es.population,), jnp.float32)
    e_tell = jax.jit(lambda s, f: es.tell(s, f)).lower(state, fitness).compile()
    S = gc.sequences_per_step
    update, logprobs, opt = grpo_functions(gc, MODEL.n_heads)
    P, L = jnp.zeros((S, T), jnp.int32), jnp.full((S,), 5, jnp.int32)
    g_sample = sample_batch.lower(params, P, L, jax.random.split(jax.random.key(0), S), n_heads=MODEL.n_heads).compile()
    z = jnp.zeros((S, T), jnp.float32)
    g_update = update.lower(params, opt.init(params), P, z, jnp.zeros((S,), jnp.float32), z, z).compile()
    e_peak = max(_peak_bytes(e_sample), _peak_bytes(e_tell))
    g_peak = max(_peak_bytes(g_sample), _peak_bytes(g_update))
    e_seq, g_seq = es.population * B, S
    return {"eggroll_bytes_per_seq": e_peak / e_seq, "grpo_bytes_per_seq": g_peak / g_seq,
            "eggroll_peak_bytes": e_peak, "grpo_peak_bytes": g_peak,
            "eggroll_sequences": e_seq, "grpo_sequences": g_seq,
            "ratio_grpo_over_eggroll": (g_peak / g_seq) / (e_peak / e_seq)}


# ---------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and Student-t half-width over independent runs (seeds). values: (n >= 2,)."""
    from scipy import stats

    v = np.asarray(values, float)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"values must be a 1-d sequence of at least 2 runs, got shape {v.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(half)


def proportion_ci(per_item: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and normal-approximation half-width of a mean of per-item scores in [0, 1] (items
    independent, e.g. test prompts), from their sample standard deviation."""
    from scipy import stats

    v = np.asarray(per_item, float)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"per_item must be a 1-d sequence of at least 2 items, got shape {v.shape}")
    half = stats.norm.ppf(0.5 + level / 2) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(half)


def welch_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """mean(a) - mean(b) and its Welch-Satterthwaite t half-width."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        raise ValueError(f"a and b need at least 2 runs each, got {a.size} and {b.size}")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = np.sqrt(va + vb)
    if se == 0:
        return float(a.mean() - b.mean()), 0.0
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return float(a.mean() - b.mean()), float(stats.t.ppf(0.5 + level / 2, dof) * se)


# ---------------------------------------------------------------------------
# The experiment of the notebook
# ---------------------------------------------------------------------------

TEST_KEY = 10_000


def test_accuracy(params: dict, n_test: int, samples: int, difficulty: rs.Difficulty = DIFFICULTY) -> np.ndarray:
    """Per-test-prompt accuracy (n_test,), sampled at temperature 1 with a fixed key shared by all
    methods (common random numbers across the compared models)."""
    test = rs.make_problems("test", n_test, seed=0, difficulty=difficulty)
    return accuracy(params, test, jax.random.key(TEST_KEY), samples=samples, difficulty=difficulty)


def run_comparison(params: dict, seeds: Sequence[int], fc: FinetuneConfig, ec: EggrollConfig, gc: GRPOConfig,
                   n_test: int = 200, test_samples: int = 2) -> dict:
    """Fine-tune ``params`` with both methods from every seed at the same token budget.

    Returns ``start`` (per-test-prompt accuracy of ``params``) and, per method, ``logs`` (one per
    seed), ``final`` (test accuracy per seed) and ``params`` (the last seed's fine-tuned model)."""
    if len(seeds) < 1:
        raise ValueError("seeds must list at least one seed")
    out = {"start": test_accuracy(params, n_test, test_samples, fc.difficulty)}
    for name, fn, cfg in (("eggroll", eggroll_finetune, ec), ("grpo", grpo_finetune, gc)):
        logs, final = [], []
        for s in seeds:
            p, log = fn(params, int(s), fc, cfg)
            logs.append(log)
            final.append(float(test_accuracy(p, n_test, test_samples, fc.difficulty).mean()))
        out[name] = {"logs": logs, "final": final, "params": p}
    return out


def sample_answers(params_by_name: dict[str, dict], n: int = 8, seed: int = 0,
                   difficulty: rs.Difficulty = DIFFICULTY) -> list[dict]:
    """One sampled answer per model for the first ``n`` test problems (same keys for every model):
    rows of {prompt, <name>: "answer (ok/x)"}."""
    test = rs.make_problems("test", n, seed=0, difficulty=difficulty)
    rows = [{"prompt": p.prompt} for p in test]
    for name, params in params_by_name.items():
        r, ans = accuracy(params, test, jax.random.key(seed), samples=1, difficulty=difficulty, return_answers=True)
        for row, a, ok in zip(rows, ans, r):
            row[name] = f"{a[0]} ({'ok' if ok == 1 else 'x'})"
    return rows

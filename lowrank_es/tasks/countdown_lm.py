"""The Countdown task for a small language model: encoding, the committed pre-trained checkpoint
(a task asset), sampling answers and measuring accuracy.

The checkpoint ``tasks/data/countdown_pretrained.npz`` is a character transformer
(:mod:`lowrank_es.models.transformer`) pre-trained by :func:`pretrain` (supervised next-token
learning, optax Adam) on answers written by
:func:`~lowrank_es.tasks.countdown.imperfect_countdown_solver`, so it starts at a moderate
accuracy with room to improve; :func:`build_checkpoint` rebuilds it from its seed, and the tests
re-run its first steps against the stored prefix.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache, partial
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.models import transformer as tf
from lowrank_es.tasks import countdown as rs

DATA_DIR = Path(__file__).resolve().parent / "data"
CHECKPOINT = DATA_DIR / "countdown_pretrained.npz"

#: The model and the task difficulty of the committed checkpoint.
MODEL = tf.Config(vocab=rs.VOCAB_SIZE, max_len=32, d_model=64, n_heads=4, n_layers=2, d_ff=256)
DIFFICULTY = rs.Difficulty(3, 9)

#: Sequences per compiled sampling call: a fixed shape, so every caller reuses one program.
SEQ_CHUNK = 128
#: Validation and test answers use fixed keys for every seed and method (common random numbers).
VAL_KEY = 20_000
TEST_KEY = 10_000


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
# Encoding and rewards
# ---------------------------------------------------------------------------


def seq_len(difficulty: rs.Difficulty = DIFFICULTY) -> int:
    """Positions a prompt and its longest answer need."""
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
    """The verifier's reward of each answer. -> (n,)"""
    return np.array([rs.countdown_reward(p.numbers, p.target, a, partial_credit) for p, a in zip(problems, answers)])


# ---------------------------------------------------------------------------
# Pre-training and the checkpoint
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


def pretrain(cfg: PretrainConfig = PretrainConfig(), model: tf.Config = MODEL, difficulty: rs.Difficulty = DIFFICULTY,
             steps: int | None = None, snapshots: dict | None = None) -> tuple[dict, list[float]]:
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
# Sampling and accuracy
# ---------------------------------------------------------------------------


def generate(params: dict, prompt: jax.Array, prompt_len: jax.Array, key: jax.Array, noise=None, *,
             temperature: float = 1.0, greedy: bool = False) -> tuple[jax.Array, jax.Array]:
    """One answer of the checkpoint's model (or a member: ``noise``) with the task's end and
    padding tokens: :func:`lowrank_es.models.transformer.generate`."""
    return tf.generate(params, prompt, prompt_len, key, noise, n_heads=MODEL.n_heads, eos=rs.EOS, pad=rs.PAD,
                       temperature=temperature, greedy=greedy)


@partial(jax.jit, static_argnames=("greedy", "temperature"))
def sample_batch(params, prompts, plens, keys, *, temperature: float = 1.0, greedy: bool = False):
    """Answers of the unperturbed model. prompts: (n, T), plens: (n,), keys: (n,) -> tokens, generated (n, T)."""
    return jax.vmap(lambda p, l, k: generate(params, p, l, k, temperature=temperature, greedy=greedy))(
        prompts, plens, keys)


def accuracy(params: dict, problems: Sequence[rs.Problem], key: jax.Array, *, samples: int = 1, greedy: bool = False,
             difficulty: rs.Difficulty = DIFFICULTY, return_answers: bool = False):
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
        toks, gen = sample_batch(params, P[idx], L[idx], keys[idx], greedy=greedy)
        answers += answers_of(toks, gen)[: min(SEQ_CHUNK, n * reps - c)]
    r = rewards_of([p for p in problems for _ in range(reps)], answers).reshape(n, reps).mean(axis=1)
    if return_answers:
        return r, [answers[i * reps : (i + 1) * reps] for i in range(n)]
    return r


def test_accuracy(params: dict, n_test: int, samples: int, difficulty: rs.Difficulty = DIFFICULTY) -> np.ndarray:
    """Per-test-prompt accuracy (n_test,), sampled at temperature 1 with a fixed key shared by all
    methods (common random numbers across the compared models)."""
    test = rs.make_problems("test", n_test, seed=0, difficulty=difficulty)
    return accuracy(params, test, jax.random.key(TEST_KEY), samples=samples, difficulty=difficulty)


test_accuracy.__test__ = False  # a measurement, not a pytest test


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

"""Exact unigram and bigram baselines in bits per character.

Counts are taken on the training tokens; the score is ``-mean log2 p`` over every validation
token. The bigram models score the first validation token with the add-one unigram (it has no
predecessor in the split), every later token ``v[t]`` given ``v[t-1]``.

- unigram, add-one:  ``p(c) = (n(c) + 1) / (N + V)``
- bigram, add-one:   ``p(c | a) = (n(a c) + 1) / (n(a .) + V)``
- bigram, interpolated Kneser–Ney with discount ``D``:
  ``p(c | a) = max(n(a c) - D, 0) / n(a .) + D * N1+(a .) / n(a .) * p_cont(c)``, with
  ``p_cont(c) = (N1+(. c) + 1) / (N1+(. .) + V)`` (the continuation probability, add-one so that
  characters never seen after anything keep some mass); ``p(c | a) = p_cont(c)`` when ``n(a .) = 0``.
"""

from __future__ import annotations

import numpy as np

SMOOTHINGS = ("add_one", "kneser_ney")


def _check(tokens: np.ndarray, vocab_size: int, name: str) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of token ids, got shape {tokens.shape}")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise ValueError(f"{name} must hold ids in [0, {vocab_size - 1}]")
    return tokens.astype(np.int64)


def unigram_probs(train: np.ndarray, vocab_size: int) -> np.ndarray:
    """Add-one unigram distribution. -> (V,)"""
    train = _check(train, vocab_size, "train")
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64)
    return (counts + 1.0) / (counts.sum() + vocab_size)


def bigram_counts(train: np.ndarray, vocab_size: int) -> np.ndarray:
    """``n[a, c]`` = number of times ``c`` follows ``a`` in ``train``. -> (V, V)"""
    train = _check(train, vocab_size, "train")
    flat = np.bincount(train[:-1] * vocab_size + train[1:], minlength=vocab_size * vocab_size)
    return flat.reshape(vocab_size, vocab_size).astype(np.float64)


def bigram_probs(train: np.ndarray, vocab_size: int, smoothing: str = "add_one", discount: float = 0.75) -> np.ndarray:
    """Conditional table ``P[a, c] = p(c | a)``; every row sums to 1. -> (V, V)"""
    n = bigram_counts(train, vocab_size)
    if smoothing == "add_one":
        return (n + 1.0) / (n.sum(axis=1, keepdims=True) + vocab_size)
    if smoothing != "kneser_ney":
        raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
    if not 0.0 < discount < 1.0:
        raise ValueError(f"discount must be in (0, 1), got {discount}")
    seen = n > 0
    cont = (seen.sum(axis=0) + 1.0) / (seen.sum() + vocab_size)  # p_cont(c)
    row = n.sum(axis=1, keepdims=True)
    safe = np.where(row > 0, row, 1.0)
    lam = discount * seen.sum(axis=1, keepdims=True) / safe
    p = np.maximum(n - discount, 0.0) / safe + lam * cont[None, :]
    return np.where(row > 0, p, cont[None, :])


def unigram_bits(train: np.ndarray, valid: np.ndarray, vocab_size: int) -> float:
    """Add-one unigram bits per character on ``valid``."""
    p = unigram_probs(train, vocab_size)
    valid = _check(valid, vocab_size, "valid")
    return float(-np.mean(np.log2(p[valid])))


def bigram_bits(train: np.ndarray, valid: np.ndarray, vocab_size: int, smoothing: str = "add_one",
                discount: float = 0.75) -> float:
    """Bigram bits per character on ``valid`` (first token scored by the add-one unigram)."""
    P = bigram_probs(train, vocab_size, smoothing, discount)
    valid = _check(valid, vocab_size, "valid")
    logp = np.empty(len(valid))
    logp[0] = np.log2(unigram_probs(train, vocab_size)[valid[0]])
    logp[1:] = np.log2(P[valid[:-1], valid[1:]])
    return float(-np.mean(logp))


def bigram_entropy_in_sample(tokens: np.ndarray, vocab_size: int) -> float:
    """nano-egg's bigram bar: the conditional entropy ``H(X_t | X_{t-1})`` in bits of the
    maximum-likelihood bigram counted on ``tokens`` themselves (``sum_a p(a) H(. | a)``, no
    smoothing). Fitted and scored on the same split, so it lies below the held-out add-one bigram:
    the harder bar to get under."""
    tokens = _check(tokens, vocab_size, "tokens")
    counts = np.zeros((vocab_size, vocab_size))
    np.add.at(counts, (tokens[:-1], tokens[1:]), 1)
    row = counts.sum(axis=1, keepdims=True)
    p = counts / np.maximum(row, 1)
    h_row = -np.sum(np.where(counts > 0, p * np.log2(np.where(p > 0, p, 1)), 0), axis=1)
    return float(np.sum(row[:, 0] / row.sum() * h_row))

"""The vendored tiny-shakespeare corpus: checksum-verified loading, vocabularies, the 90/10
split, random training windows from keys, fixed validation windows and bits per character.

See ``lowrank_es/tasks/data/README.md`` for the corpus's origin and checksum.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
TINYSHAKESPEARE = DATA_DIR / "tinyshakespeare.txt.gz"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_BYTES = 1_115_394
TRAIN_FRACTION = 0.9
VOCAB_KINDS = ("char", "byte")


def load_text(path: str | Path = TINYSHAKESPEARE, sha256: str | None = TINYSHAKESPEARE_SHA256) -> str:
    """Decompress ``path`` and return its text; raises ValueError when the sha256 of the
    uncompressed bytes differs from ``sha256`` (pass ``sha256=None`` to skip the check)."""
    raw = gzip.decompress(Path(path).read_bytes())
    if sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != sha256:
            raise ValueError(f"checksum mismatch for {path}: sha256 {digest}, expected {sha256}")
    return raw.decode("utf-8")


@dataclasses.dataclass(frozen=True)
class Vocab:
    """A character vocabulary: ``chars[i]`` is token ``i``."""

    chars: str

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """text -> (len(text),) int32 token ids; unknown characters raise ValueError."""
        lut = {c: i for i, c in enumerate(self.chars)}
        try:
            return np.fromiter((lut[c] for c in text), dtype=np.int32, count=len(text))
        except KeyError as e:
            raise ValueError(f"text contains character {e.args[0]!r} outside the vocabulary") from None

    def decode(self, tokens) -> str:
        """token ids -> text."""
        return "".join(self.chars[int(t)] for t in np.asarray(tokens).ravel())


def make_vocab(text: str, kind: str = "char") -> Vocab:
    """``"char"``: the sorted set of characters of ``text``; ``"byte"``: all 256 byte values
    (as Latin-1 characters, so ASCII text encodes to its bytes)."""
    if kind == "char":
        return Vocab("".join(sorted(set(text))))
    if kind == "byte":
        return Vocab("".join(chr(i) for i in range(256)))
    raise ValueError(f"kind must be one of {VOCAB_KINDS}, got {kind!r}")


def split(tokens: np.ndarray, train_fraction: float = TRAIN_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """First ``train_fraction`` of the tokens (train) and the rest (validation)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n = int(len(tokens) * train_fraction)
    return tokens[:n], tokens[n:]


@dataclasses.dataclass(frozen=True)
class Corpus:
    vocab: Vocab
    train: np.ndarray  # (N_train,) int32
    valid: np.ndarray  # (N_valid,) int32


@lru_cache(maxsize=4)
def load_corpus(kind: str = "char") -> Corpus:
    """tiny-shakespeare, encoded with a ``kind`` vocabulary and split 90/10."""
    text = load_text()
    vocab = make_vocab(text, kind)
    train, valid = split(vocab.encode(text))
    return Corpus(vocab, train, valid)


def sample_windows(key: jax.Array, tokens: jax.Array, batch: int, length: int) -> jax.Array:
    """``batch`` windows of ``length`` consecutive tokens at uniform random offsets.

    tokens: (N,) -> (batch, length) int32. Pure in ``key`` (jittable).
    """
    n = tokens.shape[0]
    if batch < 1 or length < 2 or length > n:
        raise ValueError(f"need batch >= 1 and 2 <= length <= {n}, got batch={batch}, length={length}")
    starts = jax.random.randint(key, (batch,), 0, n - length + 1)
    idx = starts[:, None] + jnp.arange(length)[None, :]
    return jnp.asarray(tokens)[idx]


def streams(tokens: np.ndarray, n_streams: int, segment: int) -> np.ndarray:
    """The corpus cut into ``n_streams`` contiguous streams, each a whole number of ``segment``-token
    pieces plus one target token (nano-egg's data layout: stream ``s`` is read in order, one piece
    per generation, a recurrent state carried from piece to piece).

    tokens: (N,) -> (n_streams, K * segment + 1) int32 with ``K = (N - n_streams) // (n_streams * segment)``
    pieces per stream; the tail of the corpus that does not fill a piece is dropped."""
    n = len(tokens)
    if not isinstance(n_streams, int) or not isinstance(segment, int) or n_streams < 1 or segment < 1:
        raise ValueError(f"n_streams and segment must be integers >= 1, got {n_streams!r}, {segment!r}")
    k = (n - n_streams) // (n_streams * segment)
    if k < 1:
        raise ValueError(f"{n} tokens cannot fill {n_streams} streams of one {segment}-token piece; "
                         f"need n_streams * (segment + 1) <= {n}")
    length = k * segment + 1
    return np.asarray(tokens[: n_streams * length], np.int32).reshape(n_streams, length)


def stream_piece(stream_tokens: jax.Array, generation: jax.Array, segment: int) -> tuple[jax.Array, jax.Array]:
    """Piece ``generation mod K`` of every stream, with its target token: (S, segment + 1), and
    whether it is a stream's first piece (a recurrent state carried into it must restart from zero).
    stream_tokens: (S, K * segment + 1) from :func:`streams`. Jittable in ``generation``."""
    k = (stream_tokens.shape[1] - 1) // segment
    j = jnp.asarray(generation) % k
    piece = jax.lax.dynamic_slice_in_dim(stream_tokens, j * segment, segment + 1, axis=1)
    return piece, j == 0


def eval_windows(tokens: np.ndarray, n_windows: int, length: int) -> np.ndarray:
    """``n_windows`` evenly spaced, non-overlapping windows of ``length`` tokens (deterministic).

    tokens: (N,) -> (n_windows, length) int32.
    """
    n = len(tokens)
    if n_windows < 1 or length < 2 or n_windows * length > n:
        raise ValueError(f"need n_windows >= 1, length >= 2 and n_windows * length <= {n}, got {n_windows} x {length}")
    starts = np.linspace(0, n - length, n_windows).astype(np.int64)
    return np.stack([tokens[s : s + length] for s in starts]).astype(np.int32)


def bits_per_char(nats: float | jax.Array) -> float | jax.Array:
    """Convert a mean cross-entropy in nats per character to bits per character."""
    return nats / math.log(2.0)

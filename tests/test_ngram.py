"""n-gram baselines against a hand-counted tiny corpus, plus the vendored corpus's integrity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowrank_es.tasks import ngram, text_data

# Tiny corpus over the alphabet {a=0, b=1, c=2}: train "aabac", valid "ab".
TRAIN = np.array([0, 0, 1, 0, 2])
VALID = np.array([0, 1])
V = 3


def test_unigram_hand_counted():
    # counts a=3, b=1, c=1 of N=5 -> add-one: (4, 2, 2) / 8
    np.testing.assert_allclose(ngram.unigram_probs(TRAIN, V), [4 / 8, 2 / 8, 2 / 8], rtol=1e-15)
    # valid "ab": -(log2 1/2 + log2 1/4) / 2 = 1.5 bits
    assert ngram.unigram_bits(TRAIN, VALID, V) == pytest.approx(1.5, abs=1e-12)


def test_bigram_add_one_hand_counted():
    # pairs: aa, ab, ba, ac. Row a has 3 followers, row b one, row c none.
    expected = np.array([[2 / 6, 2 / 6, 2 / 6], [2 / 4, 1 / 4, 1 / 4], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(ngram.bigram_probs(TRAIN, V), expected, rtol=1e-15)
    # first valid char by the add-one unigram (1/2 -> 1 bit), then p(b|a) = 1/3
    assert ngram.bigram_bits(TRAIN, VALID, V) == pytest.approx((1 + math.log2(3)) / 2, abs=1e-12)


def test_bigram_kneser_ney_hand_counted():
    D = 0.5
    P = ngram.bigram_probs(TRAIN, V, "kneser_ney", discount=D)
    # continuation: distinct predecessors a:2 (a, b), b:1, c:1 of 4 bigram types, add-one -> (3, 2, 2) / 7
    cont = np.array([3 / 7, 2 / 7, 2 / 7])
    # row a: n=(1,1,1), 3 types -> (1 - D)/3 + D*3/3 * cont
    np.testing.assert_allclose(P[0], (1 - D) / 3 + D * cont, rtol=1e-14)
    # row b: n=(1,0,0), 1 type -> a: (1 - D)/1 + D*cont_a; others D*cont
    np.testing.assert_allclose(P[1], [(1 - D) + D * 3 / 7, D * 2 / 7, D * 2 / 7], rtol=1e-14)
    # row c never seen as a predecessor -> the continuation distribution
    np.testing.assert_allclose(P[2], cont, rtol=1e-14)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-14)
    bits = ngram.bigram_bits(TRAIN, VALID, V, "kneser_ney", discount=D)
    assert bits == pytest.approx((1 - math.log2(1 / 6 + 1 / 7)) / 2, abs=1e-12)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="smoothing"):
        ngram.bigram_probs(TRAIN, V, "witten_bell")
    with pytest.raises(ValueError, match="discount"):
        ngram.bigram_probs(TRAIN, V, "kneser_ney", discount=1.5)
    with pytest.raises(ValueError, match="valid"):
        ngram.unigram_bits(TRAIN, np.array([0, 3]), V)


def test_corpus_checksum_split_and_windows(tmp_path):
    c = text_data.load_corpus("char")
    assert c.vocab.size == 65
    assert len(c.train) + len(c.valid) == text_data.TINYSHAKESPEARE_BYTES
    assert len(c.train) == int(0.9 * text_data.TINYSHAKESPEARE_BYTES)
    assert c.vocab.decode(c.train[:14]) == text_data.load_text()[:14]
    # a corrupted copy fails the checksum
    import gzip

    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(gzip.compress(b"not shakespeare"))
    with pytest.raises(ValueError, match="checksum"):
        text_data.load_text(bad)
    # byte vocabulary encodes ASCII to its byte values
    assert text_data.make_vocab("", "byte").encode("Hi").tolist() == [72, 105]
    ev = text_data.eval_windows(c.valid, 4, 10)
    assert ev.shape == (4, 10) and (ev[0] == c.valid[:10]).all() and (ev[-1] == c.valid[-10:]).all()
    # the exact baselines are ordered: bigram beats unigram on real text
    assert ngram.bigram_bits(c.train, c.valid, 65) < ngram.unigram_bits(c.train, c.valid, 65)


def test_sample_windows_are_contiguous_and_keyed():
    import jax

    tokens = np.arange(1000, dtype=np.int32) * 7
    w = np.asarray(text_data.sample_windows(jax.random.key(0), tokens, 5, 12))
    assert w.shape == (5, 12)
    np.testing.assert_array_equal(np.diff(w, axis=1), 7)  # consecutive tokens of the source
    np.testing.assert_array_equal(w, np.asarray(text_data.sample_windows(jax.random.key(0), tokens, 5, 12)))
    assert not np.array_equal(w, np.asarray(text_data.sample_windows(jax.random.key(1), tokens, 5, 12)))
    with pytest.raises(ValueError, match="length"):
        text_data.sample_windows(jax.random.key(0), tokens, 5, 2000)
    assert text_data.bits_per_char(math.log(2.0)) == pytest.approx(1.0)


def test_in_sample_bigram_entropy_by_hand():
    """nano-egg's bar on 0 1 0 1 0 0: after 0 come 1, 1, 0 (entropy H(2/3, 1/3)), after 1 always 0;
    weights 3/5 and 2/5."""
    h = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert ngram.bigram_entropy_in_sample(np.array([0, 1, 0, 1, 0, 0]), 3) == pytest.approx(3 / 5 * h, abs=1e-12)
    assert ngram.bigram_entropy_in_sample(np.array([2, 2, 2, 2]), 3) == 0.0

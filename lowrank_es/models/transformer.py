"""A small character-level decoder-only transformer written against the EGGROLL layers.

Every parameter goes through :func:`~lowrank_es.es.eggroll.linear`, :func:`~lowrank_es.es.eggroll.embedding`
or :func:`~lowrank_es.es.eggroll.add`, so one definition gives plain inference (``noise=None``), the
factored population forward (one member's noise pytree, nothing materialised) and, through
:func:`~lowrank_es.es.eggroll.materialise`, the naive reference.

Pre-LayerNorm blocks, learned positions, GELU MLP, untied output head. :func:`forward` runs a whole
sequence at once; :func:`generate` samples with a KV cache, one position per ``lax.scan`` step, so
generation costs O(T) per token rather than re-running the prefix.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from lowrank_es.es.eggroll import add, embedding, linear

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Config:
    """vocab: tokens; max_len: positions; d_model divisible by n_heads; d_ff: MLP width."""

    vocab: int
    max_len: int = 32
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256

    def __post_init__(self) -> None:
        for name in ("vocab", "max_len", "d_model", "n_heads", "n_layers", "d_ff"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got {self.d_model} and {self.n_heads}")


def init(key: jax.Array, cfg: Config, dtype=jnp.float32) -> dict:
    """Parameters (a dict pytree). Matrices are (out, in) as the EGGROLL layers expect."""
    d, f = cfg.d_model, cfg.d_ff
    keys = iter(jax.random.split(key, 3 + 6 * cfg.n_layers))

    def mat(m, n, scale=1.0):
        return (jax.random.normal(next(keys), (m, n), dtype) * (scale / math.sqrt(n))).astype(dtype)

    params = {
        "tok": (jax.random.normal(next(keys), (cfg.vocab, d), dtype) * 0.5).astype(dtype),
        "pos": (jax.random.normal(next(keys), (cfg.max_len, d), dtype) * 0.1).astype(dtype),
        "blocks": [],
        "lnf_g": jnp.ones((d,), dtype),
        "lnf_b": jnp.zeros((d,), dtype),
        "head": mat(cfg.vocab, d),
    }
    out_scale = 1.0 / math.sqrt(2 * cfg.n_layers)
    for _ in range(cfg.n_layers):
        params["blocks"].append(
            {
                "ln1_g": jnp.ones((d,), dtype),
                "ln1_b": jnp.zeros((d,), dtype),
                "wq": mat(d, d),
                "wk": mat(d, d),
                "wv": mat(d, d),
                "wo": mat(d, d, out_scale),
                "ln2_g": jnp.ones((d,), dtype),
                "ln2_b": jnp.zeros((d,), dtype),
                "w1": mat(f, d),
                "b1": jnp.zeros((f,), dtype),
                "w2": mat(d, f, out_scale),
                "b2": jnp.zeros((d,), dtype),
            }
        )
    return params


def num_params(params: PyTree) -> int:
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


def _sub(noise: PyTree | None, key) -> PyTree | None:
    return None if noise is None else noise[key]


def _ln(x, g, b, ng, nb):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + 1e-5) * add(g, ng) + add(b, nb)


def _mlp(h, blk, nz):
    u = jax.nn.gelu(linear(h, blk["w1"], _sub(nz, "w1")) + add(blk["b1"], _sub(nz, "b1")))
    return linear(u, blk["w2"], _sub(nz, "w2")) + add(blk["b2"], _sub(nz, "b2"))


def forward(params: dict, tokens: jax.Array, noise: PyTree | None = None, *, n_heads: int) -> jax.Array:
    """Logits of every next token. tokens: (L,) int, L <= max_len -> (L, vocab)."""
    L = tokens.shape[0]
    d = params["tok"].shape[1]
    dh = d // n_heads
    x = embedding(tokens, params["tok"], _sub(noise, "tok")) + embedding(
        jnp.arange(L), params["pos"], _sub(noise, "pos")
    )
    causal = jnp.tril(jnp.ones((L, L), bool))
    for i, blk in enumerate(params["blocks"]):
        nz = None if noise is None else noise["blocks"][i]
        h = _ln(x, blk["ln1_g"], blk["ln1_b"], _sub(nz, "ln1_g"), _sub(nz, "ln1_b"))
        q = linear(h, blk["wq"], _sub(nz, "wq")).reshape(L, n_heads, dh)
        k = linear(h, blk["wk"], _sub(nz, "wk")).reshape(L, n_heads, dh)
        v = linear(h, blk["wv"], _sub(nz, "wv")).reshape(L, n_heads, dh)
        s = jnp.einsum("qhd,khd->hqk", q, k) / math.sqrt(dh)
        s = jnp.where(causal[None], s, -1e30)
        a = jax.nn.softmax(s, axis=-1)
        o = jnp.einsum("hqk,khd->qhd", a, v).reshape(L, d)
        x = x + linear(o, blk["wo"], _sub(nz, "wo"))
        h = _ln(x, blk["ln2_g"], blk["ln2_b"], _sub(nz, "ln2_g"), _sub(nz, "ln2_b"))
        x = x + _mlp(h, blk, nz)
    x = _ln(x, params["lnf_g"], params["lnf_b"], _sub(noise, "lnf_g"), _sub(noise, "lnf_b"))
    return linear(x, params["head"], _sub(noise, "head"))


def decode_step(
    params: dict, cache: jax.Array, token: jax.Array, t: jax.Array, noise: PyTree | None = None, *, n_heads: int
) -> tuple[jax.Array, jax.Array]:
    """Logits after feeding ``token`` at position ``t`` with the keys/values of positions < t in
    ``cache`` (n_layers, 2, max_len, d). Returns (logits (vocab,), updated cache)."""
    d = params["tok"].shape[1]
    T = cache.shape[2]
    dh = d // n_heads
    x = embedding(token, params["tok"], _sub(noise, "tok")) + embedding(t, params["pos"], _sub(noise, "pos"))
    visible = jnp.arange(T) <= t
    for i, blk in enumerate(params["blocks"]):
        nz = None if noise is None else noise["blocks"][i]
        h = _ln(x, blk["ln1_g"], blk["ln1_b"], _sub(nz, "ln1_g"), _sub(nz, "ln1_b"))
        q = linear(h, blk["wq"], _sub(nz, "wq"))
        k = linear(h, blk["wk"], _sub(nz, "wk"))
        v = linear(h, blk["wv"], _sub(nz, "wv"))
        cache = cache.at[i, 0, t].set(k).at[i, 1, t].set(v)
        K = cache[i, 0].reshape(T, n_heads, dh)
        V = cache[i, 1].reshape(T, n_heads, dh)
        s = jnp.einsum("hd,khd->hk", q.reshape(n_heads, dh), K) / math.sqrt(dh)
        s = jnp.where(visible[None], s, -1e30)
        a = jax.nn.softmax(s, axis=-1)
        o = jnp.einsum("hk,khd->hd", a, V).reshape(d)
        x = x + linear(o, blk["wo"], _sub(nz, "wo"))
        h = _ln(x, blk["ln2_g"], blk["ln2_b"], _sub(nz, "ln2_g"), _sub(nz, "ln2_b"))
        x = x + _mlp(h, blk, nz)
    x = _ln(x, params["lnf_g"], params["lnf_b"], _sub(noise, "lnf_g"), _sub(noise, "lnf_b"))
    return linear(x, params["head"], _sub(noise, "head")), cache


def generate(
    params: dict,
    prompt: jax.Array,
    prompt_len: jax.Array,
    key: jax.Array,
    noise: PyTree | None = None,
    *,
    n_heads: int,
    eos: int,
    pad: int,
    temperature: float = 1.0,
    greedy: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Sample a continuation of one prompt with a KV cache.

    prompt: (T,) int, the first ``prompt_len`` entries are the prompt (the rest is ignored).
    Positions before ``prompt_len`` are forced to the prompt; later ones are sampled at
    ``temperature`` (or argmax when ``greedy``) until the end token ``eos``, then filled with
    the padding token ``pad`` (both token ids of the task's vocabulary).
    Returns (tokens (T,), generated (T,) bool: which positions the model wrote, end token included).
    """
    T = prompt.shape[0]
    d = params["tok"].shape[1]
    cache = jnp.zeros((len(params["blocks"]), 2, T, d), params["tok"].dtype)
    keys = jax.random.split(key, T)

    def body(carry, t):
        cache, tok, done = carry
        logits, cache = decode_step(params, cache, tok, t, noise, n_heads=n_heads)
        if greedy:
            nxt = jnp.argmax(logits).astype(prompt.dtype)
        else:
            nxt = jax.random.categorical(keys[t], logits / temperature).astype(prompt.dtype)
        forced = t + 1 < prompt_len
        gen = ~forced & ~done
        out = jnp.where(forced, prompt[jnp.minimum(t + 1, T - 1)], jnp.where(done, pad, nxt))
        done = done | (gen & (nxt == eos))
        return (cache, out, done), (out, gen)

    (_, _, _), (toks, gen) = jax.lax.scan(body, (cache, prompt[0], jnp.array(False)), jnp.arange(T - 1))
    tokens = jnp.concatenate([prompt[:1], toks])
    generated = jnp.concatenate([jnp.array([False]), gen])
    return tokens, generated


def sequence_logprobs(params: dict, tokens: jax.Array, noise: PyTree | None = None, *, n_heads: int) -> jax.Array:
    """log p(tokens[t] | tokens[:t]) for t >= 1 (position 0 gets 0). tokens: (T,) -> (T,)."""
    logits = forward(params, tokens[:-1], noise, n_heads=n_heads)
    lp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(lp, tokens[1:, None], axis=-1)[:, 0]
    return jnp.concatenate([jnp.zeros((1,), lp.dtype), picked])

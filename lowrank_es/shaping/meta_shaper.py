"""An evolution-trained meta-shaper (M-FOS, arXiv:2205.01447) for the IPD meta-game.

The meta-policy is an MLP over the meta-state, ``[p_shaper, p_opponent]`` (10,) -> the shaper's
next inner logits (5,), with a few hundred thousand parameters (two hidden layers of 512 by
default), written against the EGGROLL layers so one definition serves the mean policy, the
factored population forward and the materialised reference. It is trained by
:class:`lowrank_es.es.eggroll.EGGROLL`: rank-1 EGGROLL or full-rank OpenES (``rank=None``) at
the same population, sigma and Adam step, on the fitness of M-FOS, the shaper's mean reward
per step over a meta-episode against a batch of fresh learners (the same learners for every
member of a generation: common random numbers).

* :func:`train` trains one meta-shaper per seed (seeds vmapped) and records the population's
  mean fitness every generation and the mean policy's evaluation on a fixed batch of learners
  every ``eval_every`` generations.
* :func:`train_selfplay` trains two meta-shapers against each other (member ``i`` of one
  population plays member ``i`` of the other), with M-FOS's curriculum: for the first
  ``curriculum`` generations part of each fitness is the return against naive learners, its
  weight falling linearly from 1 to 0.
* :func:`generation_step` is one generation of :func:`train` (what the timing compares).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lowrank_es.es.eggroll import EGGROLL, ESState
from lowrank_es.models.mlp import mlp_apply, mlp_init
from lowrank_es.shaping import meta_game as mg

PyTree = Any


@dataclasses.dataclass(frozen=True)
class ShaperConfig:
    """Meta-policy size, ES settings and the meta-game.

    hidden: hidden widths of the MLP; rank: EGGROLL rank (``None``: OpenES); population: ES
    members per generation (even); sigma, learning_rate: noise scale and Adam step, cosine-
    decayed over the generations to ``lr_final`` times itself (1: constant);
    generations: ES generations (a multiple of ``eval_every``); batch: learners each member
    meets per generation; eval_batch: learners of the evaluation; curriculum: self-play only,
    generations over which the weight of the naive-learner fitness falls from 1 to 0.
    """

    hidden: tuple[int, ...] = (512, 512)
    rank: int | None = 1
    population: int = 32
    sigma: float = 0.05
    learning_rate: float = 0.01
    lr_final: float = 1.0
    generations: int = 100
    batch: int = 8
    eval_batch: int = 128
    eval_every: int = 10
    curriculum: int = 0
    game: mg.MetaGameConfig = mg.MetaGameConfig()

    def __post_init__(self) -> None:
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden must list positive widths, got {self.hidden}")
        for name in ("generations", "batch", "eval_batch", "eval_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.generations % self.eval_every:
            raise ValueError(f"generations must be a multiple of eval_every = {self.eval_every}, got {self.generations}")
        if not 0 <= self.curriculum <= self.generations:
            raise ValueError(f"curriculum must be in [0, generations] = [0, {self.generations}], got {self.curriculum}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.lr_final <= 1:
            raise ValueError(f"lr_final must be in [0, 1], got {self.lr_final}")
        self.es()  # validates population, sigma, rank


    def es(self) -> EGGROLL:
        """The strategy: EGGROLL of rank ``rank`` (OpenES for None) with Adam. A constant step
        size is optimiser state (``inject_hyperparams``), so :func:`train` can set it, with
        sigma, at init and serve every value from one compiled program."""
        if self.lr_final < 1:
            lr = optax.cosine_decay_schedule(self.learning_rate, self.generations, alpha=self.lr_final)
            return EGGROLL(sigma=self.sigma, population=self.population, rank=self.rank, optimizer=optax.adam(lr))
        return EGGROLL(sigma=self.sigma, population=self.population, rank=self.rank,
                       optimizer=optax.inject_hyperparams(optax.adam)(learning_rate=self.learning_rate))

    def compile_key(self) -> "ShaperConfig":
        """This config without what :func:`train` passes as state (sigma, and a constant
        learning rate): configs with the same key share one compiled training."""
        key = dataclasses.replace(self, sigma=1.0)
        return key if self.lr_final < 1 else dataclasses.replace(key, learning_rate=1.0)

    def num_params(self) -> int:
        sizes = (mg.OBS_DIM, *self.hidden, mg.ACTION_DIM)
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def init_policy(key: jax.Array, hidden: tuple[int, ...]) -> list[dict[str, jax.Array]]:
    """He-initialised meta-policy MLP (10 -> hidden... -> 5)."""
    return mlp_init(key, (mg.OBS_DIM, *hidden, mg.ACTION_DIM))


def meta_policy(params: PyTree, noise: PyTree | None = None) -> mg.MetaPolicy:
    """The meta-policy ``obs (B, 10) -> logits (B, 5)`` of mean ``params`` perturbed by one
    member's ``noise`` (None: the mean itself)."""
    return lambda obs: mlp_apply(params, obs, noise)


def seed_keys(seed: int | jax.Array) -> dict[str, jax.Array]:
    """The independent key streams of one seed (``init``, ``noise``, ``train``, ``eval`` and
    player B's ``init_b``, ``noise_b``). The evaluation learners depend on the seed only, so
    methods (and baselines) run with the same seed meet the same evaluation learners."""
    k = jax.random.PRNGKey(seed)
    names = ("init", "noise", "train", "eval", "init_b", "noise_b")
    return dict(zip(names, jax.random.split(k, len(names))))


def generation_step(cfg: ShaperConfig, state: ESState, key: jax.Array) -> tuple[ESState, jax.Array]:
    """One generation against learners drawn from ``(key, generation)``: returns the new
    state and the population's mean fitness (the shaper's mean reward per step)."""
    es = cfg.es()
    k = jax.random.fold_in(key, state.generation)

    def fitness(params, noise, member):
        return mg.meta_return(meta_policy(params, noise), k, cfg.batch, cfg.game)

    new, metrics = es.step(state, fitness)
    return new, metrics["fitness_mean"]


def evaluate(params: PyTree, key: jax.Array, batch: int, game: mg.MetaGameConfig) -> jax.Array:
    """Mean rewards per step (2,) as (shaper, learner) of the mean policy over a meta-episode."""
    return mg.rollout(meta_policy(params), key, batch, game).rewards.mean(axis=(0, 1))


def _chunked(cfg: ShaperConfig, carry, one_generation, evaluate_carry):
    """Scan ``generations`` generations in chunks of ``eval_every``, evaluating after each.
    Returns the final carry, per-generation fitness (G, ...) and evaluations (G/eval_every + 1, ...)."""
    def chunk(c, _):
        c, fit = jax.lax.scan(lambda cc, _: one_generation(cc), c, None, length=cfg.eval_every)
        return c, (fit, evaluate_carry(c))

    first = evaluate_carry(carry)
    carry, (fit, evals) = jax.lax.scan(chunk, carry, None, length=cfg.generations // cfg.eval_every)
    fit = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), fit)
    evals = jax.tree_util.tree_map(lambda f, e: jnp.concatenate([f[None], e]), first, evals)
    return carry, fit, evals


def train(cfg: ShaperConfig, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Train one meta-shaper per seed (vmapped). Returns ``fitness`` (S, G) the population's
    mean fitness, ``eval`` (S, E, 2) the mean policy's rewards per step (shaper, learner) on the
    seed's evaluation learners at generations ``eval_generations`` (E,), ``params`` the final
    mean policies (leading axis S) and ``seconds``, the wall-clock of the run (all seeds,
    compilation excluded)."""
    import time

    seeds = jnp.asarray(seeds)
    run = _train_fn(cfg.compile_key(), int(seeds.shape[0]))
    lr = jnp.float32(cfg.learning_rate)
    t0 = time.perf_counter()
    params, fit, evals = jax.block_until_ready(run(seeds, jnp.float32(cfg.sigma), lr))
    return {"fitness": fit, "eval": evals, "eval_generations": _eval_generations(cfg), "params": params,
            "seconds": time.perf_counter() - t0}


@functools.lru_cache(maxsize=8)
def _train_fn(cfg: ShaperConfig, n_seeds: int):
    """The compiled, seed-vmapped training of ``cfg`` (a :meth:`ShaperConfig.compile_key`) for
    ``n_seeds`` seeds, taking ``(seeds, sigma, learning_rate)`` (cached: compiled once)."""
    es = cfg.es()

    def one(seed, sigma, lr):
        k = seed_keys(seed)
        state = es.init(k["noise"], init_policy(k["init"], cfg.hidden))
        if cfg.lr_final == 1:  # a constant step size is state (see ShaperConfig.es)
            hp = {**state.opt_state.hyperparams, "learning_rate": lr}
            state = state._replace(opt_state=state.opt_state._replace(hyperparams=hp))
        state = es.with_sigma(state, sigma)
        state, fit, evals = _chunked(
            cfg, state, lambda s: generation_step(cfg, s, k["train"]),
            lambda s: evaluate(s.params, k["eval"], cfg.eval_batch, cfg.game))
        return state.params, fit, evals

    f32 = jax.ShapeDtypeStruct((), jnp.float32)
    return jax.jit(jax.vmap(one, in_axes=(0, None, None))).lower(
        jax.ShapeDtypeStruct((n_seeds,), jnp.int32), f32, f32).compile()


def _eval_generations(cfg: ShaperConfig) -> jax.Array:
    return jnp.arange(0, cfg.generations + 1, cfg.eval_every)


def selfplay_weight(cfg: ShaperConfig, generation: jax.Array) -> jax.Array:
    """Weight of the naive-learner fitness in self-play generation ``generation``: falls
    linearly from 1 to 0 over the first ``curriculum`` generations (M-FOS anneals the
    probability of an episode against naive learners the same way)."""
    if cfg.curriculum == 0:
        return jnp.zeros(())
    return jnp.clip(1.0 - generation / cfg.curriculum, 0.0, 1.0)


def selfplay_generation(cfg: ShaperConfig, states: tuple[ESState, ESState], key: jax.Array
                        ) -> tuple[tuple[ESState, ESState], jax.Array]:
    """One generation of meta-self-play: member ``i`` of A plays member ``i`` of B on
    learner-free meta-episodes; while the curriculum runs each also meets naive learners.
    Returns the new states and both populations' mean fitness (2,)."""
    es = cfg.es()
    sa, sb = states
    k_sp, k_nl = jax.random.split(jax.random.fold_in(key, sa.generation))
    lam = selfplay_weight(cfg, sa.generation)
    naive_game = dataclasses.replace(cfg.game, opponent="naive")

    def fitness(params_a, noise_a, member):
        noise_b = es.member_noise(sb, member)
        pa, pb = meta_policy(params_a, noise_a), meta_policy(sb.params, noise_b)
        r = mg.selfplay_rollout(pa, pb, k_sp, cfg.batch, cfg.game).rewards.mean(axis=(0, 1))
        if cfg.curriculum == 0:
            return r
        nl = jnp.stack([mg.meta_return(pa, k_nl, cfg.batch, naive_game),
                        mg.meta_return(pb, k_nl, cfg.batch, naive_game)])
        return lam * nl + (1.0 - lam) * r

    f = es.map_members(sa, fitness)  # (N, 2)
    sa, _ = es.tell(sa, f[:, 0])
    sb, _ = es.tell(sb, f[:, 1])
    return (sa, sb), f.mean(axis=0)


def evaluate_selfplay(params_a: PyTree, params_b: PyTree, key: jax.Array, batch: int,
                      game: mg.MetaGameConfig) -> jax.Array:
    """Mean rewards per step (2,) of the two mean meta-policies playing each other."""
    return mg.selfplay_rollout(meta_policy(params_a), meta_policy(params_b), key, batch, game).rewards.mean(axis=(0, 1))


def train_selfplay(cfg: ShaperConfig, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Meta-self-play, one pair of meta-shapers per seed (vmapped). Returns ``fitness``
    (S, G, 2), ``eval`` (S, E, 2) the two mean policies' rewards per step against each other,
    ``eval_naive`` (S, E, 2) each one's reward per step against naive learners, and ``params``
    as a pair (A, B) of final mean policies."""
    params, fit, evals, evals_nl = _selfplay_fn(cfg)(jnp.asarray(seeds))
    return {"fitness": fit, "eval": evals, "eval_naive": evals_nl, "eval_generations": _eval_generations(cfg),
            "params": params}


@functools.lru_cache(maxsize=8)
def _selfplay_fn(cfg: ShaperConfig):
    """The jitted, seed-vmapped meta-self-play of ``cfg`` (cached)."""
    es = cfg.es()
    naive_game = dataclasses.replace(cfg.game, opponent="naive")

    def one(seed):
        k = seed_keys(seed)
        sa = es.init(k["noise"], init_policy(k["init"], cfg.hidden))
        sb = es.init(k["noise_b"], init_policy(k["init_b"], cfg.hidden))

        def ev(c):
            a, b = c[0].params, c[1].params
            return (evaluate_selfplay(a, b, k["eval"], cfg.eval_batch, cfg.game),
                    jnp.stack([evaluate(a, k["eval"], cfg.eval_batch, naive_game)[0],
                               evaluate(b, k["eval"], cfg.eval_batch, naive_game)[0]]))

        (sa, sb), fit, (evals, evals_nl) = _chunked(cfg, (sa, sb), lambda c: selfplay_generation(cfg, c, k["train"]), ev)
        return (sa.params, sb.params), fit, evals, evals_nl

    return jax.jit(jax.vmap(one))


def time_generations(cfgs: dict[str, ShaperConfig], rounds: int, generations: int, seed: int = 0) -> dict[str, list[float]]:
    """Wall-clock seconds per generation of each config, measured side by side: after one
    compiling generation each, ``rounds`` rounds each time ``generations`` generations of
    every config in turn (interleaved, so load on the machine affects them alike).
    Returns ``{label: [seconds per generation of each round]}``."""
    import time

    if rounds < 1 or generations < 1:
        raise ValueError(f"rounds and generations must be >= 1, got {rounds} and {generations}")
    k = seed_keys(seed)
    runs = {}
    for label, cfg in cfgs.items():
        state = cfg.es().init(k["noise"], init_policy(k["init"], cfg.hidden))
        step = jax.jit(lambda s, cfg=cfg: generation_step(cfg, s, k["train"]))
        state = jax.block_until_ready(step(state)[0])  # compile and settle
        runs[label] = [step, state]
    times: dict[str, list[float]] = {label: [] for label in cfgs}
    for _ in range(rounds):
        for label, run in runs.items():
            t0 = time.perf_counter()
            for _ in range(generations):
                run[1] = run[0](run[1])[0]
            jax.block_until_ready(run[1])
            times[label].append((time.perf_counter() - t0) / generations)
    return times

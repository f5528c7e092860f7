"""A small supervised task and the ES loop that fits it: the smallest end-to-end use of EGGROLL.

The task is teacher–student regression: a random linear teacher ``y = x @ W*.T + b*`` and a
linear student ``{"W": (n_out, n_in), "b": (n_out,)}`` trained by EGGROLL or OpenES on
fitness ``-MSE``. Used by the tests and by ``notebooks/01_eggroll_mechanics.ipynb``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lowrank_es.es.eggroll import EGGROLL, ESState, add, linear


@dataclasses.dataclass(frozen=True)
class RegressionTask:
    x: jax.Array  # (S, n_in)
    y: jax.Array  # (S, n_out)

    @property
    def shape(self) -> tuple[int, int]:
        return self.y.shape[1], self.x.shape[1]

    def init_params(self, key: jax.Array) -> dict[str, jax.Array]:
        """A student at small random weights (far from the teacher)."""
        n_out, n_in = self.shape
        return {"W": 0.01 * jax.random.normal(key, (n_out, n_in)), "b": jnp.zeros((n_out,))}

    def loss(self, params: dict[str, jax.Array], noise=None) -> jax.Array:
        """Mean squared error of the (optionally perturbed) student."""
        nz = noise if noise is not None else {"W": None, "b": None}
        pred = linear(self.x, params["W"], nz["W"]) + add(params["b"], nz["b"])
        return jnp.mean((pred - self.y) ** 2)

    def fitness_fn(self) -> Callable:
        """``fitness(params, noise, member) = -MSE``, the signature ``EGGROLL.step`` expects."""
        return lambda params, noise, member: -self.loss(params, noise)


def regression_task(key: jax.Array, n_in: int = 16, n_out: int = 8, n_samples: int = 512) -> RegressionTask:
    """Teacher–student regression with a unit-scale linear teacher and Gaussian inputs."""
    if min(n_in, n_out, n_samples) < 1:
        raise ValueError(f"n_in, n_out and n_samples must be >= 1, got {n_in}, {n_out}, {n_samples}")
    kx, kw, kb = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n_samples, n_in))
    W = jax.random.normal(kw, (n_out, n_in)) / jnp.sqrt(n_in)
    b = 0.5 * jax.random.normal(kb, (n_out,))
    return RegressionTask(x, x @ W.T + b)


def train_regression(
    task: RegressionTask,
    *,
    rank: int | None,
    population: int,
    sigma: float,
    learning_rate: float,
    generations: int,
    seed: int = 0,
) -> np.ndarray:
    """Fit ``task`` with EGGROLL (``rank``) or OpenES (``rank=None``) and Adam.

    The learning rate decays on a cosine schedule to 1% of ``learning_rate``: with
    rank-shaped fitness the update's size does not shrink near the optimum, so a constant
    step would leave the mean jittering at a floor set by the step size.

    Returns the loss of the mean before each generation and after the last: (generations + 1,).
    """
    if generations < 1:
        raise ValueError(f"generations must be >= 1, got {generations}")
    schedule = optax.cosine_decay_schedule(learning_rate, generations, alpha=0.01)
    es = EGGROLL(sigma=sigma, population=population, rank=rank, optimizer=optax.adam(schedule))
    key = jax.random.PRNGKey(seed)
    state = es.init(jax.random.fold_in(key, 0), task.init_params(jax.random.fold_in(key, 1)))
    return np.asarray(_run(es, task, state, generations))


def _run(es: EGGROLL, task: RegressionTask, state: ESState, generations: int) -> jax.Array:
    fitness = task.fitness_fn()

    @jax.jit
    def run(state):
        def body(s, _):
            loss = task.loss(s.params)
            s, _ = es.step(s, fitness)
            return s, loss

        final, losses = jax.lax.scan(body, state, None, length=generations)
        return jnp.append(losses, task.loss(final.params))

    return run(state)

"""Objectives ``f(W)`` of one matrix ``W`` (shape ``(m, n)``) at which the low-rank and the
Gaussian ES gradients are compared.

- ``quadratic``: ``f(W) = -1/2 ||K (W - W*) L||_F^2`` (not separable): no gap at any ``r``.
- ``quartic``: ``f(W) = sum_ij W_ij^4``.
- ``cosine``: ``f(W) = sum_ij cos(omega W_ij)``.
- ``bump``: ``f(W) = sum_ij exp(-W_ij^2 / 2)``.
- ``mlp``: minus the squared error of a one-hidden-layer tanh network whose first layer is
  ``W``, on a fixed batch (no closed form: Monte Carlo only).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lowrank_es.models.mlp import mlp_apply
from lowrank_es.theory.checks import check_positive_int

OBJECTIVES = ("quadratic", "quartic", "cosine", "bump", "mlp")
#: Objectives whose expected gradients are exact (closed forms; ``bump`` by 1-D quadrature).
CLOSED_FORM = ("quadratic", "quartic", "cosine", "bump")
NON_QUADRATIC = ("quartic", "cosine", "bump", "mlp")


def objective(name: str, omega: float = 1.0) -> Callable[[jax.Array, dict], jax.Array]:
    """``f(W, data) -> scalar`` of objective ``name`` (jax-traceable; ``data`` holds its arrays)."""
    if name == "quadratic":
        return lambda W, d: -0.5 * jnp.sum((d["K"] @ (W - d["Wstar"]) @ d["L"]) ** 2)
    if name == "quartic":
        return lambda W, d: jnp.sum(W**4)
    if name == "cosine":
        return lambda W, d: jnp.sum(jnp.cos(omega * W))
    if name == "bump":
        return lambda W, d: jnp.sum(jnp.exp(-0.5 * W**2))
    if name == "mlp":

        def mlp_objective(W, d):
            params = [{"W": W, "b": d["b1"]}, {"W": d["v"], "b": d["c"]}]
            pred = mlp_apply(params, d["X"])[:, 0]
            return -jnp.mean((pred - d["y"]) ** 2)

        return mlp_objective
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """An objective ``f`` and the point ``W`` (``(m, n)``, float64) where gradients are compared.

    ``data`` holds the objective's fixed arrays (all numpy float64).
    """

    name: str
    W: np.ndarray
    data: dict[str, np.ndarray]
    omega: float = 1.0

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.W.shape)

    def f(self, W: jax.Array) -> jax.Array:
        """The objective at ``W`` (``(m, n)`` -> scalar); jax-traceable."""
        return objective(self.name, self.omega)(W, self.data)


def make_problem(name: str, m: int = 8, n: int = 8, *, seed: int = 0, omega: float = 1.0, batch: int = 32) -> Problem:
    """A reproducible instance of objective ``name`` with an ``(m, n)`` matrix.

    ``W`` is standard normal (He-scaled for ``mlp``); ``omega`` is the cosine frequency;
    ``batch`` the MLP's number of data points.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")
    check_positive_int(m, "m")
    check_positive_int(n, "n")
    check_positive_int(batch, "batch")
    if not (math.isfinite(omega) and omega > 0):
        raise ValueError(f"omega must be a finite number > 0, got {omega!r}")
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n))
    data: dict[str, np.ndarray] = {}
    if name == "quadratic":
        data["K"] = rng.standard_normal((m, m)) / math.sqrt(m)
        data["L"] = rng.standard_normal((n, n)) / math.sqrt(n)
        data["Wstar"] = rng.standard_normal((m, n))
    elif name == "mlp":
        W = W * math.sqrt(2.0 / n)
        X = rng.standard_normal((batch, n))
        teacher = rng.standard_normal((m, n)) * math.sqrt(2.0 / n)
        v = rng.standard_normal((1, m)) / math.sqrt(m)
        data = {"X": X, "b1": np.zeros(m), "v": v, "c": np.zeros(1)}
        data["y"] = np.tanh(X @ teacher.T) @ v[0]
    return Problem(name, W, data, float(omega))


def true_gradient(problem: Problem) -> np.ndarray:
    """``grad f(W)`` (float64, by autodiff). (m, n)."""
    with jax.enable_x64(True):
        data = jax.tree_util.tree_map(jnp.asarray, problem.data)
        g = jax.grad(objective(problem.name, problem.omega))(jnp.asarray(problem.W), data)
        return np.asarray(g, np.float64)

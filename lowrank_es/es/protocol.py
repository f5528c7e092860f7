"""The one interface every evolution strategy of the package satisfies.

Float EGGROLL / OpenES (:class:`lowrank_es.es.eggroll.EGGROLL`) and integer EGGROLL
(:class:`lowrank_es.es.integer.IntEGGROLL`) differ in their numbers, not in their shape: a
frozen dataclass of hyperparameters with pure methods over an explicit state, like optax and
evosax. ``tests/test_strategy_contract.py`` checks every strategy against this protocol.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import jax

PyTree = Any
FitnessFn = Callable[[PyTree, PyTree, jax.Array], jax.Array]


@runtime_checkable
class StrategyState(Protocol):
    """What every strategy's state exposes: the search mean and the generation counter."""

    params: PyTree
    generation: jax.Array


@runtime_checkable
class Strategy(Protocol):
    """An evolution strategy over a pytree of parameters.

    population: N members; num_pairs: independent noise draws (N/2 with antithetic pairs).
    Member noise is a pure function of (state's key or seed, generation, member, leaf).
    """

    population: int

    @property
    def num_pairs(self) -> int: ...

    def init(self, key: jax.Array, params: PyTree) -> StrategyState:
        """A run starting at mean ``params``; ``key`` seeds all of its noise."""

    def member_noise(self, state: StrategyState, member: jax.Array) -> PyTree:
        """Member ``member``'s noise: a pytree like ``params`` (never stored across members)."""

    def evaluate(self, state: StrategyState, fitness_fn: FitnessFn) -> jax.Array:
        """``fitness_fn(params, noise, member) -> scalar`` for every member. -> (N,)"""

    def tell(self, state: StrategyState, fitness: jax.Array) -> tuple[StrategyState, dict[str, jax.Array]]:
        """The next state from the members' fitness (N,), and metrics."""

    def step(self, state: StrategyState, fitness_fn: FitnessFn) -> tuple[StrategyState, dict[str, jax.Array]]:
        """One generation: :meth:`evaluate` then :meth:`tell`."""

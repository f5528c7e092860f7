"""lowrank-es: low-rank evolution strategies (EGGROLL) and opponent shaping, in JAX."""

__version__ = "0.1.0"

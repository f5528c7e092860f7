"""Input checks shared by the theory modules: each raises ``ValueError`` naming the parameter
and its valid range."""

from __future__ import annotations

import math

import numpy as np


def check_rank(rank: int | None, name: str = "rank") -> None:
    """``rank`` is an integer >= 1, or ``None`` (Gaussian noise)."""
    if rank is not None and (not isinstance(rank, (int, np.integer)) or rank < 1):
        raise ValueError(f"{name} must be an integer >= 1 (or None for Gaussian noise), got {rank!r}")


def check_integer_rank(rank: int | None, name: str = "rank") -> None:
    """``rank`` is an integer >= 1 (``None`` is refused)."""
    check_rank(rank, name)
    if rank is None:
        raise ValueError(f"{name} must be an integer >= 1, got None")


def check_sigma(sigma: float) -> None:
    """``sigma`` is a finite number > 0."""
    if not (isinstance(sigma, (int, float, np.floating)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")


def check_positive_int(value: int, name: str, low: int = 1) -> None:
    """``value`` is an integer >= ``low``."""
    if not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

"""Claims registry. Topic modules in this package register their claims on import."""

from __future__ import annotations

import importlib
import pkgutil

from lowrank_es.claims.registry import (
    Claim,
    Measurement,
    Target,
    all_claims,
    evaluate,
    get,
    load_recorded,
    register,
    show,
    table,
)

__all__ = [
    "Claim",
    "Measurement",
    "Target",
    "all_claims",
    "evaluate",
    "get",
    "load_recorded",
    "register",
    "show",
    "table",
    "load_topics",
]

_SKIP = {"registry", "cli"}


def load_topics() -> None:
    """Import every topic module of this package (each registers its claims)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _SKIP:
            importlib.import_module(f"{__name__}.{info.name}")

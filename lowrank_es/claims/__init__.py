"""Claims registry. Topic modules in this package register their claims on import."""

from __future__ import annotations

from lowrank_es.claims.registry import (
    Claim,
    Measurement,
    Target,
    all_claims,
    evaluate,
    get,
    load_recorded,
    load_topics,
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

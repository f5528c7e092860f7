"""Which dtypes a traced program uses: the mechanical check behind "integer-only" claims.

:func:`jaxpr_dtypes` walks a (closed) jaxpr and every sub-jaxpr (``scan``, ``cond``, ``pjit``,
custom rules, ...), noting the dtype of every input, constant and equation variable together with
the primitives that produce or consume it.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.extend.core
import jax.numpy as jnp


def _sub_jaxprs(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jax.extend.core.Jaxpr):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _sub_jaxprs(v)


def jaxpr_dtypes(jaxpr) -> dict[str, set[str]]:
    """Every dtype in a (closed) jaxpr and its sub-jaxprs -> {dtype: primitives that use it}
    (``"input"`` for the jaxpr's inputs and constants)."""
    if isinstance(jaxpr, jax.extend.core.ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    found: dict[str, set[str]] = {}

    def note(v, where):
        dt = getattr(getattr(v, "aval", None), "dtype", None)
        if dt is not None:
            found.setdefault(str(dt), set()).add(where)

    def walk(jx):
        for v in list(jx.invars) + list(jx.constvars):
            note(v, "input")
        for eqn in jx.eqns:
            for v in list(eqn.invars) + list(eqn.outvars):
                note(v, eqn.primitive.name)
            for p in eqn.params.values():
                for sub in _sub_jaxprs(p):
                    walk(sub)

    walk(jaxpr)
    return found


def is_float_dtype(name: str) -> bool:
    """Whether a dtype name (as :func:`jaxpr_dtypes` reports it) is floating point or complex."""
    try:
        return bool(jnp.issubdtype(jnp.dtype(name), jnp.inexact))
    except TypeError:  # extended dtypes (PRNG keys) are not numbers
        return False


def float_dtypes_in(fn: Callable, *args) -> dict[str, set[str]]:
    """Floating-point (and complex) dtypes in the jaxpr of ``fn(*args)`` -> {dtype: primitives}."""
    found = jaxpr_dtypes(jax.make_jaxpr(fn)(*args))
    return {d: p for d, p in found.items() if is_float_dtype(d)}

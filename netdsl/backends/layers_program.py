"""Torch and Keras entries for the ops of :mod:`netdsl.ops_layers`, importable without a framework.

:mod:`torch_program` and :mod:`keras_program` merge :data:`TORCH`, :data:`TORCH_HELPERS` and
:data:`KERAS` into their tables; the entries follow those modules' conventions (torch: a
:class:`~netdsl.backends.torch_program.Layer` of literals; keras: constructor arguments).
"""

from __future__ import annotations

from typing import Any

from ..ops_layers import pad_sides

# torch_program and keras_program import this module while they load, so it names their
# NamedTuples lazily: TORCH holds (layer function, weights) pairs, made TorchOps there, and
# KERAS (class name, argument function[, merge]) tuples, made KerasOps there.


def Layer(module: tuple | None, steps: tuple) -> Any:  # noqa: N802  (torch_program.Layer, built late)
    from .torch_program import Layer as _Layer

    return _Layer(module, steps)


# ---- torch ---------------------------------------------------------------------------------


def _pad(a: dict, ins: list, out) -> Layer:
    t, b, left, r = pad_sides(a)
    return Layer(None, (("pad", (left, r, t, b), 0.0),))  # F.pad's order: last axis (W) first


TORCH: dict[str, tuple] = {
    "pad": (_pad, {}),
}

# helper module classes a generated file defines when it uses them: name -> source
TORCH_HELPERS: dict[str, str] = {}

# ---- keras ---------------------------------------------------------------------------------


def _keras_pad(a: dict) -> tuple[tuple, dict]:
    t, b, left, r = pad_sides(a)
    if t == b and left == r:
        return ((t if t == left else (t, left)),), {}
    return (((t, b), (left, r)),), {}


KERAS: dict[str, tuple] = {
    "pad": ("ZeroPadding2D", _keras_pad),
}

"""Layers added to the op table after the first set: padding, depthwise and separable
convolutions, layer and group normalisation, 1-D layers for sequences, `mul`.

Each entry follows :mod:`netdsl.ops`'s conventions (Keras's shapes, weight names and layouts,
channels last); ``ops`` merges :data:`OPS`, :data:`ALIASES` and :data:`USAGE` into its own
tables at import.  The backends keep their entries for these ops together, in
:mod:`netdsl.backends.layers_program` (torch, keras) and :mod:`netdsl.backends.onnx_layers`.
"""

from __future__ import annotations

from typing import Any

from .ops import REQUIRED, ArgError, Op, Shape, _needs_map, integer, pair

# pad ------------------------------------------------------------------------------------------

_SIDES = ("top", "bottom", "left", "right")


def _pad_size(d: tuple, stride: int | None) -> dict:
    if stride is not None or len(d) > 2:
        got = "x".join(map(str, d)) + (f"/{stride}" if stride is not None else "")
        raise ArgError(f"pad takes P (every side) or PxQ (rows top and bottom x columns left and right), got {got}")
    return {"size": d[0] if len(d) == 1 else d}


def _pad_finish(a: dict) -> dict:
    """``size`` or per-side keywords (unset sides 0), never both; every side resolved."""
    sides = [k for k in _SIDES if a[k] is not None]
    if a["size"] is not None and sides:
        raise ArgError(f"pad takes a size or per-side keywords, not both (got a size and `{sides[0]}=`)")
    if a["size"] is None and not sides:
        raise ArgError("pad needs `size` (`pad 1`, `pad 1x2`) or sides (`pad top=0 bottom=1 left=0 right=1`)")
    if a["size"] is not None:
        (ph, pw), a["size"] = a["size"], None
        a.update(top=ph, bottom=ph, left=pw, right=pw)
    else:
        a.update({k: a[k] or 0 for k in _SIDES})
    return a


def pad_sides(a: dict) -> tuple[int, int, int, int]:
    """(top, bottom, left, right)."""
    return a["top"], a["bottom"], a["left"], a["right"]


def _pad_shape(a: dict, ins: list) -> Shape:
    (s,) = ins
    _needs_map("pad", s, "it pads the H and W axes of a feature map")
    t, b, left, r = pad_sides(a)
    return (s[0] + t + b, s[1] + left + r, s[2])


def _pad_describe(a: dict) -> str:
    t, b, left, r = pad_sides(a)
    if t == b and left == r:
        return f"{t}" if t == left else f"{t}x{left}"
    return f"t{t} b{b} l{left} r{r}"


# the table --------------------------------------------------------------------------------------

_SIDE_ARG: dict[str, tuple[Any, Any]] = {k: (integer(0), None) for k in _SIDES}

OPS: list[Op] = [
    Op(
        "pad",
        "ZeroPadding2D",
        "shape",
        {"size": (pair(0), None), **_SIDE_ARG},
        _pad_size,
        _pad_shape,
        describe=_pad_describe,
        finish=_pad_finish,
    ),
]

ALIASES = {"zeropadding2d": "pad", "zero_pad": "pad", "zeropad": "pad"}

USAGE = {
    "pad": "pad P | pad PxQ | pad top=T bottom=B left=L right=R, e.g. `pad 1`",
}

assert REQUIRED  # the table's marker for required arguments, used by the entries above as they grow

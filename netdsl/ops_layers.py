"""Layers added to the op table after the first set: padding, depthwise and separable
convolutions, layer and group normalisation, 1-D layers for sequences, `mul`.

Each entry follows :mod:`netdsl.ops`'s conventions (Keras's shapes, weight names and layouts,
channels last); ``ops`` merges :data:`OPS`, :data:`ALIASES` and :data:`USAGE` into its own
tables at import.  The backends keep their entries for these ops together, in
:mod:`netdsl.backends.layers_program` (torch, keras) and :mod:`netdsl.backends.onnx_layers`.
"""

from __future__ import annotations

from typing import Any

from .ops import (
    _ACT,
    _PAD,
    REQUIRED,
    ArgError,
    Op,
    Shape,
    ShapeError,
    _conv_describe,
    _conv_size,
    _needs_map,
    _spatial,
    _window,
    boolean,
    fmt_shape,
    integer,
    pair,
    real,
)


def _one_number(op: str, arg: str, d: tuple, stride: int | None) -> dict:
    if stride is not None or len(d) != 1:
        got = "x".join(map(str, d)) + (f"/{stride}" if stride is not None else "")
        raise ArgError(f"{op} takes a single number here (its {arg}), got {got}")
    return {arg: d[0]}


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


# dwconv and sepconv ------------------------------------------------------------------------------


def _dw_size(d: tuple, stride: int | None) -> dict:
    if len(d) > 2:
        raise ArgError(f"dwconv shorthand is K or KHxKW (the kernel), e.g. `dwconv 3`; got {'x'.join(map(str, d))}")
    out = {"kernel": d[0] if len(d) == 1 else d}
    if stride is not None:
        out["stride"] = stride
    return out


def _dw_shape(a: dict, ins: list) -> Shape:
    (s,) = ins
    _needs_map("dwconv", s)
    oh, ow = _spatial("dwconv", "kernel", s, a["kernel"], a["stride"], a["padding"], a["dilation"])
    return (oh, ow, s[2] * a["multiplier"])


def _dw_weights(a: dict, ins: list) -> tuple:
    kh, kw = a["kernel"]
    c, m = ins[0][2], a["multiplier"]
    kernel = ("kernel", (kh, kw, c, m), True)  # Keras's DepthwiseConv2D kernel: (kh, kw, C, M)
    return (kernel, ("bias", (c * m,), True)) if a["bias"] else (kernel,)


def _dw_macs(a: dict, ins: list, out: Shape) -> int:
    kh, kw = a["kernel"]
    return out[0] * out[1] * out[2] * kh * kw


def _dw_describe(a: dict) -> str:
    text = _conv_describe({**a, "filters": "dw"})
    return text + (f" \u00d7{a['multiplier']}" if a["multiplier"] != 1 else "")


def _sep_shape(a: dict, ins: list) -> Shape:
    (s,) = ins
    _needs_map("sepconv", s)
    oh, ow = _spatial("sepconv", "kernel", s, a["kernel"], a["stride"], a["padding"], a["dilation"])
    return (oh, ow, a["filters"])


def _sep_weights(a: dict, ins: list) -> tuple:
    kh, kw = a["kernel"]
    c, m, f = ins[0][2], a["multiplier"], a["filters"]
    out = (("depthwise_kernel", (kh, kw, c, m), True), ("pointwise_kernel", (1, 1, c * m, f), True))
    return out + ((("bias", (f,), True),) if a["bias"] else ())


def _sep_macs(a: dict, ins: list, out: Shape) -> int:
    kh, kw = a["kernel"]
    cm = ins[0][2] * a["multiplier"]
    return out[0] * out[1] * cm * (kh * kw + out[2])


def _sep_size(d: tuple, stride: int | None) -> dict:
    try:
        return _conv_size(d, stride)
    except ArgError as e:
        raise ArgError(e.message.replace("conv", "sepconv")) from None


# layernorm and groupnorm ---------------------------------------------------------------------------


def _norm_weights(a: dict, ins: list) -> tuple:
    c = (ins[0][-1],)
    return (("gamma", c, True), ("beta", c, True))


def _groupnorm_shape(a: dict, ins: list) -> Shape:
    (s,) = ins
    if s[-1] % a["groups"]:
        raise ShapeError(
            "E140",
            f"groupnorm splits the channels into {a['groups']} groups, but the {fmt_shape(s)} has {s[-1]} channels",
            f"use a number of groups that divides {s[-1]} (`groupnorm G`; Keras's default is 32)",
        )
    return s


# mul ----------------------------------------------------------------------------------------------


def _mul_shape(a: dict, ins: list) -> Shape:
    """Elementwise product; axes of size 1 broadcast, as in Keras's Multiply (ranks must agree)."""
    out = list(ins[0])
    for i, s in enumerate(ins[1:], 1):
        if len(s) != len(out) or any(x != y and 1 not in (x, y) for x, y in zip(out, s, strict=True)):
            hint = (
                "make both paths end with one shape; an axis of size 1 is repeated (`reshape 1x1xC` for a channel gate)"
            )
            raise ShapeError(
                "E141",
                f"mul needs inputs of one shape (or 1 on an axis), got {fmt_shape(tuple(out))} and {fmt_shape(s)}",
                hint,
                culprit=i,
            )
        out = [max(x, y) for x, y in zip(out, s, strict=True)]
    return tuple(out)


# 1-D layers over sequences (L x C) ------------------------------------------------------------------


def input_dims(name: str, v: Any) -> tuple[int, ...]:
    """The input's size: N (a vector), LxC (a sequence) or HxWxC (a feature map)."""
    from .ops import _int

    v = v if isinstance(v, tuple) else (v,)
    if len(v) not in (1, 2, 3):
        raise ArgError(f"{name} must be N, LxC or HxWxC, got {'x'.join(map(str, v))}")
    return tuple(_int(name, x) for x in v)


def _needs_seq(op: str, s: Shape) -> None:
    if len(s) != 2:
        raise ShapeError(
            "E142",
            f"{op} needs an LxC sequence, got a {fmt_shape(s)}",
            "1-D layers take a sequence input (`input 128x3`); use the 2-D layer on a feature map",
        )


def _conv1d_size(d: tuple, stride: int | None) -> dict:
    if len(d) != 2:
        raise ArgError(f"conv1d shorthand is FxK (filters x kernel), e.g. `conv1d 16x3`; got {'x'.join(map(str, d))}")
    return {"filters": d[0], "kernel": d[1], **({"stride": stride} if stride is not None else {})}


def _conv1d_shape(a: dict, ins: list) -> Shape:
    (s,) = ins
    _needs_seq("conv1d", s)
    return (_window("conv1d", "kernel", s[0], a["kernel"], a["stride"], a["padding"], a["dilation"]), a["filters"])


def _conv1d_weights(a: dict, ins: list) -> tuple:
    kernel = ("kernel", (a["kernel"], ins[0][1], a["filters"]), True)  # (k, C, F), as Keras holds it
    return (kernel, ("bias", (a["filters"],), True)) if a["bias"] else (kernel,)


def _conv1d_check(a: dict) -> dict:
    if a["stride"] > 1 and a["dilation"] > 1:
        raise ArgError("conv1d cannot combine a stride > 1 with a dilation > 1 (Keras refuses it)")
    return a


def _pool1d_size(d: tuple, stride: int | None) -> dict:
    if len(d) != 1:
        raise ArgError(f"a 1-D pool's size is one number, got {'x'.join(map(str, d))}")
    return {"size": d[0], **({"stride": stride} if stride is not None else {})}


def _pool1d_shape(op: str):
    def rule(a: dict, ins: list) -> Shape:
        (s,) = ins
        _needs_seq(op, s)
        return (_window(op, "window", s[0], a["size"], a["stride"], a["padding"]), s[1])

    return rule


def _pool1d_finish(a: dict) -> dict:
    if a["stride"] is None:  # Keras: strides default to pool_size
        a["stride"] = a["size"]
    return a


def _conv1d_describe(a: dict) -> str:
    bits = [f"{a['filters']}\u00d7{a['kernel']}"] + ([f"/{a['stride']}"] if a["stride"] != 1 else [])
    bits += [a["padding"]] if a["padding"] != "valid" else []
    bits += [f"dilation={a['dilation']}"] if a["dilation"] != 1 else []
    return " ".join(bits + ([a["activation"]] if a["activation"] != "linear" else []))


def _pool1d(name: str, keras: str) -> Op:
    return Op(
        name,
        keras,
        "pool",
        {"size": (integer(), REQUIRED), "stride": (integer(), None), **_PAD},
        _pool1d_size,
        _pool1d_shape(name),
        describe=lambda a: f"{a['size']}/{a['stride']}" + (" same" if a["padding"] == "same" else ""),
        finish=_pool1d_finish,
    )


# the table --------------------------------------------------------------------------------------

_SIDE_ARG: dict[str, tuple[Any, Any]] = {k: (integer(0), None) for k in _SIDES}

OPS: list[Op] = [
    Op(
        "dwconv",
        "DepthwiseConv2D",
        "conv",
        {
            "kernel": (pair(), REQUIRED),
            "stride": (pair(), 1),
            **_PAD,
            **_ACT,
            "multiplier": (integer(), 1),
            "dilation": (pair(), 1),
            "bias": (boolean, True),
        },
        _dw_size,
        _dw_shape,
        _dw_weights,
        _dw_macs,
        _dw_describe,
    ),
    Op(
        "sepconv",
        "SeparableConv2D",
        "conv",
        {
            "filters": (integer(), REQUIRED),
            "kernel": (pair(), REQUIRED),
            "stride": (pair(), 1),
            **_PAD,
            **_ACT,
            "multiplier": (integer(), 1),
            "dilation": (pair(), 1),
            "bias": (boolean, True),
        },
        _sep_size,
        _sep_shape,
        _sep_weights,
        _sep_macs,
        lambda a: _conv_describe(a) + (f" \u00d7{a['multiplier']}" if a["multiplier"] != 1 else ""),
    ),
    Op(
        "layernorm",
        "LayerNormalization",
        "norm",
        {"eps": (real(0, 1, lo_open=True), 1e-3)},
        None,
        lambda a, ins: ins[0],
        _norm_weights,
    ),
    Op(
        "groupnorm",
        "GroupNormalization",
        "norm",
        {"groups": (integer(), 32), "eps": (real(0, 1, lo_open=True), 1e-3)},
        lambda d, stride: _one_number("groupnorm", "groups", d, stride),
        _groupnorm_shape,
        _norm_weights,
        describe=lambda a: f"{a['groups']} groups",
    ),
    Op("mul", "Multiply", "merge", {}, None, _mul_shape),
    Op(
        "conv1d",
        "Conv1D",
        "conv",
        {
            "filters": (integer(), REQUIRED),
            "kernel": (integer(), REQUIRED),
            "stride": (integer(), 1),
            **_PAD,
            **_ACT,
            "dilation": (integer(), 1),
            "bias": (boolean, True),
        },
        _conv1d_size,
        _conv1d_shape,
        _conv1d_weights,
        lambda a, ins, out: out[0] * out[1] * a["kernel"] * ins[0][1],
        _conv1d_describe,
        finish=_conv1d_check,
    ),
    _pool1d("maxpool1d", "MaxPooling1D"),
    _pool1d("avgpool1d", "AveragePooling1D"),
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

ALIASES = {
    "zeropadding2d": "pad",
    "zero_pad": "pad",
    "zeropad": "pad",
    "depthwiseconv2d": "dwconv",
    "depthwise_conv": "dwconv",
    "separableconv2d": "sepconv",
    "separable_conv": "sepconv",
    "layernormalization": "layernorm",
    "ln": "layernorm",
    "groupnormalization": "groupnorm",
    "gn": "groupnorm",
    "maxpooling1d": "maxpool1d",
    "max_pool1d": "maxpool1d",
    "averagepooling1d": "avgpool1d",
    "avg_pool1d": "avgpool1d",
}

USAGE = {
    "pad": "pad P | pad PxQ | pad top=T bottom=B left=L right=R, e.g. `pad 1`",
    "dwconv": "dwconv K[/S] [activation] [same|valid] [multiplier=M], e.g. `dwconv 3/2 same relu`",
    "sepconv": "sepconv FxK[/S] [activation] [same|valid] [multiplier=M], e.g. `sepconv 32x3 same relu`",
    "conv1d": "conv1d FxK[/S] [activation] [same|valid], e.g. `conv1d 16x3 relu same` (input LxC)",
    "maxpool1d": "maxpool1d P[/S] [same|valid], e.g. `maxpool1d 2`",
    "avgpool1d": "avgpool1d P[/S] [same|valid], e.g. `avgpool1d 2`",
    "groupnorm": "groupnorm G (the number of groups, default 32), e.g. `groupnorm 8`",
}

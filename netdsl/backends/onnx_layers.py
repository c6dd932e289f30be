"""ONNX entries for the ops of :mod:`netdsl.ops_layers`; :mod:`netdsl.backends.onnx` merges
:data:`OPS` into its table (same signature: builder, args, inputs, shapes, output, weights).

Only operators every supported opset (13 and later) has in the same form: layer and group
normalisation are spelled out (a MatMul for the channel mean, InstanceNormalization over a
reshape), not LayerNormalization (opset 17) or GroupNormalization (18, changed in 21).
"""

from __future__ import annotations

import numpy as np

from ..ops_layers import pad_sides


def _pads(a: dict, shape) -> list[int]:
    from .onnx import _pads as pads

    return pads(a, shape, a["kernel"], a["stride"], a["dilation"])


def _activation(b, y: str, a: dict) -> str:
    from .onnx import ACTIVATION

    return ACTIVATION[a["activation"]](b, y, a["activation"])


def _depthwise(w, c: int, m: int) -> np.ndarray:
    """Keras's (kh, kw, C, M) as ONNX's grouped (C*M, 1, kh, kw)."""
    kh, kw = w.shape[:2]
    return w.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)


def _conv_attrs(a: dict, shape, group: int) -> dict:
    return {
        "kernel_shape": list(a["kernel"]),
        "strides": list(a["stride"]),
        "dilations": list(a["dilation"]),
        "pads": _pads(a, shape),
        "group": group,
    }


def _dwconv(b, a, xs, shapes, out, w) -> str:
    c, m = shapes[0][2], a["multiplier"]
    ins = [xs[0], b.init(f"{b.prefix}.kernel", _depthwise(w["kernel"], c, m))]
    if a["bias"]:
        ins.append(b.init(f"{b.prefix}.bias", w["bias"]))
    return _activation(b, b.op("Conv", ins, **_conv_attrs(a, shapes[0], c)), a)


def _sepconv(b, a, xs, shapes, out, w) -> str:
    c, m = shapes[0][2], a["multiplier"]
    dw = b.init(f"{b.prefix}.depthwise_kernel", _depthwise(w["depthwise_kernel"], c, m))
    y = b.op("Conv", [xs[0], dw], "depthwise", **_conv_attrs(a, shapes[0], c))
    ins = [y, b.init(f"{b.prefix}.pointwise_kernel", w["pointwise_kernel"].transpose(3, 2, 0, 1))]
    if a["bias"]:
        ins.append(b.init(f"{b.prefix}.bias", w["bias"]))
    return _activation(b, b.op("Conv", ins, kernel_shape=[1, 1]), a)


def _channels_last(b, x: str, shape, back: bool = False) -> str:
    if len(shape) == 1:
        return x
    perm = {(2, False): [0, 2, 1], (2, True): [0, 2, 1], (3, False): [0, 2, 3, 1], (3, True): [0, 3, 1, 2]}
    perm = perm[len(shape), back]
    return b.op("Transpose", [x], "channels_first" if back else "channels_last", perm=perm)


def _layernorm(b, a, xs, shapes, out, w) -> str:
    c = shapes[0][-1]
    x = _channels_last(b, xs[0], shapes[0])
    mean_of = b.const("mean_of", np.full((c, 1), 1 / c), np.float32)  # x @ (1/C) = the channel mean
    d = b.op("Sub", [x, b.op("MatMul", [x, mean_of], "mean")], "centred")
    var = b.op("MatMul", [b.op("Mul", [d, d], "square"), mean_of], "variance")
    eps = b.const("eps", a["eps"], np.float32)
    y = b.op("Div", [d, b.op("Sqrt", [b.op("Add", [var, eps], "plus_eps")], "std")], "normalised")
    y = b.op("Mul", [y, b.init(f"{b.prefix}.gamma", w["gamma"])], "scale")
    y = b.op("Add", [y, b.init(f"{b.prefix}.beta", w["beta"])], "shift")
    return _channels_last(b, y, shapes[0], back=True)


def _groupnorm(b, a, xs, shapes, out, w) -> str:
    s, g = shapes[0], a["groups"]
    c = s[-1]
    grouped = b.op("Reshape", [xs[0], b.const("grouped", [0, g, -1])], "grouped")  # (N, G, C/G * H * W)
    ones, zeros = b.const("ones", np.ones(g), np.float32), b.const("zeros", np.zeros(g), np.float32)
    y = b.op("InstanceNormalization", [grouped, ones, zeros], "normalised", epsilon=a["eps"])
    y = b.op("Reshape", [y, b.const("shape", [0, c, *s[:-1]])], "ungrouped")
    per_channel = (c,) + (1,) * (len(s) - 1)
    gamma = b.init(f"{b.prefix}.gamma", w["gamma"].reshape(per_channel))
    beta = b.init(f"{b.prefix}.beta", w["beta"].reshape(per_channel))
    return b.op("Add", [b.op("Mul", [y, gamma], "scale"), beta], "shift")


def _pad(b, a, xs, shapes, out, w) -> str:
    t, bottom, left, r = pad_sides(a)
    # NCHW: [N, C, H, W begins, N, C, H, W ends]; mode constant, value 0
    return b.op("Pad", [xs[0], b.const("pads", [0, 0, t, left, 0, 0, bottom, r])], mode="constant")


def _mul(b, a, xs, shapes, out, w) -> str:
    y = xs[0]
    for i, x in enumerate(xs[1:], 1):
        y = b.op("Mul", [y, x], None if i == len(xs) - 1 else f"mul{i}")
    return y


def _seq_pads(a: dict, n: int, k: int, s: int, d: int = 1) -> list[int]:
    from .onnx import _same_pad

    return list(_same_pad(n, k, s, d)) if a["padding"] == "same" else [0, 0]


def _conv1d(b, a, xs, shapes, out, w) -> str:
    ins = [xs[0], b.init(f"{b.prefix}.kernel", w["kernel"].transpose(2, 1, 0))]  # (k, C, F) -> (F, C, k)
    if a["bias"]:
        ins.append(b.init(f"{b.prefix}.bias", w["bias"]))
    pads = _seq_pads(a, shapes[0][0], a["kernel"], a["stride"], a["dilation"])
    attrs = {"kernel_shape": [a["kernel"]], "strides": [a["stride"]], "dilations": [a["dilation"]], "pads": pads}
    return _activation(b, b.op("Conv", ins, **attrs), a)


def _pool1d(kind: str):
    def emit(b, a, xs, shapes, out, w) -> str:
        attrs = {"kernel_shape": [a["size"]], "strides": [a["stride"]]}
        attrs["pads"] = _seq_pads(a, shapes[0][0], a["size"], a["stride"])
        if kind == "AveragePool":
            attrs["count_include_pad"] = 0
        return b.op(kind, [xs[0]], **attrs)

    return emit


OPS = {
    "conv1d": _conv1d,
    "maxpool1d": _pool1d("MaxPool"),
    "avgpool1d": _pool1d("AveragePool"),
    "dwconv": _dwconv,
    "sepconv": _sepconv,
    "layernorm": _layernorm,
    "groupnorm": _groupnorm,
    "mul": _mul,
    "pad": _pad,
}

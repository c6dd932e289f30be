"""ONNX entries for the ops of :mod:`netdsl.ops_layers`; :mod:`netdsl.backends.onnx` merges
:data:`OPS` into its table (same signature: builder, args, inputs, shapes, output, weights)."""

from __future__ import annotations

from ..ops_layers import pad_sides


def _pad(b, a, xs, shapes, out, w) -> str:
    t, bottom, left, r = pad_sides(a)
    # NCHW: [N, C, H, W begins, N, C, H, W ends]; mode constant, value 0
    return b.op("Pad", [xs[0], b.const("pads", [0, 0, t, left, 0, 0, bottom, r])], mode="constant")


OPS = {
    "pad": _pad,
}

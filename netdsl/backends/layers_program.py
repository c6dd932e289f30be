"""Torch and Keras entries for the ops of :mod:`netdsl.ops_layers`, importable without a framework.

:mod:`torch_program` and :mod:`keras_program` merge :data:`TORCH`, :data:`TORCH_HELPERS` and
:data:`KERAS` into their tables; the entries follow those modules' conventions (torch: a
:class:`~netdsl.backends.torch_program.Layer` of literals; keras: constructor arguments).
"""

from __future__ import annotations

import math
from typing import Any

from ..ops_layers import pad_sides

# torch_program and keras_program import this module while they load, so it names their
# NamedTuples lazily: TORCH holds (layer function, weights) pairs, made TorchOps there, and
# KERAS (class name, argument function[, merge]) tuples, made KerasOps there.


def Layer(module: tuple | None, steps: tuple) -> Any:  # noqa: N802  (torch_program.Layer, built late)
    from .torch_program import Layer as _Layer

    return _Layer(module, steps)


def _tp():
    from . import torch_program

    return torch_program


# ---- torch ---------------------------------------------------------------------------------

TORCH_HELPERS: dict[str, str] = {
    "DepthwiseConv2d": '''\
class DepthwiseConv2d(nn.Conv2d):
    """Keras's DepthwiseConv2D: each input channel convolved with its own `multiplier` filters.

    A grouped nn.Conv2d (groups = channels); keras_init gives its weight Keras's glorot limit,
    which counts the fans of Keras's (kh, kw, C, M) kernel, not of torch's (C*M, 1, kh, kw).
    """

    def __init__(self, channels: int, kernel_size, multiplier: int = 1, **kwargs) -> None:
        super().__init__(channels, channels * multiplier, kernel_size, groups=channels, **kwargs)
        receptive = self.kernel_size[0] * self.kernel_size[1]
        self.keras_fans = (receptive * channels, receptive * multiplier)
''',
    "SeparableConv2d": '''\
class SeparableConv2d(nn.Module):
    """Keras's SeparableConv2D: a depthwise convolution (no bias), then a 1x1 convolution."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size, multiplier: int = 1, bias: bool = True, **kwargs
    ) -> None:
        super().__init__()
        mid = in_channels * multiplier
        self.depthwise = nn.Conv2d(in_channels, mid, kernel_size, groups=in_channels, bias=False, **kwargs)
        receptive = self.depthwise.kernel_size[0] * self.depthwise.kernel_size[1]
        self.depthwise.keras_fans = (receptive * in_channels, receptive * multiplier)  # see keras_init
        self.pointwise = nn.Conv2d(mid, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))
''',
    "AvgPool1dSame": '''\
class AvgPool1dSame(nn.AvgPool1d):
    """1-D average pooling with TensorFlow's uneven 'same' padding (the odd element at the end),
    each average over the real elements only, as in Keras."""

    def __init__(self, kernel_size: int, stride: int, pad: tuple) -> None:
        super().__init__(kernel_size, stride)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = F.pad(torch.ones_like(x[:1, :1]), self.pad)
        count = F.avg_pool1d(ones, self.kernel_size, self.stride) * self.kernel_size[0]
        return F.avg_pool1d(F.pad(x, self.pad), self.kernel_size, self.stride) * self.kernel_size[0] / count

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pad={self.pad}"
''',
    "ChannelLayerNorm": '''\
class ChannelLayerNorm(nn.LayerNorm):
    """nn.LayerNorm over the channel axis (dim 1) of an NCHW tensor: Keras's LayerNormalization(axis=-1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)
''',
}


class _Seq:
    """1-D layers: torch's Conv1d and pools on (N, C, L), TF 'same' padding as for 2-D."""

    @staticmethod
    def pads(a: dict, n: int, k: int, s: int, d: int = 1) -> tuple[int | None, tuple | None]:
        if a["padding"] != "same":
            return None, None
        left, right = _tp()._same_pad(n, k, s, d)
        return (left or None, None) if left == right else (None, (left, right))

    @staticmethod
    def conv(a: dict, ins: list, out) -> Layer:
        kw: dict[str, Any] = {}
        if a["stride"] != 1:
            kw["stride"] = a["stride"]
        even, uneven = _Seq.pads(a, ins[0][0], a["kernel"], a["stride"], a["dilation"])
        if even:
            kw["padding"] = even
        if a["dilation"] != 1:
            kw["dilation"] = a["dilation"]
        if not a["bias"]:
            kw["bias"] = False
        pad = (("pad", uneven, 0.0),) if uneven else ()
        steps = (*pad, ("module",), *_tp()._act(a["activation"]))
        return Layer(("Conv1d", (ins[0][1], a["filters"], a["kernel"]), kw), steps)

    @staticmethod
    def maxpool(a: dict, ins: list, out) -> Layer:
        kw: dict[str, Any] = {} if a["stride"] == a["size"] else {"stride": a["stride"]}
        even, uneven = _Seq.pads(a, ins[0][0], a["size"], a["stride"])
        if even:
            kw["padding"] = even  # torch pads max pooling with -inf itself
        pad = (("pad", uneven, -math.inf),) if uneven else ()
        return Layer(("MaxPool1d", (a["size"],), kw), (*pad, ("module",)))

    @staticmethod
    def avgpool(a: dict, ins: list, out) -> Layer:
        even, uneven = _Seq.pads(a, ins[0][0], a["size"], a["stride"])
        if uneven:
            return Layer(("AvgPool1dSame", (a["size"], a["stride"], uneven), {}), (("module",),))
        kw: dict[str, Any] = {} if a["stride"] == a["size"] else {"stride": a["stride"]}
        if even:  # torch leaves even padding out of the averages itself
            kw.update(padding=even, count_include_pad=False)
        return Layer(("AvgPool1d", (a["size"],), kw), (("module",),))


def _conv_kw(a: dict, ins: list) -> tuple[dict, tuple]:
    """Keyword arguments shared by the convolutions, and a pad step for uneven 'same' padding."""
    tp = _tp()
    kw: dict[str, Any] = {}
    if a["stride"] != (1, 1):
        kw["stride"] = tp._sq(a["stride"])
    even, uneven = tp._padding(a, ins[0], a["kernel"], a["stride"], a["dilation"])
    if even:
        kw["padding"] = tp._sq(even)
    if a["dilation"] != (1, 1):
        kw["dilation"] = tp._sq(a["dilation"])
    if a["multiplier"] != 1:
        kw["multiplier"] = a["multiplier"]
    if not a["bias"]:
        kw["bias"] = False
    return kw, ((("pad", uneven, 0.0),) if uneven else ())


def _dwconv(a: dict, ins: list, out) -> Layer:
    kw, pad = _conv_kw(a, ins)
    steps = (*pad, ("module",), *_tp()._act(a["activation"]))
    return Layer(("DepthwiseConv2d", (ins[0][2], _tp()._sq(a["kernel"])), kw), steps)


def _sepconv(a: dict, ins: list, out) -> Layer:
    kw, pad = _conv_kw(a, ins)
    steps = (*pad, ("module",), *_tp()._act(a["activation"]))
    return Layer(("SeparableConv2d", (ins[0][2], a["filters"], _tp()._sq(a["kernel"])), kw), steps)


def _depthwise(a: dict, ins: list):
    """torch's (C*M, 1, kh, kw) as Keras's (kh, kw, C, M): a view, so set_weights writes through it."""
    c, m = ins[0][2], a["multiplier"]
    return lambda w: w.view(c, m, *w.shape[2:]).permute(2, 3, 0, 1)


def _dw_weights(a: dict, ins: list) -> dict:
    return {"kernel": ("weight", _depthwise(a, ins)), "bias": ("bias", None)}


def _sep_weights(a: dict, ins: list) -> dict:
    return {
        "depthwise_kernel": ("depthwise.weight", _depthwise(a, ins)),
        "pointwise_kernel": ("pointwise.weight", lambda w: w.permute(2, 3, 1, 0)),  # OI11 -> 11IO
        "bias": ("pointwise.bias", None),
    }


def _pad(a: dict, ins: list, out) -> Layer:
    t, b, left, r = pad_sides(a)
    return Layer(None, (("pad", (left, r, t, b), 0.0),))  # F.pad's order: last axis (W) first


def _layernorm(a: dict, ins: list, out) -> Layer:
    cls = "ChannelLayerNorm" if len(ins[0]) > 1 else "LayerNorm"
    return Layer((cls, (ins[0][-1],), {"eps": a["eps"]}), (("module",),))


def _groupnorm(a: dict, ins: list, out) -> Layer:
    return Layer(("GroupNorm", (a["groups"], ins[0][-1]), {"eps": a["eps"]}), (("module",),))


_NORM_W = {"gamma": ("weight", None), "beta": ("bias", None)}

TORCH: dict[str, tuple] = {
    "dwconv": (_dwconv, _dw_weights),
    "sepconv": (_sepconv, _sep_weights),
    "layernorm": (_layernorm, _NORM_W),
    "groupnorm": (_groupnorm, _NORM_W),
    "mul": (lambda a, ins, out: Layer(None, (("mul",),)), {}),
    "pad": (_pad, {}),
    "conv1d": (_Seq.conv, {"kernel": ("weight", lambda w: w.permute(2, 1, 0)), "bias": ("bias", None)}),  # OIK -> KIO
    "maxpool1d": (_Seq.maxpool, {}),
    "avgpool1d": (_Seq.avgpool, {}),
}

# ---- keras ---------------------------------------------------------------------------------


def _size(v: tuple) -> Any:
    return v[0] if len(v) == 2 and v[0] == v[1] else tuple(v)


def _keras_conv_kw(a: dict) -> dict:
    from .keras_program import ACTIVATION

    kw: dict = {}
    for key, value, default in (
        ("strides", _size(a["stride"]), 1),
        ("padding", a["padding"], "valid"),
        ("depth_multiplier", a["multiplier"], 1),
        ("activation", ACTIVATION[a["activation"]], "linear"),
        ("dilation_rate", _size(a["dilation"]), 1),
        ("use_bias", a["bias"], True),
    ):
        if value != default:
            kw[key] = value
    return kw


def _keras_1d_kw(a: dict) -> dict:
    from .keras_program import ACTIVATION

    kw: dict = {}
    for key, value, default in (
        ("padding", a["padding"], "valid"),
        ("activation", ACTIVATION[a.get("activation", "linear")], "linear"),
        ("dilation_rate", a.get("dilation", 1), 1),
        ("use_bias", a.get("bias", True), True),
    ):
        if value != default:
            kw[key] = value
    if "filters" in a and a["stride"] != 1:
        kw = {"strides": a["stride"], **kw}
    return kw


def _keras_pad(a: dict) -> tuple[tuple, dict]:
    t, b, left, r = pad_sides(a)
    if t == b and left == r:
        return ((t if t == left else (t, left)),), {}
    return (((t, b), (left, r)),), {}


def _keras_norm(a: dict) -> tuple[tuple, dict]:
    kw = {} if a["eps"] == 1e-3 else {"epsilon": a["eps"]}
    if "groups" in a:
        kw = {"groups": a["groups"], **kw}
    return (), kw


KERAS: dict[str, tuple] = {
    "dwconv": ("DepthwiseConv2D", lambda a: ((_size(a["kernel"]),), _keras_conv_kw(a))),
    "sepconv": ("SeparableConv2D", lambda a: ((a["filters"], _size(a["kernel"])), _keras_conv_kw(a))),
    "layernorm": ("LayerNormalization", _keras_norm),
    "groupnorm": ("GroupNormalization", _keras_norm),
    "mul": ("Multiply", lambda a: ((), {}), True),
    "pad": ("ZeroPadding2D", _keras_pad),
    "conv1d": ("Conv1D", lambda a: ((a["filters"], a["kernel"]), _keras_1d_kw(a))),
    "maxpool1d": ("MaxPooling1D", lambda a: ((a["size"], a["stride"]), _keras_1d_kw(a))),
    "avgpool1d": ("AveragePooling1D", lambda a: ((a["size"], a["stride"]), _keras_1d_kw(a))),
}

"""The ONNX backend: a checked :class:`~netdsl.net.Net` becomes an ``onnx.ModelProto``.

No framework is involved: netdsl knows every shape and every weight layout, so it
writes the ONNX graph itself with the ``onnx`` package (and numpy for the weights).

Inside the graph feature maps are NCHW, ONNX's convention, and follow Keras's
semantics exactly: TensorFlow ``same`` padding as explicit (possibly uneven)
``pads``; max pooling never picks the padding (ONNX pads it with -inf); average
pooling with ``count_include_pad=0`` divides by the real elements; ``flatten`` and
``reshape`` read (H, W, C) order through a Transpose where that order differs;
batchnorm in inference form; dropout absent.  ``layout="nhwc"`` adds one Transpose
after the input (and one before a feature-map output) so the model takes the spec's
own channels-last tensors.

Names: the ONNX node that does a netdsl node's main work is named after it
(``conv_1``), helpers ``conv_1/<what>``; the tensor leaving a netdsl node carries its
name; initializers are the canonical weight keys (``conv_1.kernel``, in ONNX's layout).
The graph's input is ``input`` and its output ``output``, with a dynamic batch axis.

The ``OPS`` table has one entry per op of :mod:`netdsl.ops` (checked at import).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, helper

from .. import ops as _ops
from ..export import DEFAULT_OPSET, MIN_OPSET
from ..export import MAX_OPSET as _MAX

__all__ = ["OPS", "DEFAULT_OPSET", "MIN_OPSET", "MAX_OPSET", "build"]

MAX_OPSET = min(onnx.defs.onnx_opset_version(), _MAX)  # an older onnx package writes fewer

BATCH = "batch"  # the name of the dynamic batch axis


def room(size: int) -> None:
    """MemoryError unless ``size`` bytes can be had now: protobuf's C code (upb) crashes (SIGSEGV)
    where an allocation fails, so a copy into a message is tried first in Python."""
    if size > 1 << 20:
        bytearray(size)  # freed at once; calloc's pages are only reserved


class _Builder:
    """Collects nodes and initializers; ``prefix`` is the netdsl node being emitted."""

    def __init__(self, opset: int, graph):
        self.opset = opset
        self.nodes: list = []
        self.graph = graph  # the model's own: initializers are made in place, never copied
        self.prefix = ""
        self._count = 0
        self._main = False

    def op(self, op_type: str, inputs: list[str], what: str | None = None, **attrs) -> str:
        """Add a node; returns its output's name.  The first node without ``what`` is the main one."""
        self._count += 1
        if what is None and not self._main:
            self._main, name = True, self.prefix
        else:
            name = f"{self.prefix}/{what or op_type.lower()}"
        out = f"{name}:{self._count}"  # renamed to the netdsl node's name when it is the last one
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    def init(self, name: str, array) -> str:
        """An initializer written once into the graph: numpy_helper.from_array and make_graph would
        each copy the weights again (an export of 1 GB of weights peaked at 4 GB)."""
        array = np.asarray(array)
        t = self.graph.initializer.add()
        t.name = name
        t.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        t.dims.extend(array.shape)
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        room(len(data))
        t.raw_data = data
        return name

    def const(self, what: str, values, dtype=np.int64) -> str:
        return self.init(f"{self.prefix}/{what}", np.asarray(values, dtype=dtype))

    def start(self, prefix: str) -> None:
        self.prefix, self._main = prefix, False

    def finish(self, value: str, name: str) -> str:
        """Give the netdsl node's result the node's own name (an Identity if it made none)."""
        last = self.nodes[-1] if self.nodes else None
        if last is None or last.output[0] != value:
            self.nodes.append(helper.make_node("Identity", [value], [name], name=self.prefix))
        else:
            last.output[0] = name
        return name


# ---- helpers ------------------------------------------------------------------------------


def _same_pad(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow ``same``: out = ceil(n / s); the odd pixel of padding goes last."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def _pads(a: dict, shape, kernel, stride, dilation=(1, 1)) -> list[int]:
    """ONNX ``pads``: [top, left, bottom, right]."""
    if a["padding"] != "same":
        return [0, 0, 0, 0]
    top, bottom = _same_pad(shape[0], kernel[0], stride[0], dilation[0])
    left, right = _same_pad(shape[1], kernel[1], stride[1], dilation[1])
    return [top, left, bottom, right]


def _differs(shape) -> bool:
    """Does (H, W, C) order differ from (C, H, W) for this shape (or (L, C) from (C, L))?"""
    return len(shape) in (2, 3) and shape[-1] != 1 and _ops._prod(shape[:-1]) != 1


SELU_ALPHA, SELU_GAMMA = 1.6732632423543772, 1.0507009873554805


def _silu(b: _Builder, x: str, what: str | None) -> str:
    return b.op("Mul", [x, b.op("Sigmoid", [x], "sigmoid")], what)


def _gelu(b: _Builder, x: str, what: str | None) -> str:
    if b.opset >= 20:
        return b.op("Gelu", [x], what)
    # exact (erf) GELU, Keras's default: 0.5 * x * (1 + erf(x / sqrt(2)))
    inv = b.init(f"{b.prefix}/gelu_rsqrt2", np.float32(1 / math.sqrt(2)))
    half = b.init(f"{b.prefix}/gelu_half", np.float32(0.5))
    one = b.init(f"{b.prefix}/gelu_one", np.float32(1.0))
    erf = b.op("Erf", [b.op("Mul", [x, inv], "gelu_scale")], "gelu_erf")
    return b.op("Mul", [b.op("Mul", [x, half], "gelu_half"), b.op("Add", [erf, one], "gelu_add")], what)


def _simple(op_type: str, **attrs) -> Callable:
    return lambda b, x, what: b.op(op_type, [x], what, **attrs)


# activation name -> (builder, x, what) -> output, for fused activations (conv/dense `activation=`,
# what = the activation's name: a helper node) and standalone layers (what = None: the main node).
# A fused leakyrelu is Keras's "leaky_relu" (slope 0.2); the standalone layer has its own alpha.
# Softmax is over the channel axis: 1 inside the graph (NCHW, or (N, C) for vectors).
ACTIVATION: dict[str, Callable[[_Builder, str, str | None], str]] = {
    "linear": lambda b, x, what: x if what else b.op("Identity", [x]),
    "relu": _simple("Relu"),
    "sigmoid": _simple("Sigmoid"),
    "tanh": _simple("Tanh"),
    "softmax": _simple("Softmax", axis=1),
    "log_softmax": _simple("LogSoftmax", axis=1),
    "gelu": _gelu,
    "elu": _simple("Elu", alpha=1.0),
    "selu": _simple("Selu", alpha=SELU_ALPHA, gamma=SELU_GAMMA),
    "silu": _silu,
    "leakyrelu": _simple("LeakyRelu", alpha=0.2),
}


# ---- the op table: (builder, args, input names, input shapes, output shape, weights) -> name ---


def _conv(b, a, xs, shapes, out, w) -> str:
    kernel = b.init(f"{b.prefix}.kernel", w["kernel"].transpose(3, 2, 0, 1))  # HWIO -> OIHW
    ins = [xs[0], kernel] + ([b.init(f"{b.prefix}.bias", w["bias"])] if a["bias"] else [])
    y = b.op(
        "Conv",
        ins,
        kernel_shape=list(a["kernel"]),
        strides=list(a["stride"]),
        dilations=list(a["dilation"]),
        pads=_pads(a, shapes[0], a["kernel"], a["stride"], a["dilation"]),
        **({"group": a["groups"]} if a.get("groups", 1) != 1 else {}),
    )
    return ACTIVATION[a["activation"]](b, y, a["activation"])


def _pool(kind: str) -> Callable:
    def emit(b, a, xs, shapes, out, w) -> str:
        attrs = {"kernel_shape": list(a["size"]), "strides": list(a["stride"])}
        attrs["pads"] = _pads(a, shapes[0], a["size"], a["stride"])
        if kind == "AveragePool":
            attrs["count_include_pad"] = 0  # TF `same`: average over the real elements only
        return b.op(kind, [xs[0]], **attrs)  # MaxPool pads with -inf: the padding never wins

    return emit


def _global(kind: str) -> Callable:
    def emit(b, a, xs, shapes, out, w) -> str:
        return b.op("Flatten", [b.op(kind, xs)], "flatten", axis=1)  # (N, C, 1, 1) -> (N, C)

    return emit


_TO_LAST = {2: [0, 2, 1], 3: [0, 2, 3, 1]}  # channels first -> last, by the rank of the shape
_TO_FIRST = {2: [0, 2, 1], 3: [0, 3, 1, 2]}


def _to_hwc(b, x: str, shape) -> str:
    """A feature map in Keras's (H, W, C) order (a Transpose only where the order differs)."""
    return b.op("Transpose", [x], "to_nhwc", perm=_TO_LAST[len(shape)]) if _differs(shape) else x


def _flatten(b, a, xs, shapes, out, w) -> str:
    return b.op("Flatten", [_to_hwc(b, xs[0], shapes[0])], axis=1)


def _reshape(b, a, xs, shapes, out, w) -> str:
    x = _to_hwc(b, xs[0], shapes[0])
    if len(out) == 1:
        return b.op("Reshape", [x, b.const("shape", [0, out[0]])])
    h, wd, c = out
    if not _differs(out):  # (H, W, C) and (C, H, W) order agree: straight to NCHW
        return b.op("Reshape", [x, b.const("shape", [0, c, h, wd])])
    y = b.op("Reshape", [x, b.const("shape", [0, h, wd, c])])
    return b.op("Transpose", [y], "to_nchw", perm=[0, 3, 1, 2])


def _dense(b, a, xs, shapes, out, w) -> str:
    ins = [xs[0], b.init(f"{b.prefix}.kernel", w["kernel"])]  # (in, out): Gemm's B as Keras holds it
    if a["bias"]:
        ins.append(b.init(f"{b.prefix}.bias", w["bias"]))
    return ACTIVATION[a["activation"]](b, b.op("Gemm", ins), a["activation"])


def _batchnorm(b, a, xs, shapes, out, w) -> str:
    ins = [xs[0]] + [b.init(f"{b.prefix}.{k}", w[k]) for k in ("gamma", "beta", "moving_mean", "moving_variance")]
    return b.op("BatchNormalization", ins, epsilon=a["eps"])  # inference form: the moving statistics


def _upsample(b, a, xs, shapes, out, w) -> str:
    scales = b.const("scales", [1.0, 1.0, float(a["size"][0]), float(a["size"][1])], np.float32)
    # integer factors: output pixel i reads input floor(i / s), as Keras repeats
    return b.op(
        "Resize",
        [xs[0], "", scales],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )


def _activation(name: str) -> Callable:
    def emit(b, a, xs, shapes, out, w) -> str:
        if name == "leakyrelu":  # the layer's own slope
            return b.op("LeakyRelu", xs, alpha=a["alpha"])
        return ACTIVATION[name](b, xs[0], None)

    return emit


OPS: dict[str, Callable] = {
    "conv": _conv,
    "maxpool": _pool("MaxPool"),
    "avgpool": _pool("AveragePool"),
    "gap": _global("GlobalAveragePool"),
    "gmp": _global("GlobalMaxPool"),
    "flatten": _flatten,
    "dense": _dense,
    "dropout": lambda b, a, xs, shapes, out, w: xs[0],  # inference: absent
    "batchnorm": _batchnorm,
    "upsample": _upsample,
    "reshape": _reshape,
    "add": lambda b, a, xs, shapes, out, w: b.op("Sum", xs),
    "concat": lambda b, a, xs, shapes, out, w: b.op("Concat", xs, axis=1),  # the channels, maps and vectors
    **{name: _activation(name) for name in _ops.ACTIVATIONS},
}

# ---- the ops of netdsl/ops_layers.py, kept together in onnx_layers ------------------------------
from .. import plugins as _plugins  # noqa: E402
from . import onnx_layers as _more  # noqa: E402  (it builds on _Builder and ACTIVATION above)

OPS.update(_more.OPS)
OPS.update(_plugins.entries(__name__))  # plugin layers registered before this import
# ---- preprocessing and augmentation layers (netdsl/ops_preprocess.py) --------------------------


def _per_channel(v, shape) -> np.ndarray:
    """A scalar, or one value per channel shaped to broadcast over NCHW (or (N, C))."""
    a = np.asarray(v, dtype=np.float32).reshape(-1)
    return a if a.size == 1 else a.reshape((1, -1, 1, 1) if len(shape) == 3 else (1, -1))


def _affine(b, x: str, scale, offset, shape) -> str:
    """x * scale + offset as Mul and Add (either left out when it does nothing)."""
    scale, offset = _per_channel(scale, shape), _per_channel(offset, shape)
    if not np.all(scale == 1):
        x = b.op("Mul", [x, b.const("scale", scale, np.float32)])
    if np.any(offset != 0):
        x = b.op("Add", [x, b.const("offset", offset, np.float32)], "add")
    return x


def _rescale(b, a, xs, shapes, out, w) -> str:
    return _affine(b, xs[0], a["scale"], a["offset"], shapes[0])


def _normalize(b, a, xs, shapes, out, w) -> str:  # (x - mean) / std = x * (1 / std) + (-mean / std)
    mean, std = np.asarray(a["mean"], np.float64), np.asarray(a["std"], np.float64)
    return _affine(b, xs[0], 1 / std, -mean / std, shapes[0])


def _randomcrop(b, a, xs, shapes, out, w) -> str:
    """At inference the centre window of the zero-padded input, as torch's and Keras's layers
    take it (an Identity only when that window is the input itself)."""
    p, (h, w_) = a["padding"], a["size"]
    big_h, big_w = shapes[0][0] + 2 * p, shapes[0][1] + 2 * p
    top, left = (big_h - h) // 2, (big_w - w_) // 2
    if top == p and left == p and (h, w_) == tuple(shapes[0][:2]):
        return b.op("Identity", xs)
    x = xs[0]
    if p:  # NCHW pads: [begin N, C, H, W, end N, C, H, W]
        x = b.op("Pad", [x, b.const("pads", [0, 0, p, p, 0, 0, p, p])], "pad")
    starts, ends, axes = b.const("starts", [top, left]), b.const("ends", [top + h, left + w_]), b.const("axes", [2, 3])
    return b.op("Slice", [x, starts, ends, axes])


OPS.update(
    rescale=_rescale,
    normalize=_normalize,
    # training-only augmentation: the identity at inference, as in Keras
    **{name: (lambda b, a, xs, shapes, out, w: b.op("Identity", xs)) for name in _ops._pre.RANDOM},
)
OPS["randomcrop"] = _randomcrop  # the one that can change the shape: its centre window

_missing = set(_ops.OPS) ^ set(OPS)
assert not _missing, f"the onnx backend's OPS table and netdsl.ops disagree on {sorted(_missing)}"
_missing = set(_ops.ACTIVATIONS) ^ set(ACTIVATION)  # each activation layer above is made from this table
assert not _missing, f"the onnx backend's ACTIVATION table and netdsl.ops disagree on {sorted(_missing)}"


# ---- the model ----------------------------------------------------------------------------


def _value(name: str, shape, layout: str):
    dims = (shape[-1], *shape[:-1]) if len(shape) > 1 and layout == "nchw" else tuple(shape)
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *dims])


def build(net, tensors: dict, *, opset: int = DEFAULT_OPSET, layout: str = "nchw", doc: str = "", meta=None):
    """The ``onnx.ModelProto`` of ``net`` with ``tensors`` (canonical weights, already validated)."""
    g = net.graph
    model = ModelProto()
    b = _Builder(opset, model.graph)
    names: dict[str, str] = {}  # netdsl node -> the ONNX value that carries its output
    made: set[str] = set()
    out_node = g.graph["output"]
    weights: dict[str, dict] = {}
    for key, value in tensors.items():
        node, wname = key.split(".", 1)
        weights.setdefault(node, {})[wname] = value
    for name, node in g.nodes.items():
        if node["op"] == "input":
            names[name] = "input"
            if layout == "nhwc" and len(node["shape"]) > 1:
                b.start("input")
                perm = _TO_FIRST[len(node["shape"])]
                names[name] = b.finish(b.op("Transpose", ["input"], "to_nchw", perm=perm), "input/nchw")
            made.add(names[name])
            continue
        b.start(name)
        shapes = [g.nodes[i]["shape"] for i in node["inputs"]]
        ins = [names[i] for i in node["inputs"]]
        y = OPS[node["op"]](b, node["args"], ins, shapes, node["shape"], weights.get(name, {}))
        if y in made and name != out_node:  # dropout: the input flows on, nothing emitted
            names[name] = y
            continue
        if name == out_node and layout == "nhwc" and len(node["shape"]) > 1:
            # named apart from a node's own "to_nhwc" (reshape, flatten): ONNX node names are unique
            y = b.op("Transpose", [y], "output_nhwc", perm=_TO_LAST[len(node["shape"])])
        # a node the user named `output` (or `input`) keeps its name on the ONNX node, not the value
        value = "output" if name == out_node else name if name not in ("input", "output") else f"{name}/value"
        names[name] = b.finish(y, value)
        made.add(names[name])
    out_shape = g.nodes[out_node]["shape"]
    graph = b.graph
    graph.name = net.name
    graph.node.extend(b.nodes)
    graph.input.append(_value("input", g.nodes["input"]["shape"], layout))
    graph.output.append(_value("output", out_shape, layout))
    graph.doc_string = doc
    model.opset_import.append(helper.make_opsetid("", opset))
    model.producer_name = "netdsl"
    model.doc_string = doc
    model.ir_version = _ir_version(opset)
    from .. import __version__

    model.producer_version = __version__
    model.model_version = 1
    helper.set_model_props(model, dict(meta or {}))
    return model


def _ir_version(opset: int) -> int:
    """The oldest IR version that carries ``opset``: runtimes read older IRs more widely."""
    best = None
    for _release, ir, ai_onnx, *_ in helper.VERSION_TABLE:
        if ai_onnx >= opset and (best is None or ir < best):
            best = ir
    return best or onnx.IR_VERSION

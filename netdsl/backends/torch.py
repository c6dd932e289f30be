"""The PyTorch backend: a checked :class:`~netdsl.net.Net` becomes an ``nn.Module``.

Models take and return NCHW tensors (vectors as ``(N, C)``) and reproduce Keras's
semantics exactly (LANGUAGE.md section 5): TensorFlow ``same`` padding, done with an
explicit ``F.pad`` when it is asymmetric (``-inf`` for max pooling; average pooling
divides by the number of real elements); ``flatten`` and ``reshape`` in (H, W, C)
order; Keras's initialisation (glorot-uniform kernels, zero biases).

The ``OPS`` table maps each op of :mod:`netdsl.ops` to a :class:`Layer`: the
``torch.nn`` module it owns (a class name and literal arguments) and the steps of
its forward pass.  The in-memory model (:func:`build`) and the generated source
(:func:`generate`) are both made from that table, so they are the same network by
construction: the module is ``getattr(nn, cls)(*args, **kwargs)`` in one and
``nn.Cls(<repr of the same arguments>)`` in the other.

A node with a module is an attribute named after the node (``model.conv_1``);
flatten, reshape, global pooling, add and concat are tensor operations in
``forward``.  Names that clash with an ``nn.Module`` attribute or a Python keyword
get a trailing ``_``.  The forward pass is planned once: a plain chain is a flat
list of callables, any other graph a list of steps over numbered slots.

A net ending in softmax also gets ``forward_logits(x)`` (the output before that
softmax) so that :func:`sparse_categorical_crossentropy` is computed stably.
"""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import ops as _ops
from ..errors import NetdslError

__all__ = [
    "OPS",
    "Layer",
    "TorchOp",
    "build",
    "device",
    "generate",
    "get_weights",
    "predict",
    "set_weights",
    "sparse_categorical_crossentropy",
]

EPSILON = 1e-7  # Keras's clamp for the log of probabilities


# ---- the op table -----------------------------------------------------------------------


class Layer(NamedTuple):
    """What one node becomes.

    ``module``: ``(nn class name, positional args, keyword args)`` of literals, or None.
    ``steps``: the forward pass as ``(kind, *literals)`` tuples applied in order; a
    merge (``add``, ``concat``) is one step taking all inputs.  Kinds: see ``_STEPS``.
    """

    module: tuple | None
    steps: tuple


class TorchOp(NamedTuple):
    layer: Callable  # (args, input shapes, output shape) -> Layer
    weights: dict = {}  # canonical name -> (module attribute, canonical layout from torch's)


def _sq(pair: tuple) -> int | tuple:
    """``(3, 3)`` -> ``3``: torch takes either; the generated code reads better."""
    return pair[0] if pair[0] == pair[1] else tuple(pair)


def _same_pad(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow ``same``: out = ceil(n / s); the odd pixel of padding goes last."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def _padding(a: dict, shape, kernel, stride, dilation=(1, 1)):
    """(symmetric padding for the layer, or None; explicit F.pad tuple, or None)."""
    if a["padding"] != "same":
        return None, None
    top, bottom = _same_pad(shape[0], kernel[0], stride[0], dilation[0])
    left, right = _same_pad(shape[1], kernel[1], stride[1], dilation[1])
    if top == bottom and left == right:
        return ((top, left) if top or left else None), None
    return None, (left, right, top, bottom)


def _act(name: str) -> tuple:
    return () if name == "linear" else (("act", name),)


def _conv(a: dict, ins: list, out) -> Layer:
    kw: dict[str, Any] = {"kernel_size": _sq(a["kernel"])}
    if a["stride"] != (1, 1):
        kw["stride"] = _sq(a["stride"])
    sym, pad = _padding(a, ins[0], a["kernel"], a["stride"], a["dilation"])
    if sym:
        kw["padding"] = _sq(sym)
    if a["dilation"] != (1, 1):
        kw["dilation"] = _sq(a["dilation"])
    if not a["bias"]:
        kw["bias"] = False
    pre = (("pad", pad, 0.0),) if pad else ()
    return Layer(("Conv2d", (ins[0][2], a["filters"]), kw), (*pre, ("module",), *_act(a["activation"])))


def _maxpool(a: dict, ins: list, out) -> Layer:
    kw: dict[str, Any] = {} if a["stride"] == a["size"] else {"stride": _sq(a["stride"])}
    sym, pad = _padding(a, ins[0], a["size"], a["stride"])
    if sym:
        kw["padding"] = _sq(sym)  # torch pads max pooling with -inf itself
    pre = (("pad", pad, -np.inf),) if pad else ()
    return Layer(("MaxPool2d", (_sq(a["size"]),), kw), (*pre, ("module",)))


def _avgpool(a: dict, ins: list, out) -> Layer:
    kw: dict[str, Any] = {} if a["stride"] == a["size"] else {"stride": _sq(a["stride"])}
    sym, pad = _padding(a, ins[0], a["size"], a["stride"])
    if sym:  # symmetric: torch can leave the padding out of the average itself
        kw.update(padding=_sq(sym), count_include_pad=False)
    if not pad:
        return Layer(("AvgPool2d", (_sq(a["size"]),), kw), (("module",),))
    # asymmetric: sum over the padded input, divided by the count of real elements
    kw["divisor_override"] = 1
    return Layer(("AvgPool2d", (_sq(a["size"]),), kw), (("avg_same", pad, tuple(a["size"]), tuple(a["stride"])),))


def _dense(a: dict, ins: list, out) -> Layer:
    kw = {} if a["bias"] else {"bias": False}
    return Layer(("Linear", (ins[0][0], a["units"]), kw), (("module",), *_act(a["activation"])))


def _batchnorm(a: dict, ins: list, out) -> Layer:
    cls = "BatchNorm2d" if len(ins[0]) == 3 else "BatchNorm1d"
    # Keras: moving = m * moving + (1 - m) * batch; torch's momentum weighs the batch
    momentum = float(f"{1 - a['momentum']:.15g}")
    return Layer((cls, (ins[0][-1],), {"eps": a["eps"], "momentum": momentum}), (("module",),))


def _nhwc_differs(shape) -> bool:
    """Does (H, W, C) order differ from torch's (C, H, W) for this shape?"""
    return len(shape) == 3 and shape[2] != 1 and shape[0] * shape[1] != 1


def _reshape(a: dict, ins: list, out) -> Layer:
    return Layer(None, (("reshape", tuple(out), _nhwc_differs(ins[0]), _nhwc_differs(out)),))


def _module(cls: str, *args, **kwargs) -> Callable:
    return lambda a, ins, out: Layer((cls, args, kwargs), (("module",),))


def _steps(*steps) -> Callable:
    return lambda a, ins, out: Layer(None, steps)


_KERNEL = {"kernel": ("weight", lambda w: w.permute(2, 3, 1, 0)), "bias": ("bias", None)}  # OIHW -> HWIO
_DENSE = {"kernel": ("weight", lambda w: w.t()), "bias": ("bias", None)}  # (out, in) -> (in, out)
_BN = {
    "gamma": ("weight", None),
    "beta": ("bias", None),
    "moving_mean": ("running_mean", None),
    "moving_variance": ("running_var", None),
}

OPS: dict[str, TorchOp] = {
    "conv": TorchOp(_conv, _KERNEL),
    "maxpool": TorchOp(_maxpool),
    "avgpool": TorchOp(_avgpool),
    "gap": TorchOp(_steps(("gap",))),
    "gmp": TorchOp(_steps(("gmp",))),
    "flatten": TorchOp(lambda a, ins, out: Layer(None, (("flatten", _nhwc_differs(ins[0])),))),
    "dense": TorchOp(_dense, _DENSE),
    "dropout": TorchOp(lambda a, ins, out: Layer(("Dropout", (a["rate"],), {}), (("module",),))),
    "batchnorm": TorchOp(_batchnorm, _BN),
    # integer factors: nearest-exact picks floor(i / s) without float round-off (Keras repeats)
    "upsample": TorchOp(
        lambda a, ins, out: Layer(
            ("Upsample", (), {"scale_factor": _sq(a["size"]), "mode": "nearest-exact"}), (("module",),)
        )
    ),
    "reshape": TorchOp(_reshape),
    "add": TorchOp(_steps(("add",))),
    "concat": TorchOp(_steps(("concat",))),
    "linear": TorchOp(_module("Identity")),
    "relu": TorchOp(_module("ReLU")),
    "sigmoid": TorchOp(_module("Sigmoid")),
    "tanh": TorchOp(_module("Tanh")),
    "softmax": TorchOp(_module("Softmax", dim=1)),  # the channel axis
    "gelu": TorchOp(_module("GELU")),  # exact (erf), as Keras
    "elu": TorchOp(_module("ELU")),
    "selu": TorchOp(_module("SELU")),
    "silu": TorchOp(_module("SiLU")),
    "leakyrelu": TorchOp(lambda a, ins, out: Layer(("LeakyReLU", (a["alpha"],), {}), (("module",),))),
}

_missing = set(_ops.OPS) ^ set(OPS)
assert not _missing, f"the torch backend's OPS table and netdsl.ops disagree on {sorted(_missing)}"

# Fused activations (conv/dense `activation=`): Keras's activation functions.
_ACT_FN: dict[str, Callable] = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": partial(torch.softmax, dim=1),
    "gelu": F.gelu,
    "elu": F.elu,
    "selu": F.selu,
    "silu": F.silu,
    "leakyrelu": partial(F.leaky_relu, negative_slope=0.2),  # Keras's "leaky_relu" activation
}
_ACT_SRC = {
    "relu": "torch.relu({})",
    "sigmoid": "torch.sigmoid({})",
    "tanh": "torch.tanh({})",
    "softmax": "torch.softmax({}, dim=1)",
    "gelu": "F.gelu({})",
    "elu": "F.elu({})",
    "selu": "F.selu({})",
    "silu": "F.silu({})",
    "leakyrelu": "F.leaky_relu({}, 0.2)",
}


# ---- forward steps: each kind as a callable (build) and as source (generate) -----------
# Only module-level functions, modules and partials: models deep-copy and pickle.


def _seq(fns: tuple, x):
    for f in fns:
        x = f(x)
    return x


def _flatten(x):
    return x.flatten(1)


def _flatten_nhwc(x):
    """``x.permute(0, 2, 3, 1).flatten(1)`` whose gradient comes back contiguous.

    The permuted view would hand the layers below a channels-last-strided gradient,
    which sends pooling and the convolutions' backward pass off their fast path (+5 to
    10% per training step of LeNet-5).  Merging N and C first makes autograd copy the
    gradient back to plain NCHW instead.
    """
    n, c, h, w = x.shape
    return x.reshape(n * c, h * w).view(n, c, h * w).transpose(1, 2).reshape(n, -1)


def _reshape_nhwc(shape: tuple, from_nhwc: bool, to_nchw: bool, x):
    x = (_flatten_nhwc(x) if from_nhwc else x).reshape(x.shape[0], *shape)
    return x.permute(0, 3, 1, 2).contiguous() if len(shape) == 3 else x


def _gap(x):
    return x.mean((2, 3))


def _gmp(x):
    return x.amax((2, 3))


def _avg_same(pool, pad: tuple, size: tuple, stride: tuple, x):
    count = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), pad), size, stride, divisor_override=1)
    return pool(F.pad(x, pad)) / count


def _add(*xs):
    out = xs[0]
    for t in xs[1:]:
        out = out + t
    return out


def _concat(*xs):
    return torch.cat(xs, dim=1)


def _pad_src(x: str, pad: tuple, value: float) -> str:
    return f"F.pad({x}, {_lit(pad)})" if value == 0 else f'F.pad({x}, {_lit(pad)}, value=float("-inf"))'


def _reshape_src(x: str, shape: tuple, from_nhwc: bool, to_nchw: bool) -> str:
    src = f"flatten_hwc({x})" if from_nhwc else x
    src += f".reshape({x}.shape[0], {', '.join(map(_lit, shape))})"
    if len(shape) == 3:
        src += ".permute(0, 3, 1, 2).contiguous()"
    return src


def _avg_same_src(x: str, attr: str, pad: tuple, size: tuple, stride: tuple) -> str:
    ones = f"F.pad(torch.ones_like({x}[:1, :1]), {_lit(pad)})"
    count = f"F.avg_pool2d({ones}, {_lit(_sq(size))}, {_lit(_sq(stride))}, divisor_override=1)"
    return f"self.{attr}(F.pad({x}, {_lit(pad)})) / {count}"


# kind -> (callable from (module, *literals), source from (input expression, attribute, *literals))
_STEPS: dict[str, tuple[Callable, Callable]] = {
    "module": (lambda m: m, lambda x, attr: f"self.{attr}({x})"),
    "act": (lambda m, name: _ACT_FN[name], lambda x, attr, name: _ACT_SRC[name].format(x)),
    "pad": (
        lambda m, pad, value: partial(F.pad, pad=pad, value=value),
        lambda x, attr, pad, value: _pad_src(x, pad, value),
    ),
    "avg_same": (lambda m, *lits: partial(_avg_same, m, *lits), _avg_same_src),
    "flatten": (
        lambda m, nhwc: _flatten_nhwc if nhwc else _flatten,
        lambda x, attr, nhwc: f"flatten_hwc({x})" if nhwc else f"{x}.flatten(1)",
    ),
    "reshape": (lambda m, *lits: partial(_reshape_nhwc, *lits), _reshape_src),
    "gap": (lambda m: _gap, lambda x, attr: f"{x}.mean((2, 3))"),
    "gmp": (lambda m: _gmp, lambda x, attr: f"{x}.amax((2, 3))"),
    "add": (lambda m: _add, lambda xs, attr: " + ".join(xs)),
    "concat": (lambda m: _concat, lambda xs, attr: f"torch.cat([{', '.join(xs)}], dim=1)"),
}
_MERGES = ("add", "concat")


def _lit(v) -> str:
    """A literal as Python source: only numbers, booleans, fixed words and tuples of them."""
    if isinstance(v, tuple):
        return "(" + ", ".join(map(_lit, v)) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, bool) or isinstance(v, int):
        return repr(v)
    if isinstance(v, float) and np.isfinite(v):
        return repr(v)
    if isinstance(v, str) and re.fullmatch(r"[a-z][a-z-]*", v):
        return repr(v)
    raise ValueError(f"not a literal the generator emits: {v!r}")


# ---- names --------------------------------------------------------------------------------


def _unmangled(name: str, taken) -> str:
    """``name`` with ``_`` appended until it is free, not a keyword, and not mangled in a class."""
    while keyword.iskeyword(name) or name in taken or (name.startswith("__") and not name.endswith("__")):
        name += "_"
    return name


def _attrs(net) -> dict[str, str]:
    """Node -> attribute name on the module (and local variable name in generated code)."""
    used: set[str] = set()
    out = {}
    for name in net.graph.nodes:
        out[name] = attr = _unmangled(name, _RESERVED | used)
        used.add(attr)
    return out


class _Plan(NamedTuple):
    nodes: list  # [(node, fn, input slots)], one per node in order; slot i is node i (0: the input)
    steps: tuple | None  # a chain: callables in order
    graph: tuple | None  # any graph: (fn, input slots, output slot, slots to free after)
    result: int


def _plan(nodes: list, result: int) -> _Plan:
    chain = all(ins == (i,) for i, (_, _, ins) in enumerate(nodes))
    if chain:
        steps = []
        for _, fn, _ in nodes:
            steps.extend(fn.args[0] if isinstance(fn, partial) and fn.func is _seq else (fn,))
        return _Plan(nodes, tuple(steps), None, result)
    last: dict[int, int] = {}
    for k, (_, _, ins) in enumerate(nodes):
        for i in ins:
            last[i] = k
    graph = []
    for k, (_, fn, ins) in enumerate(nodes):
        free = tuple(sorted({i for i in ins if last[i] == k and i != result}))
        graph.append((fn, ins, k + 1, free))
    return _Plan(nodes, None, tuple(graph), result)


# ---- the in-memory module ------------------------------------------------------------------


class NetdslModule(nn.Module):
    """A netdsl net as a ``torch.nn.Module``: NCHW in, NCHW out (vectors as ``(N, C)``).

    ``forward`` returns what the net's last layer returns (probabilities for a final
    softmax, like Keras); ``forward_logits`` the values before a final softmax.
    """

    netdsl_output_is_softmax: bool

    def __init__(self, net) -> None:
        super().__init__()
        g = net.graph
        attrs = _attrs(net)
        order = list(g.nodes)
        slot = {name: i for i, name in enumerate(order)}
        out_name = g.graph["output"]
        out_node = g.nodes[out_name]
        nodes, logit_nodes = [], None
        self.netdsl_output_is_softmax = out_node["op"] == "softmax" or (
            out_node["args"] is not None and out_node["args"].get("activation") == "softmax"
        )
        for name in order[1:]:
            node = g.nodes[name]
            layer = _layer(g, name)
            module = None
            if layer.module is not None:
                cls, args, kwargs = layer.module
                module = getattr(nn, cls)(*args, **kwargs)
                self.add_module(attrs[name], module)
            fns = [_STEPS[kind][0](module, *lits) for kind, *lits in layer.steps]
            ins = tuple(slot[i] for i in node["inputs"])
            nodes.append((name, fns[0] if len(fns) == 1 else partial(_seq, tuple(fns)), ins))
            if name == out_name and self.netdsl_output_is_softmax:
                if node["op"] == "softmax":  # a softmax layer: the logits are its input
                    logit_nodes, logit_result = nodes[:-1], ins[0]
                else:  # a fused softmax: the same node without it
                    pre = fns[:-1]
                    fn = pre[0] if len(pre) == 1 else partial(_seq, tuple(pre))
                    logit_nodes, logit_result = [*nodes[:-1], (name, fn, ins)], slot[name]
        _keras_init(self)
        self._netdsl = _plan(nodes, slot[out_name])
        self._netdsl_logits = _plan(logit_nodes, logit_result) if logit_nodes is not None else None
        self._netdsl_names = (order, out_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self._netdsl
        if plan.steps is not None:
            for f in plan.steps:
                x = f(x)
            return x
        return _run(plan, x)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The output before the net's final softmax (for a stable cross-entropy)."""
        plan = self._netdsl_logits
        if plan is None:
            order, out = self._netdsl_names
            raise ValueError(f"forward_logits: the net does not end in softmax (its output is `{out}`)")
        if plan.steps is not None:
            for f in plan.steps:
                x = f(x)
            return x
        return _run(plan, x)

    def node_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every node's output (NCHW), in order, the input included: for tests and debugging."""
        order, _ = self._netdsl_names
        vals = [x]
        for _, fn, ins in self._netdsl.nodes:
            vals.append(fn(*[vals[i] for i in ins]))
        return dict(zip(order, vals, strict=True))


def _run(plan: _Plan, x):
    vals = [None] * (len(plan.nodes) + 1)
    vals[0] = x
    for fn, ins, out, free in plan.graph:
        vals[out] = fn(*[vals[i] for i in ins])
        for i in free:
            vals[i] = None
    return vals[plan.result]


_RESERVED = (
    frozenset(dir(nn.Module()))
    | frozenset(dir(NetdslModule))
    | {
        "netdsl_output_is_softmax",
        "_netdsl",
        "_netdsl_logits",
        "_netdsl_names",
    }
)


def _layer(g, name: str) -> Layer:
    node = g.nodes[name]
    ins = [g.nodes[i]["shape"] for i in node["inputs"]]
    return OPS[node["op"]].layer(node["args"], ins, node["shape"])


def _keras_init(model: nn.Module) -> None:
    """Keras's defaults: glorot-uniform kernels, zero biases (batchnorm's are torch's too)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ---- the API ------------------------------------------------------------------------------


def device(requested: str | None = None) -> str:
    """``requested`` if given (checked), else the best found: cuda, mps, xpu, cpu."""
    if requested:
        try:
            torch.device(requested)
        except (RuntimeError, TypeError, ValueError):
            raise NetdslError(
                "E403", f"`{requested}` is not a torch device", hint="use cpu, cuda, cuda:1, mps or xpu"
            ) from None
        return str(requested)
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return "xpu"
    return "cpu"


def build(net, device: str | None = None) -> NetdslModule:
    """The ``nn.Module`` of ``net`` with Keras's initialisation, on ``device`` (default: best found)."""
    where = _device(device)
    model = NetdslModule(net)
    if torch.device(where).type != "cpu":
        model.to(where)
    return model


_device = device  # build()'s parameter shadows the function's name


def _weight_map(model, net):
    """``("<node>.<name>", tensor of the module, to-canonical or None)`` for every weight."""
    attrs = _attrs(net)
    nodes = net.graph.nodes
    for name, node in nodes.items():
        if node["op"] == "input":
            continue
        table = OPS[node["op"]].weights
        ins = [nodes[i]["shape"] for i in node["inputs"]]
        for wname, _, _ in _ops.OPS[node["op"]].weights(node["args"], ins):
            tname, convert = table[wname]
            yield f"{name}.{wname}", getattr(getattr(model, attrs[name]), tname), convert


def get_weights(model, net) -> dict[str, np.ndarray]:
    """Every weight in the canonical (Keras) layout, as float32 numpy copies."""
    out = {}
    for key, t, convert in _weight_map(model, net):
        t = t.detach()
        if convert is not None:
            t = convert(t)
        out[key] = np.array(t.cpu().numpy(), dtype=np.float32, order="C", copy=True)
    return out


def set_weights(model, net, tensors: dict) -> None:
    """Load canonical (Keras-layout) weights; ``tensors`` was validated against the net."""
    with torch.no_grad():
        for key, t, convert in _weight_map(model, net):
            src = torch.as_tensor(np.asarray(tensors[key], dtype=np.float32))
            if convert is not None:
                view = convert(t)  # a view of the parameter in canonical layout
                view.copy_(src)
            else:
                t.copy_(src)


def _model_device(model) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def predict(model, x, batch_size: int = 256) -> np.ndarray:
    """Inference-mode outputs for a channels-last batch, returned channels-last (float32)."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    where = _model_device(model)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    outs = []
    try:
        with torch.no_grad():
            for i in range(0, max(len(x), 1), batch_size):
                b = x[i : i + batch_size].to(where)
                if b.ndim == 4:
                    b = b.permute(0, 3, 1, 2).contiguous()
                y = model(b)
                if y.ndim == 4:
                    y = y.permute(0, 2, 3, 1)
                outs.append(y.float().cpu())
    finally:
        for m, mode in modes:
            m.training = mode
    return np.ascontiguousarray(torch.cat(outs).numpy())


def sparse_categorical_crossentropy(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of integer labels ``y`` for the batch ``x`` (NCHW), like Keras's loss.

    A net ending in softmax is scored on its logits (log-softmax + NLL: stable for any
    logits); otherwise on the log of the outputs, clamped to [1e-7, 1 - 1e-7] like Keras.
    """
    y = y.long()
    if getattr(model, "netdsl_output_is_softmax", False):
        return F.cross_entropy(model.forward_logits(x), y)
    p = model(x)
    return F.nll_loss(torch.log(p.clamp(EPSILON, 1 - EPSILON)), y)


# ---- generated source ------------------------------------------------------------------------

_GLOBALS = {"torch", "nn", "F", "build_model", "keras_init", "flatten_hwc"}
_LOCALS = frozenset(dir(builtins)) | _GLOBALS | {"self", "x"}
_USES_F = re.compile(r"(?<![\w.])F\.")

_INIT_SRC = '''\
def keras_init(model: nn.Module) -> None:
    """Keras's default initialisation: glorot-uniform kernels, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
'''


_FLATTEN_SRC = '''\
def flatten_hwc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W*C) in Keras's (H, W, C) order.

    The same as x.permute(0, 2, 3, 1).flatten(1), but the gradient comes back as a
    plain NCHW tensor, which keeps the backward pass of the layers below fast.
    """
    n, c, h, w = x.shape
    return x.reshape(n * c, h * w).view(n, c, h * w).transpose(1, 2).reshape(n, -1)
'''


def _comment(text: str) -> str:
    """One line of user-derived text, safe inside a ``#`` comment: no line breaks or controls."""
    keep = "".join(c for c in text if unicodedata.category(c)[0] not in "CZ" or c == " ")
    return keep.rstrip()


def _class_name(name: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", str(name))
    cls = "".join(w[:1].upper() + w[1:] for w in words)
    if not cls or cls[0].isdigit():
        cls = "Net" + cls
    if keyword.iskeyword(cls) or cls in _GLOBALS:
        cls += "Net"
    return cls


def _shape_src(shape: tuple) -> str:
    s = (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)
    return "(N, " + ", ".join(map(str, s)) + ")"


def _ctor_src(module: tuple) -> str:
    cls, args, kwargs = module
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", cls) and hasattr(nn, cls)
    parts = [_lit(a) for a in args] + [f"{k}={_lit(v)}" for k, v in kwargs.items()]
    return f"nn.{cls}({', '.join(parts)})"


def _forward_src(net, attrs: dict, logits: bool) -> tuple[list[str], dict]:
    """The body of forward (or of forward_logits): lines, and which optional globals it uses."""
    g = net.graph
    order = list(g.nodes)
    out = g.graph["output"]
    if logits and g.nodes[out]["op"] == "softmax":  # stop before the softmax layer
        out = g.nodes[out]["inputs"][0]
        order = order[: order.index(out) + 1]
    pos = {n: i for i, n in enumerate(order)}
    # a value lives in `x` unless a node other than the next one reads it: then in its own name
    saved = {n for n in order for c in g.successors(n) if c in pos and pos[c] != pos[n] + 1}
    ref, used = {}, set()
    for n in order:
        ref[n] = "x"
        if n in saved:
            ref[n] = _unmangled(attrs[n], _LOCALS | used)
            used.add(ref[n])
    lines = [f"{ref['input']} = x"] if "input" in saved else []
    for name in order[1:]:
        node = g.nodes[name]
        layer = _layer(g, name)
        steps = list(layer.steps)
        if logits and name == out and steps[-1] == ("act", "softmax"):
            steps = steps[:-1]
        srcs = [ref[i] for i in node["inputs"]]
        expr = srcs if steps[0][0] in _MERGES else srcs[0]
        for kind, *lits in steps:
            expr = _STEPS[kind][1](expr, attrs[name], *lits)
        note = f"  # {name}: {_shape_src(node['shape'])}"
        if name == out:
            lines.append(f"return {expr}{note}")
        else:
            lines.append(f"{ref[name]} = {expr}{note}")
    if len(order) == 1:
        lines.append("return x")
    return lines, {
        "F": any(_USES_F.search(line) for line in lines),
        "flatten_hwc": any("flatten_hwc(" in line for line in lines),
    }


def generate(net) -> str:
    """Standalone PyTorch source for ``net``: a ``nn.Module`` class and ``build_model()``.

    Every name in it is a node name (checked by the grammar: ``[A-Za-z_][A-Za-z0-9_]*``)
    or fixed text, every value a ``repr`` of a number; user text appears only in comments.
    """
    g = net.graph
    attrs = _attrs(net)
    cls = _class_name(net.name)
    out = g.nodes[g.graph["output"]]
    softmax_out = out["op"] == "softmax" or (out["args"] is not None and out["args"].get("activation") == "softmax")

    head = [
        "# A PyTorch model generated by netdsl; it needs only torch to run.",
        "#",
        f"# Source: {_comment(net.source.filename)}",
        "#",
        *(f"# {_comment(line)}".rstrip() for line in net.summary().splitlines()),
        "#",
        "# build_model() returns the model with Keras's initialisation (glorot-uniform",
        "# kernels, zero biases).  It takes and returns NCHW tensors (vectors as (N, C));",
        "# flatten and reshape use Keras's (H, W, C) order, so Keras weights carry over.",
    ]
    inits = []
    for name in list(g.nodes)[1:]:
        layer = _layer(g, name)
        if layer.module is not None:
            inits.append(f"self.{attrs[name]} = {_ctor_src(layer.module)}")

    body, uses = _forward_src(net, attrs, logits=False)
    methods = []
    in_shape = _shape_src(g.nodes["input"]["shape"])
    out_shape = _shape_src(out["shape"])
    if softmax_out:
        logit_body, uses2 = _forward_src(net, attrs, logits=True)
        uses = {k: v or uses2[k] for k, v in uses.items()}
        final = f"self.{attrs[g.graph['output']]}" if out["op"] == "softmax" else None
        last = f"{final}(self.forward_logits(x))" if final else "torch.softmax(self.forward_logits(x), dim=1)"
        methods.append(
            [
                "def forward(self, x: torch.Tensor) -> torch.Tensor:",
                f'    """{in_shape} -> {out_shape} probabilities (softmax over dim 1)."""',
                f"    return {last}",
            ]
        )
        methods.append(
            [
                "def forward_logits(self, x: torch.Tensor) -> torch.Tensor:",
                '    """The output before the final softmax (for a stable cross-entropy)."""',
                *("    " + line for line in logit_body),
            ]
        )
    else:
        methods.append(
            [
                "def forward(self, x: torch.Tensor) -> torch.Tensor:",
                f'    """{in_shape} -> {out_shape}."""',
                *("    " + line for line in body),
            ]
        )

    imports = ["import torch", *(["import torch.nn.functional as F"] if uses["F"] else []), "from torch import nn"]
    klass = [
        f"class {cls}(nn.Module):",
        f'    """The net `{cls}`: {in_shape} -> {out_shape}."""',
        "",
        f"    netdsl_output_is_softmax = {softmax_out!r}"
        + ("  # forward_logits() gives the values before it" if softmax_out else ""),
        "",
        "    def __init__(self) -> None:",
        "        super().__init__()",
        *("        " + line for line in inits),
    ]
    for m in methods:
        klass += ["", *("    " + line for line in m)]
    factory = [
        f"def build_model() -> {cls}:",
        f'    """A new `{cls}` with Keras\'s initialisation."""',
        f"    model = {cls}()",
        "    keras_init(model)",
        "    return model",
    ]
    blocks = [
        "\n".join([*head, "", *imports]),
        _INIT_SRC.rstrip("\n"),
        *([_FLATTEN_SRC.rstrip("\n")] if uses["flatten_hwc"] else []),
        "\n".join(klass),
        "\n".join(factory),
    ]
    return "\n\n\n".join(blocks) + "\n"

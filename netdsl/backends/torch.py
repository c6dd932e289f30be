"""The PyTorch backend: a checked :class:`~netdsl.net.Net` becomes an ``nn.Module``.

Models take and return NCHW tensors (vectors as ``(N, C)``) and follow Keras's
semantics (docs/language.md, "Semantics"): TensorFlow ``same`` padding, with an explicit
``F.pad`` when it is uneven (``-inf`` for max pooling; average pooling divides by
the number of real elements); ``flatten`` and ``reshape`` in (H, W, C) order;
Keras's initialisation (glorot-uniform kernels, zero biases).

The ``OPS`` table maps each op of :mod:`netdsl.ops` to a :class:`Layer`: the module
the node owns (a class name and literal arguments) and the steps of its forward
pass.  The in-memory model (:func:`build`) and the generated source (:func:`generate`)
are both made from that table, through one description of the forward pass (:func:`_program`,
which also says what ``forward_logits`` leaves out), and the helpers a generated file defines
(``keras_init``, ``flatten_hwc``, ``AvgPool2dSame``) are this module's own code,
compiled from the same text, so the two are the same network by construction.

A node with a module is an attribute named after the node (``model.conv_1``); gap,
gmp, flatten, reshape, add and concat are tensor operations in ``forward``.  A name
that clashes with an ``nn.Module`` attribute or a Python keyword gets a trailing ``_``.
The forward pass is planned once, by attribute name (replacing ``model.dense_3`` by
a new head works as in any hand-written model): a plain chain is a flat list of
steps, any other graph a list of steps over numbered slots.

A net ending in softmax also has ``forward_logits(x)``, the values before that
softmax, which :func:`sparse_categorical_crossentropy` scores stably.
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
    "AvgPool2dSame",
    "KerasBatchNorm1d",
    "KerasBatchNorm2d",
    "build",
    "device",
    "generate",
    "get_weights",
    "predict",
    "set_weights",
    "sparse_categorical_crossentropy",
]

EPSILON = 1e-7  # Keras's clamp for the log of probabilities

# ---- helpers shared with generated files: one text, compiled here and copied there --------

_HELPERS = {
    "keras_init": '''\
def keras_init(model: nn.Module) -> None:
    """Keras's default initialisation: glorot-uniform kernels, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
''',
    "flatten_hwc": '''\
def flatten_hwc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W*C) in Keras's (H, W, C) order.

    The same as x.permute(0, 2, 3, 1).flatten(1), but the gradient comes back as a
    plain NCHW tensor (merging N and C first makes autograd copy it), which keeps the
    backward pass of the pooling and convolutions below on their fast path.
    """
    n, c, h, w = x.shape
    return x.reshape(n * c, h * w).view(n, c, h * w).transpose(1, 2).reshape(n, -1)
''',
    "AvgPool2dSame": '''\
class AvgPool2dSame(nn.AvgPool2d):
    """Average pooling with TensorFlow's 'same' padding where it is uneven.

    pad is F.pad's (left, right, top, bottom), the odd pixel at the right and bottom;
    each average is over the real elements only, as in Keras.
    """

    def __init__(self, kernel_size, stride, pad: tuple) -> None:
        super().__init__(kernel_size, stride, divisor_override=1)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = F.pad(torch.ones_like(x[:1, :1]), self.pad)
        count = F.avg_pool2d(ones, self.kernel_size, self.stride, divisor_override=1)
        return super().forward(F.pad(x, self.pad)) / count

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pad={self.pad}"
''',
}
_BATCHNORM_ONE = '''\
class {cls}(nn.{base}):
    """nn.{base} that, as Keras, also trains on one value per channel (a batch of one{what}).

    torch refuses that batch (an unbiased variance of one value); Keras normalises it by
    its own mean and a variance of 0: the output is beta, and no gradient reaches x or gamma.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and x.numel() == x.shape[1]):
            return super().forward(x)
        with torch.no_grad():  # the moving statistics, as torch updates them, with the variance 0
            self.running_mean.mul_(1 - self.momentum).add_(x.reshape(-1), alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum)
            self.num_batches_tracked.add_(1)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - x) * self.weight.view(shape) + self.bias.view(shape)
'''
for _cls, _base, _what in (("KerasBatchNorm1d", "BatchNorm1d", ""), ("KerasBatchNorm2d", "BatchNorm2d", " 1x1 map")):
    _HELPERS[_cls] = _BATCHNORM_ONE.format(cls=_cls, base=_base, what=_what)
_namespace: dict[str, Any] = {"torch": torch, "nn": nn, "F": F, "__name__": __name__}
for _name, _src in _HELPERS.items():
    exec(compile(_src, f"<netdsl.backends.torch: {_name}>", "exec"), _namespace)  # fixed text, not user input
keras_init: Callable = _namespace["keras_init"]
flatten_hwc: Callable = _namespace["flatten_hwc"]
AvgPool2dSame: type = _namespace["AvgPool2dSame"]
KerasBatchNorm1d: type = _namespace["KerasBatchNorm1d"]  # module globals: pickle finds classes by name
KerasBatchNorm2d: type = _namespace["KerasBatchNorm2d"]
# module classes that are not torch.nn's
_CLASSES = {c.__name__: c for c in (AvgPool2dSame, KerasBatchNorm1d, KerasBatchNorm2d)}


# ---- the op table -----------------------------------------------------------------------


class Layer(NamedTuple):
    """What one node becomes.

    ``module``: ``(class name, positional args, keyword args)`` of literals, or None;
    the class is ``torch.nn``'s (or :data:`_CLASSES`').  ``steps``: the forward pass as
    ``(kind, *literals)`` tuples applied in order; ``("module",)`` calls the node's
    module; a merge (``add``, ``concat``) is a first step taking every input.
    """

    module: tuple | None
    steps: tuple


class TorchOp(NamedTuple):
    layer: Callable  # (args, input shapes, output shape) -> Layer
    weights: dict = {}  # canonical name -> (module attribute, torch -> canonical layout or None)


def _sq(pair: tuple) -> int | tuple:
    """``(3, 3)`` -> ``3``: torch takes either, and the generated code reads better."""
    return pair[0] if pair[0] == pair[1] else tuple(pair)


def _same_pad(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow ``same``: out = ceil(n / s); the odd pixel of padding goes last."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def _padding(a: dict, shape, kernel, stride, dilation=(1, 1)):
    """(symmetric padding for the layer itself or None, F.pad tuple for uneven padding or None)."""
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
    even, uneven = _padding(a, ins[0], a["kernel"], a["stride"], a["dilation"])
    if even:
        kw["padding"] = _sq(even)
    if a["dilation"] != (1, 1):
        kw["dilation"] = _sq(a["dilation"])
    if not a["bias"]:
        kw["bias"] = False
    pad = (("pad", uneven, 0.0),) if uneven else ()
    return Layer(("Conv2d", (ins[0][2], a["filters"]), kw), (*pad, ("module",), *_act(a["activation"])))


def _pool_args(a: dict) -> dict:
    return {} if a["stride"] == a["size"] else {"stride": _sq(a["stride"])}  # torch's default is the size too


def _maxpool(a: dict, ins: list, out) -> Layer:
    kw = _pool_args(a)
    even, uneven = _padding(a, ins[0], a["size"], a["stride"])
    if even:
        kw["padding"] = _sq(even)  # torch pads max pooling with -inf itself
    pad = (("pad", uneven, -np.inf),) if uneven else ()
    return Layer(("MaxPool2d", (_sq(a["size"]),), kw), (*pad, ("module",)))


def _avgpool(a: dict, ins: list, out) -> Layer:
    even, uneven = _padding(a, ins[0], a["size"], a["stride"])
    if uneven:
        return Layer(("AvgPool2dSame", (_sq(a["size"]), _sq(a["stride"]), uneven), {}), (("module",),))
    kw = _pool_args(a)
    if even:  # even padding: torch leaves it out of the averages itself
        kw.update(padding=_sq(even), count_include_pad=False)
    return Layer(("AvgPool2d", (_sq(a["size"]),), kw), (("module",),))


def _dense(a: dict, ins: list, out) -> Layer:
    kw = {} if a["bias"] else {"bias": False}
    return Layer(("Linear", (ins[0][0], a["units"]), kw), (("module",), *_act(a["activation"])))


def _batchnorm(a: dict, ins: list, out) -> Layer:
    cls = "KerasBatchNorm2d" if len(ins[0]) == 3 else "KerasBatchNorm1d"  # trains on a batch of one
    # Keras: moving = m * moving + (1 - m) * batch; torch's momentum weighs the batch
    momentum = float(f"{1 - a['momentum']:.15g}")
    return Layer((cls, (ins[0][-1],), {"eps": a["eps"], "momentum": momentum}), (("module",),))


def _upsample(a: dict, ins: list, out) -> Layer:
    # integer factors: nearest-exact takes floor(i / s) without float round-off, as Keras repeats
    return Layer(("Upsample", (), {"scale_factor": _sq(a["size"]), "mode": "nearest-exact"}), (("module",),))


def _nhwc_differs(shape) -> bool:
    """Does (H, W, C) order differ from torch's (C, H, W) for this shape?"""
    return len(shape) == 3 and shape[2] != 1 and shape[0] * shape[1] != 1


def _flatten(a: dict, ins: list, out) -> Layer:
    return Layer(None, (("flatten", _nhwc_differs(ins[0])),))


def _reshape(a: dict, ins: list, out) -> Layer:
    return Layer(None, (("reshape", tuple(out), _nhwc_differs(ins[0]), _nhwc_differs(out)),))


def _module(cls: str, *args, **kwargs) -> Callable:
    return lambda a, ins, out: Layer((cls, args, kwargs), (("module",),))


def _steps(*steps) -> Callable:
    return lambda a, ins, out: Layer(None, steps)


_CONV_W = {"kernel": ("weight", lambda w: w.permute(2, 3, 1, 0)), "bias": ("bias", None)}  # OIHW -> HWIO
_DENSE_W = {"kernel": ("weight", lambda w: w.t()), "bias": ("bias", None)}  # (out, in) -> (in, out)
_BN_W = {
    "gamma": ("weight", None),
    "beta": ("bias", None),
    "moving_mean": ("running_mean", None),
    "moving_variance": ("running_var", None),
}

OPS: dict[str, TorchOp] = {
    "conv": TorchOp(_conv, _CONV_W),
    "maxpool": TorchOp(_maxpool),
    "avgpool": TorchOp(_avgpool),
    "gap": TorchOp(_steps(("gap",))),
    "gmp": TorchOp(_steps(("gmp",))),
    "flatten": TorchOp(_flatten),
    "dense": TorchOp(_dense, _DENSE_W),
    "dropout": TorchOp(lambda a, ins, out: Layer(("Dropout", (a["rate"],), {}), (("module",),))),
    "batchnorm": TorchOp(_batchnorm, _BN_W),
    "upsample": TorchOp(_upsample),
    "reshape": TorchOp(_reshape),
    "add": TorchOp(_steps(("add",))),
    "concat": TorchOp(_steps(("concat",))),
    "linear": TorchOp(_module("Identity")),
    "relu": TorchOp(_module("ReLU")),
    "sigmoid": TorchOp(_module("Sigmoid")),
    "tanh": TorchOp(_module("Tanh")),
    "softmax": TorchOp(_module("Softmax", dim=1)),  # the channel axis
    "log_softmax": TorchOp(_module("LogSoftmax", dim=1)),
    "gelu": TorchOp(_module("GELU")),  # exact (erf), as Keras's default
    "elu": TorchOp(_module("ELU")),
    "selu": TorchOp(_module("SELU")),
    "silu": TorchOp(_module("SiLU")),
    "leakyrelu": TorchOp(lambda a, ins, out: Layer(("LeakyReLU", (a["alpha"],), {}), (("module",),))),
}

_missing = set(_ops.OPS) ^ set(OPS)
assert not _missing, f"the torch backend's OPS table and netdsl.ops disagree on {sorted(_missing)}"


# ---- forward steps: each kind as a callable (build) and as source (generate) ------------
# Callables are torch functions, module-level functions and partials: no closures and no
# modules (those are called by attribute name), so models deep-copy and pickle.

# Fused activations (conv/dense `activation=`) are Keras's activation functions; its
# "leaky_relu" has a slope of 0.2 (the standalone layer's alpha is the layer's own).
_ACT: dict[str, tuple[Callable, str]] = {
    "relu": (torch.relu, "torch.relu({})"),
    "sigmoid": (torch.sigmoid, "torch.sigmoid({})"),
    "tanh": (torch.tanh, "torch.tanh({})"),
    "softmax": (partial(torch.softmax, dim=1), "torch.softmax({}, dim=1)"),
    "log_softmax": (partial(F.log_softmax, dim=1), "F.log_softmax({}, dim=1)"),
    "gelu": (F.gelu, "F.gelu({})"),
    "elu": (F.elu, "F.elu({})"),
    "selu": (F.selu, "F.selu({})"),
    "silu": (F.silu, "F.silu({})"),
    "leakyrelu": (partial(F.leaky_relu, negative_slope=0.2), "F.leaky_relu({}, 0.2)"),
}


def _flatten_fn(x):
    return x.flatten(1)


def _reshape_fn(shape: tuple, from_nhwc: bool, to_nchw: bool, x):
    n = x.shape[0]
    x = flatten_hwc(x) if from_nhwc else x
    if len(shape) == 1:
        return x.reshape(n, *shape)
    h, w, c = shape
    if to_nchw:
        return x.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()
    return x.reshape(n, c, h, w)  # (H, W, C) and (C, H, W) order agree here


def _reshape_src(x: str, shape: tuple, from_nhwc: bool, to_nchw: bool) -> str:
    src = f"flatten_hwc({x})" if from_nhwc else x
    if len(shape) == 3 and not to_nchw:
        shape = (shape[2], shape[0], shape[1])
    src += f".reshape({x}.shape[0], {', '.join(map(_lit, shape))})"
    return src + ".permute(0, 3, 1, 2).contiguous()" if to_nchw else src


def _gap(x):
    return x.mean((2, 3))


def _gmp(x):
    return x.amax((2, 3))


def _add(*xs):
    out = xs[0]
    for t in xs[1:]:
        out = out + t
    return out


def _concat(*xs):
    return torch.cat(xs, dim=1)


def _pad_src(x: str, pad: tuple, value: float) -> str:
    return f"F.pad({x}, {_lit(pad)})" if value == 0 else f'F.pad({x}, {_lit(pad)}, value=float("-inf"))'


# kind -> (callable from the literals, or the module's name; source from (input, attribute, *literals))
_STEPS: dict[str, tuple[Callable, Callable]] = {
    "module": (lambda attr: attr, lambda x, attr: f"self.{attr}({x})"),
    "act": (lambda attr, name: _ACT[name][0], lambda x, attr, name: _ACT[name][1].format(x)),
    "pad": (
        lambda attr, pad, value: partial(F.pad, pad=pad, value=value),
        lambda x, attr, pad, value: _pad_src(x, pad, value),
    ),
    "flatten": (
        lambda attr, nhwc: flatten_hwc if nhwc else _flatten_fn,
        lambda x, attr, nhwc: f"flatten_hwc({x})" if nhwc else f"{x}.flatten(1)",
    ),
    "reshape": (lambda attr, *lits: partial(_reshape_fn, *lits), lambda x, attr, *lits: _reshape_src(x, *lits)),
    "gap": (lambda attr: _gap, lambda x, attr: f"{x}.mean((2, 3))"),
    "gmp": (lambda attr: _gmp, lambda x, attr: f"{x}.amax((2, 3))"),
    "add": (lambda attr: _add, lambda xs, attr: " + ".join(xs)),
    "concat": (lambda attr: _concat, lambda xs, attr: f"torch.cat([{', '.join(xs)}], dim=1)"),
}
_MERGES = ("add", "concat")


def _lit(v) -> str:
    """A literal as Python source: only numbers, booleans, fixed words and tuples of them."""
    if isinstance(v, tuple):
        return "(" + ", ".join(map(_lit, v)) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, (bool, int)) or (isinstance(v, float) and np.isfinite(v)):
        return repr(v)
    if isinstance(v, str) and re.fullmatch(r"[a-z][a-z-]*", v):
        return f'"{v}"'
    raise ValueError(f"not a literal the generator emits: {v!r}")


# ---- names and the plan ------------------------------------------------------------------


def _unmangled(name: str, *taken) -> str:
    """``name`` with ``_`` appended until it is in no set of ``taken``, not a keyword, and not
    mangled in a class body (``__x``)."""
    while (
        keyword.iskeyword(name) or any(name in t for t in taken) or (name.startswith("__") and not name.endswith("__"))
    ):
        name += "_"
    return name


def _attrs(net) -> dict[str, str]:
    """Node -> its attribute name on the module (and its variable name in generated code)."""
    used: set[str] = set()
    out = {}
    for name in net.graph.nodes:
        out[name] = attr = _unmangled(name, _RESERVED, used)
        used.add(attr)
    return out


def _layer(g, name: str) -> Layer:
    node = g.nodes[name]
    ins = [g.nodes[i]["shape"] for i in node["inputs"]]
    return OPS[node["op"]].layer(node["args"], ins, node["shape"])


class _Entry(NamedTuple):
    """One node of the forward pass: its inputs and its steps (a merge step first, if any)."""

    name: str
    inputs: tuple
    steps: tuple


def _program(net, logits: bool = False) -> tuple[list[_Entry], str]:
    """The forward pass as ``(entries in order, the node whose value is returned)``.

    The one description of the forward pass: the in-memory module runs it and
    :func:`generate` prints it, for ``forward`` and for ``forward_logits`` alike, so the
    two cannot disagree.  ``logits``: the same pass without the final softmax, which
    is the output node's last step (its fused activation, or a softmax layer's module);
    a softmax layer left without steps is dropped and its input is returned.
    """
    g = net.graph
    entries = [_Entry(n, tuple(g.nodes[n]["inputs"]), _layer(g, n).steps) for n in list(g.nodes)[1:]]
    out = g.graph["output"]
    if logits:
        k = next(i for i, e in enumerate(entries) if e.name == out)
        entry = entries[k]
        *rest, last = entry.steps
        op = g.nodes[out]["op"]
        assert last == ("act", "softmax") or (op == "softmax" and last == ("module",)), (out, entry.steps)
        if rest:
            entries[k] = entry._replace(steps=tuple(rest))
        else:
            del entries[k]
            out = entry.inputs[0]
    return entries, out


def _ends_in_softmax(g) -> bool:
    out = g.nodes[g.graph["output"]]
    return out["op"] == "softmax" or (out["args"] is not None and out["args"].get("activation") == "softmax")


class _Node(NamedTuple):
    merge: Callable | None  # add/concat of every input, or None: the one input
    parts: tuple  # unary steps: callables, or str (call that module)
    ins: tuple  # input slots; slot 0 is the net's input, slot k + 1 node k
    free: tuple  # slots no later node reads


class _Plan(NamedTuple):
    nodes: tuple  # one _Node per node, in order
    chain: tuple | None  # a plain chain: every part in order
    result: int


def _plan_of(entries: list[_Entry], out: str, attrs: dict) -> _Plan:
    """The runnable plan of a :func:`_program`: callables, module names and numbered slots."""
    slot = {"input": 0, **{e.name: k for k, e in enumerate(entries, 1)}}
    nodes = []
    for name, inputs, steps in entries:
        merge = _STEPS[steps[0][0]][0](None) if steps and steps[0][0] in _MERGES else None
        parts = tuple(_STEPS[kind][0](attrs[name], *lits) for kind, *lits in steps[merge is not None :])
        nodes.append(_Node(merge, parts, tuple(slot[i] for i in inputs), ()))
    return _plan(nodes, slot[out])


def _plan(nodes: list, result: int) -> _Plan:
    if all(n.merge is None and n.ins == (k,) for k, n in enumerate(nodes)):
        return _Plan(tuple(nodes), tuple(p for n in nodes for p in n.parts), result)
    last = {i: k for k, n in enumerate(nodes) for i in n.ins}
    nodes = [
        n._replace(free=tuple(sorted({i for i in n.ins if last[i] == k and i != result}))) for k, n in enumerate(nodes)
    ]
    return _Plan(tuple(nodes), None, result)


def _run(plan: _Plan, mods, x, keep: bool = False) -> list:
    vals = [None] * (len(plan.nodes) + 1)
    vals[0] = x
    for k, (merge, parts, ins, free) in enumerate(plan.nodes, 1):
        v = merge(*[vals[i] for i in ins]) if merge is not None else vals[ins[0]]
        for f in parts:
            v = mods[f](v) if f.__class__ is str else f(v)
        vals[k] = v
        if not keep:
            for i in free:
                vals[i] = None
    return vals


# ---- the in-memory module ------------------------------------------------------------------


class NetdslModule(nn.Module):
    """A netdsl net as a ``torch.nn.Module``: NCHW in, NCHW out (vectors as ``(N, C)``).

    ``forward`` returns what the net's last layer returns (probabilities after a final
    softmax, as in Keras); ``forward_logits`` the values before a final softmax.
    ``netdsl_output_is_softmax`` says whether the net ends in one.
    """

    def __init__(self, net) -> None:
        super().__init__()
        g = net.graph
        attrs = _attrs(net)
        self.netdsl_output_is_softmax = _ends_in_softmax(g)
        for name in list(g.nodes)[1:]:
            module = _layer(g, name).module
            if module is not None:
                cls, args, kwargs = module
                self.add_module(attrs[name], (_CLASSES.get(cls) or getattr(nn, cls))(*args, **kwargs))
        keras_init(self)
        self._netdsl_plan = _plan_of(*_program(net), attrs)
        self._netdsl_logits = _plan_of(*_program(net, logits=True), attrs) if self.netdsl_output_is_softmax else None
        self._netdsl_nodes = tuple(g.nodes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self._netdsl_plan
        if plan.chain is not None:  # the hot path, spelled out
            mods: dict[str, Any] = self._modules
            for f in plan.chain:
                x = mods[f](x) if f.__class__ is str else f(x)
            return x
        return _run(plan, self._modules, x)[plan.result]

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The output before the net's final softmax (for a stable cross-entropy)."""
        if self._netdsl_logits is None:
            raise ValueError(
                f"forward_logits: this net does not end in softmax (its output is `{self._netdsl_nodes[-1]}`)"
            )
        return self._netdsl_run(self._netdsl_logits, x)

    def _netdsl_run(self, plan: _Plan, x: torch.Tensor) -> torch.Tensor:
        mods: dict[str, Any] = self._modules
        if plan.chain is not None:
            for f in plan.chain:
                x = mods[f](x) if f.__class__ is str else f(x)
            return x
        return _run(plan, mods, x)[plan.result]

    def node_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every node's output (NCHW), the input's included, in order: for tests and debugging."""
        return dict(zip(self._netdsl_nodes, _run(self._netdsl_plan, self._modules, x, keep=True), strict=True))


_RESERVED = (
    frozenset(dir(nn.Module()))
    | frozenset(dir(NetdslModule))
    | {"netdsl_output_is_softmax", "_netdsl_plan", "_netdsl_logits", "_netdsl_nodes"}
)


# ---- the API ------------------------------------------------------------------------------


def device(requested: str | None = None) -> str:
    """``requested`` if given (checked: a torch device this machine has), else the best
    found: cuda, mps, xpu, cpu."""
    if requested:
        try:
            kind = torch.device(requested).type
        except (RuntimeError, TypeError, ValueError):
            raise NetdslError(
                "E403", f"`{requested}` is not a torch device", hint="use cpu, cuda, cuda:1, mps or xpu"
            ) from None
        if kind != "cpu" and kind not in _PROBES:  # meta, lazy, ...: not a place to train
            raise NetdslError("E403", f"netdsl cannot use torch's `{kind}` device", hint="use cpu, cuda, mps or xpu")
        if kind in _PROBES and not _PROBES[kind]():
            raise NetdslError(
                "E403", f"torch has no `{kind}` device here", hint=f"this machine has: {', '.join(_available())}"
            )
        index = torch.device(requested).index
        count = {"cuda": torch.cuda.device_count, "xpu": lambda: torch.xpu.device_count()}.get(kind, lambda: 1)()
        if index is not None and index >= count:
            raise NetdslError("E403", f"torch has no `{requested}` here ({count} {kind} device{'s' * (count != 1)})")
        return str(requested)
    return _available()[0]


_PROBES: dict[str, Callable[[], bool]] = {
    "cuda": lambda: torch.cuda.is_available(),
    "mps": lambda: getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    "xpu": lambda: getattr(torch, "xpu", None) is not None and torch.xpu.is_available(),
}


def _available() -> list[str]:
    return [kind for kind, probe in _PROBES.items() if probe()] + ["cpu"]


def build(net, device: str | None = None) -> NetdslModule:
    """The ``nn.Module`` of ``net`` with Keras's initialisation, on ``device`` (default: best found)."""
    where = _device(device)
    model = NetdslModule(net)
    if torch.device(where).type != "cpu":
        model.to(where)
    return model


_device = device  # build()'s parameter shadows the function's name


def _weight_map(model, net):
    """``("<node>.<name>", the module's tensor, torch -> canonical or None)`` for every weight."""
    from ..weights import entries

    attrs = _attrs(net)
    nodes = net.graph.nodes
    for name, wname, _shape, _trainable in entries(net):
        tname, convert = OPS[nodes[name]["op"]].weights[wname]
        yield f"{name}.{wname}", getattr(getattr(model, attrs[name]), tname), convert


def get_weights(model, net) -> dict[str, np.ndarray]:
    """Every weight in the canonical (Keras) layout, as float32 numpy copies."""
    out = {}
    for key, t, convert in _weight_map(model, net):
        t = t.detach()
        t = convert(t) if convert is not None else t
        out[key] = np.array(t.cpu().numpy(), dtype=np.float32, order="C", copy=True)
    return out


def set_weights(model, net, tensors: dict) -> None:
    """Load canonical (Keras-layout) weights; ``tensors`` was validated against the net."""
    with torch.no_grad():
        for key, t, convert in _weight_map(model, net):
            src = torch.as_tensor(np.asarray(tensors[key], dtype=np.float32))
            (convert(t) if convert is not None else t).copy_(src)  # a view: writes the parameter


def _placement(model) -> tuple[torch.device, torch.dtype]:
    for t in model.parameters():
        return t.device, t.dtype
    for t in model.buffers():
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def predict(model, x, batch_size: int = 256) -> np.ndarray:
    """Inference-mode outputs for a channels-last float32 batch, returned channels-last.

    Runs in ``eval()`` and ``no_grad``, ``batch_size`` samples at a time, and puts every
    module back in the mode it was in.
    """
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    where, dtype = _placement(model)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    outs = []
    try:
        with torch.no_grad():
            for i in range(0, max(len(x), 1), batch_size):
                b = x[i : i + batch_size].to(where, dtype)
                y = model(b.permute(0, 3, 1, 2).contiguous() if b.ndim == 4 else b)
                outs.append((y.permute(0, 2, 3, 1) if y.ndim == 4 else y).float().cpu())
    finally:
        for m, mode in modes:
            m.training = mode
    return np.ascontiguousarray(torch.cat(outs).numpy())


def sparse_categorical_crossentropy(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the integer labels ``y`` for the NCHW batch ``x``, as Keras's loss.

    A net ending in softmax is scored on its logits (log-softmax + NLL: finite for any
    logits); any other on the log of its outputs, clamped to [1e-7, 1 - 1e-7] as Keras does.
    """
    if getattr(model, "netdsl_output_is_softmax", False):
        logits = model.forward_logits(x)
        return F.cross_entropy(logits, torch.as_tensor(y, device=logits.device).long())
    p = model(x)
    return F.nll_loss(torch.log(p.clamp(EPSILON, 1 - EPSILON)), torch.as_tensor(y, device=p.device).long())


# ---- generated source ----------------------------------------------------------------------

_GLOBALS = {"torch", "nn", "F", "build_model", *_HELPERS}
_LOCALS = frozenset(dir(builtins)) | _GLOBALS | {"self", "x"}
_USES_F = re.compile(r"(?<![\w.])F\.")


def _comment(text: str) -> str:
    """User-derived text made safe for one ``#`` comment line: no line breaks or control characters."""
    return "".join(c for c in str(text) if c == " " or unicodedata.category(c)[0] not in "CZ").rstrip()


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
    parts = [_lit(a) for a in args] + [f"{k}={_lit(v)}" for k, v in kwargs.items()]
    qualified = cls if cls in _CLASSES else f"nn.{cls}"
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", cls) and (cls in _CLASSES or hasattr(nn, cls))
    return f"{qualified}({', '.join(parts)})"


def _forward_src(net, attrs: dict, logits: bool) -> list[str]:
    """The body of ``forward`` (or of ``forward_logits``): :func:`_program`, printed."""
    g = net.graph
    entries, out = _program(net, logits)
    order = ["input", *(e.name for e in entries)]
    pos = {n: i for i, n in enumerate(order)}
    # a value lives in `x` unless a node other than the next one reads it: then in a variable
    saved = {i for e in entries for i in e.inputs if pos[e.name] != pos[i] + 1}
    ref: dict[str, str] = {}
    used: set[str] = set()
    for n in order:
        ref[n] = "x"
        if n in saved:
            ref[n] = _unmangled(attrs[n], _LOCALS, used)
            used.add(ref[n])
    lines = [f"{ref['input']} = x"] if "input" in saved else []
    for name, inputs, steps in entries:
        srcs = [ref[i] for i in inputs]
        expr = srcs if steps[0][0] in _MERGES else srcs[0]
        for kind, *lits in steps:
            expr = _STEPS[kind][1](expr, attrs[name], *lits)
        note = f"  # {name}: {_shape_src(g.nodes[name]['shape'])}"
        lines.append(f"return {expr}{note}" if name == out else f"{ref[name]} = {expr}{note}")
        if name == out:
            break
    if out == "input":
        lines.append("return x")
    return lines


def generate(net) -> str:
    """Standalone PyTorch source for ``net``: an ``nn.Module`` class and ``build_model()``.

    Every identifier in it is fixed text or a node name (which the grammar limits to
    ``[A-Za-z_][A-Za-z0-9_]*``, renamed as on the in-memory model), every value the
    ``repr`` of a number; other user text (the file name) appears only in comments.
    """
    g = net.graph
    attrs = _attrs(net)
    cls = _class_name(net.name)
    out = g.nodes[g.graph["output"]]
    softmax = _ends_in_softmax(g)
    in_shape, out_shape = _shape_src(g.nodes["input"]["shape"]), _shape_src(out["shape"])

    inits, classes = [], []
    for name in list(g.nodes)[1:]:
        module = _layer(g, name).module
        if module is not None:
            inits.append(f"self.{attrs[name]} = {_ctor_src(module)}")
            if module[0] in _CLASSES and module[0] not in classes:
                classes.append(module[0])
    if softmax:
        body = _forward_src(net, attrs, logits=True)
        # forward = the step forward_logits leaves out, applied to it (see _program)
        kind, *lits = _layer(g, g.graph["output"]).steps[-1]
        final = _STEPS[kind][1]("self.forward_logits(x)", attrs[g.graph["output"]], *lits)
        methods = [
            [
                "def forward(self, x: torch.Tensor) -> torch.Tensor:",
                f'    """{in_shape} -> {out_shape}: probabilities (softmax over dim 1)."""',
                f"    return {final}",
            ],
            [
                "def forward_logits(self, x: torch.Tensor) -> torch.Tensor:",
                '    """The values before the final softmax (for a stable cross-entropy)."""',
                *("    " + line for line in body),
            ],
        ]
    else:
        body = _forward_src(net, attrs, logits=False)
        methods = [
            [
                "def forward(self, x: torch.Tensor) -> torch.Tensor:",
                f'    """{in_shape} -> {out_shape}."""',
                *("    " + line for line in body),
            ]
        ]
    code = "\n".join(inits + [line for m in methods for line in m])
    helpers = ["keras_init"] + (["flatten_hwc"] if "flatten_hwc(" in code else []) + classes
    uses_f = bool(_USES_F.search(code)) or "AvgPool2dSame" in classes

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
        "",
        "import torch",
        *(["import torch.nn.functional as F"] if uses_f else []),
        "from torch import nn",
    ]
    klass = [
        f"class {cls}(nn.Module):",
        f'    """{in_shape} -> {out_shape}, as netdsl built it."""',
        "",
        *(
            ["    netdsl_output_is_softmax = True  # forward_logits() gives the values before it", ""]
            if softmax
            else []
        ),
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
    blocks = ["\n".join(head), *(_HELPERS[h].rstrip("\n") for h in helpers), "\n".join(klass), "\n".join(factory)]
    return "\n\n\n".join(blocks) + "\n"

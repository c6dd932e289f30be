"""The PyTorch backend: a checked :class:`~netdsl.net.Net` becomes an ``nn.Module``.

Models take and return NCHW tensors (vectors as ``(N, C)``) and follow Keras's
semantics (docs/language.md, "Semantics"): TensorFlow ``same`` padding, with an explicit
``F.pad`` when it is uneven (``-inf`` for max pooling; average pooling divides by
the number of real elements); ``flatten`` and ``reshape`` in (H, W, C) order;
Keras's initialisation (glorot-uniform kernels, zero biases).

The op table (``OPS``: each op of :mod:`netdsl.ops` as a :class:`Layer`, the module the node
owns and the steps of its forward pass) and the one description of the forward pass
(``_program``, which also says what ``forward_logits`` leaves out) live in
:mod:`netdsl.backends.torch_program`, the code generator in :mod:`netdsl.backends.torch_source`;
neither imports torch or numpy, so ``netdsl compile`` runs without them.  This module runs that same program: each step kind
becomes a callable (:data:`_RUN`), and the helpers a generated file defines (``keras_init``,
``flatten_hwc``, ``AvgPool2dSame``) are compiled here from the very text copied there, so
the in-memory model and the generated source are the same network by construction.

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

from collections.abc import Callable
from functools import partial
from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NetdslError
from . import torch_program as _p
from .torch_program import OPS, Layer, TorchOp, _ends_in_softmax, _Entry, _layer, _program
from .torch_source import SOURCE as _SOURCE
from .torch_source import generate

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

# ---- helpers shared with generated files: torch_program's text, compiled here ------------------

_namespace: dict[str, Any] = {"torch": torch, "nn": nn, "F": F, "__name__": __name__}
for _name, _src in _p._HELPERS.items():
    exec(compile(_src, f"<netdsl.backends.torch: {_name}>", "exec"), _namespace)  # fixed text, not user input
keras_init: Callable = _namespace["keras_init"]
flatten_hwc: Callable = _namespace["flatten_hwc"]
AvgPool2dSame: type = _namespace["AvgPool2dSame"]
KerasBatchNorm1d: type = _namespace["KerasBatchNorm1d"]  # module globals: pickle finds classes by name
KerasBatchNorm2d: type = _namespace["KerasBatchNorm2d"]
Rescale, Normalize, RandomFlip, RandomCrop, RandomAffine = (_namespace[n] for n in _p._pre.CLASSES)  # preprocessing
_CLASSES = {name: _namespace[name] for name in _p.HELPER_CLASSES}  # module classes that are not torch.nn's
globals().update({k: v for k, v in _CLASSES.items() if k not in globals()})  # layers_program's, for pickle too


# ---- forward steps: each kind as a callable ----------------------------------------------------
# Callables are torch functions, module-level functions and partials: no closures and no
# modules (those are called by attribute name), so models deep-copy and pickle.


def _act_fn(name: str) -> Callable:
    """The torch function torch_program.ACT names for a fused activation, with its arguments."""
    where, _, fn = _p.ACT[name][0].partition(".")
    f = getattr({"torch": torch, "F": F}[where], fn)
    return partial(f, **_p.ACT[name][1]) if _p.ACT[name][1] else f


_ACT: dict[str, Callable] = {name: _act_fn(name) for name in _p.ACT}


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


def _mul(*xs):
    out = xs[0]
    for t in xs[1:]:
        out = out * t
    return out


# kind -> the callable from (the module's attribute name, *literals); the same kinds as torch_source.SOURCE
_RUN: dict[str, Callable] = {
    "module": lambda attr: attr,
    "act": lambda attr, name: _ACT[name],
    "pad": lambda attr, pad, value: partial(F.pad, pad=pad, value=value),
    "flatten": lambda attr, nhwc: flatten_hwc if nhwc else _flatten_fn,
    "reshape": lambda attr, *lits: partial(_reshape_fn, *lits),
    "gap": lambda attr: _gap,
    "gmp": lambda attr: _gmp,
    "add": lambda attr: _add,
    "concat": lambda attr: _concat,
    "mul": lambda attr: _mul,
}
assert set(_RUN) == set(_SOURCE), "torch_source.SOURCE and _RUN disagree on the step kinds"
_MERGES = _p.MERGES


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
        merge = _RUN[steps[0][0]](None) if steps and steps[0][0] in _MERGES else None
        parts = tuple(_RUN[kind](attrs[name], *lits) for kind, *lits in steps[merge is not None :])
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


def _plugin_module(net, name: str) -> nn.Module:
    from .. import plugins

    m = plugins.call(net, name, "torch")
    if not isinstance(m, nn.Module):
        p = plugins.PLUGINS[net.graph.nodes[name]["op"]]
        raise NetdslError(
            "E143",
            f"plugin layer `{p.name}` (from {p.origin}) failed: its torch builder returned {type(m).__name__}, "
            "not an nn.Module",
            net.graph.nodes[name]["span"],
        ).located(net.source)
    plugins.check_weights(net, name, m, "torch")
    _check_plugin_output(net, name, m)
    return m


def _check_plugin_output(net, name: str, m: nn.Module) -> None:
    """One forward of a zero batch (inference mode, no gradients): the real output shape against
    the declared one (plugins.check_output), before any training or run directory."""
    from .. import plugins

    g = net.graph
    shape = tuple(g.nodes[g.nodes[name]["inputs"][0]]["shape"])
    nchw = (shape[-1], *shape[:-1])  # netdsl's (H, W, C) / (L, C) / (C,) as torch holds it
    was = m.training
    try:
        m.eval()
        with torch.no_grad():
            y = m(torch.zeros((2, *nchw)))
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001  (the plugin's module failed on its declared input)
        p = plugins.PLUGINS[g.nodes[name]["op"]]
        err = plugins._blame(p, "torch builder's module", e)
        raise NetdslError("E143", err.message, g.nodes[name]["span"], hint=err.hint).located(net.source) from None
    finally:
        m.train(was)
    got = None
    if isinstance(y, torch.Tensor) and y.dim() >= 2 and y.shape[0] == 2:
        got = (*y.shape[2:], y.shape[1])  # back to channels last
    plugins.check_output(net, name, got, "torch")


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
                if cls.startswith("plugin:"):
                    self.add_module(attrs[name], _plugin_module(net, name))
                    continue
                self.add_module(attrs[name], (_CLASSES.get(cls) or getattr(nn, cls))(*args, **kwargs))
        keras_init(self)
        fixed, self._netdsl_frozen = _p.frozen(net, attrs)
        for attr in fixed:
            self._modules[attr].requires_grad_(False)
        self._netdsl_plan = _plan_of(*_program(net), attrs)
        self._netdsl_logits = _plan_of(*_program(net, logits=True), attrs) if self.netdsl_output_is_softmax else None
        self._netdsl_nodes = tuple(g.nodes)

    def train(self, mode: bool = True):
        """As nn.Module's; frozen batchnorm layers stay in inference mode (Keras's trainable=False)."""
        super().train(mode)
        for attr in getattr(self, "_netdsl_frozen", ()):
            self._modules[attr].eval()
        return self

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
    _p.RESERVED | frozenset(dir(nn.Module())) | frozenset(dir(NetdslModule))
)  # the snapshot, and anything this torch has beyond it


def _attrs(net) -> dict[str, str]:
    """Node -> its attribute name on the module (the name generated code gives it too)."""
    return _p._attrs(net, _RESERVED)


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
        table = OPS[nodes[name]["op"]].weights
        if callable(table):  # the layout depends on the node's arguments (a depthwise kernel's M)
            table = table(nodes[name]["args"], [nodes[i]["shape"] for i in nodes[name]["inputs"]])
        tname, convert = table[wname]
        yield f"{name}.{wname}", attrgetter(tname)(getattr(model, attrs[name])), convert


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
                y = model(b.movedim(-1, 1).contiguous() if b.ndim > 2 else b)  # NHWC -> NCHW, NLC -> NCL
                outs.append((y.movedim(1, -1) if y.ndim > 2 else y).float().cpu())
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

"""The PyTorch backend's op table and forward program, importable without torch or numpy.

:mod:`netdsl.backends.torch` builds the in-memory ``nn.Module`` from this module's
:data:`OPS` table and :func:`_program`; :mod:`netdsl.backends.torch_source` prints the same
program as standalone source.  ``netdsl compile`` needs only these two modules, so generating
code works with the base install (lark and networkx), as fast as ``netdsl check``.

Everything here is data: module constructors as ``(class name, args, kwargs)`` literals,
forward steps as ``(kind, *literals)`` tuples, fused activations as the name of a torch
function and its keyword arguments.  The framework module turns the same entries into
callables (its ``_RUN`` table), the source module into text (its ``SOURCE`` table), one
entry per step kind in each.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from .. import ops as _ops

__all__ = ["ACT", "OPS", "Layer", "TorchOp"]

# ---- helpers shared with generated files: one text, compiled by the torch module, copied here --------

_HELPERS = {
    "keras_init": '''\
def keras_init(model: nn.Module) -> None:
    """Keras's default initialisation: glorot-uniform kernels, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            fans = m.__dict__.get("keras_fans")  # a depthwise kernel: the fans of Keras's (kh, kw, C, M)
            if fans is None:
                nn.init.xavier_uniform_(m.weight)
            else:
                limit = (6 / (fans[0] + fans[1])) ** 0.5
                nn.init.uniform_(m.weight, -limit, limit)
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
    if x.dim() == 3:  # a sequence: (N, C, L) -> (N, L*C) in Keras's (L, C) order
        return x.transpose(1, 2).reshape(x.shape[0], -1)
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

# module classes that are not torch.nn's (defined by a helper)
HELPER_CLASSES = ("AvgPool2dSame", "KerasBatchNorm1d", "KerasBatchNorm2d")

# ---- the op table -----------------------------------------------------------------------


class Layer(NamedTuple):
    """What one node becomes.

    ``module``: ``(class name, positional args, keyword args)`` of literals, or None;
    the class is ``torch.nn``'s (or one of :data:`HELPER_CLASSES`).  ``steps``: the forward pass as
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
    if a.get("groups", 1) != 1:
        kw["groups"] = a["groups"]
    pad = (("pad", uneven, 0.0),) if uneven else ()
    return Layer(("Conv2d", (ins[0][2], a["filters"]), kw), (*pad, ("module",), *_act(a["activation"])))


def _pool_args(a: dict) -> dict:
    return {} if a["stride"] == a["size"] else {"stride": _sq(a["stride"])}  # torch's default is the size too


def _maxpool(a: dict, ins: list, out) -> Layer:
    kw = _pool_args(a)
    even, uneven = _padding(a, ins[0], a["size"], a["stride"])
    if even:
        kw["padding"] = _sq(even)  # torch pads max pooling with -inf itself
    pad = (("pad", uneven, -math.inf),) if uneven else ()
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
    """Does (H, W, C) order differ from torch's (C, H, W) for this shape (or (L, C) from (C, L))?"""
    return len(shape) in (2, 3) and shape[-1] != 1 and _ops._prod(shape[:-1]) != 1


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

# ---- the ops of netdsl/ops_layers.py, kept together in layers_program -------------------------
from .. import plugins as _plugins  # noqa: E402
from . import layers_program as _more  # noqa: E402  (it builds on Layer and TorchOp above)

OPS.update((k, TorchOp(*v)) for k, v in _more.TORCH.items())
_HELPERS.update(_more.TORCH_HELPERS)
HELPER_CLASSES += tuple(_more.TORCH_HELPERS)
OPS.update(_plugins.entries(__name__))  # plugin layers registered before this import (later ones add themselves)
# ---- preprocessing and augmentation layers (netdsl/backends/torch_preprocess.py) ------------
from . import torch_preprocess as _pre  # noqa: E402  (it imports Layer and TorchOp from here)

_HELPERS.update(_pre.HELPERS)
HELPER_CLASSES += _pre.CLASSES
OPS.update(_pre.OPS)

_missing = set(_ops.OPS) ^ set(OPS)
assert not _missing, f"the torch backend's OPS table and netdsl.ops disagree on {sorted(_missing)}"

# ---- forward steps as source ---------------------------------------------------------------

# Fused activations (conv/dense `activation=`) are Keras's activation functions: the torch
# function (``torch.`` or ``F.``) and its keyword arguments.  Keras's "leaky_relu" has a slope
# of 0.2 (the standalone layer's alpha is the layer's own).
ACT: dict[str, tuple[str, dict]] = {
    "relu": ("torch.relu", {}),
    "sigmoid": ("torch.sigmoid", {}),
    "tanh": ("torch.tanh", {}),
    "softmax": ("torch.softmax", {"dim": 1}),
    "log_softmax": ("F.log_softmax", {"dim": 1}),
    "gelu": ("F.gelu", {}),
    "elu": ("F.elu", {}),
    "selu": ("F.selu", {}),
    "silu": ("F.silu", {}),
    "leakyrelu": ("F.leaky_relu", {"negative_slope": 0.2}),
}

_missing = (set(_ops.ACTIVATIONS) - {"linear"}) ^ set(ACT)
assert not _missing, f"the torch backend's ACT table and netdsl.ops disagree on {sorted(_missing)}"


MERGES = ("add", "concat", "mul")


# ---- names and the plan ------------------------------------------------------------------


def _unmangled(name: str, *taken) -> str:
    """``name`` with ``_`` appended until it is in no set of ``taken``, not a keyword, and not
    mangled in a class body (``__x``)."""
    while (
        keyword.iskeyword(name) or any(name in t for t in taken) or (name.startswith("__") and not name.endswith("__"))
    ):
        name += "_"
    return name


# Attribute names a node's module must not take: every name on an ``nn.Module`` (torch 2.13) and on
# netdsl's module.  A snapshot, not dir(nn.Module()): the generator runs without torch, and the
# generated file must not depend on which torch generated it.  The torch module adds whatever its
# torch has beyond this (tests/test_backend_torch.py says when the snapshot needs an update).
RESERVED = frozenset(
    """
    T_destination __annotations__ __call__ __class__ __delattr__ __dict__ __dir__ __doc__ __eq__
    __format__ __ge__ __getattr__ __getattribute__ __getstate__ __gt__ __hash__ __init__
    __init_subclass__ __le__ __lt__ __module__ __ne__ __new__ __reduce__ __reduce_ex__ __repr__
    __setattr__ __setstate__ __sizeof__ __str__ __subclasshook__ __weakref__ _apply _backward_hooks
    _backward_pre_hooks _buffers _call_impl _compiled_call_impl _forward_hooks
    _forward_hooks_always_called _forward_hooks_with_kwargs _forward_pre_hooks
    _forward_pre_hooks_with_kwargs _get_backward_hooks _get_backward_pre_hooks _get_name
    _is_full_backward_hook _load_from_state_dict _load_state_dict_post_hooks _load_state_dict_pre_hooks
    _maybe_warn_non_full_backward_hook _modules _named_members _netdsl_run _non_persistent_buffers_set
    _parameters _register_load_state_dict_pre_hook _register_state_dict_hook
    _replicate_for_data_parallel _save_to_state_dict _slow_forward _state_dict_hooks
    _state_dict_pre_hooks _version _wrapped_call_impl add_module apply bfloat16 buffers call_super_init
    children compile cpu cuda double dump_patches eval extra_repr float forward forward_logits
    get_buffer get_extra_state get_parameter get_submodule half ipu load_state_dict modules mtia
    named_buffers named_children named_modules named_parameters node_outputs parameters
    register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
    register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict
    to to_empty train training type xpu zero_grad netdsl_output_is_softmax _netdsl_plan _netdsl_logits
    _netdsl_nodes _netdsl_frozen
    """.split()
)


def _attrs(net, reserved: frozenset = RESERVED) -> dict[str, str]:
    """Node -> its attribute name on the module (and its variable name in generated code)."""
    used: set[str] = set()
    out = {}
    for name in net.graph.nodes:
        out[name] = attr = _unmangled(name, reserved, used)
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


def frozen(net, attrs: dict) -> tuple[list[str], list[str]]:
    """(attributes of frozen nodes' modules, those of them that are batchnorm layers): the first have
    no gradients; the second also stay in inference mode, as Keras runs a batchnorm with trainable=False."""
    g = net.graph
    mods = [n for n in list(g.nodes)[1:] if g.nodes[n].get("frozen") and _layer(g, n).module is not None]
    return [attrs[n] for n in mods], [attrs[n] for n in mods if g.nodes[n]["op"] == "batchnorm"]


def _ends_in_softmax(g) -> bool:
    out = g.nodes[g.graph["output"]]
    return out["op"] == "softmax" or (out["args"] is not None and out["args"].get("activation") == "softmax")

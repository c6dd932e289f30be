"""A PyTorch module, read with ``torch.fx``, as netdsl layers (:class:`.spec.Node`).

The module is traced with :func:`torch.fx.symbolic_trace`'s tracer (supported ``torch.nn``
layers, and their subclasses that keep the layer's own forward, stay leaves), then run once,
single-threaded, on a random batch of two of the given input shape so every value's shape is
known.  Each graph node becomes at most one netdsl node (:mod:`.torch_import_layers` knows the
layers); what has no netdsl equivalent is an :class:`~netdsl.importers.spec.Unsupported` error naming the
module path and type.

Layout: torch is NCHW with weights (O, I, kH, kW); netdsl is channels last with Keras's
layout.  A torch flatten orders (C, H, W), netdsl's (H, W, C): the vector is marked
*permuted* and the dense layer (or batchnorm) that reads it gets its rows permuted, so the
outputs agree exactly.
"""

from __future__ import annotations

import operator
import os
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..importers.spec import Node, Unsupported
from .torch_import_layers import _V, FUNCS, METHODS, Layers, _fn_name

SUPPORTED = (
    "modules: Conv2d (zero padding; groups, dilation; depthwise as dwconv), Conv1d, MaxPool1d, AvgPool1d "
    "(on LxC inputs), Linear, BatchNorm1d/2d (affine, running stats), LayerNorm (over a vector), "
    "GroupNorm (affine), "
    "MaxPool2d, AvgPool2d, AdaptiveAvgPool2d/AdaptiveMaxPool2d (to 1, or an exact divisor), Flatten, "
    "Dropout, ReLU, Sigmoid, Tanh, GELU, ELU, SELU, SiLU, LeakyReLU, Softmax/LogSoftmax (channels), "
    "Upsample (nearest, whole factors), ZeroPad2d, Identity, Sequential; functions and methods: "
    "F.relu/torch.relu, sigmoid, tanh, gelu, elu, selu, silu, leaky_relu, softmax, log_softmax, "
    "dropout, max_pool2d, avg_pool2d, adaptive_avg_pool2d, F.pad (zeros), torch.flatten, "
    "x.view/reshape/flatten to (N, -1), x.mean((2, 3)), + and torch.add, * and torch.mul, torch.cat(dim=1)"
)

FLATTEN_HWC = "flatten_hwc"  # netdsl's generated torch code flattens in Keras's order with it
MAX_INPUT = 2**24  # values per sample the shape run takes (4096x4096x1): its memory grows with it

# netdsl's own helper classes in generated code: their forward is the base layer's in inference
_HELPERS = {
    "ChannelLayerNorm": nn.LayerNorm, "KerasBatchNorm1d": nn.BatchNorm1d, "KerasBatchNorm2d": nn.BatchNorm2d,
    "AvgPool2dSame": nn.AvgPool2d, "AvgPool1dSame": nn.AvgPool1d,
}  # fmt: skip
_LEAVES = (
    nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d, nn.Flatten, nn.Dropout, nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.ELU, nn.SELU,
    nn.SiLU, nn.LeakyReLU, nn.Softmax, nn.LogSoftmax, nn.Upsample, nn.ZeroPad2d, nn.Identity,
    nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.LayerNorm, nn.GroupNorm,
)  # fmt: skip


def _base(m: nn.Module) -> type | None:
    """The supported layer class ``m`` behaves as, or None (a subclass with a forward of its own)."""
    cls = type(m)
    if cls.__name__ in _HELPERS and isinstance(m, _HELPERS[cls.__name__]):
        return _HELPERS[cls.__name__]
    for base in _LEAVES:
        if isinstance(m, base) and cls.forward is base.forward:
            return base
    return None


def _keras_flattens(module: nn.Module) -> tuple:
    """The ``flatten_hwc`` helpers of netdsl's generated torch code that the module's forwards call.

    It branches on ``x.dim()`` (sequences and maps), which fx cannot trace: it is traced as one
    call instead, and read as netdsl's flatten (already in Keras's order).
    """
    found = []
    for m in module.modules():
        fn = getattr(getattr(type(m), "forward", None), "__globals__", {}).get(FLATTEN_HWC)
        if callable(fn) and getattr(fn, "__name__", "") == FLATTEN_HWC and fn not in found:
            found.append(fn)
    return tuple(found)


class _Tracer(fx.Tracer):
    def __init__(self, wrap: tuple = ()) -> None:
        super().__init__(autowrap_functions=wrap)
        self.failed_in: tuple[str, str] | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _base(m) is not None or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        qualname = self.path_of_module(m)
        try:
            return super().call_module(m, forward, args, kwargs)
        except BaseException:
            if self.failed_in is None:  # the innermost module is where the trace broke
                self.failed_in = (qualname, type(m).__name__)
            raise


def trace(module: nn.Module, input_shape: tuple, name: str) -> tuple[list[Node], str, dict]:
    """(nodes, the output node, {"params": torch's count over the layers used, ...})."""
    module = module.eval()
    wrap = _keras_flattens(module)
    tracer = _Tracer(wrap)
    try:
        graph = tracer.trace(module)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # sys.exit() in forward included: netdsl's exit code stays its own
        where = tracer.failed_in
        place = f"`{where[0]}` ({where[1]})" if where and where[0] else f"`{name}.forward` ({type(module).__name__})"
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if _raised_by_user(e):
            raise Unsupported(
                "E703", f"{place}: its forward raised {type(e).__name__}: {why} while torch.fx traced it"
            ) from None
        raise Unsupported(
            "E703",
            f"{place}: torch.fx cannot trace it: {why}",
            hint="control flow that depends on tensor values (an `if` on a tensor, a loop over its size) "
            "cannot be traced; compute it without branching on the data, or import the part that can be traced",
        ) from None
    gm = fx.GraphModule(tracer.root, graph, type(module).__name__)
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise Unsupported(
            "E704",
            f"`{name}.forward` takes {len(inputs)} inputs ({', '.join(n.name for n in inputs)}); a netdsl net has one",
        )
    if len(input_shape) == 3:
        nchw = (2, input_shape[2], input_shape[0], input_shape[1])
    elif len(input_shape) == 2:  # a sequence LxC is torch's (N, C, L)
        nchw = (2, input_shape[1], input_shape[0])
    else:
        nchw = (2, input_shape[0])
    if int(np.prod(input_shape)) > MAX_INPUT:
        raise Unsupported(
            "E704",
            f"an input of {'x'.join(map(str, input_shape))} is too large to import: netdsl runs the module once "
            f"on a batch of two to learn its shapes, and takes at most {MAX_INPUT:,} values per input",
            hint="import the model at a smaller input size; the spec's `input` line can be changed afterwards",
        )
    try:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one small batch: starting a thread pool costs a cold process ~1 s
        try:
            first = next(iter(module.parameters()), None)  # where and in what the module computes
            like = (
                {"device": first.device, "dtype": first.dtype}
                if first is not None and first.is_floating_point()
                else {}
            )
            with torch.no_grad():
                _Shapes(gm).run(torch.rand(*nchw, **like))
        finally:
            torch.set_num_threads(threads)
    except _RunError as e:
        n, err = e.node, e.error
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not isinstance(err, Exception):  # SystemExit: its text is a bare exit code
            why = f"{type(err).__name__}: {why}"
        at = f"`{n.target}`" if n.op == "call_module" else f"`{n.name}`"
        raise Unsupported(
            "E704",
            f"`{name}` does not run on an input of {'x'.join(map(str, input_shape))} "
            f"(torch shape {tuple(nchw[1:])}): {at} fails: {why}",
            hint="give the input shape the model expects with --input HxWxC (channels last), --input LxC (a sequence, torch (N, C, L)) or --input N",
        ) from None
    return _Reader(gm, name).read()


def _raised_by_user(e: BaseException) -> bool:
    """Whether the module's own code raised ``e`` (a ``raise`` or ``sys.exit`` in its forward), not
    torch.fx meeting what it cannot trace (a TypeError from Python code given a Proxy is fx's)."""
    if not isinstance(e, Exception):
        return True
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or isinstance(e, TypeError):
        return False
    where = tb.tb_frame.f_code.co_filename
    return not where.startswith((_TORCH_DIR, _HERE))


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class _RunError(Exception):
    """The fx node and the exception of a failed run (attributes: fx rewrites ``args``)."""

    def __init__(self, node, error):
        super().__init__(str(error))
        self.node, self.error = node, error


class _Shapes(fx.Interpreter):
    """Runs the traced graph once and notes each tensor's shape on its node."""

    def run_node(self, n):
        try:
            result = super().run_node(n)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # a sys.exit() in a wrapped function included
            raise _RunError(n, e) from None
        if isinstance(result, torch.Tensor):
            n.meta["netdsl_shape"] = tuple(result.shape)
        return result


def _shape(fxn: fx.Node) -> tuple | None:
    return fxn.meta.get("netdsl_shape")


def _nd(shape: tuple) -> tuple:
    """Torch's (N, C, H, W) / (N, C) as netdsl's (H, W, C) / (C,)."""
    return (shape[2], shape[3], shape[1]) if len(shape) == 4 else tuple(shape[1:])


class _Reader(Layers):
    def __init__(self, gm: fx.GraphModule, name: str):
        self.gm, self.name = gm, name
        self.nodes: list[Node] = []
        self.env: dict[fx.Node, Any] = {}
        self.used_modules: dict[str, int] = {}
        self.pad_src: dict[str, tuple] = {}  # pad node -> (its input, its sides), for a conv to absorb
        self.count = 0

    # -- bookkeeping --------------------------------------------------------------------

    def fail(self, where: str, kind: str, why: str, code: str = "E702"):
        raise Unsupported(code, f"`{where}` ({kind}): {why}", hint=f"netdsl imports {SUPPORTED}")

    def add(self, op, args, ins, origin, weights=None, functional=False, shape=None, perm=None, squeezed=False):
        self.count += 1
        node = Node(f"n{self.count}", op, args, [v.node for v in ins], origin, weights or {}, functional)
        self.nodes.append(node)
        return _V(node.name, shape if shape is not None else ins[0].shape, perm, squeezed)

    def tensor(self, fxn, v, where, kind) -> _V:
        if not isinstance(v, fx.Node) or not isinstance(self.env.get(v), _V):
            self.fail(where, kind, f"takes {v!r} where netdsl needs a tensor computed from the input")
        return self.env[v]

    def as_map(self, v: _V, where: str, kind: str) -> _V:
        """``v`` as a netdsl feature map: a squeezed (N, C, 1, 1) gets a `reshape 1x1xC` back."""
        if v.squeezed:
            c = v.shape[1]
            return self.add("reshape", {"shape": (1, 1, c)}, [v], f"{where}_map", shape=v.shape)
        if len(v.shape) != 4:
            self.fail(where, kind, f"takes a tensor of shape {tuple(v.shape[1:])}; netdsl's 2-D layers need (C, H, W)")
        if v.perm:
            self.fail(where, kind, "reads a flattened tensor as a feature map")
        return v

    def as_seq(self, v: _V, where: str, kind: str) -> _V:
        if v.pad1d:
            self.fail(where, kind, "reads a sequence padded by F.pad; netdsl has no 1-D pad")
        if len(v.shape) != 3 or v.squeezed or v.perm:
            self.fail(where, kind, f"takes a tensor of shape {tuple(v.shape[1:])}; netdsl's 1-D layers need (C, L)")
        return v

    def as_vector(self, v: _V, where: str, kind: str) -> _V:
        if len(v.shape) != 2 and not v.squeezed:
            self.fail(where, kind, f"takes a tensor of shape {tuple(v.shape[1:])}; netdsl's dense layers need (N, C)")
        return v

    # -- the walk -----------------------------------------------------------------------

    def read(self) -> tuple[list[Node], str, dict]:
        graph = self.gm.graph
        inputs = [n for n in graph.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise Unsupported(
                "E704",
                f"`{self.name}.forward` takes {len(inputs)} inputs ({', '.join(n.name for n in inputs)}); "
                "a netdsl net has one",
            )
        self.env[inputs[0]] = _V("input", _shape(inputs[0]))
        out = None
        for fxn in graph.nodes:
            if fxn.op == "placeholder":
                continue
            if fxn.op == "output":
                out = fxn.args[0]
                break
            if not fxn.users:
                continue  # computed and never used: not part of the net
            self.cur = fxn
            self.env[fxn] = self.node(fxn)
        if not isinstance(out, fx.Node) or not isinstance(self.env.get(out), _V):
            raise Unsupported(
                "E704", f"`{self.name}.forward` returns {self._what(out)}; a netdsl net returns one tensor"
            )
        v = self.env[out]
        if v.node == "input":
            raise Unsupported("E704", f"`{self.name}.forward` returns its input unchanged: there is no layer to import")
        if v.perm:
            self.fail(
                self.name,
                type(self.gm).__name__,
                "returns a feature map flattened in torch's (C, H, W) order; netdsl flattens (H, W, C)",
            )
        if v.squeezed:
            v = self.add("reshape", {"shape": (1, 1, v.shape[1])}, [v], "output_map", shape=v.shape)
        return self._reachable(v.node), v.node, {"modules": self.used_modules}

    def _what(self, out) -> str:
        if isinstance(out, (tuple, list, dict)):
            kind = "dict" if isinstance(out, dict) else "tuple"
            return f"a {kind} of {len(out)} value{'s' * (len(out) != 1)}"
        return "something that is not a tensor computed from its input"

    def _reachable(self, out: str) -> list[Node]:
        by = {n.name: n for n in self.nodes}
        keep, todo = set(), [out]
        while todo:
            x = todo.pop()
            if x in keep or x == "input":
                continue
            keep.add(x)
            todo.extend(by[x].inputs)
        return [n for n in self.nodes if n.name in keep]

    def node(self, fxn: fx.Node):
        shape = _shape(fxn)
        if fxn.op == "get_attr":
            return ("const", fxn.target)
        if fxn.op == "call_module":
            m = self.gm.get_submodule(fxn.target)
            base = _base(m)
            kind = type(m).__name__
            if base is None:
                why = (
                    "a subclass whose forward netdsl cannot read (it is traced as one layer)"
                    if isinstance(m, _LEAVES)
                    else "no netdsl layer does what it does"
                )
                self.fail(fxn.target, kind, why)
            if list(m.parameters()) or list(m.buffers()):
                if fxn.target in self.used_modules:
                    raise Unsupported(
                        "E704",
                        f"`{fxn.target}` ({kind}) is called twice: netdsl has no shared layers (each layer owns its weights)",
                    )
                self.used_modules[fxn.target] = 1
            if fxn.kwargs or len(fxn.args) != 1:
                self.fail(fxn.target, kind, "is called with more than one argument")
            x = self.tensor(fxn, fxn.args[0], fxn.target, kind)
            return self.module(base, m, x, fxn.target, kind, shape)
        if shape is None and fxn.op in ("call_function", "call_method"):
            # sizes and shapes (x.size(0), x.shape[0]): only their uses matter
            if any(isinstance(self.env.get(a), _V) for a in fxn.all_input_nodes) and fxn.target not in (
                "size",
                "dim",
                getattr,
                operator.getitem,
            ):
                self.fail(fxn.name, _fn_name(fxn.target), "returns something netdsl has no value for")
            return ("meta", fxn.name)
        return self.function(fxn, shape)

    # -- functions and methods ------------------------------------------------------------

    def function(self, fxn: fx.Node, shape) -> _V:
        t = fxn.target
        where, kind = fxn.name, _fn_name(t)
        if shape is None:
            self.fail(where, kind, "returns something netdsl has no value for")
        tensors = [a for a in fxn.all_input_nodes if isinstance(self.env.get(a), _V)]
        if not tensors:
            self.fail(where, kind, "computes a tensor that does not come from the input (a constant or a parameter)")
        for a in fxn.all_input_nodes:
            if isinstance(self.env.get(a), tuple) and self.env[a][0] == "const":
                self.fail(where, kind, f"uses the module's own tensor `{self.env[a][1]}` directly (F.conv2d with a "
                          "weight, a learned scale); netdsl's layers own their weights")  # fmt: skip
        x = self.env[tensors[0]]
        if fxn.op == "call_function" and getattr(t, "__name__", "") == FLATTEN_HWC and len(fxn.args) == 1:
            if x.perm or (len(x.shape) not in (3, 4) and not x.squeezed):
                self.fail(where, kind, f"flattens a tensor of shape {tuple(x.shape[1:])}")
            if x.squeezed or len(x.shape) == 2:
                return x._replace(squeezed=False, shape=shape)
            return self.add("flatten", {}, [x], where, shape=shape)  # Keras's order already: no permutation
        fn = FUNCS.get(t) if fxn.op == "call_function" else METHODS.get(t)
        if fn is None:
            self.fail(where, kind, "is an operation netdsl has no equivalent for")
        return fn(self, fxn, x, tensors, where, kind, shape)


def count(module: nn.Module, used: dict) -> tuple[int, int, list[str]]:
    """(trainable-like params, batchnorm moving statistics, modules never called that hold weights)."""
    params = stats = 0
    unused = []
    for path, m in module.named_modules():
        own = list(m.parameters(recurse=False))
        bufs = [b for n, b in m.named_buffers(recurse=False) if n in ("running_mean", "running_var")]
        if not own and not bufs:
            continue
        if path not in used:
            unused.append(f"{path} ({type(m).__name__})")
            continue
        params += sum(p.numel() for p in own)
        stats += sum(b.numel() for b in bufs)
    return params, stats, unused

"""Plugin layers: :func:`register_op` and the entry-point group ``netdsl.ops``.

A plugin declares a layer the way :mod:`netdsl.ops` does (arguments with kinds and defaults,
a shape rule, weights in a canonical layout, MACs) plus a builder per backend::

    netdsl.register_op(
        "scale", args={"factor": ("float", 1.0)}, shorthand="factor",
        shape=lambda a, s: s,                                   # input shape -> output shape
        weights=lambda a, s: [("gamma", (s[-1],), True)],        # (name, shape, trainable)
        torch=lambda a, s, out: MyScale(s[-1], a["factor"]),     # an nn.Module, channels first
        keras=lambda a, s, out, name: MyKerasScale(a["factor"], name=name),
        torch_source=lambda a, s, out: (CLASS_TEXT, f"MyScale({s[-1]}, {a['factor']!r})"),
        keras_source=lambda a, s, out, name: (CLASS_TEXT, f"MyKerasScale({a['factor']!r}, name={name!r})"),
    )

A weight named ``gamma`` is the module's (or Keras layer's) attribute ``gamma``, holding the
canonical layout.  An installed distribution adds layers through an entry point in the group
``netdsl.ops`` naming a function that calls :func:`register_op`; they are loaded the first
time a spec names a layer netdsl does not know.  Whatever a plugin returns is checked: a
plugin that raises or returns nonsense is reported as that plugin's fault (E143), located at
the layer; a ``ValueError`` from its shape rule is its message about the input (E144); a
backend it does not provide is E145 where that backend is asked for.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from . import ops
from .errors import NetdslError

GROUP = "netdsl.ops"
FAMILIES = ("conv", "pool", "dense", "norm", "activation", "shape", "regularization")
_KINDS: dict[str, Callable] = {
    "int": ops.integer(1),
    "int0": ops.integer(0),
    "float": ops.real(-1e300, 1e300),
    "bool": ops.boolean,
    "pair": ops.pair(1),
}


class Plugin(NamedTuple):
    name: str
    origin: str  # the distribution that registered it, or "register_op"
    shape: Callable
    weights: Callable | None
    macs: Callable | None
    builders: dict  # torch, keras, torch_source, keras_source, onnx -> callable or None


PLUGINS: dict[str, Plugin] = {}
FAILED: dict[str, str] = {}  # entry point -> why it did not load
_origin: list[str] = []  # the distribution whose entry point is running
_loaded = False


def _blame(p: Plugin, what: str, e: BaseException | str) -> ops.ShapeError:
    why = e if isinstance(e, str) else f"raised {type(e).__name__}: {str(e)[:200]}"
    return ops.ShapeError(
        "E143",
        f"plugin layer `{p.name}` (from {p.origin}) failed: its {what} {why}",
        "this is a fault in the plugin, not in the spec; report it to the plugin's author",
    )


def _shape_ok(v) -> bool:
    return (
        isinstance(v, tuple)
        and 1 <= len(v) <= 3
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v)
    )


def _wrap_shape(p: Plugin) -> Callable:
    def rule(a: dict, ins: list) -> tuple:
        try:
            out = p.shape(dict(a), tuple(ins[0]))
        except ops.ShapeError:
            raise
        except ValueError as e:  # the plugin's own message about this input
            raise ops.ShapeError(
                "E144", f"{p.name}: {str(e)[:300]}", f"(a check of the plugin from {p.origin})"
            ) from None
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001  (anything else is the plugin's fault)
            raise _blame(p, "shape rule", e) from None
        out = tuple(out) if isinstance(out, list) else out
        if not _shape_ok(out):
            raise _blame(p, "shape rule", f"returned {str(out)[:80]!s}, not a shape (a tuple of 1 to 3 positive ints)")
        return out

    return rule


def _wrap_weights(p: Plugin) -> Callable:
    def weights(a: dict, ins: list) -> tuple:
        if p.weights is None:
            return ()
        try:
            got = tuple(p.weights(dict(a), tuple(ins[0])))
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001
            raise _blame(p, "weights", e) from None
        seen = set()
        out = []
        for w in got:
            if not (isinstance(w, (tuple, list)) and len(w) == 3 and isinstance(w[0], str)):
                raise _blame(p, "weights", f"returned {str(w)[:80]}, not (name, shape, trainable)")
            name, shape, trainable = w
            shape = tuple(shape) if isinstance(shape, (tuple, list)) else shape
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in seen:
                raise _blame(p, "weights", f"named a weight `{name[:40]}` (names are identifiers, each once)")
            if not (isinstance(shape, tuple) and all(isinstance(x, int) and x >= 0 for x in shape)):
                raise _blame(p, "weights", f"gave `{name}` the shape {str(shape)[:80]} (sizes are whole numbers >= 0)")
            if any(x > ops.MAX_SIZE for x in shape):  # as a built-in's sizes: the frameworks index with int32
                raise ops.ShapeError(
                    "E209",
                    f"the weight `{name}` of `{p.name}` would be {'x'.join(map(str, shape))}: too large for any framework",
                    "check the layer's arguments and its input",
                )
            seen.add(name)
            out.append((name, shape, bool(trainable)))
        return tuple(out)

    return weights


def _wrap_macs(p: Plugin) -> Callable:
    def macs(a: dict, ins: list, out) -> int:
        if p.macs is None:
            return 0
        try:
            n = p.macs(dict(a), tuple(ins[0]), tuple(out))
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001
            raise _blame(p, "MACs", e) from None
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise _blame(p, "MACs", f"returned {str(n)[:40]}, not a whole number >= 0")
        return n

    return macs


def register_op(
    name: str,
    *,
    shape: Callable,
    args: dict | None = None,
    shorthand: str | None = None,
    weights: Callable | None = None,
    macs: Callable | None = None,
    keras_class: str | None = None,
    family: str = "shape",
    torch: Callable | None = None,
    keras: Callable | None = None,
    torch_source: Callable | None = None,
    keras_source: Callable | None = None,
    onnx: Callable | None = None,
    describe: Callable | None = None,
) -> None:
    """Add a layer to the language (see the module's docstring).  ``args``: ``{name: (kind,
    default)}``, kind ``int``, ``int0``, ``float``, ``bool``, ``pair`` or a tuple of words;
    the default ``netdsl.plugins.REQUIRED`` makes it required.  ``shorthand``: the argument a
    bare number (or AxB for a pair) fills.  Raises ValueError for a bad declaration."""
    from .frontend.syntax import STATEMENT_WORDS

    origin = _origin[-1] if _origin else "register_op"
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"a plugin layer's name is lower-case letters, digits and _, got {name!r}")
    if name in ops.OPS or name in ops.ALIASES or name in STATEMENT_WORDS or name in ops.WORDS:
        raise ValueError(f"`{name}` is already a netdsl layer, alias or word")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if not callable(shape):
        raise ValueError("shape must be a function (args, input shape) -> output shape")
    table: dict[str, tuple] = {}
    for arg, spec in (args or {}).items():
        if not (isinstance(arg, str) and re.fullmatch(r"[a-z][a-z0-9_]*", arg)) or arg == "frozen":
            raise ValueError(f"argument names are lower-case identifiers (not `frozen`), got {arg!r}")
        kind, default = spec
        conv = ops.enum(*kind) if isinstance(kind, tuple) else _KINDS.get(kind)
        if conv is None:
            raise ValueError(f"argument `{arg}`: kind must be one of {', '.join(_KINDS)} or a tuple of words")
        table[arg] = (conv, ops.REQUIRED if default is REQUIRED else default)
    if shorthand is not None and shorthand not in table:
        raise ValueError(f"shorthand `{shorthand}` is not one of the arguments")
    builders = {
        "torch": torch,
        "keras": keras,
        "torch_source": torch_source,
        "keras_source": keras_source,
        "onnx": onnx,
    }
    p = Plugin(name, origin, shape, weights, macs, builders)
    size = None
    if shorthand is not None:

        def size(d: tuple, stride):
            if stride is not None or len(d) > 2 or (len(d) == 2 and args[shorthand][0] != "pair"):
                raise ops.ArgError(f"{name} takes one number here (its {shorthand})")
            return {shorthand: d[0] if len(d) == 1 else d}

    def text(a: dict) -> str:
        if describe is None:
            return ""
        with contextlib.suppress(Exception):
            return str(describe(dict(a)))[:60]
        return ""

    ops.OPS[name] = ops.Op(
        name, keras_class or name, family, table, size, _wrap_shape(p), _wrap_weights(p), _wrap_macs(p), text
    )
    PLUGINS[name] = p
    for module, entry in _entries(name).items():  # backends already imported get the entry now
        if module in sys.modules:
            sys.modules[module].OPS[name] = entry


REQUIRED = object()


def loaded() -> bool:
    return _loaded


def load() -> None:
    """Run every ``netdsl.ops`` entry point once; one that fails is remembered (FAILED), not fatal."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None) or ep.value
        _origin.append(dist)
        try:
            ep.load()()
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001  (a broken plugin must not break netdsl)
            FAILED[f"{ep.name} ({dist})"] = f"{type(e).__name__}: {str(e)[:200]}"
        finally:
            _origin.pop()


# ---- the backends' entries -----------------------------------------------------------------------


def _entries(name: str) -> dict[str, Any]:
    from .backends.keras_program import KerasOp
    from .backends.torch_program import Layer, TorchOp

    def layer(a, ins, out):
        return Layer((f"plugin:{name}", (tuple(ins[0]), tuple(out)), dict(a)), (("module",),))

    def weights(a, ins):
        return {w: (w, None) for w, _, _ in ops.OPS[name].weights(a, ins)}

    out: dict[str, Any] = {
        "netdsl.backends.torch_program": TorchOp(layer, weights),
        "netdsl.backends.keras_program": KerasOp(f"plugin:{name}", lambda a: ((), dict(a))),
    }
    out["netdsl.backends.onnx"] = lambda b, a, xs, shapes, o, w: onnx_node(name, b, a, xs, shapes, o, w)
    return out


def entries(module: str) -> dict[str, Any]:
    """The entries of every registered plugin for one backend module (merged at its import)."""
    return {name: _entries(name)[module] for name in PLUGINS}


def builder(net, node: str, what: str) -> tuple[Plugin, Callable]:
    """The plugin of ``node`` and its ``what`` builder, or E145 located at the node."""
    n = net.graph.nodes[node]
    p = PLUGINS[n["op"]]
    fn = p.builders.get(what)
    if fn is None:
        backend = {"torch_source": "generated torch source", "keras_source": "generated keras source"}.get(what, what)
        raise NetdslError(
            "E145",
            f"plugin layer `{p.name}` (from {p.origin}) does not provide the {backend} backend",
            n["span"],
            hint="use a backend the plugin supports, or ask its author",
        ).located(net.source)
    return p, fn


def call(net, node: str, what: str, *extra) -> Any:
    """Run a plugin's builder for ``node``; anything it raises is E143, located and attributed."""
    n = net.graph.nodes[node]
    p, fn = builder(net, node, what)
    ins = tuple(net.graph.nodes[n["inputs"][0]]["shape"])
    try:
        return fn(dict(n["args"]), ins, tuple(n["shape"]), *extra)
    except NetdslError:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001
        err = _blame(p, f"{what} builder", e)
        raise NetdslError("E143", err.message, n["span"], hint=err.hint).located(net.source) from None


def source(net, node: str, what: str, *extra) -> tuple[str, str]:
    """A plugin's (definitions, expression) for generated source, checked to be two strings."""
    got = call(net, node, what, *extra)
    if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(x, str) for x in got)):
        p = PLUGINS[net.graph.nodes[node]["op"]]
        n = net.graph.nodes[node]
        raise NetdslError(
            "E143",
            f"plugin layer `{p.name}` (from {p.origin}) failed: its {what} did not return (definitions, expression)",
            n["span"],
        ).located(net.source)
    return got


def check_output(net, node: str, got, what: str) -> None:
    """The built module/layer's real output shape (netdsl's HWC order, without the batch) must be
    the one the plugin's shape rule declared, or E143 names the plugin: the layers after it were
    built for the declared one (torch would fail inside training, Keras build on the real one)."""
    n = net.graph.nodes[node]
    got = None if got is None else tuple(x if x is None else int(x) for x in got)
    if got == tuple(n["shape"]):
        return
    p = PLUGINS[n["op"]]
    have = "no tensor" if got is None else "x".join(str(x) for x in got) or "a scalar"
    raise NetdslError(
        "E143",
        f"plugin layer `{p.name}` (from {p.origin}) failed: its {what} builder's layer returns {have}, "
        f"but its shape rule declared {'x'.join(map(str, n['shape']))}",
        n["span"],
        hint="this is a fault in the plugin, not in the spec; report it to the plugin's author",
    ).located(net.source)


def check_weights(net, node: str, obj, what: str) -> None:
    """The built module/layer holds each declared weight as an attribute of the declared shape
    (the canonical layout), or E143 names the plugin: get/set_weights rely on it."""
    n = net.graph.nodes[node]
    p = PLUGINS[n["op"]]
    ins = [net.graph.nodes[i]["shape"] for i in n["inputs"]]
    for wname, shape, _ in ops.OPS[n["op"]].weights(n["args"], ins):
        value = getattr(obj, wname, None)
        got = tuple(getattr(value, "shape", ()) or ()) if value is not None else None
        if got is None or tuple(int(x) for x in got) != tuple(shape):
            have = "no such attribute" if got is None else f"shape {got}"
            raise NetdslError(
                "E143",
                f"plugin layer `{p.name}` (from {p.origin}) failed: its {what} builder's result should hold "
                f"the weight `{wname}` of shape {tuple(shape)}; it has {have}",
                n["span"],
                hint="this is a fault in the plugin, not in the spec; report it to the plugin's author",
            ).located(net.source)


def onnx_node(name: str, b, a, xs, shapes, out, w) -> str:
    p = PLUGINS[name]
    fn = p.builders.get("onnx")
    if fn is None:
        raise NetdslError("E145", f"plugin layer `{name}` (from {p.origin}) does not provide the onnx backend")
    try:
        return fn(b, dict(a), xs, shapes, out, w)
    except NetdslError:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001
        raise NetdslError("E143", _blame(p, "onnx builder", e).message) from None


def _unregister(name: str) -> None:
    """Remove a plugin layer (for tests): from the op table and every imported backend's."""
    PLUGINS.pop(name, None)
    ops.OPS.pop(name, None)
    for module in ("netdsl.backends.torch_program", "netdsl.backends.keras_program", "netdsl.backends.onnx"):
        if module in sys.modules:
            sys.modules[module].OPS.pop(name, None)

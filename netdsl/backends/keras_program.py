"""The Keras backend's op table and code generator, importable without TensorFlow or numpy.

:mod:`netdsl.backends.keras` builds the in-memory model from :func:`_calls`, the one
description of the model (one ``layers.<cls>(*pos, **kw, name=name)(inputs)`` call per
node, made from the :data:`OPS` table), and :func:`generate` prints the same calls as
standalone source.  ``netdsl compile -b keras`` needs only this module, so generating
code works with the base install (lark and networkx), as fast as ``netdsl check``.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from .. import ops as _ops

__all__ = ["ACTIVATION", "OPS", "KerasOp", "generate"]

# ---- the op table --------------------------------------------------------------------


class KerasOp(NamedTuple):
    """How one netdsl op becomes a Keras layer.

    ``layer`` is the ``keras.layers`` class name; ``args(a)`` turns the op's resolved
    argument dict into the constructor's ``(positional, keyword)`` arguments (plain
    ints, floats, strings and tuples of them, so :func:`generate` can ``repr`` them).
    ``merge``: the layer is called on the list of its inputs.
    """

    layer: str
    args: Callable[[dict], tuple[tuple, dict]]
    merge: bool = False


# Fused activations: Keras activation names.  A fused leakyrelu is Keras's
# "leaky_relu" (negative slope 0.2); gelu is exact (erf), Keras's default.
ACTIVATION = {a: a for a in _ops.ACTIVATIONS}
ACTIVATION["leakyrelu"] = "leaky_relu"


def _size(v: tuple) -> Any:
    """``(5, 5)`` -> ``5`` (what a person would write); ``(3, 1)`` stays a tuple."""
    return v[0] if len(v) == 2 and v[0] == v[1] else tuple(v)


def _opt(kw: dict, key: str, value: Any, default: Any) -> None:
    if value != default:
        kw[key] = value


def _conv(a: dict) -> tuple[tuple, dict]:
    kw: dict = {}
    _opt(kw, "strides", _size(a["stride"]), 1)
    _opt(kw, "padding", a["padding"], "valid")
    _opt(kw, "activation", ACTIVATION[a["activation"]], "linear")
    _opt(kw, "dilation_rate", _size(a["dilation"]), 1)
    _opt(kw, "use_bias", a["bias"], True)
    _opt(kw, "groups", a.get("groups", 1), 1)
    return (a["filters"], _size(a["kernel"])), kw


def _pool(a: dict) -> tuple[tuple, dict]:
    kw: dict = {}
    _opt(kw, "padding", a["padding"], "valid")
    return (_size(a["size"]), _size(a["stride"])), kw


def _dense(a: dict) -> tuple[tuple, dict]:
    kw: dict = {}
    _opt(kw, "activation", ACTIVATION[a["activation"]], "linear")
    _opt(kw, "use_bias", a["bias"], True)
    return (a["units"],), kw


def _batchnorm(a: dict) -> tuple[tuple, dict]:
    kw: dict = {}
    _opt(kw, "momentum", a["momentum"], 0.99)
    _opt(kw, "epsilon", a["eps"], 1e-3)
    return (), kw


def _upsample(a: dict) -> tuple[tuple, dict]:
    kw: dict = {}
    _opt(kw, "interpolation", a["interpolation"], "nearest")
    return (_size(a["size"]),), kw


_NONE: Callable[[dict], tuple[tuple, dict]] = lambda a: ((), {})


def _activation(name: str) -> Callable[[dict], tuple[tuple, dict]]:
    return lambda a: ((name,), {})


OPS: dict[str, KerasOp] = {
    "conv": KerasOp("Conv2D", _conv),
    "maxpool": KerasOp("MaxPooling2D", _pool),
    "avgpool": KerasOp("AveragePooling2D", _pool),  # TF 'same': the padding is not averaged
    "gap": KerasOp("GlobalAveragePooling2D", _NONE),
    "gmp": KerasOp("GlobalMaxPooling2D", _NONE),
    "flatten": KerasOp("Flatten", _NONE),
    "dense": KerasOp("Dense", _dense),
    "dropout": KerasOp("Dropout", lambda a: ((a["rate"],), {})),
    "batchnorm": KerasOp("BatchNormalization", _batchnorm),
    "upsample": KerasOp("UpSampling2D", _upsample),
    "reshape": KerasOp("Reshape", lambda a: ((tuple(a["shape"]),), {})),
    "add": KerasOp("Add", _NONE, merge=True),
    "concat": KerasOp("Concatenate", lambda a: ((), {"axis": -1}), merge=True),
    "linear": KerasOp("Activation", _activation("linear")),
    "relu": KerasOp("ReLU", _NONE),
    "sigmoid": KerasOp("Activation", _activation("sigmoid")),
    "tanh": KerasOp("Activation", _activation("tanh")),
    "softmax": KerasOp("Softmax", _NONE),  # axis -1: the channels
    "log_softmax": KerasOp("Activation", _activation("log_softmax")),  # axis -1
    "gelu": KerasOp("Activation", _activation("gelu")),
    "elu": KerasOp("ELU", _NONE),  # alpha 1.0
    "selu": KerasOp("Activation", _activation("selu")),
    "silu": KerasOp("Activation", _activation("silu")),
    "leakyrelu": KerasOp("LeakyReLU", lambda a: ((), {"negative_slope": a["alpha"]})),
}

# ---- the ops of netdsl/ops_layers.py, kept together in layers_program -------------------------
from .. import plugins as _plugins  # noqa: E402
from . import layers_program as _more  # noqa: E402  (it builds on KerasOp above)

OPS.update((k, KerasOp(*v)) for k, v in _more.KERAS.items())
OPS.update(_plugins.entries(__name__))  # plugin layers registered before this import
# ---- preprocessing and augmentation layers (netdsl/backends/keras_preprocess.py) ------------
from . import keras_preprocess as _pre  # noqa: E402

HELPERS = _pre.HELPERS  # layer classes of netdsl's own: compiled by the keras module, copied into generated files
OPS.update({op: KerasOp(cls, args) for op, (cls, args) in _pre.OPS.items()})

_missing = set(_ops.OPS) ^ set(OPS)
assert not _missing, f"the keras backend's OPS table and netdsl.ops disagree on {sorted(_missing)}"


def _model_name(net) -> str:
    name = str(getattr(net, "name", "") or "net")
    return name.replace("/", "_")  # the one character Keras refuses in a name


class _Call(NamedTuple):
    """One node as one Keras layer call: ``layers.<cls>(*pos, **kw, name=name)(inputs)``."""

    name: str
    cls: str
    pos: tuple
    kw: dict
    inputs: tuple
    merge: bool


def _calls(net) -> list[_Call]:
    """Every layer node as a call, in order: the one description :func:`build` runs and
    :func:`generate` prints, so the in-memory and the generated model cannot differ."""
    out = []
    for name, node in list(net.graph.nodes.items())[1:]:
        spec = OPS[node["op"]]
        pos, kw = spec.args(node["args"])
        if node.get("frozen"):
            kw = {**kw, "trainable": False}
        out.append(_Call(name, spec.layer, tuple(pos), dict(kw), tuple(node["inputs"]), spec.merge))
    return out


# ---- generate -------------------------------------------------------------------------

# Names the generated build_model() uses itself; a node variable never takes one.
_RESERVED = frozenset(
    {"keras", "layers", "os", "re", "sys", "tempfile", "inputs", "x", "build_model", "_frozen", "__debug__"}
)

# A frozen plugin layer (`frozen=true`): its constructor is the plugin's, so the generated source
# sets trainable afterwards, as the in-memory build does.
_FROZEN = '''def _frozen(layer):
    """A layer written with frozen=true: its weights are not trained."""
    layer.trainable = False
    return layer'''


def _comment(text: str) -> str:
    """One comment line: nothing that could end the comment (or the file's encoding) survives."""
    return "#" + (" " + "".join(c if c.isprintable() else "?" for c in text) if text else "")


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):  # never: names come from the grammar
        raise ValueError(f"not a name: {name!r}")
    return name


WIDTH = 88  # generated lines longer than this are wrapped, as a formatter would


def _statement(target: str, func: str, parts: list[str], call_arg: str) -> list[str]:
    """``target = func(parts...)(call_arg)``, wrapped when long (4-space indent inside build_model)."""
    one = f"{target} = {func}({', '.join(parts)}){call_arg}"
    if len(one) + 4 <= WIDTH:
        return [one]
    inner = ", ".join(parts)
    if len(inner) + 8 <= WIDTH:
        return [f"{target} = {func}(", f"    {inner}", f"){call_arg}"]
    return [f"{target} = {func}(", *(f"    {p}," for p in parts), f"){call_arg}"]


def _layer_statement(target: str, c: _Call, arg: str) -> list[str]:
    parts = [repr(v) for v in c.pos] + [f"{k}={v!r}" for k, v in c.kw.items()] + [f"name={_identifier(c.name)!r}"]
    return _statement(target, c.cls if c.cls in HELPERS else f"layers.{c.cls}", parts, f"({arg})")


def generate(net) -> str:
    """Standalone Keras source defining ``build_model()`` (the same model :func:`build` makes)."""
    g = net.graph
    order = list(g.nodes)
    output = g.graph["output"]
    nxt = {a: b for a, b in zip(order, order[1:], strict=False)}
    consumers: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        for i in g.nodes[n]["inputs"]:
            consumers[i].append(n)

    # A node read only by the very next statement flows through `x`; any other gets its own variable.
    var: dict[str, str] = {}
    taken = set(_RESERVED)
    for n in order:
        if g.nodes[n]["op"] == "input":
            var[n] = "inputs"
        elif (consumers[n] and all(c == nxt.get(n) for c in consumers[n])) or (n == output and not consumers[n]):
            var[n] = "x"
        else:
            v = _identifier(n)
            while keyword.iskeyword(v) or v in taken:
                v += "_"
            taken.add(v)
            var[n] = v

    body = [f"inputs = keras.Input(shape={tuple(g.nodes['input']['args']['shape'])!r}, name='input')"]
    plugin_defs: list[str] = []
    for c in _calls(net):
        ins = [var[i] for i in c.inputs]
        if c.cls.startswith("plugin:"):  # the plugin's own (definitions, constructor expression)
            from .. import plugins

            defs, expr = plugins.source(net, c.name, "keras_source", c.name)
            if defs.strip() and defs not in plugin_defs:
                plugin_defs.append(defs.strip("\n"))
            if c.kw.get("trainable") is False:  # frozen=true, as the in-memory build sets it
                if _FROZEN not in plugin_defs:
                    plugin_defs.append(_FROZEN)
                expr = f"_frozen({expr})"
            body.append(f"{var[c.name]} = {expr}({ins[0]})")
            continue
        body += _layer_statement(var[c.name], c, f"[{', '.join(ins)}]" if c.merge else ins[0])
    body.append(f"return keras.Model(inputs, {var[output]}, name={_model_name(net)!r})")

    source = getattr(getattr(net, "source", None), "filename", None) or "<string>"
    head = [
        f"Keras 3 (tf.keras) model generated by netdsl from {source}.",
        "",
        "build_model() returns the keras.Model.  Its layer names are the netdsl node names, so a",
        'netdsl weight "<layer>.<weight>" is model.get_layer(layer).<weight> (Keras\'s layout).',
        "",
        *net.summary().splitlines(),
    ]
    lines = [_comment(h) for h in head]
    shape = tuple(g.nodes["input"]["args"]["shape"])
    helpers = [HELPERS[c] for c in dict.fromkeys(c.cls for c in _calls(net)) if c in HELPERS]
    lines += [
        "",
        _QUIET_IMPORT,
        *(f"\n{d}\n" for d in plugin_defs),
        *(f"\n{h}" for h in helpers),
        "",
        "def build_model():",
        '    """The network as a Keras functional model (channels-last input)."""',
        *(f"    {b}" for b in body),
        "",
        "",
        "if __name__ == '__main__':  # `python this_file.py`: build, print, run one batch",
        "    model = build_model()",
        "    model.summary()",
        f"    x = keras.random.uniform({(2, *shape)!r}, seed=0)",
        "    y = model(x, training=False)",
        "    print(f'input {tuple(x.shape)} -> output {tuple(y.shape)}')",
        "",
    ]
    return "\n".join(lines)


# The generated file's imports.  TensorFlow's C++ side writes start-up notes to file descriptor 2
# before its log level applies (TF_CPP_MIN_LOG_LEVEL hides only later ones), so they are held
# back while keras loads and first looks for a GPU, and everything else is passed on.
_QUIET_IMPORT = """\
import os
import re
import sys
import tempfile

os.environ.setdefault('KERAS_BACKEND', 'tensorflow')  # written for Keras 3 on TensorFlow
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow's info and warning logs off

# TensorFlow's notes written before that setting applies ("oneDNN custom operations are on",
# "Could not find cuda drivers", "failed call to cuInit" without a GPU): dropped at start-up
_START_UP_NOTES = re.compile(r'WARNING: All log messages before absl|[IW]\\d{4} |E\\d{4} .*cuInit')


def _import_keras_quietly():
    \"\"\"Import keras with TensorFlow's start-up notes held back; any other output is passed on.\"\"\"
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError):  # standard error is closed: there is nothing to keep quiet
        import keras

        return keras
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import keras

            if keras.backend.backend() == 'tensorflow':
                import tensorflow as tf

                tf.config.list_physical_devices('GPU')  # where TensorFlow looks for a GPU
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            everything = os.environ['TF_CPP_MIN_LOG_LEVEL'] == '0'  # the user asked for every log line
            for line in held.read().decode('utf-8', 'replace').splitlines(keepends=True):
                if everything or not _START_UP_NOTES.match(line):
                    sys.stderr.write(line)
    return keras


keras = _import_keras_quietly()
layers = keras.layers
"""

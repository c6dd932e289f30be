"""The tf.keras backend: a checked :class:`~netdsl.net.Net` becomes a Keras 3 functional model.

Every node becomes one Keras layer named after the node (the input is
``keras.Input(name="input")``), wired with the functional API, so any DAG the
language can express (skips, merges, parallel paths) is built as written.

The ``OPS`` table below maps each op of :mod:`netdsl.ops` to the Keras layer class
and its constructor arguments.  The in-memory model (:func:`build`) and the
generated source (:func:`generate`) are both made from that one table, so they are
the same architecture by construction.

Canonical weights (:func:`get_weights` / :func:`set_weights`) are Keras's own
layout, and their names (``kernel``, ``bias``, ``gamma``, ``beta``,
``moving_mean``, ``moving_variance``) are the Keras layers' attribute names.

TensorFlow is imported when this module is; ``TF_CPP_MIN_LOG_LEVEL=2`` and
``KERAS_BACKEND=tensorflow`` are set first unless the user set them.
"""

from __future__ import annotations

import contextlib
import keyword
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from .. import ops as _ops  # noqa: E402
from ..errors import NetdslError  # noqa: E402

# ---- quiet start-up ------------------------------------------------------------------
# TensorFlow's C++ side logs through absl before absl is initialised, which ignores
# TF_CPP_MIN_LOG_LEVEL and writes straight to file descriptor 2 ("oneDNN custom
# operations are on", "Could not find cuda drivers", "failed call to cuInit" on a
# machine without a GPU).  While TensorFlow loads (and first looks for GPUs) fd 2 goes
# to a temporary file; afterwards every line is passed on except those the log level
# asks to hide.

_LOG_LINE = re.compile(r"^([IWEF])\d{4} ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def _log_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def _keep(line: str, level: int) -> bool | None:
    """Pass this line on?  None: not a log line (a continuation line, or Python's own output)."""
    if line.startswith(_ABSL_PREAMBLE):
        return level <= 0
    m = _LOG_LINE.match(line)
    if m is None:
        return None
    severity = "IWEF".index(m.group(1))
    if severity == 2 and "cuInit" in line and level >= 2:  # "no GPU here": TF goes on with the CPU
        return False
    return severity >= level


_PYTHON_OUTPUT = re.compile(r"Traceback |.*\w+(Warning|Error): ")


def _filter(text: str, level: int) -> str:
    out, keep = [], True
    for line in text.splitlines(keepends=True):
        k = _keep(line, level)
        if k is None:  # a log message's next line goes with it; Python's warnings always pass
            k = keep or bool(_PYTHON_OUTPUT.match(line))
        else:
            keep = k
        if k:
            out.append(line)
    return "".join(out)


@contextlib.contextmanager
def _quiet_native_stderr():
    level = _log_level()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            kept = _filter(text, level)
            if kept:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    sys.stderr.write(kept)
                    sys.stderr.flush()


with _quiet_native_stderr():
    import tensorflow as tf  # noqa: E402

    _GPUS = tf.config.list_physical_devices("GPU")

import keras  # noqa: E402

__all__ = ["OPS", "KerasOp", "build", "device", "generate", "get_weights", "predict", "set_weights"]


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

_missing = set(_ops.OPS) ^ set(OPS)
assert not _missing, f"the keras backend's OPS table and netdsl.ops disagree on {sorted(_missing)}"


# ---- device ---------------------------------------------------------------------------

_DEVICE_WORDS = re.compile(r"(cpu|gpu|cuda)(?::(\d+))?\Z", re.I)


def device(requested: str | None = None) -> str:
    """The TensorFlow device to use: ``requested`` if given, else ``/GPU:0`` when TF sees a GPU.

    Short names are accepted too: ``cpu`` -> ``/CPU:0``, ``gpu``/``cuda`` -> ``/GPU:0``,
    ``cuda:1`` -> ``/GPU:1``.  Anything else, and a GPU that TensorFlow does not see, is E403.
    """
    if requested:
        m = _DEVICE_WORDS.match(requested.strip().lstrip("/"))
        if not m:
            raise NetdslError(
                "E403", f"`{requested}` is not a TensorFlow device", hint="use cpu, gpu or gpu:N (also /GPU:N, cuda:N)"
            )
        kind, index = ("CPU" if m.group(1).lower() == "cpu" else "GPU"), int(m.group(2) or 0)
        have = 1 if kind == "CPU" else len(_GPUS)
        if index >= have:
            raise NetdslError(
                "E403",
                f"TensorFlow sees no {kind}:{index} here" + (" (no GPU at all)" if kind == "GPU" and not have else ""),
                hint=f"this machine has: {', '.join(['cpu'] + [f'gpu:{i}' for i in range(len(_GPUS))])}",
            )
        return f"/{kind}:{index}"
    return "/GPU:0" if _GPUS else "/CPU:0"


# ---- build ----------------------------------------------------------------------------


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
        out.append(_Call(name, spec.layer, tuple(pos), dict(kw), tuple(node["inputs"]), spec.merge))
    return out


@contextlib.contextmanager
def _calm():
    """Keras warns on every call of a softmax over a single channel (always 1.0); the language
    allows that layer, and a model built from a checked net should not warn each time it runs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using a softmax over axis", category=UserWarning)
        yield


def build(net, device: str | None = None):
    """The Keras functional model of ``net``, its variables placed on ``device`` (default: best found)."""
    where = _device(device)
    graph = net.graph
    with tf.device(where), _calm():
        tensors: dict[str, Any] = {
            "input": keras.Input(shape=tuple(graph.nodes["input"]["args"]["shape"]), name="input")
        }
        for c in _calls(net):
            layer = getattr(keras.layers, c.cls)(*c.pos, name=c.name, **c.kw)
            ins = [tensors[i] for i in c.inputs]
            tensors[c.name] = layer(ins if c.merge else ins[0])
        model = keras.Model(tensors["input"], tensors[graph.graph["output"]], name=_model_name(net))
    model._netdsl_device = where
    return model


_device = device  # build()'s parameter shadows the function's name


# ---- weights --------------------------------------------------------------------------


def _weight_specs(net):
    """``(node, layer weight name, key)`` for every canonical weight, in node order."""
    from ..weights import entries

    for name, wname, _shape, _trainable in entries(net):
        yield name, wname, f"{name}.{wname}"


def get_weights(model, net) -> dict[str, np.ndarray]:
    """Every weight as ``"<node>.<weight>"`` -> float32 array, in Keras's (canonical) layout."""
    layers = {layer.name: layer for layer in model.layers}
    return {
        key: np.asarray(getattr(layers[node], wname).numpy(), dtype=np.float32)
        for node, wname, key in _weight_specs(net)
    }


def set_weights(model, net, tensors) -> None:
    """Load canonical weights (already validated against ``net``) into ``model``."""
    layers = {layer.name: layer for layer in model.layers}
    for node, wname, key in _weight_specs(net):
        var = getattr(layers[node], wname)
        var.assign(np.asarray(tensors[key], dtype=var.dtype))


# ---- inference ------------------------------------------------------------------------

PREDICT_BATCH = 1024


def predict(model, x) -> np.ndarray:
    """Inference-mode outputs (dropout off, batchnorm on its moving statistics), channels last."""
    x = np.asarray(x, dtype=np.float32)
    where = getattr(model, "_netdsl_device", None)
    with tf.device(where) if where else contextlib.nullcontext(), _calm():
        parts = [
            keras.ops.convert_to_numpy(model(x[i : i + PREDICT_BATCH], training=False))
            for i in range(0, max(len(x), 1), PREDICT_BATCH)
        ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


# ---- generate -------------------------------------------------------------------------

# Names the generated build_model() uses itself; a node variable never takes one.
_RESERVED = frozenset({"keras", "layers", "os", "inputs", "x", "build_model", "__debug__"})


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
    return _statement(target, f"layers.{c.cls}", parts, f"({arg})")


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
    for c in _calls(net):
        ins = [var[i] for i in c.inputs]
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
    lines += [
        "",
        "import os",
        "",
        "os.environ.setdefault('KERAS_BACKEND', 'tensorflow')  # written for Keras 3 on TensorFlow",
        "",
        "import keras",
        "from keras import layers",
        "",
        "",
        "def build_model():",
        '    """The network as a Keras functional model (channels-last input)."""',
        *(f"    {b}" for b in body),
        "",
        "",
        "if __name__ == '__main__':",
        "    build_model().summary()",
        "",
    ]
    return "\n".join(lines)

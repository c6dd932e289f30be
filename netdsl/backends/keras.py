"""The tf.keras backend: a checked :class:`~netdsl.net.Net` becomes a Keras 3 functional model.

Every node becomes one Keras layer named after the node (the input is
``keras.Input(name="input")``), wired with the functional API, so any DAG the
language can express (skips, merges, parallel paths) is built as written.

The ``OPS`` table (in :mod:`netdsl.backends.keras_program`, which imports neither
TensorFlow nor numpy, so ``netdsl compile`` runs without them) maps each op of
:mod:`netdsl.ops` to the Keras layer class and its constructor arguments.  The in-memory
model (:func:`build`) and the generated source (:func:`generate`) are both made from that
module's ``_calls``, one description of the model, so they are the same architecture by
construction.

Canonical weights (:func:`get_weights` / :func:`set_weights`) are Keras's own
layout, and their names (``kernel``, ``bias``, ``gamma``, ``beta``,
``moving_mean``, ``moving_variance``) are the Keras layers' attribute names.

TensorFlow is imported when this module is; ``TF_CPP_MIN_LOG_LEVEL=2`` and
``KERAS_BACKEND=tensorflow`` are set first unless the user set them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from ..errors import NetdslError  # noqa: E402
from .keras_program import (  # noqa: E402
    HELPERS,  # noqa: E402
    OPS,
    KerasOp,
    _calls,
    _model_name,
    generate,
)

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

__all__ = ["HELPERS", "OPS", "KerasOp", "build", "device", "generate", "get_weights", "predict", "set_weights"]

# layer classes of netdsl's own (keras_program.HELPERS): the very text generated files carry
_namespace: dict[str, Any] = {"keras": keras, "__name__": __name__}
for _src in HELPERS.values():
    exec(compile(_src, "<netdsl.backends.keras helpers>", "exec"), _namespace)  # fixed text, not user input
_HELPER_CLASSES = {name: _namespace[name] for name in HELPERS}
RandomCropPad = _HELPER_CLASSES["RandomCropPad"]

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
            layer = _plugin_layer(net, c.name) if c.cls.startswith("plugin:") else None
            if layer is None:
                cls = _HELPER_CLASSES[c.cls] if c.cls in _HELPER_CLASSES else getattr(keras.layers, c.cls)
                layer = cls(*c.pos, name=c.name, **c.kw)
            ins = [tensors[i] for i in c.inputs]
            tensors[c.name] = layer(ins if c.merge else ins[0])
            if c.cls.startswith("plugin:"):  # its real shape, before any layer builds on it
                from .. import plugins

                got = getattr(tensors[c.name], "shape", None)
                plugins.check_output(net, c.name, None if got is None else tuple(got[1:]), "keras")
        model = keras.Model(tensors["input"], tensors[graph.graph["output"]], name=_model_name(net))
    for name, node in graph.nodes.items():  # a plugin's layer holds its declared weights (built by now)
        if node["op"] != "input" and _is_plugin(node):
            from .. import plugins

            plugins.check_weights(net, name, model.get_layer(name), "keras")
    model._netdsl_device = where
    return model


_device = device  # build()'s parameter shadows the function's name


def _is_plugin(node) -> bool:
    from .. import plugins

    return node["op"] in plugins.PLUGINS


def _plugin_layer(net, name: str):
    from .. import plugins

    layer = plugins.call(net, name, "keras", name)
    if not isinstance(layer, keras.layers.Layer) or layer.name != name:
        p = plugins.PLUGINS[net.graph.nodes[name]["op"]]
        raise NetdslError(
            "E143",
            f"plugin layer `{p.name}` (from {p.origin}) failed: its keras builder must return a keras Layer "
            f"named `{name}`, got {type(layer).__name__}",
            net.graph.nodes[name]["span"],
        ).located(net.source)
    if net.graph.nodes[name].get("frozen"):
        layer.trainable = False
    return layer


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

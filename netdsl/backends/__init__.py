"""Backends: a checked :class:`~netdsl.net.Net` becomes a PyTorch or tf.keras model.

Each backend is one module with the same small API, imported only when used
(``check``, ``summary`` and ``plot`` never import a framework)::

    build(net, device=None) -> model
        The in-memory model.  Node names become module/layer names.  Torch models
        take and return NCHW tensors (vectors as (N, C)); Keras models NHWC.
    generate(net) -> str
        Standalone Python source (imports torch or keras, never netdsl) defining
        ``build_model()``, which returns the same architecture, and a ``__main__`` block
        that builds, prints and runs one batch.  It lives in ``torch_source`` /
        ``keras_program`` (see :func:`source`), which import no framework and no numpy.
    get_weights(model, net) -> dict[str, numpy.ndarray]
        Every weight in the canonical layout: key ``"<node>.<weight>"`` with the
        names and shapes of ``netdsl.ops`` (Keras's layout: conv kernels HWIO,
        dense kernels (in, out); batchnorm gamma/beta/moving_mean/moving_variance).
    set_weights(model, net, tensors) -> None
        The inverse; ``tensors`` has already been validated against the net.
    predict(model, x) -> numpy.ndarray
        Inference-mode outputs for a channels-last float32 batch ``x`` (NHWC, or
        (N, F) for vector inputs), returned channels-last: the same on both sides.
    device(requested=None) -> str
        The device the backend will use: ``requested`` if given, else the best found.

The ``OPS`` table of each backend has one entry per op of :mod:`netdsl.ops`.

``netdsl.backends.onnx`` is not a framework backend: its ``build(net, tensors, opset=,
layout=)`` writes an ``onnx.ModelProto`` itself (see :mod:`netdsl.export`); its ``OPS`` and
``ACTIVATION`` tables are checked against :mod:`netdsl.ops` the same way.
"""

from __future__ import annotations

import importlib

NAMES = ("torch", "keras")
ALIASES = {"pytorch": "torch", "tf": "keras", "tensorflow": "keras", "tf.keras": "keras"}
_SOURCE = {"torch": "torch_source", "keras": "keras_program"}  # the code generators: no framework


def source(name: str):
    """The code generator for ``name``: a module with ``generate(net) -> str`` that imports no
    framework and no numpy (``torch_source`` or ``keras_program``), so ``netdsl compile`` runs
    with the base install.  The framework module builds its model from the same program."""
    from ..errors import NetdslError

    key = ALIASES.get(name.lower(), name.lower())
    if key not in NAMES:
        raise NetdslError("E401", f"unknown backend `{name}` (known: torch, keras)")
    return importlib.import_module(f"{__name__}.{_SOURCE[key]}")


def get(name: str):
    """The backend module for ``name`` (``torch`` or ``keras``), imported now."""
    from ..errors import NetdslError

    key = ALIASES.get(name.lower(), name.lower())
    if key not in NAMES:
        raise NetdslError("E401", f"unknown backend `{name}` (known: torch, keras)")
    try:
        return importlib.import_module(f"{__name__}.{key}")
    except ImportError as e:
        extra = "torch" if key == "torch" else "tf"
        raise NetdslError(
            "E402",
            f"the {key} backend needs {'PyTorch' if key == 'torch' else 'TensorFlow'}, which is not installed ({e})",
            hint=f"pip install 'netdsl[{extra}]'",
        ) from None

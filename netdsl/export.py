"""``netdsl export`` and ``Net.to_onnx``: a deployable file with the weights inside.

ONNX is written by netdsl itself (:mod:`netdsl.backends.onnx`), with no framework:
only ``onnx`` and numpy are imported.  ``.keras`` (``format="keras"``) and a
``torch.export`` program (``format="pt2"``) are built by the framework backends.

Weights come from a safetensors file in the canonical layout, checked whole against
the net before anything is written (E301-E304), or, without one, are Keras-style
initial weights drawn from ``seed``: glorot-uniform kernels, zero biases, batchnorm
gamma 1, beta 0, moving mean 0, moving variance 1.  Files are written as every netdsl
output is (:mod:`netdsl.outputs`): atomically, devices and FIFOs in place, the spec and the
weights never replaced; on any failure nothing is left behind.  A default output replaces
only a file netdsl wrote: an ONNX model whose producer is netdsl, or a .keras / .pt2 archive
whose zip comment netdsl signed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import NetdslError

# Opsets: 13 is the first whose Softmax works on one axis (not a flattened 2-D view); 25 the
# newest the tests run in onnxruntime; 17 is read by every current runtime (onnxruntime
# >= 1.12, TensorRT 8.6, OpenVINO 2023).
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 13, 25, 17
MAX_BYTES = 2**31 - 2**24  # protobuf's 2 GiB, less room for the graph and the metadata
FORMATS = {"onnx": ".onnx", "keras": ".keras", "pt2": ".pt2"}
LAYOUTS = ("nchw", "nhwc")


def _onnx_backend():
    try:
        from .backends import onnx as backend
    except ImportError as e:
        raise NetdslError(
            "E402",
            f"ONNX export needs the onnx package, which is not installed ({e})",
            hint="pip install 'netdsl[onnx]'",
        ) from None
    return backend


def initial_weights(net, seed: int = 0) -> dict:
    """Keras's initialisation in the canonical layout, drawn from ``seed`` (numpy's PCG64)."""
    import numpy as np

    from .weights import entries

    rng = np.random.default_rng(seed)
    out = {}
    for node, wname, shape, _ in entries(net):
        if wname == "kernel":  # glorot uniform over the receptive field, as Keras computes fans
            receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            value = _uniform(rng, limit, shape)
        elif wname in ("gamma", "moving_variance"):
            value = np.ones(shape, np.float32)
        else:  # bias, beta, moving_mean
            value = np.zeros(shape, np.float32)
        out[f"{node}.{wname}"] = value
    return out


def _uniform(rng, limit: float, shape, chunk: int = 1 << 20):
    """float32 ``rng.uniform(-limit, limit, shape)``, the same numbers, drawn a chunk at a time: the
    float64 draw of a whole 1 GB kernel would take 2 GB more."""
    import numpy as np

    out = np.empty(shape, np.float32)
    flat = out.reshape(-1)
    for i in range(0, flat.size, chunk):
        flat[i : i + chunk] = rng.uniform(-limit, limit, min(chunk, flat.size - i))
    return out


def resolve_weights(net, weights=None, seed: int = 0) -> dict:
    """Canonical float32 tensors from a file path, a dict of arrays, or (None) the initial ones."""
    import numpy as np

    from . import weights as wfile

    if weights is None:
        return initial_weights(net, seed)
    if isinstance(weights, dict):
        tensors = {k: np.asarray(v) for k, v in weights.items()}
    else:
        tensors = wfile.read(weights)
    wfile.check(net, tensors)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}


def check_options(opset=None, layout: str = "nchw", fmt: str = "onnx", seed: int = 0) -> int | None:
    """Refuse an unknown format or layout, a bad seed, or an opset outside the tested range (E410)."""
    from .settings import MAX_SEED  # the train table's limit

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise NetdslError("E410", f"the seed must be a whole number from 0 to {MAX_SEED:,}, got {seed!r}")
    if fmt not in FORMATS:
        raise NetdslError("E410", f"unknown export format `{fmt}` (known: {', '.join(FORMATS)})")
    if layout not in LAYOUTS:
        raise NetdslError("E410", f"unknown layout `{layout}` (known: nchw, nhwc)")
    if fmt != "onnx":
        if opset is not None or layout != "nchw":
            raise NetdslError("E410", "--opset and --layout apply to ONNX only (keras is NHWC, pt2 NCHW)")
        return None
    backend = _onnx_backend()
    if opset is None:
        return backend.DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int) or not backend.MIN_OPSET <= opset <= backend.MAX_OPSET:
        raise NetdslError(
            "E410",
            f"opset {opset} is not supported (netdsl writes opsets {backend.MIN_OPSET} to {backend.MAX_OPSET})",
            hint=f"the default, {backend.DEFAULT_OPSET}, is read by every current runtime",
        )
    return opset


def to_onnx(net, path=None, *, weights=None, opset=None, layout: str = "nchw", seed: int = 0):
    """The ``onnx.ModelProto`` of ``net``; written to ``path`` (atomically) when given."""
    opset = check_options(opset, layout, "onnx", seed)
    backend = _onnx_backend()
    size = net.total_params * 4
    if size > MAX_BYTES:  # checked before a single weight is made: no runaway memory
        raise NetdslError(
            "E412",
            f"the weights take {size / 2**30:.1f} GiB; one ONNX file holds at most 2 GiB (protobuf's limit)",
            hint="make the net smaller (a .keras or .pt2 file has no such limit)",
        )
    if path is not None:
        _check_target(net, path, weights)
    tensors = resolve_weights(net, weights, seed)
    from . import __version__

    if weights is None:
        origin = f"initial (Keras-style, seed {seed})"
    elif isinstance(weights, dict):
        origin = "given as arrays"
    else:
        origin = os.path.basename(os.fspath(weights))
    meta = {
        "netdsl_version": __version__,
        "netdsl_spec": net.source.text,
        "netdsl_spec_file": net.source.filename,
        "netdsl_layout": layout,
        "netdsl_weights": origin,
    }
    doc = f"netdsl {__version__} from {net.source.filename}; {layout.upper()} input; weights: {origin}\n\n"
    model = backend.build(net, tensors, opset=opset, layout=layout, doc=doc + net.summary(), meta=meta)
    if path is not None:
        backend.room(model.ByteSize())  # a failed allocation in protobuf is a crash
        write(net, path, model.SerializeToString(), weights)
    return model


def _protect(net, weights=None) -> dict:
    """The files an export never replaces: the spec, and the weights it reads."""
    out = {net.source.filename: f"the spec {net.source.filename} with the exported model"}
    if isinstance(weights, (str, os.PathLike)):
        out[os.fspath(weights)] = f"the weights {os.fspath(weights)} with the exported model"
    return out


def _check_target(net, path, weights=None, default: bool = False) -> None:
    """E411 now, before any weight is made or framework loaded, for a target export would refuse."""
    from .outputs import Refused, check

    try:
        check(os.fspath(path), _protect(net, weights), default)
    except Refused as e:
        raise NetdslError("E411", str(e)) from None
    if os.path.isdir(path):
        raise NetdslError(
            "E411", f"cannot write {path}: it is a directory", hint=f"name a file, e.g. {Path(path) / net.name}.onnx"
        )


def write(net, path, data: bytes, weights=None, default: bool = False) -> Path:
    """Write ``data`` as the project writes every output (:func:`netdsl.outputs.put`: atomic for a
    file, in place for a device or FIFO, links followed), or E411 leaving nothing behind."""
    from .outputs import Refused, put

    try:
        put(os.fspath(path), data, _protect(net, weights), default)
    except Refused as e:
        raise NetdslError("E411", str(e)) from None
    return Path(path)


def _saved_bytes(suffix: str, save) -> bytes:
    """What a framework's ``save(path)`` writes (it wants a file name), signed as netdsl's: the
    archive's comment names netdsl, so a later default export knows it may replace the file."""
    import zipfile

    from . import __version__
    from .outputs import ZIP_MARK

    try:
        with tempfile.TemporaryDirectory(prefix="netdsl-export-") as d:
            tmp = os.path.join(d, "model" + suffix)
            save(tmp)
            with zipfile.ZipFile(tmp, "a") as z:
                z.comment = ZIP_MARK + f" {__version__}".encode()
            with open(tmp, "rb") as f:
                return f.read()
    except OSError as e:  # the temporary directory: no space, no writable TMPDIR
        raise NetdslError("E411", f"cannot make the {suffix} file: {e.strerror or e}") from None


def _built(net, backend_name: str, device: str, weights, seed: int):
    """The model of ``net`` in a framework, on the CPU, holding the export's weights."""
    check_options(None, "nchw", "keras" if backend_name == "keras" else "pt2", seed)
    from .backends import get

    backend = get(backend_name)
    tensors = resolve_weights(net, weights, seed)
    model = backend.build(net, device=device)
    backend.set_weights(model, net, tensors)
    return model


def keras_bytes(net, *, weights=None, seed: int = 0) -> bytes:
    """A ``.keras`` archive of the model with its weights (imports TensorFlow)."""
    model = _built(net, "keras", "/CPU:0", weights, seed)

    def save(tmp: str) -> None:
        import warnings

        with warnings.catch_warnings():  # Keras's own saving code trips numpy 2's copy= deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            model.save(tmp)

    return _saved_bytes(".keras", save)


def pt2_bytes(net, *, weights=None, seed: int = 0) -> bytes:
    """A ``torch.export`` program (NCHW input, dynamic batch) with its weights (imports torch)."""
    model = _built(net, "torch", "cpu", weights, seed)
    model.eval()
    import torch

    shape = net.input_shape[1:]
    example = torch.zeros((2, shape[-1], *shape[:-1]) if len(shape) > 1 else (2, *shape))  # channels first
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    return _saved_bytes(".pt2", lambda tmp: torch.export.save(program, tmp))


def to_keras_file(net, path, *, weights=None, seed: int = 0) -> Path:
    """Write :func:`keras_bytes` to ``path``."""
    _check_target(net, path, weights)  # before the framework loads: a wrong path fails fast
    return write(net, path, keras_bytes(net, weights=weights, seed=seed), weights)


def to_pt2_file(net, path, *, weights=None, seed: int = 0) -> Path:
    """Write :func:`pt2_bytes` to ``path``."""
    _check_target(net, path, weights)
    return write(net, path, pt2_bytes(net, weights=weights, seed=seed), weights)


# ---- the command ---------------------------------------------------------------------------


def cli(args, source, net) -> int:
    """``netdsl export``: write the file where the project writes outputs (the current directory
    by default, replacing only a file netdsl wrote), say what was written; errors located, exit 1."""
    import sys

    from .outputs import emit

    fmt = args.format
    out, default = args.output, args.output is None
    if default:
        stem = "net" if source.filename.startswith("<") else Path(source.filename).stem or "net"
        out = stem + FORMATS[fmt]
    try:
        if out != "-":
            _check_target(net, out, args.weights, default)  # before any weight is made or framework loaded
        if fmt == "onnx":
            model = to_onnx(net, None, weights=args.weights, opset=args.opset, layout=args.layout, seed=args.seed)
            _onnx_backend().room(model.ByteSize())  # a failed allocation in protobuf is a crash
            data = model.SerializeToString()
            what = f"onnx opset {model.opset_import[0].version}, {args.layout.upper()} input"
        elif fmt == "keras":
            data, what = keras_bytes(net, weights=args.weights, seed=args.seed), "keras, NHWC input"
        else:
            data, what = pt2_bytes(net, weights=args.weights, seed=args.seed), "torch.export, NCHW input"
        if out == "-":
            emit(data)  # a failure is the CLI's "cannot write to standard output", exit 1
        else:
            write(net, out, data, args.weights, default)
    except NetdslError as e:
        if args.traceback:
            raise
        print(str(e.located(source)), file=sys.stderr)
        return 1
    if args.weights is None:
        print(f"netdsl: no --weights: Keras-style initial weights from seed {args.seed} (untrained)", file=sys.stderr)
    if out != "-":
        print(f"wrote {out} ({what}, {net.total_params:,} params)", file=sys.stderr)
    return 0

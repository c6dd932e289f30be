"""One weights file for both frameworks: safetensors, keyed by node name.

The canonical layout is Keras's (conv kernels HWIO, dense kernels (in, out),
batchnorm gamma/beta/moving_mean/moving_variance), whatever framework wrote the
file, so a net trained in PyTorch loads into Keras and back.  Files are written
atomically; a file that does not fit the net is refused before anything is
loaded, naming the first offending tensor.  Never pickle.
"""

from __future__ import annotations

import json
import os
import struct
import sys

from . import ops
from .errors import NetdslError

FORMAT = "netdsl-weights"
VERSION = "1"


def entries(net):
    """``(node, weight, shape, trainable)`` for every weight of the net, in graph order.

    The one place that turns the op table's ``weights`` into the canonical list; the
    file format, and each backend's get/set_weights, walk this.
    """
    nodes = net.graph.nodes
    for name, node in nodes.items():
        op = ops.OPS.get(node["op"])
        if op is None or node["op"] == "input":
            continue
        ins = [nodes[i]["shape"] for i in node["inputs"]]
        for wname, shape, trainable in op.weights(node["args"], ins):
            yield name, wname, tuple(shape), trainable and not node.get("frozen")


def specs(net) -> dict[str, tuple[tuple[int, ...], bool]]:
    """``{"conv_1.kernel": ((5, 5, 1, 6), True), ...}`` in graph order (True: trainable)."""
    return {f"{node}.{w}": (shape, trainable) for node, w, shape, trainable in entries(net)}


def backend_of(model):
    """The backend module that built ``model`` (torch.nn.Module or keras.Model)."""
    from . import backends

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return backends.get("torch")
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):
        return backends.get("keras")
    raise NetdslError("E305", f"expected a torch.nn.Module or a keras.Model, got {type(model).__name__}")


def check(net, tensors: dict) -> dict:
    """Refuse tensors that do not fit the net: missing, wrong shape or dtype, or extra.

    Returns the tensors as the float32 arrays the models hold.  The values are checked
    after that cast: a float64 1e300 is finite in the file but ``inf`` in float32.
    """
    import numpy as np

    expected = specs(net)
    out = {}
    for key, (shape, _) in expected.items():
        if key not in tensors:
            raise NetdslError("E301", f"the weights have no tensor `{key}` (expected shape {shape})")
        t = tensors[key]
        if tuple(t.shape) != shape:
            raise NetdslError("E302", f"tensor `{key}` has shape {tuple(t.shape)}, the net needs {shape}")
        if not np.issubdtype(t.dtype, np.floating):
            raise NetdslError("E302", f"tensor `{key}` holds {t.dtype}, not floating point numbers")
        if not np.isfinite(t).all():
            raise NetdslError("E302", f"tensor `{key}` contains NaN or infinite values")
        with np.errstate(over="ignore"):
            t32 = np.asarray(t, dtype=np.float32)
        if not np.isfinite(t32).all():
            raise NetdslError(
                "E302",
                f"tensor `{key}` holds {t.dtype} values outside the float32 range (|x| > 3.4e38)",
                hint="the models compute in float32; such a weight would load as infinity",
            )
        out[key] = t32
    extra = [k for k in tensors if k not in expected]
    if extra:
        raise NetdslError(
            "E304",
            f"the weights have a tensor `{extra[0]}` that the net does not",
            hint="is this file for another net?",
        )
    return out


def save(net, model, path: str | os.PathLike) -> None:
    """Write ``model``'s weights (either framework) to ``path`` atomically."""
    import numpy as np
    from safetensors.numpy import save as to_bytes

    tensors = {
        k: np.ascontiguousarray(v, dtype=np.float32) for k, v in backend_of(model).get_weights(model, net).items()
    }
    check(net, tensors)
    meta = {"format": FORMAT, "version": VERSION, "net": net.name, "layout": "keras"}
    data = to_bytes(tensors, metadata=meta)
    from .files import write_output

    try:
        write_output(path, data)
    except OSError as e:
        raise NetdslError("E303", f"cannot write `{path}`: {e.strerror or e}") from None


# safetensors' own cap on the JSON header; a weights file is read whole, so it is also capped
MAX_HEADER = 100 << 20
MAX_FILE = 64 << 30


def _read_bytes(path) -> bytes:
    """A regular file's bytes, read only up to the size it has: a device or FIFO is refused.

    ``/dev/zero`` passed for weights made ``read_bytes`` grow without limit.
    """
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO without a writer: no hang
    except OSError as e:
        raise NetdslError("E303", f"cannot read `{path}`: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise NetdslError("E303", f"cannot read `{path}`: it is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise NetdslError("E303", f"`{path}` is not a regular file (a device, FIFO or socket), not a weights file")
        if st.st_size > MAX_FILE:
            raise NetdslError("E303", f"`{path}` is {st.st_size:,} bytes, more than a weights file netdsl reads")
        chunks, left = [], st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise NetdslError("E303", f"cannot read `{path}`: {e.strerror or e}") from None
    finally:
        os.close(fd)


def read(path: str | os.PathLike) -> dict:
    """The tensors of a weights file, or E303 for anything that is not one."""
    from safetensors.numpy import load as from_bytes

    data = _read_bytes(path)
    size = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else None
    if size is None or size > len(data) - 8 or size > MAX_HEADER:
        raise NetdslError("E303", f"`{path}` is not a safetensors weights file (truncated or foreign)")
    try:
        header = json.loads(data[8 : 8 + size])
        meta = header.get("__metadata__") or {}
        tensors = from_bytes(data)
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise NetdslError("E303", f"`{path}` is not a valid safetensors file ({e})") from None
    if meta.get("format") not in (None, FORMAT):
        raise NetdslError("E303", f"`{path}` holds `{meta.get('format')}` data, not netdsl weights")
    return tensors


def load(net, model, path: str | os.PathLike) -> None:
    """Load ``path`` into ``model`` (either framework): all of it, or nothing."""
    tensors = check(net, read(path))
    backend_of(model).set_weights(model, net, tensors)

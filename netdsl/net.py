"""The user-facing :class:`Net`, and :func:`parse` / :func:`load` that make one."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from .errors import NetdslError, Source

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Layer(NamedTuple):
    """One row of the summary: a node of the graph other than the input."""

    name: str
    op: str
    type: str  # the Keras class it becomes, e.g. Conv2D
    args: dict
    output_shape: tuple  # with None for the batch, like Keras
    params: int
    trainable: int
    non_trainable: int
    macs: int
    inputs: tuple
    line: int | None
    column: int | None


class Net:
    """A parsed and checked network.

    ``graph`` is the :class:`networkx.DiGraph` IR (see :mod:`netdsl.ir`); shapes
    are channels last with ``None`` for the batch, as Keras reports them.
    """

    def __init__(self, graph, source: Source, name: str = "net"):
        self.graph = graph
        self.source = source
        self.name = name

    # -- shapes and counts ----------------------------------------------------

    @property
    def layers(self) -> list[Layer]:
        from . import ops

        out = []
        for name, n in self.graph.nodes.items():
            if n["op"] == "input":
                continue
            op = ops.OPS.get(n["op"])
            out.append(
                Layer(
                    name,
                    n["op"],
                    op.keras if op else "?",
                    n["args"],
                    (None, *n["shape"]),
                    n["params"],
                    n["trainable"],
                    n["non_trainable"],
                    n["macs"],
                    tuple(n["inputs"]),
                    n["span"].line if n["span"] else None,
                    n["span"].column if n["span"] else None,
                )
            )
        return out

    @property
    def input_shape(self) -> tuple:
        return (None, *self.graph.nodes["input"]["shape"])

    @property
    def output_shape(self) -> tuple:
        return (None, *self.graph.nodes[self.graph.graph["output"]]["shape"])

    @property
    def trainable_params(self) -> int:
        return sum(n["trainable"] for n in self.graph.nodes.values())

    @property
    def non_trainable_params(self) -> int:
        return sum(n["non_trainable"] for n in self.graph.nodes.values())

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def total_macs(self) -> int:
        return sum(n["macs"] for n in self.graph.nodes.values())

    @property
    def space(self):
        """The spec's search space (:class:`netdsl.frontend.spaces.Space`; false when it has none)."""
        return self.graph.graph.get("space")

    @property
    def candidate(self) -> dict:
        """The value of each search space in this net ({} for a plain spec)."""
        return dict(self.graph.graph.get("candidate") or {})

    @property
    def train_config(self) -> dict:
        """Settings from the spec's ``train`` and ``data`` lines (only those written)."""
        return dict(self.graph.graph.get("train", {}))

    # -- frameworks (imported only here, when asked for) ------------------------

    def to_torch(self, device: str | None = None, verbose: bool = False):
        """A ``torch.nn.Module`` (NCHW in and out) with Keras's initialisation; ``verbose`` prints the device."""
        return _build("torch", self, device, verbose)

    def to_keras(self, device: str | None = None, verbose: bool = False):
        """A functional ``keras.Model`` (NHWC in and out); ``verbose`` prints the device."""
        return _build("keras", self, device, verbose)

    def generate(self, backend: str) -> str:
        """Standalone Python source for ``backend`` (``torch`` or ``keras``)."""
        from . import backends

        return backends.source(backend).generate(self)  # text: no framework needed

    def to_onnx(self, path=None, *, weights=None, opset=None, layout: str = "nchw", seed: int = 0):
        """An ``onnx.ModelProto`` written by netdsl itself (no framework); saved to ``path`` when given.

        ``weights``: a safetensors file (or dict) in the canonical layout; None: Keras-style
        initial weights from ``seed``.  ``layout``: ``nchw`` (ONNX's convention) or ``nhwc``.
        """
        from .export import to_onnx

        return to_onnx(self, path, weights=weights, opset=opset, layout=layout, seed=seed)

    def save_weights(self, model, path) -> None:
        """Write a model's weights (either framework) to a safetensors file, atomically."""
        from .weights import save

        save(self, model, path)

    def load_weights(self, model, path, strict: bool = True, mapping: dict | None = None):
        """Load a weights file written from either framework into ``model``.

        ``strict=True``: all of it or nothing (a tensor missing, extra or of another shape is an
        error).  ``strict=False``: every tensor whose name and shape match is loaded, the rest of
        the model keeps its values; ``path`` may also be a run directory, and ``mapping``
        (``{"old": "new"}``, node or node.weight names) renames the file's tensors first.
        Returns a :class:`netdsl.transfer.LoadReport` (loaded, skipped, missing, unexpected).
        """
        from .transfer import LoadReport, load_matching

        if not strict or mapping:
            if strict:
                raise ValueError("mapping= needs strict=False")
            return load_matching(self, model, path, mapping)
        from .weights import load, specs

        load(self, model, path)
        return LoadReport(list(specs(self)), [], [], [])

    # -- presentation -------------------------------------------------------------

    def summary(self) -> str:
        """The Keras-style table, as text."""
        from .summary import table

        return table(self)

    def to_json(self) -> dict:
        from .summary import as_json

        return as_json(self)

    def to_dot(self, **kw) -> str:
        """The drawing as Graphviz DOT text (``rankdir="TB"|"LR"``, ``expand=False``); no Graphviz needed."""
        from .render import to_dot

        return to_dot(self, **kw)

    def plot(self, path, **kw):
        """Draw the net into ``path`` (.svg, .png, .pdf with Graphviz's ``dot``; .dot without); returns the path."""
        from .render import plot

        return plot(self, path, **kw)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:  # notebooks: the drawing, the table beneath
        from .notebook import mimebundle

        return mimebundle(self, include, exclude)

    def _repr_svg_(self) -> str | None:  # notebooks: the drawing, or None without Graphviz (or when too large)
        from .notebook import mimebundle

        return mimebundle(self, include=["image/svg+xml"]).get("image/svg+xml")  # its limits of size and time

    def _repr_html_(self) -> str:  # notebooks: the summary table
        from .render import summary_html

        return summary_html(self)

    def __repr__(self) -> str:
        shape = lambda s: "(" + ", ".join(map(str, s)) + ")"  # noqa: E731
        return (
            f"<Net {self.name}: {len(self.graph) - 1} layer{'s' * (len(self.graph) != 2)}, {self.total_params:,} params, "
            f"{shape(self.input_shape)} -> {shape(self.output_shape)}>"
        )


def _build(backend: str, net: Net, device: str | None, verbose: bool = False):
    """Build with a backend; a library call prints nothing unless asked (``verbose``)."""
    import sys

    from . import backends

    mod = backends.get(backend)
    picked = mod.device(device)
    if verbose:
        print(f"netdsl: {backend} on {picked}", file=sys.stderr)
    return mod.build(net, device=picked)


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if not isinstance(k, str) or not _NAME.match(k):
            raise NetdslError("E106", f"`{k}` is not a valid parameter name")
        if isinstance(v, str):
            if not _NAME.match(v):
                raise NetdslError("E106", f"parameter `{k}`: `{v}` is neither a number nor a word")
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise NetdslError("E106", f"parameter `{k}` must be a number or a word, got {type(v).__name__}")
        elif isinstance(v, float) and not math.isfinite(v):
            raise NetdslError("E106", f"parameter `{k}` must be a finite number, got {v}")
        out[k] = v
    return out


def parse_input_shape(value) -> tuple[int, ...] | None:
    """``"28x28x1"``, ``784`` or a tuple → a shape tuple; raises ValueError if bad."""
    if value is None:
        return None
    if isinstance(value, str):
        if not re.fullmatch(r"\d+(x\d+){0,2}", value.strip()):
            raise ValueError(f"an input shape is HxWxC, LxC or N, got {value!r}")
        value = tuple(int(x) for x in value.strip().split("x"))
    elif isinstance(value, bool):
        raise ValueError(f"an input shape is HxWxC, LxC or N, got {value!r}")
    elif isinstance(value, int):
        value = (value,)
    elif not isinstance(value, (tuple, list)):
        raise ValueError(f"an input shape is HxWxC, LxC or N, got {value!r}")
    value = tuple(value)
    if None in value[:1] and len(value) in (2, 3, 4):  # (None, 28, 28, 1), Keras style
        value = value[1:]
    if len(value) not in (1, 2, 3) or not all(
        isinstance(x, int) and not isinstance(x, bool) and 0 < x < 2**31 for x in value
    ):
        raise ValueError(f"an input shape is HxWxC, LxC or N with sizes from 1 to {2**31 - 1:,}, got {value!r}")
    return value


def compile_source(
    source: Source,
    params: dict[str, Any] | None = None,
    input_shape=None,
    name: str = "net",
    candidate=None,
    program=None,
) -> Net:
    """Text → checked :class:`Net`, or a :class:`NetdslError` listing every error found.
    ``candidate`` picks values for the spec's search spaces (default: the default candidate);
    ``program``: the syntax tree of ``source``, when the caller has parsed it (`netdsl fmt`)."""
    from .frontend.driver import compile_graph

    # one line ending for everything after: CRLF and a lone CR (old Mac files) end a line
    if "\r" in source.text:
        source = Source(source.text.replace("\r\n", "\n").replace("\r", "\n"), source.filename)
    try:
        params = _check_params(params or {})
        try:
            shape = parse_input_shape(input_shape)
        except ValueError as e:
            raise NetdslError("E103", str(e)) from None
        graph = compile_graph(source, params, shape, candidate, program=program)
    except NetdslError as e:
        raise e.located(source) from None
    return Net(graph, source, name)


def parse(text: str, /, *, filename: str = "<string>", input_shape=None, **params) -> Net:
    """Parse and check a spec given as a string.

    Free names in the spec are bound from ``params`` (``netdsl.parse(text, width=64)``);
    ``input_shape`` (``"28x28x1"`` or a tuple) overrides the spec's ``input``.  The two
    keyword names ``filename`` and ``input_shape`` cannot be spec parameters from Python
    (bind those with ``-D`` on the command line, or rename them).
    """
    if not isinstance(text, str):
        raise TypeError(f"netdsl.parse takes the spec as a str, got {type(text).__name__}")
    name = Path(filename).stem if filename not in ("<string>", "<stdin>") else "net"
    return compile_source(Source(text.removeprefix("\ufeff"), filename), params, input_shape, name or "net")


def read_spec(path: str | os.PathLike, keep_bom: bool = False) -> Source:
    """Read a spec file (or ``-`` for stdin) into a :class:`Source`, with located errors;
    ``keep_bom``: a UTF-8 byte-order mark stays in the text (`netdsl fmt` writes it back)."""
    from .parser import MAX_SOURCE_BYTES, decode

    filename = os.fspath(path)
    try:
        if filename == "-":
            import sys

            filename = "<stdin>"
            if sys.stdin is None:  # started with stdin closed (`<&-`)
                raise OSError(0, "standard input is closed")
            data = sys.stdin.buffer.read(MAX_SOURCE_BYTES + 1)
        else:
            with open(filename, "rb") as f:
                data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as e:
        why = e.strerror or str(e)
        raise NetdslError("E005", f"cannot read `{filename}`: {why}", source=Source("", filename)) from None
    text = decode(data, filename)
    return Source("\ufeff" + text if keep_bom and data.startswith(b"\xef\xbb\xbf") else text, filename)


def load(path: str | os.PathLike, /, *, input_shape=None, **params) -> Net:
    """Read, parse and check a ``.net`` file (``-`` reads standard input)."""
    source = read_spec(path)
    name = Path(source.filename).stem if source.filename != "<stdin>" else "net"
    return compile_source(source, params, input_shape, name or "net")

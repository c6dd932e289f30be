"""Drawings of a net: DOT text (pure), and files rendered by Graphviz's ``dot`` (the edge).

:func:`to_dot` turns a :class:`~netdsl.net.Net`, its graph, or a :class:`NetdslError`
holding a partial graph into DOT text; :func:`plot` pipes that text through
``dot -T<fmt>`` and writes the file atomically.

The DOT text is written here rather than with the ``graphviz`` Python package: it takes
a few lines, needs no dependency, and keeps the quoting in one place (every label is an
HTML-like label made of escaped text; ids and tooltips are quoted strings).  So only
Graphviz's ``dot`` program is needed, and only for svg, png and pdf.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = (
    "install Graphviz (`apt-get install graphviz`, `brew install graphviz` or "
    "`conda install -c conda-forge graphviz`) so that `dot -V` works, or write a .dot file instead"
)
_FONT = "Helvetica,Arial,sans-serif"
_INK = "#1a1a1a"  # text: dark on every fill
_RED = "#c00000"

# One look per op family: fills of clearly different lightness (they stay apart printed
# in grey) and, on top, a distinct outline shape or border style per family.
_FAMILY = {  # grey levels: conv .60, dense .70, merge .74, pool .83, shape .89, norm .92, activation .95
    "input": ("#ffffff", 'shape=box, style="rounded,filled", peripheries=2'),
    "conv": ("#6aa6da", "shape=box, style=filled"),
    "dense": ("#f4a259", "shape=box, style=filled, peripheries=2"),
    "merge": ("#8fd1c1", "shape=ellipse, style=filled"),
    "pool": ("#c2e6a0", "shape=octagon, style=filled"),
    "shape": ("#e6e0f4", 'shape=box, style="filled,diagonals"'),
    "norm": ("#fff1a0", 'shape=box, style="rounded,filled,dashed"'),
    "activation": ("#fdeef5", 'shape=box, style="rounded,filled"'),
    "regularization": ("#ffffff", 'shape=box, style="rounded,filled,dotted"'),
    "preprocessing": ("#f2f2f2", 'shape=cds, style="filled"'),
}
_UNKNOWN = ("#ffffff", "shape=box, style=filled")

_CLUSTER = {  # kind -> attributes of its box
    "repeat": 'style="rounded,bold", color="#404040"',
    "iteration": 'style="rounded,dotted", color="#707070"',
    "def": 'style="rounded,filled", color="#606060", fillcolor="#f6f6f6"',
    "residual": 'style="rounded,dashed", color="#606060"',
    "add": 'style="rounded,dashed", color="#606060"',
    "concat": 'style="rounded,dashed", color="#606060"',
    "mul": 'style="rounded,dashed", color="#606060"',
    "path": "peripheries=0",  # keeps a path's layers together without another box
}


class RenderError(Exception):
    """Graphviz could not draw: ``dot`` is missing or failed; the message says what to do."""


class GraphvizMissing(RenderError):
    """Graphviz's ``dot`` program is not on PATH."""


# ---- text helpers ------------------------------------------------------------------


def _h(text) -> str:
    """Escaped for an HTML-like label; control characters become spaces."""
    text = re.sub(r"[\x00-\x1f\x7f]", " ", str(text))
    # dot reads label text as an escString, entities decoded first: `\N` would become the
    # node's name and `\\` a single `\`, so each backslash is doubled
    return html.escape(text, quote=True).replace("\\", "\\\\")


def _q(text) -> str:
    """A DOT quoted string whose content shows literally (escString aware; `&` as dot's SVG expects)."""
    text = re.sub(r"[\x00-\x09\x0b-\x1f\x7f]", " ", str(text)).replace("&", "&amp;")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(shape) -> str:
    return "?" if shape is None else "\u00d7".join(map(str, shape))


def _wrap(text: str, width: int = 46, lines: int = 6) -> list[str]:
    out = textwrap.wrap(text, width, break_long_words=True) or [""]
    return out[: lines - 1] + ["\u2026"] if len(out) > lines else out


# ---- what to draw ------------------------------------------------------------------


def _unpack(obj):
    """(graph, title, errors, source) from a Net, a graph, or a NetdslError."""
    from .errors import NetdslError
    from .net import Net

    if isinstance(obj, NetdslError):
        if obj.graph is None:
            raise ValueError("this error has no graph to draw (the spec did not parse)")
        name = obj.filename
        title = "net" if name.startswith("<") else Path(name).stem or "net"
        return obj.graph, title, list(obj.errors), obj.source
    if isinstance(obj, Net):
        return obj.graph, obj.name, [], obj.source
    if hasattr(obj, "nodes") and isinstance(getattr(obj, "graph", None), dict):
        return obj, obj.graph.get("name", "net"), [], None
    raise TypeError(f"to_dot takes a Net, its graph or a NetdslError, got {type(obj).__name__}")


def _failures(graph, errors) -> tuple[dict, list]:
    """Each error matched to its failing node (the last one starting before it on its
    line: a node's span is its layer word, an error's may be an argument); the rest apart."""
    failing = [v for v, n in graph.nodes.items() if n.get("error") and n.get("span")]
    matched: dict = {}
    loose = []
    for e in errors:
        home = None
        for v in failing:
            s = graph.nodes[v]["span"]
            if v in matched or e.span is None or s.line != e.span.line or s.column > e.span.column:
                continue
            if home is None or s.column > graph.nodes[home]["span"].column:
                home = v
        if home is None:
            loose.append(e)
        else:
            matched[home] = e
    return matched, loose


# ---- DOT ---------------------------------------------------------------------------


def to_dot(net_or_graph, rankdir: str = "TB", expand: bool = False, compact: bool | None = None) -> str:
    """The drawing as Graphviz DOT text; pure (no Graphviz needed, nothing written).

    Accepts a :class:`~netdsl.net.Net`, its graph, or a :class:`~netdsl.NetdslError`
    whose ``graph`` holds what was built before the error (the failing layers are then
    outlined in red with their messages).  ``rankdir`` is ``"TB"`` or ``"LR"``;
    ``expand`` draws every pass of each ``repeat`` instead of the first, labelled ×N;
    ``compact`` folds activation/batchnorm/dropout chains into the layer before them
    (None: when more than ``drawplan.AUTO_COMPACT`` nodes would be drawn).

    A node shows its output shape (and its parameters, when it has any); edges are
    unlabelled, except one leaving a folded repeat, which names the node it comes from.
    """
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"rankdir must be TB or LR, got {rankdir!r}")
    from .drawplan import Plan

    graph, title, errors, source = _unpack(net_or_graph)
    plan = Plan(graph, expand, compact)
    matched, loose = _failures(graph, errors)
    shown = plan.shown
    out = [
        "digraph netdsl {",
        f'  graph [rankdir={rankdir}, fontname="{_FONT}", fontsize=12, labelloc=t, bgcolor=white, '
        "nodesep=0.3, ranksep=0.32, newrank=true, compound=true]",
        f'  node [fontname="{_FONT}", fontsize=11, fontcolor="{_INK}", color="#303030", margin="0.14,0.05"]',
        f'  edge [fontname="{_FONT}", fontsize=9, fontcolor="#404040", color="#505050", arrowsize=0.7]',
        f"  label=<{_graph_label(graph, title, errors, loose)}>",
    ]
    tree: dict = {None: []}
    for v in shown:
        parent = None
        for gid in graph.nodes[v].get("groups", ()):
            if plan.drawn(gid):
                if gid not in tree:
                    tree[gid] = []
                    tree[parent].append(("cluster", gid))
                parent = gid
        tree[parent].append(("node", v))

    def emit(key, depth: int) -> None:
        pad = "  " * depth
        for kind, item in tree[key]:
            if kind == "node":
                out.append(pad + _node(graph, item, matched.get(item), source, plan.chain.get(item, [item])))
                continue
            attrs = [_CLUSTER.get(plan.groups[item]["kind"], "")]
            label = _cluster_label(plan, item, source)
            # an unlabelled cluster would inherit the label of the one around it
            attrs.append(f'label=<{label}>, labeljust=l, fontsize=10, fontcolor="{_INK}"' if label else 'label=""')
            out.append(f"{pad}subgraph {_q('cluster_' + item)} {{")
            out.append(f"{pad}  graph [{', '.join(a for a in attrs if a)}]")
            emit(item, depth + 1)
            out.append(pad + "}")

    emit(None, 1)
    for tail, head, via, src in plan.edges():
        attrs = []
        if via is not None:  # leaves a repeat drawn once: from its box, naming the last pass's node
            attrs.append(f"ltail={_q('cluster_' + via)}")
        if src is not None:  # the shape only where it is not the one on the tail's box
            label = f"from {src}"
            shape = graph.nodes[src]["shape"]
            if shape != graph.nodes[plan.last(tail)]["shape"]:
                label += f": {_shape(shape)}"
            attrs.append(f"label=<{_h(label)}>")
        out.append(f"  {_q(tail)} -> {_q(head)}" + (f" [{', '.join(attrs)}]" if attrs else ""))
    out.append("}")
    return "\n".join(out) + "\n"


class _Drawn:
    """What :func:`spaces.note` reads from a net (its space and candidate), from the graph's record."""

    def __init__(self, record: dict) -> None:
        self.space, self.candidate = record["space"], dict(record.get("candidate") or {})


def _graph_label(graph, title: str, errors: list, loose: list) -> str:
    nodes = graph.graph
    ns = graph.nodes
    inp = ns["input"]["shape"] if "input" in ns else None
    last = nodes.get("output")
    outp = ns[last]["shape"] if last in ns else None
    t = sum(n["trainable"] for n in ns.values())
    nt = sum(n["non_trainable"] for n in ns.values())
    macs = sum(n["macs"] for n in ns.values())
    so_far = " (up to the error)" if errors else ""
    lines = [
        f'<b><font point-size="14">{_h(title)}</font></b>',
        f"input {_h(_shape(inp))} \u2192 output {_h(_shape(outp))}",
        f"{t + nt:,} params{so_far}: {t:,} trainable, {nt:,} non-trainable \u00b7 {macs:,} MACs",
    ]
    if nodes.get("space"):  # a spec with search spaces: the drawing names the candidate it shows
        from .frontend.spaces import note

        lines.append("<br/>".join(_h(x) for x in _wrap(note(_Drawn(nodes)), 90, 3)))
    if errors:
        n = len(errors)
        lines.append(
            f'<font color="{_RED}"><b>\u2717 {n} error{"s" * (n != 1)}</b>: failing layers outlined in red; '
            "layers after them are not checked</font>"
        )
        for e in loose[:3]:
            where = f"line {e.line}: " if e.line else ""
            text = f"{where}error[{e.code}]: {e.message}"
            lines.append(f'<font color="{_RED}">{"<br/>".join(_h(x) for x in _wrap(text, 90, 3))}</font>')
        if len(loose) > 3:
            lines.append(f'<font color="{_RED}">and {len(loose) - 3} more</font>')
    return "<br/>".join(lines) + "<br/> "


def _cluster_label(plan, gid: str, source) -> str:
    g = plan.groups[gid]
    kind = g["kind"]
    if kind == "repeat":
        once = " (drawn once)" if gid in plan.folded else ""
        return f"<b>repeat \u00d7{g.get('count', '?')}</b>{once} \u00b7 {plan.params(gid):,} params"
    if kind == "iteration":
        return f"pass {g['index']}"
    if kind == "def":
        return f"<b>{_h(_call_text(g, source))}</b> \u00b7 {plan.params(gid):,} params"
    if kind in ("add", "concat", "mul"):
        paths = " | ".join(["\u2026"] * g.get("paths", 2))
        return f"<b>{kind}</b> {{ {paths} }}"
    if kind == "residual":
        return "<b>residual</b> x + f(x)"
    return ""


def _describe(graph, v) -> str:
    """``conv 32×3 same relu``: the op and its key arguments."""
    from . import ops

    n = graph.nodes[v]
    op = ops.OPS.get(n["op"])
    desc = ""
    if op is not None and n.get("args") is not None:
        try:
            desc = op.describe(n["args"])
        except Exception:  # a drawing must not fail on a half-built node
            desc = ""
    return f"{n['op']} {desc}".strip()


def _call_text(g: dict, source) -> str:
    """``block(64, s=2)``: the call's bound values if the graph records them, else its text."""
    name = g["label"]
    if isinstance(g.get("args"), dict):
        return f"{name}({', '.join(f'{k}={v}' for k, v in g['args'].items())})"
    span = g.get("span")
    if source is not None and span is not None and span.end_line == span.line:
        text = " ".join(source.line(span.line)[span.column - 1 : span.end_column - 1].split())
        if text.startswith(name) and "(" in text:
            return text if len(text) <= 60 else text[:59] + "\u2026)"
    return f"{name}()"


def _node(graph, v, err, source, chain=None) -> str:
    from . import ops

    chain = chain or [v]
    n = graph.nodes[v]
    op = ops.OPS.get(n["op"])
    family = "input" if n["op"] == "input" else op.family if op else None
    fill, look = _FAMILY.get(family, _UNKNOWN)
    lines = [f"<b>{_h(v)}</b>"]
    if n["op"] == "input":
        lines.append(_h(_shape(n["shape"])))
    else:
        what = _describe(graph, v)
        if what != n["op"] or not v.startswith(f"{n['op']}_"):  # `relu_2` needs no second line saying `relu`
            lines.append(_h(what))
        if len(chain) > 1:  # compacted: the layers folded into this box, in order
            lines.append(_h(" ".join(f"+ {_describe(graph, c)}" for c in chain[1:])))
        end = graph.nodes[chain[-1]]
        if n.get("error"):
            stats = ""
        elif end["shape"] is None:
            stats = "? \u00b7 ? params"
        else:  # the shape always; parameters only where there are some
            stats = _shape(end["shape"])
            params = sum(graph.nodes[c]["params"] for c in chain)
            frozen = sum(graph.nodes[c]["non_trainable"] for c in chain)
            if params:
                stats += f" \u00b7 {params:,} params"
            if frozen:
                stats += f" ({frozen:,} non-trainable)"
        if stats:
            lines.append(f'<font point-size="10">{_h(stats)}</font>')
    attrs = [look, f'fillcolor="{fill}"']
    if n.get("error"):
        text = f"error[{err.code}]: {err.message}" if err is not None else f"error: {n['error']}"
        red = _wrap(text)
        if err is not None and err.hint:
            red += _wrap(f"hint: {err.hint}")
        lines.append(f'<font color="{_RED}" point-size="10">{"<br/>".join(_h(x) for x in red)}</font>')
        attrs = [look.replace("dashed", "solid").replace("dotted", "solid"), 'fillcolor="#ffe4e1"']
        attrs.append(f'color="{_RED}", penwidth=3')
    elif n["shape"] is None:
        attrs = ['shape=box, style="filled,dashed"', 'fillcolor="#ffffff"', 'color="#909090", fontcolor="#606060"']
    tip = f"{v}: {'InputLayer' if n['op'] == 'input' else op.keras if op else n['op']}"
    if len(chain) > 1:
        tip += f" (with {', '.join(chain[1:])})"
    span = n.get("span")
    if span:
        tip += f", line {span.line}"
        text = source.line(span.line) if source is not None else ""
        text = text.split("#", 1)[0].strip()  # a spec has no strings: `#` starts a comment
        if text:
            tip += f"\n{text[:120]}"
    if n["op"] != "input" and n["shape"] is not None:
        tip += f"\n{n['macs']:,} MACs; {n['trainable']:,} trainable, {n['non_trainable']:,} non-trainable params"
    # a tooltip is an escString with no escape for `\` itself (`\\N` still becomes the name)
    attrs.append(f"tooltip={_q(tip.replace(chr(92), chr(0x29F5)))}")
    return f"{_q(v)} [label=<{'<br/>'.join(lines)}>, {', '.join(attrs)}]"


# ---- the edge: dot, files, notebooks -------------------------------------------------


def render(dot_text: str, fmt: str, timeout: float | None = None) -> bytes:
    """Run ``dot -T<fmt>`` on DOT text; :class:`GraphvizMissing` if ``dot`` is not found;
    ``timeout``: seconds before dot is killed (a :class:`RenderError`)."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizMissing(f"drawing {fmt} needs Graphviz's `dot` program, which is not on PATH; {INSTALL_HINT}")
    cmd = [exe, f"-T{fmt}"] + (["-Gdpi=144"] if fmt == "png" else [])
    try:
        proc = subprocess.run(cmd, input=dot_text.encode("utf-8"), capture_output=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:  # run() has killed dot
        raise RenderError(f"Graphviz's dot took longer than {timeout:g} s to draw {fmt} and was stopped") from None
    except OSError as e:
        raise RenderError(f"cannot run {exe}: {e.strerror or e}; {INSTALL_HINT}") from None
    if proc.returncode < 0:  # killed (out of memory, a user's kill): say so, not "exit status -9"
        import signal

        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        raise RenderError(f"Graphviz's dot was killed by {sig} while drawing {fmt} (a very large or branchy graph?)")
    if proc.returncode != 0:
        why = proc.stderr.decode("utf-8", "replace").strip()[-800:] or f"exit status {proc.returncode}"
        raise RenderError(f"Graphviz's dot failed to draw {fmt}: {why}")
    return proc.stdout


def format_of(path, format: str | None = None) -> str:
    """``svg``/``png``/``pdf``/``dot`` from ``format`` or the path's suffix; ValueError if neither."""
    fmt = (format or Path(path).suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"cannot tell the format of {os.fspath(path)!r}: use a .svg, .png, .pdf or .dot name")
    return fmt


def plot(
    net, path, format: str | None = None, rankdir: str = "TB", expand: bool = False, compact: bool | None = None
) -> Path:
    """Draw ``net`` (or a NetdslError's partial graph) into ``path``, written atomically.

    The format comes from ``format`` or the suffix: svg, png, pdf (these need
    Graphviz's ``dot``; :class:`GraphvizMissing` otherwise) or dot (the text itself).
    """
    path = Path(path)
    data = draw(net, format_of(path, format), rankdir=rankdir, expand=expand, compact=compact)
    from .files import write_output

    return write_output(path, data)


def draw(net, fmt: str, rankdir: str = "TB", expand: bool = False, compact: bool | None = None) -> bytes:
    """The drawing as the bytes of a ``fmt`` file (svg, png, pdf need Graphviz's ``dot``)."""
    text = to_dot(net, rankdir=rankdir, expand=expand, compact=compact)
    data = text.encode("utf-8") if fmt == "dot" else render(text, fmt)
    return _sign_png(data) if fmt == "png" else data


def _sign_png(data: bytes) -> bytes:
    """Add a ``Software: netdsl`` text chunk after the header, so netdsl knows its own file again."""
    import struct
    import zlib

    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return data
    end = 8 + 12 + struct.unpack(">I", data[8:12])[0]  # signature, then IHDR's length, type, data and CRC
    body = b"tEXt" + b"Software\x00netdsl"
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return data[:end] + chunk + data[end:]


def svg(net, **kw) -> str | None:
    """The drawing as SVG text, or None when Graphviz cannot draw it (for notebooks)."""
    try:
        return render(to_dot(net, **kw), "svg").decode("utf-8")
    except RenderError:
        return None


def summary_html(net) -> str:
    """The summary table (as :meth:`Net.summary` prints it) as an escaped HTML table."""
    rows = []
    for layer in net.layers:
        shape = "(" + ", ".join(map(str, layer.output_shape)) + ")"
        cells = [f"{layer.name} ({layer.type})", shape, f"{layer.params:,}", f"{layer.macs:,}", ", ".join(layer.inputs)]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("Layer (type)", "Output Shape", "Param #", "MACs", "Connected to"))
    foot = (
        f"Total params: {net.total_params:,} \u00b7 Trainable: {net.trainable_params:,} \u00b7 "
        f"Non-trainable: {net.non_trainable_params:,} \u00b7 MACs: {net.total_macs:,}"
    )
    return (
        f'<table class="netdsl-summary"><caption>Model: &quot;{html.escape(net.name)}&quot;</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
        f'<tfoot><tr><td colspan="5">{html.escape(foot)}</td></tr></tfoot></table>'
    )

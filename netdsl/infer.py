"""Shape inference and parameter counting over the graph, in pure Python.

Walks the nodes in creation order (a topological order by construction), applies
each op's shape rule from :mod:`netdsl.ops`, and records shapes, counts and MACs
on the nodes.  A node whose inputs are unknown (an earlier error) is skipped, so
independent errors further on are still found.
"""

from __future__ import annotations

import networkx as nx

from . import ops
from .errors import NetdslError, Source

MAX_ELEMENTS = 2**40  # per sample; a float32 tensor of 4 TiB


def infer(graph, source: Source) -> list[NetdslError]:
    errors: list[NetdslError] = []
    nodes = graph.nodes
    for name, node in nodes.items():
        if node["op"] == "input" or node["error"] is not None or node["args"] is None:
            continue
        ins = [nodes[i]["shape"] for i in node["inputs"]]
        if not ins or any(s is None for s in ins):
            continue
        op = ops.OPS[node["op"]]
        try:
            shape = op.shape(node["args"], ins)
        except ops.ShapeError as e:
            culprit = node["inputs"][e.culprit] if e.culprit is not None else None
            notes = []
            for i, src in enumerate(node["inputs"]):
                if culprit is None or src == culprit or (e.code in ("E204", "E205") and i == 0):
                    notes.append(_origin(graph, src, source))
            node["error"] = e.message
            errors.append(NetdslError(e.code, e.message, node["span"], hint=e.hint, notes=notes))
            continue
        node["shape"] = tuple(shape)
        if max(shape) > ops.MAX_SIZE or ops._prod(shape) > MAX_ELEMENTS:
            node["error"] = "too large"
            errors.append(
                NetdslError(
                    "E209",
                    f"the output of `{name}` would be a {ops.fmt_shape(shape)}: too large for any framework",
                    node["span"],
                    hint="check the sizes of this layer and the ones before it",
                )
            )
            node["shape"] = None
            continue
        t, nt = ops.count(op, node["args"], ins)
        node["trainable"], node["non_trainable"], node["params"] = t, nt, t + nt
        node["macs"] = op.macs(node["args"], ins, shape)
    if not errors:
        errors.extend(_dead_branches(graph))
    return errors


def _origin(graph, name: str, source: Source) -> str:
    node = graph.nodes[name]
    what = f"the {ops.fmt_shape(node['shape'])}"
    if node["op"] == "input":
        where = "the input" + (f" (line {node['span'].line})" if node["span"] else ", 28x28x1 by default")
        return f"{what} comes from {where}"
    line = node["span"].line
    text = source.line(line).split("#", 1)[0].strip()
    return f"{what} comes from `{name}` at line {line}: {text}"


def _dead_branches(graph) -> list[NetdslError]:
    out = graph.output
    if out is None:
        return []
    live = nx.ancestors(graph, out) | {out}
    for name, node in graph.nodes.items():
        if name not in live and node["op"] != "input":
            return [
                NetdslError(
                    "E208",
                    f"the output of `{name}` is never used: it does not lead to the network's output",
                    node["span"],
                    hint="merge it back with `add`/`concat`, or remove it",
                    notes=[f"the network's output is `{out}`"],
                )
            ]
    return []

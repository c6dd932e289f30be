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
from .ir import context

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
            counts = ops.count(op, node["args"], ins)  # a plugin's weights and MACs fail here, located too
            macs = op.macs(node["args"], ins, tuple(shape))
        except ops.ShapeError as e:
            culprit = node["inputs"][e.culprit] if e.culprit is not None else None
            notes = []
            for i, src in enumerate(node["inputs"]):
                if culprit is None or src == culprit or (e.code in ("E204", "E205") and i == 0):
                    notes.append(_origin(graph, src, source))
            message, hint = e.message, e.hint
            if e.code == "E204" and node.get("block") == "residual":
                message = f"a residual body must keep its input's shape: {ops.fmt_shape(ins[0])} in, {ops.fmt_shape(ins[1])} out"
                hint = "end the body with the input's channels and size, or project the shortcut: `add { body | conv Nx1/S }`"
            node["error"] = message
            notes += context(graph, node["groups"])
            errors.append(NetdslError(e.code, message, node["span"], hint=hint, notes=notes))
            continue
        node["shape"] = tuple(shape)
        t, nt = counts
        if node.get("frozen"):  # `frozen=true`: every weight non-trainable, as Keras counts layer.trainable=False
            t, nt = 0, t + nt
        if t + nt > MAX_ELEMENTS:
            node["error"] = "too many parameters"
            errors.append(
                NetdslError(
                    "E209",
                    f"`{name}` would have {t + nt:,} parameters: too many for any framework",
                    node["span"],
                    hint="check the sizes of this layer and of its input",
                    notes=context(graph, node["groups"]),
                )
            )
            node["shape"] = None
            continue
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
        node["trainable"], node["non_trainable"], node["params"] = t, nt, t + nt
        node["macs"] = macs
    if not errors:
        errors.extend(_dead_branches(graph))
    return errors


def _origin(graph, name: str, source: Source) -> str:
    node = graph.nodes[name]
    what = f"the {ops.fmt_shape(node['shape'])}"
    if node["op"] == "input":
        given = graph.graph.get("input_from")
        if given == "override":
            where = "the input shape given from outside (--input / input_shape)"
        else:
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

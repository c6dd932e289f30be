"""The intermediate representation: a :class:`networkx.DiGraph` of layer nodes.

Node attributes (all set by :mod:`netdsl.frontend`, then :mod:`netdsl.infer`):

``op``            the op name (``conv``, ``add``, ...; ``input`` for the source)
``args``          the op's resolved argument dict (``None`` if they were wrong)
``inputs``        the input node names, in order (a merge may take one node twice)
``span``          the :class:`~netdsl.errors.Span` of the statement that made it
``groups``        ids of the enclosing blocks, outermost first (see ``graph["groups"]``)
``named``         True when the user gave the name (``e1: conv ...``)
``shape``         the inferred output shape, channels last, batch omitted; None if unknown
``trainable``, ``non_trainable``, ``params``, ``macs``   counts per sample
``error``         why this node failed, or None

``graph.graph["groups"]`` maps a group id to ``{"kind", "label", "span", "parent", ...}``
where kind is ``residual``, ``add``, ``concat``, ``path``, ``def``, ``repeat`` or
``iteration`` (one per repeat pass, with its ``index`` and ``repeat`` id); the
renderer draws them as clusters.  ``graph.graph["output"]`` is the output node.
"""

from __future__ import annotations

import networkx as nx


def context(graph, groups: tuple) -> list[str]:
    """Notes that say which def call and which repeat pass a node was made in."""
    out = []
    for gid in reversed(groups):  # innermost first
        g = graph.graph["groups"][gid]
        if g["kind"] == "def":
            out.append(f"in the call to `{g['label']}` at line {g['span'].line} (`{g['instance']}`)")
        elif g["kind"] == "iteration":
            out.append(f"in pass {g['index']} of the `repeat` at line {g['span'].line}")
    return out


class Graph(nx.DiGraph):
    """A DiGraph with the two helpers the expander needs; nothing more."""

    def __init__(self, incoming_graph_data=None, **attr):
        super().__init__(incoming_graph_data, **attr)
        self.graph.setdefault("groups", {})
        self.graph.setdefault("output", None)

    @property
    def groups(self) -> dict:
        return self.graph["groups"]

    @property
    def output(self) -> str | None:
        return self.graph["output"]

    @output.setter
    def output(self, name: str | None) -> None:
        self.graph["output"] = name

    def add_input(self, shape: tuple, span) -> None:
        self.add_node(
            "input",
            op="input",
            args={"shape": shape},
            inputs=[],
            span=span,
            groups=(),
            named=False,
            shape=tuple(shape),
            trainable=0,
            non_trainable=0,
            params=0,
            macs=0,
            error=None,
        )

    def add_layer(
        self, name: str, op: str, args, span, inputs: list, groups: tuple, error: str | None = None, named: bool = False
    ) -> None:
        inputs = [i for i in inputs if i is not None]
        self.add_node(
            name,
            op=op,
            args=args,
            inputs=inputs,
            span=span,
            groups=groups,
            named=named,
            shape=None,
            trainable=0,
            non_trainable=0,
            params=0,
            macs=0,
            error=error,
        )
        for i in inputs:
            self.add_edge(i, name)

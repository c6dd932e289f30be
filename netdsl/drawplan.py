"""What a drawing shows: which nodes, boxes and edges (pure; :mod:`netdsl.render` writes them).

Two foldings keep deep nets readable:

- a ``repeat N`` is drawn once (its first pass), labelled ×N, unless ``expand``; an edge
  leaving it starts at the repeat's box (Graphviz ``ltail``) and names the node of the
  last pass it really comes from;
- ``compact`` folds a chain of activation, batchnorm and dropout layers into the layer
  before it (``conv_2 + batchnorm_1 + relu_1`` is one box), when that layer feeds only
  the chain.  By default (``compact=None``) this happens when more than
  :data:`AUTO_COMPACT` nodes would be drawn.
"""

from __future__ import annotations

AUTO_COMPACT = 30  # drawn nodes above which the default drawing folds activation chains
_FOLDABLE = ("activation", "norm", "regularization")  # op families that join the layer before them


class Plan:
    """Which nodes, edges and clusters appear."""

    def __init__(self, graph, expand: bool, compact: bool | None = None):
        self.graph = graph
        self.groups = graph.graph.get("groups", {})
        self.members: dict[str, list] = {}
        for v, n in graph.nodes.items():
            for gid in n.get("groups", ()):
                self.members.setdefault(gid, []).append(v)
        self.index = {gid: {v: i for i, v in enumerate(vs)} for gid, vs in self.members.items()}
        its = {gid: g for gid, g in self.groups.items() if g["kind"] == "iteration"}
        self.first = {g["repeat"]: gid for gid, g in its.items() if g["index"] == 1}
        bad = {
            g["repeat"]
            for i, g in its.items()
            if g["index"] > 1 and any(graph.nodes[v]["error"] for v in self.members.get(i, ()))
        }
        # a repeat that failed after its first pass is drawn whole, so the failing layer shows
        self.folded = set() if expand else set(self.first) - bad
        self._twin: dict = {}
        shown = [v for v in graph.nodes if self.twin(v) == v]
        if compact is None:
            compact = len(shown) > AUTO_COMPACT
        self.compact = compact
        self.chain: dict[str, list] = {}  # the node drawn -> the nodes folded into it, itself first
        self.host: dict[str, str] = {}  # a folded node -> the node whose box holds it
        if compact:
            self._fold(shown)
        self.shown = [v for v in shown if v not in self.host]

    # -- repeats -----------------------------------------------------------------------

    def hidden_by(self, v) -> str | None:
        for gid in self.graph.nodes[v].get("groups", ()):
            g = self.groups[gid]
            if g["kind"] == "iteration" and g["index"] > 1 and g["repeat"] in self.folded:
                return gid
        return None

    def twin(self, v):
        """The node drawn for ``v``: itself, or its counterpart in pass 1 (None if none)."""
        if v not in self._twin:
            u = v
            while u is not None and (it := self.hidden_by(u)) is not None:
                pos = self.index[it][u]
                pass1 = self.members.get(self.first[self.groups[it]["repeat"]], [])
                u = pass1[pos] if pos < len(pass1) else None
            self._twin[v] = u
        return self._twin[v]

    def drawn(self, gid: str) -> bool:
        g = self.groups[gid]
        return not (g["kind"] == "iteration" and g["repeat"] in self.folded)

    # -- compaction ----------------------------------------------------------------------

    def _fold(self, shown: list) -> None:
        from . import ops

        g = self.graph
        readers: dict[str, int] = {}
        for n in g.nodes.values():
            for i in n.get("inputs", ()):
                readers[i] = readers.get(i, 0) + 1
        for v in shown:
            n = g.nodes[v]
            op = ops.OPS.get(n["op"])
            ins = n.get("inputs", ())
            if op is None or op.family not in _FOLDABLE or len(ins) != 1 or n.get("error") or n["shape"] is None:
                continue
            u = ins[0]
            head = self.host.get(u, u)
            un = g.nodes.get(u)
            if (
                un is None
                or un["op"] == "input"
                or un.get("error")
                or readers.get(u, 0) != 1
                or self.twin(u) != u
                or self._boxes(u) != self._boxes(v)
            ):
                continue
            self.host[v] = head
            self.chain.setdefault(head, [head]).append(v)

    def _boxes(self, v) -> tuple:
        return tuple(gid for gid in self.graph.nodes[v].get("groups", ()) if self.drawn(gid))

    def box(self, v):
        """The node whose box shows ``v`` (None when ``v`` is not drawn)."""
        t = self.twin(v)
        return None if t is None else self.host.get(t, t)

    def last(self, v):
        """The node whose output leaves ``v``'s box: the end of its chain."""
        return self.chain.get(v, [v])[-1]

    # -- edges ---------------------------------------------------------------------------

    def edges(self) -> list[tuple]:
        """``(tail, head, via, source)`` for each input of each drawn node, in input order.

        ``via``: the folded repeat the edge leaves (its box is the edge's tail), or None;
        ``source``: the node the tensor really comes from, when the tail box is another.
        """
        out, seen = [], set()
        for box in self.shown:
            for v in self.chain.get(box, [box]):
                for u in self.graph.nodes[v].get("inputs", ()):
                    if u not in self.graph:
                        continue
                    t = self.box(u)
                    if t is None or t == box or (t, box) in seen:
                        continue
                    seen.add((t, box))
                    via = self._leaves(u, box) if self.twin(u) != u else None
                    out.append((t, box, via, u if (via or u != self.last(t)) else None))
        return out

    def _leaves(self, u, box) -> str | None:
        """The outermost folded repeat holding ``u`` but not ``box``."""
        inside = set(self.graph.nodes[box].get("groups", ()))
        for gid in self.graph.nodes[u].get("groups", ()):
            if gid in self.folded and gid not in inside:
                return gid
        return None

    def params(self, gid: str) -> int:
        return sum(self.graph.nodes[v]["params"] for v in self.members.get(gid, ()))

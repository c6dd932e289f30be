"""Scopes and node names: which variables and labels are visible, and what a node is called.

A ``def`` call and each ``repeat`` pass open a scope; blocks do not.  A label made
inside a repeat gets the pass's suffix (``b`` -> ``b_2``), and inside a def call the
call's name as a prefix (``x`` -> ``block_1_x``).  Unlabelled nodes get ``OP_N``,
skipping every name a label uses anywhere in the spec.
"""

from __future__ import annotations

from typing import Any

from ..errors import Span
from ..ir import Graph
from .diagnostics import Reporter, suggest


class Scope:
    __slots__ = ("vars", "labels", "parent", "prefix", "suffix")

    def __init__(self, parent: Scope | None = None, prefix: str | None = None, suffix: str = ""):
        self.vars: dict[str, Any] = {}
        self.labels: dict[str, str] = {}
        self.parent, self.prefix, self.suffix = parent, prefix, suffix

    def node_name(self, label: str) -> str:
        suffixes = []
        s: Scope | None = self
        while s is not None:
            if s.prefix is not None:
                return f"{s.prefix}_{label}" + "".join(reversed(suffixes))
            suffixes.append(s.suffix)
            s = s.parent
        return label + "".join(reversed(suffixes))

    def find(self, attr: str, name: str):
        s: Scope | None = self
        while s is not None:
            table = getattr(s, attr)
            if name in table:
                return table[name]
            s = s.parent
        return None

    def visible(self, attr: str) -> set:
        out: set = set()
        s: Scope | None = self
        while s is not None:
            out.update(getattr(s, attr))
            s = s.parent
        return out


class CallScope(Scope):
    """The outer scope of a def body: the caller's labels are visible, its variables
    are not (only the top-level ``let`` s are)."""

    __slots__ = ()

    def __init__(self, caller: Scope):
        super().__init__()
        top = caller
        while top.parent is not None:
            top = top.parent
        self.labels = _ChainLabels(caller)  # type: ignore[assignment]
        self.vars = top.vars


class _ChainLabels(dict):
    def __init__(self, scope: Scope):
        super().__init__()
        self.scope = scope

    def __contains__(self, key) -> bool:
        return self.scope.find("labels", key) is not None

    def __getitem__(self, key):
        return self.scope.find("labels", key)

    def __iter__(self):
        return iter(self.scope.visible("labels"))


class Namer:
    """Makes graph nodes with their names, and resolves names written in `from`/`add`/`concat`."""

    def __init__(self, graph: Graph, reporter: Reporter, reserved: set[str]):
        self.graph = graph
        self.report = reporter
        self.reserved = reserved  # every label written anywhere: automatic names skip them
        self.counters: dict[str, int] = {}
        self.aliases: dict[str, str] = {}  # labels on def calls, which name no node of their own

    def auto(self, op: str) -> str:
        n = self.counters.get(op, 0)
        while True:
            n += 1
            name = f"{op}_{n}"
            if name not in self.reserved and name not in self.graph:
                self.counters[op] = n
                return name

    def taken(self, name: str) -> bool:
        return name in self.graph or name in self.aliases

    def label(self, label: str, scope: Scope, span: Span, op: str) -> str:
        """The node name for a labelled node; a clash is reported and the node gets an automatic name."""
        name = scope.node_name(label)
        if self.taken(name):
            prev = self.graph.nodes[name]["span"] if name in self.graph else None
            self.report.error(
                "E107",
                f"the name `{name}` is already used",
                span,
                notes=[f"`{name}` was defined at line {prev.line}"] if prev else (),
            )
            name = self.auto(op)
        scope.labels[label] = name
        return name

    def resolve(self, word, scope: Scope) -> str | None:
        """The node a name written by the user refers to, or None (reported)."""
        name = word.text
        found = scope.find("labels", name)
        if found is not None:
            return found
        if name in self.graph:
            return name
        if name in self.aliases:
            return self.aliases[name]
        hint = None
        if not self.report.reported_at(word.span):  # met in an earlier pass: the search would repeat itself
            hint = self._hint(name, scope)
        self.report.error("E108", f"no layer named `{name}`", word.span, hint=hint)
        return None

    def _hint(self, name: str, scope: Scope) -> str | None:
        choices = scope.visible("labels") | set(self.graph.nodes) | set(self.aliases)
        hint = suggest(name, choices)
        if hint is None:
            made = sorted(n for n in choices if n.startswith(f"{name}_") or n.endswith(f"_{name}"))
            if made:
                listed = ", ".join(f"`{n}`" for n in made[:3]) + (", ..." if len(made) > 3 else "")
                hint = f"names made inside `repeat` and `def` get the pass or call in their name: {listed}"
            elif name in self.reserved:
                hint = "names must be defined before they are used"
        return hint

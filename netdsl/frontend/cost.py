"""Cost limits: how much work an expansion may do, and what a body will cost before it runs.

A `repeat` or a def call is costed *before* it is expanded, so
`repeat 100000 { repeat 100000 { relu } }` fails at once instead of after minutes.
Work is counted in statements, arguments (a merge listing 200,000 names costs
200,001) and arithmetic steps.  Costing is iterative over the def call graph, so a
chain of thousands of defs costs no Python recursion.
"""

from __future__ import annotations

from ..errors import Span
from . import syntax as s
from .diagnostics import Reporter

MAX_NODES = 100_000
MAX_STEPS = 1_000_000
MAX_DEPTH = 64  # blocks, repeat passes and def calls open inside each other while expanding


class Budget:
    """The work done so far, against the limits; a limit hit is a located E004."""

    def __init__(self, reporter: Reporter, graph):
        self.report = reporter
        self.graph = graph
        self.steps = 0
        self.depth = 0
        self.multiplied = False  # a repeat or a def call has run: the hint can blame them

    @property
    def hint(self) -> str:
        if self.multiplied:
            return "lower the `repeat` counts, or call fewer nested defs"
        return "the spec itself is this large (no `repeat` or def call multiplies it): make it smaller"

    def work(self, n: int, span: Span, what: str = "statements") -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            self.report.fatal(
                "E004",
                f"the program expands to more than {MAX_STEPS:,} {what}",
                span,
                hint=self.hint,
            )

    def node(self, span: Span) -> None:
        if len(self.graph) > MAX_NODES:  # the input node is not a layer
            self.report.fatal("E004", f"the program expands to more than {MAX_NODES:,} layers", span, hint=self.hint)

    def reserve(self, steps: int, nodes: int, span: Span) -> None:
        """Refuse an expansion that would pass the limits, before doing any of it."""
        self.multiplied = True
        hint = self.hint
        if len(self.graph) - 1 + nodes > MAX_NODES:
            self.report.fatal("E004", f"the program expands to more than {MAX_NODES:,} layers", span, hint=hint)
        if self.steps + steps > MAX_STEPS:
            self.report.fatal("E004", f"the program expands to more than {MAX_STEPS:,} statements", span, hint=hint)

    def enter(self, span: Span) -> None:
        """One level deeper (a block, a repeat pass, a call).  Expansion recurses once per
        level, so the depth is bounded here with a located error, never by Python."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.report.fatal(
                "E004",
                f"blocks, repeats and def calls are nested more than {MAX_DEPTH} deep",
                span,
                hint="a chain of defs each calling the next is this deep; flatten it, or use `repeat`",
            )

    def leave(self) -> None:
        self.depth -= 1


class Costs:
    """A lower bound on (work, layers) that running a body once costs; saturates above the limits."""

    def __init__(self, defs: dict, is_layer):
        self.defs = defs  # name -> syntax.Def
        self.is_layer = is_layer  # name -> bool (a layer word, so a `conv (2*c)x3` call is a layer)
        self.of_def: dict[str, tuple[int, int]] = {}
        self._costing = False  # inside call(): a def not costed yet is on the path (recursive)

    def body(self, body: s.Body) -> tuple[int, int]:
        steps = nodes = 0
        for st in body.stmts:
            steps += s.work(st)
            if isinstance(st, s.Labeled):
                st = st.inner
            match st:
                case s.Layer(name=name) if name.text.lower() != "identity":
                    nodes += 1
                case s.Merge():
                    nodes += 1
                case s.Residual(body=b):
                    a, n = self.body(b)
                    steps, nodes = steps + a, nodes + n + 1
                case s.Parallel(paths=paths):
                    nodes += 1
                    for b in paths:
                        a, n = self.body(b)
                        steps, nodes = steps + a, nodes + n
                case s.Repeat(count=count, body=b):
                    times = count.value if isinstance(count, s.Num) else 1
                    times = times if isinstance(times, int) and times > 0 else 1
                    a, n = self.body(b)
                    steps, nodes = steps + times * a, nodes + times * n
                case s.Call(name=name):
                    if name.text in self.defs:
                        a, n = self.of_def.get(name.text) or ((0, 0) if self._costing else self.call(name.text))
                        steps, nodes = steps + a, nodes + n
                    elif self.is_layer(name.text):
                        nodes += 1
            steps, nodes = min(steps, MAX_STEPS + 1), min(nodes, MAX_NODES + 1)
        return steps, nodes

    def call(self, name: str) -> tuple[int, int]:
        """The cost of one call of def ``name``: its callees first, without recursion (a def
        on the current path is a recursive call, an error of its own, and costs nothing here)."""
        if name in self.of_def:
            return self.of_def[name]
        todo: list[tuple[str, bool]] = [(name, False)]
        path: set[str] = set()
        self._costing = True
        try:
            while todo:
                d, done = todo.pop()
                if done:  # its callees are costed by now, or on the path
                    path.discard(d)
                    self.of_def[d] = self.body(self.defs[d].body)
                    continue
                if d in self.of_def or d in path:
                    continue
                path.add(d)
                todo.append((d, True))
                todo.extend((c, False) for c in _callees(self.defs[d].body) if c in self.defs and c not in self.of_def)
        finally:
            self._costing = False
        return self.of_def[name]


def _callees(body: s.Body):
    for st in body.stmts:
        if isinstance(st, s.Labeled):
            st = st.inner
        match st:
            case s.Call(name=name):
                yield name.text
            case s.Residual(body=b) | s.Repeat(body=b):
                yield from _callees(b)
            case s.Parallel(paths=paths):
                for b in paths:
                    yield from _callees(b)

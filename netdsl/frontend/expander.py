"""Syntax tree -> IR graph: statements and layers.

The expander walks the typed tree (:mod:`netdsl.frontend.syntax`) with ``match``,
keeps the *current output* (``cursor``) and makes graph nodes.  Blocks and repeats
are in :mod:`.blocks`, defs and calls in :mod:`.calls`, values in :mod:`.expr`,
names in :mod:`.scope`, limits in :mod:`.cost`, `train`/`data` in :mod:`.recipe`.
No shape logic lives here (that is :mod:`netdsl.infer`).
"""

from __future__ import annotations

import re
from typing import Any

from .. import ops, ops_layers
from ..errors import Source, Span
from ..ir import Graph, context
from . import blocks, calls, layers
from . import syntax as s
from .cost import Budget, Costs
from .diagnostics import Reporter, suggest
from .expr import MISSING, Evaluator
from .recipe_stmt import Recipe
from .scope import Namer, Scope

_GLUED = re.compile(r"([A-Za-z_]\w*?|[0-9]+)x([0-9]+|[A-Za-z_]\w*)")


class Expander:
    def __init__(self, source: Source, params: dict[str, Any], input_shape: tuple | None = None):
        self.source = source
        self.input_override = input_shape
        self.graph = Graph()
        self.groups: list[str] = []  # the enclosing blocks, outermost first
        self.report = Reporter(lambda: context(self.graph, tuple(self.groups)))
        self.budget = Budget(self.report, self.graph)
        self.values = Evaluator(self.report, self.budget, dict(params))
        self.recipe = Recipe(self.report)
        self.defs: dict[str, s.Def] = {}
        self.instances: dict[str, int] = {}  # def name -> calls numbered so far
        self.call_stack: list[str] = []
        self.costs = Costs(self.defs, lambda name: ops.lookup(name) is not None)
        self.namer = Namer(self.graph, self.report, set())
        self.seen_layer = False

    # -- the program ------------------------------------------------------------------

    def run(self, program: s.Program) -> None:
        """Expand ``program`` into ``self.graph``; errors go to ``self.report`` (which may raise Stop)."""
        self.namer.reserved.update(st.label.text for st in s.walk(program.stmts) if isinstance(st, s.Labeled))
        scope = Scope()
        first_input = None
        for st in program.stmts:  # defs are hoisted; `input` is read first, so the input node exists
            if isinstance(st, s.Def):
                calls.define(self, st)
            elif isinstance(st, s.Input):
                if first_input is not None:
                    notes = [f"the first is at line {first_input.span.line}"]
                    self.report.error("E114", "a second `input` statement", st.span, notes=notes)
                else:
                    first_input = st
        shape = self._input_shape(first_input, scope)
        given = self.input_override is None and first_input is not None
        self.graph.add_input(shape, first_input.span if given else None)
        self.graph.graph["input_from"] = (
            "override" if self.input_override is not None else "spec" if given else "default"
        )
        cursor = "input"
        for st in program.stmts:
            cursor = self.stmt(st, scope, cursor, top=True)
        self.graph.output = cursor
        for d in self.defs.values():
            if d.name.text not in self.instances:  # never expanded: at least its words must be real
                calls.check_words(self, d.body)
        self._unused_params(program)

    def _input_shape(self, st: s.Input | None, scope: Scope) -> tuple:
        if self.input_override is not None:
            return tuple(self.input_override)
        if st is None:
            return (28, 28, 1)
        usage = "input takes one size: HxWxC (channels last), LxC (a sequence) or N"
        if any(isinstance(a, s.Keyword) for a in st.args):  # `input shape=...`: no keywords here
            self.report.error("E103", usage, st.span, hint="e.g. `input 28x28x1`")
            return (28, 28, 1)
        pos = [layers.positional(self, a, scope, None) for a in st.args]
        if None in pos:  # already reported
            return (28, 28, 1)
        if len(pos) != 1 or pos[0].kind != "size" or pos[0].stride is not None:
            self.report.error("E103", usage, st.span, hint="e.g. `input 28x28x1`")
            return (28, 28, 1)
        try:
            return ops_layers.input_dims("input", pos[0].value)
        except ops.ArgError as e:
            self.report.error("E103", e.message.replace("input must be", "input sizes must be"), st.args[0].span)
            return (28, 28, 1)

    def _unused_params(self, program: s.Program) -> None:
        unused = sorted(set(self.values.params) - self.values.used_params)
        if not unused:
            return
        free = sorted({n for n in s.names(program.stmts) if n.lower() not in ops.WORDS})
        lets = {st.name.text for st in s.walk(program.stmts) if isinstance(st, s.Let)}
        for name in unused:  # through the reporter: 20,000 unused `-D`s stop at its limit
            if name in free:
                hint = f"`{name}` appears only in code that never runs (a def that is not called)"
            else:
                hint = suggest(name, free)
            if name in lets:
                msg = f"`{name}` is set with `let` in the spec; it cannot be bound from outside"
            else:
                msg = f"parameter `{name}` is not used by the spec"
            self.report.error("E106", msg, None, hint=hint)

    # -- statements ------------------------------------------------------------------------

    def body(self, body: s.Body, scope: Scope, cursor: str | None) -> str | None:
        for st in body.stmts:
            cursor = self.stmt(st, scope, cursor)
        return cursor

    def stmt(self, st, scope: Scope, cursor: str | None, top: bool = False) -> str | None:
        self.budget.work(s.width(st), st.span)
        match st:
            case s.Layer():
                return layers.layer(self, st.name, st.args, scope, cursor)
            case s.Call():
                return calls.call(self, st, scope, cursor)
            case s.Labeled():
                return self._labeled(st, scope, cursor)
            case s.From(target=target):
                name = self.namer.resolve(target, scope)
                return name if name is not None else cursor
            case s.Merge():
                return self.merge(st, scope, cursor)
            case s.Residual():
                return blocks.residual(self, st, scope, cursor)
            case s.Parallel():
                return blocks.parallel(self, st, scope, cursor)
            case s.Repeat():
                return blocks.repeat(self, st, scope, cursor)
            case s.Let(name=name, value=expr):
                value = self.values.eval(expr, scope)
                if value is not None:
                    scope.vars[name.text] = value
                return cursor
        keyword = st.keyword  # input, def, train, data: top level only
        if not top:
            self.report.error(
                "E114", f"`{keyword.text.lower()}` is only allowed at the top level of a spec", keyword.span
            )
            return cursor
        match st:
            case s.Input() if self.seen_layer:
                self.report.error("E114", "`input` must come before the first layer", st.span)
            case s.Train():
                self.recipe.train(st, lambda e, rule: self.values.value(e, scope, rule), MISSING)
            case s.Data():
                self.recipe.data(st)
        return cursor

    def _labeled(self, st: s.Labeled, scope: Scope, cursor):
        label, inner = st.label.text, st.inner
        match inner:
            case s.Layer():
                return layers.layer(self, inner.name, inner.args, scope, cursor, label, st.label.span)
            case s.Merge():
                return self.merge(inner, scope, cursor, label, st.label.span)
            case s.Residual():
                return blocks.residual(self, inner, scope, cursor, label, st.label.span)
            case s.Parallel():
                return blocks.parallel(self, inner, scope, cursor, label, st.label.span)
        if calls.is_layer_form(self, inner):  # `b: conv (2*c)x3`
            return layers.layer(self, inner.name, inner.shorthand, scope, cursor, label, st.label.span)
        out = self.stmt(inner, scope, cursor)  # a def call: the label names its output
        full = scope.node_name(label)
        if out is not None:
            if label in scope.labels or self.namer.taken(full):
                self.report.error("E107", f"the name `{full}` is already used", st.label.span)
            scope.labels[label] = out
            self.namer.aliases[full] = out  # `b: block(8)` inside `repeat` is `b_2` afterwards
        return out

    def merge(self, st: s.Merge, scope: Scope, cursor, label=None, label_span=None):
        inputs = [cursor]
        for word in st.names:
            n = self.namer.resolve(word, scope)
            if n is None:
                return cursor
            inputs.append(n)
        self.seen_layer = True
        return self.node(st.kind.text.lower(), {}, st.kind.span, inputs, label, scope, label_span)

    # -- nodes ----------------------------------------------------------------------------------

    def broken(self, op: str, span: Span, cursor, label, scope: Scope, why: str) -> str | None:
        """A node that failed: kept in the graph (the drawing shows it), no shape."""
        return self.node(op, None, span, [cursor], label, scope, None, error=why)

    def node(self, op, args, span: Span, inputs: list, label, scope: Scope, label_span=None, error=None) -> str:
        self.budget.node(span)
        name = self.namer.label(label, scope, label_span or span, op) if label is not None else self.namer.auto(op)
        self.graph.add_layer(name, op, args, span, inputs, tuple(self.groups), error=error, named=label is not None)
        return name

    def snippet(self, span: Span) -> str:
        """The source text under ``span`` (its first line)."""
        line = self.source.line(span.line)
        end = span.end_column - 1 if span.end_line == span.line else len(line)
        return line[span.column - 1 : end]

    def group(self, kind: str, label: str, span: Span, **extra) -> str:
        gid = f"g{len(self.graph.groups) + 1}"
        parent = self.groups[-1] if self.groups else None
        self.graph.groups[gid] = {"kind": kind, "label": label, "span": span, "parent": parent, **extra}
        return gid

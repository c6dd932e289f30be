"""Lark tree → IR: the expansion of ``def``/``repeat``/blocks into a
:mod:`networkx` graph of layer nodes.

No shape logic lives here (that is :mod:`netdsl.infer`); this module resolves
names, variables and arguments, so every node leaves it with its op, its full
argument dict and its source span.
"""

from __future__ import annotations

from typing import Any

from . import ops, settings
from .errors import NetdslError, Source, Span, did_you_mean
from .ir import Graph, context
from .parser import PYTHON_HINT, looks_like_python

MAX_NODES = 100_000
MAX_REPEAT = 100_000
MAX_STEPS = 1_000_000  # statements executed while expanding repeat/def
MAX_ERRORS = 20
MAX_NUMBER = 2**63

STATEMENT_WORDS = ("input", "from", "add", "concat", "residual", "repeat", "let", "def", "train", "data", "identity")


class _Fatal(Exception):
    """Stop expanding: a limit was hit, or too many errors."""


class _Scope:
    """Variables and labels visible at one point of the expansion.

    A ``def`` call and each ``repeat`` iteration open a scope; blocks do not.
    Labels made inside a repeat get the iteration's suffix (``b`` → ``b_2``), and
    inside a def call the call's name as a prefix (``x`` → ``block_1_x``).
    """

    __slots__ = ("vars", "labels", "parent", "prefix", "suffix", "defined")

    def __init__(self, parent: _Scope | None = None, prefix: str | None = None, suffix: str = ""):
        self.vars: dict[str, Any] = {}
        self.defined: dict[str, Span] = {}
        self.labels: dict[str, str] = {}
        self.parent, self.prefix, self.suffix = parent, prefix, suffix

    def node_name(self, label: str) -> str:
        suffixes = []
        s: _Scope | None = self
        while s is not None:
            if s.prefix is not None:
                return f"{s.prefix}_{label}" + "".join(reversed(suffixes))
            suffixes.append(s.suffix)
            s = s.parent
        return label + "".join(reversed(suffixes))

    def find(self, attr: str, name: str):
        s: _Scope | None = self
        while s is not None:
            table = getattr(s, attr)
            if name in table:
                return table[name]
            s = s.parent
        return None

    def visible(self, attr: str) -> set:
        out: set = set()
        s: _Scope | None = self
        while s is not None:
            out.update(getattr(s, attr))
            s = s.parent
        return out


class _Def:
    __slots__ = ("name", "params", "body", "span", "calls")

    def __init__(self, name, params, body, span):
        self.name, self.params, self.body, self.span = name, params, body, span
        self.calls = 0


class Expander:
    """Walks the parse tree, expanding it into ``self.graph``; collects errors."""

    def __init__(self, source: Source, params: dict[str, Any], input_shape: tuple | None = None):
        self.source = source
        self.params = dict(params)
        self.used_params: set[str] = set()
        self.input_override = input_shape
        self.graph = Graph()
        self.errors: list[NetdslError] = []
        self.defs: dict[str, _Def] = {}
        self.counters: dict[str, int] = {}
        self.reserved: set[str] = set()
        self.aliases: dict[str, str] = {}  # labels on def calls, which name no node of their own
        self.groups: list[str] = []
        self.call_stack: list[str] = []
        self.steps = 0
        self.train: dict[str, Any] = {}
        self.train_span: Span | None = None
        self.seen_layer = False
        self._seen: set = set()
        self._costs: dict[str, tuple[int, int]] = {}

    # -- errors -------------------------------------------------------------------

    def error(self, code: str, message: str, span: Span | None, hint: str | None = None, notes=()) -> None:
        if (code, message, span) in self._seen:  # the same mistake met again in a repeat or call
            return
        self._seen.add((code, message, span))
        notes = list(notes) + context(self.graph, tuple(self.groups))
        self.errors.append(NetdslError(code, message, span, hint=hint, notes=notes))
        if len(self.errors) >= MAX_ERRORS:
            raise _Fatal

    def fatal(self, code: str, message: str, span: Span | None, hint: str | None = None) -> None:
        notes = context(self.graph, tuple(self.groups))
        self.errors.append(NetdslError(code, message, span, hint=hint, notes=notes))
        raise _Fatal

    # -- entry ----------------------------------------------------------------------

    def run(self, tree) -> None:
        stmts = tree.children
        self._collect_labels(tree)
        scope = _Scope()
        # hoist top-level defs (a def may be called before it is written), and read
        # `input` first so the input node exists before any layer
        input_stmt = None
        for st in stmts:
            if st.data == "def_stmt":
                self._define(st)
            elif st.data == "input_stmt":
                if input_stmt is not None:
                    self.error(
                        "E114",
                        "a second `input` statement",
                        Span.of(st),
                        notes=[f"the first is at line {Span.of(input_stmt).line}"],
                    )
                else:
                    input_stmt = st
        shape = self._input_shape(input_stmt, scope)
        given = self.input_override is None and input_stmt is not None
        self.graph.add_input(shape, Span.of(input_stmt) if given else None)
        self.graph.graph["input_from"] = (
            "override" if self.input_override is not None else "spec" if given else "default"
        )
        cursor = "input"
        try:
            for st in stmts:
                cursor = self._stmt(st, scope, cursor, top=True)
        except _Fatal:
            return
        self.graph.output = cursor
        for d in self.defs.values():
            if d.calls == 0:  # never expanded: at least its words must be real
                self._check_words(d.body)
        for name in sorted(set(self.params) - self.used_params):
            free = self._free_names(tree)
            if name in free:
                hint = f"`{name}` appears only in code that never runs (a def that is not called)"
            else:
                hint = did_you_mean(name, free)
            if name in {c.children[1].value for c in tree.find_data("let_stmt")}:
                msg = f"`{name}` is set with `let` in the spec; it cannot be bound from outside"
            else:
                msg = f"parameter `{name}` is not used by the spec"
            self.errors.append(NetdslError("E106", msg, None, hint=hint))

    def _check_words(self, body) -> None:
        """Unknown layer and def names in a body that never runs (an uncalled def)."""
        for t in body.iter_subtrees_topdown():
            if t.data == "layer":
                tok = t.children[0]
                if ops.lookup(tok.value) is None and tok.value.lower() != "identity":
                    choices = list(ops.OPS) + list(self.defs) + list(STATEMENT_WORDS)
                    self.error(
                        "E101", f"unknown layer `{tok.value}`", Span.of(tok), hint=did_you_mean(tok.value, choices)
                    )
            elif t.data == "call" and t.children[0].value not in self.defs:
                tok = t.children[0]
                self.error("E101", f"unknown def `{tok.value}`", Span.of(tok), hint=did_you_mean(tok.value, self.defs))

    def _collect_labels(self, tree) -> None:
        for t in tree.find_data("labeled"):
            self.reserved.add(t.children[0].value)

    def _free_names(self, tree) -> list[str]:
        names = {t.children[0].value for t in tree.find_data("var")}
        for layer in tree.find_data("layer"):  # `dense width` uses a name in shorthand
            names.update(a.value for a in layer.children[1:] if getattr(a, "type", None) == "NAME")
        return sorted(n for n in names if n.lower() not in ops.WORDS)

    def _input_shape(self, st, scope) -> tuple:
        if self.input_override is not None:
            return tuple(self.input_override)
        if st is None:
            return (28, 28, 1)
        if any(not hasattr(a, "type") for a in st.children[1:]):  # `input shape=...`: no keywords here
            self.error(
                "E103", "input takes one size: HxWxC (channels last) or N", Span.of(st), hint="e.g. `input 28x28x1`"
            )
            return (28, 28, 1)
        pos = [self._positional(a, scope, None) for a in st.children[1:]]
        if None in pos:  # already reported
            return (28, 28, 1)
        if len(pos) != 1 or pos[0].kind != "size" or pos[0].stride is not None:
            self.error(
                "E103", "input takes one size: HxWxC (channels last) or N", Span.of(st), hint="e.g. `input 28x28x1`"
            )
            return (28, 28, 1)
        try:
            return ops.dims("input", pos[0].value)
        except ops.ArgError as e:
            self.error("E103", e.message.replace("input must be", "input sizes must be"), Span.of(st.children[1]))
            return (28, 28, 1)

    # -- statements --------------------------------------------------------------------

    def _stmt(self, st, scope: _Scope, cursor: str | None, top: bool = False) -> str | None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.fatal(
                "E004",
                f"the program expands to more than {MAX_STEPS:,} statements",
                Span.of(st),
                hint="lower the `repeat` counts",
            )
        kind = st.data
        if kind == "layer":
            return self._layer(st, scope, cursor)
        if kind == "call":
            return self._call(st, scope, cursor)
        if kind == "labeled":
            return self._labeled(st, scope, cursor)
        if kind == "from_stmt":
            name = self._resolve_node(st.children[1], scope)
            return name if name is not None else cursor
        if kind == "merge":
            return self._merge_names(st, scope, cursor)
        if kind == "residual":
            return self._residual(st, scope, cursor)
        if kind == "parallel":
            return self._parallel(st, scope, cursor)
        if kind == "repeat":
            return self._repeat(st, scope, cursor)
        if kind == "let_stmt":
            name = st.children[1].value
            value = self._eval(st.children[2], scope)
            if value is not None:
                scope.vars[name] = value
                scope.defined[name] = Span.of(st.children[1])
            return cursor
        word = st.children[0].value.lower()
        if not top:
            self.error("E114", f"`{word}` is only allowed at the top level of a spec", Span.of(st.children[0]))
            return cursor
        if kind == "def_stmt" or kind == "input_stmt":
            if kind == "input_stmt" and self.seen_layer:
                self.error("E114", "`input` must come before the first layer", Span.of(st))
            return cursor
        if kind == "train_stmt":
            self._train(st, scope)
        elif kind == "data_stmt":
            self._data(st)
        return cursor

    def _stmts(self, body, scope: _Scope, cursor: str | None) -> str | None:
        for st in body.children:
            cursor = self._stmt(st, scope, cursor)
        return cursor

    # -- layers -------------------------------------------------------------------------

    def _positional(self, tok, scope: _Scope, op: ops.Op | None) -> ops.Pos | None:
        t = tok.type
        if t == "SIZE_STRIDE":
            size, stride = tok.value.split("/")
            return ops.Pos("size", tuple(int(x) for x in size.split("x")), int(stride))
        if t == "SIZE":
            return ops.Pos("size", tuple(int(x) for x in tok.value.split("x")))
        if t == "NUMBER":
            return ops.Pos("size", (_number(tok.value),))
        # a word: an activation/padding, else a variable holding a number or a word
        low = tok.value.lower()
        if low in ops.WORDS:
            return ops.Pos("word", tok.value)
        value = self._lookup_var(tok.value, scope)
        if value is _MISSING:
            hint = None
            if op is not None:
                choices = (ops.ACTIVATIONS if "activation" in op.args else ()) + (
                    ops.PADDINGS if "padding" in op.args else ()
                )
                hint = did_you_mean(tok.value, list(choices) + sorted(scope.visible("vars") | set(self.params)))
            self.error(
                "E105",
                f"`{tok.value}` is not an argument of {op.name}, nor a defined name"
                if op
                else f"`{tok.value}` is not defined",
                Span.of(tok),
                hint=hint or _bind_hint(tok.value),
            )
            return None
        if isinstance(value, str):
            return ops.Pos("word", value)
        return ops.Pos("size", (value,)) if not isinstance(value, tuple) else ops.Pos("size", value)

    def _layer(self, st, scope: _Scope, cursor: str | None, label: str | None = None, label_span=None) -> str | None:
        name_tok = st.children[0]
        word = name_tok.value
        span = Span.of(name_tok)  # errors point at the layer's word, like `dense` in E201
        op = ops.lookup(word)
        if word.lower() == "identity":
            if len(st.children) > 1:
                self.error("E109", "identity takes no arguments", Span.of(st.children[1]))
            if label:
                scope.labels[label] = cursor
            return cursor
        if op is None:
            if word in self.defs:
                self.error("E101", f"`{word}` is a def; call it with parentheses: `{word}(...)`", Span.of(name_tok))
            else:
                choices = list(ops.OPS) + list(self.defs) + list(STATEMENT_WORDS)
                hint = did_you_mean(word, choices)
                if hint is None and looks_like_python(self.source.line(name_tok.line)):
                    hint = PYTHON_HINT
                self.error("E101", f"unknown layer `{word}`", Span.of(name_tok), hint=hint)
            return self._broken(word.lower(), span, cursor, label, scope, "unknown layer")
        self.seen_layer = True
        positional, keywords, arg_spans = [], {}, []
        for a in st.children[1:]:
            if hasattr(a, "type"):
                p = self._positional(a, scope, op)
                if p is None:  # one error per statement is enough
                    return self._broken(op.name, span, cursor, label, scope, "bad arguments")
                arg_spans.append(Span.of(a))
                positional.append(p)
            else:
                key = a.children[0].value.lower()
                value = self._value(a.children[1], scope, op.args.get(key, (None,))[0])
                if value is _MISSING:
                    return self._broken(op.name, span, cursor, label, scope, "bad arguments")
                if key in keywords:
                    self.error("E103", f"`{key}` is given twice", Span.of(a))
                    return self._broken(op.name, span, cursor, label, scope, "bad arguments")
                keywords[key] = (value, ("kw", Span.of(a)))
        try:
            args = ops.resolve(op, positional, keywords)
        except ops.ArgError as e:
            where = e.where
            if where is None:
                esp = Span.of(name_tok)
            elif where[0] == "pos":
                esp = arg_spans[where[1]]
            else:
                esp = where[1]
            code = "E102" if "has no argument" in e.message else "E104" if "needs `" in e.message else "E103"
            self.error(code, e.message, esp, hint=e.hint)
            return self._broken(op.name, span, cursor, label, scope, e.message)
        return self._node(op.name, args, span, [cursor], label, scope, label_span)

    def _broken(self, op: str, span: Span, cursor, label, scope, why: str) -> str | None:
        """A node that failed: kept in the graph (the drawing shows it), no shape."""
        return self._node(op, None, span, [cursor], label, scope, None, error=why)

    def _node(
        self,
        op: str,
        args,
        span: Span,
        inputs: list,
        label: str | None,
        scope: _Scope,
        label_span: Span | None = None,
        error: str | None = None,
    ) -> str:
        if len(self.graph) > MAX_NODES:  # the input node is not a layer
            self.fatal(
                "E004", f"the program expands to more than {MAX_NODES:,} layers", span, hint="lower the `repeat` counts"
            )
        if label is not None:
            name = scope.node_name(label)
            if name in self.graph or name in self.aliases:
                prev = self.graph.nodes[name]["span"] if name in self.graph else None
                self.error(
                    "E107",
                    f"the name `{name}` is already used",
                    label_span or span,
                    notes=[f"`{name}` was defined at line {prev.line}"] if prev else (),
                )
                name = self._auto(op)
            scope.labels[label] = name
        else:
            name = self._auto(op)
        self.graph.add_layer(
            name, op, args, span, [i for i in inputs], tuple(self.groups), error=error, named=label is not None
        )
        return name

    def _auto(self, op: str) -> str:
        n = self.counters.get(op, 0)
        while True:
            n += 1
            name = f"{op}_{n}"
            if name not in self.reserved and name not in self.graph:
                self.counters[op] = n
                return name

    def _labeled(self, st, scope: _Scope, cursor):
        label_tok, inner = st.children[0], st.children[1]
        label = label_tok.value
        lspan = Span.of(label_tok)
        if inner.data == "layer":
            return self._layer(inner, scope, cursor, label, lspan)
        if inner.data == "merge":
            return self._merge_names(inner, scope, cursor, label, lspan)
        if inner.data in ("residual", "parallel"):
            return self._block(inner, scope, cursor, label, lspan)
        out = self._stmt(inner, scope, cursor)  # a call: the label names its output
        full = scope.node_name(label)
        if out is not None:
            if label in scope.labels or full in self.graph or full in self.aliases:
                self.error("E107", f"the name `{full}` is already used", lspan)
            scope.labels[label] = out
            self.aliases[full] = out  # `b: block(8)` inside `repeat` is `b_2` afterwards
        return out

    def _resolve_node(self, tok, scope: _Scope) -> str | None:
        name = tok.value
        found = scope.find("labels", name)
        if found is not None:
            return found
        if name in self.graph:
            return name
        if name in self.aliases:
            return self.aliases[name]
        choices = scope.visible("labels") | set(self.graph.nodes) | set(self.aliases)
        hint = did_you_mean(name, choices)
        if hint is None:
            made = sorted(n for n in choices if n.startswith(f"{name}_") or n.endswith(f"_{name}"))
            if made:
                listed = ", ".join(f"`{n}`" for n in made[:3]) + (", ..." if len(made) > 3 else "")
                hint = f"names made inside `repeat` and `def` get the pass or call in their name: {listed}"
            elif name in self.reserved:
                hint = "names must be defined before they are used"
        self.error("E108", f"no layer named `{name}`", Span.of(tok), hint=hint)
        return None

    def _merge_names(self, st, scope, cursor, label=None, label_span=None):
        kind = st.children[0].value.lower()
        inputs = [cursor]
        for tok in st.children[1:]:
            n = self._resolve_node(tok, scope)
            if n is None:
                return cursor
            inputs.append(n)
        self.seen_layer = True
        return self._node(kind, {}, Span.of(st.children[0]), inputs, label, scope, label_span)

    # -- blocks -----------------------------------------------------------------------

    def _group(self, kind: str, label: str, span: Span, **extra) -> str:
        gid = f"g{len(self.graph.groups) + 1}"
        self.graph.groups[gid] = {
            "kind": kind,
            "label": label,
            "span": span,
            "parent": self.groups[-1] if self.groups else None,
            **extra,
        }
        return gid

    def _block(self, st, scope, cursor, label=None, label_span=None):
        return (
            self._residual(st, scope, cursor, label, label_span)
            if st.data == "residual"
            else self._parallel(st, scope, cursor, label, label_span)
        )

    def _residual(self, st, scope, cursor, label=None, label_span=None):
        body = st.children[1]
        span = Span.of(st.children[0])
        if not body.children:
            self.error("E109", "empty `residual { }` block", span, hint="put the layers of the residual branch inside")
            return cursor
        self.seen_layer = True
        self.groups.append(self._group("residual", "residual", Span.of(st)))
        try:
            out = self._stmts(body, scope, cursor)
            name = self._node("add", {}, span, [cursor, out], label, scope, label_span)
            self.graph.nodes[name]["block"] = "residual"  # for the error message
            return name
        finally:
            self.groups.pop()

    def _parallel(self, st, scope, cursor, label=None, label_span=None):
        kind = st.children[0].value.lower()
        span = Span.of(st.children[0])
        paths = st.children[1:]
        if len(paths) < 2:
            self.error(
                "E109",
                f"`{kind} {{ }}` needs at least two paths separated by `|`",
                span,
                hint="a path that passes its input through is written `identity`",
            )
            return cursor
        self.seen_layer = True
        self.groups.append(self._group(kind, kind, Span.of(st), paths=len(paths)))
        try:
            outs = []
            for i, body in enumerate(paths):
                if not body.children:
                    self.error(
                        "E109",
                        f"path {i + 1} of `{kind} {{ }}` is empty",
                        span,
                        hint="write `identity` for a path that passes its input through",
                    )
                    return cursor
                self.groups.append(
                    self._group("path", f"path {i + 1}", Span.of(body) if body.meta.line else span, index=i)
                )
                try:
                    outs.append(self._stmts(body, scope, cursor))
                finally:
                    self.groups.pop()
            return self._node(kind, {}, span, outs, label, scope, label_span)
        finally:
            self.groups.pop()

    def _repeat(self, st, scope, cursor):
        span = Span.of(st.children[0])
        count = self._eval(st.children[1], scope)
        body = st.children[2]
        if count is None:
            return cursor
        if not ops._is_int(count) or count < 1:
            self.error(
                "E113", f"repeat needs a whole number of at least 1, got {ops._show(count)}", Span.of(st.children[1])
            )
            return cursor
        count = int(count)
        if count > MAX_REPEAT:
            self.fatal("E113", f"repeat {count:,} is more than the limit of {MAX_REPEAT:,}", Span.of(st.children[1]))
        if not body.children:
            self.error("E109", "empty `repeat { }` block", span)
            return cursor
        # refuse a runaway expansion before doing it, not after minutes of work
        steps, nodes = self._cost(body, tuple(self.call_stack))
        self._budget(count * steps, count * nodes, span)
        gid = self._group("repeat", f"\u00d7{count}", Span.of(st), count=count)
        self.groups.append(gid)
        try:
            for i in range(1, count + 1):
                self.groups.append(self._group("iteration", f"{i}", Span.of(st), index=i, repeat=gid))
                try:
                    cursor = self._stmts(body, _Scope(scope, suffix=f"_{i}"), cursor)
                finally:
                    self.groups.pop()
        finally:
            self.groups.pop()
        return cursor

    def _cost(self, body, stack: tuple) -> tuple[int, int]:
        """A lower bound on (statements, layers) that running ``body`` once costs.

        Saturates just above the limits, and is memoised per def, so costing a chain
        of defs that each call the previous one twice stays linear.
        """
        steps = nodes = 0
        for st in body.children:
            steps += 1
            kind = st.data
            if kind == "labeled":
                st = st.children[1]
                kind = st.data
            if kind == "layer" and st.children[0].value.lower() != "identity" or kind == "merge":
                nodes += 1
            elif kind in ("residual", "parallel"):
                nodes += 1
                for b in st.children[1:]:
                    s, n = self._cost(b, stack)
                    steps, nodes = steps + s, nodes + n
            elif kind == "repeat":
                c = st.children[1]
                times = _number(c.children[0].value) if c.data == "number" else 1
                times = int(times) if isinstance(times, int) and times > 0 else 1
                s, n = self._cost(st.children[2], stack)
                steps, nodes = steps + times * s, nodes + times * n
            elif kind == "call":
                name = st.children[0].value
                if name in self.defs and name not in stack:
                    s, n = self._def_cost(name, stack)
                    steps, nodes = steps + s, nodes + n
            steps, nodes = min(steps, MAX_STEPS + 1), min(nodes, MAX_NODES + 1)
        return steps, nodes

    def _def_cost(self, name: str, stack: tuple) -> tuple[int, int]:
        if name not in self._costs:
            self._costs[name] = self._cost(self.defs[name].body, stack + (name,))
        return self._costs[name]

    def _budget(self, steps: int, nodes: int, span: Span) -> None:
        """Refuse an expansion that would pass the limits, before doing any of it."""
        if len(self.graph) - 1 + nodes > MAX_NODES:
            self.fatal(
                "E004",
                f"the program expands to more than {MAX_NODES:,} layers",
                span,
                hint="lower the `repeat` counts, or call fewer nested defs",
            )
        if self.steps + steps > MAX_STEPS:
            self.fatal(
                "E004",
                f"the program expands to more than {MAX_STEPS:,} statements",
                span,
                hint="lower the `repeat` counts, or call fewer nested defs",
            )

    # -- def and calls -------------------------------------------------------------

    def _define(self, st) -> None:
        name_tok = st.children[1]
        name = name_tok.value
        params, body = [], st.children[-1]
        seen = set()
        for p in st.children[2:-1]:
            pname = p.children[0].value
            if pname in seen:
                self.error("E111", f"parameter `{pname}` appears twice in def {name}", Span.of(p.children[0]))
            seen.add(pname)
            params.append((pname, p.children[1] if len(p.children) > 1 else None, Span.of(p)))
        if name in self.defs:
            self.error(
                "E107",
                f"def `{name}` is defined twice",
                Span.of(name_tok),
                notes=[f"the first definition is at line {self.defs[name].span.line}"],
            )
            return
        if ops.lookup(name) is not None or name.lower() in STATEMENT_WORDS:
            what = "a statement keyword" if name.lower() in STATEMENT_WORDS else "a layer name"
            self.error("E107", f"`{name}` is {what}; a def needs a name of its own", Span.of(name_tok))
            return
        self.defs[name] = _Def(name, params, body, Span.of(name_tok))

    def _call(self, st, scope, cursor):
        name_tok = st.children[0]
        name = name_tok.value
        span = Span.of(st)
        d = self.defs.get(name)
        if d is None:
            if ops.lookup(name) is not None:
                self.error(
                    "E101",
                    f"`{name}` is a layer, not a def: its arguments take no parentheses",
                    Span.of(name_tok),
                    hint=f"usage: {ops.usage(ops.lookup(name).name)}" if ops.usage(ops.lookup(name).name) else None,
                )
            else:
                self.error("E101", f"unknown def `{name}`", Span.of(name_tok), hint=did_you_mean(name, self.defs))
            return cursor
        if name not in self.call_stack:
            self._budget(*self._def_cost(name, tuple(self.call_stack)), span)
        if name in self.call_stack:
            chain = " \u2192 ".join(self.call_stack[self.call_stack.index(name) :] + [name])
            self.fatal(
                "E110",
                f"recursive call: {chain}",
                Span.of(name_tok),
                hint="a def cannot call itself, directly or through another def",
            )
        # bind arguments
        values: dict[str, Any] = {}
        names = [p[0] for p in d.params]
        npos = 0
        ok = True
        for a in st.children[1:]:
            if getattr(a, "data", None) == "kwarg":
                key = a.children[0].value
                if key not in names:
                    self.error(
                        "E111",
                        f"{name}() has no parameter `{key}` (its parameters: {', '.join(names) or 'none'})",
                        Span.of(a.children[0]),
                        hint=did_you_mean(key, names),
                    )
                    ok = False
                    continue
                if key in values:
                    self.error("E111", f"{name}() got `{key}` twice", Span.of(a))
                    ok = False
                    continue
                v = self._value(a.children[1], scope)
            else:
                if npos >= len(names):
                    self.error(
                        "E111",
                        f"{name}() takes {len(names)} argument{'s' * (len(names) != 1)}, got more",
                        Span.of(a),
                        notes=[f"def {name} is at line {d.span.line}"],
                    )
                    ok = False
                    break
                key = names[npos]
                npos += 1
                v = self._value(a, scope)
            if v is _MISSING:
                ok = False
                continue
            values[key] = v
        if not ok:
            return cursor
        glob = _Globals(scope)
        local = _Scope(glob, prefix=self._call_name(name))
        for pname, default, _span in d.params:
            if pname in values:
                local.vars[pname] = values[pname]
            elif default is not None:
                v = self._eval(default, glob)
                if v is None:
                    return cursor
                local.vars[pname] = v
            else:
                self.error(
                    "E111",
                    f"{name}() is missing the argument `{pname}`",
                    span,
                    notes=[f"def {name} is at line {d.span.line}"],
                )
                return cursor
        self.groups.append(self._group("def", name, span, instance=local.prefix, def_line=d.span.line))
        self.call_stack.append(name)
        try:
            return self._stmts(d.body, local, cursor)
        finally:
            self.call_stack.pop()
            self.groups.pop()

    def _call_name(self, name: str) -> str:
        d = self.defs[name]
        while True:
            d.calls += 1
            inst = f"{name}_{d.calls}"
            if inst not in self.reserved and inst not in self.graph:
                return inst

    # -- train and data -------------------------------------------------------------

    def _train(self, st, scope) -> None:
        span = Span.of(st)
        if self.train_span is not None:
            self.error(
                "E115", "a second `train` statement", span, notes=[f"the first is at line {self.train_span.line}"]
            )
            return
        self.train_span = span
        cfg: dict[str, Any] = {}
        for a in st.children[1:]:
            if hasattr(a, "type"):  # the bare optimizer
                cfg["optimizer"] = (a.value, Span.of(a))
                continue
            key = a.children[0].value.lower()
            if key in cfg:
                self.error("E115", f"`{key}` is given twice", Span.of(a))
                continue
            v = self._value(a.children[1], scope, settings.KEYS.get(key) if key in settings.TRAIN_KEYS else None)
            if v is not _MISSING:
                cfg[key] = (v, Span.of(a))
        for key, (value, vspan) in cfg.items():
            result = settings.normalise(key, value) if key in settings.TRAIN_KEYS else settings.unknown(key)
            if isinstance(result, settings.Problem):
                self.error("E115", result.message, vspan, hint=result.hint)
            else:
                self.train[key] = result
        for key, problem in settings.conflicts(self.train):
            self.error("E115", problem.message, cfg[key][1], hint=problem.hint)

    def _data(self, st) -> None:
        name = "-".join(t.value for t in st.children[1:]).lower()
        result = settings.normalise("dataset", name)
        if isinstance(result, settings.Problem):
            where = Span.of(st.children[1]).to(Span.of(st.children[-1]))
            self.error("E115", result.message, where, hint=result.hint)
            return
        if "dataset" in self.train:
            self.error("E115", "a second `data` statement", Span.of(st))
            return
        self.train["dataset"] = result

    # -- values and arithmetic ------------------------------------------------------------

    def _lookup_var(self, name: str, scope: _Scope):
        v = scope.find("vars", name)
        if v is not None:
            return v
        if name in self.params:
            self.used_params.add(name)
            return self.params[name]
        return _MISSING

    def _value(self, node, scope, conv=None):
        """A keyword or call argument: a size (``3x3``) or an expression.

        Where the argument is a choice (``padding=same``), an undefined bare word is
        passed on as a word, so the error lists the choices instead of "not defined".
        """
        if hasattr(node, "type"):  # SIZE token
            return tuple(int(x) for x in node.value.split("x"))
        if getattr(conv, "choices", None) and node.data == "var":
            word = node.children[0].value
            if word.lower() in conv.choices:  # a word wins over a variable, as in shorthand
                return word
            v = self._lookup_var(word, scope)
            return word if v is _MISSING else v
        v = self._eval(node, scope)
        return _MISSING if v is None else v

    def _eval(self, node, scope):
        """Evaluate an expression tree; None after reporting an error.

        Iterative (post-order with an explicit stack): `1+1+...+1` with 100,000
        terms is a tree that deep, and must not exhaust Python's recursion limit.
        """
        stack: list = [(node, False)]
        values: list = []
        while stack:
            self.steps += 1  # arithmetic is work too: `repeat 100000 { let a = 1+1+...+1 }`
            if self.steps > MAX_STEPS:
                self.fatal(
                    "E004",
                    f"the program expands to more than {MAX_STEPS:,} steps of work",
                    Span.of(node),
                    hint="lower the `repeat` counts",
                )
            n, ready = stack.pop()
            kind = n.data
            if kind == "number":
                values.append(_number(n.children[0].value))
            elif kind == "var":
                values.append(self._var(n.children[0], scope))
            elif not ready:
                stack.append((n, True))
                stack.extend((c, False) for c in reversed(n.children))
            elif kind == "neg_op":
                values.append(self._apply(kind, None, values.pop(), n))
            else:
                b = values.pop()
                values.append(self._apply(kind, values.pop(), b, n))
        return values[0]

    def _var(self, tok, scope):
        v = self._lookup_var(tok.value, scope)
        if v is not _MISSING:
            return v
        if tok.value.lower() in ops.WORDS or tok.value.lower() in settings.WORDS:
            return tok.value
        names = sorted(scope.visible("vars") | set(self.params))
        close = did_you_mean(tok.value, names)
        hint = (f"{close} Or " if close else "") + _bind_hint(tok.value)
        self.error("E105", f"`{tok.value}` is not defined", Span.of(tok), hint=hint)
        return None

    def _apply(self, kind: str, a, b, node):
        if b is None or (kind != "neg_op" and a is None):
            return None  # an operand already failed (and was reported)
        for v in (b,) if kind == "neg_op" else (a, b):
            if not _numeric(v):
                what = "negate" if kind == "neg_op" else "do arithmetic with"
                self.error("E112", f"cannot {what} `{v}`", Span.of(node))
                return None
        try:
            if kind == "neg_op":
                r = -b
            elif kind == "add_op":
                r = a + b
            elif kind == "sub_op":
                r = a - b
            elif kind == "mul_op":
                r = a * b
            elif kind == "div_op":
                r = a // b if isinstance(a, int) and isinstance(b, int) and a % b == 0 else a / b
            else:
                r = a // b
        except ZeroDivisionError:
            self.error("E112", "division by zero", Span.of(node))
            return None
        except OverflowError:
            r = float("inf")
        if isinstance(r, float) and (r != r or abs(r) == float("inf")) or abs(r) > MAX_NUMBER:
            self.error("E112", "the result is too large", Span.of(node))
            return None
        return r


class _Globals(_Scope):
    """Inside a def: the caller's labels are visible, its variables are not (except `let`s at the top)."""

    __slots__ = ()

    def __init__(self, caller: _Scope):
        super().__init__()
        top = caller
        while top.parent is not None:
            top = top.parent
        self.labels = _ChainLabels(caller)  # type: ignore[assignment]
        self.vars = top.vars


class _ChainLabels(dict):
    def __init__(self, scope: _Scope):
        super().__init__()
        self.scope = scope

    def __contains__(self, key) -> bool:
        return self.scope.find("labels", key) is not None

    def __getitem__(self, key):
        return self.scope.find("labels", key)

    def __iter__(self):
        return iter(self.scope.visible("labels"))


_MISSING = object()


def _number(text: str):
    if text.isdigit():
        return int(text)
    return float(text)


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bind_hint(name: str) -> str:
    return f"define it with `let {name} = ...`, or bind it: `-D {name}=VALUE` on the command line, `netdsl.parse(text, {name}=VALUE)` in Python"

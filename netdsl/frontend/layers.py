"""Layer statements: the layer word, its shorthand and keyword arguments, and the node.

Shorthand arguments become :class:`netdsl.ops.Pos` values (a size, or a word such as
`relu`); :func:`netdsl.ops.resolve` then checks them against the layer's table entry.
A parametric size (`c x 3/2`) is evaluated here, part by part.
"""

from __future__ import annotations

import re

from .. import ops
from ..parser import PYTHON_HINT, looks_like_python
from . import syntax as s
from .diagnostics import suggest
from .expr import MISSING, Evaluator, bind_hint, numeric
from .scope import Scope

MAX_PARTS = 4  # conv's FxKHxKW is 3; a 4th part still gets the layer's own message
_GLUED = re.compile(r"([A-Za-z_]\w*?|[0-9]+)x([0-9]+|[A-Za-z_]\w*)")


def layer(ex, word: s.Word, args, scope: Scope, cursor, label=None, label_span=None) -> str | None:
    span = word.span  # errors point at the layer's word, like `dense` in E201
    op = ops.lookup(word.text)
    if word.text.lower() == "identity":
        if args:
            ex.report.error("E109", "identity takes no arguments", args[0].span)
        if label:
            scope.labels[label] = cursor
        return cursor
    if op is None:
        _unknown_layer(ex, word)
        return ex.broken(word.text.lower(), span, cursor, label, scope, "unknown layer")
    ex.seen_layer = True
    shorthand, keywords, arg_spans = [], {}, []
    frozen = None
    for a in args:
        if isinstance(a, s.Keyword) and a.key.text.lower() == "frozen":  # any layer: its weights are fixed
            if frozen is not None:
                ex.report.error("E103", "`frozen` is given twice", a.span)
                return ex.broken(op.name, span, cursor, label, scope, "bad arguments")
            value = ex.values.value(a.value, scope, ops.boolean)
            if value is MISSING:
                return ex.broken(op.name, span, cursor, label, scope, "bad arguments")
            try:
                frozen = ops.boolean("frozen", value)
            except ops.ArgError as e:
                ex.report.error("E103", e.message, a.span)
                return ex.broken(op.name, span, cursor, label, scope, e.message)
            continue
        if isinstance(a, s.Keyword):
            key = a.key.text.lower()
            value = ex.values.value(a.value, scope, op.args.get(key, (None,))[0])
            if value is MISSING:
                return ex.broken(op.name, span, cursor, label, scope, "bad arguments")
            if key in keywords:
                ex.report.error("E103", f"`{key}` is given twice", a.span)
                return ex.broken(op.name, span, cursor, label, scope, "bad arguments")
            keywords[key] = (value, ("kw", a.span))
            continue
        p = positional(ex, a, scope, op)
        if p is None:  # one error per statement is enough
            return ex.broken(op.name, span, cursor, label, scope, "bad arguments")
        arg_spans.append(a.span)
        shorthand.append(p)
    try:
        resolved = ops.resolve(op, shorthand, keywords)
    except ops.ArgError as e:
        where = e.where
        esp = span if where is None else arg_spans[where[1]] if where[0] == "pos" else where[1]
        code = "E102" if "has no argument" in e.message else "E104" if "needs `" in e.message else "E103"
        ex.report.error(code, e.message, esp, hint=e.hint)
        return ex.broken(op.name, span, cursor, label, scope, e.message)
    name = ex.node(op.name, resolved, span, [cursor], label, scope, label_span)
    if frozen:
        ex.graph.nodes[name]["frozen"] = True
    return name


def _unknown_layer(ex, word: s.Word) -> None:
    if word.text in ex.defs:
        ex.report.error("E101", f"`{word.text}` is a def; call it with parentheses: `{word.text}(...)`", word.span)
        return
    hint = None
    if not ex.report.reported_at(word.span):
        hint = suggest(word.text, [*ops.OPS, *ex.defs, *s.STATEMENT_WORDS])
        if hint is None and looks_like_python(ex.source.line(word.span.line)):
            hint = PYTHON_HINT
        from ..plugins import FAILED

        if hint is None and FAILED:  # perhaps the layer of a plugin that did not load
            where, why = next(iter(FAILED.items()))
            hint = f"the plugin {where} did not load: {why}"
    ex.report.error("E101", f"unknown layer `{word.text}`", word.span, hint=hint)


def positional(ex, a, scope: Scope, op: ops.Op | None) -> ops.Pos | None:
    """One shorthand argument as an :class:`ops.Pos`, or None (reported)."""
    if isinstance(a, s.Size) and len(a.dims) > MAX_PARTS:  # no layer takes more; don't echo 100,000 of them
        ex.report.error("E103", f"a size with {len(a.dims):,} parts: sizes have at most {MAX_PARTS}", a.span)
        return None
    match a:
        case s.Size(literal=True, dims=dims, stride=stride):
            return ops.Pos("size", tuple(d.value for d in dims), None if stride is None else stride.value)
        case s.Size():
            return _size(ex, a, scope)
        case s.Num(value=v):
            return ops.Pos("size", (v,))
        case s.Name(name=name) if name.lower() in ops.WORDS:  # an activation or padding word
            return ops.Pos("word", name)
        case s.Name(name=name):
            value = ex.values.lookup(name, scope)
            if value is MISSING:
                _undefined(ex, a, scope, op)
                return None
            return _as_pos(value)
    value = ex.values.eval(a, scope)  # `(n+1)`: a parenthesised expression
    return None if value is None else _as_pos(value)


def _size(ex, a: s.Size, scope: Scope) -> ops.Pos | None:
    """`c x 3/2`: each part an expression that must be a number; the layer checks the rest."""
    dims: list = []
    for d in a.dims:
        v = ex.values.eval(d, scope)
        if v is None:
            return None
        if isinstance(v, tuple):  # a def argument bound to a size: `k=3x1` in `c x k`
            dims.extend(v)
            continue
        if not numeric(v):
            ex.report.error("E103", f"a size is made of numbers, got {_word(d, v)}", d.span)
            return None
        dims.append(v)
    stride = None
    if isinstance(a.stride, s.Size):  # `8x3/2x2`: a literal stride per axis
        stride = tuple(d.value for d in a.stride.dims)
    elif a.stride is not None:
        stride = ex.values.eval(a.stride, scope)
        if stride is None:
            return None
        if not numeric(stride) and not isinstance(stride, tuple):
            msg = f"a stride is a number, got {_word(a.stride, stride)}"
            ex.report.error("E103", msg, a.stride.span)
            return None
    return ops.Pos("size", tuple(dims), stride)


def _undefined(ex, a: s.Name, scope: Scope, op: ops.Op | None) -> None:
    hint = None
    if not ex.report.reported_at(a.span):
        hint = _glued_hint(a.name, scope, ex.values) or _x_hint(a.name)
        if hint is None and op is not None:
            choices = (ops.ACTIVATIONS if "activation" in op.args else ()) + (
                ops.PADDINGS if "padding" in op.args else ()
            )
            choices += tuple(
                w for conv, _ in op.args.values() for w in getattr(conv, "choices", ()) if w not in choices
            )
            hint = suggest(a.name, [*choices, *sorted(scope.visible("vars") | set(ex.values.params))])
    what = f"`{a.name}` is not an argument of {op.name}, nor a defined name" if op else f"`{a.name}` is not defined"
    ex.report.error("E105", what, a.span, hint=hint or bind_hint(a.name))


def _as_pos(value) -> ops.Pos:
    if isinstance(value, str):
        return ops.Pos("word", value)
    return ops.Pos("size", value if isinstance(value, tuple) else (value,))


def _word(e, value) -> str:
    if isinstance(e, s.Name) and e.name != value:
        return f"`{e.name}`, which holds the word `{value}`"
    return f"the word `{value}`"


def _glued_hint(name: str, scope: Scope, values: Evaluator) -> str | None:
    """`cx3` is one name to the lexer; the size the user meant needs spaces around `x`."""
    for m in re.finditer("x", name):
        left, right = name[: m.start()], name[m.end() :]
        if not _GLUED.fullmatch(name[: m.end()] + right) or not left or not right:
            continue
        known = [p for p in (left, right) if p.isdigit() or scope.find("vars", p) is not None or p in values.params]
        if len(known) == 2 and not (left.isdigit() and right.isdigit()):
            return f"a size with names is written with spaces around `x`: `{left} x {right}` (`{name}` is one name)"
    return None


def _x_hint(name: str) -> str | None:
    if name == "x":
        return "`x` joins the parts of a size in shorthand, `conv c x 3`: a part is missing on one side"
    if name == "X":
        return "sizes are written with a lowercase x: `conv c x 3`"
    return None

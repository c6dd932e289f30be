"""`def` and calls: hoisting definitions, binding arguments, expanding a body per call.

A call is costed before it runs (its whole call tree, without recursion), and each
call is one level of nesting in the budget, so a chain of thousands of defs ends in
a located E004 rather than in Python's recursion limit.
"""

from __future__ import annotations

from typing import Any

from .. import ops
from . import layers
from . import syntax as s
from .diagnostics import suggest
from .expr import MISSING
from .scope import CallScope, Scope


def define(ex, st: s.Def) -> None:
    name = st.name.text
    seen = set()
    for p in st.params:
        if p.name.text in seen:
            ex.report.error("E111", f"parameter `{p.name.text}` appears twice in def {name}", p.name.span)
        seen.add(p.name.text)
    if name in ex.defs:
        notes = [f"the first definition is at line {ex.defs[name].name.span.line}"]
        ex.report.error("E107", f"def `{name}` is defined twice", st.name.span, notes=notes)
        return
    if ops.lookup(name) is not None or name.lower() in s.STATEMENT_WORDS:
        what = "a statement keyword" if name.lower() in s.STATEMENT_WORDS else "a layer name"
        ex.report.error("E107", f"`{name}` is {what}; a def needs a name of its own", st.name.span)
        return
    ex.defs[name] = st


def is_layer_form(ex, st) -> bool:
    """`conv (2*c)x3/2` and `dense (n+1)` parse as calls; they are layers with a parenthesis first.
    `dense(10)`, glued and with nothing after the `)`, stays the error it always was."""
    return (
        isinstance(st, s.Call)
        and st.name.text not in ex.defs
        and ops.lookup(st.name.text) is not None
        and st.shorthand is not None
        and (not st.glued or bool(st.tail))
    )


def call(ex, st: s.Call, scope: Scope, cursor):
    name = st.name.text
    d = ex.defs.get(name)
    if d is None:
        op = ops.lookup(name)
        if is_layer_form(ex, st):
            return layers.layer(ex, st.name, st.shorthand, scope, cursor)
        if op is not None:
            usage = ops.usage(op.name)
            msg = f"`{name}` is a layer, not a def: its arguments take no parentheses"
            ex.report.error("E101", msg, st.name.span, hint=f"usage: {usage}" if usage else None)
        else:
            ex.report.error("E101", f"unknown def `{name}`", st.name.span, hint=suggest(name, ex.defs))
        return cursor
    if st.tail:
        msg = f"unexpected `{ex.snippet(st.tail[0].span)}` after the call `{name}(...)`; expected the end of the statement"
        ex.report.error("E002", msg, st.tail[0].span, hint="a def call takes its arguments inside the parentheses")
        return cursor
    if name in ex.call_stack:
        chain = " \u2192 ".join(ex.call_stack[ex.call_stack.index(name) :] + [name])
        ex.report.fatal(
            "E110",
            f"recursive call: {chain}",
            st.name.span,
            hint="a def cannot call itself, directly or through another def",
        )
    ex.budget.reserve(*ex.costs.call(name), st.span)
    values = _bind(ex, st, d, scope)
    if values is None:
        return cursor
    glob = CallScope(scope)
    local = Scope(glob, prefix=_instance(ex, name))
    for p in d.params:
        if p.name.text in values:
            local.vars[p.name.text] = values[p.name.text]
        elif p.default is not None:
            v = ex.values.eval(p.default, glob)
            if v is None:
                return cursor
            local.vars[p.name.text] = v
        else:
            notes = [f"def {name} is at line {d.name.span.line}"]
            ex.report.error("E111", f"{name}() is missing the argument `{p.name.text}`", st.span, notes=notes)
            return cursor
    ex.budget.enter(st.span)  # before the call's group: a call too deep is reported where it is written
    ex.groups.append(ex.group("def", name, st.span, instance=local.prefix, def_line=d.name.span.line))
    ex.call_stack.append(name)
    try:
        return ex.body(d.body, local, cursor)
    finally:
        ex.call_stack.pop()
        ex.groups.pop()
        ex.budget.leave()


def _bind(ex, st: s.Call, d: s.Def, scope: Scope) -> dict[str, Any] | None:
    """Arguments -> {parameter: value}, or None after reporting what is wrong."""
    name = d.name.text
    names = [p.name.text for p in d.params]
    values: dict[str, Any] = {}
    npos, ok = 0, True
    for a in st.args:
        if isinstance(a, s.Keyword):
            key = a.key.text
            if key not in names:
                ex.report.error(
                    "E111",
                    f"{name}() has no parameter `{key}` (its parameters: {', '.join(names) or 'none'})",
                    a.key.span,
                    hint=suggest(key, names),
                )
                ok = False
                continue
            if key in values:
                ex.report.error("E111", f"{name}() got `{key}` twice", a.span)
                ok = False
                continue
            v = ex.values.value(a.value, scope)
        else:
            if npos >= len(names):
                ex.report.error(
                    "E111",
                    f"{name}() takes {len(names)} argument{'s' * (len(names) != 1)}, got more",
                    a.span,
                    notes=[f"def {name} is at line {d.name.span.line}"],
                )
                ok = False
                break
            key = names[npos]
            npos += 1
            v = ex.values.value(a, scope)
        if v is MISSING:
            ok = False
            continue
        values[key] = v
    return values if ok else None


def _instance(ex, name: str) -> str:
    """`block_1`, `block_2`, ... in call order, skipping names already taken."""
    n = ex.instances.get(name, 0)
    while True:
        n += 1
        inst = f"{name}_{n}"
        if inst not in ex.namer.reserved and inst not in ex.graph:
            ex.instances[name] = n
            return inst


def check_words(ex, body: s.Body) -> None:
    """Unknown layer and def names in a body that never runs (an uncalled def)."""
    for st in s.walk(body.stmts):
        if isinstance(st, s.Layer):
            word = st.name.text
            if ops.lookup(word) is None and word.lower() != "identity":
                hint = suggest(word, [*ops.OPS, *ex.defs, *s.STATEMENT_WORDS])
                ex.report.error("E101", f"unknown layer `{word}`", st.name.span, hint=hint)
        elif isinstance(st, s.Call) and st.name.text not in ex.defs and ops.lookup(st.name.text) is None:
            hint = suggest(st.name.text, ex.defs)
            ex.report.error("E101", f"unknown def `{st.name.text}`", st.name.span, hint=hint)

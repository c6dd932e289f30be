"""Blocks: `residual { }`, `add { | }` / `concat { | }` and `repeat N { }`.

Each opens a group (drawn as a cluster) and one level of nesting in the budget;
a repeat is costed before it runs, and each pass opens a scope (labels get `_I`).
"""

from __future__ import annotations

from .. import ops
from . import syntax as s
from .scope import Scope

MAX_REPEAT = 100_000


def residual(ex, st: s.Residual, scope: Scope, cursor, label=None, label_span=None):
    span = st.keyword.span
    if not st.body.stmts:
        ex.report.error("E109", "empty `residual { }` block", span, hint="put the layers of the residual branch inside")
        return cursor
    ex.seen_layer = True
    ex.groups.append(ex.group("residual", "residual", st.span))
    ex.budget.enter(span)
    try:
        out = ex.body(st.body, scope, cursor)
        name = ex.node("add", {}, span, [cursor, out], label, scope, label_span)
        ex.graph.nodes[name]["block"] = "residual"  # for the error message
        return name
    finally:
        ex.budget.leave()
        ex.groups.pop()


def parallel(ex, st: s.Parallel, scope: Scope, cursor, label=None, label_span=None):
    kind = st.kind.text.lower()
    span = st.kind.span
    if len(st.paths) < 2:
        ex.report.error(
            "E109",
            f"`{kind} {{ }}` needs at least two paths separated by `|`",
            span,
            hint="a path that passes its input through is written `identity`",
        )
        return cursor
    ex.seen_layer = True
    ex.groups.append(ex.group(kind, kind, st.span, paths=len(st.paths)))
    ex.budget.enter(span)
    try:
        outs = []
        for i, body in enumerate(st.paths):
            if not body.stmts:
                ex.report.error(
                    "E109",
                    f"path {i + 1} of `{kind} {{ }}` is empty",
                    span,
                    hint="write `identity` for a path that passes its input through",
                )
                return cursor
            ex.groups.append(ex.group("path", f"path {i + 1}", body.span or span, index=i))
            try:
                outs.append(ex.body(body, scope, cursor))
            finally:
                ex.groups.pop()
        return ex.node(kind, {}, span, outs, label, scope, label_span)
    finally:
        ex.budget.leave()
        ex.groups.pop()


def repeat(ex, st: s.Repeat, scope: Scope, cursor):
    span = st.keyword.span
    count = ex.values.eval(st.count, scope)
    if count is None:
        return cursor
    if not ops._is_int(count) or count < 1:
        ex.report.error("E113", f"repeat needs a whole number of at least 1, got {ops._show(count)}", st.count.span)
        return cursor
    count = int(count)
    if count > MAX_REPEAT:
        ex.report.fatal(
            "E113",
            f"repeat {ops.show_number(count, commas=True)} is more than the limit of {MAX_REPEAT:,}",
            st.count.span,
        )
    if not st.body.stmts:
        ex.report.error("E109", "empty `repeat { }` block", span)
        return cursor
    steps, nodes = ex.costs.body(st.body)  # refuse a runaway expansion before doing any of it
    ex.budget.reserve(count * steps, count * nodes, span)
    gid = ex.group("repeat", f"\u00d7{count}", st.span, count=count)
    ex.groups.append(gid)
    ex.budget.enter(span)
    try:
        for i in range(1, count + 1):
            ex.groups.append(ex.group("iteration", f"{i}", st.span, index=i, repeat=gid))
            try:
                cursor = ex.body(st.body, Scope(scope, suffix=f"_{i}"), cursor)
            finally:
                ex.groups.pop()
    finally:
        ex.budget.leave()
        ex.groups.pop()
    return cursor

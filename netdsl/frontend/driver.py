"""The front end's pipeline: text -> Lark tree -> syntax tree -> expanded graph -> shapes.

:func:`compile_graph` is all of it; :func:`netdsl.net.compile_source` wraps the result
in a :class:`~netdsl.net.Net`.
"""

from __future__ import annotations

from typing import Any

from ..errors import NetdslError, Source
from .diagnostics import MAX_ERRORS, Stop


def parse_program(text: str):
    """Text -> :class:`~netdsl.frontend.syntax.Program`, or a located syntax error."""
    from ..parser import parse_tree
    from .transform import to_syntax

    return to_syntax(parse_tree(text), text)


def compile_graph(
    source: Source, params: dict[str, Any], input_shape: tuple | None, candidate: dict | None = None, program=None
):
    """A checked graph for ``source``, or a :class:`NetdslError` listing the errors found
    (at most ``MAX_ERRORS``), located in ``source``.  A spec with search spaces is checked
    as ``candidate`` (its default candidate when None); the graph records both.
    ``program``: its syntax tree, when the caller has parsed it already (the language
    server and the formatter need the tree too)."""
    from .spaces import check_values, extract

    if program is None:
        program = parse_program(source.text)
    space = extract(program, source.text)
    values = check_values(space, candidate)
    graph = compile_program(source, program, params, input_shape, space, values)
    if candidate is None:  # the default candidate: its values are whole where float()'s others are not
        whole_numbers(source, program, params, input_shape, space, values)
    return graph


def whole_numbers(source: Source, program, params: dict[str, Any], input_shape, space, values: dict) -> None:
    """E907 for a `float`/`log` space that feeds a whole-number argument (a size, a count).

    Its default, the lower bound, is often whole (`float(1, 8)`), so the default candidate
    checks; every other value would be refused and a sweep would prune everything.  Each such
    dimension is tried once more at a value that is not whole, the others at their defaults:
    an error asking for a whole number is then this dimension's.  Called after the defaults
    checked, so any new error comes from the value changed."""
    for d in space.dims:
        v = _not_whole(d)
        if v is None:
            continue
        try:
            compile_program(source, program, params, input_shape, space, {**values, d.name: v})
        except NetdslError as e:
            for err in getattr(e, "errors", None) or [e]:
                if "whole number" in err.message:
                    where = f" (line {err.span.line}: {err.message})" if err.span else f" ({err.message})"
                    raise NetdslError(
                        "E907",
                        f"`{d.text()}` takes values that are not whole, where a whole number is needed{where}",
                        d.span,
                        hint=f"write `int({_whole(d.low)}, {_whole(d.high)})` (or `log` with whole bounds)",
                        source=source,
                    ) from None


def _not_whole(d):
    """A value of dimension ``d`` that is not a whole number, or None (a `choice`, an `int`)."""
    import math

    if d.kind not in ("float", "log") or d.integer or d.low == d.high:
        return None
    for f in (0.5, 0.37, 0.71, 0.13):
        if d.kind == "log":
            v = math.exp(math.log(d.low) + f * (math.log(d.high) - math.log(d.low)))
        else:
            v = d.low + f * (d.high - d.low)
        if v != int(v) and d.low < v < d.high:
            return v
    return None


def _whole(x) -> str:
    import math

    return str(int(math.ceil(x))) if x == x else str(x)


def compile_program(source: Source, program, params: dict[str, Any], input_shape, space, values: dict):
    """:func:`compile_graph` from a parsed program and its space (``netdsl sweep`` parses once)."""
    from ..infer import infer
    from .expander import Expander
    from .spaces import resolve

    if space:
        program = resolve(program, space, values)
    exp = Expander(source, params, input_shape)
    exp.graph.graph["space"], exp.graph.graph["candidate"] = space, values
    stopped = False
    try:
        exp.run(program)
    except Stop:  # a limit, or too many errors: whatever raised it, the error is recorded
        stopped = True
    except RecursionError:  # nesting is bounded (cost.MAX_DEPTH); this is for a caller already deep in its stack
        exp.report.errors.append(NetdslError("E004", "the spec is nested too deeply to expand here"))
        stopped = True
    exp.graph.graph["train"] = exp.recipe.config
    errors = list(exp.report.errors)
    if not stopped and exp.graph.output is not None:
        later = infer(exp.graph, source)
        errors += [e for e in later if e.code != "E208" or not errors]
    if errors:
        errors.sort(key=lambda e: (e.span is None, e.span or ()))
        err = NetdslError.many(errors[:MAX_ERRORS], stopped=len(errors) >= MAX_ERRORS)
        err.graph = exp.graph
        raise err
    return exp.graph

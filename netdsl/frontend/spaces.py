"""Search spaces in a spec: `choice(16, 32)`, `int(1, 4)`, `float(0.1, 0.5)`, `log(1e-4, 1e-2)`.

:func:`extract` names every space by where it stands and checks it (located errors);
:func:`resolve` replaces each one by a candidate's value in the syntax tree, so the
expander, the checker and every backend see a plain spec; :func:`plain_text` writes a
candidate out as a plain spec (the same replacement, in the text).

The default candidate (what `netdsl check`, `summary` and `plot` show) takes the first
option of a `choice` and the lower bound of `int`, `float` and `log`.  A space written
once is one dimension, however often its statement runs (in a `repeat` or a def body):
to vary per use, pass it as a def argument at each call.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, fields, is_dataclass, replace

from ..errors import NetdslError, Span
from . import syntax as s

MAX_OPTIONS = 1000  # options of one choice()
MAX_BOUND = 2**63


@dataclass(frozen=True)
class Dim:
    """One dimension of the space, named by where it stands."""

    name: str
    kind: str  # choice | int | float | log
    span: Span
    options: tuple = ()  # choice: the values Optuna sees (a number, or the option's text)
    nodes: tuple = ()  # choice: the option expressions
    low: int | float | None = None
    high: int | float | None = None
    integer: bool = False  # int(), and log() with whole-number bounds

    @property
    def default(self):
        return self.options[0] if self.kind == "choice" else self.low

    @property
    def size(self) -> int | None:
        """How many values it takes; None when continuous."""
        if self.kind == "choice":
            return len(self.options)
        return self.high - self.low + 1 if self.integer else None

    def text(self) -> str:
        if self.kind == "choice":
            return "choice(" + ", ".join(map(str, self.options)) + ")"
        return f"{self.kind}({self.low}, {self.high})"

    def node_of(self, value):
        """The expression of the `choice` option ``value``."""
        return next(n for o, n in zip(self.options, self.nodes, strict=True) if o == value and type(o) is type(value))

    def holds(self, value) -> bool:
        """Is ``value`` one of this dimension's values (a candidate read back from a study)?"""
        if self.kind == "choice":
            return any(value == o and type(value) is type(o) for o in self.options)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Space:
    """All dimensions of a spec, in source order."""

    dims: tuple[Dim, ...]

    def __bool__(self) -> bool:
        return bool(self.dims)

    def default(self) -> dict:
        return {d.name: d.default for d in self.dims}

    def discrete(self) -> int:
        """Candidates of the discrete dimensions together (the continuous ones aside)."""
        return math.prod(d.size for d in self.dims if d.size is not None)

    def continuous(self) -> int:
        return sum(d.size is None for d in self.dims)

    def describe(self) -> str:
        n = len(self.dims)
        size = f"{self.discrete():,} candidate{'s' * (self.discrete() != 1)}"
        if self.continuous():
            size = (
                f"{size} x {self.continuous()} continuous dimension{'s' * (self.continuous() != 1)}"
                if self.discrete() > 1 or self.continuous() < n
                else "continuous"
            )
        return f"search space of {n} dimension{'s' * (n != 1)} ({size})"

    def show(self, values: dict) -> str:
        return ", ".join(f"{k}={_show(v)}" for k, v in values.items())


def note(net, default: bool = True) -> str | None:
    """What `check`, `summary` and `plot` say about a spec with search spaces: the space,
    and which candidate they show."""
    space = net.space
    if not space:
        return None
    which = "the default candidate (first choices, lower bounds)" if default else "the candidate"
    return f"{space.describe()}; showing {which}: {space.show(net.candidate)}"


def _show(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ---- naming and checking ---------------------------------------------------------------


def extract(program: s.Program, text: str) -> Space:
    """The spec's search space, every dimension checked; a :class:`NetdslError` listing every
    misplaced or malformed space otherwise.  ``text`` is the spec (options are shown as written)."""
    if not program.spaces:
        return Space(())
    errors: list[NetdslError] = []
    found: list[tuple[str, s.Space]] = []
    for where, root in _owners(program.stmts):
        spaces = list(_spaces_in(root))
        if where is None:
            errors += [
                NetdslError(
                    "E901",
                    f"the input shape cannot be a search space: `{sp.kind}(...)`",
                    sp.span,
                    hint="search the layers' sizes instead; the input is what the data gives",
                )
                for sp in spaces
            ]
            continue
        found += [(where, sp) for sp in spaces]
    reached = {id(sp) for _, sp in found}
    for sp in program.spaces:  # a place the walk above does not know: refuse rather than ignore
        inside = any(_within(sp.span, f.span) for _, f in found)  # nested: E906 below says so
        if id(sp) not in reached and not inside and not any(sp.span == e.span for e in errors):
            errors.append(NetdslError("E901", f"a search space cannot stand here: `{sp.kind}(...)`", sp.span))
    dims, count, seen = [], Counter(w for w, _ in found), Counter()
    for where, sp in sorted(found, key=lambda f: f[1].span):
        seen[where] += 1  # `dense@12.1`, `dense@12.2`: two spaces in one place, in source order
        name = where if count[where] == 1 else f"{where}.{seen[where]}"
        try:
            dims.append(_dim(name, sp, text))
        except NetdslError as e:
            errors.append(e)
    if errors:
        errors.sort(key=lambda e: e.span or ())
        raise NetdslError.many(errors)
    return Space(tuple(dims))


def _owners(stmts):
    """(name of the place, expression) for every expression that may hold a space; the name
    is None for the input shape, which cannot vary."""
    todo = [(st, None) for st in reversed(stmts)]
    while todo:
        st, label = todo.pop()
        line = st.span.line if st.span else 0
        match st:
            case s.Input(args=args):
                yield from ((None, a) for a in args)
            case s.Layer(name=w, args=args):
                yield from _args(label or f"{w.text}@{line}", args)
            case s.Call(name=w, args=args, tail=tail):
                yield from _args(label or f"{w.text}@{line}", (*args, *tail))
            case s.Labeled(label=lab, inner=inner):
                todo.append((inner, lab.text))
            case s.Let(name=w, value=e):
                yield w.text, e
            case s.Repeat(count=e, body=b):
                yield f"repeat@{line}", e
                todo.extend((x, None) for x in reversed(b.stmts))
            case s.Def(name=w, params=params, body=b):
                yield from ((f"{w.text}.{p.name.text}", p.default) for p in params if p.default is not None)
                todo.extend((x, None) for x in reversed(b.stmts))
            case s.Train(settings=settings):
                yield from ((k.key.text, k.value) for k in settings)
            case s.Residual(body=b):
                todo.extend((x, label) for x in reversed(b.stmts))
            case s.Parallel(paths=paths):
                for b in reversed(paths):
                    todo.extend((x, None) for x in reversed(b.stmts))


def _args(where: str, args):
    for a in args:
        if isinstance(a, s.Keyword):
            yield f"{where}.{a.key.text}", a.value
        else:
            yield where, a


def _spaces_in(root):
    """The outermost spaces inside an expression, argument or size, in source order."""
    todo = [root]
    out = []
    while todo:
        x = todo.pop()
        match x:
            case s.Space():
                out.append(x)
            case s.Neg(operand=e) | s.Keyword(value=e):
                todo.append(e)
            case s.BinOp(left=a, right=b):
                todo.extend((a, b))
            case s.Size(dims=dims, stride=stride):
                todo.extend(dims)
                if stride is not None:
                    todo.append(stride)
    return sorted(out, key=lambda sp: sp.span)


def _dim(name: str, sp: s.Space, text: str) -> Dim:
    for a in sp.args:
        inner = _spaces_in(a)
        if inner:
            raise NetdslError("E906", f"a search space inside `{sp.kind}(...)`", inner[0].span)
    if sp.kind == "choice":
        return _choice(name, sp, text)
    if len(sp.args) != 2:
        raise NetdslError(
            "E902",
            f"`{sp.kind}` takes two bounds, got {len(sp.args)}",
            sp.span,
            hint=f"write `{sp.kind}(LOW, HIGH)`",
        )
    low, high = (_bound(sp, a) for a in sp.args)
    integer = sp.kind == "int" or (sp.kind == "log" and isinstance(low, int) and isinstance(high, int))
    if sp.kind == "int":
        for v, a in ((low, sp.args[0]), (high, sp.args[1])):
            if not isinstance(v, int):
                raise NetdslError("E905", f"the bounds of `int` are whole numbers, got {v}", a.span)
    if sp.kind == "float":
        low, high = float(low), float(high)
    if low > high:
        raise NetdslError(
            "E903",
            f"the bounds of `{sp.kind}` are the wrong way round: {low} > {high}",
            sp.span,
            hint=f"write `{sp.kind}({_show(high)}, {_show(low)})`",
        )
    if sp.kind == "log" and low <= 0:
        raise NetdslError(
            "E904",
            f"`log` needs bounds above 0, got {low}",
            sp.args[0].span,
            hint="a log scale has no 0; use `float` for a range that starts at 0",
        )
    return Dim(name, sp.kind, sp.span, low=low, high=high, integer=integer)


def _choice(name: str, sp: s.Space, text: str) -> Dim:
    if not sp.args:
        raise NetdslError("E902", "an empty `choice()`", sp.span, hint="list the options: `choice(16, 32, 64)`")
    if len(sp.args) > MAX_OPTIONS:
        raise NetdslError("E902", f"`choice` with {len(sp.args):,} options (the limit is {MAX_OPTIONS:,})", sp.span)
    options, seen = [], {}
    for a in sp.args:
        v = _number(a)
        if v is None:
            v = _text(text, a.span)
        key = (type(v), v)
        if key in seen:
            raise NetdslError(
                "E902", f"`choice` lists `{_show(v)}` twice", a.span, notes=[f"first at column {seen[key]}"]
            )
        seen[key] = a.span.column
        options.append(v)
    return Dim(name, "choice", sp.span, options=tuple(options), nodes=tuple(sp.args))


def _number(e):
    """A literal number (`16`, `-0.5`), or None."""
    sign = 1
    if isinstance(e, s.Neg):
        e, sign = e.operand, -1
    if isinstance(e, s.Num):
        return sign * e.value
    return None


def _bound(sp: s.Space, e):
    v = _constant(e)
    if v is None or isinstance(v, bool):
        raise NetdslError(
            "E905",
            f"the bounds of `{sp.kind}` are numbers, written out",
            e.span,
            hint="e.g. `int(1, 4)`, `log(1e-4, 1e-2)`",
        )
    if not math.isfinite(v) or abs(v) >= MAX_BOUND:
        raise NetdslError("E905", f"a bound of `{sp.kind}` is too large: {_show(v)}", e.span)
    return v


def _constant(e, depth: int = 0):
    """Arithmetic over numbers only (`1/1000`), or None; shallow on purpose (bounds are short)."""
    if depth > 32:
        return None
    match e:
        case s.Num(value=v):
            return v
        case s.Neg(operand=x):
            v = _constant(x, depth + 1)
            return None if v is None else -v
        case s.BinOp(op=op, left=a, right=b):
            x, y = _constant(a, depth + 1), _constant(b, depth + 1)
            if x is None or y is None or (op in ("/", "//") and y == 0):
                return None
            try:
                return {"+": x + y, "-": x - y, "*": x * y, "/": x / y, "//": x // y}[op]
            except OverflowError:
                return None
    return None


def _text(text: str, span: Span) -> str:
    lines = text.split("\n")
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1 : span.end_column - 1]
    parts = [lines[span.line - 1][span.column - 1 :], *lines[span.line : span.end_line - 1]]
    return " ".join([*parts, lines[span.end_line - 1][: span.end_column - 1]])


# ---- one candidate ---------------------------------------------------------------------


def check_values(space: Space, values: dict | None) -> dict:
    """``values`` completed with the defaults, in the space's order; E914 for a name the
    space lacks or a value outside its dimension."""
    values = dict(values or {})
    out = {}
    for d in space.dims:
        v = values.pop(d.name, d.default)
        if not d.holds(v):
            raise NetdslError("E914", f"`{d.name}`: {v!r} is not a value of {d.text()}", d.span)
        out[d.name] = v
    if values:
        name = next(iter(values))
        raise NetdslError("E914", f"the search space has no dimension `{name}`", hint=_names(space))
    return out


def _names(space: Space) -> str:
    return "its dimensions: " + (", ".join(d.name for d in space.dims) or "none")


def resolve(program: s.Program, space: Space, values: dict) -> s.Program:
    """``program`` with every space replaced by its value in ``values`` (checked ones): a
    `choice` by the option's own expression, the others by a number where they stood."""
    if not space:
        return program
    repl: dict[int, object] = {}
    by_span = {sp.span: sp for sp in program.spaces}
    for d in space.dims:
        sp, v = by_span[d.span], values[d.name]
        if d.kind == "choice":
            repl[id(sp)] = d.node_of(v)
        else:
            repl[id(sp)] = s.Num(v, sp.span)
    spans = [d.span for d in space.dims]
    out = _rebuild(program, repl, spans)
    return replace(out, spaces=())


def _within(a: Span, b: Span) -> bool:
    return (b[0], b[1]) <= (a[0], a[1]) and (a[2], a[3]) <= (b[2], b[3])


def _covers(x, spans) -> bool:
    sp = getattr(x, "span", None)
    if sp is None:
        return True
    a, b = (sp[0], sp[1]), (sp[2], sp[3])
    return any(a <= (t[0], t[1]) and (t[2], t[3]) <= b for t in spans)


def _kids(x):
    if isinstance(x, tuple):
        return [c for c in x if _node(c)]
    return [v for f in fields(x) if _node(v := getattr(x, f.name))]


def _node(v) -> bool:
    return (isinstance(v, tuple) and not isinstance(v, Span)) or (is_dataclass(v) and not isinstance(v, type))


_PLAN: list = [
    None,
    None,
    (),
]  # the last program, its spans, its plan: `netdsl sweep` resolves one spec 1,000s of times


def _plan(root, spans) -> tuple:
    """The nodes that contain a space, children before parents, each with the names of its
    fields that may change.  Iterative: an expression may be 100,000 levels deep."""
    if _PLAN[0] is root and _PLAN[1] == spans:
        return _PLAN[2]
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        x, ready = stack.pop()
        if id(x) in seen:
            continue
        if ready or isinstance(x, s.Space):
            seen.add(id(x))
            order.append(x)
            continue
        stack.append((x, True))
        stack.extend((c, False) for c in _kids(x) if id(c) not in seen and _covers(c, spans))
    plan = tuple(
        (x, None if isinstance(x, tuple | s.Space) else tuple(f.name for f in fields(x) if _node(getattr(x, f.name))))
        for x in order
    )
    _PLAN[:] = [root, spans, plan]
    return plan


def _rebuild(root, repl: dict, spans):
    """A copy of ``root`` with the nodes in ``repl`` replaced; only the nodes that contain a
    replaced one are copied."""
    memo: dict[int, object] = {}
    for x, names in _plan(root, spans):
        if id(x) in repl:
            memo[id(x)] = repl[id(x)]
        elif names is None:
            memo[id(x)] = tuple(memo.get(id(c), c) for c in x) if isinstance(x, tuple) else x
        else:
            changed = {n: memo[id(v)] for n in names if id(v := getattr(x, n)) in memo}
            memo[id(x)] = replace(x, **changed) if changed else x
    return memo[id(root)]


# ---- a candidate as a plain spec ----------------------------------------------------------


def plain_text(text: str, space: Space, values: dict) -> str:
    """``text`` (the spec) with every search space written as its value in ``values``."""
    lines = text.split("\n")
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln) + 1)
    out = text
    for d in sorted(space.dims, key=lambda d: d.span, reverse=True):
        a = starts[d.span.line - 1] + d.span.column - 1
        b = starts[d.span.end_line - 1] + d.span.end_column - 1
        out = out[:a] + _written(d, values[d.name], out[b : b + 2]) + out[b:]
    return out


def _written(d: Dim, v, after: str) -> str:
    """``v`` as text in the place of ``d``; ``after`` is the text that follows (`x3` in
    `choice(8, c)x3`): a number before `x3` makes a size (`8x3`), anything else glued
    to a word goes in parentheses (`(c)x3`, `(8)x 3`)."""
    glued = after[:1].isalnum() or after[:1] == "_"
    size = len(after) == 2 and after[0] == "x" and after[1].isdigit()
    if d.kind == "choice":
        node = d.node_of(v)
        if isinstance(node, s.Num) and (size or not glued):
            return str(v)
        if isinstance(node, s.Name) and not glued:
            return v
        return f"({v})"  # an expression, a negative number, or a name glued to `x3`
    t = str(v) if isinstance(v, int) else repr(float(v))
    return f"({t})" if v < 0 or (glued and not (size and isinstance(v, int))) else t

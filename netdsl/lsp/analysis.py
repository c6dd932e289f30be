"""What the language server knows about one version of a document, without any LSP types.

:func:`analyze` runs the front end once and keeps what every request needs: the errors,
the syntax tree (when the text parses), the graph (whole, or up to the first error), and
an index from source lines to the nodes they made.  Positions here are 0-based lines and
code-point columns; the server converts them to the client's encoding.

Nothing here raises on any input: a request on a broken document still gets an answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import NetdslError, Source, Span
from ..frontend import syntax as s

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Analysis:
    text: str
    errors: list = field(default_factory=list)  # NetdslError, each located
    program: s.Program | None = None
    graph: object = None  # networkx graph (whole or partial), or None
    by_line: dict = field(default_factory=dict)  # 1-based line -> [node name, ...] in creation order
    calls: list = field(default_factory=list)  # (span, [group ids]) of def calls, per call site
    ok: bool = False
    source_text: str = ""  # the document's text as the client has it (the cache key)
    _lines: list | None = None
    _members: dict | None = None

    @property
    def lines(self) -> list[str]:
        """The text's lines, split once (splitting per symbol made the outline quadratic)."""
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    # -- lookups --------------------------------------------------------------------------

    def node(self, name: str) -> dict | None:
        g = self.graph
        return g.nodes[name] if g is not None and name in g.nodes else None

    def nodes_at(self, line: int, col: int | None = None) -> list[str]:
        """Nodes made by the statement at ``line`` (1-based), the one under ``col`` first."""
        names = self.by_line.get(line, [])
        if col is None:
            return names
        hit = [n for n in names if _inside(self.node(n)["span"], line, col)]
        return hit or names

    def call_at(self, line: int, col: int):
        for span, gids in self.calls:
            if span.line == line and span.column <= col < max(span.end_column, span.column + 1):
                return span, gids
        return None

    def group_nodes(self, gids) -> list[str]:
        """The nodes of the groups ``gids``, in graph order (an index built once, not a scan per call)."""
        if self._members is None:
            self._members = {}
            for i, (n, d) in enumerate(self.graph.nodes.items()):
                for g in d["groups"]:
                    self._members.setdefault(g, []).append((i, n))
        got = {x for g in gids for x in self._members.get(g, ())}
        return [n for _, n in sorted(got)]


def _inside(span: Span | None, line: int, col: int) -> bool:
    return span is not None and span.line == line and span.column <= col <= span.end_column


def analyze(text: str, params: dict | None = None) -> Analysis:
    """The analysis of ``text``; never raises (a bug in the front end becomes one diagnostic)."""
    from ..frontend.driver import compile_graph, parse_program

    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith("\ufeff"):  # a BOM, as `netdsl check` accepts it; a space keeps the columns
        text = " " + text[1:]
    source = Source(text, "<document>")
    a = Analysis(text)
    try:
        a.program = parse_program(text)
    except NetdslError as e:
        a.errors = e.located(source).errors
        return a
    except RecursionError:
        a.errors = [NetdslError("E004", "the spec is nested too deeply to analyse", source=source)]
        return a
    try:
        from ..net import _check_params

        if params:  # the client's parameters are for every document: bind only those this one uses
            used = set(s.names(a.program.stmts))
            params = {k: v for k, v in params.items() if k in used}
        a.graph = compile_graph(source, _check_params(params or {}), None, program=a.program)
        a.ok = True
    except NetdslError as e:
        a.errors = e.located(source).errors
        a.graph = e.graph
    except (RecursionError, MemoryError):
        a.errors = [NetdslError("E004", "the spec is too large to analyse here", source=source)]
    _index(a)
    return a


def _index(a: Analysis) -> None:
    g = a.graph
    if g is None:
        return
    calls: dict = {}
    groups = g.graph.get("groups", {})
    for gid, info in groups.items():
        if info["kind"] == "def":
            # the call's own line: nested calls (a def calling a def) show at the outer call
            calls.setdefault(info["span"], []).append(gid)
    a.calls = list(calls.items())
    for name, d in g.nodes.items():
        sp = d.get("span")
        if sp is None:
            continue
        a.by_line.setdefault(sp.line, []).append(name)


# ---- presentation -------------------------------------------------------------------------------


def shape_text(shape) -> str:
    if shape is None:
        return "?"
    return "x".join(str(x) for x in shape)


def keras_shape(shape) -> str:
    return "(None, " + ", ".join(str(x) for x in shape) + ")" if shape is not None else "unknown"


def hover(a: Analysis, line: int, col: int) -> tuple[str, Span] | None:
    """Markdown for the hover at 1-based ``line``/``col``, and the span it describes."""
    if a.graph is None:
        return None
    call = a.call_at(line, col)
    if call is not None:
        return _call_hover(a, *call)
    names = a.nodes_at(line, col)
    if not names:
        return None
    name = names[0]
    d = a.node(name)
    from ..ops import OPS

    op = OPS.get(d["op"])
    kind = op.keras if op else d["op"]
    same = [n for n in names if a.node(n)["span"] == d["span"]]
    lines = [f"**{name}** ({kind}): output `{keras_shape(d['shape'])}`"]
    ins = [i for i in d["inputs"] if a.node(i) is not None]
    if ins:
        got = ", ".join(f"`{keras_shape(a.node(i)['shape'])}` from `{i}`" for i in ins)
        lines.append(f"receives {got}")
    lines.append(
        f"params {d['params']:,} (trainable {d['trainable']:,}, non-trainable {d['non_trainable']:,}) \u00b7 MACs {d['macs']:,}"
    )
    if len(same) > 1:
        lines.append(f"this line makes {len(same)} nodes ({', '.join(same[:6])}{', ...' if len(same) > 6 else ''})")
    if d.get("error"):
        lines.append(f"error: {d['error']}")
    return "\n\n".join(lines), d["span"]


def _call_hover(a: Analysis, span: Span, gids: list) -> tuple[str, Span]:
    names = a.group_nodes(gids)
    nodes = [a.node(n) for n in names]
    tr = sum(n["trainable"] for n in nodes)
    nt = sum(n["non_trainable"] for n in nodes)
    macs = sum(n["macs"] for n in nodes)
    info = a.graph.graph["groups"][gids[0]]
    last = nodes[-1] if nodes else None
    per = f" ({len(gids)} calls)" if len(gids) > 1 else ""
    out = [
        f"**{info['label']}(...)**{per}: {len(names)} layers, output `{keras_shape(last['shape'] if last else None)}`"
    ]
    out.append(f"params {tr + nt:,} (trainable {tr:,}, non-trainable {nt:,}) \u00b7 MACs {macs:,}")
    return "\n\n".join(out), span


def inlay_hints(a: Analysis, first: int = 1, last: int | None = None) -> list[tuple[int, int, str]]:
    """(1-based line, 1-based column after the code, label) for each line that makes nodes:
    the output shape of the line's last node, and the parameters the line adds."""
    out = []
    if a.graph is None:
        return out
    lines = a.lines
    call_lines = {}
    for span, gids in a.calls:
        call_lines.setdefault(span.line, []).append((span, gids))
    todo = set(a.by_line) | set(call_lines)
    for line in sorted(todo):
        if line < first or (last is not None and line > last) or line > len(lines):
            continue
        names = [n for n in a.by_line.get(line, []) if not _in_def(a, n)]
        params = sum(a.node(n)["params"] for n in names)
        shape = a.node(names[-1])["shape"] if names else None
        for _span, gids in call_lines.get(line, []):
            inside = a.group_nodes(gids)
            params += sum(a.node(n)["params"] for n in inside)
            if inside:
                shape = a.node(inside[-1])["shape"]
        if not names and line not in call_lines:
            continue
        code = lines[line - 1]
        end = len(code.split("#", 1)[0].rstrip()) + 1
        label = f"\u2192 {shape_text(shape)}" + (f"  {params:,} params" if params else "")
        out.append((line, end, label))
    return out


def _in_def(a: Analysis, name: str) -> bool:
    groups = a.graph.graph["groups"]
    return any(groups[g]["kind"] == "def" for g in a.node(name)["groups"])


# ---- names: definitions, completion ---------------------------------------------------------------


def definitions(a: Analysis) -> dict[str, Span]:
    """Every name a spec defines (labels, lets, defs, def parameters, automatic node names) -> its span."""
    out: dict[str, Span] = {}
    if a.graph is not None:
        for name, d in a.graph.nodes.items():
            if d.get("span") is not None:
                out.setdefault(name, d["span"])
    if a.program is not None:
        for st in s.walk(a.program.stmts):
            match st:
                case s.Labeled(label=w) | s.Let(name=w) | s.Def(name=w):
                    out[w.text] = w.span
            if isinstance(st, s.Def):
                for p in st.params:
                    out.setdefault(p.name.text, p.name.span)
    return out


def word_at(text: str, line: int, col: int) -> str | None:
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    for m in _WORD.finditer(lines[line - 1]):
        if m.start() <= col - 1 <= m.end():
            return m.group()
    return None


def def_names(a: Analysis) -> dict[str, s.Def]:
    if a.program is None:
        return {}
    return {st.name.text: st for st in s.walk(a.program.stmts) if isinstance(st, s.Def)}


def let_names(a: Analysis) -> list[str]:
    if a.program is None:
        return []
    return sorted({st.name.text for st in s.walk(a.program.stmts) if isinstance(st, s.Let)})


# ---- the outline ------------------------------------------------------------------------------


@dataclass
class Symbol:
    name: str
    kind: str  # function variable constant namespace field event
    span: Span
    select: Span
    detail: str = ""
    children: list = field(default_factory=list)


def symbols(a: Analysis) -> list[Symbol]:
    if a.program is None:
        return []
    return [x for st in a.program.stmts if (x := _symbol(a, st)) is not None]


def _symbol(a: Analysis, st, label: s.Word | None = None) -> Symbol | None:
    snippet = _snippet(a.lines, st.span)
    match st:
        case s.Labeled(label=lab, inner=inner):
            sym = _symbol(a, inner, lab)
            if sym is not None:
                sym.span = st.span
            return sym
        case s.Def(name=name, params=params, body=b):
            ps = ", ".join(p.name.text for p in params)
            return Symbol(f"def {name.text}({ps})", "function", st.span, name.span, "", _children(a, b.stmts))
        case s.Let(name=name):
            return Symbol(name.text, "constant", st.span, name.span, snippet)
        case s.Residual(keyword=kw, body=b) | s.Repeat(keyword=kw, body=b):
            head = snippet.split("{", 1)[0].strip()
            return Symbol(
                label.text if label else head, "namespace", st.span, (label or kw).span, head, _children(a, b.stmts)
            )
        case s.Parallel(kind=kw, paths=paths):
            kids = []
            for i, p in enumerate(paths, 1):
                if p.span is not None:
                    kids.append(Symbol(f"path {i}", "namespace", p.span, p.span, "", _children(a, p.stmts)))
            return Symbol(
                label.text if label else f"{kw.text} {{ }}", "namespace", st.span, (label or kw).span, "", kids
            )
        case s.Train() | s.Data() | s.Input():
            return Symbol(snippet, "event" if not isinstance(st, s.Input) else "field", st.span, st.span)
    first = label or getattr(st, "name", None) or getattr(st, "kind", None) or getattr(st, "target", None)
    sel = first.span if first is not None else st.span
    shape = ""
    names = [n for n in a.by_line.get(st.span.line, []) if _inside(a.node(n)["span"], st.span.line, st.span.column)]
    if names:
        shape = "\u2192 " + shape_text(a.node(names[-1])["shape"])
    name = f"{label.text}: {snippet}" if label else snippet
    return Symbol(name, "variable" if label else "field", st.span, sel, shape)


def _children(a: Analysis, stmts) -> list[Symbol]:
    return [x for st in stmts if (x := _symbol(a, st)) is not None]


def _snippet(lines: list[str], span: Span) -> str:
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1 : span.end_column - 1]
    return lines[span.line - 1][span.column - 1 :].strip()

"""`netdsl fmt`: one canonical layout for a spec, printed from its syntax tree.

The layout: one statement a line; block bodies indented by two spaces; a parallel
block's paths start with `| ` at the block's indentation; single spaces between
arguments; `key=value` without spaces; layer words and keyword names in lower case;
parentheses only where the grammar needs them; at most one blank line in a row (none
at the start of a block); trailing comments of consecutive lines aligned two spaces
after the longest line.  Comments are kept; everything else (number literals, names,
word values) is printed as written.  The printer only reorders whitespace and redundant
parentheses, so the formatted spec means what the original meant (the tests check
the graph, names, shapes, counts and train settings).

An expression node this module does not know (a node added to the language later)
is printed as its source text, so it survives formatting unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import NetdslError, Source, Span
from .fmt_args import ArgPrinter
from .frontend import syntax as s

INDENT = "  "


class Formatter(ArgPrinter):
    """Prints one :class:`~netdsl.frontend.syntax.Program` of ``text``."""

    def __init__(self, text: str, program: s.Program):
        self.text = text
        self.lines = text.split("\n")
        self.starts = [0]
        for line in self.lines[:-1]:
            self.starts.append(self.starts[-1] + len(line) + 1)
        self.program = program
        tagged = set()
        for st in s.walk(program.stmts):
            tagged.add(st.span.line)
            tagged.add(st.span.end_line)
        self.trailing: dict[int, s.Comment] = {}  # line -> the comment ending it, after code
        self.standalone: list[s.Comment] = []
        for c in program.comments:
            before = self.lines[c.span.line - 1][: c.span.column - 1]
            if before.strip() and c.span.line in tagged:
                self.trailing[c.span.line] = c
            else:
                self.standalone.append(c)
        self.next_comment = 0
        self.out: list[tuple[str, str, int]] = []  # (indent, code, source line)
        self.last_line = 0  # the source line of the last item printed

    # -- source text -----------------------------------------------------------------

    def blank_before(self, line: int) -> bool:
        return line > 1 and line != self.last_line and not self.lines[line - 2].strip()

    # -- lines -------------------------------------------------------------------------

    def emit(self, indent: str, code: str, line: int, first: bool = False) -> None:
        if self.out and not first and self.blank_before(line) and self.out[-1][1] != "":
            self.out.append(("", "", 0))
        self.out.append((indent, code, line))
        self.last_line = line

    def comments_before(self, line: int, indent: str, first: bool, prefix: str = "") -> tuple[bool, str]:
        """Print the standalone comments above ``line``; returns (still first, path prefix left)."""
        while self.next_comment < len(self.standalone) and self.standalone[self.next_comment].span.line < line:
            c = self.standalone[self.next_comment]
            self.next_comment += 1
            self.emit(indent[: len(indent) - len(prefix)] + prefix if prefix else indent, c.text, c.span.line, first)
            first, prefix = False, ""
        return first, prefix

    def body(self, stmts: Iterable, indent: str, end_line: int, prefix: str = "") -> None:
        first = True
        for st in stmts:
            first, prefix = self.comments_before(st.span.line, indent, first, prefix)
            self.stmt(st, indent, first, prefix)
            first, prefix = False, ""
        self.comments_before(end_line, indent, first, prefix)

    def stmt(self, st, indent: str, first: bool, prefix: str = "", label: str = "") -> None:
        lead = indent[: len(indent) - len(prefix)] + prefix if prefix else indent
        match st:
            case s.Labeled(label=lab, inner=inner):
                self.stmt(inner, indent, first, prefix, label + lab.text + ": ")
                return
            case s.Residual(keyword=kw, body=b):
                self.emit(lead, f"{label}{kw.text.lower()} {{", st.span.line, first)
                self.body(b.stmts, indent + INDENT, st.span.end_line)
                self.emit(indent, "}", st.span.end_line, True)
            case s.Repeat(keyword=kw, count=n, body=b):
                self.emit(lead, f"{label}{kw.text.lower()} {self.atom(n, True)} {{", st.span.line, first)
                self.body(b.stmts, indent + INDENT, st.span.end_line)
                self.emit(indent, "}", st.span.end_line, True)
            case s.Def(keyword=kw, name=name, params=params, body=b):
                ps = ", ".join(p.name.text + ("" if p.default is None else f"={self.expr(p.default)}") for p in params)
                self.emit(lead, f"{label}{kw.text.lower()} {name.text}({ps}) {{", st.span.line, first)
                self.body(b.stmts, indent + INDENT, st.span.end_line)
                self.emit(indent, "}", st.span.end_line, True)
            case s.Parallel(kind=kind, paths=paths):
                self.emit(lead, f"{label}{kind.text.lower()} {{", st.span.line, first)
                for i, p in enumerate(paths):
                    end = st.span.end_line
                    if i + 1 < len(paths) and paths[i + 1].span:
                        # a comment on or after the `|` line belongs to the next path (`| # c` stays there)
                        end = self.bar_line(paths[i].span or st.span, paths[i + 1].span)
                    self.body(p.stmts, indent + INDENT, end, "| " if i else "")
                self.emit(indent, "}", st.span.end_line, True)
            case _:
                self.emit(lead, label + self.simple(st), st.span.line, first)
                if st.span.end_line > st.span.line:  # a statement printed as written: its comments come with it
                    while (
                        self.next_comment < len(self.standalone)
                        and self.standalone[self.next_comment].span.line <= st.span.end_line
                    ):
                        self.next_comment += 1
                    for line in range(st.span.line, st.span.end_line):
                        self.trailing.pop(line, None)

    def bar_line(self, before: Span, after: Span) -> int:
        """The line of the `|` between two paths (``before`` ends before it, ``after`` starts after it),
        skipping comments; the next path's line when none is found."""
        a = self.starts[before.end_line - 1] + before.end_column - 1 if before is not None else 0
        b = self.starts[after.line - 1] + after.column - 1
        i = a
        while i < b:
            c = self.text[i]
            if c == "#":
                nl = self.text.find("\n", i)
                i = b if nl < 0 else nl
            elif c == "|":
                return self.text.count("\n", 0, i) + 1
            else:
                i += 1
        return after.line

    def simple(self, st) -> str:
        """A statement that fits on one line, as one line."""
        match st:
            case s.Layer(name=name, args=args):
                return " ".join((name.text.lower(), *self.layer_args(name.text.lower(), args)))
            case s.Input(keyword=name, args=args):
                return " ".join((name.text.lower(), *(self.arg(a) for a in args)))
            case s.Call():
                return self.call(st)
            case s.From(target=t):
                return f"from {t.text}"
            case s.Merge(kind=kind, names=names):
                return " ".join((kind.text.lower(), *(n.text for n in names)))
            case s.Let(name=name, value=v):
                return f"let {name.text} = {self.expr(v)}"
            case s.Train(optimizer=opt, settings=settings):
                words = ["train"] + ([opt.text] if opt else []) + [self.keyword(k) for k in settings]
                return " ".join(words)
            case s.Data(words=words):
                return "data " + "-".join(w.text for w in words)
            case s.Residual() | s.Repeat() | s.Def() | s.Parallel() | s.Labeled():
                return self.inline(st)
        return self.snippet(st.span)  # a statement added to the language later: as written

    def inline(self, st) -> str:
        """A statement on one line: blocks as `residual { a; b }`, `add { a | b; c }` (for --oneline)."""
        match st:
            case s.Labeled(label=lab, inner=inner):
                return f"{lab.text}: {self.inline(inner)}"
            case s.Residual(keyword=kw, body=b):
                return f"{kw.text.lower()} {self.inline_body(b)}"
            case s.Repeat(keyword=kw, count=n, body=b):
                return f"{kw.text.lower()} {self.atom(n, True)} {self.inline_body(b)}"
            case s.Def(keyword=kw, name=name, params=params, body=b):
                ps = ", ".join(p.name.text + ("" if p.default is None else f"={self.expr(p.default)}") for p in params)
                return f"{kw.text.lower()} {name.text}({ps}) {self.inline_body(b)}"
            case s.Parallel(kind=kind, paths=paths):
                inner = " | ".join("; ".join(self.inline(x) for x in p.stmts) for p in paths)
                return f"{kind.text.lower()} {{ {inner} }}"
        return self.simple(st)

    def inline_body(self, b: s.Body) -> str:
        inner = "; ".join(self.inline(x) for x in b.stmts)
        return f"{{ {inner} }}" if inner else "{}"

    def call(self, st: s.Call) -> str:
        name = st.name.text
        if (
            st.shorthand is not None and not st.glued
        ):  # `dense (n+1)`, `conv (2*c)x3/2`: a layer with a parenthesis first
            first, *rest = st.shorthand
            if isinstance(first, s.Size):
                head = self.size(first, paren_first=True)
            else:
                head = f"({self.expr(first, compact=True)})"
            return " ".join((name.lower() if _is_layer(name) else name, head, *(self.arg(a) for a in rest)))
        args = ", ".join(self.keyword(a) if isinstance(a, s.Keyword) else self.expr(a) for a in st.args)
        gap = "" if st.glued else " "
        return " ".join((f"{name}{gap}({args})", *(self.arg(a) for a in st.tail)))

    # -- the whole ------------------------------------------------------------------------

    def format(self) -> str:
        self.body(self.program.stmts, "", len(self.lines) + 1)
        last = {o[2]: i for i, o in enumerate(self.out)}  # source line -> the last output line it made
        for line, c in self.trailing.items():  # attach each trailing comment to the last line it ended
            at = last.get(line)
            if at is None:  # pragma: no cover - every tagged line printed something
                self.out.append(("", c.text, line))
            else:
                ind, code, ln = self.out[at]
                self.out[at] = (ind, code, ln, c.text)
        return _align(self.out)

    def oneline(self) -> str:
        return "; ".join(self.inline(st) for st in self.program.stmts) + "\n" if self.program.stmts else ""


def _is_layer(name: str) -> bool:
    from .ops import lookup

    return lookup(name) is not None


ALIGN_SPREAD = 40  # at most this many columns of padding before an aligned comment


def _aligned(run: list) -> list[str]:
    """Consecutive commented lines: in groups whose code widths differ by at most ALIGN_SPREAD
    (greedily, in order), each group's comments two spaces after its longest line.  Bounded
    padding: one very long line does not push thousands of comments to its column."""
    out, k = [], 0
    while k < len(run):
        lo = hi = len(run[k][0]) + len(run[k][1])
        m = k + 1
        while m < len(run):
            w = len(run[m][0]) + len(run[m][1])
            if max(hi, w) - min(lo, w) > ALIGN_SPREAD:
                break
            lo, hi, m = min(lo, w), max(hi, w), m + 1
        out += [f"{ind}{code}".ljust(hi + 2) + comment for ind, code, _, comment in run[k:m]]
        k = m
    return out


def _align(out: list) -> str:
    """Lines as text; each run of consecutive lines with trailing comments aligned."""
    lines, i = [], 0
    while i < len(out):
        if len(out[i]) == 4:
            j = i
            while j < len(out) and len(out[j]) == 4:
                j += 1
            lines += _aligned(out[i:j])
            i = j
        else:
            lines.append(out[i][0] + out[i][1])
            i += 1
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


# ---- the API -----------------------------------------------------------------------------


class CommentsLost(ValueError):
    """--oneline would drop comments."""


def format_text(
    text: str,
    params: dict | None = None,
    input_shape=None,
    *,
    oneline: bool = False,
    force: bool = False,
    check: bool = True,
    filename: str = "<string>",
) -> str:
    """``text`` in the canonical layout (or on one line, ``oneline``).

    Raises :class:`NetdslError` for a spec with errors (checked with ``params`` and
    ``input_shape``, as `netdsl check` would; ``check=False`` needs only valid syntax),
    and E804 when the formatted text would not mean what ``text`` means (a formatter bug),
    and :class:`CommentsLost` when ``oneline`` would drop comments and ``force`` is not set.
    Line endings are kept (CRLF stays CRLF), and so is a leading byte-order mark.
    """
    from .fmt_meaning import check_same
    from .frontend.driver import parse_program
    from .net import compile_source

    bom = "\ufeff" if text.startswith("\ufeff") else ""  # kept, as the line endings are
    text = text.removeprefix(bom)
    crlf = "\r\n" in text
    eol = "\r\n" if crlf else "\r" if "\r" in text and "\n" not in text else "\n"  # an old Mac file stays one
    norm = text.replace("\r\n", "\n").replace("\r", "\n")
    source = Source(norm, filename)
    net = None
    try:
        program = parse_program(norm)
    except NetdslError as e:
        raise e.located(source) from None
    try:  # a spec that parses is formatted; `check`: one that does not compile is refused
        net = compile_source(source, params or {}, input_shape, program=program)
    except NetdslError as e:
        if check:
            raise e.located(source) from None
    f = Formatter(norm, program)
    if oneline:
        if program.comments and not force:
            n = len(program.comments)
            raise CommentsLost(f"--oneline would drop {n} comment{'s' * (n != 1)}")
        out = f.oneline()
    else:
        out = f.format()
    from .parser import MAX_SOURCE_BYTES

    if (
        len(out.encode("utf-8")) + crlf * out.count("\n") > MAX_SOURCE_BYTES >= len(text.encode("utf-8"))
    ):  # aligned comments add spaces
        raise NetdslError(
            "E004",
            f"the formatted spec would be larger than the limit of {MAX_SOURCE_BYTES // 1024} KiB; it is left as it is",
            source=source,
        )
    check_same(norm, program, out, net, params, input_shape, filename)  # never write a changed meaning
    if oneline:  # a string to embed: no byte-order mark, and one line that ends as a line does
        bom, eol = "", ("\r\n" if crlf else "\n")  # (a lone CR does not end a line on a terminal)
    return bom + (out.replace("\n", eol) if eol != "\n" else out)


def format_source(source: Source, params: dict | None = None, input_shape=None, **kw) -> str:
    """:func:`format_text` of a :class:`Source`; errors are located in it."""
    return format_text(source.text, params, input_shape, filename=source.filename, **kw)

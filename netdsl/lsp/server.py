"""`netdsl lsp`: the language server (stdio, pygls).

Each change re-runs the front end once (:func:`netdsl.lsp.analysis.analyze`) and publishes
its diagnostics; hover, inlay hints, completion, definitions and symbols read that cached
analysis, so they cost microseconds.  While a document is broken, hovers and hints come
from what the front end could still build, and completion also offers the names of the
last good version.  Every handler catches everything: a request always gets an answer
(empty at worst), and the server never dies of a document.
"""

from __future__ import annotations

import functools
import logging
import re

from lsprotocol import types as t
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from .. import __version__
from ..errors import NetdslError, Span
from . import analysis as an
from .complete import completions

log = logging.getLogger(__name__)
_AT_LINE = re.compile(r"\bat line (\d+)")
KINDS = {
    "layer": t.CompletionItemKind.Class,
    "keyword": t.CompletionItemKind.Keyword,
    "activation": t.CompletionItemKind.EnumMember,
    "value": t.CompletionItemKind.Value,
    "argument": t.CompletionItemKind.Property,
    "node": t.CompletionItemKind.Reference,
    "def": t.CompletionItemKind.Function,
    "variable": t.CompletionItemKind.Variable,
}
SYMBOLS = {
    "function": t.SymbolKind.Function,
    "variable": t.SymbolKind.Variable,
    "constant": t.SymbolKind.Constant,
    "namespace": t.SymbolKind.Namespace,
    "field": t.SymbolKind.Field,
    "event": t.SymbolKind.Event,
}


class _BadRequest:
    """A request whose params do not fit its method (`{"line": -1}`, null): answered with InvalidParams."""

    jsonrpc = "2.0"

    def __init__(self, msg_id, method: str, why: str):
        self.id, self.method, self.why = msg_id, method, why


class NetdslProtocol(LanguageServerProtocol):
    """pygls 2.1 raises JsonRpcInvalidParams while decoding a request with bad params, before it
    knows the request: the client got no answer at all and waited forever.  Such a request
    becomes a :class:`_BadRequest`, answered with the error -32602 (InvalidParams)."""

    def structure_message(self, data):
        try:
            return super().structure_message(data)
        except JsonRpcException as e:
            if isinstance(data, dict) and "id" in data and isinstance(data.get("method"), str):
                return _BadRequest(data["id"], data["method"], e.message or type(e).__name__)
            raise

    def handle_message(self, message):
        if isinstance(message, _BadRequest):
            error = JsonRpcInvalidParams(message=f"invalid params for {message.method}: {message.why}")
            self._send_response(message.id, error=error.to_response_error())
            return
        super().handle_message(message)


MAX_MESSAGE = 64 * 1024 * 1024  # a larger Content-Length is skipped, not allocated
MAX_HEADER = 64 * 1024
_SKIPPED = b'{"jsonrpc": "2.0", "method": "$/netdsl/skipped"}'  # a notification nobody handles


class _CappedStdin:
    """Standard input for pygls' reader, with bounded reads: `Content-Length: 99999999999` made
    it allocate the whole body (out of memory).  A body over MAX_MESSAGE is read and dropped in
    chunks; an overlong header line is cut."""

    def __init__(self, raw):
        self.raw = raw

    def readline(self) -> bytes:
        return self.raw.readline(MAX_HEADER)

    def read(self, n: int) -> bytes:
        if n <= MAX_MESSAGE:
            return self.raw.read(n)
        left = n
        while left:
            chunk = self.raw.read(min(left, 1 << 20))
            if not chunk:
                return b""  # the input ended inside it: the server stops, as at any end of input
            left -= len(chunk)
        logging.getLogger(__name__).warning("skipped a message of %d bytes (the limit is %d)", n, MAX_MESSAGE)
        return _SKIPPED


class NetdslServer(LanguageServer):
    def __init__(self):
        super().__init__(
            "netdsl",
            __version__,
            text_document_sync_kind=t.TextDocumentSyncKind.Incremental,
            protocol_cls=NetdslProtocol,
        )
        self.latest: dict[str, an.Analysis] = {}  # uri -> analysis of the current text
        self.good: dict[str, an.Analysis] = {}  # uri -> last analysis without errors
        self.parsed: dict[str, an.Analysis] = {}  # uri -> last analysis that parsed (a graph, maybe partial)
        self.params: dict = {}  # free parameters, from the client's initializationOptions {"params": {...}}

    def analysis(self, uri: str) -> an.Analysis:
        doc = self.workspace.get_text_document(uri)
        a = self.latest.get(uri)
        if a is None or a.source_text != doc.source:
            a = an.analyze(doc.source, self.params)
            a.source_text = doc.source
            self.latest[uri] = a
            if a.ok:
                self.good[uri] = a
            if a.graph is not None:
                self.parsed[uri] = a
        return a

    def readable(self, uri: str) -> tuple[an.Analysis, set | None]:
        """The analysis to answer hovers and hints from, and the lines it may answer for.
        A document that does not parse has no graph: the last analysis that parsed (the most
        recent graph, even one a semantic error cut short) answers for the lines whose text has
        not changed since (None: every line)."""
        a = self.analysis(uri)
        good = self.parsed.get(uri)
        if a.graph is not None or good is None:
            return a, None
        now, then = a.text.split("\n"), good.text.split("\n")
        return good, {i + 1 for i in range(min(len(now), len(then))) if now[i] == then[i]}

    def refresh(self, uri: str) -> None:
        a = self.analysis(uri)
        doc = self.workspace.get_text_document(uri)
        diags = [diagnostic(doc, uri, e) for e in a.errors]
        self.text_document_publish_diagnostics(
            t.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=doc.version)
        )


server = NetdslServer()


def safe(default=None):
    """Answer ``default`` instead of an error when a handler fails (it is logged)."""

    def wrap(f):
        @functools.wraps(f)
        def inner(ls, params):
            try:
                return f(ls, params)
            except Exception:  # the server must outlive any document
                log.exception("netdsl lsp: %s failed", f.__name__)
                return default() if callable(default) else default

        return inner

    return wrap


# ---- positions: netdsl's 1-based code points <-> the client's (UTF-16 by default) ------------------


def to_client(doc, line: int, col: int) -> t.Position:
    """1-based line/column (code points) -> an LSP position."""
    lines = doc.lines
    ln = min(max(line - 1, 0), max(len(lines) - 1, 0)) if lines else 0
    text = lines[ln] if lines else ""
    ch = max(col - 1, 0)
    if not text.isascii():
        return doc.position_codec.position_to_client_units(lines, t.Position(ln, min(ch, len(text))))
    return t.Position(ln, ch)


def from_client(doc, pos: t.Position) -> tuple[int, int]:
    """An LSP position -> 1-based line/column (code points)."""
    lines = doc.lines
    if 0 <= pos.line < len(lines) and not lines[pos.line].isascii():
        p = doc.position_codec.position_from_client_units(lines, pos)
        return p.line + 1, p.character + 1
    return pos.line + 1, pos.character + 1


def to_range(doc, span: Span | None) -> t.Range:
    if span is None:
        return t.Range(t.Position(0, 0), t.Position(0, 0))
    return t.Range(to_client(doc, span.line, span.column), to_client(doc, span.end_line, span.end_column))


def diagnostic(doc, uri: str, e) -> t.Diagnostic:
    rng = to_range(doc, e.span)
    related = []
    for note in e.notes:
        m = _AT_LINE.search(note)
        where = to_range(doc, Span(int(m.group(1)), 1, int(m.group(1)), 200)) if m else rng
        related.append(t.DiagnosticRelatedInformation(t.Location(uri, where), note))
    if e.hint:
        related.append(t.DiagnosticRelatedInformation(t.Location(uri, rng), f"hint: {e.hint}"))
    message = e.message + (f"\nhint: {e.hint}" if e.hint else "")
    return t.Diagnostic(
        range=rng,
        message=message,
        severity=t.DiagnosticSeverity.Error,
        code=e.code,
        source="netdsl",
        related_information=related or None,
    )


@server.feature(t.INITIALIZE)
@safe()
def initialize(ls: NetdslServer, params: t.InitializeParams):
    """``initializationOptions: {"params": {"w": 32}}`` binds free parameters, as `-D w=32` does."""
    opts = params.initialization_options
    given = opts.get("params") if isinstance(opts, dict) else None
    if isinstance(given, dict):
        ls.params = dict(given)


# ---- documents ---------------------------------------------------------------------------------------


@server.feature(t.TEXT_DOCUMENT_DID_OPEN)
@safe()
def did_open(ls: NetdslServer, params: t.DidOpenTextDocumentParams):
    ls.refresh(params.text_document.uri)


@server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
@safe()
def did_change(ls: NetdslServer, params: t.DidChangeTextDocumentParams):
    ls.refresh(params.text_document.uri)


@server.feature(t.TEXT_DOCUMENT_DID_CLOSE)
@safe()
def did_close(ls: NetdslServer, params: t.DidCloseTextDocumentParams):
    uri = params.text_document.uri
    ls.latest.pop(uri, None)
    ls.good.pop(uri, None)
    ls.parsed.pop(uri, None)
    ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


# ---- requests ------------------------------------------------------------------------------------------


@server.feature(t.TEXT_DOCUMENT_HOVER)
@safe()
def hover(ls: NetdslServer, params: t.HoverParams):
    uri = params.text_document.uri
    doc = ls.workspace.get_text_document(uri)
    line, col = from_client(doc, params.position)
    a, lines = ls.readable(uri)
    if lines is not None and line not in lines:
        return None
    got = an.hover(a, line, col)
    if got is None:
        return None
    text, span = got
    return t.Hover(contents=t.MarkupContent(t.MarkupKind.Markdown, text), range=to_range(doc, span))


@server.feature(t.TEXT_DOCUMENT_INLAY_HINT, t.InlayHintOptions(resolve_provider=False))
@safe(list)
def inlay_hints(ls: NetdslServer, params: t.InlayHintParams):
    uri = params.text_document.uri
    doc = ls.workspace.get_text_document(uri)
    r = params.range
    a, lines = ls.readable(uri)
    hints = [h for h in an.inlay_hints(a, r.start.line + 1, r.end.line + 1) if lines is None or h[0] in lines]
    return [
        t.InlayHint(position=to_client(doc, line, col), label=label, kind=t.InlayHintKind.Type, padding_left=True)
        for line, col, label in hints
    ]


@server.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=[" ", "=", ":", "(", ";", "{", "|"]))
@safe(list)
def completion(ls: NetdslServer, params: t.CompletionParams):
    uri = params.text_document.uri
    doc = ls.workspace.get_text_document(uri)
    line, col = from_client(doc, params.position)
    items = completions(ls.analysis(uri), ls.good.get(uri), line, col)
    return t.CompletionList(
        is_incomplete=False,
        items=[
            t.CompletionItem(label=i.label, kind=KINDS.get(i.kind), detail=i.detail or None, insert_text=i.insert)
            for i in items
        ],
    )


@server.feature(t.TEXT_DOCUMENT_DEFINITION)
@safe()
def definition(ls: NetdslServer, params: t.DefinitionParams):
    uri = params.text_document.uri
    doc = ls.workspace.get_text_document(uri)
    line, col = from_client(doc, params.position)
    a = ls.analysis(uri)
    word = an.word_at(a.text, line, col)
    if word is None:
        return None
    span = an.definitions(a).get(word)
    if span is None and uri in ls.parsed:
        span = an.definitions(ls.parsed[uri]).get(word)
    return t.Location(uri, to_range(doc, span)) if span is not None else None


@server.feature(t.TEXT_DOCUMENT_FORMATTING)
@safe(list)
def formatting(ls: NetdslServer, params: t.DocumentFormattingParams):
    from ..fmt import format_text

    uri = params.text_document.uri
    doc = ls.workspace.get_text_document(uri)
    a = ls.analysis(uri)
    if a.program is None:
        return []  # a spec that does not parse is not formatted (the diagnostics say why)
    try:  # as `netdsl fmt`: a spec that parses is formatted, even with a semantic error
        new = format_text(doc.source, ls.params, check=False)
    except NetdslError:  # E804 (the formatter's own output refused) or a size limit: no edit
        return []
    if new == doc.source:
        return []
    # the whole document, counted as LSP counts: `\r\n`, `\r` and `\n` each end a line; columns in UTF-16 units
    lines = re.split(r"\r\n|\r|\n", doc.source)
    end = t.Position(len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2)
    return [t.TextEdit(range=t.Range(t.Position(0, 0), end), new_text=new)]


@server.feature(t.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
@safe(list)
def document_symbols(ls: NetdslServer, params: t.DocumentSymbolParams):
    uri = params.text_document.uri
    doc = ls.workspace.get_text_document(uri)

    def convert(sym: an.Symbol) -> t.DocumentSymbol:
        rng = to_range(doc, sym.span)
        sel = to_range(doc, sym.select)
        return t.DocumentSymbol(
            name=sym.name or "?",
            kind=SYMBOLS[sym.kind],
            range=rng,
            selection_range=sel,
            detail=sym.detail or None,
            children=[convert(c) for c in sym.children] or None,
        )

    return [convert(x) for x in an.symbols(ls.analysis(uri))]


class _Brief(logging.Formatter):
    """One line per problem in the editor's log (a malformed message from the client, say);
    tracebacks only with --traceback."""

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return f"  ({ei[0].__name__}: {ei[1]})"


def main(traceback: bool = False) -> int:
    handler = logging.StreamHandler()
    fmt = "netdsl lsp: %(message)s"
    handler.setFormatter(logging.Formatter(fmt) if traceback else _Brief(fmt))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    import sys

    server.start_io(stdin=_CappedStdin(sys.stdin.buffer))
    return 0

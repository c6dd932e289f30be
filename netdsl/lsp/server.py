"""`netdsl lsp`: the language server (stdio, pygls).

The front end (:func:`netdsl.lsp.analysis.analyze`) runs once per text: at a change when the
document is cheap to analyse, else once for the newest text when a request needs it or a short
timer after the last change publishes its diagnostics (:meth:`NetdslServer.changed`), so quick
edits of a large spec are analysed once, not once each.  Requests read that cached analysis,
and convert positions through a table built once per text (:mod:`netdsl.lsp.positions`).
While a document is broken, hovers and hints come
from what the front end could still build, and completion also offers the names of the
last good version.  Every handler catches everything: a request always gets an answer
(empty at worst), and the server never dies of a document.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from urllib.parse import unquote

from lsprotocol import types as t
from pygls.lsp.server import LanguageServer

from .. import __version__
from ..errors import NetdslError, Span
from . import analysis as an
from .complete import completions
from .positions import Positions
from .rpc import Brief, CappedStdin, NetdslProtocol, quiet_pygls

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
        self.cost: dict[str, float] = {}  # uri -> seconds of CPU its last analysis took
        self.timers: dict[str, asyncio.TimerHandle] = {}  # uri -> the pending diagnostics run
        self.published: dict[str, tuple] = {}  # uri -> (analysis, version) whose diagnostics were sent
        self.where: dict[str, Positions] = {}  # uri -> the position table of its current text

    def document(self, uri: str):
        """The open document ``uri``.  pygls' own lookup reads any other URI from disk, again at
        every access: a hover on file:///dev/zero grew to 6 GB.  A request on a document the
        client has not opened gets an empty answer."""
        doc = self.workspace.text_documents.get(unquote(uri))
        if doc is None:
            raise NotOpen(uri)
        return doc

    def analysis(self, uri: str) -> an.Analysis:
        """The analysis of the document's current text, run now if the text changed since."""
        doc = self.document(uri)
        a = self.latest.get(uri)
        if a is None or a.source_text != doc.source:
            start = time.thread_time()  # CPU: what the analysis costs, whatever else the machine runs
            a = an.analyze(doc.source, self.params)
            self.cost[uri] = time.thread_time() - start
            a.source_text = doc.source
            self.latest[uri] = a
            if a.ok:
                self.good[uri] = a
            if a.graph is not None:
                self.parsed[uri] = a
        return a

    def positions(self, uri: str) -> Positions:
        doc = self.document(uri)
        p = self.where.get(uri)
        if p is None or (p.source is not doc.source and p.source != doc.source):
            p = self.where[uri] = Positions(doc.source, doc.position_codec.impl.code_units_for_char)
        return p

    def readable(self, uri: str) -> tuple[an.Analysis, set | None]:
        """The analysis to answer hovers and hints from, and the lines it may answer for.
        A document that does not parse has no graph: the last analysis that parsed (the most
        recent graph, even one a semantic error cut short) answers for the lines whose text has
        not changed since (None: every line)."""
        a = self.analysis(uri)
        good = self.parsed.get(uri)
        if a.graph is not None or good is None:
            return a, None
        now, then = a.lines, good.lines
        return good, {i + 1 for i in range(min(len(now), len(then))) if now[i] == then[i]}

    def changed(self, uri: str) -> None:
        """A change of a document whose analysis is cheap (under EAGER seconds of CPU, as a
        1,000-line spec at 44 ms) is analysed and published at once, as before.  Any other change
        only records the text (pygls did) and (re)starts the diagnostics timer: edits quicker than
        the timer are analysed once, for the newest text, and older versions are never published
        (a 100,000-layer `repeat` costs 4 s, as `netdsl check` does; each of 10 quick changes
        cost that, and a hover after them waited 42 s).  The wait is the last analysis' cost,
        at most MAX_WAIT; a request needing the analysis runs it at once."""
        cost = self.cost.get(uri, 0.0)
        old = self.timers.pop(uri, None)
        if old is not None:
            old.cancel()
        elif cost < EAGER:
            return self.refresh(uri)
        delay = min(MAX_WAIT, max(MIN_WAIT, cost))
        self.timers[uri] = asyncio.get_running_loop().call_later(delay, self.refresh, uri)
        return None

    def refresh(self, uri: str) -> None:
        """Publish the diagnostics of the newest text (once per analysis; a stale version never)."""
        self.timers.pop(uri, None)
        try:
            if unquote(uri) not in self.workspace.text_documents:
                return
            a = self.analysis(uri)
            version = self.document(uri).version
            sent = self.published.get(uri)
            if sent is not None and sent[0] is a and sent[1] == version:
                return
            p = self.positions(uri)
            diags = [diagnostic(p, uri, e) for e in a.errors]
            self.text_document_publish_diagnostics(
                t.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=version)
            )
            self.published[uri] = (a, version)
        except Exception:  # the server must outlive any document
            log.exception("netdsl lsp: diagnostics failed")

    def forget(self, uri: str) -> None:
        timer = self.timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        for cache in (self.latest, self.good, self.parsed, self.cost, self.published, self.where):
            cache.pop(uri, None)


EAGER = 0.1  # seconds of CPU: a document analysed faster is analysed at every change (NetdslServer.changed)
MIN_WAIT, MAX_WAIT = 0.02, 0.5  # seconds from a change of any other document to its diagnostics
server = NetdslServer()


class NotOpen(LookupError):
    pass


def safe(default=None):
    """Answer ``default`` instead of an error when a handler fails (it is logged)."""

    def wrap(f):
        @functools.wraps(f)
        def inner(ls, params):
            try:
                return f(ls, params)
            except NotOpen as e:
                log.warning("%s: %.200s is not an open document", f.__name__, e)
                return default() if callable(default) else default
            except Exception:  # the server must outlive any document
                log.exception("netdsl lsp: %s failed", f.__name__)
                return default() if callable(default) else default

        return inner

    return wrap


# ---- positions: netdsl's 1-based code points <-> the client's (UTF-16 by default) ------------------


def to_range(p: Positions, span: Span | None) -> t.Range:
    if span is None:
        return t.Range(t.Position(0, 0), t.Position(0, 0))
    return t.Range(p.to_client(span.line, span.column), p.to_client(span.end_line, span.end_column))


def diagnostic(p: Positions, uri: str, e) -> t.Diagnostic:
    rng = to_range(p, e.span)
    related = []
    for note in e.notes:
        m = _AT_LINE.search(note)
        where = to_range(p, Span(int(m.group(1)), 1, int(m.group(1)), 200)) if m else rng
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
    ls.changed(params.text_document.uri)


@server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
@safe()
def did_change(ls: NetdslServer, params: t.DidChangeTextDocumentParams):
    ls.changed(params.text_document.uri)


@server.feature(t.TEXT_DOCUMENT_DID_CLOSE)
@safe()
def did_close(ls: NetdslServer, params: t.DidCloseTextDocumentParams):
    uri = params.text_document.uri
    ls.forget(uri)
    ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


# ---- requests ------------------------------------------------------------------------------------------


@server.feature(t.TEXT_DOCUMENT_HOVER)
@safe()
def hover(ls: NetdslServer, params: t.HoverParams):
    uri = params.text_document.uri
    p = ls.positions(uri)
    line, col = p.from_client(params.position)
    a, lines = ls.readable(uri)
    if lines is not None and line not in lines:
        return None
    got = an.hover(a, line, col)
    if got is None:
        return None
    text, span = got
    return t.Hover(contents=t.MarkupContent(t.MarkupKind.Markdown, text), range=to_range(p, span))


@server.feature(t.TEXT_DOCUMENT_INLAY_HINT, t.InlayHintOptions(resolve_provider=False))
@safe(list)
def inlay_hints(ls: NetdslServer, params: t.InlayHintParams):
    uri = params.text_document.uri
    p = ls.positions(uri)
    r = params.range
    a, lines = ls.readable(uri)
    hints = [h for h in an.inlay_hints(a, r.start.line + 1, r.end.line + 1) if lines is None or h[0] in lines]
    return [
        t.InlayHint(position=p.to_client(line, col), label=label, kind=t.InlayHintKind.Type, padding_left=True)
        for line, col, label in hints
    ]


@server.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=[" ", "=", ":", "(", ";", "{", "|"]))
@safe(list)
def completion(ls: NetdslServer, params: t.CompletionParams):
    uri = params.text_document.uri
    line, col = ls.positions(uri).from_client(params.position)
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
    p = ls.positions(uri)
    line, col = p.from_client(params.position)
    a = ls.analysis(uri)
    word = an.word_at(a.text, line, col)
    if word is None:
        return None
    span = an.definitions(a).get(word)
    if span is None and uri in ls.parsed:
        span = an.definitions(ls.parsed[uri]).get(word)
    return t.Location(uri, to_range(p, span)) if span is not None else None


@server.feature(t.TEXT_DOCUMENT_FORMATTING)
@safe(list)
def formatting(ls: NetdslServer, params: t.DocumentFormattingParams):
    from ..fmt import format_text

    uri = params.text_document.uri
    doc = ls.document(uri)
    a = ls.analysis(uri)
    if a.program is None:
        return []  # a spec that does not parse is not formatted (the diagnostics say why)
    try:  # as `netdsl fmt`: a spec that parses is formatted, even with a semantic error
        new = format_text(doc.source, ls.params, check=False)
    except NetdslError:  # E804 (the formatter's own output refused) or a size limit: no edit
        return []
    if new == doc.source:
        return []
    end = ls.positions(uri).end()  # the whole document, its lines and columns counted as the client counts
    return [t.TextEdit(range=t.Range(t.Position(0, 0), end), new_text=new)]


@server.feature(t.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
@safe(list)
def document_symbols(ls: NetdslServer, params: t.DocumentSymbolParams):
    uri = params.text_document.uri
    p = ls.positions(uri)

    def convert(sym: an.Symbol) -> t.DocumentSymbol:
        rng = to_range(p, sym.span)
        sel = to_range(p, sym.select)
        return t.DocumentSymbol(
            name=sym.name or "?",
            kind=SYMBOLS[sym.kind],
            range=rng,
            selection_range=sel,
            detail=sym.detail or None,
            children=[convert(c) for c in sym.children] or None,
        )

    return [convert(x) for x in an.symbols(ls.analysis(uri))]


def main(traceback: bool = False) -> int:
    handler = logging.StreamHandler()
    fmt = "netdsl lsp: %(message)s"
    handler.setFormatter(logging.Formatter(fmt) if traceback else Brief(fmt))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    if not traceback:
        quiet_pygls()
    import sys

    server.start_io(stdin=CappedStdin(sys.stdin.buffer))
    return server.protocol.exit_code

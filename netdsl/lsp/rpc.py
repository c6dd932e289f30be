"""JSON-RPC hardening under pygls 2.1: every request gets an answer, stderr stays one line per event.

pygls drops some messages without a word, and the client waits forever:
- a request it cannot decode (bad params; an id that is neither a number nor a string);
- a request whose ``"jsonrpc"`` is not ``"2.0"`` (it logs "Unknown message"), or that has none
  (its decoder returns such a message as a plain dict, and reading ``.jsonrpc`` off it fails);
- any request after ``shutdown`` (it logs "No more requests").
:class:`NetdslProtocol` answers them: InvalidParams (-32602) for bad params, InvalidRequest
(-32600) for the rest, with ``"id": null`` where the id is unusable, as JSON-RPC 2.0 says.
It also remembers ``exit``: pygls raises SystemExit(1) for an exit without shutdown, then
swallows it in ``start_io``, so the process ended 0; :attr:`NetdslProtocol.exit_code` keeps it.
"""

from __future__ import annotations

import logging

from cattrs import transform_error
from lsprotocol.types import EXIT
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcMethodNotFound
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger(__name__)
INVALID_REQUEST = -32600


def usable_id(msg_id) -> bool:
    """JSON-RPC ids are strings or numbers (true/false are not numbers here)."""
    return isinstance(msg_id, (str, int)) and not isinstance(msg_id, bool)


def _why(e: JsonRpcException) -> str:
    """cattrs' reasons, one short line (`invalid value @ $.params.position`)."""
    cause = e.__cause__
    if isinstance(cause, Exception):
        try:
            return "; ".join(transform_error(cause))[:300]
        except Exception:  # transform_error takes cattrs' errors only
            return str(cause).partition("\n")[0][:300]
    return e.message or type(e).__name__


def quiet_pygls() -> None:
    """pygls logs "Unable to deserialize message" with the whole traceback in the message; the
    protocol above reports each such message in one line of its own (--traceback keeps pygls')."""
    logging.getLogger("pygls.protocol.json_rpc").addFilter(
        lambda r: not str(r.msg).startswith("Unable to deserialize message")
    )


class _Refused:
    """A message pygls could not decode, or must not run: answered with an error, never handled."""

    jsonrpc = "2.0"

    def __init__(self, msg_id, code: int, why: str):
        self.id, self.code, self.why = msg_id, code, why


class NetdslProtocol(LanguageServerProtocol):
    exit_code = 0  # the end of input without `exit` ends the server normally

    def structure_message(self, data):
        # json.loads calls this for every object, innermost first: only a dict with "jsonrpc" is a message
        try:
            return super().structure_message(data)
        except JsonRpcException as e:
            why = _why(e)
            if not isinstance(data, dict) or "result" in data or "error" in data:
                log.warning("ignored a message pygls cannot read: %s", why)
                return _Refused(None, 0, "")  # a response or a notification: nobody waits for an answer
            if "id" not in data:
                log.warning("ignored notification %.100r: %s", data.get("method"), why)
                return _Refused(None, 0, "")
            msg_id = data["id"]
            if not usable_id(msg_id):
                return _Refused(None, INVALID_REQUEST, "the request's id is neither a number nor a string")
            if data.get("jsonrpc") != "2.0" or not isinstance(data.get("method"), str):
                return _Refused(msg_id, INVALID_REQUEST, 'not a JSON-RPC 2.0 request ("jsonrpc": "2.0", "method")')
            if self.get_message_type(data["method"]) is None:  # pygls wants params even for a method it lacks
                return _Refused(msg_id, JsonRpcMethodNotFound.CODE, f"unknown method {data['method']!r:.100}")
            return _Refused(msg_id, JsonRpcInvalidParams.CODE, f"invalid params for {data['method']}: {why}")

    def refuse(self, msg_id, code: int, why: str) -> None:
        log.warning("refused request %r: %s", msg_id, why)
        # a raw dict: pygls' own response type drops a null id, which JSON-RPC requires to be there
        self._send_data({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": why}})

    def handle_message(self, message):
        if isinstance(message, _Refused):
            if message.code and self._shutdown:
                return self.refuse(message.id, INVALID_REQUEST, "the server is shut down")
            return self.refuse(message.id, message.code, message.why) if message.code else None
        if not hasattr(message, "jsonrpc"):  # no "jsonrpc" (a bare dict), or not an object at all
            return self._bad_envelope(message)
        method = getattr(message, "method", None)
        is_request = method is not None and hasattr(message, "id")
        if is_request and not usable_id(message.id):  # pygls decodes {"a": 1} as an id, and answers to it
            return self.refuse(None, INVALID_REQUEST, "the request's id is neither a number nor a string")
        if message.jsonrpc != "2.0":
            if is_request:
                return self.refuse(message.id, INVALID_REQUEST, f'"jsonrpc" must be "2.0", not {message.jsonrpc!r}')
            log.warning("ignored a message whose jsonrpc is %r", message.jsonrpc)
            return None
        if method == EXIT:
            self.exit_code = 0 if self._shutdown else 1  # LSP: exit without shutdown ends with 1
        elif self._shutdown and is_request:
            return self.refuse(message.id, INVALID_REQUEST, f"{method}: the server is shut down")
        return super().handle_message(message)

    def _bad_envelope(self, message) -> None:
        if isinstance(message, dict) and "method" in message and "id" in message:
            msg_id = message["id"] if usable_id(message["id"]) else None
            return self.refuse(msg_id, INVALID_REQUEST, 'not a JSON-RPC 2.0 request (no "jsonrpc": "2.0")')
        if isinstance(message, dict) and "method" in message:
            log.warning('ignored a notification without "jsonrpc": "2.0"')
            return None
        if isinstance(message, dict) and ("result" in message or "error" in message):
            log.warning('ignored a response without "jsonrpc": "2.0"')
            return None
        return self.refuse(None, INVALID_REQUEST, "not a JSON-RPC request object")


MAX_MESSAGE = 64 * 1024 * 1024  # a larger Content-Length is skipped, not allocated
MAX_HEADER = 64 * 1024
_SKIPPED = b'{"jsonrpc": "2.0", "method": "$/netdsl/skipped"}'  # a notification nobody handles


class CappedStdin:
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
        log.warning("skipped a message of %d bytes (the limit is %d)", n, MAX_MESSAGE)
        return _SKIPPED


class Brief(logging.Formatter):
    """One line per event in the editor's log (a malformed message from the client, say):
    pygls writes whole tracebacks into some messages ("Unable to deserialize message\\n<traceback>"),
    so only a message's first line is kept, and an exception is its type and text.  --traceback
    uses the plain formatter."""

    def format(self, record: logging.LogRecord) -> str:
        first, _, rest = record.getMessage().partition("\n")
        if record.exc_info and record.exc_info[0] is not None:
            first += self.formatException(record.exc_info)
        elif rest.strip():  # a traceback written into the message ends with its "Type: text" line
            first += f"  ({rest.strip().splitlines()[-1].strip()[:300]})"
        brief = logging.makeLogRecord(
            {**record.__dict__, "msg": first, "args": None, "exc_info": None, "exc_text": None}
        )
        return super().format(brief)

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        text = str(ei[1]).partition("\n")[0][:300]
        return f"  ({ei[0].__name__}: {text})"

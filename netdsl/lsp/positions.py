"""Positions of one version of a document: netdsl's 1-based code-point line/column <-> LSP's.

pygls' own conversion splits the whole text on every call (``doc.lines``), so converting
every symbol or hint of a 10,000-line document was quadratic (documentSymbol took 20 s).
This table is built once per version: the lines split as LSP counts them (`\\r\\n`, `\\r`,
`\\n`), and for a line that is not ASCII the client's column of each code point, computed
the first time that line is asked for.  Each conversion is then O(1) (O(log n) from the
client's units).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate

from lsprotocol import types as t

_EOL = re.compile(r"\r\n|\r|\n")


class Positions:
    def __init__(self, source: str, units):
        """``units(ch) -> int``: how many of the client's code units the character ``ch`` takes."""
        self.source = source
        self.lines = _EOL.split(source)
        self.units = units
        self._cols: dict[int, list[int]] = {}  # line -> client column before each code point, and at the end

    def _table(self, ln: int) -> list[int] | None:
        text = self.lines[ln]
        if text.isascii():
            return None
        cols = self._cols.get(ln)
        if cols is None:
            cols = self._cols[ln] = [0, *accumulate(self.units(c) for c in text)]
        return cols

    def to_client(self, line: int, col: int) -> t.Position:
        """1-based line/column (code points) -> an LSP position (clamped into the document)."""
        ln = min(max(line - 1, 0), len(self.lines) - 1)
        ch = max(col - 1, 0)
        cols = self._table(ln)
        if cols is None:
            return t.Position(ln, ch)
        return t.Position(ln, cols[min(ch, len(cols) - 1)])

    def from_client(self, pos: t.Position) -> tuple[int, int]:
        """An LSP position -> 1-based line/column (code points)."""
        if not 0 <= pos.line < len(self.lines):
            return pos.line + 1, pos.character + 1
        cols = self._table(pos.line)
        if cols is None:
            return pos.line + 1, pos.character + 1
        # a column inside a surrogate pair (or past the end) lands on the code point it is in (or the end)
        return pos.line + 1, bisect_right(cols, pos.character)

    def end(self) -> t.Position:
        """The position just after the last character."""
        return self.to_client(len(self.lines), len(self.lines[-1]) + 1)

"""Errors with codes and source spans, and the compiler-style caret printer.

Every mistake a user can make in a spec ends as a :class:`NetdslError`::

    lenet5.net:7:1: error[E201]: dense needs a vector, got a 4x4x16 feature map
      7 | dense 120 sigmoid
        | ^^^^^
      note: the 4x4x16 feature map comes from line 6: maxpool 2/2
      hint: insert `flatten` (or `gap`) before it
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

from .codes import CODES


class Span(NamedTuple):
    """A region of the source: 1-based line and column, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def of(cls, item) -> Span:
        """The span of a Lark token or tree (with propagated positions)."""
        meta = getattr(item, "meta", item)
        line = getattr(meta, "line", None) or 1
        column = getattr(meta, "column", None) or 1
        end_line = getattr(meta, "end_line", None) or line
        end_column = getattr(meta, "end_column", None) or column + 1
        return cls(line, column, end_line, end_column)

    def to(self, other: Span) -> Span:
        return Span(self.line, self.column, other.end_line, other.end_column)


class Source(NamedTuple):
    """The text of a spec and the name it is shown under (a path, `<string>`, `<stdin>`)."""

    text: str
    filename: str = "<string>"

    def line(self, n: int) -> str:
        # the text is split once per text, not per call: a drawing asks for every node's
        # line, and splitting each time made 40,000 lines take a minute
        lines = _lines(self.text)
        return lines[n - 1].rstrip("\r") if 1 <= n <= len(lines) else ""


@lru_cache(maxsize=4)
def _lines(text: str) -> list[str]:
    return text.split("\n")


class NetdslError(Exception):
    """A located error in a spec.

    ``code`` is the stable error code (``E201``), ``line``/``column`` the 1-based
    position (``None`` for errors with no place in the source, such as an unused
    ``-D`` parameter), and ``str(err)`` the full message with the source line and a
    caret.  When several independent errors were found, ``errors`` lists them all
    and the attributes describe the first.  ``graph`` holds what could be built
    before the error (the renderer draws it), or ``None``.
    """

    def __init__(
        self,
        code: str,
        message: str,
        span: Span | None = None,
        *,
        hint: str | None = None,
        notes: Iterable[str] = (),
        source: Source | None = None,
    ):
        if code not in CODES:  # a bug in netdsl, not in the user's input: every code is registered
            raise ValueError(f"unregistered error code {code!r} (add it to netdsl/codes.py and docs/language.md)")
        self.code = code
        self.message = message
        self.span = span
        self.hint = hint
        self.notes = list(notes)
        self.source = source
        self.errors: list[NetdslError] = [self]
        self.stopped = False  # the front end gave up at its limit of errors: say so after them
        self.graph = None
        super().__init__(message)

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def column(self) -> int | None:
        return self.span.column if self.span else None

    @property
    def filename(self) -> str:
        return self.source.filename if self.source else "<string>"

    def located(self, source: Source) -> NetdslError:
        """Attach the source (once) so the message can quote it."""
        for err in self.errors:
            if err.source is None:
                err.source = source
        return self

    def format_one(self) -> str:
        where = self.filename
        if self.span:
            where += f":{self.span.line}:{self.span.column}"
        out = [f"{where}: error[{self.code}]: {self.message}"]
        if self.span and self.source is not None:
            text = self.source.line(self.span.line)
            if text:
                num = str(self.span.line)
                pad = " " * len(num)
                start = max(self.span.column - 1, 0)
                if self.span.end_line == self.span.line:
                    end = max(self.span.end_column - 1, start + 1)
                else:
                    end = max(len(text), start + 1)
                end = min(end, max(len(text), start + 1))
                end = min(end, start + 80)  # a caret under a 400-digit number is not useful
                if len(text) > 120:  # show a window around the caret, not a 100 kB line
                    lo = max(0, start - 40)
                    hi = min(len(text), max(end, start + 1) + 40)
                    text, start, end = text[lo:hi], start - lo, max(min(end, hi) - lo, start - lo + 1)
                    if lo:
                        text, start, end = "\u2026" + text, start + 1, end + 1
                    if hi < len(self.source.line(self.span.line)):
                        text += "\u2026"
                # keep tabs in the caret's indent so it lines up under the text
                indent = "".join(c if c == "\t" else " " for c in text[:start])
                out.append(f"  {num} | {_printable(text)}")
                out.append(f"  {pad} | {indent}{'^' * (end - start)}")
        out.extend(f"  note: {n}" for n in self.notes)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)

    def __str__(self) -> str:
        text = "\n".join(e.format_one() for e in self.errors)
        if self.stopped:
            text += f"\n{self.filename}: stopped after {len(self.errors)} errors (there may be more)"
        return text

    @classmethod
    def many(cls, errors: list[NetdslError], stopped: bool = False) -> NetdslError:
        first = errors[0]
        first.errors = list(errors)
        first.stopped = stopped
        return first


def _printable(text: str) -> str:
    """Control characters (a binary file) must not reach the terminal raw."""
    return "".join(c if c == "\t" or c.isprintable() else "\ufffd" for c in text)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``"did you mean `conv`?"`` for the closest choice, or None."""
    from difflib import get_close_matches

    low = {c.lower(): c for c in choices}
    cutoff = 0.5 if len(word) <= 3 else 0.6  # `e2` for `e1`, not only long words
    best = get_close_matches(word.lower(), [c for c in low if c != word.lower()], n=1, cutoff=cutoff)
    return f"did you mean `{low[best[0]]}`?" if best else None

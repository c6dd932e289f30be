"""Error collection for the front end: the one place every error goes through.

:meth:`Reporter.error` records an error and, at the limit of ``MAX_ERRORS``, stops
the whole front end by raising :class:`Stop`; :meth:`Reporter.fatal` records one and
stops at once (a limit was hit).  The driver catches :class:`Stop` around *all* the
work (hoisting, expansion, the checks after it), so no limit can escape as an
internal error, wherever it is raised.
"""

from __future__ import annotations

from ..errors import NetdslError, Span

MAX_ERRORS = 20
MAX_NOTES = 6  # "in the call to ..." notes on one error
MAX_CHOICES = 2_000  # "did you mean" looks at this many candidates at most


class Stop(Exception):
    """Stop the front end: too many errors, or a limit was hit (the error is recorded)."""


class Reporter:
    def __init__(self, notes=lambda: []):
        self.errors: list[NetdslError] = []
        self._seen: set = set()
        self._sites: set[Span] = set()
        self._notes = notes  # where we are: "in the call to `f` ...", "in pass 4 ..."

    def error(self, code: str, message: str, span: Span | None, hint: str | None = None, notes=()) -> None:
        if span is not None:
            self._sites.add(span)
        key = (code, message, span)
        if key in self._seen:  # the same mistake met again in a repeat pass or another call
            return
        self._seen.add(key)
        self.errors.append(NetdslError(code, message, span, hint=hint, notes=[*notes, *self.where()]))
        if len(self.errors) >= MAX_ERRORS:
            raise Stop

    def fatal(self, code: str, message: str, span: Span | None, hint: str | None = None) -> None:
        self.errors.append(NetdslError(code, message, span, hint=hint, notes=self.where()))
        raise Stop

    def where(self) -> list[str]:
        """The enclosing calls and passes, innermost first; 64 of them would bury the message."""
        notes = self._notes()
        if len(notes) > MAX_NOTES:
            notes = notes[: MAX_NOTES - 1] + [f"... inside {len(notes) - MAX_NOTES + 1} more calls and repeat passes"]
        return notes

    def reported_at(self, span: Span) -> bool:
        """An error was already reported at ``span`` (a repeat pass or call met it before):
        callers skip the costly "did you mean" search, which would find the same answer."""
        return span in self._sites


def suggest(word: str, choices) -> str | None:
    """``did you mean `x`?`` (as :func:`netdsl.errors.did_you_mean`) over at most
    ``MAX_CHOICES`` candidates whose length allows a match at all.

    difflib compares ``word`` with every choice; a net with 100,000 names must not make
    each unknown word cost 100,000 comparisons.
    """
    from difflib import get_close_matches  # only when there is something to suggest: a cold check skips it

    low = word.lower()
    n = len(low)
    cutoff = 0.5 if n <= 3 else 0.6  # `e2` for `e1`, not only long words
    pool: dict[str, str] = {}
    for c in choices:
        cl = c.lower()
        m = len(cl)
        if cl != low and 2 * min(n, m) >= cutoff * (n + m):  # difflib's ratio can reach the cutoff
            pool[cl] = c
            if len(pool) >= MAX_CHOICES:
                break
    best = get_close_matches(low, list(pool), n=1, cutoff=cutoff)
    return f"did you mean `{pool[best[0]]}`?" if best else None

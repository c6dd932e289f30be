"""Text → Lark tree: the grammar (built once, cached on disk), checks on the raw
text (encoding, size, nesting), and Lark's exceptions turned into located errors
with readable token names.  Users never see Lark internals.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from .errors import NetdslError, Source, Span

MAX_SOURCE_BYTES = 512 * 1024  # a 10,000-layer program is about 150 kB; `repeat` goes further
MAX_DIGITS = 30  # longer digit runs are refused before Python's int() sees them
MAX_NESTING = 64  # `{` and `(` deep

# ---- the grammar ---------------------------------------------------------------------

_HERE = Path(__file__).resolve().parent
GRAMMAR_CANDIDATES = (_HERE / "grammars" / "netdsl.lark", _HERE.parent / "grammars" / "netdsl.lark")
_PARSER = None


def grammar_path() -> Path:
    for p in GRAMMAR_CANDIDATES:
        if p.is_file():
            return p
    raise RuntimeError("netdsl is installed without its grammar (grammars/netdsl.lark); reinstall it")


def _cache_dir() -> Path:
    if os.environ.get("NETDSL_CACHE_DIR"):
        return Path(os.environ["NETDSL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "netdsl"


def lalr():
    """The LALR parser, built once and cached on disk (building takes ~0.1 s)."""
    global _PARSER
    if _PARSER is not None:
        return _PARSER
    import hashlib

    import lark

    text = grammar_path().read_text(encoding="utf-8")
    options = dict(parser="lalr", propagate_positions=False, maybe_placeholders=False)
    # the options are in the key too: a table built with other options must not be loaded
    key = f"{text}\0{lark.__version__}\0{sys.version}\0{sorted(options.items())}"
    key = hashlib.sha256(key.encode()).hexdigest()[:20]
    cache = _cache_dir() / f"grammar-{key}.lark"
    try:
        # Lark's cache is a pickle: load only a file that this user wrote and that
        # nobody else could have written (as pip and Python do for their caches)
        if _private(cache.parent) and _private(cache):
            with open(cache, "rb") as f:
                _PARSER = lark.Lark.load(f)
                return _PARSER
    except Exception:  # no cache yet, or an unreadable/foreign one: rebuild it
        pass
    try:
        _PARSER = lark.Lark(text, strict=True, **options)
    except lark.exceptions.LexError as e:  # strict mode needs interegular; the tests run strict
        if "interegular" not in str(e):
            raise
        _PARSER = lark.Lark(text, **options)
    try:
        cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            _PARSER.save(f)
        os.replace(tmp, cache)  # atomic: a reader never sees half a cache
    except OSError:
        pass  # a read-only home only costs speed
    return _PARSER


# ---- source checks before Lark ----------------------------------------------------


def _private(path: Path) -> bool:
    """Owned by this user and writable by no one else."""
    st = path.stat()
    return (not hasattr(os, "getuid") or st.st_uid == os.getuid()) and not st.st_mode & 0o022


def decode(data: bytes, filename: str) -> str:
    """Bytes → text, or a located error at the first byte that is not UTF-8."""
    if len(data) > MAX_SOURCE_BYTES:
        raise NetdslError(
            "E004",
            f"the spec is larger than the limit of {MAX_SOURCE_BYTES // 1024} KiB",
            source=Source("", filename),
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        head = data[: e.start].decode("utf-8", "replace")
        line = head.count("\n") + 1
        col = len(head) - (head.rfind("\n") + 1) + 1
        src = Source(data.decode("utf-8", "replace"), filename)
        raise NetdslError(
            "E003",
            f"the spec is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})",
            Span(line, col, line, col + 1),
            hint="is this the right file? netdsl specs are plain text",
            source=src,
        ) from None
    return text.removeprefix("\ufeff")


def _precheck(text: str) -> None:
    if len(text) > MAX_SOURCE_BYTES:
        raise NetdslError(
            "E004", f"the spec is too large: {len(text):,} characters (the limit is {MAX_SOURCE_BYTES // 1024} KiB)"
        )
    if "\x00" in text:
        i = text.index("\x00")
        line = text.count("\n", 0, i) + 1
        col = i - (text.rfind("\n", 0, i) + 1) + 1
        raise NetdslError(
            "E003", "the spec contains a NUL byte: this looks like a binary file", Span(line, col, line, col + 1)
        )
    depth, line, col0 = 0, 1, 0
    minuses = r"-(?:[ \t]*-){" + str(MAX_NESTING) + ",}"  # `- - -1` nests like parentheses (and parses slowly)
    for m in re.finditer(r"[{}()\n]|#[^\n]*|[0-9]{" + str(MAX_DIGITS + 1) + ",}|" + minuses, text):
        c = m.group()
        if c[0] == "-":
            col = m.start() - col0 + 1
            raise NetdslError(
                "E004",
                f"{c.count('-'):,} minus signs in a row: more than {MAX_NESTING} nest too deep",
                Span(line, col, line, col + len(c)),
                hint="one `-` negates; two cancel out",
            )
        if c[0].isdigit():
            col = m.start() - col0 + 1
            raise NetdslError(
                "E103", f"a number with {len(c):,} digits is too large", Span(line, col, line, col + len(c))
            )
        if c == "\n":
            line, col0 = line + 1, m.end()
        elif c in "{(":
            depth += 1
            if depth > MAX_NESTING:
                col = m.start() - col0 + 1
                raise NetdslError(
                    "E004",
                    f"blocks and parentheses are nested more than {MAX_NESTING} deep",
                    Span(line, col, line, col + 1),
                )
        elif c in "})":
            depth = max(depth - 1, 0)


# ---- syntax errors, in words -----------------------------------------------------------

_TOKEN_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "SIZE": "a size such as 6x5",
    "SIZE_STRIDE": "a size with a stride such as 2/2",
    "VALUES": "numbers such as 0.5x0.25x0.1",
    "_SEP": "the end of the statement",
    "$END": "the end of the input",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "COLON": "`:`",
    "EQUAL": "`=`",
    "COMMA": "`,`",
    "VBAR": "`|`",
    "MINUS": "`-`",
    "PLUS": "`+`",
    "STAR": "`*`",
    "SLASH": "`/`",
    "__ANON_0": "`//`",
}

_PYTHONISH = re.compile(
    r"^\s*(import\s|from\s+[\w.]+\s+import\s|def\s+\w+\s*\(.*\)\s*:|class\s|print\s*\(|return\b|\w+\s*=\s*[\w.]+\(|model\.|nn\.|tf\.|keras\.)"
)


PYTHON_HINT = "this looks like Python; a netdsl spec is a list of layers, e.g. `conv 6x5 relu; maxpool 2`"


def looks_like_python(line: str) -> bool:
    return bool(_PYTHONISH.search(line or ""))


def _describe_token(tok) -> str:
    if tok.type == "$END":
        return "end of input"
    if tok.type == "_SEP":
        return "end of line" if "\n" in tok.value else "`;`"
    return f"`{tok.value}`"


def _expected(names) -> str | None:
    words = sorted({_TOKEN_WORDS.get(n, f"`{n.lower()}`") for n in names})
    if not words or len(words) > 4:
        return None
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _block_typo(line: str, column: int) -> str | None:
    """`repaet 3 {` → did you mean `repeat`?"""
    from .errors import did_you_mean

    words = re.findall(r"[A-Za-z_]\w*", line[: column - 1])
    return (
        did_you_mean(words[-1] if len(words) == 1 else words[0], ("residual", "repeat", "add", "concat", "mul", "def"))
        if words
        else None
    )


def _in_layer(line: str, column: int) -> bool:
    """Is the statement around ``column`` a layer (`conv -c x 3`), not `data`, `let`, a def header...?"""
    from .ops import lookup

    start = max(line.rfind(";", 0, column - 1), line.rfind("{", 0, column - 1), line.rfind("|", 0, column - 1))
    m = re.match(r"\s*(?:\w+\s*:\s*)?([A-Za-z_]\w*)", line[start + 1 :])
    return bool(m and lookup(m.group(1)))


def _unclosed(text: str) -> Span | None:
    stack = []
    for m in re.finditer(r"[{}\n]|#[^\n]*", text):
        if m.group() == "{":
            stack.append(m.start())
        elif m.group() == "}" and stack:
            stack.pop()
    if not stack:
        return None
    i = stack[-1]
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return Span(line, col, line, col + 1)


def syntax_error(e: Exception, text: str) -> NetdslError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedToken

    line_text = ""
    if isinstance(e, UnexpectedCharacters):
        line_text = text.split("\n")[e.line - 1] if e.line >= 1 else ""
        rest = text[e.pos_in_stream :]
        char = rest[:1]
        glued = re.match(
            r"[\w.]+", text[max(0, e.pos_in_stream - 20) : e.pos_in_stream + 40][min(20, e.pos_in_stream) :]
        )
        span = Span(e.line, e.column, e.line, e.column + 1)
        hint = None
        if char.isdigit() or (char == "." and rest[1:2].isdigit()):
            word = glued.group() if glued else char
            span = Span(e.line, e.column, e.line, e.column + len(word))
            msg = f"`{word}` is not a number or a size"
            after = text[e.pos_in_stream + len(word) : e.pos_in_stream + len(word) + 1]
            if re.fullmatch(r"\d+x", word) and after in ("(", " ", "\t", ""):
                hint = (
                    f"a size with a name or an expression puts spaces around x: `{word[:-1]} x (k)`, `{word[:-1]} x k`"
                )
            elif re.fullmatch(r"\d+[xX\u00d7]\d+.*", word) and re.search(r"[A-Z\u00d7]", word):
                hint = "sizes are written with a lowercase x: 28x28x1"
            elif re.fullmatch(r"[0-9]+(x[0-9]+)*(/[0-9]+)?[A-Za-z_]\w*", word):
                hint = "separate the size from the next word with a space, e.g. `6x5 relu`"
            else:
                hint = "numbers look like 3, 0.5, .5 or 1e-3; sizes like 6x5 or 2/2"
        elif char in "\"'":
            msg = "netdsl has no strings"
            hint = "write words bare, e.g. `padding=same`"
        elif char == "\u00d7":
            msg = "unexpected character `\u00d7`"
            hint = "sizes are written with the letter x: 6x5"
        elif char == "\t" or char.isprintable():
            msg = f"unexpected character `{char}`"
        else:
            msg = f"unexpected character U+{ord(char):04X}"
        err = NetdslError("E001", msg, span, hint=hint)
    elif isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            lines = text.split("\n")
            n = len(lines)
            span = Span(n, len(lines[-1]) + 1, n, len(lines[-1]) + 2)
        else:
            span = Span.of(tok)
            if tok.type == "_SEP":  # point at the newline/`;` itself, not the blank lines after it
                span = Span(span.line, span.column, span.line, span.column + 1)
        line_text = text.split("\n")[span.line - 1] if span.line - 1 < len(text.split("\n")) else ""
        expected = _expected(e.accepts or e.expected)
        msg = f"unexpected {_describe_token(tok)}" + (f"; expected {expected}" if expected else "")
        hint = None
        if tok.type in ("$END", "_SEP") and "RBRACE" in (e.accepts or e.expected):
            open_at = _unclosed(text)
            if tok.type == "$END" and open_at:
                msg = "this `{` is never closed"
                span = open_at
                line_text = text.split("\n")[span.line - 1]
                hint = "add `}` at the end of the block"
        elif tok.type == "MINUS" and _in_layer(line_text, span.column):
            hint = "arithmetic in shorthand goes in parentheses, `conv (n-1) x 3`, `leakyrelu (-1)`; or use keywords: `filters=n-1`"
        elif tok.type == "EQUAL":
            hint = "variables are defined with `let NAME = VALUE`; layer arguments are written `conv filters=6`"
        elif tok.type == "LBRACE" and re.match(r"\s*\w+\s*:\s*repeat\b", line_text, re.I):
            msg = "a `repeat` cannot be labelled"
            hint = "label a layer inside it; its names get the pass number: `b` becomes `b_1`, `b_2`, ..."
        elif tok.type == "LBRACE" and _block_typo(line_text, span.column):
            hint = _block_typo(line_text, span.column)
        elif tok.type == "LBRACE":
            hint = "a block starts with `residual {`, `add {`, `concat {`, `mul {`, `repeat N {` or `def NAME(...) {`"
        elif tok.type == "RBRACE":
            hint = "this `}` closes no block"
        err = NetdslError("E002", msg, span, hint=hint)
    else:  # pragma: no cover - lark raises only the two above for LALR
        err = NetdslError("E002", f"syntax error: {e}", None)
    if looks_like_python(line_text):
        err.hint = PYTHON_HINT
    return err


def parse_tree(text: str):
    """Text → Lark tree, or a located :class:`NetdslError`."""
    from lark.exceptions import UnexpectedInput

    _precheck(text)
    try:
        return lalr().parse(text)
    except UnexpectedInput as e:
        raise syntax_error(e, text) from None

"""How `netdsl fmt` prints arguments and expressions (the layout of statements is in
:mod:`netdsl.fmt`): shorthand for the layers that have it, sizes, keywords, and expressions
with only the parentheses the grammar needs.  A node this module does not know (added to
the language later, such as the sweep's `Space`) is printed as its source text."""

from __future__ import annotations

import re

from .errors import Span
from .frontend import syntax as s

_NUMBER = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2}
DEEP = 200  # expressions with more nodes than this are printed as written (no recursion on 100,000 terms)


class ArgPrinter:
    """Arguments and expressions of one spec's text (``self.text``, ``self.starts``: line offsets)."""

    text: str
    starts: list[int]

    def snippet(self, span: Span) -> str:
        a = self.starts[span.line - 1] + span.column - 1
        b = self.starts[span.end_line - 1] + span.end_column - 1
        return self.text[a:b]

    def layer_args(self, op: str, args) -> list[str]:
        """A layer's arguments in shorthand where the layer has one: the size first (built from
        `filters=`/`kernel=`/`stride=`, `size=`, `units=`, `rate=` when no size is written), then
        the activation and padding words, then the keywords left, as written.  Keyword values
        become shorthand only when shorthand reads them the same way (numbers, variables,
        parenthesised expressions, literal sizes; activation and padding words)."""
        from .ops import ACTIVATIONS, PADDINGS, WORDS

        if op not in SHORTHAND or any(isinstance(a, s.Keyword) and not isinstance(a.key, s.Word) for a in args):
            return [self.arg(a) for a in args]
        keys = [a.key.text.lower() for a in args if isinstance(a, s.Keyword)]
        if len(keys) != len(set(keys)):  # a key twice is an error; print as written
            return [self.arg(a) for a in args]
        kw = {a.key.text.lower(): a.value for a in args if isinstance(a, s.Keyword)}
        is_word = lambda a: isinstance(a, s.Name) and a.name.lower() in WORDS  # noqa: E731
        sizes = [a for a in args if not isinstance(a, s.Keyword) and not is_word(a)]
        words = [a for a in args if is_word(a)]
        used: set[str] = set()
        head: list[str] = [self.arg(a) for a in sizes]
        main, stride_key = SHORTHAND[op]
        if not sizes and all(k in kw and self.dims_of(k, kw[k]) is not None for k in main):
            dims = [d for k in main for d in self.dims_of(k, kw[k])]
        else:
            dims = []
        if dims and not _is_x(dims[0]):  # `conv filters=x kernel=3`: a size cannot start with the name `x`
            stride = kw.get(stride_key) if stride_key else None
            if stride is not None and not _stride_ok(stride):
                stride = None
            used = {*main, *([stride_key] if stride is not None else [])}
            head = [self.shorthand_size(dims, stride)]
        acts = [self.arg(a) for a in words if a.name.lower() in ACTIVATIONS]
        pads = [self.arg(a) for a in words if a.name.lower() not in ACTIVATIONS]
        for key, pool, out in (("activation", ACTIVATIONS, acts), ("padding", PADDINGS, pads)):
            v = kw.get(key)
            if isinstance(v, s.Name) and v.name.lower() in pool and not out:
                out.append(v.name)
                used.add(key)
        rest = [self.arg(a) for a in args if isinstance(a, s.Keyword) and a.key.text.lower() not in used]
        return head + acts + pads + rest

    def dims_of(self, key: str, v) -> list | None:
        """The shorthand dimensions a keyword value gives, or None when shorthand cannot say it."""
        from .ops import WORDS

        if isinstance(v, s.Size):
            return list(v.dims) if v.literal and v.stride is None and key in ("kernel", "size") else None
        if isinstance(v, s.Name) and v.name.lower() in WORDS:
            return None
        if isinstance(v, s.Num | s.Name | s.Neg | s.BinOp):
            return [v]
        return None

    def shorthand_size(self, dims: list, stride, paren_first: bool = False) -> str:
        """`6x5/2` when every part is a whole number written in digits, else `c x (k+1)/s`;
        ``paren_first``: the first part in parentheses (`conv (k) x 3`, a layer written as a call)."""
        literal = all(_digits(self, d) for d in dims) and (
            stride is None or _digits(self, stride) or (isinstance(stride, s.Size) and stride.literal)
        )
        if literal and not paren_first:
            text = "x".join(self.expr(d) for d in dims)
        else:
            # a variable named `x` is the separator to the lexer: `8 x (x)`, never `8 x x`
            parts = [f"({self.expr(d)})" if _is_x(d) else self.atom(d, True) for d in dims]
            if paren_first and parts and not parts[0].startswith("("):
                parts[0] = f"({parts[0]})"
            text = " x ".join(parts)
        if stride is not None:
            if isinstance(stride, s.Size):
                text += "/" + self.size(stride)
            else:
                text += "/" + (f"({self.expr(stride)})" if _is_x(stride) else self.atom(stride, True))
        return text

    def arg(self, a) -> str:
        """A shorthand argument: a size, a keyword, or an atom (anything else in parentheses)."""
        if isinstance(a, s.Keyword):
            return self.keyword(a, lower=True)
        if isinstance(a, s.Size):
            return self.size(a)
        return self.atom(a, True)

    def keyword(self, k: s.Keyword, lower: bool = False) -> str:
        key = k.key.text.lower() if lower else k.key.text
        v = self.size(k.value) if isinstance(k.value, s.Size) else self.expr(k.value, compact=True)
        return f"{key}={v}"

    def size(self, z: s.Size, paren_first: bool = False) -> str:
        if z.literal:
            return self.snippet(z.span)
        return self.shorthand_size(list(z.dims), z.stride, paren_first)

    def atom(self, e, compact: bool = False) -> str:
        text = self.expr(e, compact)
        return text if _prec(e) >= 4 else f"({text})"

    # -- expressions ---------------------------------------------------------------------

    def expr(self, e, compact: bool = False) -> str:
        match e:
            case s.Num(value=v, span=sp):
                written = self.snippet(sp)
                return written if _NUMBER.match(written) else (str(v) if isinstance(v, int) else repr(v))
            case s.Name(name=n):
                return n
            case s.Neg(operand=x, size=n) if n <= DEEP:
                inner = self.expr(x, compact)
                return "-" + (inner if _prec(x) >= 3 else f"({inner})")
            case s.BinOp(op=op, left=a, right=b, size=n) if n <= DEEP:
                p = _PREC[op]
                left, right = self.expr(a, compact), self.expr(b, compact)
                if _prec(a) < p:
                    left = f"({left})"
                if _prec(b) <= p:
                    right = f"({right})"
                return f"{left}{op}{right}" if compact else f"{left} {op} {right}"
            case s.Space(kind=kind, args=args):  # a search space: `choice(16, 32)`, `log(1e-4, 1e-2)`
                return f"{kind}({', '.join(self.expr(a, compact) for a in args)})"
        return self.snippet(e.span)  # a deep expression, or a node added later: as written


# layers whose shorthand size the formatter writes: op -> (the keys the size gives, the stride's key)
SHORTHAND = {
    "conv": (("filters", "kernel"), "stride"),
    "maxpool": (("size",), "stride"),
    "avgpool": (("size",), "stride"),
    "dense": (("units",), None),
    "dropout": (("rate",), None),
    "upsample": (("size",), None),
}


def _is_x(e) -> bool:
    return isinstance(e, s.Name) and e.name == "x"


def _digits(f: ArgPrinter, e) -> bool:
    return isinstance(e, s.Num) and f.expr(e).isdigit()


def _stride_ok(v) -> bool:
    return (isinstance(v, s.Size) and v.literal and v.stride is None) or isinstance(v, s.Num | s.Name | s.Neg | s.BinOp)


def _prec(e) -> int:
    match e:
        case s.BinOp(op=op, size=n) if n <= DEEP:
            return _PREC[op]
        case s.Neg(size=n) if n <= DEEP:
            return 3
        case s.BinOp() | s.Neg():  # printed as written: keep it whole
            return 0
    return 4

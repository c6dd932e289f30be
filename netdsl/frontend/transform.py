"""Lark tree -> typed syntax tree (:mod:`netdsl.frontend.syntax`).

This is the only module that knows the grammar's child positions: reorder a rule in
grammars/netdsl.lark and only this file changes.  It runs without recursion
(an explicit stack), so `1+1+...+1` with 100,000 terms is fine, and
it never raises: whatever is odd is kept in the tree for the expander to report.
"""

from __future__ import annotations

import re

from lark import Token, Tree

from ..errors import Span
from ..ops import WORDS
from . import syntax as s

_COMMENT = re.compile(r"#[^\n]*")
_GLUED_X = re.compile(r"x([0-9]+|[A-Za-z_]\w*)\Z")  # `x3` / `xk` right after `)`: (2*c)x3


def to_syntax(tree, text: str) -> s.Program:
    """The Lark tree of ``text`` as a :class:`~netdsl.frontend.syntax.Program`.

    The walk is Lark's ``Transformer_NonRecursive`` made lean: post-order with an
    explicit stack, one dict lookup per node (a 200,000-term sum is 400,000 nodes).
    Spans are computed here, from the first to the last child with a position (Lark's
    ``propagate_positions`` would cost a third of the parse): brackets and the unary
    minus are named terminals in the grammar so that they stay among the children.
    """
    t = _ToSyntax(text)
    rules: dict = {}
    order, todo = [], [tree]
    while todo:  # pre-order; reversed, every child comes before its parent
        x = todo.pop()
        order.append(x)
        todo.extend(c for c in x.children if type(c) is Tree)
    done: dict[int, object] = {}
    for x in reversed(order):
        args = [done.pop(id(c)) if type(c) is Tree else c for c in x.children]
        f = rules.get(x.data) or rules.setdefault(x.data, getattr(t, x.data))
        done[id(x)] = f(t.extent(args), args)
    return done[id(tree)]


def comments(text: str) -> tuple[s.Comment, ...]:
    """Every `#` comment with its span.  netdsl has no strings, so every `#` starts one."""
    out, line, line_start, pos = [], 1, 0, 0
    for m in _COMMENT.finditer(text):
        nl = text.count("\n", pos, m.start())
        if nl:
            line += nl
            line_start = text.rfind("\n", 0, m.start()) + 1
        pos = m.start()
        col = m.start() - line_start + 1
        out.append(s.Comment(m.group(), Span(line, col, line, col + len(m.group()))))
    return tuple(out)


def _tok(t: Token) -> Span:
    return _new(Span, (t.line, t.column, t.end_line, t.end_column))


def _word(t: Token) -> s.Word:
    return s.Word(str(t), _tok(t))


def _number(text: str) -> int | float:
    return int(text) if text.isdigit() else float(text)


_new = tuple.__new__  # Span(...) without NamedTuple's keyword handling: a 200,000-term sum makes 400,000


def _is(x, kind: str) -> bool:
    return isinstance(x, Token) and x.type == kind


def _space(self, span, children):
    """`choice(16, 32)`: the kind token carries its `(`."""
    node = s.Space(str(children[0])[:-1], tuple(self._expr(c) for c in children[1:-1]), span)
    self.spaces.append(node)
    return node


def _values(t: Token) -> s.Size:
    """`mean=0.49x0.48x0.45`: numbers, one per channel, as a literal size of floats."""
    return s.Size(tuple(s.Num(float(d), _tok(t)) for d in str(t).split("x")), None, _tok(t), literal=True)


class _ToSyntax:
    """One method per grammar rule, called with the rule's span (None for an empty body)
    and its children already converted."""

    def __init__(self, text: str):
        self.text = text
        self.outer: dict[int, Span] = {}  # id(expr) -> span with its parentheses
        self.spaces: list[s.Space] = []  # search spaces, in the order they end in the text

    # -- program and statements -----------------------------------------------------

    def start(self, span, children):
        return s.Program(tuple(children), comments(self.text), tuple(sorted(self.spaces, key=lambda x: x.span)))

    def body(self, span, children):
        return s.Body(tuple(children), span)

    def input_stmt(self, span, children):
        return s.Input(_word(children[0]), self._args(children[1:]), span)

    def layer(self, span, children):
        return s.Layer(_word(children[0]), self._args(children[1:]), span)

    def call(self, span, children):
        name, lpar = children[0], children[1]
        close = next(i for i, c in enumerate(children) if _is(c, "RPAR"))
        args = tuple(self._value(c) for c in children[2:close])
        tail = list(children[close + 1 :])
        shorthand = None
        if len(args) == 1 and not isinstance(args[0], s.Keyword):  # `conv (2*c)x3/2`, `dense (n+1)`
            self.outer[id(args[0])] = _tok(lpar).to(_tok(children[close]))
            items = [args[0], *tail]
            if tail and isinstance(tail[0], _Tail):  # `(k)/2`: the stride belongs to the parenthesis
                items = [_Stride(args[0], tail[0].right, tail[0].span), *tail[1:]]
            shorthand = self._args(items)
        glued = lpar.start_pos == name.end_pos
        rest = self._args(tail[1:] if tail and isinstance(tail[0], _Tail) else tail)
        return s.Call(_word(name), args, span, rest, glued, shorthand)

    def stride_tail(self, span, children):
        return _Tail(children[1], span)

    def labeled(self, span, children):
        return s.Labeled(_word(children[0]), children[1], span)

    def from_stmt(self, span, children):
        return s.From(_word(children[1]), span)

    def merge(self, span, children):
        return s.Merge(_word(children[0]), tuple(_word(t) for t in children[1:]), span)

    def residual(self, span, children):
        return s.Residual(_word(children[0]), children[2], span)

    def parallel(self, span, children):
        paths = tuple(c for c in children if isinstance(c, s.Body))
        return s.Parallel(_word(children[0]), paths, span)

    def repeat(self, span, children):
        return s.Repeat(_word(children[0]), self._expr(children[1]), children[3], span)

    def let_stmt(self, span, children):
        return s.Let(_word(children[1]), self._expr(children[2]), span)

    def param(self, span, children):
        default = self._expr(children[1]) if len(children) > 1 else None
        return s.Param(_word(children[0]), default, span)

    def def_stmt(self, span, children):
        params = tuple(c for c in children if isinstance(c, s.Param))
        return s.Def(_word(children[0]), _word(children[1]), params, children[-2], span)

    def train_stmt(self, span, children):
        opt = _word(children[1]) if len(children) > 1 and isinstance(children[1], Token) else None
        settings = tuple(c for c in children[1:] if isinstance(c, s.Keyword))
        return s.Train(_word(children[0]), opt, settings, span)

    def data_stmt(self, span, children):
        return s.Data(_word(children[0]), tuple(_word(t) for t in children[1:]), span)

    # -- arguments -----------------------------------------------------------------------

    def kwarg(self, span, children):
        return s.Keyword(_word(children[0]), self._value(children[1]), span)

    def stride(self, span, children):
        return _Stride(children[0], children[2], span)

    paren_stride = stride

    def _value(self, c):
        if isinstance(c, s.Keyword):
            return c
        if _is(c, "SIZE") or _is(c, "VALUES"):  # `kernel=3x1`; `mean=0.49x0.48x0.45`
            return self._literal(c) if _is(c, "SIZE") else _values(c)
        return self._expr(c)

    def _expr(self, c):
        if _is(c, "NUMBER"):
            return s.Num(_number(c), _tok(c))
        if _is(c, "NAME"):
            return s.Name(str(c), _tok(c))
        return c

    def _literal(self, t: Token) -> s.Size:
        """`6x5` or `32x3/2`, one token: the form sizes had before names were allowed."""
        text, stride = str(t), None
        if "/" in text:
            text, st = text.split("/")
            stride = s.Num(int(st), _tok(t))
        dims = tuple(s.Num(int(d), _tok(t)) for d in text.split("x"))
        return s.Size(dims, stride, _tok(t), literal=True)

    def _dim(self, c):
        """One part of a size as an expression, or None when ``c`` cannot be one."""
        if _is(c, "NUMBER") or (_is(c, "NAME") and c.lower() not in WORDS and c != "x"):
            return self._expr(c)
        if isinstance(c, s.Num | s.Name | s.Neg | s.BinOp | s.Space):
            return c
        return None

    def extent(self, children) -> Span | None:
        """From the start of the first child to the end of the last (skipping an empty body).
        Written out by hand: it runs once per node, 400,000 times for the largest sum."""
        outer = self.outer
        for c in children:
            if type(c) is Token:
                line, col = c.line, c.column
                break
            sp = outer.get(id(c)) or c.span
            if sp is not None:
                line, col = sp[0], sp[1]
                break
        else:
            return None
        for c in reversed(children):
            if type(c) is Token:
                return _new(Span, (line, col, c.end_line, c.end_column))
            sp = outer.get(id(c)) or c.span
            if sp is not None:
                return _new(Span, (line, col, sp[2], sp[3]))
        return None  # pragma: no cover - the first loop found a position

    def _span(self, c) -> Span | None:
        if isinstance(c, Token):
            return _tok(c)
        return self.outer.get(id(c), c.span)

    def _split_glued(self, items: list) -> list:
        """`(2*c)x3`: the lexer reads `x3` as a name; after `)` it is `x` and `3`."""
        out = []
        for c in items:
            head = c.left if isinstance(c, _Stride) else c
            if _is(head, "NAME") and head.start_pos and self.text[head.start_pos - 1] == ")":
                m = _GLUED_X.match(str(head))
                if m:
                    rest = m.group(1)
                    kind = "NUMBER" if rest.isdigit() else "NAME"
                    x = Token("NAME", "x", head.start_pos, head.line, head.column, head.line, head.column + 1)
                    part = Token(
                        kind, rest, head.start_pos + 1, head.line, head.column + 1, head.end_line, head.end_column
                    )
                    out.append(x)
                    out.append(_Stride(part, c.right, c.span) if isinstance(c, _Stride) else part)
                    continue
            out.append(c)
        return out

    def _args(self, items) -> tuple:
        """Group the flat argument list: `c x 3/2` is one size; everything else stays one argument each."""
        if not any(isinstance(c, _Stride) or (isinstance(c, Token) and c[:1] == "x") for c in items):
            return tuple(self._literal(c) if _is(c, "SIZE") or _is(c, "SIZE_STRIDE") else self._expr(c) for c in items)
        items = self._split_glued(list(items))
        out: list = []
        i = 0
        while i < len(items):
            c = items[i]
            if isinstance(c, s.Keyword):
                out.append(c)
                i += 1
                continue
            if _is(c, "SIZE") or _is(c, "SIZE_STRIDE"):
                out.append(self._literal(c))
                i += 1
                continue
            first = c.left if isinstance(c, _Stride) else c
            dims, j, stride, end = [first], i + 1, c.right if isinstance(c, _Stride) else None, c
            while stride is None and j + 1 < len(items) and _is(items[j], "NAME") and items[j] == "x":
                nxt = items[j + 1]
                if _is(nxt, "SIZE") or _is(nxt, "SIZE_STRIDE"):  # `c x 3/2`, `c x 3x1`: the lexer joined the rest
                    lit = self._literal(nxt)
                    dims.extend(lit.dims)
                    stride, end, j = lit.stride, nxt, j + 2
                    break
                part = nxt.left if isinstance(nxt, _Stride) else nxt
                if self._dim(part) is None:
                    break
                dims.append(part)
                stride = nxt.right if isinstance(nxt, _Stride) else None
                end, j = nxt, j + 2
            if len(dims) == 1 and stride is None:  # a plain argument: a number, word, variable or (expr)
                out.append(self._expr(c))
                i += 1
                continue
            out.append(self._size(dims, stride, c, end))
            i = j
        return tuple(out)

    def _size(self, dims, stride, start, end) -> s.Size:
        parts = []
        for d in dims:
            if _is(d, "SIZE"):  # `3x3/k`: a literal size with a named stride
                parts.extend(self._literal(d).dims)
            else:
                parts.append(self._dim(d) or self._expr(d))
        a = self._span(start.left if isinstance(start, _Stride) else start)
        b = end.span if isinstance(end, _Stride) else self._span(end)
        if stride is None:
            st = None
        elif _is(stride, "SIZE"):  # `8x3/2x2`: a stride per axis, as `stride=2x2`
            st = self._literal(stride)
        else:
            st = self._dim(stride) or self._expr(stride)
        return s.Size(tuple(parts), st, a.to(b))

    # -- expressions -----------------------------------------------------------------------

    def number(self, span, children):
        return s.Num(_number(children[0]), span)

    def var(self, span, children):
        return s.Name(str(children[0]), span)

    def paren(self, span, children):
        inner = self._expr(children[1])
        self.outer[id(inner)] = span
        return inner

    def neg_op(self, span, children):
        operand = children[-1]  # operands are nodes already: `number`, `var`, `paren` or an operation
        return s.Neg(operand, span, 1 + getattr(operand, "size", 1))

    def _bin(op):  # noqa: N805 - a factory used in the class body
        def rule(self, span, children):
            a, b = children[0], children[-1]
            return s.BinOp(op, a, b, span, 1 + getattr(a, "size", 1) + getattr(b, "size", 1))

        return rule

    add_op, sub_op, mul_op, div_op, floordiv_op = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("//")


_ToSyntax.space = _space  # search spaces (netdsl sweep): the rule kept out of the class, which is at its size limit


class _Stride:
    """`left/right` while the arguments are being grouped."""

    __slots__ = ("left", "right", "span")

    def __init__(self, left, right, span):
        self.left, self.right, self.span = left, right, span


class _Tail(_Stride):
    def __init__(self, right, span):
        super().__init__(None, right, span)

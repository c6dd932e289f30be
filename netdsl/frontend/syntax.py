"""The typed syntax tree: what a spec says, with where it says it.

Made by :mod:`netdsl.frontend.transform` (the only code that knows the grammar's
shape) and read by the expander with ``match``.  Every node is a frozen dataclass
with a :class:`~netdsl.errors.Span`.  Equality is identity (``eq=False``): an
expression may be 100,000 levels deep, and a generated ``__eq__`` or ``__hash__``
would recurse through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Span


def _repr(self) -> str:
    return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self.__match_args__)})"


def node(cls):
    """A frozen, slotted dataclass.  A cold `netdsl check` creates every node class, so
    they are made cheaply: each has a docstring (without one, @dataclass computes a
    signature for it) and all share one ``__repr__`` instead of generating their own."""
    cls = dataclass(frozen=True, slots=True, eq=False, repr=False)(cls)
    cls.__repr__ = _repr
    return cls


# statement keywords: reserved at the start of a statement, and never a def's name
STATEMENT_WORDS = (
    "input",
    "from",
    "add",
    "concat",
    "mul",
    "residual",
    "repeat",
    "let",
    "def",
    "train",
    "data",
    "identity",
)


@node
class Word:
    """A name as written: a layer, label, keyword, variable or def name."""

    text: str
    span: Span


@node
class Comment:
    """A `#` comment."""

    text: str  # from `#` to the end of the line
    span: Span


# ---- expressions -----------------------------------------------------------------------


@node
class Num:
    """A number literal."""

    value: int | float
    span: Span


@node
class Name:
    """A variable, parameter or bare word (`relu`, `same`) used as a value."""

    name: str
    span: Span


@node
class Neg:
    """`-operand`."""

    operand: Expr
    span: Span
    size: int = 2  # nodes in this expression: its evaluation costs at least that much work


@node
class BinOp:
    """`left op right`."""

    op: str  # + - * / //
    left: Expr
    right: Expr
    span: Span
    size: int = 3


@node
class Space:
    """A search space for `netdsl sweep`: `choice(16, 32)`, `int(1, 4)`, `float(0.1, 0.5)`,
    `log(1e-4, 1e-2)`.  :mod:`netdsl.frontend.spaces` names it and replaces it by one
    candidate's value before the expander runs, so nothing past that sees it."""

    kind: str  # choice | int | float | log
    args: tuple[Expr, ...]
    span: Span


Expr = Num | Name | Neg | BinOp | Space


@node
class Size:
    """A shorthand size: `6x5/2` (literal), `c x 3`, `(2*c)x3/2`, `k/s`.

    ``dims`` are expressions (numbers for a literal); ``stride`` is one, a literal Size
    (`8x3/2x2`, a stride per axis) or None.
    ``literal`` marks the single-token form, whose meaning predates names in sizes.
    """

    dims: tuple[Expr, ...]
    stride: Expr | Size | None
    span: Span
    literal: bool = False


@node
class Keyword:
    """`key=value`; the value is an expression or a literal size (`kernel=3x1`)."""

    key: Word
    value: Expr | Size
    span: Span


Arg = Size | Num | Name | Neg | BinOp | Space | Keyword  # a Num/Name/expr alone is a one-number size or a word


# ---- statements -------------------------------------------------------------------------


@node
class Body:
    """The statements between `{` and `}` (or between `|` in a parallel block)."""

    stmts: tuple[Stmt, ...]
    span: Span  # from the opening bracket (or `|`) to the closing one


@node
class Input:
    """`input 28x28x1`."""

    keyword: Word
    args: tuple[Arg, ...]
    span: Span


@node
class Layer:
    """`conv 6x5 relu`: the layer word and its shorthand and keyword arguments."""

    name: Word
    args: tuple[Arg, ...]
    span: Span


@node
class Call:
    """`name(args)`.  A layer written with a parenthesis first (`conv (2*c)x3/2`,
    `dense (n+1)`) parses as a call too: ``shorthand`` then holds its arguments as a
    layer's (the parenthesis first), and ``tail`` what follows the `)`."""

    name: Word
    args: tuple[Expr | Keyword, ...]
    span: Span
    tail: tuple[Arg, ...] = ()
    glued: bool = True  # `(` right after the name: `f(3)`, not `dense (n)`
    shorthand: tuple[Arg, ...] | None = None


@node
class Labeled:
    """`name: statement`."""

    label: Word
    inner: Layer | Call | Merge | Residual | Parallel
    span: Span


@node
class From:
    """`from name`."""

    target: Word
    span: Span


@node
class Merge:
    """`add a b` / `concat a b`."""

    kind: Word  # add | concat
    names: tuple[Word, ...]
    span: Span


@node
class Residual:
    """`residual { body }`."""

    keyword: Word
    body: Body
    span: Span


@node
class Parallel:
    """`add { a | b }` / `concat { a | b }`."""

    kind: Word  # add | concat
    paths: tuple[Body, ...]
    span: Span


@node
class Repeat:
    """`repeat N { body }`."""

    keyword: Word
    count: Expr
    body: Body
    span: Span


@node
class Let:
    """`let name = value`."""

    name: Word
    value: Expr
    span: Span


@node
class Param:
    """A def parameter, with its default."""

    name: Word
    default: Expr | None
    span: Span


@node
class Def:
    """`def name(params) { body }`."""

    keyword: Word
    name: Word
    params: tuple[Param, ...]
    body: Body
    span: Span


@node
class Train:
    """`train sgd lr=0.1 ...`."""

    keyword: Word
    optimizer: Word | None  # the bare word after `train`
    settings: tuple[Keyword, ...]
    span: Span


@node
class Data:
    """`data mnist`."""

    keyword: Word
    words: tuple[Word, ...]  # `fashion-mnist` is two words joined by `-`
    span: Span


Stmt = Input | Layer | Call | Labeled | From | Merge | Residual | Parallel | Repeat | Let | Def | Train | Data


@node
class Program:
    """A whole spec."""

    stmts: tuple[Stmt, ...]
    comments: tuple[Comment, ...]  # every comment, in source order (the formatter needs them)
    spaces: tuple[Space, ...] = ()  # every search space, in source order (none: a plain spec)


FREE_ARGS = 8  # a statement's first arguments are free; past them each one is work


def width(st) -> int:
    """The work of running a statement (not its body, not its arithmetic): 1, plus 1 for
    each argument or name past the eighth, so `add a a a ...` with 200,000 names in a
    repeat costs what it does, while no ordinary statement costs more than before."""
    match st:
        case Layer(args=args) | Input(args=args):
            n = len(args)
        case Call(args=args, tail=tail):
            n = len(args) + len(tail)
        case Merge(names=names):
            n = len(names)
        case Labeled(inner=inner):
            return width(inner)
        case Train(settings=settings):
            n = len(settings)
        case Data(words=words):
            n = len(words)
        case _:
            n = 0
    return 1 + max(0, n - FREE_ARGS)


def work(st) -> int:
    """A lower bound on the work of running a statement once (not its body): its width and
    the arithmetic its expressions will certainly cost.  Used to cost a body before it
    runs: `repeat 100000 { let a = 1+1+...+1 }` is refused at once."""
    match st:
        case Layer(args=args):
            return width(st) + sum(_arithmetic(a) for a in args)
        case Call(args=args, tail=tail):
            return width(st) + sum(_arithmetic(a) for a in (*args, *tail))
        case Labeled(inner=inner):
            return work(inner)
        case Let(value=e) | Repeat(count=e):
            return 1 + max(1, _arithmetic(e))
    return width(st)


def _arithmetic(e) -> int:
    match e:
        case Keyword(value=v):
            return _arithmetic(v)
        case Size(dims=dims, stride=stride):
            return sum(_arithmetic(d) for d in dims) + (0 if stride is None else _arithmetic(stride))
        case Neg(size=n) | BinOp(size=n):
            return n
    return 0


def walk(stmts):
    """Every statement, nested ones included (def bodies, blocks, repeats), in source order."""
    todo = list(reversed(stmts))
    while todo:
        st = todo.pop()
        yield st
        match st:
            case Labeled(inner=inner):
                todo.append(inner)
            case Residual(body=b) | Repeat(body=b) | Def(body=b):
                todo.extend(reversed(b.stmts))
            case Parallel(paths=paths):
                for b in reversed(paths):
                    todo.extend(reversed(b.stmts))


def names(stmts):
    """Every name used as a value (in expressions and shorthand), nested statements included."""
    todo: list = []
    for st in walk(stmts):
        match st:
            case Layer(args=args) | Input(args=args):
                todo.extend(args)
            case Call(args=args, tail=tail):
                todo.extend(args)
                todo.extend(tail)
            case Repeat(count=e) | Let(value=e):
                todo.append(e)
            case Def(params=params):
                todo.extend(p.default for p in params if p.default is not None)
            case Train(settings=settings):
                todo.extend(settings)
    while todo:
        x = todo.pop()
        match x:
            case Name(name=n):
                yield n
            case Neg(operand=e) | Keyword(value=e):
                todo.append(e)
            case BinOp(left=a, right=b):
                todo.extend((a, b))
            case Size(dims=dims, stride=stride):
                todo.extend(dims)
                if stride is not None:
                    todo.append(stride)

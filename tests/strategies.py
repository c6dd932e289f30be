"""Hypothesis strategies for netdsl.

``programs(max_layers=12)`` draws random *valid* netdsl programs (shorthand sizes
included in their parametric forms, `c x 3`, `(2*c)x3/2`, `k/s`) together with the
result they must have, computed here, independently of netdsl's own code: a small
AST of the program is built while drawing, and a tiny interpreter (:class:`Sim`)
walks it with Keras semantics (channels last, TF ``same`` padding
``ceil(in/stride)``, ``valid`` padding ``(in - eff)//stride + 1``, pool stride
defaulting to the pool size, conv ``kh*kw*cin*f + f``, dense ``in*n + n``,
batchnorm ``2C`` trainable + ``2C`` non-trainable).

The draw returns a :class:`Program` (attribute or ``prog["text"]`` access) with

``text``                    the program
``params``                  free parameters, to bind with ``netdsl.parse(text, **params)``
``expected_shapes``         per-layer output shape, batch omitted, in node creation order
``expected_layer_params``   per-layer ``(trainable, non_trainable)``, same order
``expected_trainable``      total trainable parameters
``expected_non_trainable``  total non-trainable parameters
``expected_output_shape``   the network's output shape, batch omitted
``input_shape``             the input shape, batch omitted

``mutations()`` draws a random program (or takes the text you give it) and applies a
few random edits: characters or tokens deleted, inserted or replaced, lines duplicated,
swapped, joined or dropped, truncation, random unicode and control characters, braces,
keyword arguments in odd places, names swapped, huge numbers.  The result is a
:class:`Mutation` with ``text``, ``params``, ``original`` and ``edits`` (a list of
words describing what was done, for failure reports).  ``mutation_batches(k)`` draws
``k`` mutants of one program (drawing the program costs more than parsing them).

Nothing here imports netdsl: the expectations must not be computed by the code under
test.
"""

from __future__ import annotations

import math
import re
from collections import ChainMap
from dataclasses import dataclass, field
from fractions import Fraction

from hypothesis import strategies as st

__all__ = ["Program", "Mutation", "Sim", "Invalid", "programs", "mutations", "mutation_batches", "mutate"]

MAX_HW = 32  # spatial sizes stay at or below this
MAX_C = 16  # channels drawn at or below this (concat may add them up, to at most MAX_CONCAT_C)
MAX_CONCAT_C = 48

ACTIVATIONS = (
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "gelu",
    "elu",
    "selu",
    "silu",
    "linear",
    "leakyrelu",
)

# Name pools.  Kept disjoint from each other, from layer and statement keywords and
# from the words netdsl reads as values (same, valid, relu, true, ...).  Labels never
# end in `_<digits>` so they cannot collide with repeat suffixes or automatic names.
LABELS = (
    "a",
    "b",
    "e1",
    "e2",
    "skip",
    "br",
    "t",
    "mid",
    "up",
    "down",
    "y",
    "z",
    "left",
    "right",
    "trunk",
    "stem",
    "head",
    "s",
    "q",
    "u",
    "v",
    "branch",
    "tap",
    "save",
    "x1",
    "y2",
    "zz",
)
LET_NAMES = (
    "x",  # the size separator of shorthand: fmt must not write `conv 8 x x` (a bug found once)
    "n",
    "m",
    "nf",
    "base",
    "half",
    "kk",
    "ch",
    "filters",
    "kernel",
    "size",
    "stride",
    "units",
    "w2",
    "hid",
    "cnt",
    "num",
)
PARAM_NAMES = ("width", "depth", "nf0", "ksize", "growth", "hidden", "scale", "wf", "big", "rate0", "times")
WORD_PARAM_NAMES = ("act", "act2", "pad", "mode", "nonlin")
DEF_NAMES = (
    "block",
    "stage",
    "unit",
    "proj",
    "fcblock",
    "mlp",
    "shrink",
    "cbr",
    "resblock",
    "bottleneck",
    "head_fc",
    "widen",
)

COMMENTS = (
    "# comment",
    "#",
    "# conv 8x3 { } | ; add x",
    "# \u00fcn\u00efc\u00f6d\u00e9 \u2713 \u00d7",
    "#add x",
    "#   ",
    "# -- section --",
)


class Invalid(Exception):
    """The simulator found the program invalid (for generated programs: a strategy bug)."""


# ---- expressions ---------------------------------------------------------------------


def _norm(v):
    if isinstance(v, Fraction) and v.denominator == 1:
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _frac(v):
    if isinstance(v, str):
        raise Invalid(f"arithmetic on word {v!r}")
    return Fraction(v)


class Expr:
    prec = 3

    def render(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def eval(self, env):  # pragma: no cover - abstract
        raise NotImplementedError

    def wrapped(self, parent: int, right: bool = False) -> str:
        t = self.render()
        if self.prec < parent or (right and self.prec == parent and self.prec < 3):
            return "(" + t + ")"
        return t


class Num(Expr):
    def __init__(self, value, text: str | None = None):
        self.value = value
        self.text = text if text is not None else str(value)

    def render(self) -> str:
        return self.text

    def eval(self, env):
        return self.value


class Var(Expr):
    def __init__(self, name: str):
        self.name = name

    def render(self) -> str:
        return self.name

    def eval(self, env):
        if self.name not in env:
            raise Invalid(f"undefined variable {self.name}")
        return env[self.name]


class Neg(Expr):
    def __init__(self, e: Expr):
        self.e = e

    def render(self) -> str:
        inner = self.e.render()
        return "-" + (inner if self.e.prec == 3 and not isinstance(self.e, Neg) else "(" + inner + ")")

    def eval(self, env):
        return -_frac(self.e.eval(env))


class Paren(Expr):
    def __init__(self, e: Expr):
        self.e = e

    def render(self) -> str:
        return "(" + self.e.render() + ")"

    def eval(self, env):
        return self.e.eval(env)


class Bin(Expr):
    PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2}

    def __init__(self, op: str, a: Expr, b: Expr, spaced: bool = True):
        self.op, self.a, self.b, self.spaced = op, a, b, spaced
        self.prec = self.PREC[op]

    def render(self) -> str:
        sep = f" {self.op} " if self.spaced else self.op
        return self.a.wrapped(self.prec) + sep + self.b.wrapped(self.prec, right=True)

    def eval(self, env):
        a, b = _frac(self.a.eval(env)), _frac(self.b.eval(env))
        if self.op == "+":
            return a + b
        if self.op == "-":
            return a - b
        if self.op == "*":
            return a * b
        if b == 0:
            raise Invalid("division by zero")
        if self.op == "/":
            return a / b
        return Fraction(a // b)


def ev(x, env):
    """Evaluate an argument: an :class:`Expr`, or a constant (int, tuple, str, bool, Fraction)."""
    return _norm(x.eval(env)) if isinstance(x, Expr) else x


# ---- the program AST -------------------------------------------------------------------


@dataclass
class Layer:
    op: str  # canonical op: conv maxpool avgpool gap gmp flatten dense dropout batchnorm act upsample reshape
    args: dict
    text: str


@dataclass
class Identity:
    text: str


@dataclass
class Labeled:
    name: str
    inner: object
    text: str


@dataclass
class From:
    name: str
    text: str


@dataclass
class Merge:
    kind: str  # add | concat
    names: list
    text: str


@dataclass
class Residual:
    body: list
    text: str


@dataclass
class Parallel:
    kind: str
    paths: list
    text: str


@dataclass
class Repeat:
    count: Expr
    body: list
    text: str


@dataclass
class Let:
    name: str
    expr: Expr
    text: str


@dataclass
class Def:
    name: str
    template: str
    params: list  # [(name, default Expr | None)]
    body: list
    kind: str  # "map" | "vec"
    text: str = ""


@dataclass
class Call:
    d: Def
    args: list  # [(keyword | None, Expr)]
    text: str


@dataclass
class Text:
    """A statement with no effect on the graph: input, def, train, data."""

    text: str


# ---- the independent simulator -----------------------------------------------------------


def _pair(v) -> tuple[int, int]:
    if isinstance(v, tuple):
        if len(v) != 2:
            raise Invalid(f"pair expected, got {v}")
        return int(v[0]), int(v[1])
    if not isinstance(v, int) or isinstance(v, bool):
        raise Invalid(f"integer expected, got {v!r}")
    return v, v


def _pos_int(v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise Invalid(f"positive integer expected, got {v!r}")
    return v


def _window(n: int, k: int, s: int, padding: str, d: int = 1) -> int:
    if padding == "same":
        return -(-n // s)
    eff = d * (k - 1) + 1
    if n < eff:
        raise Invalid(f"window {eff} does not fit {n}")
    return (n - eff) // s + 1


def _prod(xs) -> int:
    return math.prod(xs)


class Sim:
    """Walks the AST with Keras semantics; ``records`` gets one ``(shape, trainable, non_trainable)``
    per layer node, in creation order."""

    def __init__(self, params: dict):
        self.params = dict(params)
        self.records: list[tuple[tuple, int, int]] = []

    def program(self, stmts, input_shape) -> tuple:
        env = ChainMap({}, self.params)
        return self.body(stmts, tuple(input_shape), env, {})

    def body(self, stmts, shape, env, labels):
        for s in stmts:
            shape = self.stmt(s, shape, env, labels)
        return shape

    def rec(self, shape, t=0, nt=0):
        self.records.append((tuple(shape), t, nt))
        return tuple(shape)

    def stmt(self, s, shape, env, labels):
        if isinstance(s, Layer):
            out, t, nt = layer_rule(s.op, {k: ev(v, env) for k, v in s.args.items()}, shape)
            return self.rec(out, t, nt)
        if isinstance(s, Identity | Text):
            return shape
        if isinstance(s, Seq):
            return self.body(s.stmts, shape, env, labels)
        if isinstance(s, Labeled):
            out = self.stmt(s.inner, shape, env, labels)
            labels[s.name] = out
            return out
        if isinstance(s, From):
            return labels[s.name]
        if isinstance(s, Merge):
            return self.rec(merge_rule(s.kind, [shape] + [labels[n] for n in s.names]))
        if isinstance(s, Residual):
            out = self.body(s.body, shape, env, labels)
            return self.rec(merge_rule("add", [shape, out]))
        if isinstance(s, Parallel):
            outs = [self.body(p, shape, env, labels) for p in s.paths]
            return self.rec(merge_rule(s.kind, outs))
        if isinstance(s, Repeat):
            n = ev(s.count, env)
            n = _pos_int(n)
            for _ in range(n):
                shape = self.body(s.body, shape, env.new_child(), ChainMap({}, labels))
            return shape
        if isinstance(s, Let):
            env[s.name] = ev(s.expr, env)
            return shape
        if isinstance(s, Call):
            d = s.d
            bound = {}
            names = [p for p, _ in d.params]
            pos = 0
            for key, e in s.args:
                if key is None:
                    key = names[pos]
                    pos += 1
                bound[key] = ev(e, env)
            for p, default in d.params:
                if p not in bound:
                    if default is None:
                        raise Invalid(f"missing argument {p}")
                    bound[p] = ev(default, {})
            return self.body(d.body, shape, ChainMap(bound, self.params), ChainMap({}, labels))
        raise TypeError(s)  # pragma: no cover


def layer_rule(op: str, a: dict, s: tuple):
    """(op, evaluated args, input shape) -> (output shape, trainable, non_trainable)."""
    if op == "conv":
        if len(s) != 3:
            raise Invalid("conv on a vector")
        h, w, c = s
        f = _pos_int(a["filters"])
        kh, kw = _pair(a["kernel"])
        sh, sw = _pair(a.get("stride", 1))
        dh, dw = _pair(a.get("dilation", 1))
        pad = str(a.get("padding", "valid")).lower()
        if max(sh, sw) > 1 and max(dh, dw) > 1:
            raise Invalid("stride and dilation")
        bias = a.get("bias", True)
        bias = bias if isinstance(bias, bool) else str(bias).lower() == "true"
        out = (_window(h, kh, sh, pad, dh), _window(w, kw, sw, pad, dw), f)
        return out, kh * kw * c * f + (f if bias else 0), 0
    if op in ("maxpool", "avgpool"):
        if len(s) != 3:
            raise Invalid("pool on a vector")
        h, w, c = s
        ph, pw = _pair(a["size"])
        stride = a.get("stride")
        sh, sw = _pair(stride) if stride is not None else (ph, pw)
        pad = str(a.get("padding", "valid")).lower()
        return (_window(h, ph, sh, pad), _window(w, pw, sw, pad), c), 0, 0
    if op in ("gap", "gmp"):
        if len(s) != 3:
            raise Invalid("global pool on a vector")
        return (s[2],), 0, 0
    if op == "flatten":
        return (_prod(s),), 0, 0
    if op == "dense":
        if len(s) != 1:
            raise Invalid("dense on a feature map")
        u = _pos_int(a["units"])
        bias = a.get("bias", True)
        bias = bias if isinstance(bias, bool) else str(bias).lower() == "true"
        return (u,), s[0] * u + (u if bias else 0), 0
    if op == "dropout":
        r = Fraction(a["rate"])
        if not 0 <= r < 1:
            raise Invalid("rate")
        return s, 0, 0
    if op == "batchnorm":
        c = s[-1]
        return s, 2 * c, 2 * c
    if op == "act":
        return s, 0, 0
    if op in NEW_RULES:
        return NEW_RULES[op](a, s)
    if op == "upsample":
        if len(s) != 3:
            raise Invalid("upsample on a vector")
        uh, uw = _pair(a["size"])
        return (s[0] * uh, s[1] * uw, s[2]), 0, 0
    if op == "reshape":
        target = a["shape"]
        target = target if isinstance(target, tuple) else (target,)
        if _prod(target) != _prod(s):
            raise Invalid("reshape count")
        return tuple(target), 0, 0
    raise TypeError(op)  # pragma: no cover


# the layers of netdsl/ops_layers.py: args here are plain ints, strings and bools (g_new writes them)


def _dw_rule(a: dict, s: tuple):
    h, w, c = s
    k, st, m, pad = a["kernel"], a["stride"], a["multiplier"], a["padding"]
    out = (_window(h, k, st, pad), _window(w, k, st, pad), c * m)
    return out, k * k * c * m + c * m, 0


def _sep_rule(a: dict, s: tuple):
    h, w, c = s
    k, st, m, pad, f = a["kernel"], a["stride"], a["multiplier"], a["padding"], a["filters"]
    out = (_window(h, k, st, pad), _window(w, k, st, pad), f)
    return out, k * k * c * m + c * m * f + f, 0


def _gconv_rule(a: dict, s: tuple):
    h, w, c = s
    k, f, g = a["kernel"], a["filters"], a["groups"]
    if c % g or f % g:
        raise Invalid("groups")
    return (h, w, f), k * k * (c // g) * f + f, 0


def _pad_rule(a: dict, s: tuple):
    t, b, left, r = a["sides"]
    return (s[0] + t + b, s[1] + left + r, s[2]), 0, 0


def _groupnorm_rule(a: dict, s: tuple):
    if s[-1] % a["groups"]:
        raise Invalid("groupnorm groups")
    return s, 2 * s[-1], 0


NEW_RULES = {
    "dwconv": _dw_rule,
    "sepconv": _sep_rule,
    "gconv": _gconv_rule,
    "pad": _pad_rule,
    "layernorm": lambda a, s: (s, 2 * s[-1], 0),
    "groupnorm": _groupnorm_rule,
}


def g_new(ctx: Ctx, s, mode) -> Layer:
    """One layer of netdsl/ops_layers.py valid for ``s``; in "keep" mode it keeps the shape."""
    c = s[-1]
    kinds = ["layernorm", "groupnorm"] + (["dwconv", "gconv"] if len(s) == 3 else [])
    if len(s) == 3 and mode == "free":
        kinds += ["dwconv", "sepconv", "sepconv", "pad", "pad"]
    kind = ctx.choice(kinds)
    if kind == "layernorm":
        eps = ctx.choice(("", "", "eps=1e-5", "eps = 0.01"))
        return Layer("layernorm", {}, ctx.join([ctx.word("layernorm"), eps]))
    if kind == "groupnorm":
        g = ctx.choice([d for d in range(1, c + 1) if c % d == 0])
        text = ctx.choice((f"{ctx.word('groupnorm')} {g}", f"{ctx.word('groupnorm')} groups={g}"))
        return Layer("groupnorm", {"groups": g}, text)
    if kind == "gconv":
        g = ctx.choice([d for d in range(1, c + 1) if c % d == 0])
        f = g * ctx.int(1, max(1, MAX_C // g))
        k = ctx.int(1, 3)
        act = ctx.act_word(False) if ctx.maybe(0.3) else None
        text = ctx.join([ctx.word("conv"), f"{f}x{k}", "same", f"groups={g}", act])
        return Layer("gconv", {"filters": f, "kernel": k, "groups": g}, text)
    if kind == "pad":
        if ctx.maybe(0.5):
            p, q = ctx.int(0, 2), ctx.int(0, 2)
            return Layer("pad", {"sides": (p, p, q, q)}, ctx.join([ctx.word("pad"), f"{p}x{q}" if p != q else f"{p}"]))
        sides = {k: ctx.int(0, 2) for k in ("top", "bottom", "left", "right") if ctx.maybe(0.6)} or {"top": 1}
        text = ctx.join([ctx.word("pad"), *(f"{k}={v}" for k, v in sides.items())])
        return Layer("pad", {"sides": tuple(sides.get(k, 0) for k in ("top", "bottom", "left", "right"))}, text)
    keep = mode == "keep" and kind == "dwconv"
    pad = "same" if keep else ctx.choice(("same", "valid"))
    k = ctx.int(1, 3) if pad == "same" else ctx.int(1, min(3, s[0], s[1]))
    stride = 1 if keep else ctx.choice((1, 1, 2))
    m = 1 if keep else ctx.choice((1, 1, 2))
    act = ctx.act_word(False) if ctx.maybe(0.3) else None
    size = f"{k}" + (f"/{stride}" if stride != 1 else "")
    extra = [pad, act] + ([f"multiplier={m}"] if m != 1 else [])
    args = {"kernel": k, "stride": stride, "multiplier": m, "padding": pad}
    if kind == "dwconv":
        return Layer("dwconv", args, ctx.join([ctx.word("dwconv"), size, ctx.kws(extra)]))
    f = ctx.int(1, MAX_C)
    return Layer("sepconv", {**args, "filters": f}, ctx.join([ctx.word("sepconv"), f"{f}x{size}", ctx.kws(extra)]))


def merge_rule(kind: str, shapes: list) -> tuple:
    first = shapes[0]
    if kind in ("add", "mul"):  # the generator multiplies inputs of one shape only
        if any(x != first for x in shapes):
            raise Invalid(f"add of {shapes}")
        return first
    if any(len(x) != len(first) or x[:-1] != first[:-1] for x in shapes):
        raise Invalid(f"concat of {shapes}")
    return first[:-1] + (sum(x[-1] for x in shapes),)


# ---- the generator --------------------------------------------------------------------------


class Ctx:
    """Everything one program draw carries around."""

    def __init__(self, draw, max_layers: int):
        self.draw = draw
        self.max_layers = max_layers
        self.params: dict = {}
        self.env = ChainMap({}, self.params)  # values visible at top level, at generation time
        self.labels: dict = {}  # label -> shape at generation time
        self.pending: list = []  # lets to emit before the current top-level statement
        self.defs: list[Def] = []
        self.used: set[str] = set()
        self.style = draw(
            st.fixed_dictionaries(
                {
                    "space": st.sampled_from((" ", " ", "  ", "\t", " \t ")),
                    "case": st.sampled_from((0, 0, 1, 2)),  # 0: lower, 1: some mixed, 2: a lot mixed
                    "kw_space": st.booleans(),
                    "vars": st.sampled_from((0, 1, 2)),  # how eagerly expressions use variables
                }
            )
        )

    # -- primitive draws ---------------------------------------------------------

    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, max(lo, hi)))

    def choice(self, seq):
        return self.draw(st.sampled_from(list(seq)))

    def maybe(self, p: float) -> bool:
        """True with probability about p; shrinks to False."""
        return self.draw(st.integers(0, 99)) >= 100 - round(p * 100)

    def word(self, w: str) -> str:
        """A keyword in random case (layer and statement keywords are case-insensitive)."""
        if self.style["case"] == 0 or not self.maybe(0.25 * self.style["case"]):
            return w
        how = self.choice(("upper", "title", "mixed"))
        if how == "upper":
            return w.upper()
        if how == "title":
            return w[:1].upper() + w[1:]
        flips = self.draw(st.lists(st.booleans(), min_size=len(w), max_size=len(w)))
        return "".join(c.upper() if f else c for c, f in zip(w, flips, strict=True))

    def sp(self) -> str:
        return self.style["space"]

    def join(self, parts) -> str:
        return self.sp().join(p for p in parts if p)

    def fresh(self, pool) -> str:
        for n in pool:
            if n not in self.used:
                self.used.add(n)
                return n
        k = 2
        while True:
            for n in pool:
                cand = f"{n}{k}"
                if not re.search(r"_\d+$", cand) and cand not in self.used:
                    self.used.add(cand)
                    return cand
            k += 1

    def label(self) -> str:
        # draw which pool entry to start from so labels vary, but stay unique
        start = self.int(0, len(LABELS) - 1)
        return self.fresh(LABELS[start:] + LABELS[:start])

    # -- expressions ----------------------------------------------------------------

    def new_let(self, value) -> str:
        name = self.fresh(LET_NAMES[self.int(0, len(LET_NAMES) - 1) :] + LET_NAMES)
        expr = self.int_expr(value, depth=1, new_vars=False) if isinstance(value, int) else Num(value)
        text = (
            self.join([self.word("let"), name, "=", expr.render()])
            if self.style["kw_space"]
            else f"{self.word('let')} {name}={expr.render()}"
        )
        self.pending.append(Let(name, expr, text))
        self.env.maps[0][name] = value
        return name

    def new_param(self, value) -> str:
        pool = WORD_PARAM_NAMES if isinstance(value, str) else PARAM_NAMES
        name = self.fresh(pool[self.int(0, len(pool) - 1) :] + pool)
        self.params[name] = value
        return name

    def var_for(self, value, new_vars: bool) -> str | None:
        """A variable holding ``value``: an existing one, or (if allowed) a new let/parameter."""
        have = [k for k, v in self.env.items() if type(v) is type(value) and v == value]
        if have and self.maybe(0.6):
            return self.choice(sorted(have))
        if new_vars and self.maybe(0.5):
            if isinstance(value, int) and self.maybe(0.5):
                return self.new_let(value)
            if isinstance(value, int) and self.maybe(0.2):
                return self.new_param(float(value))  # a float parameter with a whole value
            return self.new_param(value)
        return None

    def int_expr(self, target: int, depth: int = 0, new_vars: bool = True) -> Expr:
        """An expression evaluating exactly to ``target`` (an int >= 0)."""
        eager = self.style["vars"]
        if eager and self.maybe(0.15 * eager):
            name = self.var_for(target, new_vars)
            if name is not None:
                return Var(name)
        if depth >= 2 or not eager or not self.maybe(0.2 * eager):
            return Num(target)
        how = self.choice(("+", "-", "*", "/", "//", "neg", "paren"))
        sub = lambda v: self.int_expr(v, depth + 1, new_vars)  # noqa: E731
        spaced = self.maybe(0.7)
        if how == "+":
            a = self.int(0, target)
            return Bin("+", sub(a), sub(target - a), spaced)
        if how == "-":
            b = self.int(0, 4)
            return Bin("-", sub(target + b), sub(b), spaced)
        if how == "*":
            divs = [d for d in range(1, target + 1) if target % d == 0] or [1]
            d = self.choice(divs) if target else 1
            return Bin("*", sub(d), sub(target // d if target else 0), spaced)
        if how == "/":
            d = self.int(1, 4)
            return Bin("/", sub(target * d), Num(d), spaced)
        if how == "//":
            d = self.int(1, 4)
            return Bin("//", sub(target * d + self.int(0, d - 1)), Num(d), spaced)
        if how == "neg":
            return Bin("+", sub(target + 2), Neg(Num(2)), spaced) if self.maybe(0.5) else Neg(Neg(Num(target)))
        return Paren(sub(target))

    def rate_expr(self) -> tuple[Expr, Fraction]:
        """A dropout rate (keyword form)."""
        how = self.choice(("num", "num", "div", "var"))
        if how == "div":
            d = self.int(2, 8)
            n = self.int(0, d - 1)
            return Bin("/", Num(n), Num(d), self.maybe(0.5)), Fraction(n, d)
        if how == "var":
            r = self.choice((0.5, 0.25, 0.1))
            name = self.var_for(r, True)
            if name is not None:
                return Var(name), Fraction(r)
        text, value = self.rate_num()
        return Num(value, text), value

    def rate_num(self) -> tuple[str, Fraction]:
        text = self.choice(("0.5", ".25", "0.1", "5e-1", "2.5E-1", "0", "0.0", "0.99", "1e-3", "0.3"))
        return text, Fraction(text)

    def kw(self, key: str, value) -> str:
        """``key=value``; value is an Expr, a str or a tuple (an AxB size)."""
        if isinstance(value, Expr):
            v = value.render()
        elif isinstance(value, tuple):
            v = "x".join(map(str, value))
        else:
            v = str(value)
        eq = " = " if self.maybe(0.1) else "="
        return f"{self.word(key) if self.maybe(0.1) else key}{eq}{v}"

    def kws(self, items) -> str:
        items = [i for i in items if i]
        order = self.draw(st.permutations(items)) if len(items) > 1 and self.maybe(0.4) else items
        return self.join(order)

    # -- parametric shorthand sizes: `c x 3`, `(2*c)x3/2`, `k/s` ------------------------------

    def dim_text(self, v: int) -> tuple[str, str]:
        """One part of a shorthand size: ``(text, kind)``, kind "lit", "name" or "paren"."""
        how = self.choice(("lit", "lit", "name", "paren"))
        if how == "name":
            name = self.var_for(v, True)
            if name == "x":  # alone, `x` is the separator: the variable is written `(x)`
                return "(x)", "paren"
            if name is not None:
                return name, "name"
        if how == "paren":
            return "(" + self.int_expr(v).render() + ")", "paren"
        return str(v), "lit"

    def size_text(self, parts: list[int], stride: int | None) -> str:
        """A shorthand size, parametric when the style allows it: the numbers are the same either way.

        The rules of the language: parts are joined by a separate `x` once one of them is a
        name or a parenthesis (`c x 3`); `x` may be glued only after `)` (`(2*c)x3`); the
        stride after `/` is one part."""
        literal = "x".join(map(str, parts)) + (f"/{stride}" if stride is not None else "")
        if not self.style["vars"] or not self.maybe(0.35):
            return literal
        dims = [self.dim_text(v) for v in parts]
        if all(kind == "lit" for _, kind in dims):
            text = "x".join(t for t, _ in dims)
        else:
            text = dims[0][0]
            for (_, pkind), (t, _) in zip(dims[:-1], dims[1:], strict=True):
                glue = pkind == "paren" and self.maybe(0.5)
                text += ("x" if glue else " x ") + t
        if stride is not None:
            st_text, _ = self.dim_text(stride)
            text += self.choice(("/", "/", " / ")) + st_text
        return text

    def size_value(self, v: tuple | int, allow_expr: bool = True):
        """A keyword value for a pair argument: AxB, or an int expression when square."""
        if isinstance(v, tuple):
            if v[0] == v[1] and allow_expr and self.maybe(0.7):
                return self.int_expr(v[0])
            return v if v[0] != v[1] or self.maybe(0.5) else v[0]
        return self.int_expr(v)

    def act_word(self, allow_param: bool = True) -> str:
        a = self.choice(ACTIVATIONS)
        if allow_param and self.maybe(0.05):
            return self.new_param(self.word(a))
        return self.word(a)

    def pad_word(self, pad: str, allow_param: bool = True) -> str:
        if allow_param and self.maybe(0.05):
            return self.new_param(self.word(pad))
        return self.word(pad)

    # -- running statements at generation time ---------------------------------------------

    def run(self, stmt, shape):
        """Execute ``stmt`` on a scratch simulator; returns (shape after it, nodes made)."""
        sim = Sim(self.params)
        out = sim.stmt(stmt, shape, self.env, self.labels)
        return out, len(sim.records)


# ---- layers ------------------------------------------------------------------------------


def g_conv(ctx: Ctx, s, mode="free", filters=None) -> Layer:
    h, w, c = s
    f = filters if filters is not None else ctx.int(1, MAX_C)
    dil = 1
    if mode == "keep":
        if ctx.maybe(0.2):
            pad, kh, kw, stride = "valid", 1, 1, 1
        else:
            pad, stride = "same", 1
            kh = kw = ctx.int(1, 5)
            if ctx.maybe(0.2):
                kw = ctx.int(1, 5)
            if ctx.maybe(0.1):
                dil = 2
    elif mode == "half":
        if h % 2 == 0 and w % 2 == 0 and ctx.maybe(0.3):
            pad, kh, kw, stride = "valid", 2, 2, 2
        else:
            pad, stride = "same", 2
            kh = kw = ctx.int(1, 5)
    else:
        pad = ctx.choice(("valid", "same"))
        stride = ctx.choice((1, 1, 1, 2, 3))
        lim_h, lim_w = (5, 5) if pad == "same" else (min(5, h), min(5, w))
        kh = kw = ctx.int(1, min(lim_h, lim_w))
        if ctx.maybe(0.2):
            kh, kw = ctx.int(1, lim_h), ctx.int(1, lim_w)
        if stride == 1 and ctx.maybe(0.1):
            d = 2
            if pad == "same" or (d * (kh - 1) + 1 <= h and d * (kw - 1) + 1 <= w):
                dil = d
    stride_t = (stride, stride)
    if mode == "free" and stride > 1 and ctx.maybe(0.1):
        stride_t = (stride, ctx.int(1, 3))
    act = ctx.act_word() if ctx.maybe(0.5) else None
    bias = not ctx.maybe(0.1)
    args = {"filters": f, "kernel": (kh, kw), "stride": stride_t, "padding": pad, "dilation": dil, "bias": bias}
    sym = stride_t[0] == stride_t[1]
    form = ctx.choice(("short", "keyword", "mixed"))
    if form == "short" and (not sym or dil != 1 or not bias):
        form = "mixed"
    name = ctx.word("conv")
    if form == "short":
        parts = [f, kh] if kh == kw else [f, kh, kw]
        size = ctx.size_text(parts, stride if stride != 1 or ctx.maybe(0.1) else None)
        pad_txt = ctx.pad_word(pad) if pad == "same" or ctx.maybe(0.3) else None
        text = ctx.join([name, size, act, pad_txt])
    elif form == "mixed":
        in_short = sym and (stride != 1) and ctx.maybe(0.5)
        size = ctx.size_text([f, kh] if kh == kw else [f, kh, kw], stride if in_short else None)
        extra = []
        if not in_short and (stride_t != (1, 1) or ctx.maybe(0.2)):
            extra.append(ctx.kw("stride", stride_t if not sym else ctx.size_value(stride_t)))
        if pad == "same" or ctx.maybe(0.3):
            extra.append(ctx.kw("padding", ctx.pad_word(pad)) if ctx.maybe(0.5) else ctx.pad_word(pad))
        if act:
            extra.append(ctx.kw("activation", act) if ctx.maybe(0.5) else act)
        if dil != 1:
            extra.append(ctx.kw("dilation", ctx.int_expr(dil)))
        if not bias:
            extra.append(ctx.kw("bias", ctx.word("false")))
        text = ctx.join([name, size, ctx.kws(extra)])
    else:
        fe = ctx.int_expr(f)
        args["filters"] = fe
        ke = ctx.size_value((kh, kw))
        args["kernel"] = ke if not isinstance(ke, int) else (ke, ke)
        items = [ctx.kw("filters", fe), ctx.kw("kernel", ke)]
        if stride_t != (1, 1) or ctx.maybe(0.2):
            se = ctx.size_value(stride_t)
            args["stride"] = se if not isinstance(se, int) else (se, se)
            items.append(ctx.kw("stride", se))
        if pad == "same" or ctx.maybe(0.3):
            items.append(ctx.kw("padding", ctx.pad_word(pad)))
        if act:
            items.append(ctx.kw("activation", act))
        if dil != 1 or ctx.maybe(0.05):
            de = ctx.int_expr(dil)
            args["dilation"] = de
            items.append(ctx.kw("dilation", de))
        if not bias or ctx.maybe(0.1):
            items.append(ctx.kw("bias", ctx.word("true" if bias else "false")))
        text = ctx.join([name, ctx.kws(items)])
    return Layer("conv", args, text)


def g_pool(ctx: Ctx, s, mode="free") -> Layer:
    h, w, c = s
    op = ctx.choice(("maxpool", "avgpool"))
    stride = None
    if mode == "keep":
        if ctx.maybe(0.3):
            p, pad = 1, "valid"
        else:
            p, pad, stride = ctx.int(1, 3), "same", 1
    elif mode == "half":
        if h % 2 == 0 and w % 2 == 0 and ctx.maybe(0.4):
            p, pad = 2, "valid"
            stride = 2 if ctx.maybe(0.5) else None
        else:
            p, pad = ctx.int(1, min(3, h, w) if min(h, w) >= 1 else 1), "same"
            stride = 2
            if p == 2 and ctx.maybe(0.5):
                stride = None
    else:
        pad = ctx.choice(("valid", "same"))
        p = ctx.int(1, min(4, h, w)) if pad == "valid" else ctx.int(1, min(4, max(h, w)))
        if ctx.maybe(0.4):
            stride = ctx.int(1, 3)
    ps = (p, p)
    if mode == "free" and ctx.maybe(0.15):
        ps = (p, ctx.int(1, min(4, w) if pad == "valid" else 4))
    args = {"size": ps, "stride": (stride, stride) if stride is not None else None, "padding": pad}
    name = ctx.word(op)
    size_txt = f"{ps[0]}" if ps[0] == ps[1] else f"{ps[0]}x{ps[1]}"
    if ctx.maybe(0.35):  # keyword form
        se = ctx.size_value(ps)
        args["size"] = se if not isinstance(se, int) else (se, se)
        items = [ctx.kw("size", se)]
        if stride is not None:
            ste = ctx.int_expr(stride)
            args["stride"] = ste
            items.append(ctx.kw("stride", ste))
        if pad == "same" or ctx.maybe(0.3):
            items.append(ctx.kw("padding", ctx.pad_word(pad)))
        return Layer(op, args, ctx.join([name, ctx.kws(items)]))
    if ps[0] == ps[1] and stride is None and ctx.maybe(0.1) and ctx.style["vars"]:
        v = ctx.var_for(p, True)
        if v is not None:
            size_txt = v
    if size_txt == f"{ps[0]}" or size_txt == f"{ps[0]}x{ps[1]}":  # not a variable already
        sz = ctx.size_text([ps[0]] if ps[0] == ps[1] else list(ps), stride)
    else:
        sz = size_txt + (f"/{stride}" if stride is not None else "")
    pad_txt = ctx.pad_word(pad) if pad == "same" or ctx.maybe(0.3) else None
    return Layer(op, args, ctx.join([name, sz, pad_txt]))


def g_dense(ctx: Ctx, s, units=None) -> Layer:
    u = units if units is not None else ctx.int(1, MAX_C)
    act = ctx.act_word() if ctx.maybe(0.5) else None
    bias = not ctx.maybe(0.1)
    args = {"units": u, "bias": bias}
    name = ctx.word("dense")
    form = ctx.choice(("short", "keyword", "mixed", "var"))
    if form == "var" and bias:
        v = ctx.var_for(u, True)
        if v is not None:
            return Layer("dense", args, ctx.join([name, v, act]))
        form = "short"
    if form == "short" and bias:
        units = f"({ctx.int_expr(u).render()})" if ctx.style["vars"] and ctx.maybe(0.15) else str(u)
        return Layer("dense", args, ctx.join([name, units, act]))
    if form == "mixed" or form == "short":
        items = [ctx.kw("activation", act) if act else None, None if bias else ctx.kw("bias", ctx.word("false"))]
        return Layer("dense", args, ctx.join([name, str(u), ctx.kws(items)]))
    ue = ctx.int_expr(u)
    args["units"] = ue
    items = [
        ctx.kw("units", ue),
        ctx.kw("activation", act) if act else None,
        ctx.kw("bias", ctx.word("true" if bias else "false")) if (not bias or ctx.maybe(0.1)) else None,
    ]
    return Layer("dense", args, ctx.join([name, ctx.kws(items)]))


def g_dropout(ctx: Ctx, s) -> Layer:
    name = ctx.word("dropout")
    if ctx.maybe(0.4):
        e, r = ctx.rate_expr()
        return Layer("dropout", {"rate": e}, ctx.join([name, ctx.kw("rate", e)]))
    text, r = ctx.rate_num()
    if ctx.maybe(0.1) and ctx.style["vars"]:
        v = ctx.var_for(float(r), True)
        if v is not None:
            text = v
    return Layer("dropout", {"rate": r}, ctx.join([name, text]))


def g_batchnorm(ctx: Ctx, s) -> Layer:
    items = []
    if ctx.maybe(0.2):
        items.append(ctx.kw("eps", Num(None, ctx.choice(("1e-3", "0.001", "1e-5", ".01")))))
    if ctx.maybe(0.2):
        items.append(ctx.kw("momentum", Num(None, ctx.choice(("0.99", "0.9", ".5", "0", "1")))))
    return Layer("batchnorm", {}, ctx.join([ctx.word("batchnorm"), ctx.kws(items)]))


def g_act(ctx: Ctx, s, favour: str | None = None) -> Layer:
    a = favour if favour is not None and ctx.maybe(0.5) else ctx.choice(ACTIVATIONS)
    name = ctx.word(a)
    if a == "leakyrelu" and ctx.maybe(0.6):
        if ctx.maybe(0.5):
            return Layer("act", {}, ctx.join([name, ctx.choice(("0.2", ".1", "0.3", "1e-2", "0", "1"))]))
        return Layer("act", {}, ctx.join([name, ctx.kw("alpha", Num(None, ctx.choice(("0.2", "0.01", ".5"))))]))
    return Layer("act", {}, name)


def g_acts(ctx: Ctx, s) -> list:
    """Two or three standalone activations in a row (softmax after softmax often)."""
    return [g_act(ctx, s, favour="softmax") for _ in range(ctx.int(2, 3))]


def g_head(ctx: Ctx, s) -> list:
    """A stacked-activation ending: maybe a layer with a fused activation (softmax often),
    then one to three standalone activations (softmax often).  Backends treat the final
    softmax specially (logits for the loss); this is where they went wrong before."""
    out = []
    if ctx.maybe(0.7):
        act = "softmax" if ctx.maybe(0.6) else ctx.choice(ACTIVATIONS)
        f = ctx.int(1, MAX_C)
        if len(s) == 1:
            out.append(Layer("dense", {"units": f}, ctx.join([ctx.word("dense"), str(f), ctx.word(act)])))
        else:
            out.append(
                Layer("conv", {"filters": f, "kernel": 1}, ctx.join([ctx.word("conv"), f"{f}x1", ctx.word(act)]))
            )
    return out + [g_act(ctx, s, favour="softmax") for _ in range(ctx.int(1, 3))]


def g_global(ctx: Ctx, s) -> Layer:
    op = ctx.choice(("gap", "gmp", "flatten"))
    return Layer(op, {}, ctx.word(op))


def g_upsample(ctx: Ctx, s) -> Layer | None:
    h, w, c = s
    mh, mw = MAX_HW // h, MAX_HW // w
    if mh < 1 or mw < 1:
        return None
    uh = ctx.int(1, min(3, mh))
    uw = uh if ctx.maybe(0.8) else ctx.int(1, min(3, mw))
    uw = min(uw, mw)
    name = ctx.word("upsample")
    if ctx.maybe(0.3):
        se = ctx.size_value((uh, uw))
        return Layer(
            "upsample", {"size": se if not isinstance(se, int) else (se, se)}, ctx.join([name, ctx.kw("size", se)])
        )
    return Layer("upsample", {"size": (uh, uw)}, ctx.join([name, ctx.size_text([uh] if uh == uw else [uh, uw], None)]))


def _factor3(ctx: Ctx, n: int) -> tuple | None:
    hs = [d for d in range(1, min(MAX_HW, n) + 1) if n % d == 0]
    for _ in range(3):
        h = ctx.choice(hs)
        ws = [d for d in range(1, min(MAX_HW, n // h) + 1) if (n // h) % d == 0 and n // h // d <= 64]
        if ws:
            w = ctx.choice(ws)
            return (h, w, n // h // w)
    return None


def g_reshape(ctx: Ctx, s, to_map: bool | None = None) -> Layer | None:
    n = _prod(s)
    if to_map is None:
        to_map = ctx.maybe(0.5)
    name = ctx.word("reshape")
    if to_map:
        t = _factor3(ctx, n)
        if t is None:
            return None
        txt = "x".join(map(str, t))
    else:
        t = (n,)
        txt = str(n)
    if ctx.maybe(0.3):
        return Layer(
            "reshape", {"shape": t}, ctx.join([name, f"{'shape' if ctx.maybe(0.8) else ctx.word('shape')}={txt}"])
        )
    return Layer("reshape", {"shape": t}, ctx.join([name, txt]))


def g_identity(ctx: Ctx) -> Identity:
    return Identity(ctx.word("identity"))


def g_fix(ctx: Ctx, s, final) -> object:
    """A statement that brings the channels/units to ``final`` without touching H and W."""
    if len(s) == 3:
        if ctx.maybe(0.15):
            call = g_call(ctx, s, "keep", final)
            if call is not None:
                return call
        return g_conv(ctx, s, "keep", final)
    if ctx.maybe(0.15):
        call = g_call(ctx, s, "keep", final)
        if call is not None:
            return call
    return g_dense(ctx, s, final)


# ---- defs and calls ---------------------------------------------------------------------------

TEMPLATES_MAP = ("conv", "res", "skip", "pool")
TEMPLATES_VEC = ("fc", "fcbn")


def _def_text(ctx: Ctx, name: str, params: list, lines: list[str]) -> str:
    ps = []
    for p, default in params:
        ps.append(p if default is None else f"{p}={default.render()}")
    head = f"{ctx.word('def')} {name}({', '.join(ps)})"
    return head + " " + _block(ctx, [lines])


def make_def(ctx: Ctx, template: str) -> Def:
    name = ctx.fresh(DEF_NAMES[ctx.int(0, len(DEF_NAMES) - 1) :] + DEF_NAMES)
    w = ctx.word
    if template == "conv":
        c, k = ctx.choice((("c", "k"), ("ch", "ks"), ("filters", "kernel"), ("width", "k"), ("c", "x")))
        k0 = ctx.int(1, 5)
        params = [(c, None), (k, Num(k0) if ctx.maybe(0.7) else None)]
        act = ctx.act_word(allow_param=False) if ctx.maybe(0.5) else None
        items = [f"filters={c}", f"kernel={k}", f"padding={w('same')}" if ctx.maybe(0.6) else w("same")]
        if act:
            items.append(f"activation={act}" if ctx.maybe(0.5) else act)
        if ctx.maybe(0.5):  # the shorthand with the parameters as its size: `conv c x k same`
            items = [f"{c} x {'(x)' if k == 'x' else k}", w("same"), act]  # `x` alone is the separator
        body = [
            Layer(
                "conv", {"filters": Var(c), "kernel": Var(k), "padding": "same"}, ctx.join([w("conv"), ctx.kws(items)])
            )
        ]
        if ctx.maybe(0.5):
            body.append(Layer("batchnorm", {}, w("batchnorm")))
        if ctx.maybe(0.5):
            body.append(Layer("act", {}, w(ctx.choice(ACTIVATIONS))))
        d = Def(name, template, params, body, "map")
    elif template == "res":
        c = ctx.choice(("c", "ch", "width"))
        params = [(c, None)]
        inner = []
        for i in range(2):
            k = ctx.choice((1, 3))
            inner.append(
                Layer(
                    "conv",
                    {"filters": Var(c), "kernel": k, "padding": "same"},
                    ctx.join([w("conv"), f"filters={c}", f"kernel={k}", f"padding={w('same')}"]),
                )
            )
            if ctx.maybe(0.5):
                inner.append(Layer("batchnorm", {}, w("batchnorm")))
            if i == 0:
                inner.append(Layer("act", {}, w("relu")))
        res = Residual(inner, f"{w('residual')} " + _block(ctx, [[x.text for x in inner]]))
        body = [res, Layer("act", {}, w("relu"))]
        d = Def(name, template, params, body, "map")
    elif template == "skip":
        c = ctx.choice(("c", "ch", "n"))
        params = [(c, None)]
        lab = ctx.label()
        first = Layer("conv", {"filters": Var(c), "kernel": 1}, ctx.join([w("conv"), f"filters={c}", "kernel=1"]))
        body = [
            Labeled(lab, first, f"{lab}: {first.text}"),
            Layer("act", {}, w("relu")),
            Merge("add", [lab], f"{w('add')} {lab}"),
        ]
        d = Def(name, template, params, body, "map")
    elif template == "pool":
        p = ctx.choice(("p", "k", "size"))
        params = [(p, Num(2))]
        op = ctx.choice(("maxpool", "avgpool"))
        if ctx.maybe(0.25):  # `maxpool p/p same`: the stride the pool would default to anyway
            lay = Layer(op, {"size": Var(p), "padding": "same"}, ctx.join([w(op), f"{p}/{p}", w("same")]))
        elif ctx.maybe(0.5):
            lay = Layer(op, {"size": Var(p), "padding": "same"}, ctx.join([w(op), p, w("same")]))
        else:
            lay = Layer(op, {"size": Var(p), "padding": "same"}, ctx.join([w(op), f"size={p}", f"padding={w('same')}"]))
        body = [lay]
        d = Def(name, template, params, body, "map")
    elif template == "fc":
        n, r = ctx.choice((("n", "r"), ("units", "rate"), ("width", "p")))
        rt, rv = ctx.rate_num()
        params = [(n, None), (r, Num(rv, rt))]
        body = [
            Layer("dense", {"units": Var(n)}, ctx.join([w("dense"), n, w(ctx.choice(ACTIVATIONS))])),
            Layer("dropout", {"rate": Var(r)}, ctx.join([w("dropout"), r])),
        ]
        d = Def(name, template, params, body, "vec")
    else:  # fcbn
        n = ctx.choice(("n", "units", "k"))
        params = [(n, None)]
        body = [
            Layer("dense", {"units": Var(n)}, ctx.join([w("dense"), f"units={n}"])),
            Layer("batchnorm", {}, w("batchnorm")),
            Layer("act", {}, w("relu")),
        ]
        d = Def(name, template, params, body, "vec")
    d.text = _def_text(ctx, name, d.params, [x.text for x in d.body])
    ctx.defs.append(d)
    return d


def g_call(ctx: Ctx, s, mode, final=None) -> Call | None:
    """A call of a def fitting the shape and mode (creating the def if needed); None if none fits."""
    vec = len(s) == 1
    if vec:
        templates = TEMPLATES_VEC
    else:
        templates = [
            t
            for t in TEMPLATES_MAP
            if (t != "pool" or (mode != "keep" and final is None)) and (t != "res" or final is None or final == s[2])
        ]
    if not templates:
        return None
    template = ctx.choice(templates)
    existing = [d for d in ctx.defs if d.template == template]
    if existing and (len(ctx.defs) >= 3 or ctx.maybe(0.6)):
        d = ctx.choice(existing)
    elif len(ctx.defs) < 3:
        d = make_def(ctx, template)
    else:
        return None
    values = {}
    if template in ("conv", "skip", "fc", "fcbn"):
        values[d.params[0][0]] = final if final is not None else ctx.int(1, MAX_C)
    elif template == "res":
        values[d.params[0][0]] = s[2]
    if template == "conv":
        k = ctx.int(1, 5)
        if d.params[1][1] is None or ctx.maybe(0.5):
            values[d.params[1][0]] = k
    if template == "pool" and ctx.maybe(0.6):
        values[d.params[0][0]] = ctx.int(1, 3)
    if template == "fc" and ctx.maybe(0.4):
        values[d.params[1][0]] = None  # a rate, filled below
    args = []
    names = [p for p, _ in d.params]
    keyword = False
    for p in names:
        if p not in values:
            keyword = True  # skipping a defaulted parameter: the rest must be keywords
            continue
        v = values[p]
        if v is None:
            e, _ = ctx.rate_expr()
        else:
            e = ctx.int_expr(v)
        if keyword or ctx.maybe(0.3):
            keyword = True
            args.append((p, e))
        else:
            args.append((None, e))
    kwargs = [a for a in args if a[0] is not None]
    if len(kwargs) > 1 and ctx.maybe(0.5):
        pos = [a for a in args if a[0] is None]
        args = pos + list(ctx.draw(st.permutations(kwargs)))
    sep = ctx.choice((", ", ",", " , "))
    text = f"{d.name}(" + sep.join((f"{k}={e.render()}" if k else e.render()) for k, e in args) + ")"
    return Call(d, args, text)


# ---- layout -------------------------------------------------------------------------------------


def _block(ctx: Ctx, paths: list[list[str]]) -> str:
    """``{ A; B | C }`` inline, or over several lines; comments only where a newline follows."""
    multiline = any("\n" in t for p in paths for t in p) or ctx.maybe(0.4)
    if not multiline:
        seps = ctx.choice(("; ", ";", " ; "))
        inner = " | ".join(seps.join(p) for p in paths)
        lead = ctx.choice(("", "", "; "))
        return "{ " + lead + inner + " }" if ctx.maybe(0.8) else "{" + inner + "}"
    out = ["{"]
    for i, p in enumerate(paths):
        lines = []
        for t in p:
            t = t.replace("\n", "\n  ")
            if ctx.maybe(0.1):
                t += "  " + ctx.choice(COMMENTS)
            lines.append(t)
        if ctx.maybe(0.15) and len(lines) > 1:  # two statements on one line
            lines = [lines[0] + "; " + lines[1]] + lines[2:] if "#" not in lines[0] else lines
        for j, t in enumerate(lines):
            prefix = "| " if i > 0 and j == 0 else "  "
            out.append(prefix + t)
        if ctx.maybe(0.05):
            out.append("")
    out.append("}")
    return "\n".join(out)


# ---- statements ----------------------------------------------------------------------------------


def g_seq(ctx: Ctx, s, mode, n, avail, depth, budget, final=None):
    """Up to ``n`` statements from shape ``s``; returns (stmts, shape, nodes used)."""
    stmts, used = [], 0
    avail = list(avail)
    for _ in range(n):
        if used >= budget:
            break
        stmt, s2, k = g_stmt(ctx, s, mode, avail, depth, budget - used)
        stmts.append(stmt)
        s, used = s2, used + k
        if isinstance(stmt, Labeled) and stmt.name in ctx.labels:
            avail.append(stmt.name)
    if final is not None and s[-1] != final:
        stmt = g_fix(ctx, s, final)
        s, k = ctx.run(stmt, s)
        stmts.append(stmt)
        used += k
    return stmts, s, used


def g_simple(ctx: Ctx, s, mode):
    """One plain layer statement valid for shape ``s`` in ``mode`` ("free" or "keep")."""
    vec = len(s) == 1
    if vec:
        kinds = ["act", "dense", "dense", "dropout", "batchnorm", "identity"]
        if mode == "free":
            kinds += ["flatten", "reshape", "dense"]
    else:
        kinds = ["act", "conv", "conv", "conv", "pool", "batchnorm", "dropout", "identity"]
        if mode == "free":
            kinds += ["conv", "pool", "global", "global", "upsample", "reshape"]
    kinds += ["new"]  # a layer of netdsl/ops_layers.py
    kind = ctx.choice(kinds)
    if kind == "new":
        return g_new(ctx, s, mode)
    if kind == "identity" and ctx.maybe(0.5):
        kind = "act"
    if kind == "act":
        return g_act(ctx, s)
    if kind == "dense":
        return g_dense(ctx, s)
    if kind == "dropout":
        return g_dropout(ctx, s)
    if kind == "batchnorm":
        return g_batchnorm(ctx, s)
    if kind == "identity":
        return g_identity(ctx)
    if kind == "flatten":
        return Layer("flatten", {}, ctx.word("flatten"))
    if kind == "conv":
        return g_conv(ctx, s, mode)
    if kind == "pool":
        return g_pool(ctx, s, mode)
    if kind == "global":
        return g_global(ctx, s)
    if kind == "upsample":
        return g_upsample(ctx, s) or g_act(ctx, s)
    if kind == "reshape":
        return g_reshape(ctx, s, to_map=True if vec else None) or g_act(ctx, s)
    raise AssertionError(kind)  # pragma: no cover


def g_stmt(ctx: Ctx, s, mode, avail, depth, budget):
    """One statement (maybe a block); returns (stmt, shape after it, nodes used)."""
    kinds = ["simple"] * 6
    if budget >= 2 and depth < 2:
        kinds += ["residual", "parallel", "parallel", "repeat", "call", "skip", "from"]
    elif budget >= 1:
        kinds += ["call"]
    if budget >= 1 and depth < 2 and _mergeable(ctx, s, avail):
        kinds += ["merge"]
    kind = ctx.choice(kinds)
    stmt = None
    if kind == "residual":
        stmt = g_residual(ctx, s, avail, depth, budget)
    elif kind == "parallel":
        stmt = g_parallel(ctx, s, mode, avail, depth, budget)
    elif kind == "repeat":
        return g_repeat(ctx, s, mode, avail, depth, budget)
    elif kind == "call":
        stmt = g_call(ctx, s, mode)
    elif kind == "skip":
        stmt = g_skip(ctx, s, avail, depth, budget)
    elif kind == "from":
        stmt = g_from(ctx, s, avail, depth, budget)
    elif kind == "merge":
        stmt = g_merge(ctx, s, avail)
    if stmt is None:
        stmt = g_simple(ctx, s, mode)
        if isinstance(stmt, Layer) and stmt.op == "act" and ctx.maybe(0.3):
            stmt = g_acts(ctx, s)  # several standalone activations in a row
        elif not isinstance(stmt, Identity) and ctx.maybe(0.12):
            name = ctx.label()
            stmt = Labeled(name, stmt, f"{name}:{ctx.choice((' ', '', '  '))}{stmt.text}")
    elif isinstance(stmt, Residual | Parallel | Call | Merge) and ctx.maybe(0.15):
        name = ctx.label()
        stmt = Labeled(name, stmt, f"{name}: {stmt.text}")
    if isinstance(stmt, list):  # skip/from produce several statements: wrap them as a sequence
        out, used = s, 0
        for x in stmt:
            out, k = ctx.run(x, out)
            used += k
        return Seq(stmt), out, used
    out, used = ctx.run(stmt, s)
    return stmt, out, used


@dataclass
class Seq:
    """Several statements generated together (a skip or from pattern); flattened when rendered."""

    stmts: list

    @property
    def text(self):  # pragma: no cover - flattened before rendering
        raise AssertionError("Seq is flattened")


def _flatten(stmts):
    out = []
    for s in stmts:
        if isinstance(s, Seq):
            out.extend(_flatten(s.stmts))
        else:
            out.append(s)
    return out


def _body_texts(stmts) -> list[str]:
    return [s.text for s in _flatten(stmts)]


def g_residual(ctx, s, avail, depth, budget):
    body, out, used = g_seq(ctx, s, "keep", ctx.int(1, 3), avail, depth + 1, budget - 1, final=s[-1])
    assert body and out == s, (body, out, s)
    return Residual(_flatten(body), f"{ctx.word('residual')} " + _block(ctx, [_body_texts(body)]))


def _half(s):
    return (-(-s[0] // 2), -(-s[1] // 2), s[2])


def g_path(ctx, s, target_hw, target_c, avail, depth, budget):
    """Statements taking shape s to spatial ``target_hw`` (and channels ``target_c`` if given)."""
    vec = len(s) == 1
    if vec:
        stmts, out, used = g_seq(ctx, s, "keep", ctx.int(0, 2), avail, depth + 1, budget, final=target_c)
        if not _flatten(stmts):
            last = g_act(ctx, out)
            out, k = ctx.run(last, out)
            stmts.append(last)
            used += k
        return stmts, out, used
    half = target_hw != s[:2]
    stmts, out, used = g_seq(ctx, s, "keep", ctx.int(0, 2), avail, depth + 1, max(budget - 1, 0))
    if half:
        if ctx.maybe(0.5):
            last = g_conv(ctx, out, "half", target_c)
        else:
            if target_c is not None and out[2] != target_c:
                fix = g_conv(ctx, out, "keep", target_c)
                out, k = ctx.run(fix, out)
                stmts.append(fix)
                used += k
            last = g_pool(ctx, out, "half")
        out, k = ctx.run(last, out)
        stmts.append(last)
        used += k
    elif target_c is not None and out[2] != target_c:
        fix = g_fix(ctx, out, target_c)
        out, k = ctx.run(fix, out)
        stmts.append(fix)
        used += k
    if not _flatten(stmts):
        last = g_act(ctx, out)
        out, k = ctx.run(last, out)
        stmts.append(last)
        used += k
    return stmts, out, used


def g_parallel(ctx, s, mode, avail, depth, budget):
    kind = ctx.choice(("add", "concat"))
    vec = len(s) == 1
    npaths = ctx.int(2, 3)
    per = max(1, (budget - 1) // npaths)
    half = (not vec) and mode == "free" and ctx.maybe(0.3)
    target_hw = None if vec else (_half(s)[:2] if half else s[:2])
    if kind == "add":
        target_c = s[-1] if ctx.maybe(0.5) else ctx.int(1, MAX_C)
    else:
        target_c = None
    paths, outs = [], []
    for i in range(npaths):
        if not half and (target_c is None or target_c == s[-1]) and ctx.maybe(0.25):
            paths.append([g_identity(ctx)])
            outs.append(s)
            continue
        if kind == "concat":
            left = MAX_CONCAT_C - sum(o[-1] for o in outs) - (npaths - i - 1)
            tc = ctx.int(1, max(1, min(8, left)))
        else:
            tc = target_c
        stmts, out, _ = g_path(ctx, s, target_hw, tc, avail, depth, per)
        paths.append(_flatten(stmts))
        outs.append(out)
    merge_rule(kind, outs)  # raises Invalid on a strategy bug
    if kind == "add" and ctx.maybe(0.25):
        kind = "mul"  # the same shapes multiplied (ops_layers' mul)
    texts = [[x.text for x in p] for p in paths]
    return Parallel(kind, paths, f"{ctx.word(kind)} " + _block(ctx, texts))


def g_repeat(ctx, s, mode, avail, depth, budget):
    body_budget = max(1, min(budget // 2, 5))
    body, out, used = g_seq(ctx, s, "keep" if ctx.maybe(0.7) else mode, ctx.int(1, 3), avail, depth + 1, body_budget)
    body = _flatten(body)
    if not body:
        body = [g_act(ctx, s)]
        out, used = ctx.run(body[0], s)
    want = ctx.int(1, 4)
    per = max(used, 1)
    want = max(1, min(want, budget // per if budget >= per else 1))
    # the body was drawn for the first pass; later passes must still be valid: lower the count until they are
    n = want
    while n > 1:
        try:
            Sim(ctx.params).stmt(Repeat(Num(n), body, ""), s, ctx.env.new_child(), ChainMap({}, ctx.labels))
            break
        except Invalid:
            n -= 1
    if ctx.maybe(0.25) and ctx.style["vars"]:
        v = ctx.var_for(n, True)
        count = Var(v) if v is not None else Num(n)
    elif ctx.maybe(0.1):
        count = Paren(ctx.int_expr(n, depth=1))
    else:
        count = Num(n)
    text = f"{ctx.word('repeat')} {count.render()} " + _block(ctx, [[x.text for x in body]])
    stmt = Repeat(count, body, text)
    out, used = ctx.run(stmt, s)
    return stmt, out, used


def _mergeable(ctx, s, avail):
    return any(n in ctx.labels and _compatible(ctx.labels[n], s) for n in avail)


def _compatible(a, b, kind=None):
    if kind in (None, "add") and a == b:
        return True
    if kind in (None, "concat") and len(a) == len(b) and a[:-1] == b[:-1] and a[-1] + b[-1] <= MAX_CONCAT_C:
        return True
    return False


def g_merge(ctx, s, avail):
    cands = [n for n in avail if n in ctx.labels]
    kind = ctx.choice(("add", "concat"))
    ok = [n for n in cands if _compatible(ctx.labels[n], s, kind)]
    if not ok:
        kind = "concat" if kind == "add" else "add"
        ok = [n for n in cands if _compatible(ctx.labels[n], s, kind)]
    if not ok:
        return None
    names = [ctx.choice(ok)]
    for n in ok:
        if n not in names and ctx.maybe(0.25):
            if kind == "concat" and s[-1] + sum(ctx.labels[m][-1] for m in names + [n]) > MAX_CONCAT_C:
                continue
            names.append(n)
    if kind == "add" and ctx.maybe(0.25):
        kind = "mul"  # the same shapes multiplied (ops_layers' mul)
    return Merge(kind, names, ctx.join([ctx.word(kind)] + names))


def _labelled_start(ctx, s, vec):
    """``L: identity`` or ``L: <layer keeping H and W>``."""
    name = ctx.label()
    if ctx.maybe(0.3):
        inner = g_identity(ctx)
    else:
        inner = g_simple(ctx, s, "keep")
        if isinstance(inner, Identity):
            inner = g_conv(ctx, s, "keep") if not vec else g_dense(ctx, s)
    return name, Labeled(name, inner, f"{name}: {inner.text}")


def g_skip(ctx, s, avail, depth, budget):
    """``L: X; ...; add L`` (or concat): a skip connection by name."""
    vec = len(s) == 1
    name, first = _labelled_start(ctx, s, vec)
    stmts = [first]
    cur, used = ctx.run(first, s)
    local = [name]
    kind = ctx.choice(("add", "concat"))
    final = ctx.labels[name][-1] if kind == "add" else None
    body, cur, k = g_seq(ctx, cur, "keep", ctx.int(1, 3), local, depth + 1, max(budget - used - 1, 1), final=final)
    stmts += body
    for x in _flatten(body):
        if isinstance(x, Labeled):
            local.append(x.name)
    if kind == "concat" and ctx.labels[name][-1] + cur[-1] > MAX_CONCAT_C:
        kind = "add"
        fix = g_fix(ctx, cur, ctx.labels[name][-1])
        cur, _ = ctx.run(fix, cur)
        stmts.append(fix)
    outer = [n for n in avail if n in ctx.labels and n not in local]
    names = [name] + [
        n for n in local[1:] + outer if n in ctx.labels and _compatible(ctx.labels[n], cur, kind) and ctx.maybe(0.4)
    ]
    if kind == "concat":
        total = cur[-1]
        keep = []
        for n in names:
            if total + ctx.labels[n][-1] <= MAX_CONCAT_C:
                keep.append(n)
                total += ctx.labels[n][-1]
        names = keep
    merge = Merge(kind, names, ctx.join([ctx.word(kind)] + names))
    if ctx.maybe(0.15):
        lab = ctx.label()
        merge = Labeled(lab, merge, f"{lab}: {merge.text}")
    stmts.append(merge)
    return stmts


def g_from(ctx, s, avail, depth, budget):
    """``A: X; ...; B: Y; from A; ...; concat B``: a second branch from a named node, merged back."""
    vec = len(s) == 1
    a, first = _labelled_start(ctx, s, vec)
    stmts = [first]
    cur, used = ctx.run(first, s)
    seq1, cur, k = g_seq(ctx, cur, "keep", ctx.int(0, 2), [a], depth + 1, max((budget - used) // 2, 1))
    stmts += seq1
    b = ctx.label()
    flat = _flatten(seq1)
    if flat and isinstance(flat[-1], Layer | Residual | Parallel | Call | Merge) and ctx.maybe(0.6):
        # label the branch's last statement itself
        last = flat[-1]
        labelled = Labeled(b, last, f"{b}: {last.text}")
        # replace it in place (it may sit inside a Seq)
        _replace_last(stmts, last, labelled)
        ctx.labels[b] = cur
    else:
        inner = g_identity(ctx) if ctx.maybe(0.5) else g_act(ctx, cur)
        lab = Labeled(b, inner, f"{b}: {inner.text}")
        cur, _ = ctx.run(lab, cur)
        stmts.append(lab)
    stmts.append(From(a, ctx.join([ctx.word("from"), a])))
    cur = ctx.labels[a]
    kind = ctx.choice(("add", "concat"))
    if kind == "concat" and cur[-1] + ctx.labels[b][-1] > MAX_CONCAT_C - MAX_C:
        kind = "add"
    final = ctx.labels[b][-1] if kind == "add" else None
    seq2, cur, _ = g_seq(ctx, cur, "keep", ctx.int(0, 2), [a], depth + 1, max((budget - used) // 2, 1), final=final)
    stmts += seq2
    stmts.append(Merge(kind, [b], ctx.join([ctx.word(kind), b])))
    return stmts


def _replace_last(stmts, old, new):
    for i in range(len(stmts) - 1, -1, -1):
        x = stmts[i]
        if x is old:
            stmts[i] = new
            return True
        if isinstance(x, Seq) and _replace_last(x.stmts, old, new):
            return True
    raise AssertionError("statement not found")  # pragma: no cover


# ---- programs -------------------------------------------------------------------------------------


@dataclass
class Program:
    text: str
    params: dict
    expected_shapes: list
    expected_layer_params: list
    expected_trainable: int
    expected_non_trainable: int
    expected_output_shape: tuple
    input_shape: tuple
    stmts: list = field(default_factory=list, repr=False)

    def __getitem__(self, key):
        return getattr(self, key)

    @property
    def expected_total(self) -> int:
        return self.expected_trainable + self.expected_non_trainable


def _render_top(ctx: Ctx, texts: list[str], crlf: bool) -> str:
    out = []
    if ctx.maybe(0.2):
        out.append(ctx.choice(COMMENTS) + "\n")
    if ctx.maybe(0.1):
        out.append(ctx.choice(("\n", ";", "\n\n", " \n", ";\n")))
    for i, t in enumerate(texts):
        out.append(t)
        if i == len(texts) - 1:
            break
        sep = ctx.choice(("\n", "\n", "\n", "; ", ";", "\n\n", " ;\n", ";;", "\n  ", "comment"))
        if sep == "comment":
            sep = ctx.choice(("  ", " ", "\t")) + ctx.choice(COMMENTS) + "\n" + ctx.choice(("", "\n", "# more\n"))
        out.append(sep)
    out.append(ctx.choice(("", "\n", "\n", ";", "\n\n", "  # end\n", "  # end")))
    text = "".join(out)
    if crlf:
        text = text.replace("\n", "\r\n")
    return text


@st.composite
def programs(draw, max_layers: int = 12) -> Program:
    """A random valid netdsl program and its independently computed shapes and counts."""
    ctx = Ctx(draw, max_layers)
    how = ctx.choice(("default", "map", "map", "vec"))
    input_text = None
    if how == "default":
        shape = (28, 28, 1)
        if ctx.maybe(0.2):
            input_text = f"{ctx.word('input')} 28x28x1"
    elif how == "map":
        shape = (ctx.int(1, MAX_HW), ctx.int(1, MAX_HW), ctx.int(1, 4))
        if ctx.maybe(0.7):
            shape = (shape[0], shape[0], shape[2])
        input_text = ctx.join([ctx.word("input"), "x".join(map(str, shape))])
    else:
        shape = (ctx.int(1, 64),)
        input_text = ctx.join([ctx.word("input"), str(shape[0])])
    input_shape = shape
    top: list = []
    used = 0
    avail: list = []
    while used < max_layers:
        stmt, shape, k = g_stmt(ctx, shape, "free", avail, 0, max_layers - used)
        top.extend(ctx.pending)
        ctx.pending.clear()
        top.append(stmt)
        for x in _flatten([stmt]):
            if isinstance(x, Labeled) and x.name in ctx.labels:
                avail.append(x.name)
        used += k
        if used >= 1 and ctx.maybe(0.12):
            break
    if ctx.maybe(0.25):  # end in stacked activations: a fused one, then standalone ones
        head = g_head(ctx, shape)
        for x in head:
            shape, _ = ctx.run(x, shape)
        top.append(Seq(head))
    top = _flatten(top)
    # the no-effect statements: defs (hoisted: anywhere), unused lets, train, data, input
    extras = []
    for d in ctx.defs:
        extras.append(Text(d.text))
    if ctx.maybe(0.1):
        name = ctx.fresh(LET_NAMES)
        extras.append(Let(name, Num(ctx.int(0, 99)), f"{ctx.word('let')} {name} = {ctx.int(0, 99)}"))
    if ctx.maybe(0.1):
        opt = ctx.choice(("adam", "sgd", "adamw", "rmsprop", "adagrad", "adadelta", "nadam", ""))
        keys = ["lr=0.003", "epochs=2", "batch=32", "validation=0.1"][: ctx.int(0, 4)]
        keys += ctx.choice(([], ["weight_decay=1e-4"], ["clip_norm=1.0", "label_smoothing=0.1"], ["patience=3"]))
        if opt == "sgd" and ctx.maybe(0.5):
            keys += ["momentum=0.9"] + (["nesterov=true"] if ctx.maybe(0.5) else [])
        keys += ctx.choice(
            (
                [],
                ["schedule=step", "gamma=0.7"],
                ["schedule=exponential"],
                ["schedule=cosine"],
                ["schedule=plateau", "lr_patience=2", "min_lr=1e-5"],
                ["warmup=1", "epochs=3"],
            )
        )
        extras.append(
            Text(
                ctx.join(
                    [
                        ctx.word("train"),
                        opt,
                        ctx.kws(
                            list(
                                dict.fromkeys(
                                    k
                                    for k in keys
                                    if not (k.startswith("epochs=") and "epochs=3" in keys and k != "epochs=3")
                                )
                            )
                        ),
                    ]
                )
            )
        )
    if ctx.maybe(0.1):
        extras.append(Text(ctx.join([ctx.word("data"), ctx.choice(("mnist", "fashion-mnist", "fashion_mnist"))])))
    for x in extras:
        if isinstance(x, Let):  # an unused let must not shadow anything: put it first
            top.insert(0, x)
        else:
            top.insert(ctx.int(0, len(top)), x)
    if input_text is not None:
        # `input` must come before the first layer; defs, lets and comments may precede it
        first_layer = next((i for i, x in enumerate(top) if not isinstance(x, Text | Let)), len(top))
        top.insert(ctx.int(0, first_layer) if ctx.maybe(0.2) else 0, Text(input_text))
    text = _render_top(ctx, [x.text for x in top], crlf=ctx.maybe(0.05))
    sim = Sim(ctx.params)
    out = sim.program(top, input_shape)
    recs = sim.records
    return Program(
        text=text,
        params=dict(ctx.params),
        expected_shapes=[r[0] for r in recs],
        expected_layer_params=[(r[1], r[2]) for r in recs],
        expected_trainable=sum(r[1] for r in recs),
        expected_non_trainable=sum(r[2] for r in recs),
        expected_output_shape=tuple(out),
        input_shape=tuple(input_shape),
        stmts=top,
    )


# ---- mutations ---------------------------------------------------------------------------------------


def _pick(draw, seq):
    """A near-uniform choice (``sampled_from`` favours the first entries, which the mutations do not want)."""
    seq = tuple(seq)
    return seq[draw(st.integers(0, 2**16 - 1)) % len(seq)]


HUGE = (
    "99999999999",
    "2147483648",
    "2147483647",
    "9223372036854775808",
    "1" + "0" * 40,
    "1e308",
    "1e999",
    "99999999999x3",
    "3x99999999999",
    "100001",
    "0",
    "-1",
    "0x3",
    "3x0",
    "1.5",
    ".0",
    "1e-400",
    "00007",
    "9" * 400,
    "1" + "0" * 309,
    "0." + "0" * 400 + "1",
)
TOKENS = (
    "{",
    "}",
    "(",
    ")",
    "|",
    ";",
    ":",
    "=",
    ",",
    "/",
    "//",
    "x",
    "-",
    "+",
    "*",
    "#",
    "\n",
    " ",
    "\t",
    "conv",
    "dense",
    "add",
    "concat",
    "residual",
    "repeat",
    "let",
    "def",
    "from",
    "input",
    "train",
    "data",
    "identity",
    "relu",
    "same",
    "valid",
    "flatten",
    "gap",
    "maxpool",
    "upsample",
    "reshape",
    "batchnorm",
    "dropout",
    "leakyrelu",
    "a",
    "x1",
    "undefined_name",
    "f",
    "filters=",
    "kernel=3",
    "stride=0",
    "padding=",
    "3x3",
    "2/2",
    "8x3/2",
    "3x3x3x3",
    "1x1x1",
    "2/0",
    "0/2",
    "let x = 1/0",
    "repeat 3 {",
    "add {",
    "concat {",
    "residual {",
    "def g(a) {",
    "g(1)",
    "a:",
    ": :",
    "from a",
    "add a a",
    "input 0",
    "input 3x3",
    "input 1x1x1",
    "train adam",
    "data mnist",
)
UNICODE = (
    "\u00e9",
    "\u03bb",
    "\u00d7",
    "\u2028",
    "\u2029",
    "\u00a0",
    "\ufeff",
    "\u200b",
    "\U0001f600",
    "\x00",
    "\x0b",
    "\x0c",
    "\x1b",
    "\r",
    "\x7f",
    "\x85",
    "\ud800",
    "\u0301",
    "\uff10",
    "\u0660",
    "\u2014",
    "\u201c",
    "'",
    '"',
    "\\",
    "`",
    "$",
    "@",
    "!",
    "?",
    "%",
    "^",
    "&",
    "~",
    "[",
    "]",
    "<",
    ">",
)
_TOKEN_RE = re.compile(r"\d+(?:x\d+)*(?:/\d+)?|\d*\.\d+(?:[eE][+-]?\d+)?|[A-Za-z_][A-Za-z0-9_]*|//|\S|\n")


def _insert_piece(draw) -> str:
    kind = _pick(draw, ("token", "huge", "unicode", "text", "nest", "digits"))
    if kind == "token":
        return _pick(draw, TOKENS)
    if kind == "huge":
        return _pick(draw, HUGE)
    if kind == "unicode":
        return _pick(draw, UNICODE)
    if kind == "nest":
        k = _pick(draw, (2, 5, 63, 65, 200))
        return _pick(draw, ("{" * k, "(" * k, "}" * k, ")" * k, "residual {" * k, "-" * k, "repeat 2 {" * min(k, 70)))
    if kind == "digits":
        return _pick(draw, ("9", "0", "1", "99", "0.", ".", "e", "e5", "x", "x9"))
    return draw(st.text(min_size=1, max_size=6))


EDITS = (
    "delete_chars",
    "insert",
    "replace_chars",
    "delete_token",
    "replace_token",
    "insert_token",
    "duplicate_line",
    "swap_lines",
    "delete_line",
    "truncate",
    "truncate_line",
    "join_lines",
    "case",
    "huge_number",
    "insert_line",
    "insert_kwarg",
    "swap_names",
    "duplicate_token",
    "wrap_block",
    "long_line_cut",
)
# characters that are blank to str.strip() but are not netdsl whitespace
ODD_SPACE = ("\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u1680", "\u2000", "\u2028", "\u2029", "\u3000", "\ufeff")
EXTREME = ("9" * 400, "1" + "0" * 309, "99999999999", "2147483648", "1e999", "0", "1e-400", "100001")


@st.composite
def _edit(draw, text: str) -> tuple[str, str]:
    n = len(text)
    how = _pick(draw, EDITS)
    pos = draw(st.integers(0, n))
    lines = text.split("\n")
    if how == "insert_line":  # a line of its own: a blank line with a stray character, a lone keyword...
        i = draw(st.integers(0, len(lines)))
        piece = _pick(draw, ODD_SPACE) if draw(st.booleans()) else _insert_piece(draw)
        lines.insert(i, _pick(draw, ("", " ", "\t")) + piece)
        return "\n".join(lines), how
    if how == "wrap_block":  # put some lines into a block
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(i, min(len(lines) - 1, i + 3)))
        head = _pick(
            draw,
            (
                "residual {",
                "repeat 2 {",
                "add {",
                "concat {",
                "def g(c) {",
                "repeat n {",
                "add { identity |",
                "concat { identity |",
            ),
        )
        lines[i : j + 1] = [head, *lines[i : j + 1], _pick(draw, ("}", "", "| relu }", "}}"))]
        return "\n".join(lines), how
    if how == "join_lines" and len(lines) > 1:  # long lines (and comments that swallow what follows)
        i = draw(st.integers(0, len(lines) - 2))
        j = draw(st.integers(i + 1, min(len(lines) - 1, i + 12)))
        lines[i : j + 1] = [_pick(draw, ("; ", " ", ";")).join(lines[i : j + 1])]
        return "\n".join(lines), how
    if how == "long_line_cut" and len(lines) > 1:  # a long line (many statements) that stops mid-statement
        i = draw(st.integers(0, len(lines) - 2))
        j = min(len(lines) - 1, i + draw(st.integers(4, 24)))
        long = "; ".join(lines[i : j + 1])
        cut = draw(st.integers(len(long) // 2, len(long)))
        lines[i : j + 1] = [long[:cut] + _pick(draw, ("", "(", "=", " +", " {", ",", " filters=", " 3x", " |"))]
        return "\n".join(lines), how
    if how == "truncate_line":  # cut one line short, keep the rest of the program
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        return "\n".join(lines), how
    if how == "delete_chars" and n:
        k = draw(st.integers(1, 5))
        return text[:pos] + text[pos + k :], how
    if how == "insert":
        return text[:pos] + _insert_piece(draw) + text[pos:], how
    if how == "replace_chars" and n:
        k = draw(st.integers(1, 3))
        return text[:pos] + _insert_piece(draw) + text[pos + k :], how
    tokens = list(_TOKEN_RE.finditer(text))
    names = [m for m in tokens if m.group()[:1].isalpha() or m.group()[:1] == "_"]
    if how == "swap_names" and names:  # one name written where another stands: labels, defs, variables, layers
        m = _pick(draw, names)
        other = _pick(draw, [x.group() for x in names] + ["input", "conv_1", "add_1", "relu_1"])
        return text[: m.start()] + other + text[m.end() :], how
    if how == "insert_kwarg" and tokens:  # NAME=VALUE after a token (often a statement's first word)
        if draw(st.booleans()):
            firsts = [
                m
                for m in tokens
                if m.start() == 0
                or text[m.start() - 1] in "\n;{|"
                or text[: m.start()].rstrip(" \t").endswith(("\n", ";", "{", "|"))
            ]
            tokens = firsts or tokens
        m = _pick(draw, tokens)
        key = _pick(
            draw,
            (
                "n",
                "filters",
                "kernel",
                "size",
                "stride",
                "rate",
                "units",
                "c",
                "lr",
                "shape",
                "bias",
                "padding",
                "alpha",
                "eps",
                "x",
            ),
        )
        val = _pick(
            draw,
            (
                "0",
                "1",
                "3",
                "3x3",
                "relu",
                "same",
                "-1",
                "1/0",
                "99999999999",
                "c",
                "n",
                "true",
                "(1",
                "3x3x3",
                "9" * 400,
            ),
        )
        return text[: m.end()] + f" {key}={val}" + text[m.end() :], how
    if how == "duplicate_token" and tokens:
        m = _pick(draw, tokens)
        return text[: m.end()] + _pick(draw, ("", " ")) + m.group() + text[m.end() :], how
    if how in ("delete_token", "replace_token", "insert_token", "huge_number", "case") and tokens:
        if how == "huge_number":
            nums = [m for m in tokens if m.group()[:1].isdigit() or m.group()[:1] == "."]
            reals = [m for m in nums if re.search(r"[.eE]", m.group())]  # rates, alphas, eps, lr: float arguments
            tokens = (reals if reals and draw(st.booleans()) else nums) or tokens
        m = _pick(draw, tokens)
        a, b = m.span()
        if how == "delete_token":
            return text[:a] + text[b:], how
        if how == "replace_token":
            return text[:a] + _insert_piece(draw) + text[b:], how
        if how == "huge_number":
            return text[:a] + _pick(draw, EXTREME if draw(st.booleans()) else HUGE) + text[b:], how
        if how == "case":
            return text[:a] + m.group().swapcase() + text[b:], how
        sp = _pick(draw, ("", " "))
        return text[:b] + sp + _pick(draw, TOKENS) + sp + text[b:], how
    if how in ("duplicate_line", "swap_lines", "delete_line"):
        i = draw(st.integers(0, len(lines) - 1))
        if how == "duplicate_line":
            lines.insert(i, lines[i])
        elif how == "delete_line":
            del lines[i]
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines), how
    if how == "truncate":
        return text[:pos], how
    return text[:pos] + _insert_piece(draw) + text[pos:], "insert"


@dataclass
class Mutation:
    text: str
    params: dict
    original: str
    edits: list

    def __getitem__(self, key):
        return getattr(self, key)


def mutate(text: str, max_edits: int = 4):
    """A strategy: ``text`` with 1..max_edits random edits (returns the edited text)."""
    return _mutation(st.just(text), st.just({}), max_edits).map(lambda m: m.text)


@st.composite
def _mutation(draw, texts, params, max_edits):
    original = draw(texts)
    p = draw(params)
    text = original
    edits = []
    for _ in range(draw(st.integers(1, max_edits))):
        text, how = draw(_edit(text))
        edits.append(how)
    return Mutation(text, dict(p), original, edits)


def mutations(source=None, max_edits: int = 4, max_layers: int = 8):
    """Mutated programs.

    ``source``: None (mutate random valid programs, keeping their parameters), a program
    text, or a strategy of texts.  Draws a :class:`Mutation`.
    """
    if source is None:
        progs = programs(max_layers=max_layers)
        return progs.flatmap(lambda pr: _mutation(st.just(pr.text), st.just(pr.params), max_edits))
    texts = st.just(source) if isinstance(source, str) else source
    return _mutation(texts, st.just({}), max_edits)


def mutation_batches(per_program: int = 8, max_edits: int = 4, max_layers: int = 8):
    """Lists of ``per_program`` independent :class:`Mutation` s of one random valid program.

    Drawing the program costs far more than editing and parsing it, so a batch tests
    several mutants for the price of one program.
    """
    return programs(max_layers=max_layers).flatmap(
        lambda pr: st.lists(
            _mutation(st.just(pr.text), st.just(pr.params), max_edits), min_size=per_program, max_size=per_program
        )
    )


# ---- search spaces (netdsl sweep) -------------------------------------------------------------

_SPACEABLE = re.compile(r"(?<![\w.\-/x])([0-9]+)(?![\w.x/])")  # a lone whole number, not part of a size or name


@st.composite
def search_spaces(draw, max_layers: int = 8):
    """A valid program with some of its whole numbers made search spaces whose default is
    the number itself (`choice(3, 7)`, `int(3, 5)`, `log(3, 40)`): the default candidate
    must then be exactly the drawn program.  Returns (program, text with spaces, count)."""
    prog = draw(programs(max_layers=max_layers))
    lines = prog.text.split("\n")
    count = 0
    for i, line in enumerate(lines):
        heads = [part.lstrip().lower() for part in line.partition("#")[0].split(";")]  # `;input 1` too
        if any(h.startswith(("input", "data")) for h in heads) or line.lstrip().startswith("#") or not line.strip():
            continue
        code, hash_, comment = line.partition("#")
        matches = list(_SPACEABLE.finditer(code))
        for m in reversed(matches):
            if not draw(st.booleans()):
                continue
            n = int(m.group(1))
            kind = draw(st.sampled_from(("choice", "int", "log") if n > 0 else ("choice", "int")))
            other = n + draw(st.integers(1, 5))
            text = {"choice": f"choice({n}, {other})", "int": f"int({n}, {other})", "log": f"log({n}, {other})"}[kind]
            code = code[: m.start()] + text + code[m.end() :]
            count += 1
        lines[i] = code + hash_ + comment
    return prog, "\n".join(lines), count

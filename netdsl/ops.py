"""The closed table of layers: arguments, shorthand, shape rule, parameter count.

Adding a layer means one entry in ``OPS`` here (and, later, one per backend).
Shapes are channels-last without the batch axis: ``(H, W, C)`` for a feature map,
``(N,)`` for a vector.  Semantics are Keras's (docs/language.md, "Semantics"): TF ``same``
padding (``ceil(in / stride)``), pool stride defaulting to the pool size,
batchnorm's moving statistics counted as non-trainable.

Shape rules are pure functions of ``(args, input_shapes)``; they raise
:class:`ShapeError` quoting every input, and the checker adds the source position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

Shape = tuple  # (H, W, C) or (N,)

MAX_SIZE = 2**31 - 1  # the frameworks index with int32; nothing larger is a real layer

ACTIVATIONS = (
    "linear", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "gelu", "elu", "selu", "silu", "leakyrelu",
)  # fmt: skip
PADDINGS = ("valid", "same")
WORDS = frozenset(ACTIVATIONS + PADDINGS + ("true", "false", "nearest"))


class ArgError(Exception):
    """A bad argument; ``where`` is the index of the offending argument (or None: the layer)."""

    def __init__(self, message: str, where: Any = None, hint: str | None = None):
        super().__init__(message)
        self.message, self.where, self.hint = message, where, hint


class ShapeError(Exception):
    """A shape rule failed; ``culprit`` is the index of the input to blame (default 0)."""

    def __init__(self, code: str, message: str, hint: str | None = None, culprit: int | None = 0):
        super().__init__(message)
        self.code, self.message, self.hint, self.culprit = code, message, hint, culprit


def fmt_shape(shape: Shape) -> str:
    """``4x4x16 feature map`` / ``vector of 256``."""
    if len(shape) == 1:
        return f"vector of {shape[0]}"
    return "x".join(map(str, shape)) + {3: " feature map", 2: " sequence"}.get(len(shape), " tensor")


# ---- argument converters: value -> checked value, or ArgError -------------------


def _is_int(v: Any) -> bool:
    return not isinstance(v, bool) and (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))


def _int(name: str, v: Any, lo: int = 1) -> int:
    if not _is_int(v):
        raise ArgError(f"{name} must be a whole number, got {_show(v)}")
    v = int(v)
    if v < lo:
        raise ArgError(f"{name} must be at least {lo}, got {show_number(v)}")
    if v > MAX_SIZE:
        raise ArgError(f"{name} = {show_number(v)} is too large (the limit is {MAX_SIZE:,})")
    return v


def show_number(v: Any, commas: bool = False) -> str:
    """A number as a message shows it: whole, or compact when long (``-D h=1e308`` is ``1e+308``,
    not 309 digits)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) and abs(v) < 10**15:
        return f"{v:,}" if commas else str(v)
    try:
        return f"{float(v):.6g}"
    except OverflowError:  # an int past float's range
        return f"{'-' if v < 0 else ''}about 1e+{int(abs(v).bit_length() * 0.30103)}"


def integer(lo: int = 1) -> Callable:
    return lambda name, v: _int(name, v, lo)


def pair(lo: int = 1) -> Callable:
    """An int (square) or an ``AxB`` size."""

    def conv(name: str, v: Any) -> tuple[int, int]:
        if isinstance(v, tuple):
            if len(v) != 2:
                raise ArgError(f"{name} takes one number or HxW, got {'x'.join(map(str, v))}")
            return (_int(name, v[0], lo), _int(name, v[1], lo))
        n = _int(name, v, lo)
        return (n, n)

    return conv


def real(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Callable:
    def conv(name: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ArgError(f"{name} must be a number, got {_show(v)}")
        try:
            v = float(v)
        except OverflowError:  # an int with hundreds of digits
            raise ArgError(f"{name} is too large") from None
        if v != v or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
            lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
            raise ArgError(f"{name} must be in {lb}{lo:g}, {hi:g}{rb}, got {_show(v)}")
        return v

    return conv


def enum(*choices: str) -> Callable:
    def conv(name: str, v: Any) -> str:
        if isinstance(v, str) and v.lower() in choices:
            return v.lower()
        from .errors import did_you_mean

        hint = did_you_mean(v, choices) if isinstance(v, str) else None
        raise ArgError(f"{name} must be one of {', '.join(choices)}; got {_show(v)}", hint=hint)

    conv.choices = choices  # type: ignore[attr-defined]  # a bare word here is a choice, not a variable
    return conv


def boolean(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if _is_int(v) and v in (0, 1):
        return bool(v)
    raise ArgError(f"{name} must be true or false, got {_show(v)}")


def dims(name: str, v: Any) -> tuple[int, ...]:
    v = v if isinstance(v, tuple) else (v,)
    if len(v) not in (1, 3):
        raise ArgError(f"{name} must be N or HxWxC, got {'x'.join(map(show_number, v))}")
    return tuple(_int(name, x) for x in v)


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return "x".join(map(show_number, v))
    if isinstance(v, str):
        return f"`{v}`"
    if isinstance(v, float):
        short = f"{v:g}"
        return short if float(short) == v else repr(v)  # 3.0000000000000004 is not "3"
    return show_number(v)


# ---- the op table ----------------------------------------------------------------


class Pos(NamedTuple):
    """One positional (shorthand) argument: a size ``6x5/2``, a number, or a word."""

    kind: str  # "size" | "word"
    value: Any  # tuple of ints (+ stride) for sizes; str for words
    stride: int | None = None


class Op(NamedTuple):
    name: str
    keras: str  # the Keras class, shown in the summary like Keras shows it
    family: str  # conv, pool, dense, norm, activation, merge, shape, regularization, input
    args: dict  # name -> (converter, default); REQUIRED marks a required one
    size: Callable | None  # shorthand size/number -> {arg: value}; None: takes none
    shape: Callable  # (args, [input shapes]) -> output shape
    weights: Callable = lambda a, ins: ()  # -> ((name, shape, trainable), ...) in Keras's layout
    macs: Callable = lambda a, ins, out: 0
    describe: Callable = lambda a: ""  # key arguments, for tables and drawings
    finish: Callable = lambda a: a  # cross-argument checks and derived defaults


REQUIRED = object()


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= x
    return n


def _needs_map(op: str, s: Shape, hint: str | None = None) -> None:
    if len(s) != 3:
        raise ShapeError(
            "E202",
            f"{op} needs a HxWxC feature map, got a {fmt_shape(s)}",
            hint or "reshape it first (e.g. `reshape 28x28x1`), or move this layer before `flatten`",
        )


def _window(op: str, what: str, n_in: int, k: int, s: int, padding: str, dil: int = 1) -> int:
    if padding == "same":
        return -(-n_in // s)
    eff = dil * (k - 1) + 1
    if n_in < eff:
        raise ShapeError("E203", f"{op} {what} {eff} does not fit the input size {n_in}: the output would be empty")
    return (n_in - eff) // s + 1


def _spatial(op: str, what: str, s: Shape, k, st, padding, dil=(1, 1)) -> tuple[int, int]:
    _needs_map(op, s)
    try:
        return (
            _window(op, what, s[0], k[0], st[0], padding, dil[0]),
            _window(op, what, s[1], k[1], st[1], padding, dil[1]),
        )
    except ShapeError as e:
        kk = f"{dil[0] * (k[0] - 1) + 1}x{dil[1] * (k[1] - 1) + 1}"
        raise ShapeError(
            "E203",
            f"{op} {what} {kk} does not fit the {s[0]}x{s[1]} input: the output would be empty",
            "use `padding=same`, a smaller " + what + ", or less downsampling before it",
        ) from e


# conv ---------------------------------------------------------------------------


def _conv_size(d: tuple, stride: int | None) -> dict:
    if len(d) == 1:
        raise ArgError(f"conv shorthand is FxK (filters x kernel), e.g. `conv {d[0]}x3`; got {d[0]}")
    out = {"filters": d[0], "kernel": d[1] if len(d) == 2 else tuple(d[1:])}
    if len(d) > 3:
        raise ArgError(f"conv shorthand is FxK or FxKHxKW, got {'x'.join(map(str, d))}")
    if stride is not None:
        out["stride"] = stride
    return out


def _conv_shape(a: dict, ins: list) -> Shape:
    (s,) = ins
    _needs_map("conv", s, "reshape it first (e.g. `reshape 28x28x1`), or use `dense` on a vector")
    oh, ow = _spatial("conv", "kernel", s, a["kernel"], a["stride"], a["padding"], a["dilation"])
    if s[2] % a.get("groups", 1):
        raise ShapeError(
            "E140",
            f"conv with groups={a['groups']} splits its input's channels into groups, but the {fmt_shape(s)} has {s[2]}",
            "use a number of groups that divides the input's channels (and the filters)",
        )
    return (oh, ow, a["filters"])


def _conv_weights(a: dict, ins: list) -> tuple:
    kh, kw = a["kernel"]
    f = a["filters"]
    kernel = ("kernel", (kh, kw, ins[0][2] // a.get("groups", 1), f), True)  # HWIO, as Keras holds it
    return (kernel, ("bias", (f,), True)) if a["bias"] else (kernel,)


def _conv_macs(a: dict, ins: list, out: Shape) -> int:
    kh, kw = a["kernel"]
    return out[0] * out[1] * out[2] * kh * kw * ins[0][2] // a.get("groups", 1)


def _conv_check(a: dict) -> dict:
    if max(a["stride"]) > 1 and max(a["dilation"]) > 1:
        raise ArgError("conv cannot combine a stride > 1 with a dilation > 1 (Keras refuses it)")
    if a["filters"] % a["groups"]:
        raise ArgError(f"conv with groups={a['groups']} needs filters divisible by it, got {a['filters']}", hint=None)
    return a


def _conv_describe(a: dict) -> str:
    kh, kw = a["kernel"]
    k = f"{kh}" if kh == kw else f"{kh}x{kw}"
    sh, sw = a["stride"]
    st = f"{sh}" if sh == sw else f"{sh}x{sw}"
    bits = [f"{a['filters']}\u00d7{k}"] + ([f"/{st}"] if st != "1" else [])  # stride 1 goes without saying
    if a["padding"] != "valid":
        bits.append(a["padding"])
    if a["dilation"] != (1, 1):
        bits.append(f"dilation={a['dilation'][0]}")
    if a.get("groups", 1) != 1:
        bits.append(f"groups={a['groups']}")
    if a["activation"] != "linear":
        bits.append(a["activation"])
    return " ".join(bits)


# pooling -------------------------------------------------------------------------


def _pool_size(d: tuple, stride: int | None) -> dict:
    if len(d) > 2:
        raise ArgError(f"pool size is P or PxQ, got {'x'.join(map(str, d))}")
    out = {"size": d[0] if len(d) == 1 else d}
    if stride is not None:
        out["stride"] = stride
    return out


def _pool_shape(name: str) -> Callable:
    def rule(a: dict, ins: list) -> Shape:
        (s,) = ins
        oh, ow = _spatial(name, "window", s, a["size"], a["stride"], a["padding"])
        return (oh, ow, s[2])

    return rule


def _pool_finish(a: dict) -> dict:
    if a["stride"] is None:  # Keras: strides default to pool_size
        a["stride"] = a["size"]
    return a


def _pool_describe(a: dict) -> str:
    p, s = a["size"], a["stride"]
    txt = (f"{p[0]}" if p[0] == p[1] else f"{p[0]}x{p[1]}") + "/" + (f"{s[0]}" if s[0] == s[1] else f"{s[0]}x{s[1]}")
    return txt + (" same" if a["padding"] == "same" else "")


# dense ---------------------------------------------------------------------------


def _dense_shape(a: dict, ins: list) -> Shape:
    (s,) = ins
    if len(s) != 1:
        raise ShapeError("E201", f"dense needs a vector, got a {fmt_shape(s)}", "insert `flatten` (or `gap`) before it")
    return (a["units"],)


def _one(name: str) -> Callable:
    def size(d: tuple, stride: int | None) -> dict:
        if stride is not None or len(d) != 1:
            raise ArgError(
                f"{name} takes a single number here, got {'x'.join(map(str, d))}" + (f"/{stride}" if stride else "")
            )
        return {name: d[0]}

    return size


# simple shape rules ----------------------------------------------------------------


def _same(a: dict, ins: list) -> Shape:
    return ins[0]


def _gpool(op: str) -> Callable:
    def rule(a: dict, ins: list) -> Shape:
        _needs_map(op, ins[0], "it pools the H and W axes of a feature map; on a vector it is not needed")
        return (ins[0][2],)

    return rule


def _flatten(a: dict, ins: list) -> Shape:
    return (_prod(ins[0]),)


def _upsample_size(d: tuple, stride: int | None) -> dict:
    if stride is not None or len(d) > 2:
        got = "x".join(map(str, d)) + (f"/{stride}" if stride is not None else "")
        raise ArgError(f"upsample takes S or SxT, got {got}")
    return {"size": d[0] if len(d) == 1 else d}


def _upsample(a: dict, ins: list) -> Shape:
    (s,) = ins
    _needs_map("upsample", s)
    return (s[0] * a["size"][0], s[1] * a["size"][1], s[2])


def _reshape(a: dict, ins: list) -> Shape:
    target, have = a["shape"], _prod(ins[0])
    if _prod(target) != have:
        raise ShapeError(
            "E207",
            f"reshape to {'x'.join(map(str, target))} needs {_prod(target):,} elements, got a {fmt_shape(ins[0])} ({have:,})",
        )
    return target


def _add(a: dict, ins: list) -> Shape:
    first = ins[0]
    for i, s in enumerate(ins[1:], 1):
        if s != first:
            raise ShapeError(
                "E204",
                f"add needs inputs of one shape, got {fmt_shape(first)} and {fmt_shape(s)}",
                "make both paths end with the same number of channels (or use `concat`)",
                culprit=i,
            )
    return first


def _concat(a: dict, ins: list) -> Shape:
    first = ins[0]
    for i, s in enumerate(ins[1:], 1):
        if len(s) != len(first) or s[:-1] != first[:-1]:
            raise ShapeError(
                "E205",
                f"concat joins on the channel axis; all other axes must match, got {fmt_shape(first)} and {fmt_shape(s)}",
                "bring them to one height and width first (pooling, strides, `upsample`, or `padding=same`)",
                culprit=i,
            )
    return first[:-1] + (sum(s[-1] for s in ins),)


def _bn_weights(a: dict, ins: list) -> tuple:
    c = (ins[0][-1],)
    return (("gamma", c, True), ("beta", c, True), ("moving_mean", c, False), ("moving_variance", c, False))


def _dense_weights(a: dict, ins: list) -> tuple:
    kernel = ("kernel", (ins[0][0], a["units"]), True)  # (in, out), as Keras holds it
    return (kernel, ("bias", (a["units"],), True)) if a["bias"] else (kernel,)


def count(op: Op, args: dict, ins: list) -> tuple[int, int]:
    """(trainable, non-trainable) parameters: the sizes of the op's weights."""
    t = nt = 0
    for _, shape, trainable in op.weights(args, ins):
        if trainable:
            t += _prod(shape)
        else:
            nt += _prod(shape)
    return t, nt


def _act_describe(a: dict) -> str:
    return a["activation"] if a.get("activation", "linear") != "linear" else ""


_ACT = {"activation": (enum(*ACTIVATIONS), "linear")}
_PAD = {"padding": (enum(*PADDINGS), "valid")}


def _activation(name: str, keras: str, **extra) -> Op:
    args = dict(extra)
    size = _one(next(iter(args))) if args else None
    return Op(name, keras, "activation", args, size, _same)


OPS: dict[str, Op] = {
    op.name: op
    for op in [
        Op(
            "conv",
            "Conv2D",
            "conv",
            {
                "filters": (integer(), REQUIRED),
                "kernel": (pair(), REQUIRED),
                "stride": (pair(), 1),
                **_PAD,
                **_ACT,
                "dilation": (pair(), 1),
                "bias": (boolean, True),
                "groups": (integer(), 1),
            },
            _conv_size,
            _conv_shape,
            _conv_weights,
            _conv_macs,
            _conv_describe,
            finish=_conv_check,
        ),
        Op(
            "maxpool",
            "MaxPooling2D",
            "pool",
            {"size": (pair(), REQUIRED), "stride": (pair(), None), **_PAD},
            _pool_size,
            _pool_shape("maxpool"),
            describe=_pool_describe,
            finish=_pool_finish,
        ),
        Op(
            "avgpool",
            "AveragePooling2D",
            "pool",
            {"size": (pair(), REQUIRED), "stride": (pair(), None), **_PAD},
            _pool_size,
            _pool_shape("avgpool"),
            describe=_pool_describe,
            finish=_pool_finish,
        ),
        Op("gap", "GlobalAveragePooling2D", "pool", {}, None, _gpool("gap")),
        Op("gmp", "GlobalMaxPooling2D", "pool", {}, None, _gpool("gmp")),
        Op("flatten", "Flatten", "shape", {}, None, _flatten),
        Op(
            "dense",
            "Dense",
            "dense",
            {"units": (integer(), REQUIRED), **_ACT, "bias": (boolean, True)},
            _one("units"),
            _dense_shape,
            _dense_weights,
            lambda a, ins, out: ins[0][0] * a["units"],
            lambda a: f"{a['units']}" + (f" {a['activation']}" if a["activation"] != "linear" else ""),
        ),
        Op(
            "dropout",
            "Dropout",
            "regularization",
            {"rate": (real(0, 1, hi_open=True), REQUIRED)},
            _one("rate"),
            _same,
            describe=lambda a: f"{a['rate']:g}",
        ),
        Op(
            "batchnorm",
            "BatchNormalization",
            "norm",
            {"eps": (real(0, 1, lo_open=True), 1e-3), "momentum": (real(0, 1), 0.99)},
            None,
            _same,
            _bn_weights,
        ),
        Op(
            "upsample",
            "UpSampling2D",
            "shape",
            {"size": (pair(), REQUIRED), "interpolation": (enum("nearest"), "nearest")},
            _upsample_size,
            _upsample,
            describe=lambda a: (
                f"\u00d7{a['size'][0]}" if a["size"][0] == a["size"][1] else f"\u00d7{a['size'][0]}x{a['size'][1]}"
            ),
        ),
        Op(
            "reshape",
            "Reshape",
            "shape",
            {"shape": (dims, REQUIRED)},
            lambda d, stride: {"shape": d},  # the whole size: `reshape 7x7x16`
            _reshape,
            describe=lambda a: "x".join(map(str, a["shape"])),
        ),
        Op("add", "Add", "merge", {}, None, _add),
        Op("concat", "Concatenate", "merge", {}, None, _concat),
        *(
            _activation(n, k)
            for n, k in [
                ("linear", "Activation"),
                ("relu", "ReLU"),
                ("sigmoid", "Activation"),
                ("tanh", "Activation"),
                ("softmax", "Softmax"),
                ("log_softmax", "Activation"),
                ("gelu", "Activation"),
                ("elu", "ELU"),
                ("selu", "Activation"),
                ("silu", "Activation"),
            ]
        ),
        _activation("leakyrelu", "LeakyReLU", alpha=(real(0, 1e6), 0.3))._replace(
            describe=lambda a: f"\u03b1={a['alpha']:g}"
        ),
    ]
}

ALIASES = {
    "conv2d": "conv",
    "maxpool2d": "maxpool",
    "max_pool": "maxpool",
    "maxpooling2d": "maxpool",
    "avgpool2d": "avgpool",
    "averagepooling2d": "avgpool",
    "avg_pool": "avgpool",
    "globalavgpool": "gap",
    "globalaveragepooling2d": "gap",
    "globalmaxpooling2d": "gmp",
    "fc": "dense",
    "linear_layer": "dense",
    "bn": "batchnorm",
    "batchnormalization": "batchnorm",
    "leaky_relu": "leakyrelu",
    "logsoftmax": "log_softmax",
    "swish": "silu",
    "upsampling2d": "upsample",
}


def lookup(name: str) -> Op | None:
    low = name.lower()
    op = OPS.get(ALIASES.get(low, low))
    if op is None:  # not built in: the installed plugins (netdsl.ops entry points) are loaded once
        from . import plugins

        if not plugins.loaded():
            plugins.load()
            op = OPS.get(ALIASES.get(low, low))
    return op


def resolve(op: Op, positional: list[Pos], keywords: dict[str, tuple[Any, int]]) -> dict:
    """Turn shorthand and keyword arguments into the op's full, checked argument dict.

    ``keywords`` maps a (lower-cased) keyword to ``(value, index)``; the index of
    the offending argument (position in the statement) travels in ``ArgError.where``.
    """
    given: dict[str, tuple[Any, Any]] = {}
    sized = False
    for i, p in enumerate(positional):
        if p.kind == "size":
            if op.size is None:
                raise ArgError(f"{op.name} takes no size or number, got {_size_text(p)}", ("pos", i))
            if sized:
                raise ArgError(f"{op.name} takes one size, got a second one: {_size_text(p)}", ("pos", i))
            sized = True
            try:
                for k, v in op.size(p.value, p.stride).items():
                    given[k] = (v, ("pos", i))
            except ArgError as e:
                e.where = ("pos", i)
                raise
            continue
        word = p.value.lower()
        slot = "activation" if word in ACTIVATIONS else "padding" if word in PADDINGS else None
        if slot is None or slot not in op.args:
            slot = _pre.word_slot(op, word) or slot  # `randomflip horizontal`, `fill` words
        if slot is None or slot not in op.args:
            expect = [k for k in ("activation", "padding") if k in op.args]
            from .errors import did_you_mean

            choices = (ACTIVATIONS if "activation" in op.args else ()) + (PADDINGS if "padding" in op.args else ())
            hint = did_you_mean(p.value, choices) if choices else None
            what = " or ".join(f"an {k}" if k[0] in "a" else f"a {k}" for k in expect) or "no words"
            raise ArgError(f"`{p.value}` is not an argument of {op.name} (it takes {what})", ("pos", i), hint)
        if slot in given:
            raise ArgError(f"{op.name} got two {slot}s", ("pos", i))
        given[slot] = (word, ("pos", i))
    for key, (value, where) in keywords.items():
        if key not in op.args:
            from .errors import did_you_mean

            hint = did_you_mean(key, op.args)
            known = ", ".join(op.args) or "none"
            raise ArgError(f"{op.name} has no argument `{key}` (its arguments: {known})", where, hint)
        if key in given:
            raise ArgError(f"{op.name} got `{key}` twice (shorthand and keyword)", where)
        given[key] = (value, where)
    out = {}
    for key, (conv, default) in op.args.items():
        if key in given:
            value, where = given[key]
            if value is None:
                out[key] = None
                continue
            try:
                out[key] = conv(key, value)
            except ArgError as e:
                e.where = where
                raise
        elif default is REQUIRED:
            raise ArgError(f"{op.name} needs `{key}`", None, _usage(op))
        else:
            out[key] = conv(key, default) if default is not None else None
    return op.finish(out)


def _size_text(p: Pos) -> str:
    return "x".join(map(_show, p.value)) + (f"/{p.stride}" if p.stride else "")


USAGE = {
    "conv": "conv FxK[/S] [activation] [same|valid], e.g. `conv 32x3 relu same`",
    "maxpool": "maxpool P[/S] [same|valid], e.g. `maxpool 2/2`",
    "avgpool": "avgpool P[/S] [same|valid], e.g. `avgpool 2`",
    "dense": "dense N [activation], e.g. `dense 10 softmax`",
    "dropout": "dropout RATE, e.g. `dropout 0.5`",
    "upsample": "upsample S, e.g. `upsample 2`",
    "reshape": "reshape HxWxC or reshape N, e.g. `reshape 7x7x16`",
}


def _usage(op: Op) -> str | None:
    return f"usage: {USAGE[op.name]}" if op.name in USAGE else None


def usage(name: str) -> str | None:
    return USAGE.get(name)


# ---- layers kept in their own module (netdsl/ops_layers.py) ------------------------------------
from . import ops_layers as _more  # noqa: E402  (it builds on the helpers above)

OPS.update((op.name, op) for op in _more.OPS)
ALIASES.update(_more.ALIASES)
USAGE.update(_more.USAGE)
# ---- preprocessing and augmentation layers (their own module, one hook here) ----------------
from . import ops_preprocess as _pre  # noqa: E402  (it imports this module's helpers)

OPS.update(_pre.OPS)
ALIASES.update(_pre.ALIASES)
USAGE.update(_pre.USAGE)
WORDS = WORDS | _pre.WORDS

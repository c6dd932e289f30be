"""The safety net of `netdsl fmt`: a formatted text is written only when it means what the
original meant.

Two comparisons.  When the spec compiles, the graphs (every node's op, arguments, inputs,
shape and counts; the output; the train settings) must be equal.  Whatever the spec's
state, the syntax trees must be equal modulo layout: spans, comments, the case of words
and the shorthand/keyword form of a layer's size (`conv filters=8 kernel=3` is `conv 8x3`).
The tree comparison needs only a spec that parses, so fmt still checks its own output on
a spec with free parameters, an unknown plugin layer or a shape error.
"""

from __future__ import annotations

from .errors import NetdslError, Source, Span
from .fmt_args import DEEP, SHORTHAND
from .frontend import syntax as s


def graph_meaning(net) -> tuple:
    """Everything a compiled spec means (the tests compare the same)."""
    nodes = tuple(
        (name, n["op"], repr(n["args"]), tuple(n["inputs"]), n["shape"], n["trainable"], n["non_trainable"], n["macs"])
        for name, n in net.graph.nodes.items()
    )
    return nodes, net.graph.graph["output"], repr(sorted(net.train_config.items()))


class _Dumper:
    """A syntax tree as nested tuples, without layout."""

    def __init__(self, text: str):
        self.text = text
        self.starts = [0]
        for line in text.split("\n")[:-1]:
            self.starts.append(self.starts[-1] + len(line) + 1)

    def snippet(self, span: Span) -> str:
        a = self.starts[span.line - 1] + span.column - 1
        b = self.starts[span.end_line - 1] + span.end_column - 1
        return self.text[a:b]

    def dump(self, x):
        if isinstance(x, tuple | list):
            return tuple(self.dump(v) for v in x)
        if isinstance(x, s.Word):
            return ("W", x.text.lower())
        if isinstance(x, s.Num):
            return ("N", x.value)
        if isinstance(x, s.BinOp | s.Neg) and x.size > DEEP:  # printed as written by fmt: compare the text
            return ("T", self.snippet(x.span))
        if isinstance(x, s.Size):
            return ("S", self.dump(x.dims), self.dump(x.stride))
        if isinstance(x, s.Layer):
            return ("Layer", x.name.text.lower(), self.layer_args(x.name.text.lower(), x.args))
        if isinstance(x, s.Call) and x.shorthand is not None and not x.glued and _is_layer(x.name.text):
            # `conv (2*c) x 3`: a layer written with a parenthesis first is the layer
            return ("Layer", x.name.text.lower(), self.layer_args(x.name.text.lower(), x.shorthand))
        fields = getattr(x, "__match_args__", None)
        if fields is None:
            return x
        return (type(x).__name__, *(self.dump(getattr(x, f)) for f in fields if f != "span"))

    def layer_args(self, op: str, args):
        """A shorthand layer's arguments as {key: value}; any other layer's as written."""
        from .ops import ACTIVATIONS, WORDS

        if op not in SHORTHAND:
            return self.raw(args)
        main, stride_key = SHORTHAND[op]
        out: dict = {}

        def put(key, value) -> bool:
            if key in out:
                return False
            out[key] = value
            return True

        def dims(v) -> tuple:
            return self.dump(v.dims) if isinstance(v, s.Size) and v.stride is None else (self.dump(v),)

        for a in args:
            if isinstance(a, s.Keyword):
                key = a.key.text.lower() if isinstance(a.key, s.Word) else self.dump(a.key)
                ok = put(key, dims(a.value) if key in (*main, stride_key) else self.dump(a.value))
            elif isinstance(a, s.Name) and a.name.lower() in WORDS:
                key = "activation" if a.name.lower() in ACTIVATIONS else "padding"
                ok = put(key, self.dump(a))
            else:
                ds = self.dump(a.dims) if isinstance(a, s.Size) else (self.dump(a),)
                stride = a.stride if isinstance(a, s.Size) else None
                if len(main) == 2 and len(ds) > 1:  # `conv 8x3`: filters, then the kernel
                    ok = put(main[0], ds[:1]) and put(main[1], ds[1:])
                else:
                    ok = put(main[0], ds)
                if ok and stride is not None:
                    ok = put(stride_key, dims(stride))
            if not ok:  # a key twice, or a variable holding a word: the formatter keeps the arguments
                return self.raw(args)
        return ("kw", tuple(sorted(out.items(), key=repr)))

    def raw(self, args) -> tuple:
        """Arguments the formatter keeps as written, up to its order: sizes first (in order), then
        the words, then the keywords."""
        from .ops import ACTIVATIONS, PADDINGS, WORDS

        def is_word(a) -> bool:
            return isinstance(a, s.Name) and a.name.lower() in WORDS

        def lifted(a) -> bool:  # `padding=same` is written `same`
            if not (isinstance(a, s.Keyword) and isinstance(a.key, s.Word) and isinstance(a.value, s.Name)):
                return False
            pool = {"activation": ACTIVATIONS, "padding": PADDINGS}.get(a.key.text.lower(), ())
            return a.value.name.lower() in pool

        keywords = sorted((self.dump(a) for a in args if isinstance(a, s.Keyword) and not lifted(a)), key=repr)
        words = sorted((self.dump(a.value if lifted(a) else a) for a in args if is_word(a) or lifted(a)), key=repr)
        sizes = [self.dump(a) for a in args if not isinstance(a, s.Keyword) and not is_word(a)]
        return ("raw", tuple(sizes), tuple(words), tuple(keywords))


def _is_layer(name: str) -> bool:
    from .ops import lookup

    return lookup(name) is not None


def tree_meaning(text: str, program: s.Program) -> tuple:
    return _Dumper(text).dump(program.stmts)


def check_same(old_text: str, old_program, new_text: str, old_net, params, input_shape, filename: str) -> None:
    """Raise E804 unless ``new_text`` (normalised line endings, no BOM) means what ``old_text`` meant."""
    from .frontend.driver import parse_program
    from .net import compile_source

    why = None
    try:
        new_program = parse_program(new_text)
    except NetdslError as e:
        why = f"it does not parse ({e.code}: {e.message})"
    else:
        if tree_meaning(old_text, old_program) != tree_meaning(new_text, new_program):
            why = "its syntax tree differs from the original's"
        elif old_net is not None:
            try:
                new_net = compile_source(Source(new_text, filename), params or {}, input_shape, program=new_program)
            except NetdslError as e:
                why = f"it does not compile ({e.code}: {e.message})"
            else:
                if graph_meaning(new_net) != graph_meaning(old_net):
                    why = "it compiles to a different graph"
    if why:
        raise NetdslError(
            "E804",
            f"internal error in the formatter: the formatted text would change the spec's meaning ({why}); "
            "the file is left as it is",
            hint="please report this spec; `netdsl fmt --diff` shows what the formatter would write",
            source=Source(old_text, filename),
        )

"""Standalone PyTorch source for a net: :func:`generate`, which prints :mod:`torch_program`'s program.

Imports neither torch nor numpy (``netdsl compile`` runs with the base install).  Each step
kind of the program has its source here (:data:`SOURCE`); :mod:`netdsl.backends.torch` has
the same kinds as callables, and the helpers copied into a generated file are the very text
that module compiles, so the generated and the in-memory model are the same network.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
import unicodedata
from collections.abc import Callable

from .torch_program import (
    _HELPERS,
    ACT,
    HELPER_CLASSES,
    MERGES,
    _attrs,
    _ends_in_softmax,
    _layer,
    _program,
    _unmangled,
    frozen,
)

__all__ = ["SOURCE", "generate"]

# ---- forward steps as source ---------------------------------------------------------------


def _act_src(x: str, name: str) -> str:
    fn, kw = ACT[name]
    return f"{fn}({', '.join([x, *(f'{k}={_lit(v)}' for k, v in kw.items())])})"


def _reshape_src(x: str, shape: tuple, from_nhwc: bool, to_nchw: bool) -> str:
    src = f"flatten_hwc({x})" if from_nhwc else x
    if len(shape) == 3 and not to_nchw:
        shape = (shape[2], shape[0], shape[1])
    src += f".reshape({x}.shape[0], {', '.join(map(_lit, shape))})"
    return src + ".permute(0, 3, 1, 2).contiguous()" if to_nchw else src


def _pad_src(x: str, pad: tuple, value: float) -> str:
    return f"F.pad({x}, {_lit(pad)})" if value == 0 else f'F.pad({x}, {_lit(pad)}, value=float("-inf"))'


# step kind -> its source from (input, attribute, *literals); the torch module's _RUN has the same kinds
SOURCE: dict[str, Callable[..., str]] = {
    "module": lambda x, attr: f"self.{attr}({x})",
    "act": lambda x, attr, name: _act_src(x, name),
    "pad": lambda x, attr, pad, value: _pad_src(x, pad, value),
    "flatten": lambda x, attr, nhwc: f"flatten_hwc({x})" if nhwc else f"{x}.flatten(1)",
    "reshape": lambda x, attr, *lits: _reshape_src(x, *lits),
    "gap": lambda x, attr: f"{x}.mean((2, 3))",
    "gmp": lambda x, attr: f"{x}.amax((2, 3))",
    "add": lambda xs, attr: " + ".join(xs),
    "concat": lambda xs, attr: f"torch.cat([{', '.join(xs)}], dim=1)",
    "mul": lambda xs, attr: " * ".join(xs),
}


def _lit(v) -> str:
    """A literal as Python source: only numbers, booleans, fixed words and tuples of them."""
    if isinstance(v, tuple):
        return "(" + ", ".join(map(_lit, v)) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, (bool, int)) or (isinstance(v, float) and math.isfinite(v)):
        return repr(v)
    if isinstance(v, str) and re.fullmatch(r"[a-z][a-z-]*", v):
        return f'"{v}"'
    raise ValueError(f"not a literal the generator emits: {v!r}")


# ---- generated source ----------------------------------------------------------------------

_GLOBALS = {"torch", "nn", "F", "build_model", *_HELPERS}
_LOCALS = frozenset(dir(builtins)) | _GLOBALS | {"self", "x"}
_USES_F = re.compile(r"(?<![\w.])F\.")


def _comment(text: str) -> str:
    """User-derived text made safe for one ``#`` comment line: no line breaks or control characters."""
    return "".join(c for c in str(text) if c == " " or unicodedata.category(c)[0] not in "CZ").rstrip()


def _class_name(name: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", str(name))
    cls = "".join(w[:1].upper() + w[1:] for w in words)
    if not cls or cls[0].isdigit():
        cls = "Net" + cls
    if keyword.iskeyword(cls) or cls in _GLOBALS:
        cls += "Net"
    return cls


def _shape_src(shape: tuple) -> str:
    s = (shape[-1], *shape[:-1]) if len(shape) > 1 else tuple(shape)
    return "(N, " + ", ".join(map(str, s)) + ")"


def _ctor_src(module: tuple) -> str:
    cls, args, kwargs = module
    parts = [_lit(a) for a in args] + [f"{k}={_lit(v)}" for k, v in kwargs.items()]
    qualified = cls if cls in HELPER_CLASSES else f"nn.{cls}"
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", cls), cls  # torch.nn's existence is the torch module's test
    return f"{qualified}({', '.join(parts)})"


def _forward_src(net, attrs: dict, logits: bool) -> list[str]:
    """The body of ``forward`` (or of ``forward_logits``): :func:`_program`, printed."""
    g = net.graph
    entries, out = _program(net, logits)
    order = ["input", *(e.name for e in entries)]
    pos = {n: i for i, n in enumerate(order)}
    # a value lives in `x` unless a node other than the next one reads it: then in a variable
    saved = {i for e in entries for i in e.inputs if pos[e.name] != pos[i] + 1}
    ref: dict[str, str] = {}
    used: set[str] = set()
    for n in order:
        ref[n] = "x"
        if n in saved:
            ref[n] = _unmangled(attrs[n], _LOCALS, used)
            used.add(ref[n])
    lines = [f"{ref['input']} = x"] if "input" in saved else []
    for name, inputs, steps in entries:
        srcs = [ref[i] for i in inputs]
        expr = srcs if steps[0][0] in MERGES else srcs[0]
        for kind, *lits in steps:
            expr = SOURCE[kind](expr, attrs[name], *lits)
        note = f"  # {name}: {_shape_src(g.nodes[name]['shape'])}"
        lines.append(f"return {expr}{note}" if name == out else f"{ref[name]} = {expr}{note}")
        if name == out:
            break
    if out == "input":
        lines.append("return x")
    return lines


def generate(net) -> str:
    """Standalone PyTorch source for ``net``: an ``nn.Module`` class and ``build_model()``.

    Every identifier in it is fixed text or a node name (which the grammar limits to
    ``[A-Za-z_][A-Za-z0-9_]*``, renamed as on the in-memory model), every value the
    ``repr`` of a number; other user text (the file name) appears only in comments.
    """
    g = net.graph
    attrs = _attrs(net)
    cls = _class_name(net.name)
    out = g.nodes[g.graph["output"]]
    softmax = _ends_in_softmax(g)
    in_shape, out_shape = _shape_src(g.nodes["input"]["shape"]), _shape_src(out["shape"])

    inits, classes, plugin_defs = [], [], []
    for name in list(g.nodes)[1:]:
        module = _layer(g, name).module
        if module is not None and module[0].startswith("plugin:"):
            from .. import plugins

            defs, expr = plugins.source(net, name, "torch_source")
            inits.append(f"self.{attrs[name]} = {expr}")
            if defs.strip() and defs not in plugin_defs:
                plugin_defs.append(defs.strip("\n"))
            continue
        if module is not None:
            inits.append(f"self.{attrs[name]} = {_ctor_src(module)}")
            if module[0] in HELPER_CLASSES and module[0] not in classes:
                classes.append(module[0])
    fixed, fixed_bn = frozen(net, attrs)
    inits += [f"self.{a}.requires_grad_(False)  # frozen" for a in fixed]
    if softmax:
        body = _forward_src(net, attrs, logits=True)
        # forward = the step forward_logits leaves out, applied to it (see _program)
        kind, *lits = _layer(g, g.graph["output"]).steps[-1]
        final = SOURCE[kind]("self.forward_logits(x)", attrs[g.graph["output"]], *lits)
        methods = [
            [
                "def forward(self, x: torch.Tensor) -> torch.Tensor:",
                f'    """{in_shape} -> {out_shape}: probabilities (softmax over dim 1)."""',
                f"    return {final}",
            ],
            [
                "def forward_logits(self, x: torch.Tensor) -> torch.Tensor:",
                '    """The values before the final softmax (for a stable cross-entropy)."""',
                *("    " + line for line in body),
            ],
        ]
    else:
        body = _forward_src(net, attrs, logits=False)
        methods = [
            [
                "def forward(self, x: torch.Tensor) -> torch.Tensor:",
                f'    """{in_shape} -> {out_shape}."""',
                *("    " + line for line in body),
            ]
        ]
    if fixed_bn:  # Keras runs a batchnorm with trainable=False in inference mode, in training too
        methods.insert(
            0,
            [
                "def train(self, mode: bool = True):",
                '    """As nn.Module\'s; the frozen batchnorm layers stay in inference mode, as in Keras."""',
                "    super().train(mode)",
                *(f"    self.{a}.eval()" for a in fixed_bn),
                "    return self",
            ],
        )
    code = "\n".join(inits + [line for m in methods for line in m])
    helpers = ["keras_init"] + (["flatten_hwc"] if "flatten_hwc(" in code else []) + classes
    uses_f = bool(_USES_F.search(code)) or any(
        _USES_F.search(t) for t in [*(_HELPERS[c] for c in classes if c in _HELPERS), *plugin_defs]
    )

    head = [
        "# A PyTorch model generated by netdsl; it needs only torch to run.",
        "#",
        f"# Source: {_comment(net.source.filename)}",
        "#",
        *(f"# {_comment(line)}".rstrip() for line in net.summary().splitlines()),
        "#",
        "# build_model() returns the model with Keras's initialisation (glorot-uniform",
        "# kernels, zero biases).  It takes and returns NCHW tensors (vectors as (N, C));",
        "# flatten and reshape use Keras's (H, W, C) order, so Keras weights carry over.",
        "",
        "import torch",
        *(["import torch.nn.functional as F"] if uses_f else []),
        "from torch import nn",
    ]
    klass = [
        f"class {cls}(nn.Module):",
        f'    """{in_shape} -> {out_shape}, as netdsl built it."""',
        "",
        *(
            ["    netdsl_output_is_softmax = True  # forward_logits() gives the values before it", ""]
            if softmax
            else []
        ),
        "    def __init__(self) -> None:",
        "        super().__init__()",
        *("        " + line for line in inits),
    ]
    for m in methods:
        klass += ["", *("    " + line for line in m)]
    factory = [
        f"def build_model() -> {cls}:",
        f'    """A new `{cls}` with Keras\'s initialisation."""',
        f"    model = {cls}()",
        "    keras_init(model)",
        "    return model",
    ]
    shape = g.nodes["input"]["shape"]
    dims = (shape[-1], *shape[:-1]) if len(shape) > 1 else tuple(shape)
    main = [  # `python this_file.py`: build, print, run one batch (a smoke test anyone can run)
        'if __name__ == "__main__":',
        "    model = build_model().eval()",
        "    print(model)",
        f"    x = torch.rand({', '.join(map(str, (2, *dims)))})",
        "    with torch.no_grad():",
        "        y = model(x)",
        '    print(f"input {tuple(x.shape)} -> output {tuple(y.shape)}")',
    ]
    blocks = [
        "\n".join(head),
        *(_HELPERS[h].rstrip("\n") for h in helpers),
        *plugin_defs,  # plugin layers' own definitions (their generated-source builders)
        "\n".join(klass),
        "\n".join(factory),
        "\n".join(main),
    ]
    return "\n\n\n".join(blocks) + "\n"

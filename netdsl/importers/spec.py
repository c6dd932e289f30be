"""The importers' common half: a graph of netdsl layers becomes spec text, a Net and its weights.

A reader (:mod:`netdsl.backends.torch_import_fx`, :mod:`.keras_cfg`) produces :class:`Node` records in a
topological order, each already in netdsl's terms (op, resolved arguments, weights in the
canonical Keras layout).  :func:`assemble` writes the spec a person would have written
(shorthand, blocks for series-parallel graphs, ``repeat`` for runs of identical
statements, labels only where a skip needs one), parses it with netdsl itself and maps
the weights onto the parsed net's nodes in the order the spec creates them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import NetdslError

# statement keywords: never a label (docs/language.md, "Reserved words")
_RESERVED = frozenset("input from add concat mul residual repeat let def train data identity".split())
_FOLD_LIMIT = 5000  # statements per level that repeat-folding looks at
_MAX_PERIOD = 64  # statements in one repeated group, at most (keeps the search near-linear)


@dataclass
class Node:
    """One netdsl layer of an imported graph."""

    name: str  # unique id within the import (the reader's)
    op: str  # a netdsl op
    args: dict  # the op's arguments, netdsl's names and values
    inputs: list  # names of the nodes feeding it ("input" for the net's input)
    origin: str  # where it came from, for labels and messages (`layer1.0.conv1`)
    weights: dict = field(default_factory=dict)  # canonical name -> numpy array
    functional: bool = False  # an activation applied as a function (fusable into its producer)


class Unsupported(NetdslError):
    """What cannot be imported (E702/E703/E704), with the place and the list of what is supported."""


# ---- one layer as a line ------------------------------------------------------------------


def _num(v) -> str:
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    return str(v)


def _size(pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _conv_like(n: Node) -> str:
    """conv, dwconv, sepconv and conv1d: a size (kernel, or filters x kernel), then the options."""
    a, op = n.args, n.op
    one = op == "conv1d"
    k = str(a["kernel"]) if one else _size(a["kernel"])
    text = f"{op} {k}" if op == "dwconv" else f"{op} {a['filters']}x{k}"
    stride = a.get("stride", 1 if one else (1, 1))
    extra = []
    if one and stride != 1:
        text += f"/{stride}"
    elif not one and stride != (1, 1):
        if stride[0] == stride[1]:
            text += f"/{stride[0]}"
        else:
            extra.append(f"stride={_size(stride)}")
    if a.get("activation", "linear") != "linear":
        text += f" {a['activation']}"
    if a.get("padding", "valid") == "same":
        text += " same"
    if a.get("multiplier", 1) != 1:
        extra.append(f"multiplier={a['multiplier']}")
    d = a.get("dilation", 1 if one else (1, 1))
    if d != (1 if one else (1, 1)):
        extra.append(f"dilation={d if one else _size(d)}")
    if a.get("groups", 1) != 1:
        extra.append(f"groups={a['groups']}")
    if not a.get("bias", True):
        extra.append("bias=false")
    return " ".join([text, *extra])


def line(n: Node) -> str:
    a, op = n.args, n.op
    if op in ("conv", "dwconv", "sepconv", "conv1d"):
        return _conv_like(n)
    if op in ("maxpool1d", "avgpool1d"):
        text = f"{op} {a['size']}" + (f"/{a['stride']}" if a["stride"] != a["size"] else "")
        return text + (" same" if a.get("padding", "valid") == "same" else "")
    if op in ("layernorm", "groupnorm"):
        text = op + (f" {a['groups']}" if op == "groupnorm" else "")
        return text + (f" eps={_num(a['eps'])}" if a.get("eps", 1e-3) != 1e-3 else "")
    if op == "rescale":
        text = f"rescale {_num(a['scale'])}" if a["scale"] > 0 else f"rescale scale={_num(a['scale'])}"
        return text + (f" offset={_num(a['offset'])}" if a.get("offset", 0) else "")
    if op in ("maxpool", "avgpool"):
        size, stride = a["size"], a["stride"]
        text = f"{op} {_size(size)}"
        extra = []
        if stride != size:
            if stride[0] == stride[1]:
                text += f"/{stride[0]}"
            else:
                extra.append(f"stride={_size(stride)}")
        if a.get("padding", "valid") == "same":
            text += " same"
        return " ".join([text, *extra])
    if op == "dense":
        text = f"dense {a['units']}"
        if a.get("activation", "linear") != "linear":
            text += f" {a['activation']}"
        return text + ("" if a.get("bias", True) else " bias=false")
    if op == "dropout":
        return f"dropout {_num(a['rate'])}"
    if op == "batchnorm":
        bits = ["batchnorm"]
        if a.get("eps", 1e-3) != 1e-3:
            bits.append(f"eps={_num(a['eps'])}")
        if a.get("momentum", 0.99) != 0.99:
            bits.append(f"momentum={_num(a['momentum'])}")
        return " ".join(bits)
    if op == "upsample":
        return f"upsample {_size(a['size'])}"
    if op == "reshape":
        return "reshape " + "x".join(map(str, a["shape"]))
    if op == "leakyrelu":
        return f"leakyrelu {_num(a['alpha'])}" if a.get("alpha", 0.3) != 0.3 else "leakyrelu"
    if op == "pad":
        t, b, lf, r = a["top"], a["bottom"], a["left"], a["right"]
        if t == b == lf == r:
            return f"pad {t}"
        if t == b and lf == r:
            return f"pad {t}x{lf}"
        return f"pad top={t} bottom={b} left={lf} right={r}"
    return op  # flatten, gap, gmp, and the activations


# ---- statements: series-parallel blocks where the graph has them ------------------------------


class _Fallback(Exception):
    """The graph is not series-parallel from the input: write it with labels instead."""


class _Emitter:
    def __init__(self, nodes: list[Node], output: str):
        self.nodes = {n.name: n for n in nodes}
        self.order = [n.name for n in nodes]
        self.output = output
        self.users: dict[str, list[str]] = {"input": [], **{n.name: [] for n in nodes}}
        for n in nodes:
            for i in n.inputs:
                self.users[i].append(n.name)

    # statements are ("layer", name) | ("block", op, [path | None]) | ("repeat", k, [pass, ...])
    def structured(self) -> list:
        stmts, end = self._walk("input")
        if end != self.output:
            raise _Fallback
        return stmts

    def _walk(self, c: str) -> tuple[list, str]:
        """Statements from ``c`` on, up to a node that feeds a merge of an enclosing block (or nothing)."""
        stmts: list = []
        while True:
            us = self.users[c]
            if not us:
                return stmts, c
            if len(us) == 1:
                if len(self.nodes[us[0]].inputs) > 1:
                    return stmts, c  # a merge: the caller's block ends here
                stmts.append(("layer", us[0]))
                c = us[0]
                continue
            branches = [self._branch(c, u) for u in us]
            while True:  # close the innermost complete block, then let it join the others
                m, group = self._complete(branches)
                ins = self.nodes[m].inputs
                block = ("block", m, [next(b[0] for b in group if b[1] == i) for i in ins])
                rest = [b for b in branches if b not in group]
                if not rest:
                    stmts.append(block)
                    c = m
                    break
                more, end = self._walk(m)
                branches = [*rest, ([block, *more], end, self._merge_of(end))]

    def _branch(self, c: str, u: str) -> tuple:
        """(statements or None for an identity path, its last node, the merge it feeds)."""
        if len(self.nodes[u].inputs) > 1:
            return None, c, u
        rest, end = self._walk(u)
        return [("layer", u), *rest], end, self._merge_of(end)

    def _merge_of(self, end: str) -> str:
        after = self.users[end]
        if len(after) != 1 or len(self.nodes[after[0]].inputs) < 2:
            raise _Fallback
        return after[0]

    def _complete(self, branches: list) -> tuple[str, list]:
        """A merge all of whose inputs are ends of these branches, one each, and those branches."""
        groups: dict[str, list] = {}
        for b in branches:
            groups.setdefault(b[2], []).append(b)
        for m, group in groups.items():
            ins, ends = self.nodes[m].inputs, [b[1] for b in group]
            if len(ins) == len(set(ins)) == len(ends) == len(set(ends)) and set(ins) == set(ends):
                return m, group
        raise _Fallback

    def labelled(self) -> list[str]:
        """Every node in order, with `from` and named merges: works for any DAG."""
        need: set[str] = set()
        plan = []
        cur = "input"
        for name in self.order:
            n = self.nodes[name]
            if len(n.inputs) == 1:
                if n.inputs[0] != cur:
                    need.add(n.inputs[0])
                    plan.append(("from", n.inputs[0]))
                plan.append(("layer", name))
            else:
                ins = list(n.inputs)
                if cur in ins and (n.op == "add" or ins[0] == cur):
                    ins.remove(cur)  # a sum's order does not change its value
                else:
                    need.add(ins[0])
                    plan.append(("from", ins[0]))
                    ins = ins[1:]
                need.update(ins)
                plan.append(("merge", name, ins))
            cur = name
        labels = _labels([self.nodes[x] for x in self.order if x in need])
        labels["input"] = "input"
        out = []
        for step in plan:
            if step[0] == "from":
                out.append(f"from {labels[step[1]]}")
                continue
            name = step[1]
            text = (
                line(self.nodes[name])
                if step[0] == "layer"
                else f"{self.nodes[name].op} " + " ".join(labels[i] for i in step[2])
            )
            out.append(f"{labels[name]}: {text}" if name in labels else text)
        return out


def _labels(nodes: list[Node]) -> dict[str, str]:
    out, used = {}, set()
    for n in nodes:
        base = re.sub(r"\W+", "_", n.origin).strip("_") or n.op
        if not re.match(r"[A-Za-z_]", base):
            base = "n_" + base
        if base.lower() in _RESERVED:
            base += "_"
        label, k = base, 2
        while label in used:
            label, k = f"{base}_{k}", k + 1
        used.add(label)
        out[n.name] = label
    return out


def _text(stmt, nodes) -> str:
    """A statement's text without its node names: what repeat-folding compares."""
    return "\n".join(_render([stmt], nodes, 0))


def fold(stmts: list, nodes: dict) -> list:
    """Runs of identical statements (or groups of them) become ``repeat N { ... }``."""
    stmts = [s if s[0] != "block" else ("block", s[1], [fold(p, nodes) if p else p for p in s[2]]) for s in stmts]
    if len(stmts) > _FOLD_LIMIT:
        return stmts
    texts = [_text(s, nodes) for s in stmts]
    out, i = [], 0
    while i < len(stmts):
        best = (0, 0, 0)  # (statements covered, -period, count)
        for p in range(1, min((len(stmts) - i) // 2, _MAX_PERIOD) + 1):
            if texts[i + p] != texts[i]:
                continue  # cannot repeat with this period: skip the slices
            k = 1
            while i + (k + 1) * p <= len(stmts) and texts[i + k * p : i + (k + 1) * p] == texts[i : i + p]:
                k += 1
            small = p == 1 and stmts[i][0] == "layer"
            if k >= (3 if small else 2) and (k * p, -p) > best[:2]:
                best = (k * p, -p, k)
        if best[0]:
            p, k = -best[1], best[2]
            if p > 1 and i + k * p < len(stmts) and texts[i] == texts[i + k * p]:
                out.append(stmts[i])  # the same run starts one later: let the repeat end on its activation
                i += 1
                continue
            out.append(("repeat", k, [stmts[i + j * p : i + (j + 1) * p] for j in range(k)]))
            i += k * p
        else:
            out.append(stmts[i])
            i += 1
    return out


def _one_line(stmts, nodes) -> str | None:
    """The statements joined by `;` when that is short enough to read on one line."""
    if not all(s[0] == "layer" for s in stmts) or len(stmts) > 6:
        return None
    text = "; ".join(line(nodes[s[1]]) for s in stmts)
    return text if len(text) <= 72 else None


def _render(stmts: list, nodes: dict, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    for s in stmts:
        if s[0] == "layer":
            out.append(pad + line(nodes[s[1]]))
        elif s[0] == "repeat":
            body = s[2][0]
            one = _one_line(body, nodes)
            if one is not None:
                out.append(f"{pad}repeat {s[1]} {{ {one} }}")
            else:
                out += [f"{pad}repeat {s[1]} {{", *_render(body, nodes, indent + 2), pad + "}"]
        else:
            op, paths = nodes[s[1]].op, s[2]
            if op == "add" and len(paths) == 2 and None in paths:
                body = next(p for p in paths if p is not None)
                one = _one_line(body, nodes)
                if one is not None:
                    out.append(f"{pad}residual {{ {one} }}")
                else:
                    out += [f"{pad}residual {{", *_render(body, nodes, indent + 2), pad + "}"]
                continue
            out.append(f"{pad}{op} {{")
            for k, p in enumerate(paths):
                lead = pad + ("  " if k == 0 else "| ")
                if p is None:
                    out.append(lead + "identity")
                elif _one_line(p, nodes) is not None:
                    out.append(lead + _one_line(p, nodes))
                else:
                    body = _render(p, nodes, indent + 2)
                    out += [lead + body[0].lstrip(), *body[1:]]
            out.append(pad + "}")
    return out


def _created(stmts: list, nodes: dict) -> list[str]:
    """The node names in the order the spec creates the nodes (blocks: paths, then the merge)."""
    out: list[str] = []
    for s in stmts:
        if s[0] == "layer":
            out.append(s[1])
        elif s[0] == "repeat":
            for p in s[2]:
                out += _created(p, nodes)
        else:
            for p in s[2]:
                if p is not None:
                    out += _created(p, nodes)
            out.append(s[1])
    return out


# ---- fusing ---------------------------------------------------------------------------------

_ACT_TAKERS = ("conv", "dense", "dwconv", "sepconv", "conv1d")
_FUSABLE = ("relu", "sigmoid", "tanh", "softmax", "log_softmax", "gelu", "elu", "selu", "silu")


def fuse(nodes: list[Node], output: str) -> tuple[list[Node], str]:
    """An activation applied as a function to a conv/dense's only use joins it, as the original wrote it."""
    users: dict[str, list[str]] = {}
    for n in nodes:
        for i in n.inputs:
            users.setdefault(i, []).append(n.name)
    by = {n.name: n for n in nodes}
    gone: dict[str, str] = {}
    for n in nodes:
        if not (n.functional and n.op in _FUSABLE and len(n.inputs) == 1):
            continue
        p = by.get(n.inputs[0])
        if p is None or p.op not in _ACT_TAKERS or p.args.get("activation", "linear") != "linear":
            continue
        if users.get(p.name) != [n.name] or p.name == output:
            continue
        p.args["activation"] = n.op
        gone[n.name] = p.name
    kept = [n for n in nodes if n.name not in gone]
    for n in kept:
        n.inputs = [gone.get(i, i) for i in n.inputs]
    return kept, gone.get(output, output)


# ---- the spec, the Net, the weights ---------------------------------------------------------


def input_line(shape: tuple) -> str:
    return "input " + "x".join(map(str, shape))


def _printable(text: str) -> str:
    """A header line as one comment line: a newline, CR or other control character in a source path
    (``evil\\ndense 999``) is written escaped, never as spec text."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _validate(n: Node) -> None:
    """The node's numbers against the limits the checker puts on the spec (ops.OPS), and its weights
    finite: a refusal naming the layer and the argument, before any spec text is written."""
    import numpy as np

    from ..ops import ArgError, lookup

    op = lookup(n.op)
    for key, value in n.args.items():
        spec = op.args.get(key) if op is not None else None
        if spec is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        try:
            spec[0](key, value)
        except ArgError as e:
            raise Unsupported(
                "E702",
                f"`{n.origin}` ({n.op}): netdsl's {n.op} cannot take it: {e.message}",
                hint="these are the limits a spec's checker puts on the layer (docs/language.md)",
            ) from None
    for key, arr in n.weights.items():
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise Unsupported(
                "E702",
                f"`{n.origin}` ({n.op}): its {key} holds {bad:,} NaN or infinite value{'s' * (bad != 1)}; "
                "netdsl imports finite weights only",
                hint="the model's weights are broken (a diverged training run?): load a good checkpoint",
            )


def assemble(nodes: list[Node], output: str, input_shape: tuple, header: list[str], name: str):
    """(the checked Net of the written spec, its weights keyed ``node.weight``)."""
    import numpy as np

    from ..net import parse

    nodes, output = fuse(nodes, output)
    em = _Emitter(nodes, output)
    byname = em.nodes
    try:
        stmts = fold(em.structured(), byname)
        body, created = _render(stmts, byname, 0), _created(stmts, byname)
    except _Fallback:
        body, created = em.labelled(), list(em.order)
    for n in nodes:
        _validate(n)
    text = "".join(f"# {_printable(h)}\n" if h else "#\n" for h in header)
    text += input_line(input_shape) + "\n" + "\n".join(body) + "\n"
    try:
        net = parse(text, filename=f"{name}.net")
    except NetdslError as e:  # a bug here, not in the user's model: show what was written
        raise NetdslError(
            "E705", f"the spec written for this model does not check ({e.errors[0].message if e.errors else e})"
        ) from None
    layers = [n for n in net.graph.nodes if n != "input"]
    if len(layers) != len(created) or any(
        net.graph.nodes[a]["op"] != byname[b].op for a, b in zip(layers, created, strict=False)
    ):
        raise NetdslError("E705", "the spec written for this model does not have the model's layers")
    weights = {}
    for spec_name, ours in zip(layers, created, strict=True):
        for w, arr in byname[ours].weights.items():
            weights[f"{spec_name}.{w}"] = np.ascontiguousarray(arr, dtype=np.float32)
    from ..weights import check

    try:
        weights = check(net, weights)
    except NetdslError as e:
        raise NetdslError("E705", f"the weights read from this model do not fit its spec: {e.message}") from None
    return net, weights

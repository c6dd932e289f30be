"""The typed syntax tree: what the transformer makes of the grammar, with spans and comments,
and the front end's structure (only the transformer reads Lark trees; classes stay small)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from netdsl.errors import Span
from netdsl.frontend import syntax as s
from netdsl.frontend.driver import parse_program

FRONTEND = Path(__file__).resolve().parent.parent / "netdsl" / "frontend"


def test_statements_become_typed_nodes_with_spans():
    prog = parse_program("input 28x28x1\ne1: conv 6x5 relu  # six filters\nfrom e1; add e1\ntrain sgd lr=0.1\n")
    inp, labeled, frm, merge, train = prog.stmts
    assert isinstance(inp, s.Input) and inp.span == Span(1, 1, 1, 14)
    assert isinstance(labeled, s.Labeled) and labeled.label.text == "e1"
    layer = labeled.inner
    assert isinstance(layer, s.Layer) and layer.name.text == "conv"
    assert layer.name.span == Span(2, 5, 2, 9)
    size, act = layer.args
    assert isinstance(size, s.Size) and size.literal and [d.value for d in size.dims] == [6, 5]
    assert isinstance(act, s.Name) and act.name == "relu" and act.span == Span(2, 14, 2, 18)
    assert isinstance(frm, s.From) and frm.target.text == "e1"
    assert isinstance(merge, s.Merge) and merge.kind.text == "add" and [w.text for w in merge.names] == ["e1"]
    assert isinstance(train, s.Train) and train.optimizer.text == "sgd"
    assert train.settings[0].key.text == "lr" and train.settings[0].value.value == 0.1


def test_nodes_are_frozen():
    prog = parse_program("relu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        prog.stmts[0].name = s.Word("tanh", Span(1, 1, 1, 5))


def test_comments_are_kept_with_their_spans():
    text = "# head\nconv 6x5 # after a layer\nresidual { # in a block\n relu\n}\n"
    prog = parse_program(text)
    assert [c.text for c in prog.comments] == ["# head", "# after a layer", "# in a block"]
    assert [c.span for c in prog.comments] == [Span(1, 1, 1, 7), Span(2, 10, 2, 25), Span(3, 12, 3, 24)]


def test_expressions_and_blocks():
    prog = parse_program("let k = (w + 2) // 2\nrepeat 2 { add { relu | identity } }\ndef f(c, k=3) { conv c x k }")
    let, rep, d = prog.stmts
    assert isinstance(let.value, s.BinOp) and let.value.op == "//"
    assert isinstance(let.value.left, s.BinOp) and let.value.left.op == "+"
    assert isinstance(rep, s.Repeat) and rep.count.value == 2
    par = rep.body.stmts[0]
    assert isinstance(par, s.Parallel) and len(par.paths) == 2
    assert isinstance(d, s.Def) and [p.name.text for p in d.params] == ["c", "k"] and d.params[1].default.value == 3
    size = d.body.stmts[0].args[0]
    assert isinstance(size, s.Size) and not size.literal
    assert [dim.name for dim in size.dims] == ["c", "k"] and size.stride is None


@pytest.mark.parametrize(
    "text, dims, stride",
    [
        ("conv c x 3", ["c", 3], None),
        ("conv c x 3/2", ["c", 3], 2),
        ("conv (2*c)x3/2", ["*", 3], 2),
        ("conv (2*c) x k/s", ["*", "k"], "s"),
        ("maxpool k/s", ["k"], "s"),
        ("maxpool (k)/2", ["k"], 2),
        ("conv 32x3/s", [32, 3], "s"),
        ("conv c x 3 x 1", ["c", 3, 1], None),
    ],
)
def test_parametric_sizes_are_grouped(text, dims, stride):
    st = parse_program(text).stmts[0]
    args = st.shorthand if isinstance(st, s.Call) else st.args
    size = args[0]
    assert isinstance(size, s.Size)

    def show(e):
        return e.value if isinstance(e, s.Num) else e.name if isinstance(e, s.Name) else e.op

    assert [show(d) for d in size.dims] == dims
    assert (None if size.stride is None else show(size.stride)) == stride


def test_a_deep_expression_needs_no_recursion():
    prog = parse_program("let a = " + "1+" * 20_000 + "1")
    assert isinstance(prog.stmts[0].value, s.BinOp)


# ---- structure -------------------------------------------------------------------------


def _sources():
    return sorted(FRONTEND.glob("*.py"))


def test_only_the_transformer_reads_lark_trees():
    for path in _sources():
        if path.name == "transform.py":
            continue
        text = path.read_text()
        for needle in (".children", "hasattr(", ".meta", "lark"):
            if needle == "lark" and path.name == "driver.py":
                continue
            assert needle not in text.replace("Lark tree", ""), f"{path.name} uses `{needle}`"


def test_classes_stay_small():
    for path in [*_sources(), FRONTEND.parent / "parser.py", FRONTEND.parent / "net.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                n = node.end_lineno - node.lineno + 1
                assert n <= 250, f"{path.name}: class {node.name} is {n} lines"

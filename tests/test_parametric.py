"""Parametric sizes: names and expressions where a shorthand size takes numbers
(`conv c x 3`, `conv (2*c)x3/2`, `maxpool k/s`), each the same network as its keyword form,
and a located error with a hint for every misuse."""

from __future__ import annotations

import pytest

import netdsl
from netdsl import NetdslError


def _args(text: str, **params):
    return [(layer.op, layer.args, layer.output_shape) for layer in netdsl.parse(text, **params).layers]


@pytest.mark.parametrize(
    "short, keywords",
    [
        ("let c = 8\nconv c x 3", "conv filters=8 kernel=3"),
        ("let c = 8\nconv c x 3/2 relu same", "conv filters=8 kernel=3 stride=2 activation=relu padding=same"),
        ("let c = 8\nconv (2*c)x3/2", "conv filters=16 kernel=3 stride=2"),
        ("let c = 8\nconv (2*c) x 3 / 2", "conv filters=16 kernel=3 stride=2"),
        ("let c = 8\nlet k = 5\nconv c x k", "conv filters=8 kernel=5"),
        ("let c = 8\nconv c x 3 x 1", "conv filters=8 kernel=3x1"),
        ("let c = 8\nconv c x 3x1", "conv filters=8 kernel=3x1"),
        ("let s = 2\nconv 8x3/s", "conv filters=8 kernel=3 stride=2"),
        ("let k = 3\nlet s = 2\nmaxpool k/s", "maxpool size=3 stride=2"),
        ("let k = 3\nmaxpool (k-1)/2 same", "maxpool size=2 stride=2 padding=same"),
        ("let k = 2\nupsample k x 1", "upsample size=2x1"),
        ("let n = 9\nflatten; dense (n+1) relu", "flatten; dense units=10 activation=relu"),
        ("let r = 1\ndropout (r/4)", "dropout rate=0.25"),
        ("let c = 8\nb: conv (c)x3\nrelu; add b", "b: conv filters=8 kernel=3\nrelu; add b"),
        ("def f(c, k=3) { conv c x k same }\nf(4); f(8, k=1)", "conv 4x3 same; conv 8x1 same"),
        ("def f(c, k=3) { conv c x k same }\nf(4, k=3x1)", "conv filters=4 kernel=3x1 padding=same"),
        ("def f(p) { maxpool p/p }\nf(2)", "maxpool 2/2"),
        # a stride per axis after `/` (a mutant `conv(1)(2)/3x0` once crashed the expander here)
        ("conv 8x3/2x1 same", "conv filters=8 kernel=3 stride=2x1 padding=same"),
        ("maxpool 2/2x2", "maxpool size=2 stride=2x2"),
        ("let k = 2\nmaxpool (k)/3x3", "maxpool size=2 stride=3"),
        ("let c = 4\nconv c x 3/2x1", "conv filters=4 kernel=3 stride=2x1"),
    ],
)
def test_parametric_size_is_its_keyword_form(short, keywords):
    assert _args(short) == _args(keywords)


def test_free_parameters_in_sizes():
    assert _args("conv width x 3", width=16) == _args("conv 16x3")
    assert _args("input n\ndense (2*n)", n=5)[0][2] == (None, 10)
    assert _args("input h x h x 1\nconv 4x3", h=14) == _args("input 14x14x1\nconv 4x3")


def test_old_meanings_are_kept():
    # `x` is still an ordinary name where it is not between two parts of a size
    assert _args("let x = 10\nflatten; dense x") == _args("flatten; dense 10")
    assert _args("flatten; dense 10 x", x="relu") == _args("flatten; dense 10 relu")
    assert _args("x: conv 4x3\nrelu\nadd x") == _args("a: conv 4x3\nrelu\nadd a")
    # a layer glued to its parenthesis is still refused, as a call of a layer
    with pytest.raises(NetdslError, match="is a layer, not a def"):
        netdsl.parse("flatten; dense(10)")


@pytest.mark.parametrize(
    "program, code, line, column, fragment",
    [
        ("conv q x 3", "E105", 1, 6, "`q` is not defined"),
        ("let c = 2.5\nconv c x 3", "E103", 2, 6, "filters must be a whole number, got 2.5"),
        ("let c = 4\nconv c x 0", "E103", 2, 6, "kernel must be at least 1, got 0"),
        ("let c = 4\nconv (-c) x 3", "E103", 2, 6, "filters must be at least 1, got -4"),
        ("let c = 4\nconv c x (3/2)", "E103", 2, 6, "kernel must be a whole number, got 1.5"),
        ("let k = 2\nlet s = 0\nmaxpool k/s", "E103", 3, 9, "stride must be at least 1, got 0"),
        ("let c = 4\nconv cx3", "E105", 2, 6, "spaces around `x`: `c x 3`"),
        ("def f(c) { conv cx3 }\nf(4)", "E105", 1, 17, "spaces around `x`: `c x 3`"),
        ("let act = relu\nconv act x 3", "E103", 2, 6, "`act`, which holds the word `relu`"),
        ("let c = 4\nconv c x", "E105", 2, 8, "a part is missing"),
        ("let c = 4\nconv c X 3", "E105", 2, 8, "lowercase x"),
        ("conv 3x(k)", "E001", 1, 6, "spaces around x: `3 x (k)`"),
        ("let c = 4\nconv -c x 3", "E002", 2, 6, "goes in parentheses"),
        ("let c = 4\nconv c x 3 c x 3", "E103", 2, 12, "got a second one"),
        ("let k = 2\nmaxpool k/s", "E105", 2, 11, "`s` is not defined"),
        ("let s = relu\nmaxpool 2/s", "E103", 2, 11, "a stride is a number"),
        ("let c = 4\nconv (c) x 99999999999", "E103", 2, 6, "too large"),
        ("def f(c) { relu }\nf(2) x 3", "E002", 2, 6, "after the call `f(...)`"),
    ],
)
def test_misuse_is_a_located_error(program, code, line, column, fragment):
    with pytest.raises(NetdslError) as info:
        netdsl.parse(program)
    err = info.value
    assert (err.code, err.line, err.column) == (code, line, column), str(err)
    assert fragment in str(err), str(err)


def test_a_size_with_very_many_parts_is_not_echoed():
    for text in ["conv 6" + "x6" * 50_000, "let c = 2\nconv c" + " x c" * 20_000]:
        with pytest.raises(NetdslError) as info:
            netdsl.parse(text)
        assert info.value.code == "E103" and "sizes have at most 4" in info.value.message
        assert len(str(info.value)) < 1000

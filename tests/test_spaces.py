"""Search spaces in the language (choice, int, float, log): names, checks, the default
candidate, candidates resolved in the tree and written out as plain specs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl import NetdslError
from netdsl.cli import main
from netdsl.errors import Source
from netdsl.frontend.spaces import plain_text
from netdsl.net import compile_source

SPEC = """\
input 28x28x1
let width = choice(8, 16, 32)
def block(c, k=choice(3, 5)) {
  conv c x k relu same
}
conv width x 3 relu
repeat int(1, 3) { block(width) }
maxpool 2
c2: conv choice(width, 2*width)x3/2 relu
dropout float(0.1, 0.5)
flatten
dense log(16, 128) choice(relu, tanh)
dense 10 softmax
train adam lr=log(1e-4, 1e-2) batch=choice(32, 64)
"""


def net_of(text: str, candidate=None):
    return compile_source(Source(text, "s.net"), candidate=candidate)


def test_spaces_are_named_by_where_they_stand():
    net = net_of(SPEC)
    dims = {d.name: d for d in net.space.dims}
    assert list(dims) == [
        "width", "block.k", "repeat@7", "c2", "dropout@10", "dense@12.1", "dense@12.2", "lr", "batch"
    ]  # fmt: skip
    assert dims["width"].options == (8, 16, 32) and dims["c2"].options == ("width", "2*width")
    assert dims["dense@12.1"].integer and dims["dense@12.1"].size == 113  # log() with whole bounds: whole numbers
    assert not dims["lr"].integer and dims["lr"].size is None
    assert net.space.discrete() == 3 * 2 * 3 * 2 * 113 * 2 * 2 and net.space.continuous() == 2


def test_the_default_candidate_is_first_choices_and_lower_bounds():
    net = net_of(SPEC)
    assert net.candidate == {
        "width": 8, "block.k": 3, "repeat@7": 1, "c2": "width", "dropout@10": 0.1,
        "dense@12.1": 16, "dense@12.2": "relu", "lr": 0.0001, "batch": 32,
    }  # fmt: skip
    plain = plain_text(SPEC, net.space, net.candidate)
    ref = netdsl.parse(plain)
    assert ref.total_params == net.total_params == 6042
    assert net.train_config == ref.train_config == {"optimizer": "adam", "lr": 0.0001, "batch": 32}


def test_a_candidate_resolves_in_the_tree_as_its_plain_spec_does():
    values = {**net_of(SPEC).candidate, "width": 32, "c2": "2*width", "repeat@7": 3, "dense@12.1": 100}
    values.update({"dense@12.2": "tanh", "lr": 0.00123, "dropout@10": 0.3, "block.k": 5})
    net = net_of(SPEC, values)
    plain = plain_text(SPEC, net.space, values)
    assert "choice(" not in plain and "log(" not in plain
    assert "c2: conv (2*width)x3/2 relu" in plain and "dense 100 tanh" in plain and "lr=0.00123" in plain
    ref = netdsl.parse(plain)
    assert [(x.name, x.output_shape, x.params) for x in ref.layers] == [
        (x.name, x.output_shape, x.params) for x in net.layers
    ]
    assert ref.total_macs == net.total_macs and ref.train_config == net.train_config
    assert "class" in net.generate("torch") and "keras" in net.generate("keras")


def test_a_bad_candidate_is_e914():
    with pytest.raises(NetdslError, match="E914"):
        net_of(SPEC, {"width": 12})
    with pytest.raises(NetdslError, match="no dimension `depth`"):
        net_of(SPEC, {"depth": 2})


@pytest.mark.parametrize(
    ("text", "code", "col"),
    [
        ("input int(8, 28); flatten; dense 10", "E901", 7),
        ("flatten\ndense choice()", "E902", 7),
        ("flatten\ndense int(3)", "E902", 7),
        ("flatten\ndense choice(8, 8)", "E902", 17),
        ("flatten\ndense int(64, 16)", "E903", 7),
        ("flatten\ndense 8\ndropout log(0, 0.5)", "E904", 13),
        ("flatten\ndense int(1.5, 4)", "E905", 11),
        ("flatten\ndense int(n, 4)", "E905", 11),
        ("flatten\ndense choice(int(1, 4), 8)", "E906", 14),
        ("flatten\ndense 8\ntrain lr=log(1e-2, 1e-4)", "E903", 10),
        # a float space whose lower bound is whole, feeding a whole number: only its default would build
        ("flatten\ndense float(1, 8) relu", "E907", 7),
        ("flatten\nrepeat float(1, 3) { dense 4 }", "E907", 8),
        ("flatten\nlet w = log(1, 8.5)\ndense w", "E907", 9),
        ("flatten\ndense 8\ntrain batch=float(8, 64)", "E907", 13),
    ],
)
def test_bad_spaces_are_located_errors(text, code, col, capsys):
    with pytest.raises(NetdslError) as info:
        net_of(text)
    err = info.value
    assert err.code == code and err.column == col, str(err)
    assert [e.code for e in err.errors] == [code]  # one error each, not a cascade


def test_one_candidate_is_singular():
    net = net_of("flatten\ndense choice(8) relu\ndropout float(0.1, 0.5)")
    assert net.space.describe() == "search space of 2 dimensions (1 candidate x 1 continuous dimension)"


def test_a_name_cannot_be_a_space():
    for text in ("choice(a, b): dense 3", "from choice(a, b)", "data choice(mnist)"):
        with pytest.raises(NetdslError) as info:
            netdsl.parse(text)
        assert info.value.code in ("E002", "E101"), str(info.value)


def test_the_kind_words_stay_ordinary_names():
    net = netdsl.parse("let int = 4\nlet log = 2\nflatten\ndense (int * log)\ndef choice(n) { dense n }\nchoice(3)")
    assert net.output_shape == (None, 3) and not net.space and net.candidate == {}


def test_one_space_in_a_repeat_is_one_dimension():
    net = net_of("flatten\nrepeat 3 { dense choice(4, 8) }", {"dense@2": 8})
    assert [x.output_shape for x in net.layers][1:] == [(None, 8)] * 3 and len(net.space.dims) == 1


def test_check_summary_and_plot_say_which_candidate(tmp_path, capsys):
    spec = tmp_path / "s.net"
    spec.write_text(SPEC)
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "search space of 9 dimensions (16,272 candidates x 2 continuous dimensions)" in out
    assert "showing the default candidate (first choices, lower bounds): width=8, block.k=3" in out
    assert main(["summary", str(spec)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# search space of 9 dimensions") and "Total params: 6,042" in out
    assert main(["plot", str(spec), "-o", str(tmp_path / "s.dot")]) == 0
    assert "showing the default candidate" in capsys.readouterr().err
    # the drawing itself names the candidate (a picture is read without the terminal)
    label = next(x for x in (tmp_path / "s.dot").read_text().splitlines() if x.startswith("  label=<"))
    assert "search space of 9 dimensions" in label and "width=8" in label, label
    assert main(["check", str(tmp_path / "s.net"), "-q"]) == 0 and capsys.readouterr().out == ""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_default_candidate_is_the_program_and_candidates_write_out(data):
    from strategies import search_spaces

    prog, text, count = data.draw(search_spaces())
    net = compile_source(Source(text.replace("\r\n", "\n")), prog.params)
    assert len(net.space.dims) == count
    assert net.output_shape[1:] == prog.expected_output_shape
    assert net.trainable_params == prog.expected_trainable
    # any candidate: resolved in the tree or written out as text, the same net (or the same error)
    values = {d.name: data.draw(st.sampled_from(d.options) if d.kind == "choice" else st.integers(d.low, d.high))
              for d in net.space.dims}  # fmt: skip
    plain = plain_text(net.source.text, net.space, values)
    try:
        a = compile_source(net.source, prog.params, candidate=values)
    except NetdslError as e:
        with pytest.raises(NetdslError) as info:
            netdsl.parse(plain, **prog.params)
        assert info.value.code == e.code
        return
    b = netdsl.parse(plain, **prog.params)
    assert [(x.output_shape, x.params) for x in a.layers] == [(x.output_shape, x.params) for x in b.layers]

"""The error table: bad program → code, position, message fragment (lark's test_errors style)."""

from __future__ import annotations

import pytest

import netdsl
from netdsl import NetdslError

LENET_NO_FLATTEN = "input 28x28x1\nconv 6x5 sigmoid\nmaxpool 2/2\nconv 16x5 sigmoid\nmaxpool 2/2\ndense 120 sigmoid\n"

ERRORS = [
    # (program, code, line, column, fragment)
    (LENET_NO_FLATTEN, "E201", 6, 1, "dense needs a vector, got a 4x4x16 feature map"),
    ("cnv 6x5 relu", "E101", 1, 1, "did you mean `conv`"),
    ("conv 6x5 relu; dense 10 sigmod", "E105", 1, 25, "did you mean `sigmoid`"),
    ("conv filters=6 kernal=5", "E102", 1, 16, "did you mean `kernel`"),
    ("conv 6x5relu", "E001", 1, 6, "separate the size"),
    ("conv 6X5 relu", "E001", 1, 6, "lowercase x"),
    ('conv 6x5 "relu"', "E001", 1, 10, "no strings"),
    ("conv 6\u00d75", "E001", 1, 7, "letter x"),
    ("conv 6x5 relu\nresidual {\n  conv 6x3 same\n", "E002", 2, 10, "never closed"),
    ("conv 6x5 relu\n}\n", "E002", 2, 1, "closes no block"),
    ("x = 3\n", "E002", 1, 3, "let NAME = VALUE"),
    ("import torch\nmodel = nn.Sequential()\n", "E002", 2, 7, "looks like Python"),
    ("import torch\n", "E101", 1, 1, "looks like Python"),
    ("import torch.nn as nn\n", "E001", 1, 13, "looks like Python"),
    ("conv filters=w kernel=3", "E105", 1, 14, "-D w=VALUE"),
    ("def f(c) {\n  relu\n  f(c)\n}\nf(3)\n", "E110", 3, 3, "recursive call: f"),
    ("def f(c) { g(c) }\ndef g(c) { f(c) }\nf(1)", "E110", 2, 12, "f \u2192 g \u2192 f"),
    ("repeat 1000000000 { relu }", "E113", 1, 8, "limit"),
    ("repeat 0 { relu }", "E113", 1, 8, "at least 1"),
    ("let a = 1/0", "E112", 1, 9, "division by zero"),
    ("let a = relu + 1", "E112", 1, 9, "arithmetic"),
    ("conv 8x3 same; add { conv 3x3 same | conv 5x3 same }", "E204", 1, 16, "got 28x28x3 feature map and 28x28x5"),
    ("conv 8x3 same; maxpool 2\ne1: conv 8x3 same\nconcat e2", "E108", 3, 8, "no layer named `e2`"),
    ("conv 8x5\nconv 8x3\nfrom conv_1\nflatten\ndense 10", "E208", 2, 1, "never used"),
    ("conv 6x9 relu; conv 6x9 relu; conv 6x9 relu; conv 6x9 relu", "E203", 1, 46, "does not fit"),
    ("flatten; conv 8x3", "E202", 1, 10, "needs a HxWxC feature map"),
    ("flatten; gap", "E202", 1, 10, "gap needs"),
    ("conv 8x3; reshape 5x5x5", "E207", 1, 11, "needs 125 elements"),
    ("conv 8x3 same; maxpool 2; e: conv 8x3 same; upsample 2; concat e", "E205", 1, 57, "other axes must match"),
    ("conv 8x3 same; residual { conv 16x3 same }", "E204", 1, 16, "residual body must keep its input's shape"),
    ("conv 8", "E103", 1, 6, "FxK"),
    ("conv kernel=3", "E104", 1, 1, "conv needs `filters`"),
    ("dropout 1.5", "E103", 1, 9, "rate must be in [0, 1)"),
    ("dense 10.5", "E103", 1, 7, "whole number"),
    ("dense 99999999999", "E103", 1, 7, "too large"),
    ("conv 8x3 padding=middle", "E103", 1, 10, "one of valid, same"),
    ("conv 8x3 relu sigmoid", "E103", 1, 15, "two activations"),
    ("e: conv 8x3\ne: conv 8x3", "E107", 2, 1, "already used"),
    ("input 28x28x1\nconv 8x3\ninput 14x14x1", "E114", 3, 1, "second `input`"),
    ("conv 8x3\ninput 28x28x1", "E114", 2, 1, "before the first layer"),
    ("residual { train sgd }", "E114", 1, 12, "top level"),
    ("def f(c) { conv filters=c kernel=3 }\nf(1, 2)", "E111", 2, 6, "takes 1 argument"),
    ("def f(c) { conv filters=c kernel=3 }\nf(d=1)", "E111", 2, 3, "has no parameter `d`"),
    ("def f(c) { conv filters=c kernel=3 }\nf()", "E111", 2, 1, "missing the argument `c`"),
    ("block(3)", "E101", 1, 1, "unknown def `block`"),
    ("def f() { cnv 6x5 }\nflatten", "E101", 1, 11, "did you mean `conv`"),  # a def never called is checked too
    ("dense(10)", "E101", 1, 1, "is a layer, not a def"),
    ("train sgd lr=0.1 epoch=3", "E115", 1, 18, "did you mean `epochs`"),
    ("train adamax", "E115", 1, 7, "optimizer must be one of"),
    ("train adam momentum=0.9", "E115", 1, 12, "momentum is a setting of sgd"),
    ("train sgd lr=1e7", "E115", 1, 11, "lr must be in (0, 1e+06]"),
    ("train epochs=0", "E115", 1, 7, "at least 1"),
    ("data cifar1000", "E115", 1, 6, "unknown data set"),
    ("add { conv 8x3 same }", "E109", 1, 1, "at least two paths"),
    ("add { conv 8x3 same | }", "E109", 1, 1, "path 2"),
    ("residual { }", "E109", 1, 1, "empty"),
    ("identity 3", "E109", 1, 10, "identity takes no arguments"),
    ("conv 8x3/2 dilation=2", "E103", 1, 1, "stride > 1 with a dilation"),
    ("conv 8x3\x00", "E003", 1, 9, "NUL"),
    ("{" * 100, "E004", 1, 65, "nested more than 64"),
    ("let a = 99999999999 * 99999999999 * 99999999999", "E112", 1, 9, "too large"),
    ("input 28x28x1x1\nflatten", "E103", 1, 7, "HxWxC"),
    ("maxpool 2x2x2", "E103", 1, 9, "pool size is P or PxQ"),
    ("input 3x3x1; upsample 2147483647; flatten; dense 10", "E209", 1, 14, "too large for any framework"),
    ("dropout " + "9" * 400, "E103", 1, 9, "400 digits is too large"),
    ("input 0x0x0", "E103", 1, 7, "at least 1, got 0"),
    ("\x0b", "E001", 1, 1, "U+000B"),
    ("conv 8x3 same; gap; add { dense 4 | dense 5 }", "E204", 1, 21, "vector of 4 and vector of 5"),
]


@pytest.mark.parametrize(
    "program, code, line, column, fragment", ERRORS, ids=[f"{r[1]}-{i}" for i, r in enumerate(ERRORS)]
)
def test_error_table(program, code, line, column, fragment):
    with pytest.raises(NetdslError) as info:
        netdsl.parse(program)
    err = info.value
    assert (err.code, err.line, err.column) == (code, line, column), str(err)
    assert fragment in str(err)
    text = str(err)
    assert text.startswith(f"<string>:{line}:{column}: error[{code}]: ")
    assert "Traceback" not in text


def test_caret_format_matches_the_design():
    with pytest.raises(NetdslError) as info:
        netdsl.parse(LENET_NO_FLATTEN, filename="lenet5.net")
    assert str(info.value) == (
        "lenet5.net:6:1: error[E201]: dense needs a vector, got a 4x4x16 feature map\n"
        "  6 | dense 120 sigmoid\n"
        "    | ^^^^^\n"
        "  note: the 4x4x16 feature map comes from `maxpool_2` at line 5: maxpool 2/2\n"
        "  hint: insert `flatten` (or `gap`) before it"
    )


def test_several_independent_errors_are_reported_together():
    program = "cnv 6x5 relu\nconv 8x3 same\ndense 10 sigmod\nconv filters=4 kernal=3\n"
    with pytest.raises(NetdslError) as info:
        netdsl.parse(program)
    assert [(e.code, e.line) for e in info.value.errors] == [("E101", 1), ("E105", 3), ("E102", 4)]
    assert str(info.value).count("error[") == 3


def test_no_guessed_errors_downstream_of_an_error():
    # the first conv is wrong; the dense on a feature map further down is still reported
    program = "conv 8x3 padding=middle\nconv 8x3\ndense 10\n"
    with pytest.raises(NetdslError) as info:
        netdsl.parse(program)
    assert [e.code for e in info.value.errors] == ["E103"]  # downstream shape unknown: no guesswork
    program = "conv 8x3 padding=middle\nflatten; conv 8x3\n"
    with pytest.raises(NetdslError) as info:
        netdsl.parse(program)
    assert [e.code for e in info.value.errors] == ["E103"]


def test_partial_graph_is_attached():
    with pytest.raises(NetdslError) as info:
        netdsl.parse(LENET_NO_FLATTEN)
    g = info.value.graph
    assert g is not None
    assert g.nodes["maxpool_2"]["shape"] == (4, 4, 16)
    assert g.nodes["dense_1"]["error"].startswith("dense needs a vector")


def test_unused_and_bad_parameters():
    with pytest.raises(NetdslError) as info:
        netdsl.parse("conv filters=width kernel=3", width=8, widht=9)
    assert info.value.code == "E106" and "did you mean `width`" in str(info.value)
    assert info.value.line is None
    with pytest.raises(NetdslError, match="set with `let`"):
        netdsl.parse("let w = 3\nconv filters=w kernel=3", w=8)
    with pytest.raises(NetdslError, match="number or a word"):
        netdsl.parse("conv filters=w kernel=3", w=[1, 2])
    with pytest.raises(NetdslError, match="not a valid parameter name"):
        netdsl.parse("relu", **{"1x": 3})


def test_limits_stop_runaway_expansion():
    # nested repeats: each count is allowed, the product is not
    with pytest.raises(NetdslError) as info:
        netdsl.parse("repeat 1000 { repeat 1000 { relu } }")
    assert info.value.code == "E004" and "more than 100,000 layers" in str(info.value)
    with pytest.raises(NetdslError) as info:
        netdsl.parse("repeat 1000 { repeat 10000 { let a = 1 } }")
    assert info.value.code == "E004" and "statements" in str(info.value)
    big = "relu\n" * 450_000  # over 2 MiB
    with pytest.raises(NetdslError) as info:
        netdsl.parse(big)
    assert info.value.code == "E004"
    # exponential growth through `let` is cut off, not computed
    text = "let a = 99999\n" + "".join(f"let a{i} = a * a\nlet a = a{i}\n" for i in range(40))
    with pytest.raises(NetdslError) as info:
        netdsl.parse(text)
    assert info.value.code == "E112"


def test_binary_input(tmp_path):
    path = tmp_path / "x.net"
    path.write_bytes(b"conv 6x5\n\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(NetdslError) as info:
        netdsl.load(path)
    assert info.value.code == "E003" and info.value.line == 2
    assert str(info.value).startswith(f"{path}:2:")


def test_missing_file(tmp_path):
    with pytest.raises(NetdslError) as info:
        netdsl.load(tmp_path / "nope.net")
    assert info.value.code == "E005" and "No such file" in str(info.value)
    with pytest.raises(NetdslError) as info:
        netdsl.load(tmp_path)
    assert info.value.code == "E005"


@pytest.mark.parametrize(
    "text",
    [
        "let a = " + "1+" * 50_000 + "1\nrelu",  # a 50,000-deep expression tree
        "let a = " + "-" * 5_000 + "1\nrelu",
        "let a = " + "-" * 5_000 + "relu\nrelu",
        "conv " + "6x5 " * 50_000,
        "add " + "x " * 50_000,
        "repeat 3 {" * 60 + "relu" + "}" * 60,
    ],
)
def test_pathological_inputs_end_in_netdsl_errors(text):
    try:
        netdsl.parse(text)
    except NetdslError as e:
        shown = str(e)
        assert all(len(line) < 400 for line in shown.splitlines()), "the caret line is cut to a window"


def test_long_lines_are_shown_as_a_window():
    with pytest.raises(NetdslError) as info:
        netdsl.parse("conv 8x3 same; " * 30 + "dense 10")
    lines = str(info.value).splitlines()
    assert lines[1].endswith("dense 10") and "\u2026" in lines[1]
    assert lines[2].index("^") == lines[1].index("dense")


def _bounded(text: str, seconds: float = 8.0):
    """Parse under a wall-clock bound: a hang is a failure, not a stuck CI."""
    import signal
    import time

    def alarm(signum, frame):
        raise TimeoutError(f"netdsl.parse took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        netdsl.parse(text)
    except NetdslError as e:
        return e, time.perf_counter() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return None, time.perf_counter() - start


def _doubling_defs(n: int, tail: str) -> str:
    defs = "def f0() { relu }\n" + "".join(f"def f{i}() {{ f{i - 1}(); f{i - 1}() }}\n" for i in range(1, n))
    return defs + tail.format(last=f"f{n - 1}")


@pytest.mark.parametrize(
    "text, code",
    [
        (_doubling_defs(26, "repeat 2 {{ {last}() }}\n"), "E004"),  # was exponential to cost
        (_doubling_defs(60, "{last}()\n"), "E004"),  # 2**59 layers: refused before expanding
        ("repeat 100000 { let a = " + "+".join(["1"] * 10_000) + " }\nrelu", "E004"),  # arithmetic is work
        ("flatten; dense " + "9" * 5000, "E103"),  # Python's int() would refuse 4,300 digits
        ("let a = " + "9" * 31, "E103"),
        ("conv filters=1000000000 kernel=1000000000 padding=same", "E209"),  # 10^27 parameters
        ("input 2147483647\ndense 2147483647", "E209"),
    ],
    ids=["def-chain-repeat", "def-chain", "heavy-arithmetic", "4301-digits", "31-digits", "huge-conv", "huge-dense"],
)
def test_adversarial_inputs_end_quickly(text, code):
    err, seconds = _bounded(text)
    assert err is not None and err.code == code, err
    assert seconds < 3, f"took {seconds:.1f} s"


def test_largest_source_is_bounded():
    # the biggest accepted file of the most expensive kind still ends in seconds
    text = "let a = " + "1+" * 200_000 + "1\nrelu"
    assert len(text) < 512 * 1024
    err, seconds = _bounded(text, 20)
    assert seconds < 15


def test_errors_in_def_calls_and_repeat_passes_say_where():
    text = "def f(c) {\n  conv filters=c kernel=3\n}\nf(4)\nf(0)\n"
    with pytest.raises(NetdslError) as info:
        netdsl.parse(text)
    assert info.value.line == 2
    assert "in the call to `f` at line 5" in str(info.value)
    with pytest.raises(NetdslError) as info:
        netdsl.parse("repeat 4 { conv 8x9 }")
    assert "in pass 4 of the `repeat` at line 1" in str(info.value)


def test_did_you_mean_for_block_keywords_and_short_names():
    for text, hint in [
        ("repaet 3 { relu }", "`repeat`"),
        ("resiudal { relu }", "`residual`"),
        ("e1: relu; add e2", "`e1`"),
    ]:
        with pytest.raises(NetdslError) as info:
            netdsl.parse(text)
        assert f"did you mean {hint}?" in str(info.value)


# ---- limits outside the main loop, and small inputs that cost a lot (issue 15) ----------------


def _chain(n: int, call: str = "f{j}()") -> str:
    return "".join(f"def f{i}() {{ {call.format(j=i + 1)} }}\n" for i in range(n)) + f"def f{n}() {{ relu }}\nf0()"


@pytest.mark.parametrize(
    "text, code, line",
    [
        ("input 28x28x1\n" * 21, "E114", 2),  # errors made while hoisting, before the main loop
        ("def f() {\n" + "".join(f"cnv{i} 3\n" for i in range(25)) + "}\nrelu", "E101", 2),  # in an uncalled def
        (_chain(330), "E004", 64),  # a def chain: a located limit, not RecursionError
        (_chain(330, "b: f{j}()"), "E004", 64),
        (_chain(3000), "E004", 64),
        ("def g() { " + "residual { " * 40 + "relu" + " }" * 40 + " }\n" + _chain(40, "g(); f{j}()"), "E004", 1),
        ("repeat 8000 { relu; from nosuchnode }", "E108", 1),  # "did you mean" over 8,000 names per pass
        ("repeat 8000 { relu; add nosuchnode }", "E108", 1),
        ("repeat 8000 { relu; dense nosuchword }", "E105", 1),
        ("repeat 8000 { relu; nosuchlayer }", "E101", 1),
        ("a: relu\nrepeat 100 { add " + "a " * 200_000 + "}", "E004", 2),  # a merge's arity is work
        ("repeat 100000 { dense 10 " + "relu " * 100_000 + "}", "E004", 1),  # so are a layer's arguments
        ("a: conv 3x3\n" + "from a; dense 10\n" * 40, "E201", 2),  # shape errors are capped too
    ],
    ids=[
        "21-inputs",
        "uncalled-def",
        "def-chain",
        "labelled-chain",
        "def-chain-3000",
        "blocks-and-calls",
        "repeat-from",
        "repeat-add",
        "repeat-undefined",
        "repeat-unknown-layer",
        "merge-arity",
        "layer-arity",
        "many-shape-errors",
    ],
)
def test_limits_end_in_located_errors_quickly(text, code, line):
    err, seconds = _bounded(text, 20)
    assert err is not None, "accepted"
    assert (err.code, err.line) == (code, line), str(err)[:500]
    assert len(err.errors) <= 20
    assert seconds < 8, f"took {seconds:.1f} s"


def test_unused_parameters_respect_the_error_limit():
    import time

    start = time.perf_counter()
    with pytest.raises(NetdslError) as info:
        netdsl.parse("conv filters=width kernel=3", width=8, **{f"p{i}": 1 for i in range(20_000)})
    assert len(info.value.errors) == 20 and {e.code for e in info.value.errors} == {"E106"}
    assert time.perf_counter() - start < 5


def test_limits_from_the_command_line_exit_1(tmp_path):
    import subprocess
    import sys

    spec = tmp_path / "chain.net"
    spec.write_text(_chain(400))
    proc = subprocess.run([sys.executable, "-m", "netdsl", "check", str(spec)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "error[E004]" in proc.stderr and "internal error" not in proc.stderr
    spec.write_text("input 28x28x1\n" * 30)
    proc = subprocess.run([sys.executable, "-m", "netdsl", "check", str(spec)], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("error[E114]") == 20, proc.stderr[-300:]


def test_a_deep_error_names_a_few_enclosing_calls_not_all():
    with pytest.raises(NetdslError) as info:
        netdsl.parse(_chain(200))
    notes = info.value.notes
    assert info.value.code == "E004" and len(notes) == 6
    assert notes[0] == "in the call to `f63` at line 63 (`f63_1`)" and "59 more" in notes[-1]


@pytest.mark.parametrize(
    "text, params, shown",
    [
        ("input h\ndense 10\n", {"h": 1e308}, "input = 1e+308 is too large"),
        ("input h\ndense 10\n", {"h": -1e308}, "got -1e+308"),
        ("let a = 1e308\ninput 28x28x1\nflatten\ndense a\n", {}, "units = 1e+308 is too large"),
        ("input 28x28x1\nrepeat 1e300 { relu }\n", {}, "repeat 1e+300 is more than"),
        ("input 28x28x1\nrepeat 5000000 { relu }\n", {}, "repeat 5,000,000 is more than"),
    ],
)
def test_huge_numbers_are_shown_compactly(text, params, shown):
    with pytest.raises(NetdslError) as info:
        netdsl.parse(text, **params)
    message = str(info.value)
    assert shown in message, message
    assert not any(len(word) > 30 for word in message.split()), message


def test_the_report_says_when_it_stopped_at_the_limit_of_errors():
    from netdsl.frontend.diagnostics import MAX_ERRORS

    with pytest.raises(NetdslError) as info:
        netdsl.parse("input 28x28x1\n" + "frob\n" * (MAX_ERRORS + 10))
    assert len(info.value.errors) == MAX_ERRORS
    last = str(info.value).splitlines()[-1]
    assert last == f"<string>: stopped after {MAX_ERRORS} errors (there may be more)"
    with pytest.raises(NetdslError) as info:
        netdsl.parse("input 28x28x1\n" + "frob\n" * (MAX_ERRORS - 1))
    assert len(info.value.errors) == MAX_ERRORS - 1 and "stopped after" not in str(info.value)


def test_a_long_run_of_minus_signs_is_refused_before_parsing():
    import time

    start = time.perf_counter()
    with pytest.raises(NetdslError) as info:
        netdsl.parse("let a = " + "-" * 520_000 + "1\ninput 28x28x1\n")  # took 9.6 s and 350 MB
    assert time.perf_counter() - start < 3
    assert info.value.code == "E004" and "520,000 minus signs in a row" in info.value.message
    assert "repeat" not in (info.value.hint or "")
    assert (
        netdsl.parse("let a = " + "-" * 64 + "1\ninput 4\n# " + "-" * 200 + "\ndense (- - a)\n").total_params == 5
    )  # a = 1


@pytest.mark.slow
def test_the_e004_hint_blames_repeat_only_when_there_is_one():
    with pytest.raises(NetdslError) as info:
        netdsl.parse("input 28x28x1\n" + "relu\n" * 100_001)
    assert info.value.code == "E004" and "the spec itself is this large" in info.value.hint
    assert "repeat" not in info.value.hint.split("(")[0]
    with pytest.raises(NetdslError) as info:
        netdsl.parse("input 28x28x1\nrepeat 100 { repeat 1001 { relu } }\n")
    assert info.value.code == "E004" and "lower the `repeat` counts" in info.value.hint

"""Language features, one behaviour per test (docs/language.md: statements, layers, semantics)."""

from __future__ import annotations

import pytest

import netdsl
from netdsl import NetdslError


def shapes(text: str, **params) -> list[tuple]:
    return [layer.output_shape[1:] for layer in netdsl.parse(text, **params).layers]


def names(text: str, **params) -> list[str]:
    return [layer.name for layer in netdsl.parse(text, **params).layers]


# ---- lexical -------------------------------------------------------------------


def test_separators_comments_and_blank_lines():
    a = "conv 6x5 relu; maxpool 2; flatten; dense 10"
    b = "# head\n\n  conv 6x5 relu   # a comment\n;;\nmaxpool 2\r\n\n# mid\nflatten ;dense 10\n# tail"
    assert shapes(a) == shapes(b)


def test_layer_words_are_case_insensitive():
    assert shapes("CONV 6x5 ReLU SAME; MaxPool 2/2; Flatten; Dense 10 SoftMax") == shapes(
        "conv 6x5 relu same; maxpool 2/2; flatten; dense 10 softmax"
    )
    net = netdsl.parse("Conv filters=4 KERNEL=3 Padding=SAME")
    assert net.layers[0].args["padding"] == "same"


def test_numbers():
    net = netdsl.parse("flatten; dropout .5; dropout 0.25; dropout 1e-1; dense 4")
    assert [layer.args.get("rate") for layer in net.layers[1:4]] == [0.5, 0.25, 0.1]


def test_input_forms():
    assert netdsl.parse("flatten").input_shape == (None, 28, 28, 1)  # the MNIST default
    assert netdsl.parse("input 32x32x3\nflatten").output_shape == (None, 3072)
    assert netdsl.parse("input 784\ndense 10").output_shape == (None, 10)
    assert netdsl.parse("input 784\ndense 10", input_shape="100").output_shape == (None, 10)
    assert netdsl.parse("input 784\ndense 10", input_shape=(None, 50)).input_shape == (None, 50)


# ---- layers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "program, shape",
    [
        ("conv 8x3", (26, 26, 8)),
        ("conv 8x3 same", (28, 28, 8)),
        ("conv 8x3/2", (13, 13, 8)),
        ("conv 8x3/2 same", (14, 14, 8)),  # ceil(28/2)
        ("conv 8x5/3 same", (10, 10, 8)),  # ceil(28/3), TF pads bottom/right
        ("conv 8x3x1", (26, 28, 8)),
        ("conv filters=8 kernel=3x5", (26, 24, 8)),
        ("conv filters=8 kernel=3 dilation=2", (24, 24, 8)),
        ("conv filters=8 kernel=3 stride=2x1", (13, 26, 8)),
        ("maxpool 2", (14, 14, 1)),
        ("maxpool 3", (9, 9, 1)),
        ("maxpool 3/1 same", (28, 28, 1)),
        ("maxpool 3/2", (13, 13, 1)),
        ("maxpool 3/2 same", (14, 14, 1)),
        ("avgpool 2x4", (14, 7, 1)),
        ("maxpool size=5 stride=3 padding=same", (10, 10, 1)),
        ("gap", (1,)),
        ("gmp", (1,)),
        ("flatten", (784,)),
        ("upsample 2", (56, 56, 1)),
        ("upsample 2x3", (56, 84, 1)),
        ("reshape 7x7x16", (7, 7, 16)),
        ("reshape 784", (784,)),
        ("leakyrelu 0.2", (28, 28, 1)),
        ("batchnorm", (28, 28, 1)),
        ("identity", None),
    ],
)
def test_shape_rules(program, shape):
    got = shapes(program)
    assert got == ([] if shape is None else [shape])


def test_param_counts():
    net = netdsl.parse(
        "input 8x8x3\nconv 4x3 same; batchnorm; conv filters=2 kernel=1 bias=false; flatten; dense 5; dense 3 bias=false"
    )
    assert [(x.trainable, x.non_trainable) for x in net.layers] == [
        (3 * 3 * 3 * 4 + 4, 0),
        (8, 8),
        (4 * 2, 0),
        (0, 0),
        (128 * 5 + 5, 0),
        (15, 0),
    ]
    assert net.non_trainable_params == 8


def test_activation_fused_or_standalone():
    fused = netdsl.parse("dense 10 relu", input_shape=4)
    alone = netdsl.parse("dense 10; relu", input_shape=4)
    assert [x.op for x in fused.layers] == ["dense"] and fused.layers[0].args["activation"] == "relu"
    assert [x.op for x in alone.layers] == ["dense", "relu"]


def test_defaults_are_kerass():
    conv = netdsl.parse("conv 4x3").layers[0].args
    assert conv == {
        "filters": 4,
        "kernel": (3, 3),
        "stride": (1, 1),
        "padding": "valid",
        "activation": "linear",
        "dilation": (1, 1),
        "bias": True,
        "groups": 1,
    }
    assert netdsl.parse("batchnorm").layers[0].args == {"eps": 1e-3, "momentum": 0.99}
    assert netdsl.parse("maxpool 3").layers[0].args["stride"] == (3, 3)
    assert netdsl.parse("leakyrelu").layers[0].args == {"alpha": 0.3}


def test_aliases():
    assert [x.op for x in netdsl.parse("conv2d 4x3; bn; maxpool2d 2; flatten; fc 10").layers] == [
        "conv",
        "batchnorm",
        "maxpool",
        "flatten",
        "dense",
    ]


def test_macs():
    net = netdsl.parse("conv 6x5 sigmoid; maxpool 2/2; flatten; dense 10")
    assert [x.macs for x in net.layers] == [24 * 24 * 6 * 25, 0, 0, 864 * 10]
    assert net.total_macs == 24 * 24 * 6 * 25 + 8640


# ---- graph statements ------------------------------------------------------------


def test_labels_from_and_merges():
    net = netdsl.parse(
        "e1: conv 8x3 same\nmaxpool 2\nconv 8x3 same\nupsample 2\nconcat e1\nfrom e1\nconv 16x1\nadd concat_1\ngap; dense 2"
    )
    layers = {x.name: x for x in net.layers}
    assert layers["concat_1"].inputs == ("upsample_1", "e1")  # the current output comes first
    assert layers["concat_1"].output_shape == (None, 28, 28, 16)
    assert layers["conv_2"].inputs == ("e1",)
    assert layers["add_1"].inputs == ("conv_2", "concat_1")


def test_blocks():
    net = netdsl.parse(
        "conv 8x3 same\n"
        "residual { conv 8x3 same; relu }\n"
        "add {\n  conv 8x3 same\n| identity\n| conv 8x1 same; batchnorm\n}\n"
        "concat { conv 4x1 same | maxpool 3/1 same }\n"
    )
    ops = [(x.op, x.inputs) for x in net.layers]
    assert ops[3] == ("add", ("conv_1", "relu_1"))
    assert ops[-4] == ("add", ("conv_3", "add_1", "batchnorm_1"))
    assert net.output_shape == (None, 28, 28, 12)
    kinds = sorted({g["kind"] for g in net.graph.graph["groups"].values()})
    assert kinds == ["add", "concat", "path", "residual"]


def test_repeat_names_and_groups():
    net = netdsl.parse("conv 4x3 same\nrepeat 3 { b: conv 4x3 same; relu }\nadd b_1 b_3")
    assert names("conv 4x3 same\nrepeat 3 { b: conv 4x3 same; relu }\nadd b_1 b_3") == [
        "conv_1",
        "b_1",
        "relu_1",
        "b_2",
        "relu_2",
        "b_3",
        "relu_3",
        "add_1",
    ]
    groups = net.graph.graph["groups"]
    (rep,) = [g for g in groups.values() if g["kind"] == "repeat"]
    assert rep["count"] == 3
    iters = [gid for gid, g in groups.items() if g["kind"] == "iteration"]
    assert len(iters) == 3
    assert net.graph.nodes["b_2"]["groups"][-1] == iters[1]


def test_repeat_refers_to_its_own_iteration():
    net = netdsl.parse("conv 4x3 same\nrepeat 2 { a: conv 4x3 same; conv 4x3 same; add a }")
    add = [x for x in net.layers if x.op == "add"]
    assert [x.inputs for x in add] == [("conv_2", "a_1"), ("conv_3", "a_2")]


def test_nested_repeat_suffixes():
    assert names("repeat 2 { repeat 2 { b: relu } }") == ["b_1_1", "b_1_2", "b_2_1", "b_2_2"]


def test_let_and_arithmetic():
    net = netdsl.parse("let w = 4\nlet k = (w + 2) // 2\nconv filters=w*2 kernel=k; conv filters=64/w kernel=1")
    assert net.layers[0].args["filters"] == 8 and net.layers[0].args["kernel"] == (3, 3)
    assert net.layers[1].args["filters"] == 16
    with pytest.raises(NetdslError, match="whole number"):
        netdsl.parse("conv filters=9/2 kernel=1")
    assert netdsl.parse("let a = -(2 - 5) * 2\nconv filters=a kernel=1").layers[0].args["filters"] == 6


def test_def_with_defaults_and_keywords():
    text = "def block(c, k=3, act=relu) {\n  conv filters=c kernel=k padding=same activation=act\n}\nblock(8); block(4, k=1, act=tanh)"
    net = netdsl.parse(text)
    assert [(x.args["filters"], x.args["kernel"], x.args["activation"]) for x in net.layers] == [
        (8, (3, 3), "relu"),
        (4, (1, 1), "tanh"),
    ]
    assert {g["kind"] for g in net.graph.graph["groups"].values()} == {"def"}
    assert [x.line for x in net.layers] == [2, 2]  # the body's line, where the layer is written


def test_def_labels_get_the_call_prefix_and_call_labels_alias():
    text = "def f(c) { x: conv filters=c kernel=3 padding=same; relu; add x }\nconv 4x1\nb: f(4)\nf(4)\nadd b f_2_x"
    assert names(text) == ["conv_1", "f_1_x", "relu_1", "add_1", "f_2_x", "relu_2", "add_2", "add_3"]
    net = netdsl.parse(text)
    assert net.layers[-1].inputs == ("add_2", "add_1", "f_2_x")


def test_def_may_be_used_before_it_is_written():
    assert names("f(2)\ndef f(c) { conv filters=c kernel=1 }") == ["conv_1"]


def test_free_parameters():
    text = "conv filters=width kernel=3 activation=act\ngap\ndense n"
    net = netdsl.parse(text, width=8, act="gelu", n=10)
    assert net.layers[0].args["filters"] == 8 and net.layers[0].args["activation"] == "gelu"
    assert net.output_shape == (None, 10)
    assert shapes("dense n relu", n=7, input_shape=3) == [(7,)]  # a parameter as a shorthand number


def test_train_and_data():
    net = netdsl.parse(
        "train adamw lr=3e-4 epochs=2 batch=64 validation=0 seed=7 loss=sparse_categorical_crossentropy metrics=accuracy\ndata fashion-mnist\nflatten"
    )
    assert net.train_config == {
        "optimizer": "adamw",
        "lr": 3e-4,
        "epochs": 2,
        "batch": 64,
        "validation": 0.0,
        "seed": 7,
        "loss": "sparse_categorical_crossentropy",
        "metrics": "accuracy",
        "dataset": "fashion-mnist",
    }
    assert netdsl.parse("train optimizer=rmsprop\nflatten").train_config == {"optimizer": "rmsprop"}
    assert netdsl.parse("flatten").train_config == {}


def test_specs_are_data_never_python():
    # nothing in a spec is evaluated: these are errors, and nothing runs
    for text in ["__import__('os').system('touch /tmp/pwned')", "conv filters=__import__ kernel=3", "let a = open"]:
        with pytest.raises(NetdslError):
            netdsl.parse(text)


def test_net_api():
    net = netdsl.parse("conv 6x5 relu; flatten; dense 10 softmax", filename="x.net")
    assert net.graph.number_of_nodes() == 4 and net.graph.graph["output"] == "dense_1"
    assert "44" not in repr(net) and "3 layers" in repr(net)
    node = net.graph.nodes["conv_1"]
    assert node["shape"] == (24, 24, 6) and node["span"].line == 1 and node["macs"] == 24 * 24 * 6 * 25
    assert net.summary().startswith('Model: "x"')
    with pytest.raises(TypeError):
        netdsl.parse(b"conv 6x5")


def test_grammar_has_no_conflicts_in_strict_mode():
    """The cached parser could hide a grammar change: build the grammar afresh, strictly."""
    import lark

    from netdsl.parser import grammar_path

    lark.Lark(grammar_path().read_text(), parser="lalr", strict=True, propagate_positions=True)

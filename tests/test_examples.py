"""Every example: golden summaries, and shapes/counts equal to what Keras built.

tests/expected/*.json were produced by building each example by hand in Keras 3
(TF 2.21) and recording each layer's output shape and weights; until the
backends exist they are the oracle for the checker's arithmetic.
"""

from __future__ import annotations

import json

import pytest
from conftest import EXAMPLES, ROOT

import netdsl

IDS = [p.stem for p in EXAMPLES]


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_golden_summary(path, golden):
    net = netdsl.load(path)
    golden(f"{path.stem}.summary.txt", net.summary() + "\n")
    golden(f"{path.stem}.summary.json", json.dumps(net.to_json(), indent=2) + "\n")


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_matches_keras(path):
    expected = json.loads((ROOT / "tests" / "expected" / f"{path.stem}.json").read_text())
    net = netdsl.load(path)
    got = [
        {
            "op": layer.op,
            "line": layer.line,
            "output_shape": list(layer.output_shape),
            "trainable": layer.trainable,
            "non_trainable": layer.non_trainable,
        }
        for layer in net.layers
    ]
    assert got == expected["layers"]
    assert net.total_params == expected["total_params"]
    assert net.trainable_params == expected["trainable_params"]
    assert net.non_trainable_params == expected["non_trainable_params"]
    assert list(net.output_shape) == expected["output_shape"]


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_invariants(path):
    net = netdsl.load(path)
    assert sum(layer.params for layer in net.layers) == net.total_params
    assert all(layer.params == layer.trainable + layer.non_trainable for layer in net.layers)
    assert net.total_params == net.trainable_params + net.non_trainable_params
    assert net.input_shape in ((None, 28, 28, 1), (None, 32, 32, 3))  # MNIST-like or CIFAR
    assert net.output_shape == (None, 10)
    names = [layer.name for layer in net.layers]
    assert len(set(names)) == len(names)
    for layer in net.layers:  # the caret of any error would land on the layer's line
        assert layer.line is not None and layer.column is not None


def test_lenet5_is_the_tutorial_table():
    """The seed tutorial's Keras summary, row by row."""
    net = netdsl.load(ROOT / "examples" / "lenet5.net")
    rows = [(layer.output_shape, layer.params) for layer in net.layers]
    assert rows == [
        ((None, 24, 24, 6), 156),
        ((None, 12, 12, 6), 0),
        ((None, 8, 8, 16), 2416),
        ((None, 4, 4, 16), 0),
        ((None, 256), 0),
        ((None, 120), 30840),
        ((None, 84), 10164),
        ((None, 10), 850),
    ]
    assert net.total_params == 44_426 and net.non_trainable_params == 0
    table = net.summary()
    for cell in ["(None, 24, 24, 6)", "2,416", "30,840", "Total params: 44,426", "Non-trainable params: 0"]:
        assert cell in table


def test_three_forms_of_lenet5_agree():
    one_line = netdsl.parse(
        "conv 6x5 sigmoid; maxpool 2/2; conv 16x5 sigmoid; maxpool 2/2; flatten; "
        "dense 120 sigmoid; dense 84 sigmoid; dense 10 softmax"
    )
    keywords = netdsl.parse(
        "conv filters=6 kernel=5 stride=1 padding=valid activation=sigmoid\n"
        "maxpool size=2 stride=2\n"
        "conv filters=16 kernel=5 activation=sigmoid\n"
        "maxpool size=2\nflatten\n"
        "dense units=120 activation=sigmoid\ndense units=84 activation=sigmoid\ndense units=10 activation=softmax\n"
    )
    f = netdsl.load(ROOT / "examples" / "lenet5.net")
    for net in (one_line, keywords):
        assert [(x.op, x.output_shape, x.params, x.args) for x in net.layers] == [
            (x.op, x.output_shape, x.params, x.args) for x in f.layers
        ]


def test_seed_recipe():
    net = netdsl.load(ROOT / "examples" / "lenet5_seed.net")
    assert net.train_config == {
        "optimizer": "sgd",
        "lr": 0.9,
        "epochs": 5,
        "batch": 32,
        "validation": 0.1,
        "dataset": "mnist",
    }
    assert netdsl.load(ROOT / "examples" / "lenet5.net").train_config["optimizer"] == "adam"

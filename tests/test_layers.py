"""The layers of netdsl/ops_layers.py: Keras-exact shapes and counts, torch and Keras agreeing
on shared weights, standalone generated sources, ONNX export, and their located errors.

Each net goes through the backends' own full checks (test_backend_torch.check_net,
test_backend_keras.check_net: shapes per node, counts, canonical weights, generated source
imported and compared) and through test_cross.agree / test_export.agree.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")

import test_backend_keras as tk  # noqa: E402
import test_backend_torch as tt  # noqa: E402
from conftest import ruff_check  # noqa: E402
from test_cross import ATOL, random_weights  # noqa: E402
from test_cross import agree as cross_agree  # noqa: E402

import netdsl  # noqa: E402
from netdsl import NetdslError  # noqa: E402

PAD_NETS = [
    "input 6x5x2; pad 1; conv 3x3; flatten; dense 4",
    "input 6x5x2; pad 1x2; conv 3x3/2 same; pad top=0 bottom=1 left=2 right=1; gap",
    "input 5x5x3; pad top=3; maxpool 2/2 same; pad left=1 right=0; flatten",
    "input 4x4x1; pad 0; pad 0x3; conv 2x3; reshape 2x8x2",
]


@pytest.mark.parametrize("spec", PAD_NETS)
def test_pad_backends(spec, tmp_path):
    net = netdsl.parse(spec)
    files = [tt.check_net(net, tmp_path, np.random.default_rng(0))]
    files.append(tk.check_net(net, tmp_path, np.random.default_rng(0))[0])
    ruff_check(files)
    assert cross_agree(net) < ATOL


def test_pad_shapes_by_hand():
    net = netdsl.parse("input 6x5x2; a: pad 1; b: pad 1x2; c: pad top=0 bottom=1 left=3; d: pad right=2")
    shapes = {n: net.graph.nodes[n]["shape"] for n in "abcd"}
    assert shapes == {"a": (8, 7, 2), "b": (10, 11, 2), "c": (11, 14, 2), "d": (11, 16, 2)}
    assert "ZeroPadding2D" in net.summary()


def test_pad_pads_with_zeros():
    net = netdsl.parse("input 2x3x1; pad top=1 bottom=0 left=0 right=2")
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1) + 1
    want = np.zeros((1, 3, 5, 1), np.float32)
    want[0, 1:, :3, 0] = x[0, :, :, 0]
    for b in ("torch", "keras"):
        np.testing.assert_array_equal(_predict(net, b, x), want)


def _predict(net, backend, x):
    from netdsl.backends import get

    be = get(backend)
    return be.predict(be.build(net, device="cpu"), x)


def test_pad_onnx():
    ort = pytest.importorskip("onnxruntime")
    from test_export import agree as onnx_agree

    assert ort
    net = netdsl.parse(PAD_NETS[1])
    onnx_agree(net, random_weights(net))


@pytest.mark.parametrize(
    "spec,code,text",
    [
        ("pad", "E104", "pad needs `size`"),
        ("pad 1 top=2", "E103", "not both"),
        ("pad 1x2x3", "E103", "pad takes P"),
        ("pad 2/2", "E103", "pad takes P"),
        ("pad top=-1", "E103", "at least 0"),
        ("pad top=1.5", "E103", "whole number"),
        ("pad middle=1", "E102", "no argument `middle`"),
        ("flatten; pad 1", "E202", "needs a HxWxC feature map"),
        ("pad 2000000000", "E209", "too large"),
    ],
)
def test_pad_errors(spec, code, text):
    with pytest.raises(NetdslError) as e:
        netdsl.parse(f"input 4x4x1\n{spec}")
    assert e.value.code == code and text in str(e.value), str(e.value)
    assert e.value.line == 2


# ---- dwconv, sepconv, conv groups=, layernorm, groupnorm, mul ---------------------------------------

NETS = [
    "input 9x8x4; dwconv 3; dwconv 3/2 same relu; dwconv 2x3 multiplier=3 bias=false; gap",
    "input 9x9x3; dwconv 3 multiplier=2 dilation=2 same; dwconv 3/2 dilation=2; flatten",
    "input 10x9x4; sepconv 8x3 same relu; sepconv 6x3/2 multiplier=2; sepconv 5x2 dilation=2 same bias=false; gap",
    "input 8x8x4; conv 6x3 groups=2 same; conv 6x3/2 groups=3 relu; conv 4x1 groups=2 dilation=1; gap",
    "input 6x6x4; layernorm; conv 8x3; layernorm eps=0.01; flatten; dense 6; layernorm; dense 3",
    "input 6x6x8; groupnorm 4; conv 6x3; groupnorm 3 eps=0.1; gap; groupnorm 2",
    "input 8x8x6; e: conv 6x3 same; mul input; mul { gap; dense 3 relu; dense 6 sigmoid; reshape 1x1x6 | identity }; "
    "s: conv 1x1 sigmoid; mul e s; gap; d: dense 4; mul { identity | dense 4 tanh | dense 4 }",
]


@pytest.mark.parametrize("spec", NETS)
def test_new_layers_backends(spec, tmp_path):
    net = netdsl.parse(spec)
    files = [tt.check_net(net, tmp_path, np.random.default_rng(0))]
    files.append(tk.check_net(net, tmp_path, np.random.default_rng(0))[0])
    ruff_check(files)
    assert cross_agree(net) < ATOL


@pytest.mark.parametrize("spec", NETS)
def test_new_layers_onnx(spec):
    pytest.importorskip("onnxruntime")
    from test_export import agree as onnx_agree

    net = netdsl.parse(spec)
    onnx_agree(net, random_weights(net))


# ---- examples/mobilenet_small.net against the same model written by hand in Keras ----------------


def keras_mobilenet_small():
    """examples/mobilenet_small.net, written by hand with keras.layers (the oracle for its counts)."""
    keras = tk.keras
    L = keras.layers
    inputs = keras.Input((28, 28, 1))
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(inputs)
    x = L.Conv2D(16, 3, strides=2, use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))

    def dws(x, c, s=1):
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False)(x)))
        return L.ReLU()(L.BatchNormalization()(L.Conv2D(c, 1, use_bias=False)(x)))

    x = dws(dws(dws(x, 32), 64, 2), 64)
    g = L.GlobalAveragePooling2D()(x)
    g = L.Reshape((1, 1, 64))(L.Dense(64, activation="sigmoid")(L.Dense(16, activation="relu")(g)))
    x = L.Multiply()([x, g])
    x = dws(x, 128, 2)
    x = L.SeparableConv2D(128, 3, padding="same", activation="relu")(x)
    x = L.Dropout(0.2)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(x))


def _keras_layers(model) -> list[tuple]:
    def size(ws):
        return sum(int(np.prod(w.shape)) for w in ws)

    return [
        (
            type(layer).__name__,
            tuple(layer.output.shape),
            size(layer.trainable_weights),
            size(layer.non_trainable_weights),
        )
        for layer in model.layers[1:]
    ]


def test_mobilenet_small_counts_equal_hand_written_keras():
    from conftest import ROOT

    net = netdsl.load(ROOT / "examples" / "mobilenet_small.net")
    model = keras_mobilenet_small()
    mine = [(netdsl.ops.OPS[x.op].keras, x.output_shape, x.trainable, x.non_trainable) for x in net.layers]
    assert sorted(mine) == sorted(_keras_layers(model))  # Keras orders a functional model's layers its own way
    assert (net.total_params, net.trainable_params) == (model.count_params(), _keras_counts(model)[0])
    assert net.total_params == 39_578


def _keras_counts(model) -> tuple[int, int]:
    def size(ws):
        return sum(int(np.prod(w.shape)) for w in ws)

    return size(model.trainable_weights), size(model.non_trainable_weights)


# ---- 1-D layers over sequences (input LxC) ------------------------------------------------------


def test_onnx_output_nodes_keep_unique_names():
    """A normalisation at the output: its own transposes and the nhwc layout's are distinct nodes."""
    pytest.importorskip("onnxruntime")
    from test_export import agree as onnx_agree

    for spec in ("input 5x5x3; conv 4x3; layernorm", "input 6x3; conv1d 4x3; layernorm", "input 4x4x4; groupnorm 2"):
        net = netdsl.parse(spec)
        onnx_agree(net, random_weights(net))


SEQ_NETS = [
    "input 20x3; conv1d 8x3 relu; maxpool1d 2; conv1d 6x3/2 same; avgpool1d 3/2 same; flatten; dense 4",
    "input 17x4; conv1d 5x4 same dilation=2 bias=false; maxpool1d 3/2 same; avgpool1d 2/1 same; batchnorm; "
    "layernorm; groupnorm 5; conv1d 4x2/3 same tanh; avgpool1d 2; flatten; dense 3 softmax",
    "input 12x6; a: conv1d 6x3 same; add input; mul { identity | conv1d 6x1 sigmoid }; concat a; dropout 0.1; "
    "maxpool1d 4 same; flatten; reshape 3x3x4; conv 2x1",
]


@pytest.mark.parametrize("spec", SEQ_NETS)
def test_sequence_layers_backends(spec, tmp_path):
    net = netdsl.parse(spec)
    files = [tt.check_net(net, tmp_path, np.random.default_rng(0))]
    files.append(tk.check_net(net, tmp_path, np.random.default_rng(0))[0])
    ruff_check(files)
    assert cross_agree(net) < ATOL


@pytest.mark.parametrize("spec", SEQ_NETS)
def test_sequence_layers_onnx(spec):
    pytest.importorskip("onnxruntime")
    from test_export import agree as onnx_agree

    net = netdsl.parse(spec)
    onnx_agree(net, random_weights(net))


def test_sequence_shapes_and_errors():
    net = netdsl.parse("input 128x3; conv1d 16x5/2 same relu; maxpool1d 2; avgpool1d 3/1; flatten")
    assert [x.output_shape for x in net.layers] == [(None, 64, 16), (None, 32, 16), (None, 30, 16), (None, 480)]
    assert net.layers[0].params == 5 * 3 * 16 + 16
    assert netdsl.parse("conv1d 4x3", input_shape="10x2").output_shape == (None, 8, 4)
    for spec, code in [
        ("input 28x28x1; conv1d 4x3", "E142"),
        ("input 10; maxpool1d 2", "E142"),
        ("input 10x2; conv 4x3", "E202"),
        ("input 10x2; conv1d 4x3x3", "E103"),
        ("input 10x2; conv1d 4x3/2 dilation=2", "E103"),
        ("input 10x2; conv1d 4x11", "E203"),
        ("input 10x2; avgpool1d 2x2", "E103"),
    ]:
        with pytest.raises(NetdslError) as e:
            netdsl.parse(spec)
        assert e.value.code == code, (spec, str(e.value))


def test_onnx_nhwc_output_after_a_reshape_that_transposes():
    """Found by the random programs: a reshape's own transpose and the nhwc output's had one name."""
    pytest.importorskip("onnxruntime")
    from test_export import agree as onnx_agree

    net = netdsl.parse("input 1x2x2; conv 2x1; reshape 4x1x1")
    onnx_agree(net, random_weights(net))

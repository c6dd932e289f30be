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

"""Preprocessing and augmentation layers: the checker, both backends (in memory and generated),
ONNX, inference identity and per-image randomness in training, no weights."""

from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl import NetdslError, ops
from netdsl.weights import entries

torch = pytest.importorskip("torch")
from netdsl.backends import torch as tb  # noqa: E402

AUG = """input 16x12x3
rescale 1/255 offset=-0.5
normalize mean=0.1x0.2x0.3 std=0.5x0.25x2
randomflip both
randomcrop 16x12 padding=3
randomtranslation 0.2 fill=constant
randomrotation 0.1
randomzoom height=0.2 width=0.1 fill=nearest
conv 4x3 relu
flatten
dense 5 softmax
"""
RANDOM = ["randomflip_1", "randomcrop_1", "randomtranslation_1", "randomrotation_1", "randomzoom_1"]


def _x(n=6, seed=0):
    return (np.random.default_rng(seed).random((n, 16, 12, 3)) * 255).astype(np.float32)


def test_checker_args_and_no_weights():
    net = netdsl.parse(AUG)
    g = net.graph
    assert g.nodes["rescale_1"]["args"]["scale"] == pytest.approx(1 / 255)
    assert g.nodes["normalize_1"]["args"]["std"] == (0.5, 0.25, 2.0)
    assert g.nodes["randomzoom_1"]["args"] == {"height": 0.2, "width": 0.1, "fill": "nearest"}
    assert netdsl.parse("input 8x8x1; randomtranslation 0.1").graph.nodes["randomtranslation_1"]["args"]["width"] == 0.1
    assert netdsl.parse("input 8x8x1; randomflip horizontal_and_vertical").graph.nodes["randomflip_1"]["args"] == {
        "mode": "both"
    }
    assert netdsl.parse("input 8x8x1; randomcrop 6x6").output_shape == (None, 6, 6, 1)
    assert not [e for e in entries(net) if e[0] in ("rescale_1", "normalize_1", *RANDOM)]
    assert all(layer.params == 0 for layer in net.layers[:7])
    assert "RandomCropPad" in net.summary() and "Rescaling" in net.summary()
    assert "randomcrop 16x12 pad 3" in net.to_dot()


@pytest.mark.parametrize(
    "spec, code, phrase",
    [
        ("input 8x8x3; normalize mean=0.5x0.5 std=1", "E461", "2 values for a 8x8x3 input"),
        ("input 8x8x1; randomcrop 11x8 padding=1", "E462", "does not fit the 8x8 input padded by 1"),
        ("input 8x8x1; normalize mean=0 std=0", "E103", "std must be in (0"),
        ("input 8x8x1; randomflip horizntal", "E105", "did you mean `horizontal`?"),
        ("input 8x8x1; randomrotation 1.5", "E103", "factor must be in [0, 1]"),
        ("input 8x8x1; randomzoom 0.1 fill=wrap", "E103", "fill must be one of reflect, constant, nearest"),
        ("input 64; randomflip", "E202", "randomflip needs a HxWxC feature map"),
        ("input 8x8x1; rescale 1/0", "E103", "non-zero"),
    ],
)
def test_bad_arguments_are_located(spec, code, phrase):
    with pytest.raises(NetdslError) as info:
        netdsl.parse(spec)
    assert info.value.code == code and phrase in str(info.value), str(info.value)
    assert ":1:" in str(info.value)


def test_torch_inference_identity_and_exact_preprocessing():
    net = netdsl.parse(AUG)
    model = tb.build(net, "cpu").eval()
    x = torch.as_tensor(_x()).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = model.node_outputs(x)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(out["rescale_1"], x / 255 - 0.5)
    torch.testing.assert_close(out["normalize_1"], (x / 255 - 0.5 - mean) / std)
    for name in RANDOM:
        assert torch.equal(out[name], out["normalize_1"]), name


@pytest.mark.parametrize("name", RANDOM)
def test_torch_training_varies_per_image(name):
    net = netdsl.parse(AUG)
    layer = getattr(tb.build(net, "cpu"), name).train()
    torch.manual_seed(0)
    x = torch.as_tensor(np.repeat(_x(1), 16, 0)).permute(0, 3, 1, 2)
    y = layer(x)
    assert y.shape == x.shape
    distinct = {y[i].numpy().tobytes() for i in range(16)}
    assert len(distinct) >= (2 if name == "randomflip_1" else 3), f"{name}: one draw per batch, not per image"
    assert any(not torch.equal(y[i], x[i]) for i in range(16))


def test_randomcrop_is_a_padded_crop():
    layer = tb.RandomCrop((4, 4), padding=2).train()
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(32, 1, 1, 1)
    y = layer(x)
    padded = torch.nn.functional.pad(x[:1], (2, 2, 2, 2))
    windows = {padded[0, 0, i : i + 4, j : j + 4].numpy().tobytes() for i in range(5) for j in range(5)}
    assert all(y[k, 0].numpy().tobytes() in windows for k in range(32))
    assert torch.equal(layer.eval()(x), x)


def test_generated_torch_source_is_the_same_model(tmp_path):
    net = netdsl.parse(AUG)
    model = tb.build(net, "cpu")
    ns: dict = {}
    exec(compile(tb.generate(net), "gen", "exec"), ns)
    gen = ns["build_model"]()
    gen.load_state_dict(model.state_dict())
    x = torch.as_tensor(_x()).permute(0, 3, 1, 2)
    with torch.no_grad():
        assert torch.equal(gen.eval()(x), model.eval()(x))
    torch.manual_seed(3)
    a = gen.train().randomcrop_1(x)
    torch.manual_seed(3)
    assert torch.equal(a, model.train().randomcrop_1(x))  # the same text, the same draws


def test_onnx_inference(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from netdsl.backends import onnx as ob

    net = netdsl.parse(AUG)
    model = tb.build(net, "cpu")
    proto = ob.build(net, tb.get_weights(model, net))
    kinds = {n.op_type for n in proto.graph.node}
    assert {"Mul", "Add"} <= kinds and not kinds & {"RandomUniform", "RandomNormal"}
    sess = ort.InferenceSession(proto.SerializeToString())
    x = _x()
    got = sess.run(None, {"input": x.transpose(0, 3, 1, 2)})[0]
    np.testing.assert_allclose(got, tb.predict(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_keras_agrees_in_inference_and_varies_per_image_in_training():
    pytest.importorskip("tensorflow")
    from netdsl.backends import keras as kb

    net = netdsl.parse(AUG)
    tm = tb.build(net, "cpu")
    km = kb.build(net)
    kb.set_weights(km, net, tb.get_weights(tm, net))
    x = _x()
    np.testing.assert_allclose(kb.predict(km, x), tb.predict(tm, x), rtol=1e-5, atol=1e-6)
    ns: dict = {}
    exec(compile(kb.generate(net), "gen", "exec"), ns)
    gen = ns["build_model"]()
    gen.set_weights(km.get_weights())
    np.testing.assert_allclose(gen(x, training=False).numpy(), kb.predict(km, x), rtol=1e-6, atol=1e-7)
    same = np.repeat(x[:1] / 255, 16, 0)
    for name in RANDOM:
        layer = km.get_layer(name)
        np.testing.assert_array_equal(layer(same, training=False).numpy(), same)
        y = layer(same, training=True).numpy()
        assert len({y[i].tobytes() for i in range(16)}) >= (2 if name == "randomflip_1" else 3), name


def test_ops_words_and_families():
    for name in ("rescale", "normalize", *(n.split("_")[0] for n in RANDOM)):
        assert ops.OPS[name].family == "preprocessing"
    assert ops.lookup("Rescaling").name == "rescale" and ops.lookup("random_zoom").name == "randomzoom"

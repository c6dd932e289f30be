"""Torch and Keras build the same network: one weights file, the same outputs.

Both frameworks in one process: torch is imported first (as Keras' own suite does).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from conftest import EXAMPLES  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from strategies import programs  # noqa: E402

import netdsl  # noqa: E402
from netdsl import NetdslError  # noqa: E402
from netdsl.backends import get  # noqa: E402
from netdsl.weights import specs  # noqa: E402

TB, KB = get("torch"), get("keras")
ATOL = 1e-4


def random_weights(net, seed: int = 0) -> dict:
    """Canonical weights with every value non-trivial (batchnorm variances positive)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, (shape, _) in specs(net).items():
        if key.endswith("moving_variance"):
            out[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif key.endswith("gamma"):
            out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            out[key] = (rng.standard_normal(shape) * 0.3).astype(np.float32)
    return out


def inputs(net, n: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, *net.input_shape[1:])).astype(np.float32)


def agree(net, seed: int = 0) -> float:
    tm, km = TB.build(net), KB.build(net)
    w = random_weights(net, seed)
    TB.set_weights(tm, net, w)
    KB.set_weights(km, net, w)
    x = inputs(net)
    a, b = TB.predict(tm, x), KB.predict(km, x)
    assert a.shape == b.shape == (3, *net.output_shape[1:])
    # relative to the outputs' size: random weights on a deep net without a final softmax
    # can give outputs in the hundreds, where float32 alone leaves 1e-5 relative error
    return float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(a))))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_agree_on_shared_weights(path):
    net = netdsl.load(path)
    assert agree(net) < ATOL


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs(max_layers=8))
def test_random_programs_agree_on_shared_weights(prog):
    net = netdsl.parse(prog.text, **prog.params)
    diff = agree(net)
    assert diff < ATOL, f"max |torch - keras| / max(1, max |torch|) = {diff}\n{prog.text}"


def test_train_in_torch_load_in_keras(tmp_path):
    net = netdsl.load(EXAMPLES[0].parent / "resnet.net")
    tm = net.to_torch(device="cpu")
    opt = torch.optim.SGD(tm.parameters(), lr=0.05)
    x = inputs(net, 8)
    y = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])
    tm.train()
    for _ in range(3):  # training moves weights and batchnorm statistics away from their defaults
        opt.zero_grad()
        TB.sparse_categorical_crossentropy(tm, torch.from_numpy(x).permute(0, 3, 1, 2), y).backward()
        opt.step()
    path = tmp_path / "w.safetensors"
    net.save_weights(tm, path)
    km = net.to_keras()
    net.load_weights(km, path)
    assert np.max(np.abs(TB.predict(tm, x) - KB.predict(km, x))) < ATOL
    # and back again, from keras into a fresh torch model
    path2 = tmp_path / "w2.safetensors"
    net.save_weights(km, path2)
    tm2 = net.to_torch()
    net.load_weights(tm2, path2)
    assert np.max(np.abs(TB.predict(tm2, x) - TB.predict(tm, x))) < 1e-6


# ---- the weights file's error paths: refused whole, nothing half-loaded ---------------


@pytest.fixture
def lenet(tmp_path):
    net = netdsl.load(EXAMPLES[0].parent / "lenet5.net")
    model = TB.build(net)
    path = tmp_path / "lenet.safetensors"
    net.save_weights(model, path)
    return net, model, path


def _write(path, tensors):
    from safetensors.numpy import save_file

    save_file(tensors, str(path))


def _unchanged(net, model, before):
    after = TB.get_weights(model, net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_weights_missing_wrong_shape_extra_corrupt(lenet, tmp_path, backend):
    net, src, path = lenet
    model = get(backend).build(net)
    before = get(backend).get_weights(model, net)
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    cases = {}
    missing = {k: v for k, v in tensors.items() if k != "dense_2.kernel"}
    cases["missing"] = (missing, "E301", "dense_2.kernel")
    wrong = dict(tensors)
    wrong["conv_2.kernel"] = np.zeros((5, 5, 6, 15), np.float32)
    cases["shape"] = (wrong, "E302", "conv_2.kernel")
    extra = dict(tensors)
    extra["conv_9.kernel"] = np.zeros((1,), np.float32)
    cases["extra"] = (extra, "E304", "conv_9.kernel")
    ints = dict(tensors)
    ints["dense_3.bias"] = np.zeros((10,), np.int32)
    cases["dtype"] = (ints, "E302", "dense_3.bias")
    nan = dict(tensors)
    nan["dense_1.bias"] = np.full((120,), np.nan, np.float32)
    cases["nan"] = (nan, "E302", "dense_1.bias")
    for sign in (1, -1):  # finite in float64, infinite in the float32 the models hold
        big = dict(tensors)
        big["conv_1.bias"] = np.full((6,), sign * 1e300, np.float64)
        cases[f"float64 {sign:+}e300"] = (big, "E302", "conv_1.bias")
    one = dict(tensors)
    one["dense_2.kernel"] = tensors["dense_2.kernel"].astype(np.float64)
    one["dense_2.kernel"][3, 4] = 3.5e38  # one value just past float32's largest
    cases["float64 one value"] = (one, "E302", "dense_2.kernel")
    for name, (t, code, key) in cases.items():
        p = tmp_path / f"{name}.safetensors"
        _write(p, t)
        with pytest.raises(NetdslError) as info:
            net.load_weights(model, p)
        assert info.value.code == code and key in str(info.value), name
        after = get(backend).get_weights(model, net)
        assert all(np.array_equal(before[k], after[k]) for k in before), f"{name}: half-loaded"
    for name, data in {
        "truncated": path.read_bytes()[:-100],
        "empty": b"",
        "garbage": b"\x89PNG\r\n\x1a\n" + bytes(200),
        "pickle": b"\x80\x04\x95" + bytes(50),
        "huge header": (2**60).to_bytes(8, "little") + b"{}",
    }.items():
        p = tmp_path / f"{name}.bin"
        p.write_bytes(data)
        with pytest.raises(NetdslError) as info:
            net.load_weights(model, p)
        assert info.value.code == "E303", name
    with pytest.raises(NetdslError) as info:
        net.load_weights(model, tmp_path / "nope.safetensors")
    assert info.value.code == "E303"
    assert all(np.array_equal(before[k], v) for k, v in get(backend).get_weights(model, net).items())


def test_float64_weights_in_range_load_as_float32(lenet, tmp_path):
    net, model, path = lenet
    from safetensors.numpy import load_file

    tensors = {k: v.astype(np.float64) for k, v in load_file(str(path)).items()}
    tensors["dense_3.bias"][0] = 3.4e38  # the edge of float32's range still loads
    p = tmp_path / "f64.safetensors"
    _write(p, tensors)
    for backend in ("torch", "keras"):
        m = get(backend).build(net)
        net.load_weights(m, p)
        got = get(backend).get_weights(m, net)
        assert all(np.array_equal(got[k], v.astype(np.float32)) for k, v in tensors.items()), backend


def test_weights_for_another_net_are_refused(lenet, tmp_path):
    net, model, path = lenet
    other = netdsl.load(EXAMPLES[0].parent / "mnist_convnet.net")
    with pytest.raises(NetdslError) as info:
        other.load_weights(TB.build(other), path)
    assert info.value.code in ("E301", "E302", "E304")


def test_save_is_atomic_and_not_pickle(lenet, tmp_path):
    net, model, path = lenet
    assert path.read_bytes()[8:9] == b"{"  # a safetensors JSON header, not a pickle
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(NetdslError) as info:
        net.save_weights(model, tmp_path / "no" / "such" / "dir" / "w.safetensors")
    assert info.value.code == "E303"
    with pytest.raises(NetdslError) as info:
        net.save_weights(object(), tmp_path / "x.safetensors")
    assert info.value.code == "E305"


# ---- a batch of one value per channel through batchnorm: torch refuses it, Keras normalises it ----


@pytest.mark.parametrize(
    "spec",
    [
        "input 3; batchnorm; dense 10 softmax",  # a batch of one vector
        "input 4x4x2; conv 3x4; batchnorm; flatten; dense 10 softmax",  # a batch of one 1x1 map
        "input 6; dense 3 relu; batchnorm momentum=0.5; dense 10 softmax",
    ],
)
def test_batch_of_one_through_batchnorm_trains_as_keras(spec):
    import keras

    net = netdsl.parse(spec)
    tm, km = TB.build(net), KB.build(net)
    w = random_weights(net)
    TB.set_weights(tm, net, w)
    KB.set_weights(km, net, w)
    x, y = inputs(net, 1), np.array([3])
    tm.train()
    opt = torch.optim.SGD(tm.parameters(), lr=0.1)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2) if x.ndim == 4 else torch.from_numpy(x)
    for _ in range(2):
        loss = TB.sparse_categorical_crossentropy(tm, xt, torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    for _ in range(2):
        keras_loss = km.train_on_batch(x, y)
    assert abs(loss.item() - float(keras_loss)) < 1e-5
    a, b = TB.get_weights(tm, net), KB.get_weights(km, net)
    for key in a:  # the moving statistics included: the mean moved to x, the variance towards 0
        assert np.max(np.abs(a[key] - b[key])) < 1e-6, key
    # the generated model's class is the same code
    ns: dict = {}
    exec(compile(net.generate("torch"), "<generated>", "exec"), ns)
    gm = ns["build_model"]()
    TB.set_weights(gm, net, w)
    gm.train()
    out = gm(xt)
    assert out.shape == (1, 10) and torch.isfinite(out).all()

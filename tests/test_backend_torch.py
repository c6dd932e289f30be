"""The PyTorch backend: built models agree with netdsl's shapes and counts, weights
round-trip, generated source is clean, standalone and the same model, and the Keras
semantics the backend promises (TF 'same' padding, (H, W, C) flatten order, Keras
initialisation, dropout, a stable loss for a final softmax) hold.

Every example and >= 200 random valid programs (tests/strategies.py) go through one
check, :func:`check_net`; their generated files are linted by one ``ruff check`` at
the end.  References below are computed independently of the backend: numpy loops
over explicitly padded inputs, hand-set weights, float64 log-sum-exp.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import itertools
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import EXAMPLES, ruff_check  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

import netdsl  # noqa: E402
from netdsl import NetdslError, ops  # noqa: E402
from netdsl.backends import torch as tb  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strategies import programs  # noqa: E402

N_RANDOM = 200
NO_MODULE = {"gap", "gmp", "flatten", "reshape", "add", "concat", "pad", "mul"}  # tensor operations in forward
_counter = itertools.count()


# ---- helpers ----------------------------------------------------------------------------


def nhwc(shape) -> tuple:
    """A torch shape without the batch, channels last."""
    s = tuple(shape[1:])
    return (*s[1:], s[0]) if len(s) > 1 else s  # (C, H, W) -> (H, W, C); (C, L) -> (L, C)


def to_nchw(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.movedim(-1, 1).contiguous() if t.ndim > 2 else t


def batch(net, n: int, rng) -> np.ndarray:
    return rng.standard_normal((n, *net.input_shape[1:])).astype(np.float32)


def expected_weights(net) -> list[tuple[str, tuple]]:
    g = net.graph
    out = []
    for name, node in g.nodes.items():
        if node["op"] == "input":
            continue
        ins = [g.nodes[i]["shape"] for i in node["inputs"]]
        out += [(f"{name}.{w}", tuple(s)) for w, s, _ in ops.OPS[node["op"]].weights(node["args"], ins)]
    return out


def random_weights(net, rng) -> dict[str, np.ndarray]:
    out = {}
    for key, shape in expected_weights(net):
        if key.endswith(("moving_variance", "gamma")):
            out[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            out[key] = (rng.standard_normal(shape) * 0.3).astype(np.float32)
    return out


def load_generated(path: Path):
    spec = importlib.util.spec_from_file_location(f"netdsl_gen_{next(_counter)}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_keras_init(w: dict, net) -> None:
    for key, shape in expected_weights(net):
        v = w[key]
        name = key.rsplit(".", 1)[1]
        if name.endswith("kernel"):  # kernel, depthwise_kernel, pointwise_kernel
            if len(shape) >= 3:  # (kh, kw, in, out) or, 1-D, (k, in, out)
                receptive, (cin, cout) = math.prod(shape[:-2]), shape[-2:]
                fan_in, fan_out = receptive * cin, receptive * cout
            else:
                fan_in, fan_out = shape
            limit = math.sqrt(6 / (fan_in + fan_out))
            assert np.abs(v).max() <= limit * (1 + 1e-6), key
            if v.size >= 200:  # uniform on [-limit, limit]: std = limit / sqrt(3)
                assert abs(v.std() / (limit / math.sqrt(3)) - 1) < 0.25, key
        elif name in ("bias", "beta", "moving_mean"):
            assert not v.any(), key
        else:  # gamma, moving_variance
            assert (v == 1).all(), key


# ---- the one check every net goes through ---------------------------------------------------


def check_net(net, tmp_path: Path, rng) -> Path:
    g = net.graph
    torch.manual_seed(0)
    model = tb.build(net, device="cpu")
    model.eval()
    out = g.nodes[g.graph["output"]]
    assert model.netdsl_output_is_softmax is (
        out["op"] == "softmax" or (out["args"] or {}).get("activation") == "softmax"
    )
    x_nhwc = batch(net, 2, rng)
    x = to_nchw(x_nhwc)

    # every node's shape: forward hooks on the modules, and the instrumented run
    layer_nodes = [n for n in g.nodes if g.nodes[n]["op"] != "input" and g.nodes[n]["op"] not in NO_MODULE]
    children = list(model.named_children())
    assert len(children) == len(layer_nodes)
    seen: dict[str, tuple] = {}
    hooks = []
    for (attr, module), node in zip(children, layer_nodes, strict=True):
        assert attr.startswith(node) and set(attr[len(node) :]) <= {"_"}, (attr, node)
        hooks.append(module.register_forward_hook(lambda m, i, o, node=node: seen.update({node: tuple(o.shape)})))
    with torch.no_grad():
        y = model(x)
    for h in hooks:
        h.remove()
    assert seen.keys() == set(layer_nodes)
    for node, shape in seen.items():
        assert nhwc(shape) == g.nodes[node]["shape"], node
    with torch.no_grad():
        outs = model.node_outputs(x)
    assert list(outs) == list(g.nodes)
    for node, t in outs.items():
        assert nhwc(t.shape) == g.nodes[node]["shape"], node
    assert nhwc(y.shape) == net.output_shape[1:]
    assert torch.allclose(y, outs[g.graph["output"]], rtol=1e-5, atol=1e-6)  # oneDNN may pick another kernel

    # parameter counts: parameters are the trainable weights; batchnorm's statistics the rest
    assert sum(p.numel() for p in model.parameters()) == net.trainable_params
    assert all(p.requires_grad for p in model.parameters())
    bn = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert sum(m.running_mean.numel() + m.running_var.numel() for m in bn) == net.non_trainable_params
    assert {n.rsplit(".", 1)[1] for n, _ in model.named_buffers()} <= {
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }

    # canonical weights: exactly the names and shapes of netdsl.ops; Keras's initialisation
    w0 = tb.get_weights(model, net)
    assert [(k, v.shape) for k, v in w0.items()] == expected_weights(net)
    assert all(v.dtype == np.float32 for v in w0.values())
    check_keras_init(w0, net)
    w = random_weights(net, rng)
    tb.set_weights(model, net, w)
    back = tb.get_weights(model, net)
    assert back.keys() == w.keys() and all(np.array_equal(back[k], w[k]) for k in w)
    if back:  # copies, not views of the parameters
        next(iter(back.values()))[...] = 7
        assert all(np.array_equal(v, w[k]) for k, v in tb.get_weights(model, net).items())

    # predict: channels-last in and out, inference mode
    with torch.no_grad():
        y = model(x)
    p = tb.predict(model, x_nhwc)
    ref = y.permute(0, 2, 3, 1).numpy() if y.ndim == 4 else y.numpy()
    assert p.shape == (2, *net.output_shape[1:]) and np.allclose(p, ref, rtol=1e-5, atol=1e-6)

    # generated source: standalone, the same module names, parameters and outputs
    src = tb.generate(net)
    assert src.startswith("#")
    assert "\n# Model: " in src and "Total params" in src
    tree = ast.parse(src)
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.Import):
            assert all(a.name.split(".")[0] == "torch" for a in stmt.names)
        elif isinstance(stmt, ast.ImportFrom):
            assert stmt.module.split(".")[0] == "torch"
    assert "import netdsl" not in src and "from netdsl" not in src
    path = tmp_path / f"gen_{next(_counter)}.py"
    path.write_text(src, encoding="utf-8")
    gen = load_generated(path).build_model()
    assert isinstance(gen, torch.nn.Module)
    check_keras_init(tb.get_weights(gen, net), net)
    assert sum(p.numel() for p in gen.parameters()) == net.trainable_params
    assert [(n, p.shape) for n, p in gen.named_parameters()] == [(n, p.shape) for n, p in model.named_parameters()]
    assert [n for n, _ in gen.named_buffers()] == [n for n, _ in model.named_buffers()]
    assert [n for n, _ in gen.named_modules()] == [n for n, _ in model.named_modules()]
    tb.set_weights(gen, net, tb.get_weights(model, net))
    gen.eval()
    with torch.no_grad():
        assert torch.allclose(gen(x), y, rtol=1e-5, atol=1e-6)
        assert getattr(gen, "netdsl_output_is_softmax", False) == model.netdsl_output_is_softmax
        if model.netdsl_output_is_softmax:
            assert torch.allclose(gen.forward_logits(x), model.forward_logits(x), rtol=1e-5, atol=1e-6)
    return path


# ---- examples and random programs -------------------------------------------------------------


def test_ops_table_covers_every_op():
    assert set(tb.OPS) == set(ops.OPS)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example(path, tmp_path):
    ruff_check([check_net(netdsl.load(path), tmp_path, np.random.default_rng(0))])


def test_random_programs(tmp_path):
    rng = np.random.default_rng(1)
    files: list[Path] = []

    @settings(
        max_examples=N_RANDOM,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(programs(max_layers=8))
    def run(prog):
        files.append(check_net(netdsl.parse(prog.text, **prog.params), tmp_path, rng))

    run()
    assert len(files) >= N_RANDOM
    ruff_check(files)


# Corners the examples and the random programs reach rarely or never.
EXTRA_SPECS = [
    "input 7x8x3; avgpool 3/2 same; avgpool 2/1 same; conv 4x2 leakyrelu same; leakyrelu 0.1; gmp",
    "input 9x9x2; conv filters=3 kernel=2 dilation=3 padding=same; maxpool 2/2 same; upsample size=2x3; flatten",
    "input 5x5x1; flatten; reshape 5x5x1; conv 2x3 elu; reshape 18; batchnorm; dense 4; softmax",
    "input 12; batchnorm; dense 6 selu; dropout 0.3; reshape 1x2x3; upsample 2; conv 2x1 silu; gap; dense 3 gelu",
    "input 6x6x2; a: conv 2x3 same; concat input; b: conv 4x1 tanh; add b; linear; sigmoid",
    "input 4x4x3; conv filters=2 kernel=1 bias=false; reshape 1x1x32; flatten; dense units=2 bias=false activation=softmax",
    # stacked activations: the final softmax is what forward_logits leaves out, and only it
    "input 6; dense 10 softmax; softmax",
    "input 6; dense 4 softmax; softmax; softmax",
    "input 6; dense 4 relu; softmax",
    "input 6; dense 4; sigmoid; tanh; softmax",
    "input 5x5x2; conv 3x1 softmax; softmax",
    "input 5x5x2; conv 3x1 tanh; relu; softmax; gap; softmax",
    "input 6; softmax",
    "input 6; softmax; softmax",
]


@pytest.mark.parametrize("spec", EXTRA_SPECS)
def test_extra_nets(spec, tmp_path):
    ruff_check([check_net(netdsl.parse(spec), tmp_path, np.random.default_rng(2))])


# ---- TF 'same' padding, checked against numpy loops over an explicitly padded input -------------


def tf_same(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow: out = ceil(n / s); the padding is split with the odd pixel at the end."""
    out = -(-n // s)
    total = max((out - 1) * s + (d * (k - 1) + 1) - n, 0)
    return total // 2, total - total // 2


def test_tf_same_by_hand():
    assert tf_same(8, 3, 2) == (0, 1)  # out 4: windows at 0, 2, 4, 6 reach 8 -> one pixel after
    assert tf_same(7, 3, 2) == (1, 1)
    assert tf_same(7, 4, 3) == (1, 2)  # out 3: 2*3 + 4 - 7 = 3
    assert tf_same(7, 2, 2) == (0, 1)
    assert tf_same(8, 2, 2) == (0, 0)
    assert tf_same(5, 2, 1, 3) == (1, 2)  # dilated: effective kernel 4


def windows(xp: np.ndarray, k: tuple, s: tuple, d: tuple, out: tuple):
    """(i, j, window (N, kh, kw, C)) over a padded NHWC array."""
    for i in range(out[0]):
        for j in range(out[1]):
            yield (
                i,
                j,
                xp[
                    :,
                    i * s[0] : i * s[0] + d[0] * (k[0] - 1) + 1 : d[0],
                    j * s[1] : j * s[1] + d[1] * (k[1] - 1) + 1 : d[1],
                ],
            )


def pad_same(x, k, s, d=(1, 1), value=0.0):
    (t, b), (lft, r) = tf_same(x.shape[1], k[0], s[0], d[0]), tf_same(x.shape[2], k[1], s[1], d[1])
    out = (-(-x.shape[1] // s[0]), -(-x.shape[2] // s[1]))
    return np.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)), constant_values=value), out


SAME_CASES = [(h, w, k, s) for (h, w) in [(7, 8), (8, 7), (9, 9), (10, 10)] for k in (2, 3, 4, 5) for s in (2, 3)]


@pytest.mark.parametrize("h,w,k,s", SAME_CASES)
def test_conv_same_stride(h, w, k, s):
    net = netdsl.parse(f"input {h}x{w}x3; conv filters=4 kernel={k} stride={s} padding=same")
    rng = np.random.default_rng(h * 100 + k * 10 + s)
    model = tb.build(net)
    wts = random_weights(net, rng)
    tb.set_weights(model, net, wts)
    x = batch(net, 2, rng)
    xp, out = pad_same(x, (k, k), (s, s))
    ref = np.zeros((2, *out, 4), np.float64)
    for i, j, win in windows(xp, (k, k), (s, s), (1, 1), out):
        ref[:, i, j] = np.einsum("nhwc,hwco->no", win, wts["conv_1.kernel"]) + wts["conv_1.bias"]
    got = tb.predict(model, x)
    assert got.shape == ref.shape == (2, *net.output_shape[1:])
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("k,d", [(2, 3), (3, 2), (2, 2), (4, 3)])
def test_conv_same_dilated(k, d):
    net = netdsl.parse(f"input 9x8x2; conv filters=3 kernel={k} dilation={d} padding=same bias=false")
    rng = np.random.default_rng(k + 10 * d)
    model = tb.build(net)
    wts = random_weights(net, rng)
    tb.set_weights(model, net, wts)
    x = batch(net, 2, rng)
    xp, out = pad_same(x, (k, k), (1, 1), (d, d))
    ref = np.zeros((2, *out, 3))
    for i, j, win in windows(xp, (k, k), (1, 1), (d, d), out):
        ref[:, i, j] = np.einsum("nhwc,hwco->no", win, wts["conv_1.kernel"])
    np.testing.assert_allclose(tb.predict(model, x), ref, atol=1e-5)


@pytest.mark.parametrize("h,w,k,s", SAME_CASES + [(7, 8, 3, 1), (8, 7, 2, 1)])
def test_maxpool_same_pads_with_minus_infinity(h, w, k, s):
    net = netdsl.parse(f"input {h}x{w}x2; maxpool size={k} stride={s} padding=same")
    x = -10 - np.abs(batch(net, 2, np.random.default_rng(0)))  # all negative: a zero pad would win
    xp, out = pad_same(x, (k, k), (s, s), value=-np.inf)
    ref = np.zeros((2, *out, 2), np.float32)
    for i, j, win in windows(xp, (k, k), (s, s), (1, 1), out):
        ref[:, i, j] = win.max(axis=(1, 2))
    np.testing.assert_array_equal(tb.predict(tb.build(net), x), ref)


@pytest.mark.parametrize("h,w,k,s", SAME_CASES + [(7, 8, 2, 1), (8, 7, 4, 1)])
def test_avgpool_same_averages_real_elements_only(h, w, k, s):
    net = netdsl.parse(f"input {h}x{w}x2; avgpool size={k} stride={s} padding=same")
    x = batch(net, 2, np.random.default_rng(1)) + 3
    xp, out = pad_same(x, (k, k), (s, s), value=np.nan)  # NaN marks the padding
    ref = np.zeros((2, *out, 2))
    for i, j, win in windows(xp, (k, k), (s, s), (1, 1), out):
        ref[:, i, j] = np.nanmean(win, axis=(1, 2))
    model = tb.build(net)
    np.testing.assert_allclose(tb.predict(model, x), ref, rtol=1e-5, atol=1e-6)
    # and the same through the generated source
    asym = tf_same(h, k, s)[0] != tf_same(h, k, s)[1] or tf_same(w, k, s)[0] != tf_same(w, k, s)[1]
    assert ("AvgPool2dSame(" in tb.generate(net)) == asym
    assert isinstance(model.avgpool_1, tb.AvgPool2dSame) == asym


def test_avgpool_same_asymmetric_by_hand():
    # 3x3 input, window 2, stride 2: TF pads one row and one column at the end only
    net = netdsl.parse("input 3x3x1; avgpool 2/2 same")
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    got = tb.predict(tb.build(net), x)[0, :, :, 0]
    np.testing.assert_allclose(got, [[(1 + 2 + 4 + 5) / 4, (3 + 6) / 2], [(7 + 8) / 2, 9]])


def test_avgpool_same_gradient_and_batch_independence():
    net = netdsl.parse("input 5x6x2; avgpool 3/2 same")
    model = tb.build(net)
    x = torch.randn(3, 2, 5, 6, requires_grad=True)
    y = model(x)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.allclose(model(x[1:2]), y[1:2])


# ---- layout: flatten and reshape in (H, W, C) order --------------------------------------------


def test_flatten_order_is_hwc_proven_with_hand_set_weights():
    net = netdsl.parse("input 2x3x4; flatten; dense units=1 bias=false")
    model = tb.build(net)
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) + 1  # value = 1 + (h*3 + w)*4 + c
    for j in range(24):
        kernel = np.zeros((24, 1), np.float32)
        kernel[j, 0] = 1  # picks the j-th element of the flattened vector
        tb.set_weights(model, net, {"dense_1.kernel": kernel})
        h, w, c = j // 12, (j // 4) % 3, j % 4
        assert tb.predict(model, x)[0, 0] == x[0, h, w, c] == j + 1


@pytest.mark.parametrize("shape", ["2x3x4", "3x3x1", "1x1x5", "1x4x3"])
def test_flatten_matches_numpy(shape):
    net = netdsl.parse(f"input {shape}; flatten")
    x = batch(net, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(tb.predict(tb.build(net), x), x.reshape(3, -1))


@pytest.mark.parametrize(
    "src,dst",
    [
        ("2x3x4", "4x3x2"),
        ("24", "2x3x4"),
        ("2x3x4", "24"),
        ("2x3x4", "6x1x4"),
        ("24", "24"),
        ("1x1x6", "2x3x1"),
        ("3x2x1", "1x1x6"),
    ],
)
def test_reshape_matches_numpy(src, dst):
    net = netdsl.parse(f"input {src}; reshape {dst}")
    x = batch(net, 3, np.random.default_rng(0))
    got = tb.predict(tb.build(net), x)
    np.testing.assert_array_equal(got, x.reshape(3, *net.output_shape[1:]))


def test_flatten_hands_back_a_plain_nchw_gradient():
    # a channels-last-strided gradient would push pooling and conv backward off their fast path
    net = netdsl.load(EXAMPLES[0].parent / "lenet5.net")
    model = tb.build(net)
    seen = []
    model.maxpool_2.register_full_backward_hook(lambda m, gi, go: seen.append(go[0]))
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    assert seen[0].is_contiguous()


# ---- modes, devices, copies ------------------------------------------------------------------


def test_dropout_only_in_training():
    net = netdsl.parse("input 1000; dropout 0.5")
    model = tb.build(net)
    x = torch.rand(4, 1000) + 1
    model.eval()
    assert torch.equal(model(x), x)
    model.train()
    y = model(x)
    dropped = (y == 0).float().mean().item()
    assert 0.4 < dropped < 0.6
    assert torch.allclose(y[y != 0], 2 * x[y != 0])
    # predict runs in inference mode and puts every module back as it was
    model.dropout_1.eval()
    assert np.array_equal(tb.predict(model, x.numpy()), x.numpy())
    assert model.training and not model.dropout_1.training


def test_device():
    best = tb.device()
    assert best in ("cuda", "mps", "xpu", "cpu")
    if not torch.cuda.is_available() and best != "mps" and best != "xpu":
        assert best == "cpu"
    assert tb.device("cpu") == "cpu"
    for bad in ("gpu-please", "cuda:0" if not torch.cuda.is_available() else "gpu-please"):
        with pytest.raises(NetdslError) as e:
            tb.device(bad)
        assert e.value.code == "E403"
    if torch.cuda.is_available():
        assert tb.device("cuda:0") == "cuda:0"


def test_predict_follows_the_model_dtype():
    net = netdsl.parse("input 3x3x2; conv 2x3 same; flatten")
    model = tb.build(net).double()
    x = batch(net, 2, np.random.default_rng(0))
    assert tb.predict(model, x).dtype == np.float32


def test_build_is_quiet_and_places_the_model(capsys):
    net = netdsl.load(EXAMPLES[0].parent / "mlp.net")
    model = tb.build(net, device="cpu")
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("name", ["lenet5", "resnet", "input 28x28x1; avgpool 3/2 same; flatten; dense 3"])
def test_deepcopy_and_pickle_keep_their_own_modules(name):
    net = netdsl.parse(name) if " " in name else netdsl.load(EXAMPLES[0].parent / f"{name}.net")
    model = tb.build(net).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        y = model(x)
        for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            other.eval()
            assert torch.equal(other(x), y)
            for p in other.parameters():
                p.zero_()
            assert not torch.equal(other(x), y)  # the copy runs its own modules...
            assert torch.equal(model(x), y)  # ...and the original is untouched


@pytest.mark.parametrize("name", ["lenet5", "resnet"])
def test_a_replaced_module_is_the_one_that_runs(name):
    # the fine-tuning idiom: a new head in place of the old one
    net = netdsl.load(EXAMPLES[0].parent / f"{name}.net")
    model = tb.build(net).eval()
    head = "dense_3" if name == "lenet5" else "dense_1"
    setattr(model, head, torch.nn.Linear(getattr(model, head).in_features, 2))
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == model.forward_logits(x).shape == (3, 2)
    assert torch.allclose(model(x).sum(1), torch.ones(3))  # the fused softmax stays, as in Keras


# ---- the loss: stable for a final softmax ---------------------------------------------------------


def log_softmax64(z: np.ndarray, axis: int = 1) -> np.ndarray:
    z = z.astype(np.float64)
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize(
    "spec",
    ["input 6; dense 5 softmax", "input 6; dense 5; softmax", "input 4x4x1; conv 3x2 relu; flatten; dense 5 softmax"],
)
def test_loss_on_logits_for_a_final_softmax(spec):
    net = netdsl.parse(spec)
    model = tb.build(net)
    assert model.netdsl_output_is_softmax
    x = to_nchw(batch(net, 8, np.random.default_rng(0)))
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    logits = model.forward_logits(x)
    assert torch.allclose(model(x), torch.softmax(logits, dim=1), atol=1e-6)
    ref = -log_softmax64(logits.detach().numpy())[np.arange(8), y.numpy()].mean()
    loss = tb.sparse_categorical_crossentropy(model, x, y)
    assert loss.ndim == 0 and abs(loss.item() - ref) < 1e-5


def test_loss_stays_finite_for_extreme_logits():
    net = netdsl.parse("input 4; dense 3 softmax")
    model = tb.build(net)
    kernel = np.array([[1, -1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]], np.float32) * 1e5
    tb.set_weights(model, net, {"dense_1.kernel": kernel, "dense_1.bias": np.zeros(3, np.float32)})
    x = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    y = torch.tensor([1, 0])  # the labels the net is most sure are wrong: logit gaps of 1e5 and 2e5
    with torch.no_grad():
        naive = torch.nn.functional.nll_loss(torch.log(model(x)), y)
    assert not torch.isfinite(naive)  # what a log of the probabilities would give
    loss = tb.sparse_categorical_crossentropy(model, x, y)
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item() - 2e5) / 2e5 < 1e-6  # log-sum-exp minus the label's logit
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_loss_for_feature_map_softmax():
    net = netdsl.parse("input 3x3x2; conv 4x1 softmax")
    model = tb.build(net)
    x = to_nchw(batch(net, 2, np.random.default_rng(0)))
    y = torch.randint(0, 4, (2, 3, 3))
    logits = model.forward_logits(x).detach().numpy()
    ref = -np.take_along_axis(log_softmax64(logits), y.numpy()[:, None], axis=1).mean()
    assert abs(tb.sparse_categorical_crossentropy(model, x, y).item() - ref) < 1e-5


def test_loss_without_softmax_clamps_like_keras():
    net = netdsl.parse("input 6; dense 3 relu")
    model = tb.build(net)
    assert not model.netdsl_output_is_softmax
    with pytest.raises(ValueError, match="does not end in softmax"):
        model.forward_logits(torch.zeros(1, 6))
    x = to_nchw(batch(net, 8, np.random.default_rng(0)))
    y = torch.randint(0, 3, (8,))
    p = model(x).detach().numpy().astype(np.float64)  # relu: some zeros, some above 1
    ref = -np.log(np.clip(p, 1e-7, 1 - 1e-7))[np.arange(8), y.numpy()].mean()
    loss = tb.sparse_categorical_crossentropy(model, x, y)
    assert torch.isfinite(loss) and abs(loss.item() - ref) < 1e-4


# ---- names: no spec can put code into the generated file -----------------------------------------

DANGEROUS = [
    "class", "def_", "lambda", "import", "return", "yield", "async", "await", "None", "True",
    "__init__", "__class__", "__x", "__", "_", "forward", "forward_logits", "node_outputs", "self",
    "x", "x_", "torch", "F", "nn", "input_", "print", "super", "float", "exec", "eval",
    "build_model", "keras_init", "flatten_hwc", "training", "_modules", "netdsl_output_is_softmax",
    "match", "type", "relu", "conv",
]  # fmt: skip


def dangerous_spec() -> str:
    lines = ["input 6x6x2"]
    for a, b in zip(DANGEROUS[::2], DANGEROUS[1::2], strict=True):
        # `a` is read by the node after next: it lives in a local variable named after it
        lines += [f"{a}: conv 2x3 relu same", f"{b}: batchnorm", f"add {a}"]
    lines += ["pool_: maxpool 3/2 same", "flatten", "dense 4 softmax"]
    return "\n".join(lines)


def test_injection_through_names(tmp_path):
    net = netdsl.parse(dangerous_spec(), filename='evil"""\nimport os\r\nos.system("x")\u2028# coding: rot13.net')
    src = tb.generate(net)
    compile(src, "gen.py", "exec")
    assert all(line.startswith("#") for line in src.splitlines() if "os.system" in line)
    assert src.splitlines()[0].startswith("# A PyTorch model") and "coding" not in "".join(src.splitlines()[:2])
    tree = ast.parse(src)
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body and isinstance(n.body[0], ast.Expr)
    }
    cls = next(n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.name not in tb._p._HELPERS)
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            fixed_text = (
                "-inf",
                "nearest-exact",
                "__main__",
                "input ",
                " -> output ",
                "keras_fans",
            )  # keras_fans: keras_init
            assert id(n) in docstrings or n.value in fixed_text
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            fixed = {"super", "float", "isinstance", "build_model", "print", "tuple", "model", *tb._p._HELPERS}
            assert n.func.id in fixed | {cls}, n.func.id
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            assert all((getattr(n, "module", None) or a.name).startswith("torch") for a in n.names)
    # the in-memory model: every node has its module, clashing names get a trailing "_"
    model = tb.build(net).eval()
    assert isinstance(model.class_, torch.nn.Conv2d) and isinstance(model.forward_, torch.nn.BatchNorm2d)
    assert isinstance(model.relu, torch.nn.Conv2d) and isinstance(model.x, torch.nn.BatchNorm2d)
    assert isinstance(model.__x__, torch.nn.Conv2d)  # `__x` would be mangled in a class body
    assert callable(model.forward) and callable(model.forward_logits)
    path = check_net(net, tmp_path, np.random.default_rng(0))
    ruff_check([path])


def test_class_names_from_odd_file_names(tmp_path):
    for filename, cls in [
        ("lenet-5.net", "Lenet5"),
        ("123.net", "Net123"),
        ("none.net", "NoneNet"),
        ("f.net", "FNet"),
        ("my net.net", "MyNet"),
    ]:
        src = tb.generate(netdsl.parse("input 4; dense 2", filename=filename))
        assert f"class {cls}(nn.Module):" in src
        path = tmp_path / f"c_{next(_counter)}.py"
        path.write_text(src, encoding="utf-8")
        assert load_generated(path).build_model()(torch.zeros(1, 4)).shape == (1, 2)

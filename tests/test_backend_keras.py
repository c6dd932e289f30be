"""The tf.keras backend: built models agree with netdsl's shapes and counts, weights
round-trip, generated source is clean, standalone and the same model, and the
semantics both backends share (fused activations, TF 'same' padding, dropout) hold.

Every example and >= 200 random valid programs (tests/strategies.py) go through one
check, :func:`check_net`.  The generated files of the random programs are linted by
one ``ruff check`` at the end, not one process each.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

try:  # torch before tensorflow: loading them the other way round can crash the process
    import torch  # noqa: F401
except ImportError:
    pass

pytest.importorskip("tensorflow")

from conftest import EXAMPLES, ROOT  # noqa: E402
from conftest import ruff_check as _ruff_check  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

import netdsl  # noqa: E402
from netdsl import ops  # noqa: E402
from netdsl.backends import keras as kb  # noqa: E402
from netdsl.backends import keras_program  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strategies import programs  # noqa: E402

keras = kb.keras
N_RANDOM = 200
_counter = itertools.count()


# ---- the one check every net goes through -------------------------------------------------


def _size(shape) -> int:
    return math.prod(int(d) for d in shape)


def _random_weights(net, rng) -> dict[str, np.ndarray]:
    out = {}
    g = net.graph
    for name, node in g.nodes.items():
        if node["op"] == "input":
            continue
        ins = [g.nodes[i]["shape"] for i in node["inputs"]]
        for wname, shape, _ in ops.OPS[node["op"]].weights(node["args"], ins):
            w = rng.normal(0, 0.5, size=shape).astype(np.float32)
            out[f"{name}.{wname}"] = np.abs(w) + 0.5 if wname == "moving_variance" else w
    return out


def _expected_weight_shapes(net) -> dict[str, tuple]:
    g = net.graph
    out = {}
    for name, node in g.nodes.items():
        if node["op"] != "input":
            ins = [g.nodes[i]["shape"] for i in node["inputs"]]
            for wname, shape, _ in ops.OPS[node["op"]].weights(node["args"], ins):
                out[f"{name}.{wname}"] = tuple(shape)
    return out


def _import_generated(path: Path):
    spec = importlib.util.spec_from_file_location(f"netdsl_generated_{next(_counter)}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0] if node.level == 0 else ".")
    return names


def _counts(model) -> tuple[int, int]:
    return (
        sum(_size(w.shape) for w in model.trainable_weights),
        sum(_size(w.shape) for w in model.non_trainable_weights),
    )


def check_net(net, gen_dir: Path, rng) -> tuple[Path, object]:
    """Build, compare with netdsl, round-trip weights, generate, import and compare.  Returns the file and model."""
    model = kb.build(net)
    g = net.graph
    layers = {layer.name: layer for layer in model.layers}
    assert set(layers) == set(g.nodes), "one Keras layer per node, named after it"
    assert type(layers["input"]).__name__ == "InputLayer"

    # shapes and counts, per node and in total
    for name, node in g.nodes.items():
        layer = layers[name]
        assert tuple(layer.output.shape) == (None, *node["shape"]), name
        if node["op"] == "input":
            continue
        assert type(layer).__name__ == ops.OPS[node["op"]].keras, name
        assert layer.count_params() == node["params"], name
        assert sum(_size(w.shape) for w in layer.trainable_weights) == node["trainable"], name
        assert sum(_size(w.shape) for w in layer.non_trainable_weights) == node["non_trainable"], name
    assert _counts(model) == (net.trainable_params, net.non_trainable_params)
    assert tuple(model.output.shape) == net.output_shape

    # canonical weights: exactly ops' names and shapes; set/get round-trips exactly
    expected = _expected_weight_shapes(net)
    w0 = kb.get_weights(model, net)
    assert {k: v.shape for k, v in w0.items()} == expected
    assert all(v.dtype == np.float32 for v in w0.values())
    w1 = _random_weights(net, rng)
    kb.set_weights(model, net, w1)
    w2 = kb.get_weights(model, net)
    assert w2.keys() == w1.keys()
    for k in w1:
        np.testing.assert_array_equal(w2[k], w1[k], err_msg=k)

    # predict: channels-last in and out, the right shape
    x = rng.normal(size=(3, *net.input_shape[1:])).astype(np.float32)
    y = kb.predict(model, x)
    assert isinstance(y, np.ndarray) and y.shape == (3, *net.output_shape[1:])

    # generated source: clean, standalone, the same model
    src = kb.generate(net)
    tree = ast.parse(src)
    assert "netdsl" not in _imports(tree) and "." not in _imports(tree)
    assert src.startswith("#") and "# Layer (type)" in src  # the summary table, as comments
    path = gen_dir / f"gen_{next(_counter)}.py"
    path.write_text(src, encoding="utf-8")
    with warnings.catch_warnings():  # plain Keras code: a softmax over one channel warns (build() does not)
        warnings.filterwarnings("ignore", message="You are using a softmax over axis", category=UserWarning)
        gen = _import_generated(path).build_model()
    glayers = {layer.name: layer for layer in gen.layers}
    assert list(glayers) == list(layers)
    for name, layer in layers.items():
        own = type(layer).__name__ in kb.HELPERS  # netdsl's own layer: the generated file defines its copy
        assert type(glayers[name]) is type(layer) or (own and type(glayers[name]).__name__ == type(layer).__name__), (
            name
        )
        if name != "input":
            assert glayers[name].get_config() == layer.get_config(), name
    assert _counts(gen) == _counts(model)
    assert gen.name == model.name
    kb.set_weights(gen, net, kb.get_weights(model, net))
    np.testing.assert_allclose(kb.predict(gen, x), y, rtol=1e-5, atol=1e-6)
    return path, model


def ruff_check(paths: list[Path]) -> None:
    _ruff_check(paths, project_config=True)  # default rules and the project's own


# ---- examples and random programs ---------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example(path, tmp_path):
    path_py, _ = check_net(netdsl.load(path), tmp_path, np.random.default_rng(0))
    ruff_check([path_py])


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
        net = netdsl.parse(prog.text, **prog.params)
        path, _ = check_net(net, tmp_path, rng)
        files.append(path)
        if len(files) % 40 == 0:
            keras.backend.clear_session()

    run()
    assert len(files) >= N_RANDOM
    ruff_check(files)
    keras.backend.clear_session()


# ---- the seed tutorial's summary ----------------------------------------------------------

LENET_ROWS = [  # Keras model.summary() of the tutorial's LeNet-5
    ("conv_1 (Conv2D)", "(None, 24, 24, 6)", "156"),
    ("maxpool_1 (MaxPooling2D)", "(None, 12, 12, 6)", "0"),
    ("conv_2 (Conv2D)", "(None, 8, 8, 16)", "2,416"),
    ("maxpool_2 (MaxPooling2D)", "(None, 4, 4, 16)", "0"),
    ("flatten_1 (Flatten)", "(None, 256)", "0"),
    ("dense_1 (Dense)", "(None, 120)", "30,840"),
    ("dense_2 (Dense)", "(None, 84)", "10,164"),
    ("dense_3 (Dense)", "(None, 10)", "850"),
]


@pytest.mark.parametrize("name", ["lenet5", "lenet5_seed"])
def test_lenet_summary_matches_tutorial(name):
    model = kb.build(netdsl.load(ROOT / "examples" / f"{name}.net"))
    text: list[str] = []
    model.summary(print_fn=lambda s, **kw: text.append(s))
    rows = []
    for line in "\n".join(text).splitlines():
        cells = [c.strip() for c in line.split("\u2502")]
        if len(cells) == 5 and cells[1] and not cells[1].startswith(("Layer", "input (")):
            rows.append(tuple(cells[1:4]))
    assert rows == LENET_ROWS
    assert "Total params: 44,426" in "\n".join(text)


# ---- semantics ----------------------------------------------------------------------------


def _net_with(text: str, weights: dict[str, np.ndarray]):
    net = netdsl.parse(text)
    model = kb.build(net)
    w = kb.get_weights(model, net)
    w.update(weights)
    kb.set_weights(model, net, w)
    return net, model


def test_dropout_is_off_in_inference():
    rng = np.random.default_rng(2)
    w = {
        "dense_1.kernel": rng.normal(size=(8, 16)).astype(np.float32),
        "dense_1.bias": rng.normal(size=16).astype(np.float32),
        "dense_2.kernel": rng.normal(size=(16, 4)).astype(np.float32),
        "dense_2.bias": rng.normal(size=4).astype(np.float32),
    }
    _, model = _net_with("input 8\ndense 16 relu\ndropout 0.9\ndense 4", w)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    want = np.maximum(x @ w["dense_1.kernel"] + w["dense_1.bias"], 0) @ w["dense_2.kernel"] + w["dense_2.bias"]
    np.testing.assert_allclose(kb.predict(model, x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(kb.predict(model, x), kb.predict(model, x))
    trained = keras.ops.convert_to_numpy(model(x, training=True))  # the layer is there, and drops in training
    assert not np.allclose(trained, want, atol=1e-3)


def test_fused_and_standalone_activations():
    eye = {"dense_1.kernel": np.eye(5, dtype=np.float32)}
    x = np.linspace(-3, 3, 5 * 7, dtype=np.float32).reshape(7, 5)
    _, m = _net_with("input 5\ndense 5 leakyrelu", eye)
    np.testing.assert_allclose(kb.predict(m, x), np.where(x > 0, x, 0.2 * x), rtol=1e-6)
    _, m = _net_with("input 5\nleakyrelu 0.1", {})
    np.testing.assert_allclose(kb.predict(m, x), np.where(x > 0, x, 0.1 * x), rtol=1e-6)
    _, m = _net_with("input 5\ngelu", {})  # exact (erf) gelu
    erf = np.vectorize(math.erf)
    np.testing.assert_allclose(kb.predict(m, x), 0.5 * x * (1 + erf(x / math.sqrt(2))), rtol=1e-5, atol=1e-6)
    _, m = _net_with("input 5\nelu", {})
    np.testing.assert_allclose(kb.predict(m, x), np.where(x > 0, x, np.expm1(x)), rtol=1e-5, atol=1e-6)
    _, m = _net_with("input 2x2x3\nconv 3x1 softmax", {"conv_1.kernel": np.eye(3, dtype=np.float32)[None, None]})
    xm = x[:4, :3].reshape(1, 2, 2, 3)
    e = np.exp(xm - xm.max(-1, keepdims=True))
    np.testing.assert_allclose(kb.predict(m, xm), e / e.sum(-1, keepdims=True), rtol=1e-5)  # over channels


def test_same_padding_follows_tensorflow():
    ones = np.ones((1, 4, 4, 1), np.float32)
    # stride 2, kernel 3 on 4: out 2, one row/column of padding, at the bottom/right
    _, m = _net_with("input 4x4x1\nconv 1x3/2 same", {"conv_1.kernel": np.ones((3, 3, 1, 1), np.float32)})
    np.testing.assert_allclose(kb.predict(m, ones)[0, :, :, 0], [[9, 6], [6, 4]])
    _, m = _net_with("input 5x5x1\navgpool 2 same", {})  # the padding is not averaged in
    np.testing.assert_allclose(kb.predict(m, np.ones((1, 5, 5, 1), np.float32)), np.ones((1, 3, 3, 1)))
    _, m = _net_with("input 5x5x1\nmaxpool 2 same", {})  # max pool pads with -inf
    np.testing.assert_allclose(kb.predict(m, -np.ones((1, 5, 5, 1), np.float32)), -np.ones((1, 3, 3, 1)))


def test_flatten_is_hwc_order():
    _, m = _net_with("input 2x3x4\nflatten", {})
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    np.testing.assert_array_equal(kb.predict(m, x), x.reshape(1, 24))


def test_batchnorm_inference_uses_moving_statistics():
    w = {
        "batchnorm_1.gamma": np.array([1.0, 2.0], np.float32),
        "batchnorm_1.beta": np.array([0.5, -1.0], np.float32),
        "batchnorm_1.moving_mean": np.array([3.0, -2.0], np.float32),
        "batchnorm_1.moving_variance": np.array([4.0, 0.25], np.float32),
    }
    _, m = _net_with("input 2\nbatchnorm eps=0.001", w)
    x = np.array([[1.0, 1.0], [5.0, -2.0]], np.float32)
    want = (
        w["batchnorm_1.gamma"] * (x - w["batchnorm_1.moving_mean"]) / np.sqrt(w["batchnorm_1.moving_variance"] + 1e-3)
        + w["batchnorm_1.beta"]
    )
    np.testing.assert_allclose(kb.predict(m, x), want, rtol=1e-5)


# ---- generate: names that are Python keywords, odd file names ------------------------------

KEYWORD_LABELS = (
    "class None True import lambda def return __debug__ keras layers inputs x os build_model print __name__ "
    "inputs_ class_ match _ re sys tempfile _import_keras_quietly _START_UP_NOTES"
).split()


def test_generate_is_injection_proof(tmp_path):
    labels = []
    for label in KEYWORD_LABELS:
        try:
            netdsl.parse(f"input 4\n{label}: dense 4")
        except netdsl.NetdslError:
            continue
        labels.append(label)
    assert labels[0] == "class" and "None" in labels and "__debug__" in labels
    # every label is read twice, later on, so it gets a variable of its own in the generated code
    lines = ["input 6x6x2", "class: conv 4x3", "conv 4x1", "add class", "flatten"]
    for label in labels[1:]:
        lines += [f"{label}: dense 4", "dense 4", f"add {label}"]
    lines += ["dense units=lambda activation=act", "dropout 0.5", "dense 3 softmax"]
    evil = 'my"""\nimport os; os.system("echo pwned")\r\n#\u2028\'\'\'\x00\x85\ud800.net'
    net = netdsl.parse("\n".join(lines), filename=evil, **{"lambda": 5, "act": "relu"})
    assert net.graph.nodes["class"]["shape"] == (4, 4, 4)
    path, model = check_net(net, tmp_path, np.random.default_rng(3))
    ruff_check([path])
    src = path.read_text(encoding="utf-8")
    tree = ast.parse(src)
    # nothing runs at import but the fixed imports (no text from the spec in them) and the def
    fixed = ast.parse(keras_program._QUIET_IMPORT).body
    assert [ast.dump(s) for s in tree.body[: len(fixed)]] == [ast.dump(s) for s in fixed]
    assert [type(s) for s in tree.body[len(fixed) :]] == [ast.FunctionDef, ast.If]
    assert tree.body[len(fixed)].name == "build_model"
    assert not any(isinstance(n, ast.Attribute) and n.attr == "system" for n in ast.walk(tree))
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {t for t in strings if "pwned" in t} == {net.name}  # only as the model's name, a literal
    assert all(ln.isprintable() for ln in src.splitlines())
    assert model.name == net.name == Path(evil).stem


def test_generate_chain_reads_as_written():
    src = kb.generate(netdsl.load(ROOT / "examples" / "lenet5.net"))
    body = src[src.index("def build_model") :]
    assert "x = layers.Conv2D(6, 5, activation='sigmoid', name='conv_1')(inputs)" in body
    assert "x = layers.MaxPooling2D(2, 2, name='maxpool_1')(x)" in body
    assert "return keras.Model(inputs, x, name='lenet5')" in body


# ---- device, the op table, the import ------------------------------------------------------


def test_device():
    import tensorflow as tf

    best = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    assert kb.device() == best
    assert kb.device("cpu") == kb.device("/CPU:0") == "/CPU:0"
    gpus = len(tf.config.list_physical_devices("GPU"))
    if gpus > 1:
        assert kb.device("cuda:1") == kb.device("GPU:1") == "/GPU:1"
    for name in ["cuda:1", "GPU:1", "/GPU:1"] + (["gpu", "cuda"] if not gpus else []):
        if gpus <= 1:
            with pytest.raises(netdsl.NetdslError, match="E403"):  # never a device this machine lacks
                kb.device(name)
    for name in ("foo", "mps", "/TPU:0", "cpu:1"):
        with pytest.raises(netdsl.NetdslError, match="E403"):
            kb.device(name)
    model = kb.build(netdsl.parse("input 4\ndense 2"), device="/CPU:0")
    assert model.weights[0].value.device.endswith("CPU:0")


def test_ops_table_covers_every_op():
    assert set(kb.OPS) == set(ops.OPS)
    for op in kb.OPS.values():
        assert hasattr(keras.layers, op.layer) or op.layer in kb.HELPERS  # RandomCropPad: netdsl's own


IMPORT_CHECK = """
import os, sys
import netdsl, netdsl.backends.keras as kb
kb.build(netdsl.parse("conv 6x5 sigmoid; maxpool 2/2; flatten; dense 10 softmax"))
print(os.environ["TF_CPP_MIN_LOG_LEVEL"], os.environ["KERAS_BACKEND"])
"""


def test_import_sets_env_defaults_and_is_quiet():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", IMPORT_CHECK],
            env=e,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for e in (env, {**env, "TF_CPP_MIN_LOG_LEVEL": "3"})
    ]
    (out2, err2), (out3, err3) = (p.communicate(timeout=120) for p in procs)
    assert out2.split() == ["2", "tensorflow"], err2
    assert out3.split() == ["3", "tensorflow"], err3  # the user's setting stays
    for err in (err2, err3):
        assert err.strip() == "", err


def test_softmax_over_one_channel_builds_and_runs_quietly():
    # the language allows it (the output is always 1); build() and predict() must not warn each call
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = netdsl.parse("input 4\ndense 1 softmax")
        model = kb.build(net)
        np.testing.assert_array_equal(kb.predict(model, np.ones((2, 4), np.float32)), np.ones((2, 1)))

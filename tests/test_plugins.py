"""Plugin layers: the example package examples/plugins/netdsl-affine installed for real
(pip install --target a temporary directory, found through its `netdsl.ops` entry point) and
used from the command line in subprocesses; broken plugins registered in process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

import netdsl
from netdsl import NetdslError, ops, plugins

PACKAGE = ROOT / "examples" / "plugins" / "netdsl-affine"
SPEC = PACKAGE / "affine.net"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example plugin installed (a wheel built from a copy: the source tree stays clean)."""
    pytest.importorskip("hatchling")
    work = tmp_path_factory.mktemp("plugin")
    shutil.copytree(PACKAGE, work / "src")
    target = work / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    proc = subprocess.run([*cmd, "--target", str(target), str(work / "src")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def run(site: Path, *argv, cwd=None, env_extra=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_check_summary_plot_compile(site, tmp_path):
    cli = ["-m", "netdsl"]
    p = run(site, *cli, "check", str(SPEC))
    assert p.returncode == 0, p.stderr
    p = run(site, *cli, "summary", str(SPEC))
    assert p.returncode == 0 and "affine_1 (ChannelAffine)     (None, 24, 24, 6)         12" in p.stdout, p.stdout
    assert "Total params: 25,038" in p.stdout
    p = run(site, *cli, "plot", str(SPEC), "-o", str(tmp_path / "a.dot"))
    assert p.returncode == 0 and "affine_2" in (tmp_path / "a.dot").read_text()
    for backend in ("torch", "keras"):
        out = tmp_path / f"gen_{backend}.py"
        p = run(site, *cli, "compile", "-b", backend, str(SPEC), "-o", str(out))
        assert p.returncode == 0, p.stderr
        assert "class ChannelAffine" in out.read_text() and "netdsl" not in out.read_text().split("import", 1)[1][:200]
        # standalone: neither netdsl nor the plugin on the path
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        g = subprocess.run(
            [sys.executable, str(out)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
        )
        assert g.returncode == 0 and "-> output (2, 10)" in g.stdout, g.stderr


CHECK_BOTH = """
import sys, numpy as np, netdsl
from netdsl.backends import get
net = netdsl.load(sys.argv[1])
tb, kb = get("torch"), get("keras")
tm, km = tb.build(net, device="cpu"), kb.build(net, device="/CPU:0")
net.load_weights(tm, sys.argv[2]); net.load_weights(km, sys.argv[2])
w = tb.get_weights(tm, net)
assert w["affine_1.gamma"].shape == (6,) and "affine_2.beta" not in w
x = np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
a, b = tb.predict(tm, x), kb.predict(km, x)
assert float(np.abs(a - b).max()) < 1e-4, np.abs(a - b).max()
net.save_weights(km, sys.argv[3])
back = tb.build(net, device="cpu"); net.load_weights(back, sys.argv[3])
assert np.array_equal(tb.predict(back, x), a) or float(np.abs(tb.predict(back, x) - a).max()) < 1e-6
print("agree", sorted(w))
"""


@pytest.mark.slow
def test_train_one_epoch_then_weights_in_both_frameworks(site, tmp_path):
    from test_train import synthetic, write_idx

    data = write_idx(tmp_path / "data", synthetic(600, 100))
    p = run(site, "-m", "netdsl", "train", str(SPEC), "--data", str(data), "--out", str(tmp_path / "run"), "-q")
    assert p.returncode == 0, p.stderr
    script = tmp_path / "both.py"
    script.write_text(CHECK_BOTH)
    w = tmp_path / "run" / "weights.safetensors"
    p = run(site, str(script), str(SPEC), str(w), str(tmp_path / "k.safetensors"))
    assert p.returncode == 0 and "agree" in p.stdout, p.stderr
    assert "affine_1.gamma" in p.stdout


def test_plugin_refusal_and_unknown_backend_are_located(site, tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("input 28x28x1\nconv 4x3\naffine scale=0\nflatten\ndense 10\n")
    p = run(site, "-m", "netdsl", "check", str(bad))
    assert p.returncode == 1 and "bad.net:3:1: error[E144]: affine: scale=0" in p.stderr, p.stderr
    p = run(site, "-m", "netdsl", "export", str(SPEC), "-o", str(tmp_path / "a.onnx"))
    assert p.returncode == 1 and "E145" in p.stderr and "netdsl-affine" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


# ---- broken plugins, registered in this process ----------------------------------------------------


@pytest.fixture
def register():
    names = []

    def reg(name, **kw):
        names.append(name)
        netdsl.register_op(name, **kw)

    yield reg
    for name in names:
        plugins._unregister(name)


@pytest.mark.parametrize(
    "kw,code,text",
    [
        ({"shape": lambda a, s: 1 / 0}, "E143", "shape rule raised ZeroDivisionError"),
        ({"shape": lambda a, s: sys.exit(0)}, "E143", "shape rule raised SystemExit"),
        ({"shape": lambda a, s: s, "macs": lambda a, s, o: sys.exit(3)}, "E143", "MACs raised SystemExit"),
        ({"shape": lambda a, s: "big"}, "E143", "not a shape"),
        ({"shape": lambda a, s: (0, 3)}, "E143", "not a shape"),
        ({"shape": lambda a, s: s, "weights": lambda a, s: [("w", (-1, 2), True)]}, "E143", "whole numbers >= 0"),
        ({"shape": lambda a, s: s, "weights": lambda a, s: 5}, "E143", "weights raised TypeError"),
        ({"shape": lambda a, s: s, "macs": lambda a, s, o: -3}, "E143", "MACs returned -3"),
        ({"shape": lambda a, s: (_ for _ in ()).throw(ValueError("needs a map"))}, "E144", "needs a map"),
    ],
)
def test_a_broken_plugin_is_blamed_and_located(register, kw, code, text):
    register("broken", **kw)
    with pytest.raises(NetdslError) as e:
        netdsl.parse("input 4x4x2\nbroken\nflatten")
    assert e.value.code == code and text in str(e.value), str(e.value)
    assert e.value.line == 2
    if code == "E143":
        assert "plugin layer `broken` (from register_op)" in str(e.value)


def test_plugin_arguments_and_missing_backends(register):
    register(
        "twice",
        args={"factor": ("int", 2), "mode": (("fast", "slow"), "fast")},
        shorthand="factor",
        shape=lambda a, s: s[:-1] + (s[-1] * a["factor"],),
    )
    net = netdsl.parse("input 3x3x2\ntwice 3 mode=slow\nflatten")
    assert net.layers[0].output_shape == (None, 3, 3, 6)
    for spec, code in [("twice 0", "E103"), ("twice mode=odd", "E103"), ("twice speed=1", "E102")]:
        with pytest.raises(NetdslError) as e:
            netdsl.parse(f"input 3x3x2\n{spec}")
        assert e.value.code == code, str(e.value)
    for backend in ("torch", "keras"):
        with pytest.raises(NetdslError) as e:
            net.generate(backend)
        assert e.value.code == "E145" and e.value.line == 2 and "generated" in str(e.value)
    pytest.importorskip("torch")
    with pytest.raises(NetdslError) as e:
        net.to_torch(device="cpu")
    assert e.value.code == "E145" and "`twice` (from register_op) does not provide the torch backend" in str(e.value)


def test_a_plugin_builder_that_returns_nonsense(register):
    pytest.importorskip("torch")
    register("nonsense", shape=lambda a, s: s, torch=lambda a, s, o: 42, torch_source=lambda a, s, o: ("", 3))
    net = netdsl.parse("input 3; nonsense")
    for f in (lambda: net.to_torch(device="cpu"), lambda: net.generate("torch")):
        with pytest.raises(NetdslError) as e:
            f()
        assert e.value.code == "E143" and "nonsense" in str(e.value)


def test_bad_declarations_are_refused():
    for name, kw in [
        ("conv", {"shape": lambda a, s: s}),
        ("Bad-Name", {"shape": lambda a, s: s}),
        ("fine", {"shape": lambda a, s: s, "args": {"x": ("complex", 1)}}),
        ("fine", {"shape": lambda a, s: s, "family": "magic"}),
        ("fine", {"shape": lambda a, s: s, "shorthand": "nope"}),
    ]:
        with pytest.raises(ValueError):
            netdsl.register_op(name, **kw)
    assert "fine" not in ops.OPS


def test_unknown_layer_hint_names_a_plugin_that_failed_to_load(monkeypatch):
    monkeypatch.setitem(plugins.FAILED, "demo (broken-dist)", "ImportError: no module named x")
    with pytest.raises(NetdslError) as e:
        netdsl.parse("qqqqq 3")
    assert e.value.code == "E101" and "the plugin demo (broken-dist) did not load" in str(e.value)
    assert np  # numpy is what the framework checks above compare with


def test_a_module_without_its_declared_weights_is_the_plugins_fault(register):
    torch = pytest.importorskip("torch")
    register(
        "noweights",
        shape=lambda a, s: s,
        weights=lambda a, s: [("gamma", (s[-1],), True)],
        torch=lambda a, s, o: torch.nn.Identity(),
    )
    net = netdsl.parse("input 3; noweights")
    assert net.trainable_params == 3
    with pytest.raises(NetdslError) as e:
        net.to_torch(device="cpu")
    assert e.value.code == "E143" and "the weight `gamma` of shape (3,)" in str(e.value)


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_a_module_whose_real_shape_differs_from_the_declared_one(register, backend, tmp_path):
    """The built module/layer is run once on its declared input: a real output shape unlike the
    shape rule's is the plugin's fault (E143), found before training and before any run directory."""
    pytest.importorskip(backend if backend == "torch" else "tensorflow")

    def torch_builder(a, s, o):
        import torch

        class Wrong(torch.nn.Module):
            def forward(self, x):
                return x[:, :1]

        return Wrong()

    def keras_builder(a, s, o, name):
        import keras

        return keras.layers.Lambda(lambda x: x[..., :1], name=name)

    register("liar", shape=lambda a, s: s, torch=torch_builder, keras=keras_builder)
    net = netdsl.parse("input 6x6x3\nconv 4x3 same\nliar\nflatten\ndense 2")
    with pytest.raises(NetdslError) as e:
        net.to_torch(device="cpu") if backend == "torch" else net.to_keras()
    assert e.value.code == "E143" and e.value.line == 3, str(e.value)
    assert f"its {backend} builder's layer returns 6x6x1, but its shape rule declared 6x6x4" in str(e.value)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (8, 6, 6, 3)).astype(np.float32), np.arange(8) % 2
    with pytest.raises(NetdslError) as e:
        netdsl.train(net, backend, data=(x, y, x, y), epochs=1, out=tmp_path / "run", quiet=True)
    assert e.value.code == "E143"
    assert not (tmp_path / "run").exists()


def test_plugin_weights_get_the_size_limits_of_built_ins(register):
    """Built-ins cap every size at int32 and a layer's count at MAX_ELEMENTS (E209): plugins too."""
    register("huge", shape=lambda a, s: s, weights=lambda a, s: [("w", (2**31, 1), True)])
    register("many", shape=lambda a, s: s, weights=lambda a, s: [("w", (2**21, 2**20), True)])
    for name, text in [("huge", "the weight `w` of `huge` would be 2147483648x1"), ("many", "too many")]:
        with pytest.raises(NetdslError) as e:
            netdsl.parse(f"input 4x4x2\n{name}")
        assert e.value.code == "E209" and e.value.line == 2 and text in str(e.value), str(e.value)


def test_a_frozen_plugin_layer_is_frozen_in_every_build(tmp_path, monkeypatch):
    """`frozen=true` on a plugin layer: not trained in memory and in both generated sources."""
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    monkeypatch.syspath_prepend(str(PACKAGE))
    import netdsl_affine

    netdsl_affine.register()
    try:
        _frozen_plugin_checks(tmp_path)
    finally:
        plugins._unregister("affine")


def _frozen_plugin_checks(tmp_path):
    import importlib.util

    net = netdsl.parse("input 6x6x2\nconv 3x3\naffine frozen=true\naffine 0.5\nflatten\ndense 2")
    assert net.trainable_params == 2 * 3 * 3 * 3 + 3 + 6 + 3 * 4 * 4 * 2 + 2
    modules = {}
    for backend in ("torch", "keras"):
        path = tmp_path / f"gen_{backend}.py"
        path.write_text(net.generate(backend))
        spec = importlib.util.spec_from_file_location(f"gen_frozen_plugin_{backend}", path)
        modules[backend] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[backend])
    km = modules["keras"].build_model()
    assert not km.get_layer("affine_1").trainable and km.get_layer("affine_2").trainable
    assert sum(int(np.prod(w.shape)) for w in km.trainable_weights) == net.trainable_params
    tm = modules["torch"].build_model()
    assert sum(p.numel() for p in tm.parameters() if p.requires_grad) == net.trainable_params
    in_memory = net.to_keras()
    assert [w.path for w in in_memory.trainable_weights] == [w.path for w in km.trainable_weights]
    tmem = net.to_torch(device="cpu")
    assert sum(p.numel() for p in tmem.parameters() if p.requires_grad) == net.trainable_params

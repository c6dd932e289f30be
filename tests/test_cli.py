"""The command line, through main([...]) and once through the installed program."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

from netdsl.cli import main

LENET = str(ROOT / "examples" / "lenet5.net")


def run(capsys, *argv, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_ok(capsys):
    code, out, err = run(capsys, "check", LENET)
    assert code == 0 and err == ""
    assert "ok" in out and "44,426 params" in out and "(None, 10)" in out


def test_check_all_examples_quiet(capsys):
    files = sorted(str(p) for p in (ROOT / "examples").glob("*.net"))
    code, out, err = run(capsys, "check", "-q", *files)
    assert (code, out, err) == (0, "", "")


def test_check_reports_every_bad_file(capsys, tmp_path):
    bad1, bad2 = tmp_path / "a.net", tmp_path / "b.net"
    bad1.write_text("conv 6x5 relu\ndense 10\n")
    bad2.write_text("cnv 6x5\n")
    code, out, err = run(capsys, "check", str(bad1), LENET, str(bad2))
    assert code == 1
    assert f"{bad1}:2:1: error[E201]" in err and f"{bad2}:1:1: error[E101]" in err
    assert "lenet5.net: ok" in out


def test_summary_table(capsys):
    code, out, err = run(capsys, "summary", LENET)
    assert code == 0
    assert out.startswith('Model: "lenet5"')
    assert "conv_1 (Conv2D)              (None, 24, 24, 6)         156" in out
    assert "Total params: 44,426" in out


def test_summary_json(capsys):
    code, out, _ = run(capsys, "summary", LENET, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["total_params"] == 44426 and data["trainable_params"] == 44426
    assert data["non_trainable_params"] == 0
    assert data["input_shape"] == [None, 28, 28, 1] and data["output_shape"] == [None, 10]
    first = data["layers"][0]
    assert {
        k: first[k] for k in ("name", "op", "output_shape", "params", "trainable", "non_trainable", "macs", "line")
    } == {
        "name": "conv_1",
        "op": "conv",
        "output_shape": [None, 24, 24, 6],
        "params": 156,
        "trainable": 156,
        "non_trainable": 0,
        "macs": 86400,
        "line": 3,
    }
    assert [layer["params"] for layer in data["layers"]] == [156, 0, 2416, 0, 0, 30840, 10164, 850]


def test_stdin_defines_and_input_override(capsys, monkeypatch):
    spec = "conv filters=width kernel=3 activation=act\ngap\ndense classes softmax\n"
    code, out, err = run(
        capsys,
        "summary",
        "-",
        "-D",
        "width=8",
        "-D",
        "act=relu",
        "-D",
        "classes=10",
        "--input",
        "32x32x3",
        "--json",
        stdin=spec,
        monkeypatch=monkeypatch,
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["input_shape"] == [None, 32, 32, 3]
    assert data["layers"][0]["output_shape"] == [None, 30, 30, 8]
    assert data["layers"][0]["params"] == 3 * 3 * 3 * 8 + 8


def test_stdin_error_is_located(capsys, monkeypatch):
    code, out, err = run(capsys, "check", "-", stdin="conv 6x5\nflatten\nconv 3x3\n", monkeypatch=monkeypatch)
    assert code == 1
    assert err.startswith("<stdin>:3:1: error[E202]")


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        ["check"],
        ["summary"],
        ["check", "-D", "novalue", LENET],
        ["check", "-D", "x=1+", LENET],
        ["check", "--input", "28x28x", LENET],
        ["check", "--input", "0x28x1", LENET],
        ["summary", LENET, "--bogus"],
    ],
)
def test_usage_errors_exit_2(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "usage:" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--help"], ["check", "--help"], ["summary", "--help"], ["--version"]])
def test_help(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 0 and ("usage:" in out or "netdsl" in out)


def test_unused_define_is_an_error(capsys):
    code, out, err = run(capsys, "check", LENET, "-D", "widht=3")
    assert code == 1 and "error[E106]" in err and "not used" in err


def test_missing_file_and_directory(capsys, tmp_path):
    code, out, err = run(capsys, "check", str(tmp_path / "nope.net"))
    assert code == 1 and "error[E005]" in err and "No such file" in err
    code, out, err = run(capsys, "summary", str(tmp_path))
    assert code == 1 and "error[E005]" in err


def test_traceback_flag_raises(capsys, tmp_path):
    bad = tmp_path / "a.net"
    bad.write_text("cnv\n")
    from netdsl import NetdslError

    with pytest.raises(NetdslError):
        main(["check", "--traceback", str(bad)])


def test_internal_errors_do_not_leak_a_traceback(capsys, monkeypatch):
    import netdsl.net

    def boom(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(netdsl.net, "compile_source", boom)
    code, out, err = run(capsys, "check", LENET)
    assert code == 3 and "internal error" in err and "Traceback" not in err


@pytest.mark.slow
def test_installed_program():
    from pathlib import Path

    beside = Path(sys.executable).parent / "netdsl"  # the console script of this environment
    exe = str(beside) if beside.exists() else shutil.which("netdsl")
    assert exe, "the netdsl program is not installed (pip install -e .)"
    proc = subprocess.run([exe, "summary", LENET], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Total params: 44,426" in proc.stdout
    proc = subprocess.run([exe, "check", "-"], input="conv 6x5\ndense 10\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "<stdin>:2:1: error[E201]" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "netdsl", "check", LENET], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ok" in proc.stdout


def test_defines_twice_and_stdin_twice_are_usage_errors(capsys):
    assert main(["check", "-D", "w=8", "-D", "w=9", LENET]) == 2
    assert "more than once" in capsys.readouterr().err
    assert main(["check", "-", "-"]) == 2
    assert "only once" in capsys.readouterr().err


def test_a_broken_pipe_keeps_the_verdict(tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("conv 6x5; dense 10\n")
    script = f"import sys; from netdsl.cli import main; sys.exit(main(['check', {LENET!r}] * 3000 + [{str(bad)!r}]))"
    proc = subprocess.run(
        f"{sys.executable} -c {script!r} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        executable="/bin/bash",
    )
    assert proc.stdout.startswith(LENET)
    rc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -c {script!r} 2>/dev/null | head -1 >/dev/null"],
        timeout=120,
    ).returncode
    assert rc == 1  # the bad file is still reported by the exit status


def test_ascii_console_does_not_crash():
    proc = subprocess.run(
        [sys.executable, "-m", "netdsl", "check", LENET],
        capture_output=True,
        env={**__import__("os").environ, "PYTHONIOENCODING": "ascii"},
        timeout=60,
    )
    assert proc.returncode == 0 and b"ok" in proc.stdout


def test_tens_of_thousands_of_flags_are_refused_at_once(tmp_path, capsys):
    """argparse is quadratic in options: 20,000 -D flags took 22 s before they were counted first."""
    import time

    spec = tmp_path / "s.net"
    spec.write_text("flatten; dense 10\n")
    argv = ["check", str(spec)]
    for i in range(20_000):
        argv += ["-D", f"p{i}=1"]
    t0 = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - t0 < 2
    assert "more than 2,000 options" in capsys.readouterr().err


def test_cli_says_it_stopped_after_the_limit_of_errors(tmp_path, capsys):
    spec = tmp_path / "many.net"
    spec.write_text("input 28x28x1\n" + "frob\n" * 30)
    assert main(["check", str(spec)]) == 1
    assert capsys.readouterr().err.rstrip("\n").endswith(f"{spec}: stopped after 20 errors (there may be more)")

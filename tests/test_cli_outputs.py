"""The command line as a new user meets it, and where it writes: defaults, usage errors with
"did you mean", and outputs that are full, closed, devices, directories, links or the spec.

The output tests run the installed program in real subprocesses against real /dev/full,
closed descriptors, FIFOs and links.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ROOT

from netdsl.cli import main
from netdsl.files import write_atomic, write_output

LENET = str(ROOT / "examples" / "lenet5.net")
HAS_FULL = os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)
needs_full = pytest.mark.skipif(not HAS_FULL, reason="no /dev/full here")


def netdsl(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, cwd=None, pass_fds=(), shell_redirect=""):
    """Run `python -m netdsl ARGV` (with this worktree first on the path); shell_redirect: extra redirections."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if shell_redirect:  # closed descriptors need a shell: `<&-`, `>&-`
        cmd = " ".join([sys.executable, "-m", "netdsl", *(f"'{a}'" for a in argv)]) + " " + shell_redirect
        return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    return subprocess.run(
        [sys.executable, "-m", "netdsl", *argv],
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def assert_still_full():
    st = os.stat("/dev/full")
    assert stat.S_ISCHR(st.st_mode), "/dev/full was replaced by a regular file"


# ---- the first hour ---------------------------------------------------------------------------


def test_bare_netdsl_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: netdsl") and all(c in out for c in ("check", "summary", "compile", "plot", "train"))


@pytest.mark.parametrize(
    "argv, usage, hint",
    [
        (["chek", LENET], "usage: netdsl [", "did you mean `check`?"),
        (["sumary", LENET], "usage: netdsl [", "did you mean `summary`?"),
        (["lenet5.net"], "usage: netdsl [", "the command comes first: `netdsl check lenet5.net`"),
        (["summary", LENET, "--josn"], "usage: netdsl summary", "--josn: did you mean `--json`?"),
        (["plot", LENET, "--rankdri", "LR"], "usage: netdsl plot", "did you mean `--rankdir`?"),
        (["compile", LENET, "-b", "pytorh"], "usage: netdsl compile", "did you mean `pytorch`?"),
        (["check", "-", "-"], "usage: netdsl check", "standard input (-) can be read only once"),
        (["check", "-D", "a=1", "-D", "a=2", LENET], "usage: netdsl check", "-D a is given more than once"),
        (["plot", LENET, "-o", "x.gif"], "usage: netdsl plot", "cannot tell the format"),
        (["plot", "-"], "usage: netdsl plot", "needs -o OUT"),
    ],
)
def test_usage_errors_name_the_subcommand_and_suggest(capsys, argv, usage, hint):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err
    assert hint in err and "Traceback" not in err


def test_compile_help_lists_the_backend_aliases(capsys):
    assert main(["compile", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "pytorch" in out and "tf," in out and "default: torch" in out


def test_compile_defaults_to_torch(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    assert main(["compile", LENET]) == 0
    assert capsys.readouterr().err.startswith("wrote lenet5_torch.py ")
    assert "nn.Module" in (tmp_path / "lenet5_torch.py").read_text()


def test_plot_default_output_in_the_current_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", LENET]) == 0
    assert capsys.readouterr().err == "wrote lenet5.svg\n"
    assert main(["plot", LENET, "-T", "dot"]) == 0  # the default name follows -T
    assert capsys.readouterr().err == "wrote lenet5.dot\n"
    assert (tmp_path / "lenet5.svg").read_bytes().startswith(b"<?xml")
    assert (tmp_path / "lenet5.dot").read_text().startswith("digraph netdsl")
    assert main(["plot", LENET, "-o", "x.out", "-T", "dot"]) == 0
    assert (tmp_path / "x.out").read_text().startswith("digraph netdsl")
    assert capsys.readouterr().err == "wrote x.out\n"


# ---- outputs that cannot or must not be written ----------------------------------------------


@needs_full
@pytest.mark.parametrize(
    "argv",
    [
        ["summary", LENET],
        ["summary", LENET, "--json"],
        ["check", LENET],
        ["plot", LENET, "-o", "-"],
        ["compile", LENET, "-b", "torch", "-o", "-"],
        ["devices"],
        ["--help"],
        ["--version"],
        ["check", "--help"],
        [],
    ],
)
def test_stdout_on_a_full_disk(argv):
    with open("/dev/full", "w") as full:
        proc = netdsl(*argv, stdout=full)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == "netdsl: error: cannot write to standard output: No space left on device"


@needs_full
@pytest.mark.parametrize(
    "argv",
    [
        ["compile", LENET, "-b", "torch", "-o", "/dev/full"],
        ["compile", LENET, "-b", "keras", "-o", "/dev/full"],
        ["plot", LENET, "-o", "/dev/full", "-T", "svg"],
        ["plot", LENET, "-o", "/dev/full", "-T", "dot"],
    ],
)
def test_output_to_dev_full(argv, tmp_path):
    pytest.importorskip("tensorflow" if "keras" in argv else "torch")
    proc = netdsl(*argv, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "netdsl: error: cannot write /dev/full: No space left on device" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_still_full()
    assert not list(tmp_path.iterdir())


def test_closed_stdin_and_stdout():
    proc = netdsl("check", "-", shell_redirect="<&-")
    assert proc.returncode == 1 and "error[E005]: cannot read `<stdin>`: standard input is closed" in proc.stderr
    for argv in (["summary", LENET], ["devices"], ["export", LENET, "-o", "-"]):
        proc = netdsl(*argv, shell_redirect=">&-")
        assert proc.returncode == 1 and "cannot write to standard output: it is closed" in proc.stderr, argv
        assert "Traceback" not in proc.stderr


def test_broken_pipe_keeps_the_verdict():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = f"'{sys.executable}' -m netdsl summary '{ROOT / 'examples' / 'resnet.net'}' | head -c 10; exit ${{PIPESTATUS:-0}}"
    proc = subprocess.run(
        ["bash", "-c", cmd.replace("exit ${PIPESTATUS:-0}", "exit ${PIPESTATUS[0]}")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout == 'Model: "re' and proc.stderr == ""


def test_output_is_a_directory(tmp_path, capsys):
    pytest.importorskip("torch")
    d = tmp_path / "out.py"
    d.mkdir()
    assert main(["compile", LENET, "-o", str(d)]) == 1
    assert f"cannot write {d}: it is a directory" in capsys.readouterr().err
    svg = tmp_path / "out.svg"
    svg.mkdir()
    assert main(["plot", LENET, "-o", str(svg)]) == 1
    assert "it is a directory" in capsys.readouterr().err
    assert d.is_dir() and not list(d.iterdir()) and svg.is_dir() and not list(svg.iterdir())


@pytest.mark.parametrize("command", ["compile", "plot", "export"])
def test_output_never_replaces_the_spec_through_links(tmp_path, capsys, command):
    pytest.importorskip("onnx" if command == "export" else "torch")
    spec = tmp_path / "net.net"
    spec.write_text(Path(LENET).read_text())
    before = spec.read_bytes()
    suffix = {"plot": ".svg", "compile": ".py", "export": ".onnx"}[command]
    soft = tmp_path / ("soft" + suffix)
    soft.symlink_to(spec)
    hard = tmp_path / ("hard" + suffix)
    os.link(spec, hard)
    for out in (soft, hard):
        assert main([command, str(spec), "-o", str(out)]) == 1
        assert "refusing to overwrite the spec" in capsys.readouterr().err
    assert main([command, str(soft), "-o", str(hard)]) == 1  # the spec named through a link too
    assert "refusing to overwrite the spec" in capsys.readouterr().err
    assert spec.read_bytes() == before and soft.is_symlink()


def test_output_through_a_link_writes_its_target(tmp_path, capsys):
    pytest.importorskip("torch")
    target = tmp_path / "real.py"
    target.write_text("old")
    link = tmp_path / "link.py"
    link.symlink_to(target)
    assert main(["compile", LENET, "-o", str(link)]) == 0
    assert link.is_symlink() and "nn.Module" in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.py", "real.py"]


def test_unwritable_output(tmp_path, capsys):
    pytest.importorskip("torch")
    assert main(["compile", LENET, "-o", "/proc/netdsl-test.py"]) == 1  # not even root writes here
    assert "cannot write /proc/netdsl-test.py" in capsys.readouterr().err
    assert main(["plot", LENET, "-o", str(tmp_path / "missing" / "x.svg")]) == 1
    assert "No such file or directory" in capsys.readouterr().err


def test_compile_to_dev_stdout_writes_through_the_descriptor(tmp_path):
    """`-o /dev/stdout` while stdout is an appended-to file: appended, not replaced by a rename."""
    pytest.importorskip("torch")
    log = tmp_path / "log.txt"
    log.write_text("kept\n")
    with open(log, "a") as f:
        proc = netdsl("compile", LENET, "-o", "/dev/stdout", stdout=f)
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert text.startswith("kept\n# A PyTorch model generated by netdsl")


# ---- the helpers themselves --------------------------------------------------------------------


def test_write_atomic_refuses_special_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        write_atomic(fifo, b"x")  # refused at once: no temporary file, no rename, no hang
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]
    if HAS_FULL:
        with pytest.raises(OSError, match="not a regular file"):
            write_atomic("/dev/full", b"x")
        assert_still_full()


def test_write_output_writes_a_fifo_directly(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []

    def read():
        with open(fifo, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read)
    reader.start()
    write_output(fifo, b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


@needs_full
def test_write_output_to_dev_full_fails_cleanly():
    with pytest.raises(OSError) as info:
        write_output("/dev/full", b"x" * 100_000)
    assert info.value.errno == 28
    assert_still_full()


@pytest.mark.parametrize("fmt", ["svg", "png", "pdf", "dot"])
def test_default_output_replaces_only_what_netdsl_wrote(tmp_path, capsys, monkeypatch, fmt):
    if fmt != "dot" and not shutil.which("dot"):
        pytest.skip("Graphviz's dot is not installed")
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / f"lenet5.{fmt}"
    mine.write_bytes(b"%PDF-1.4 my own paper\n" if fmt == "pdf" else b"my own file\n")
    assert main(["plot", LENET, "-T", fmt]) == 1
    err = capsys.readouterr().err
    assert f"refusing to overwrite lenet5.{fmt}, which netdsl did not write; -o lenet5.{fmt} replaces it" in err
    assert mine.read_bytes().endswith(b"my own file\n") or b"my own paper" in mine.read_bytes()
    mine.unlink()
    for _ in range(2):  # netdsl's own drawing is replaced by the next run
        assert main(["plot", LENET, "-T", fmt]) == 0
        assert capsys.readouterr().err == f"wrote lenet5.{fmt}\n"
    assert main(["plot", LENET, "-o", str(mine)]) == 0  # -o replaces anything


def test_default_compile_output_replaces_only_generated_code(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "lenet5_torch.py"
    mine.write_text("# my hand-written model\n")
    assert main(["compile", LENET]) == 1
    assert "refusing to overwrite lenet5_torch.py" in capsys.readouterr().err
    assert mine.read_text() == "# my hand-written model\n"
    mine.unlink()
    assert main(["compile", LENET]) == 0 and main(["compile", LENET]) == 0
    mine.write_text("# my hand-written model\n")
    assert main(["compile", LENET, "-o", "lenet5_torch.py"]) == 0  # -o: the user's call
    assert "nn.Module" in mine.read_text()


@pytest.mark.parametrize(
    "argv", [["compile", LENET], ["plot", LENET, "-T", "dot"], ["export", LENET], ["export", LENET, "--seed", "3"]]
)
def test_a_fifo_whose_reader_leaves_early_is_not_an_error(tmp_path, argv):
    """As with `-o - | head`: the reader's choice, exit 0, no "Broken pipe" (export included)."""
    pytest.importorskip("onnx" if argv[0] == "export" else "torch")
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = f"head -c 10 '{fifo}' >/dev/null & '{sys.executable}' -m netdsl {' '.join(argv)} -o '{fifo}'; s=$?; wait; exit $s"
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)

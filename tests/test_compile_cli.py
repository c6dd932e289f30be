"""`netdsl compile` and `netdsl devices` through main([...])."""

from __future__ import annotations

import pytest
from conftest import ROOT, ruff_check

from netdsl.cli import main

LENET = ROOT / "examples" / "lenet5.net"


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_compile_default_output_in_the_current_directory(tmp_path, capsys, monkeypatch, backend):
    pytest.importorskip("torch" if backend == "torch" else "tensorflow")
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / "lenet5.net"
    spec.write_text(LENET.read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["compile", str(spec), "--backend", backend]) == 0
    assert capsys.readouterr().err.startswith(f"wrote lenet5_{backend}.py ")  # says where it wrote
    assert [p.name for p in (tmp_path / "specs").iterdir()] == ["lenet5.net"]  # nothing beside the spec
    out = tmp_path / f"lenet5_{backend}.py"
    code = out.read_text()
    assert "def build_model" in code
    assert "import netdsl" not in code and "from netdsl" not in code
    assert "44,426" in code  # the summary rides along as a comment
    ruff_check([out])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_compile_to_stdout_and_to_a_path(tmp_path, capsys):
    pytest.importorskip("torch")
    assert main(["compile", str(LENET), "-b", "torch", "-o", "-"]) == 0
    out, _ = capsys.readouterr()
    assert "class " in out and "nn.Module" in out and "def build_model" in out
    target = tmp_path / "m.py"
    assert main(["compile", str(LENET), "--backend", "pytorch", "-o", str(target)]) == 0
    assert target.read_text() == out


def test_compile_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compile", str(LENET), "--backend", "jax"]) == 2
    bad = tmp_path / "bad.net"
    bad.write_text("conv 6x5; dense 10\n")
    assert main(["compile", str(bad), "--backend", "torch"]) == 1
    assert "error[E201]" in capsys.readouterr().err
    pytest.importorskip("torch")
    assert main(["compile", str(LENET), "-b", "torch", "-o", str(tmp_path / "no" / "dir" / "x.py")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_devices(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("torch: ") and "keras: " in out


def test_compile_never_overwrites_the_spec(tmp_path, capsys):
    pytest.importorskip("torch")
    spec = tmp_path / "m.net"
    spec.write_text(LENET.read_text())
    assert main(["compile", str(spec), "-b", "torch", "-o", str(spec)]) == 1
    assert "refusing to overwrite the spec" in capsys.readouterr().err
    assert spec.read_text() == LENET.read_text()

"""`netdsl compile` needs no framework, and what it writes runs as a script.

Generation is text (netdsl/backends/torch_source.py, keras_program.py): it must work in an
environment holding only the base install (lark, networkx), and give there the very file it
gives with both frameworks installed.  The generated files are run as `python gen.py` with
the frameworks: their __main__ block builds the model, prints it and runs one batch, quietly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import ROOT

import netdsl
from netdsl.backends import torch_program, torch_source

LENET = ROOT / "examples" / "lenet5.net"


def _torch_shape(shape: tuple) -> tuple:
    """(None, H, W, C) -> (2, C, H, W); (None, F) -> (2, F): the generated torch model's batch of 2."""
    s = shape[1:]
    return (2, s[2], s[0], s[1]) if len(s) == 3 else (2, *s)


def _run_scripts(paths: list[Path], cwd: Path) -> list[subprocess.CompletedProcess]:
    # no netdsl on the path (the file must not need it), and no log level set by the caller:
    # the keras file sets its own
    drop = ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(OMP_NUM_THREADS="1", KERAS_HOME=str(cwd / "keras_home"))
    procs = [
        subprocess.Popen([sys.executable, str(p)], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for p in paths
    ]
    out = []
    for p, path in zip(procs, paths, strict=True):
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(path, p.returncode, stdout.decode(), stderr.decode()))
    return out


@pytest.mark.slow
def test_generated_torch_files_run_as_scripts(tmp_path):
    pytest.importorskip("torch")
    names = ["lenet5", "mlp", "resnet", "inception", "unet"]
    nets = [netdsl.load(ROOT / "examples" / f"{n}.net") for n in names]
    paths = []
    for name, net in zip(names, nets, strict=True):
        paths.append(tmp_path / f"{name}_torch.py")
        paths[-1].write_text(net.generate("torch"))
    for net, proc in zip(nets, _run_scripts(paths, tmp_path), strict=True):
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", proc.stderr
        lines = proc.stdout.splitlines()
        in_shape = _torch_shape(net.input_shape)
        assert lines[-1] == f"input {in_shape} -> output {_torch_shape(net.output_shape)}", proc.stdout
        assert lines[0] == f"{torch_source._class_name(net.name)}(", proc.stdout  # print(model)


@pytest.mark.slow
def test_generated_keras_files_run_as_scripts_quietly(tmp_path):
    pytest.importorskip("tensorflow")
    names = ["lenet5", "unet"]
    nets = [netdsl.load(ROOT / "examples" / f"{n}.net") for n in names]
    paths = []
    for name, net in zip(names, nets, strict=True):
        paths.append(tmp_path / f"{name}_keras.py")
        paths[-1].write_text(net.generate("keras"))
    for net, proc in zip(nets, _run_scripts(paths, tmp_path), strict=True):
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", proc.stderr  # no oneDNN / CUDA / absl start-up notes
        lines = proc.stdout.splitlines()
        assert lines[-1] == f"input {(2, *net.input_shape[1:])} -> output {(2, *net.output_shape[1:])}"
        assert f"Total params: {net.total_params:,}" in proc.stdout  # model.summary()


def test_reserved_names_cover_this_torch():
    """The generator's snapshot of nn.Module's attribute names (it runs without torch) must hold
    every name this torch has, or a node named after a new one would clash in generated code."""
    pytest.importorskip("torch")
    from torch import nn

    from netdsl.backends import torch as tb

    missing = (set(dir(nn.Module())) | set(dir(tb.NetdslModule))) - torch_program.RESERVED
    assert not missing, f"add to torch_program.RESERVED: {sorted(missing)}"


def _base_only_python(tmp_path: Path) -> Path:
    """A fresh venv whose only packages are lark, networkx (and lark's interegular) and netdsl."""
    import lark
    import networkx

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    deps = tmp_path / "deps"
    deps.mkdir()
    for mod in (lark, networkx):
        (deps / mod.__name__).symlink_to(Path(mod.__file__).parent)
    try:
        import interegular

        (deps / "interegular").symlink_to(Path(interegular.__file__).parent)
    except ImportError:
        pass
    (site / "_netdsl_test.pth").write_text(f"{deps}\n{ROOT}\n")
    return py


@pytest.mark.slow
def test_compile_in_an_environment_with_only_the_base_install(tmp_path):
    py = _base_only_python(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["NETDSL_CACHE_DIR"] = str(tmp_path / "cache")
    work = tmp_path / "work"
    work.mkdir()

    def run(*args):
        return subprocess.run([py, *args], capture_output=True, text=True, cwd=work, env=env, timeout=120)

    for mod in ("numpy", "torch", "tensorflow", "keras"):  # the environment is what it claims
        assert run("-c", f"import {mod}").returncode == 1, mod
    assert run("-c", "import lark, networkx, netdsl").returncode == 0
    for backend in ("torch", "keras"):
        proc = run("-m", "netdsl", "compile", str(LENET), "-b", backend, "-o", "-")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == netdsl.load(LENET).generate(backend)  # the file the full install writes
        assert proc.stderr == ""
    proc = run("-m", "netdsl", "compile", str(ROOT / "examples" / "inception.net"))
    assert proc.returncode == 0 and proc.stderr.startswith("wrote inception_torch.py "), proc.stderr
    assert (work / "inception_torch.py").read_text() == netdsl.load(ROOT / "examples" / "inception.net").generate(
        "torch"
    )
    # what needs a framework still says so, located and with the advice
    proc = run("-m", "netdsl", "train", str(LENET), "--epochs", "1", "-q")
    assert proc.returncode == 1 and "E402" in proc.stderr and "pip install" in proc.stderr, proc.stderr

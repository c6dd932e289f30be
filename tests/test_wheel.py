"""A non-editable wheel, installed into a fresh virtualenv, works from any directory.

Offline: the wheel is built without build isolation (hatchling comes with the test
extra), and the fresh venv sees lark and networkx through a .pth file pointing at
this environment's copies, so nothing is downloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import lark
import networkx
import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def sh(*cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_wheel_installs_and_runs_anywhere(tmp_path):
    dist = tmp_path / "dist"
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, ROOT)
    (wheel,) = dist.glob("netdsl-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert "netdsl/grammars/netdsl.lark" in names
        assert z.read("netdsl/grammars/netdsl.lark") == (ROOT / "grammars" / "netdsl.lark").read_bytes()
        assert not any(n.startswith(("tests/", "examples/")) for n in names)
        meta = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
        assert any(r.startswith("lark[interegular]") for r in requires), requires
        assert any(r.startswith("networkx") for r in requires), requires
        assert not any(r.startswith(("torch", "tensorflow")) and "extra ==" not in r for r in requires), requires
        entry = next(z.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "netdsl = netdsl.cli:main" in entry

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    sh(py, "-m", "pip", "install", "--no-deps", "--no-index", wheel)
    site = Path(sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    deps = {Path(lark.__file__).parent.parent, Path(networkx.__file__).parent.parent}
    pygments = pytest.importorskip("pygments")
    deps.add(Path(pygments.__file__).parent.parent)
    (site / "_netdsl_test_deps.pth").write_text("\n".join(map(str, deps)) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["NETDSL_CACHE_DIR"] = str(tmp_path / "cache")  # build the grammar from the wheel's copy
    where = sh(
        py,
        "-c",
        "import netdsl, netdsl.parser as p; print(netdsl.__file__); print(p.grammar_path())",
        cwd=elsewhere,
        env=env,
    ).stdout.split()
    assert all(w.startswith(str(site)) for w in where), where

    lenet = ROOT / "examples" / "lenet5.net"
    out = sh(env_dir / "bin" / "netdsl", "summary", lenet, cwd=elsewhere, env=env).stdout
    assert "Total params: 44,426" in out
    out = sh(env_dir / "bin" / "netdsl", "check", lenet, cwd=elsewhere, env=env).stdout
    assert "ok" in out
    assert list((tmp_path / "cache").glob("grammar-*.lark")), "the grammar cache was not written"

    # the Pygments lexer is found through the wheel's entry point, by name and by file name
    probe = (
        "import sys, pathlib\n"
        "from pygments.lexers import get_lexer_by_name, get_lexer_for_filename\n"
        "lexer = get_lexer_by_name('netdsl')\n"
        "assert type(get_lexer_by_name('net')) is type(lexer) is type(get_lexer_for_filename('a.net'))\n"
        "bad = [v for p in sys.argv[1:] for t, v in lexer.get_tokens(pathlib.Path(p).read_text()) if 'Error' in str(t)]\n"
        "print(type(lexer).__module__, len(sys.argv) - 1, bad)\n"
    )
    examples = sorted((ROOT / "examples").glob("*.net"))
    out = sh(py, "-c", probe, *examples, cwd=elsewhere, env=env).stdout.strip().split(maxsplit=2)
    assert out == ["netdsl.highlight", str(len(examples)), "[]"], out

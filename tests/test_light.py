"""check, summary and netdsl.load must never import a framework.

Two checks, so the test can fail whether or not the frameworks are installed:
`sys.modules` after the work, and stub `torch`/`tensorflow`/`keras`/`jax` packages
put first on the path that leave a mark when anything imports them.
"""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

HEAVY = ("torch", "tensorflow", "keras", "jax")

PROBE = """
import sys
{body}
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print(','.join(heavy))
"""


def probe(body: str, tmp_path, heavy: tuple = HEAVY) -> str:
    stubs = tmp_path / "stubs"
    marks = tmp_path / "marks"
    marks.mkdir()
    for name in heavy:
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(
            f"open({str(marks / name)!r}, 'w').close()\nraise ImportError('netdsl imported {name}')\n"
        )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stubs), str(ROOT)])}
    code = PROBE.format(body=body, heavy=heavy)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not list(marks.iterdir()), f"imported: {[p.name for p in marks.iterdir()]}"
    return proc.stdout.strip()


def test_load_and_summary_import_no_framework(tmp_path):
    body = (
        "import netdsl\n"
        "from pathlib import Path\n"
        "for p in sorted(Path('examples').glob('*.net')):\n"
        "    net = netdsl.load(p); net.summary(); net.to_json()\n"
        "netdsl.parse('conv 6x5 relu; flatten; dense 10')\n"
    )
    assert probe(body, tmp_path) == ""


def test_cli_check_and_summary_import_no_framework(tmp_path):
    body = (
        "from netdsl.cli import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['check', 'examples/lenet5.net']) == 0\n"
        "    assert main(['summary', 'examples/resnet.net']) == 0\n"
        "    assert main(['summary', '--json', 'examples/unet.net']) == 0\n"
    )
    assert probe(body, tmp_path) == ""


def test_the_probe_can_fail(tmp_path):
    import pytest

    with pytest.raises(AssertionError):
        probe("try:\n    import torch\nexcept ImportError:\n    pass\n", tmp_path)


def test_export_imports_no_framework(tmp_path):
    import pytest

    pytest.importorskip("onnx")
    out = tmp_path / "x.onnx"
    body = (
        "from netdsl.cli import main\n"
        "import netdsl\n"
        f"assert main(['export', 'examples/resnet.net', '-o', {str(out)!r}]) == 0\n"
        f"assert main(['export', 'examples/unet.net', '--layout', 'nhwc', '-o', {str(out)!r}]) == 0\n"
        "netdsl.load('examples/inception.net').to_onnx()\n"
        "assert 'onnx' in sys.modules\n"
    )
    assert probe(body, tmp_path) == ""
    assert out.stat().st_size > 1000


def test_compile_imports_no_framework_and_no_numpy(tmp_path):
    """Generating code is text: torch and keras source alike, with numpy stubbed out too."""
    out = tmp_path / "gen"
    out.mkdir()
    body = (
        "from netdsl.cli import main\n"
        "import contextlib, io, netdsl\n"
        "with contextlib.redirect_stdout(io.StringIO()) as f:\n"
        "    for b in ('torch', 'keras', 'pytorch', 'tf'):\n"
        "        for p in ('examples/lenet5.net', 'examples/inception.net', 'examples/unet.net'):\n"
        "            assert main(['compile', p, '-b', b, '-o', '-']) == 0\n"
        f"    assert main(['compile', 'examples/resnet.net', '-o', {str(out / 'r.py')!r}]) == 0\n"
        "assert 'class Lenet5(nn.Module)' in f.getvalue() and 'def build_model' in f.getvalue()\n"
        "netdsl.load('examples/vgg_small.net').generate('keras')\n"
    )
    assert probe(body, tmp_path, (*HEAVY, "numpy")) == ""
    assert "class Resnet(nn.Module)" in (out / "r.py").read_text()


def test_fmt_and_the_language_server_import_no_framework(tmp_path):
    """`netdsl fmt`, the language server's analysis and its pygls wiring, the notebook display."""
    body = (
        "from netdsl.cli import main\n"
        "import contextlib, glob, io\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        "    main(['fmt', '--check', *sorted(glob.glob('examples/*.net'))])\n"
        "from netdsl.lsp.analysis import analyze, hover, inlay_hints, symbols\n"
        "from netdsl.lsp.complete import completions\n"
        "a = analyze(open('examples/resnet.net').read())\n"
        "assert a.ok and hover(a, 14, 1) and inlay_hints(a) and completions(a, a, 15, 1) and symbols(a)\n"
        "try:\n"
        "    import netdsl.lsp.server\n"
        "except ImportError as e:\n"
        "    assert 'pygls' in str(e) or 'lsprotocol' in str(e), e\n"
        "import netdsl\n"
        "netdsl.load('examples/lenet5.net')._repr_mimebundle_()\n"
    )
    assert probe(body, tmp_path) == ""


def test_only_backends_import_a_framework_at_module_level():
    """A framework module lives under netdsl/backends/ (imported only when a model is built or
    read); anywhere else torch/tensorflow/keras are imported inside the function that needs them."""
    import ast

    frameworks = {"torch", "tensorflow", "keras"}
    bad = []
    for path in sorted((ROOT / "netdsl").rglob("*.py")):
        if "backends" in path.relative_to(ROOT / "netdsl").parts:
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(n.split(".")[0] in frameworks for n in names):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, bad

"""check, summary and netdsl.load must never import a framework."""

from __future__ import annotations

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


def probe(body: str) -> str:
    code = PROBE.format(body=body, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_load_and_summary_import_no_framework():
    body = (
        "import netdsl\n"
        "from pathlib import Path\n"
        "for p in sorted(Path('examples').glob('*.net')):\n"
        "    net = netdsl.load(p); net.summary(); net.to_json()\n"
        "netdsl.parse('conv 6x5 relu; flatten; dense 10')\n"
    )
    assert probe(body) == ""


def test_cli_check_and_summary_import_no_framework():
    body = (
        "from netdsl.cli import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['check', 'examples/lenet5.net']) == 0\n"
        "    assert main(['summary', 'examples/resnet.net']) == 0\n"
        "    assert main(['summary', '--json', 'examples/unet.net']) == 0\n"
    )
    assert probe(body) == ""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI explores the same examples every run (a red CI is then a real regression, never a
# new random draw); a developer's runs keep drawing new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.net"))


# The tiny spec the trainer's tests train (LeNet-like, two quick epochs at lr 0.01) and its fixture.
TINY = "conv 4x5 relu\nmaxpool 4\nflatten\ndense 10 softmax\ntrain adam lr=0.01 epochs=2 batch=50\n"


@pytest.fixture
def tiny(tmp_path):
    """TINY written to tmp_path/tiny.net."""
    path = tmp_path / "tiny.net"
    path.write_text(TINY)
    return path


def cli_env(**extra) -> dict:
    """The environment of a `python -m netdsl` subprocess: this checkout on the path, nothing
    inherited that steers netdsl (NETDSL_*), threads (OMP_*) or a distributed launch (torchrun's
    RANK..., TF_CONFIG), and no MNIST download; ``extra`` is added last."""
    launch = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "TF_CONFIG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NETDSL_", "OMP_")) and k not in launch}
    return {**env, "PYTHONPATH": str(ROOT), "NETDSL_MNIST_MIRROR": "none", **extra}


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the golden files under tests/golden/ from the current output (review the diff!)",
    )


def ruff_check(paths, *, project_config: bool = False) -> None:
    """Generated source must pass `ruff check` with the default rules (and the project's, if asked)."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    configs = [["--isolated"]] + ([["--config", str(ROOT / "pyproject.toml")]] if project_config else [])
    for flags in configs:
        cmd = [ruff, "check", "--quiet", "--no-cache", *flags, *map(str, paths)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def golden(request):
    """``golden(name, text)``: compare ``text`` with tests/golden/NAME, or rewrite it with --update-golden."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = ROOT / "tests" / "golden" / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        assert path.exists(), f"no golden file {path}; run pytest --update-golden and review it"
        assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file (pytest --update-golden)"

    return check

"""Benchmark: cold `netdsl import` of the resnet example's torch module (issue 11).

Target: importing the module `netdsl compile examples/resnet.net` writes, as a cold process
(`netdsl import resnet_torch.py:Resnet --input 28x28x1`: trace, shapes, spec, check, weights
file, summary), in <= 2 s on the development machine, most of it torch's own import.
`python -c "import torch"` is measured in the same run for reference.

Runs are interleaved (baseline, import, baseline, ...) so machine noise hits both; medians
are reported.  Usage: python bench/bench_import.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(cmd: list[str], cwd: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stderr.decode()}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "resnet_torch.py"
        subprocess.run([py, "-m", "netdsl", "compile", str(ROOT / "examples" / "resnet.net"), "-o", str(src)],
                       check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        base_cmd = [py, "-c", "import torch"]
        imp_cmd = [py, "-m", "netdsl", "import", f"{src}:Resnet", "--input", "28x28x1", "-o", "resnet.net"]
        wall(imp_cmd, d)  # warm the file cache once
        base, imp = [], []
        for _ in range(args.runs):
            base.append(wall(base_cmd, d))
            imp.append(wall(imp_cmd, d))
        lines = (Path(d) / "resnet.net").read_text().count("\n")
    print(f"python -c 'import torch'          median {statistics.median(base):.2f} s  (min {min(base):.2f})")
    print(f"netdsl import resnet_torch.py:Resnet median {statistics.median(imp):.2f} s  (min {min(imp):.2f})")
    print(
        f"  -> a {lines}-line spec and its weights; target <= 2 s: {'ok' if statistics.median(imp) <= 2 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()

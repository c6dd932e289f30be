"""Benchmark: cold `netdsl check` against the bare import of its two dependencies.

Targets (issue 2):
  * `netdsl check examples/lenet5.net` as a cold process <= 1.3x `python -c "import lark, networkx"`,
    measured in the same run, and <= 60 MiB peak memory;
  * a 10,000-layer program checks in <= 1.5 s as a whole process, growing linearly
    (1,000 vs 10,000 layers).
Issue 8: `netdsl compile examples/lenet5.net -o -` (torch and keras source) as a cold process
about as fast as `netdsl check`: generating code is text and imports no framework and no numpy.

Runs are interleaved (baseline, netdsl, baseline, ...) so machine noise hits both;
the figure reported is the ratio of medians.  Usage: python bench/bench_check.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


KERAS_LENET = """
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
L = tf.keras.layers
m = tf.keras.Sequential([tf.keras.Input((28, 28, 1)), L.Conv2D(6, 5, activation="sigmoid"), L.MaxPool2D(2, 2),
    L.Conv2D(16, 5, activation="sigmoid"), L.MaxPool2D(2, 2), L.Flatten(), L.Dense(120, activation="sigmoid"),
    L.Dense(84, activation="sigmoid"), L.Dense(10, activation="softmax")])
m.summary()
"""


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one cold process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stderr.decode()}")
    # ru_maxrss of children is the max over all children so far: measure in a wrapper instead
    del before
    return wall, 0.0


def peak_mib(cmd: list[str]) -> float:
    """Peak RSS of one process, measured in a fresh wrapper so earlier children do not count."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, cwd=ROOT)
    return int(out.stdout.strip()) / 1024


def program(n_layers: int) -> str:
    """A valid n-layer program: conv/batchnorm/relu blocks on a small map, then a head."""
    lines = ["input 8x8x4"]
    body = ["conv 4x3 same", "batchnorm", "relu"]
    while len(lines) - 1 < n_layers - 3:
        lines.append(body[(len(lines) - 1) % 3])
    lines += ["gap", "dense 10 softmax"]
    return "\n".join(lines[: n_layers + 1]) + "\n"


def median_time(cmd: list[str], runs: int) -> float:
    return statistics.median(run(cmd)[0] for _ in range(runs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--keras-python", help="a python with tensorflow, to time Keras printing the same summary")
    args = ap.parse_args()
    exe = [sys.executable, "-m", "netdsl"]
    base_cmd = [sys.executable, "-c", "import lark, networkx"]
    check_cmd = [*exe, "check", "-q", "examples/lenet5.net"]
    # Byte-compile netdsl as `pip install` does for a user (this machine sets
    # PYTHONDONTWRITEBYTECODE, so an editable checkout would otherwise be compiled
    # from source on every run, while lark and networkx were compiled at install).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "netdsl")], check=True)
    run(check_cmd)  # warm the grammar cache and the OS file cache
    compile_cmds = {b: [*exe, "compile", "examples/lenet5.net", "-b", b, "-o", "-"] for b in ("torch", "keras")}
    base, check = [], []
    compiled: dict[str, list[float]] = {b: [] for b in compile_cmds}
    for _ in range(args.runs):
        base.append(run(base_cmd)[0])
        check.append(run(check_cmd)[0])
        for b, cmd in compile_cmds.items():
            compiled[b].append(run(cmd)[0])
    b, c = statistics.median(base), statistics.median(check)
    print(f"python -c 'import lark, networkx'   median {b * 1000:7.1f} ms  ({args.runs} runs)")
    print(f"netdsl check examples/lenet5.net     median {c * 1000:7.1f} ms  ratio {c / b:.2f}x  (target <= 1.30x)")
    for name, times in compiled.items():
        t = statistics.median(times)
        print(
            f"netdsl compile -b {name:<5} -o -        median {t * 1000:7.1f} ms  {t / c:.2f}x check (target: about 1x)"
        )
    probe = "import sys, runpy; sys.argv = ['netdsl', 'compile', 'examples/lenet5.net', '-b', 'keras', '-o', '-']\n"
    probe += "import contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n"
    probe += "    from netdsl.cli import main; main(sys.argv[1:])\n"
    probe += "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'torch', 'tensorflow', 'keras'}))"
    heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    print(f"compile imported: {heavy} (expected: [])")
    print(
        f"peak memory: netdsl check {peak_mib(check_cmd):.1f} MiB (target <= 60), "
        f"bare import {peak_mib(base_cmd):.1f} MiB"
    )

    if args.keras_python:
        keras_cmd = [args.keras_python, "-c", KERAS_LENET]
        k = median_time(keras_cmd, 3)
        print(
            f"keras: import tensorflow + build LeNet-5 + summary  median {k:.2f} s, "
            f"peak {peak_mib(keras_cmd):.0f} MiB ({k / c:.0f}x netdsl check)"
        )

    with tempfile.TemporaryDirectory() as tmp:
        times = {}
        for n in (1_000, 5_000, 10_000):
            path = os.path.join(tmp, f"deep{n}.net")
            Path(path).write_text(program(n))
            run([*exe, "check", "-q", path])
            times[n] = median_time([*exe, "check", "-q", path], max(5, args.runs // 3))
        for n, t in times.items():
            print(f"check {n:>6,} layers  {t:.2f} s" + ("  (target <= 1.5 s)" if n == 10_000 else ""))
        a = (times[5_000] - times[1_000]) / 4_000 * 1e6
        c = (times[10_000] - times[5_000]) / 5_000 * 1e6
        print(f"marginal cost per layer: {a:.0f} us (1k->5k), {c:.0f} us (5k->10k): linear when these agree")


if __name__ == "__main__":
    main()

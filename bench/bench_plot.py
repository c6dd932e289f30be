"""Benchmark: `netdsl plot` as a cold process.

Targets (the plot issue):
  * `netdsl plot examples/lenet5.net -o x.svg` as a cold process <= 0.5 s, importing no
    framework (nor the `graphviz` Python package, which netdsl does not use);
  * a 1,000-layer program drawn to SVG <= 5 s as a whole process.

Each figure is the median of cold processes.  The 1,000-layer programs are a chain
(conv/batchnorm/relu) and the same layers as 250 `residual { }` blocks (250 clusters,
250 skip edges), the harder case for Graphviz's layout.  The split into netdsl's part
(parse, check, DOT text) and Graphviz's `dot` is measured in this process.
Usage: python bench/bench_plot.py [--runs N]
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HEAVY = ("torch", "tensorflow", "keras", "jax", "graphviz")


def netdsl_cmd() -> list[str]:
    exe = shutil.which("netdsl", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "netdsl"]


def cold(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stderr.decode()}")
    return statistics.median(times)


def imported(args: list[str]) -> list[str]:
    """Top-level packages from HEAVY that a `netdsl ...` process imports (-X importtime)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "netdsl", *args], capture_output=True, text=True, cwd=ROOT
    )
    names = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    return sorted(names & set(HEAVY))


def chain(n: int) -> str:
    body = ["conv 8x3 same", "batchnorm", "relu"]
    return "input 16x16x8\n" + "\n".join(body[i % 3] for i in range(n)) + "\n"


def residual(n: int) -> str:
    return "input 16x16x8\n" + "residual { conv 8x3 same; batchnorm; relu }\n" * (n // 4)


def split(text: str) -> tuple[float, float]:
    """(netdsl: parse + check + DOT, Graphviz: dot -Tsvg) seconds, in this process."""
    import netdsl
    from netdsl.render import render, to_dot

    t = time.perf_counter()
    dot = to_dot(netdsl.parse(text))
    t1 = time.perf_counter()
    render(dot, "svg")
    return t1 - t, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args()
    if shutil.which("dot") is None:
        sys.exit("bench_plot needs Graphviz's dot (apt-get install graphviz)")
    compileall.compile_dir(str(ROOT / "netdsl"), quiet=1)  # as `pip install` does
    cmd = netdsl_cmd()
    dot_version = subprocess.run(["dot", "-V"], capture_output=True, text=True).stderr.strip()
    print(f"python {sys.version.split()[0]}, {dot_version}, {args.runs} runs each, median")
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "x.svg")
        base = cold([sys.executable, "-c", "pass"], args.runs)
        lenet = cold([*cmd, "plot", "examples/lenet5.net", "-o", out], args.runs)
        check = cold([*cmd, "check", "examples/lenet5.net"], args.runs)
        heavy = imported(["plot", "examples/lenet5.net", "-o", out])
        ok = "ok" if lenet <= 0.5 else "MISSED"
        print(f"netdsl plot examples/lenet5.net -o x.svg: {lenet:.3f} s (target <= 0.5 s: {ok})")
        print(f"  for scale: netdsl check of the same file {check:.3f} s; python -c pass {base:.3f} s")
        print(f"  frameworks or graphviz package imported: {', '.join(heavy) or 'none'}")
        for name, text in (("chain", chain(1000)), ("250 residual blocks", residual(1000))):
            spec = Path(tmp) / "big.net"
            spec.write_text(text)
            whole = cold([*cmd, "plot", str(spec), "-o", out], max(3, args.runs // 3))
            ours, dot = split(text)
            ok = "ok" if whole <= 5 else "MISSED"
            print(
                f"1,000 layers ({name}) to SVG: {whole:.2f} s as a process (target <= 5 s: {ok}); "
                f"netdsl {ours:.2f} s + dot {dot:.2f} s; {Path(out).stat().st_size / 1e6:.1f} MB"
            )


if __name__ == "__main__":
    main()

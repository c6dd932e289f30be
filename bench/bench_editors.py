"""Benchmark: the language server's latency, and `netdsl fmt --check` against `netdsl check`.

Targets (issue 13):
  * `netdsl lsp`: diagnostics for a 1,000-line spec within 100 ms of a change, hover within
    20 ms.  Measured over real stdio JSON-RPC (the test suite's client, tests/lsp_client.py):
    from writing `didChange` to reading its `publishDiagnostics`, and from writing `hover` to
    reading its answer;
  * `netdsl fmt --check examples/*.net` as a cold process <= 1.5x `netdsl check examples/*.net`.

Runs are interleaved (check, fmt, check, ...) so machine noise hits both; the figures are
medians.  Usage: python bench/bench_editors.py [--runs N] [--edits N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def spec(lines: int = 1000) -> str:
    """A 1,000-line spec: residual stages of convs, batchnorms, labels, merges and comments."""
    out = ["# a 1,000-line spec for the language-server benchmark", "input 32x32x3", "conv 16x3 relu same"]
    i = 0
    while len(out) < lines - 3:
        i += 1
        out += [
            f"s{i}: conv 16x3 same        # stage {i}",
            "batchnorm",
            "relu",
            "conv 16x3 same",
            f"add s{i}",
            "dropout 0.1",
        ]
    out = out[: lines - 3]
    while out[-1].startswith(("batchnorm", "relu", "conv", "s")):  # end on a whole stage
        out.pop()
    out += ["gap", "dense 10 softmax", "train adam lr=0.001 epochs=5"]
    return "\n".join(out) + "\n"


def lsp(edits: int) -> None:
    from lsp_client import Client

    text = spec()
    n = text.count("\n")
    lines = text.split("\n")
    target = next(i for i in range(n // 2, n) if lines[i] == "dropout 0.1")
    with Client() as c:
        c.initialize()
        uri = "file:///bench.net"
        c.open(uri, text)
        assert c.diagnostics(uri) == [], "the benchmark spec must be valid"
        diag, bad, hover = [], [], []
        for k in range(edits):
            # a valid edit (the rate changes), then a broken one (a conv on a vector), timed alike
            lines[target] = f"dropout 0.{k % 9 + 1}"
            t0 = time.perf_counter()
            c.change(uri, "\n".join(lines), 2 * k + 2)
            assert c.diagnostics(uri, 2 * k + 2) == []
            diag.append(time.perf_counter() - t0)
            broken = lines[:target] + ["flatten", "conv 8x3"] + lines[target + 1 :]
            t0 = time.perf_counter()
            c.change(uri, "\n".join(broken), 2 * k + 3)
            assert c.diagnostics(uri, 2 * k + 3), "the broken edit must be reported"
            bad.append(time.perf_counter() - t0)
            c.change(uri, "\n".join(lines), 2 * k + 4)
            c.diagnostics(uri, 2 * k + 4)
            for line in (3, target - 2, n - 2):
                t0 = time.perf_counter()
                r = c.request(
                    "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": line, "character": 1}}
                )
                hover.append(time.perf_counter() - t0)
                assert r and "params" in r["contents"]["value"], r
    ms = lambda xs: f"median {statistics.median(xs) * 1000:.1f} ms, p90 {sorted(xs)[int(len(xs) * 0.9)] * 1000:.1f} ms"  # noqa: E731
    print(f"lsp, {n:,}-line spec ({edits} edits):")
    print(f"  diagnostics after a valid change: {ms(diag)} (target <= 100 ms)")
    print(f"  diagnostics after a broken change: {ms(bad)}")
    print(f"  hover: {ms(hover)} (target <= 20 ms)")
    # the same analysis in this process, as CPU time: what the server does per change, without the
    # transport and without the waits a loaded machine adds to wall-clock time
    from netdsl.lsp.analysis import analyze

    analyze(text)
    cpu = []
    for _ in range(edits):
        t0 = time.process_time()
        analyze(text)
        cpu.append(time.process_time() - t0)
    print(f"  the analysis of one change, in process: CPU {ms(cpu)}")


def cold(runs: int) -> None:
    examples = sorted(str(p) for p in (ROOT / "examples").glob("*.net"))
    exe = [sys.executable, "-m", "netdsl"]
    cmds = {"check": [*exe, "check", *examples], "fmt --check": [*exe, "fmt", "--check", *examples]}
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):
        for k, cmd in cmds.items():
            t = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
            times[k].append(time.perf_counter() - t)
    a, b = statistics.median(times["check"]), statistics.median(times["fmt --check"])
    print(f"cold processes over {len(examples)} examples ({runs} runs each, interleaved):")
    print(f"  netdsl check: {a * 1000:.1f} ms; netdsl fmt --check: {b * 1000:.1f} ms: {b / a:.2f}x (target <= 1.5x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=11, help="cold processes of each command (default 11)")
    ap.add_argument("--edits", type=int, default=20, help="edits sent to the language server (default 20)")
    args = ap.parse_args()
    lsp(args.edits)
    cold(args.runs)


if __name__ == "__main__":
    main()

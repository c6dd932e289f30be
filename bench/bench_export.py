"""Benchmark `netdsl export` (issue 8).

Targets:
  * `netdsl export examples/lenet5.net` as a cold process <= 2x `netdsl check` of the same
    file, runs interleaved (check, export, check, ...), ratio of medians; and no framework
    imported on the way (checked in a separate process);
  * onnxruntime inference of the exported LeNet-5 and resnet vs the torch model in eager mode
    (inference mode, no_grad), batch 1 and 256, same weights, same thread count, measured side
    by side (interleaved); reported as torch time / onnxruntime time (> 1: onnxruntime ahead).

Usage: python bench/bench_export.py [--runs N] [--threads N (default 1)]
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
HEAVY = ("torch", "tensorflow", "keras", "jax")


def cold(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stderr.decode()}")
    return wall


def export_vs_check(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "lenet5.onnx")
        check = [sys.executable, "-m", "netdsl", "check", "examples/lenet5.net"]
        export = [sys.executable, "-m", "netdsl", "export", "examples/lenet5.net", "-o", out]
        cold(check), cold(export)  # warm the file cache
        tc, te = [], []
        for _ in range(runs):
            tc.append(cold(check))
            te.append(cold(export))
        mc, me = statistics.median(tc), statistics.median(te)
        print(f"cold `netdsl check examples/lenet5.net`:  {mc * 1000:6.0f} ms (median of {runs})")
        print(f"cold `netdsl export examples/lenet5.net`: {me * 1000:6.0f} ms  -> {me / mc:.2f}x check (target <= 2x)")
        probe = (
            "import sys; from netdsl.cli import main; "
            f"assert main(['export', 'examples/lenet5.net', '-o', {out!r}]) == 0; "
            f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})) or 'none')"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env)
        print(f"frameworks imported by export: {heavy.stdout.strip()}")


def inference(runs: int, threads: int) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch

    import netdsl
    from netdsl.backends import get

    torch.set_num_threads(threads)
    tb = get("torch")
    print(
        f"\ninference, {threads} thread(s) each; median per call; torch {torch.__version__}, onnxruntime {ort.__version__}"
    )
    print(f"{'net':10} {'batch':>5} {'torch eager':>12} {'onnxruntime':>12} {'torch/ort':>10}")
    for name in ("lenet5", "resnet"):
        net = netdsl.load(ROOT / "examples" / f"{name}.net")
        model = tb.build(net, device="cpu").eval()
        w = tb.get_weights(model, net)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(
            net.to_onnx(weights=w).SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        for batch in (1, 256):
            x = np.random.default_rng(0).uniform(0, 1, (batch, *net.input_shape[1:])).astype(np.float32)
            xn = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            xt = torch.from_numpy(xn)
            with torch.inference_mode():
                ref = model(xt).numpy()
            got = sess.run(["output"], {"input": xn})[0]
            assert np.max(np.abs(got - ref)) < 1e-4, "onnxruntime and torch disagree"
            n = max(3, runs if batch == 256 else runs * 20)
            tt, to = [], []
            with torch.inference_mode():
                for _ in range(3):
                    model(xt), sess.run(["output"], {"input": xn})
                for _ in range(n):
                    t = time.perf_counter()
                    model(xt)
                    tt.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    sess.run(["output"], {"input": xn})
                    to.append(time.perf_counter() - t)
            a, b = statistics.median(tt), statistics.median(to)
            print(f"{name:10} {batch:>5} {a * 1000:10.3f}ms {b * 1000:10.3f}ms {a / b:9.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=21)
    # one thread each by default: on a shared 2-core machine two threads measure contention, not the runtimes
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    export_vs_check(args.runs)
    inference(args.runs, args.threads)


if __name__ == "__main__":
    main()

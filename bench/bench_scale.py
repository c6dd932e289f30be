"""Benchmark: training that scales (issue 9), each part measured side by side.

(scaling) ``netdsl train --nproc 2`` (1 thread per rank) against one process with 1 thread, the
  same global batch, LeNet-5 and the resnet example on Fashion-MNIST-sized images: images/s of
  the last epoch (steady state) and the scaling efficiency ips(2) / (2 ips(1)).  Whole cold
  commands, as a user runs them; repeated ``--reps`` times, interleaved, medians.
(speed) ``--compile``, ``--precision bf16``, ``--channels-last`` against the plain path on the
  resnet example, in the torch trainer (one fresh process per variant): steady-state images/s
  (median of the ``--reps`` epochs after the first) and the compile time (first epoch minus a
  steady one).
(busy) ``netdsl train examples/lenet5.net --epochs 3`` on the offline sample, on the idle machine
  and with one core kept busy by a spinning process: the median epoch time (epochs 2 and 3),
  torch and keras.  Target: busy <= 2x idle.  ``--threads 2`` (torch's own choice, the old
  behaviour) is run beside it.

Without network, the Fashion-MNIST-sized data is synthetic (60,000 28x28 images in IDX files:
a step's cost does not depend on the pixels); ``--data DIR`` uses real files instead.

Usage: python bench/bench_scale.py [--part scaling|speed|busy|all] [--reps N] [--data DIR] [--threads N]
       [--lenet-images N] [--resnet-images N] [--speed-images N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LENET, RESNET = ROOT / "examples" / "lenet5.net", ROOT / "examples" / "resnet.net"


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RANK", "WORLD_SIZE")}
    return {**e, "PYTHONPATH": str(ROOT), "NETDSL_MNIST_MIRROR": "none", **extra}


def fashion_sized(directory: Path, n_train: int, n_test: int = 1000) -> Path:
    """IDX files of ``n_train`` + ``n_test`` random 28x28 images (seeded)."""
    import numpy as np

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        (directory / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + x.tobytes())
        (directory / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + y.tobytes())
    return directory


def train(spec: Path, data: str | None, *flags: str, extra_env: dict | None = None) -> dict:
    """One cold ``netdsl train``; its metrics.json."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "netdsl", "train", str(spec), "--out", f"{tmp}/run", "--quiet", *flags]
        if data:
            cmd += ["--dataset", "fashion-mnist", "--data", data]
        proc = subprocess.run(cmd, env=env(**(extra_env or {})), capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        return json.loads(Path(f"{tmp}/run/metrics.json").read_text())


def scaling(reps: int, data_dir: str | None, lenet_images: int, resnet_images: int) -> None:
    print("(scaling) --nproc 2 (1 thread each) vs 1 process, 1 thread; same global batch; images/s of the last epoch")
    with tempfile.TemporaryDirectory() as tmp:
        for spec, images, batch in ((LENET, lenet_images, 128), (RESNET, resnet_images, 64)):
            data = data_dir or str(fashion_sized(Path(tmp) / spec.stem, images))
            common = ["--epochs", "2", "--validation", "0"]
            one, two = [], []
            for r in range(reps):
                runs = [("1", one), ("2", two)] if r % 2 == 0 else [("2", two), ("1", one)]
                for n, sink in runs:
                    if n == "1":
                        m = train(spec, data, *common, "--batch", str(batch), "--threads", "1")
                    else:
                        m = train(spec, data, *common, "--batch", str(batch // 2), "--nproc", "2", "--threads", "1")
                    sink.append(m["epochs"][-1]["images_per_sec"])
            a, b = statistics.median(one), statistics.median(two)
            print(
                f"  {spec.stem}: {m['data']['train']:,} images, global batch {batch}: 1 process {a:,.0f} images/s, "
                f"--nproc 2 {b:,.0f} images/s: {b / a:.2f}x, efficiency {b / (2 * a):.0%}  (runs: {one} / {two})"
            )


SPEED_CHILD = """
import json, sys, time
import numpy as np, torch
sys.path.insert(0, {root!r})
import netdsl
from netdsl.backends.torch_train import Trainer
from netdsl.training import Progress, resolve
flags = json.loads(sys.argv[1])
net = netdsl.load({spec!r})
rng = np.random.default_rng(0)
x = rng.uniform(0, 1, ({n}, 28, 28, 1)).astype(np.float32)
y = rng.integers(0, 10, {n})
s = resolve(net, {{"batch": {batch}, "epochs": 1, "quiet": True, **flags}})
t = Trainer(net, s, "cpu", x, y)
times = []
for e in range({epochs}):
    t0 = time.perf_counter()
    t.train_epoch(e + 1, Progress(1, 1, quiet=True), e + 1)
    times.append(time.perf_counter() - t0)
print(json.dumps({{"times": times, "threads": torch.get_num_threads()}}))
"""


def speed(reps: int, threads: int | None, n: int) -> None:
    batch, epochs = 64, 1 + reps
    print(f"(speed) resnet example, torch trainer, {n} images per epoch, batch {batch}, {epochs} epochs per variant")
    code = SPEED_CHILD.format(root=str(ROOT), spec=str(RESNET), n=n, batch=batch, epochs=epochs)
    variants = {
        "plain (eager fp32)": {},
        "--channels-last": {"channels_last": True},
        "--precision bf16": {"precision": "bf16"},
        "--compile": {"compile": True},
        "--compile --channels-last --precision bf16": {"compile": True, "channels_last": True, "precision": "bf16"},
    }
    base = None
    for name, flags in variants.items():
        extra = {"OMP_NUM_THREADS": str(threads)} if threads else {}
        proc = subprocess.run(
            [sys.executable, "-c", code, json.dumps(flags)], env=env(**extra), capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(f"  {name}: failed: {proc.stderr[-500:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        steady = statistics.median(r["times"][1:])
        ips = n / steady
        base = base or ips
        first = r["times"][0] - steady
        print(
            f"  {name:44s} {ips:8,.0f} images/s  {ips / base:5.2f}x   first epoch +{first:5.1f} s "
            f"(compile/warm-up), {r['threads']} threads"
        )


def busy(reps: int) -> None:
    print("(busy) lenet5 on the offline sample, 3 epochs: median epoch seconds (epochs 2-3), idle vs one core busy")
    cores = len(os.sched_getaffinity(0))
    for backend, variants in (("torch", (None, "2")), ("keras", (None,))):
        for threads in variants:
            rows = {}
            for load in ("idle", "one core busy"):
                times = []
                for _ in range(reps):
                    spin = None
                    if load != "idle":
                        spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                        time.sleep(0.5)
                    try:
                        flags = ["--epochs", "3", "--backend", backend] + (["--threads", threads] if threads else [])
                        m = train(LENET, None, *flags)
                    finally:
                        if spin:
                            spin.kill()
                            spin.wait()
                    times += [r["train_seconds"] for r in m["epochs"][1:]]
                rows[load] = (statistics.median(times), m.get("threads"))
            (idle, t_idle), (loaded, t_busy) = rows["idle"], rows["one core busy"]
            label = f"{backend}, {'--threads ' + threads if threads else 'default (idle cores)'}"
            print(
                f"  {label:36s} idle {idle:.2f} s ({t_idle} threads), one of {cores} cores busy {loaded:.2f} s "
                f"({t_busy} threads): {loaded / idle:.2f}x"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("scaling", "speed", "busy", "all"), default="all")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, help="speed: OMP_NUM_THREADS for each variant")
    ap.add_argument("--data", help="scaling: a directory with Fashion-MNIST's IDX files")
    ap.add_argument("--lenet-images", type=int, default=60000, help="scaling: LeNet-5's training images")
    ap.add_argument("--resnet-images", type=int, default=3000, help="scaling: the resnet's training images")
    ap.add_argument("--speed-images", type=int, default=1024, help="speed: images per epoch")
    a = ap.parse_args()
    if a.part in ("scaling", "all"):
        scaling(a.reps, a.data, a.lenet_images, a.resnet_images)
    if a.part in ("speed", "all"):
        speed(a.reps, a.threads, a.speed_images)
    if a.part in ("busy", "all"):
        busy(a.reps)


if __name__ == "__main__":
    main()

"""The GPU check of issue 9 (run by bench/gpu_check.sh on a machine with a CUDA GPU).

Device detection; then LeNet-5 and the resnet example, one epoch each on Fashion-MNIST-sized
data (60,000 synthetic 28x28 images: there is no network there), through ``netdsl train``
on ``cuda`` in fp32, bf16, fp16 (GradScaler) and with ``--compile``, each next to a hand-written
torch loop over the same tensors; then ``--nproc`` over nccl (one GPU per rank).  Prints
images/s of each.  Exit 0 when every run succeeded, 1 otherwise, 2 without a CUDA GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_scale import env, fashion_sized  # noqa: E402

NETS = {"lenet5": (ROOT / "examples" / "lenet5.net", 256), "resnet": (ROOT / "examples" / "resnet.net", 128)}


def hand_written(spec: Path, data: Path, batch: int) -> float:
    """images/s of a minimal torch loop (Adam, cross-entropy on the logits), one epoch after a warm-up."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    import netdsl
    from netdsl import data as datasets

    ds = datasets.load("fashion-mnist", str(data), quiet=True)
    x = torch.from_numpy(np.ascontiguousarray(ds.x_train.transpose(0, 3, 1, 2))).cuda()
    y = torch.from_numpy(ds.y_train.astype(np.int64)).cuda()
    model = netdsl.load(spec).to_torch().cuda()
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def epoch(n: int) -> None:
        perm = torch.randperm(n, device="cuda")
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model.forward_logits(x[idx]), y[idx]).backward()
            opt.step()

    epoch(batch * 20)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    epoch(len(y))
    torch.cuda.synchronize()
    return len(y) / (time.perf_counter() - t0)


def netdsl_train(spec: Path, data: Path, batch: int, *flags: str) -> tuple[float | None, str]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "netdsl", "train", str(spec), "--device", "cuda", "--dataset", "fashion-mnist"]
        cmd += ["--data", str(data), "--epochs", "1", "--validation", "0", "--batch", str(batch), "--quiet"]
        cmd += ["--out", f"{tmp}/run", *flags]
        proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=240)
        if proc.returncode != 0:
            return None, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        m = json.loads(Path(f"{tmp}/run/metrics.json").read_text())
        return m["epochs"][-1]["images_per_sec"], f"test accuracy {m['test_accuracy']:.3f}, {m['device']}"


def main() -> int:
    import torch

    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}")
    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing to check")
        return 2
    gpus = torch.cuda.device_count()
    for i in range(gpus):
        p = torch.cuda.get_device_properties(i)
        print(f"  cuda:{i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16: {torch.cuda.is_bf16_supported()}")
    print(f"  nccl: {torch.distributed.is_nccl_available()}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        data = fashion_sized(Path(tmp) / "fashion", 60000)
        for name, (spec, batch) in NETS.items():
            hand = hand_written(spec, data, batch)
            print(f"{name}, batch {batch}: hand-written torch loop (fp32) {hand:,.0f} images/s")
            variants = [("fp32", []), ("bf16", ["--precision", "bf16"]), ("fp16", ["--precision", "fp16"])]
            variants += [("--compile", ["--compile"]), ("--compile bf16", ["--compile", "--precision", "bf16"])]
            for label, flags in variants:
                ips, note = netdsl_train(spec, data, batch, *flags)
                ok &= ips is not None
                shown = f"{ips:,.0f} images/s ({ips / hand:.2f}x the hand-written loop)" if ips else "FAILED"
                print(f"  netdsl train {label:16s} {shown}; {note}")
        n = min(gpus, 2)
        ips, note = netdsl_train(NETS["lenet5"][0], data, NETS["lenet5"][1] // n, "--nproc", str(n))
        ok &= ips is not None
        print(f"lenet5 --nproc {n} over nccl: {f'{ips:,.0f} images/s' if ips else 'FAILED'}; {note}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

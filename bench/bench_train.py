"""Benchmark: the training loops of ``netdsl train``.

(a) LeNet-5 (examples/lenet5.net) at batch 32, Adam, on the CPU, training images per second of
  * netdsl's torch trainer (``netdsl.backends.torch_train.Trainer.train_epoch``: the loop ``netdsl train``
    runs, with its per-epoch shuffle, loss and accuracy bookkeeping),
  * a minimal hand-written torch loop over the same in-memory tensors and the same model type
    and optimizer (randperm, index a batch, forward, cross-entropy, backward, step),
  * Keras ``model.fit`` on the same net (netdsl's Keras model; Keras's own shuffling), and
    netdsl's Keras trainer (one ``fit`` per epoch in a seeded order), for reference.
  Targets: torch trainer >= 0.95x the hand-written loop, >= 1.5x Keras fit.  Each figure is
  the median over ``--reps`` epochs, measured interleaved (one epoch of each in turn, the
  order reversed every other round) after one warm-up epoch each; the second copy of the
  hand-written loop is an A/A control: its distance from 1.00x is this machine's noise.
(b) One epoch of the full Fashion-MNIST training set (60,000 images, no validation split)
  with LeNet-5 at batch 128 through ``netdsl.train(..., backend="torch")``: seconds, images
  per second, and the share of this machine's float32 matmul FLOP/s (measured in the same
  run: a square ``torch.mm``) that the training reaches, counting a training step as about
  3x the forward pass's 2 FLOPs per multiply-accumulate (``Net.total_macs``).

The data of (a) is whatever ``netdsl.data.load("mnist")`` finds (the offline 5,000-digit sample
included), its training images repeated to ``--images``.

Usage: python bench/bench_train.py [--reps N] [--images N] [--threads N] [--no-keras] [--no-fashion]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch  # before TensorFlow
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl import data  # noqa: E402
from netdsl.backends.torch_train import Trainer, optimizer  # noqa: E402
from netdsl.training import Progress, resolve  # noqa: E402

LENET = ROOT / "examples" / "lenet5.net"
BATCH = 32


def hand_written_epoch(model, opt, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> None:
    """What a PyTorch user writes for one epoch over tensors already in memory."""
    model.train()
    perm = torch.randperm(len(y), generator=gen)
    for i in range(0, len(y), BATCH):
        idx = perm[i : i + BATCH]
        opt.zero_grad()
        loss = F.cross_entropy(model.forward_logits(x[idx]), y[idx])
        loss.backward()
        opt.step()


def images(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    ds = data.load("mnist", quiet=True)
    reps = -(-n // len(ds.x_train))
    x = np.concatenate([ds.x_train] * reps)[:n]
    y = np.concatenate([ds.y_train] * reps)[:n]
    return np.ascontiguousarray(x), np.ascontiguousarray(y), ds.source


def bench_loops(n: int, reps: int, keras: bool) -> dict[str, list[float]]:
    """Seconds per epoch of each loop, interleaved."""
    net = netdsl.load(LENET)
    x_np, y_np, source = images(n)
    print(f"(a) LeNet-5, batch {BATCH}, adam, {n:,} images per epoch ({source})")
    s = resolve(net, {"batch": BATCH, "optimizer": "adam", "lr": 0.001, "quiet": True})
    ours = Trainer(net, s, "cpu", x_np, y_np)
    quiet = Progress(1, 1, quiet=True)

    loops = {"netdsl torch": lambda k: ours.train_epoch(k, quiet)}
    for name in ("hand-written torch", "hand-written torch (A/A)"):
        torch.manual_seed(0)
        model = netdsl.backends.get("torch").build(net)
        opt = optimizer("adam", model.parameters(), 0.001)
        xt = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous()
        yt = torch.from_numpy(y_np)
        loops[name] = lambda k, m=model, o=opt, xt=xt, yt=yt: hand_written_epoch(
            m, o, xt, yt, torch.Generator().manual_seed(k)
        )
    if keras:
        import keras as K

        from netdsl.backends import keras_train as train_keras

        km = netdsl.backends.get("keras").build(net)
        km.compile(optimizer=K.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        loops["Keras fit"] = lambda k: km.fit(x_np, y_np, batch_size=BATCH, epochs=1, shuffle=True, verbose=0)
        kt = train_keras.Trainer(net, resolve(net, {**vars(s), "backend": "keras"}), "/CPU:0", x_np, y_np)
        loops["netdsl keras"] = lambda k: kt.train_epoch(k, quiet)

    for fn in loops.values():  # warm-up: allocators, oneDNN primitives, tf.function tracing
        fn(0)
    times: dict[str, list[float]] = {k: [] for k in loops}
    order = list(loops)
    for r in range(reps):
        for name in order if r % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            loops[name](r + 1)
            times[name].append(time.perf_counter() - t)
    return times


def matmul_flops(size: int = 2048, seconds: float = 2.0) -> float:
    """float32 FLOP/s of a square torch.mm on this machine (best of repeated blocks)."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    torch.mm(a, b)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(3):
            torch.mm(a, b)
        best = max(best, 3 * 2 * size**3 / (time.perf_counter() - t))
    return best


def bench_fashion() -> None:
    net = netdsl.load(LENET)
    flops = matmul_flops()
    t = time.perf_counter()
    m = netdsl.train(
        net, backend="torch", dataset="fashion-mnist", validation=0.0, epochs=2, batch=128, lr=0.001, quiet=True
    )
    total = time.perf_counter() - t
    per_image = 3 * 2 * net.total_macs  # forward 2 FLOPs per MAC; backward about twice the forward
    print(
        f"(b) Fashion-MNIST ({m['data']['source']}), {m['data']['train']:,} training images, LeNet-5, batch 128, torch"
    )
    print(
        f"    float32 matmul (2048x2048 torch.mm): {flops / 1e9:.1f} GFLOP/s; LeNet-5 training: {per_image / 1e6:.2f} MFLOP/image"
    )
    for r in m["epochs"]:
        ips = m["data"]["train"] / r["train_seconds"]
        print(
            f"    epoch {r['epoch']}: {r['train_seconds']:.2f} s, {ips:,.0f} images/s, "
            f"{ips * per_image / 1e9:.2f} GFLOP/s = {ips * per_image / flops:.1%} of matmul; "
            f"loss {r['loss']:.4f}, accuracy {r['accuracy']:.4f}"
        )
    print(f"    test accuracy {m['test_accuracy']:.4f}; netdsl.train() in all (data, 2 epochs, test): {total:.1f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7, help="epochs of each loop (after a warm-up epoch)")
    ap.add_argument("--images", type=int, default=12_000, help="training images per epoch in (a)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    ap.add_argument("--no-keras", action="store_true", help="skip Keras in (a)")
    ap.add_argument("--no-fashion", action="store_true", help="skip (b)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    times = bench_loops(args.images, args.reps, not args.no_keras)
    ips = {k: args.images / statistics.median(v) for k, v in times.items()}
    for name, v in ips.items():
        print(f"    {name:26s} {v:9,.0f} images/s   (median of {len(times[name])} epochs)")
    ours, hand = ips["netdsl torch"], ips["hand-written torch"]
    ok = ours / hand >= 0.95
    print(
        f"    netdsl torch / hand-written torch: {ours / hand:.3f}x (target >= 0.95x); "
        f"A/A control {ips['hand-written torch (A/A)'] / hand:.3f}x"
    )
    if "Keras fit" in ips:
        ok &= ours / ips["Keras fit"] >= 1.5
        print(f"    netdsl torch / Keras fit:          {ours / ips['Keras fit']:.2f}x (target >= 1.5x)")
        print(f"    netdsl keras / Keras fit:          {ips['netdsl keras'] / ips['Keras fit']:.2f}x")
    if not args.no_fashion:
        bench_fashion()
    print("OK" if ok else "UNDER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

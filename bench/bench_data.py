"""Benchmark: image folders and augmentation (issue 10).

(a) Decoding a folder of ``--images`` 28x28 PNGs (Fashion-MNIST's first images when Debian's
  copy is installed, else random pixels) with ``netdsl.datasets.folder.load_folder`` (no cache),
  against a plain Pillow loop over the same files (open, convert("L"), np.asarray): images/s.
  Then the cached second start: ``load_folder`` again with its cache written (scan the folder,
  fingerprint file list, sizes and mtimes, read the .npz).  Target: <= 0.5 s.
(b) The torch trainer's epoch (LeNet-5, batch 32, Adam, CPU) with and without augmentation layers
  in front (``randomflip horizontal; randomcrop 28x28 padding=2; randomtranslation 0.1``),
  on the same images: the median of ``--reps`` interleaved epochs after a warm-up each.
  Target: augmented <= 1.3x plain.

Usage: python bench/bench_data.py [--images N] [--reps N] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl.backends.torch_train import Trainer  # noqa: E402
from netdsl.datasets import folder  # noqa: E402
from netdsl.training import Progress, resolve  # noqa: E402

LENET = (ROOT / "examples" / "lenet5.net").read_text()
AUGMENT = "randomflip horizontal\nrandomcrop 28x28 padding=2\nrandomtranslation 0.1\n"


def images(n: int) -> tuple[np.ndarray, np.ndarray]:
    from netdsl import data

    try:
        ds = data.load("fashion-mnist", "/usr/share/datasets/fashion-mnist", scale=False)
        return ds.x_train[:n, :, :, 0].astype(np.uint8), ds.y_train[:n]
    except netdsl.NetdslError:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10


def bench_folder(n: int) -> None:
    from PIL import Image

    x, y = images(n)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "folder"
        for i in range(n):
            d = root / "train" / f"class{y[i]}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).save(d / f"{i:05d}.png")
        (root / "test").mkdir()
        (root / "test" / "class0").mkdir()
        Image.fromarray(x[0]).save(root / "test" / "class0" / "0.png")
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        files = sorted(root.rglob("*.png"))

        t = time.perf_counter()
        plain = [np.asarray(Image.open(f).convert("L")) for f in files]
        t_plain = time.perf_counter() - t
        t = time.perf_counter()
        ds = folder.load_folder(root, (28, 28, 1), cache=False)
        t_ours = time.perf_counter() - t
        assert len(ds.x_train) + len(ds.x_test) == len(plain)
        folder.load_folder(root, (28, 28, 1))  # writes the cache
        starts = []
        for _ in range(5):
            t = time.perf_counter()
            folder.load_folder(root, (28, 28, 1))
            starts.append(time.perf_counter() - t)
    print(f"(a) {len(files):,} 28x28 PNGs")
    print(f"    plain Pillow loop      {len(files) / t_plain:9,.0f} images/s ({t_plain:.2f} s)")
    print(f"    netdsl load_folder     {len(files) / t_ours:9,.0f} images/s ({t_ours:.2f} s, {t_plain / t_ours:.2f}x)")
    print(f"    cached second start    {statistics.median(starts):.3f} s (median of 5; target <= 0.5 s)")


def bench_augment(reps: int, n: int) -> None:
    x, y = images(n)
    x = (x.astype(np.float32) / 255)[..., None]
    nets = {"plain": netdsl.parse(LENET), "augmented": netdsl.parse(LENET.replace("conv 6x5", AUGMENT + "conv 6x5", 1))}
    quiet = Progress(1, 1, True)
    trainers = {}
    for name, net in nets.items():
        s = resolve(net, {"batch": 32, "optimizer": "adam", "lr": 0.001, "quiet": True})
        trainers[name] = Trainer(net, s, "cpu", x, y)
        trainers[name].train_epoch(0, quiet)  # warm-up
    times: dict[str, list] = {k: [] for k in trainers}
    for r in range(reps):
        for name in list(trainers)[:: 1 if r % 2 == 0 else -1]:
            t = time.perf_counter()
            trainers[name].train_epoch(r + 1, quiet)
            times[name].append(time.perf_counter() - t)
    plain, aug = statistics.median(times["plain"]), statistics.median(times["augmented"])
    print(f"(b) LeNet-5 epoch of {n:,} images, batch 32, torch on cpu ({torch.get_num_threads()} threads)")
    print(f"    plain       {plain:.3f} s ({n / plain:,.0f} images/s)")
    print(f"    augmented   {aug:.3f} s ({n / aug:,.0f} images/s): {aug / plain:.2f}x (target <= 1.3x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_folder(args.images)
    bench_augment(args.reps, min(args.images, 10_000))


if __name__ == "__main__":
    main()

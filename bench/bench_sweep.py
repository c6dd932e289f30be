"""Benchmark: screening candidates of a resnet-sized search space (issue 16).

Target: sampling and checking 1,000 candidates takes <= 5 s (about what training one trial
of LeNet-5 for one epoch costs here).  The run is `netdsl sweep`'s own loop (netdsl.sweeping.Sweep)
with --max-params 1, so every candidate is drawn, written into the spec, checked and told to
the study as pruned, and none is trained; it stops at --max-rejects 1000.  Measured with the
study in memory (the screening itself) and in the default SQLite file.

Usage: python bench/bench_sweep.py [--candidates N] [--sqlite]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# examples/resnet.net with its widths, kernels, depths, dropout and training settings searched:
# 24 conv/batchnorm layers at the deepest, 1,152 discrete candidates x 2 continuous dimensions
SPEC = """\
input 28x28x1
let width = choice(16, 32, 48, 64)
let wide = 2 * width
def block(c, k=choice(3, 5)) {
  residual { conv filters=c kernel=k padding=same; batchnorm; relu; conv filters=c kernel=k padding=same; batchnorm }
  relu
}
conv choice(16, 32, 64)x3 relu same
repeat int(1, 4) { block(width) }
add {
  conv (wide)x3/2 same; batchnorm; relu; conv (wide)x3 same; batchnorm
| conv (wide)x1/2; batchnorm
}
relu
repeat int(1, 3) { block(wide) }
gap
dropout float(0.0, 0.5)
dense 10 softmax
train adam lr=log(1e-4, 1e-2) epochs=5 batch=choice(32, 64, 128) validation=0.1
"""


def screen(n: int, storage: str | None) -> tuple[float, int]:
    from netdsl.errors import Source
    from netdsl.sweeping import Options, Screen, Sweep

    with tempfile.TemporaryDirectory() as tmp:
        opts = Options(trials=1, max_params=1, max_rejects=n, storage=storage, quiet=True)
        src = Source(SPEC, "resnet_space.net")
        t0 = time.perf_counter()
        sc = Screen(src, {}, None, opts, "resnet_space")
        sweep = Sweep(sc, opts, Path(tmp), "bench", lambda _t: None)
        sweep.run()
        seconds = time.perf_counter() - t0
        return seconds, sum(sweep.reasons.values())


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--candidates", type=int, default=1000)
    p.add_argument("--sqlite", action="store_true", help="also time the default SQLite study")
    a = p.parse_args()
    import optuna  # imported before the clock starts, as a running sweep has it

    del optuna
    from netdsl.errors import Source
    from netdsl.frontend.driver import parse_program
    from netdsl.frontend.spaces import extract

    space = extract(parse_program(SPEC), SPEC)
    print(f"space: {space.describe()}")
    seconds, n = screen(a.candidates, "memory")
    ok = seconds <= 5.0 * a.candidates / 1000
    print(f"screening {n:,} candidates (study in memory): {seconds:.2f} s, {1000 * seconds / n:.2f} ms each "
          f"-> {'OK' if ok else 'SLOWER THAN'} the 5 s target")  # fmt: skip
    if a.sqlite:
        seconds, n = screen(a.candidates, None)
        print(f"screening {n:,} candidates (the default SQLite study and rejected.csv): {seconds:.2f} s")
    del Source
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

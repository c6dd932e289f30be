"""Benchmark: the compiled mobilenet_small against the same network written by hand as an nn.Module.

Target (the torch backend, issue 14): a forward+backward step of
``examples/mobilenet_small.net`` built by netdsl (DepthwiseConv2d, SeparableConv2d, the `mul`
squeeze-excite gate, batchnorm) costs <= 1.05x the same step of a hand-written ``nn.Module``
(grouped nn.Conv2d for the depthwise convolutions, a depthwise + pointwise pair for the
separable one, ``x * gate.view(n, c, 1, 1)``), at batch 32 and 256, on CPU.

Both get the same weights (copied parameter by parameter, in order), the same loss (NLL of the
log of the probabilities) and the same threading.  Blocks are interleaved (baseline, netdsl,
control, control, netdsl, baseline, ...); each figure is the median over repetitions of a
block's mean step time; the A/A control (a second copy of the baseline) shows the machine's
noise.  ``--threads 1 --clock cpu`` measures the work rather than the waiting.

Usage: python bench/bench_mobilenet_step.py [--reps N] [--iters N] [--threads N] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl.backends import torch as torch_backend  # noqa: E402


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class DWS(nn.Module):
    """Depthwise 3x3 (stride s, TF 'same') + batchnorm + relu, then 1x1 + batchnorm + relu."""

    def __init__(self, cin: int, cout: int, stride: int, size: int) -> None:
        super().__init__()
        self.uneven = stride == 2 and size % 2 == 0  # TF 'same': an even size at stride 2 pads 0 before, 1 after
        self.dw = nn.Conv2d(cin, cin, 3, stride, padding=0 if self.uneven else 1, groups=cin, bias=False)
        self.bn1 = _bn(cin)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uneven:
            x = F.pad(x, (0, 1, 0, 1))
        x = F.relu(self.bn1(self.dw(x)))
        return F.relu(self.bn2(self.pw(x)))


class MobileNetSmall(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, 2, bias=False)
        self.bn = _bn(16)
        self.b1, self.b2, self.b3 = DWS(16, 32, 1, 14), DWS(32, 64, 2, 14), DWS(64, 64, 1, 7)
        self.se1, self.se2 = nn.Linear(64, 16), nn.Linear(16, 64)
        self.b4 = DWS(64, 128, 2, 7)
        self.sep_dw = nn.Conv2d(128, 128, 3, padding=1, groups=128, bias=False)
        self.sep_pw = nn.Conv2d(128, 128, 1)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(F.pad(x, (0, 1, 0, 1)))))
        x = self.b3(self.b2(self.b1(x)))
        g = torch.sigmoid(self.se2(F.relu(self.se1(x.mean((2, 3))))))
        x = self.b4(x * g.view(g.shape[0], -1, 1, 1))
        x = F.relu(self.sep_pw(self.sep_dw(x)))
        return torch.softmax(self.fc(self.drop(x.mean((2, 3)))), dim=1)


def same_weights(base: nn.Module, ours: nn.Module) -> None:
    """Copy netdsl's parameters and batchnorm statistics into the baseline, in order."""
    with torch.no_grad():
        for (nb, b), (no, o) in zip(base.state_dict().items(), ours.state_dict().items(), strict=True):
            assert b.shape == o.shape, (nb, no, b.shape, o.shape)
            b.copy_(o)


def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    for p in model.parameters():
        p.grad = None
    F.nll_loss(torch.log(model(x)), y).backward()


CLOCK = time.perf_counter


def block(model, x, y, iters: int) -> float:
    t = CLOCK()
    for _ in range(iters):
        step(model, x, y)
    return (CLOCK() - t) / iters


def bench_step(batch: int, reps: int, iters: int) -> dict[str, list[float]]:
    net = netdsl.load(ROOT / "examples" / "mobilenet_small.net")
    ours = torch_backend.build(net, device="cpu")
    models = {"base": MobileNetSmall(), "netdsl": ours, "control": MobileNetSmall()}
    same_weights(models["base"], ours)
    same_weights(models["control"], ours)
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    for m in models.values():
        m.eval()
    with torch.no_grad():
        assert torch.allclose(ours(x), models["base"](x), atol=1e-5), "the two models should compute the same function"
    for m in models.values():
        m.train()
        block(m, x, y, max(iters // 2, 3))  # warm up: allocator, oneDNN primitives
    times: dict[str, list[float]] = {k: [] for k in models}
    order = list(models)
    for r in range(reps):
        for k in order if r % 2 == 0 else order[::-1]:
            times[k].append(block(models[k], x, y, iters))
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, help="torch threads for both models (default: torch's own choice)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    default = "" if args.threads else " (torch's default)"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads{default}, {args.clock} clock")
    worst = noise = 0.0
    for batch in (32, 256):
        iters = args.iters if batch == 32 else max(args.iters // 4, 3)
        t = bench_step(batch, args.reps, iters)
        base, ours, ctrl = (statistics.median(t[k]) for k in ("base", "netdsl", "control"))
        ratio = ours / base
        paired = statistics.median(o / b for o, b in zip(t["netdsl"], t["base"], strict=True))
        worst = max(worst, ratio)
        noise = max(noise, abs(ctrl / base - 1))
        print(
            f"batch {batch:3d}: nn.Module {base * 1e3:7.3f} ms  netdsl {ours * 1e3:7.3f} ms  "
            f"ratio {ratio:.3f}x (target <= 1.05x) | paired {paired:.3f}x, "
            f"best {min(t['netdsl']) / min(t['base']):.3f}x | A/A control {ctrl / base:.3f}x"
        )
    ok = worst <= 1.05
    if not ok and noise > 0.05:
        print(f"INCONCLUSIVE: the A/A control is {noise:.1%} off here, more than the 5% to resolve; rerun when quiet")
        return 2
    print("OK" if ok else "OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

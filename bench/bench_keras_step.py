"""Benchmark: one Keras training step of netdsl's LeNet-5 against a hand-written keras.Sequential.

Target: a forward + backward + update step of the model that netdsl's Keras backend
builds from examples/lenet5.net costs <= 1.03x the same step of a hand-written
``keras.Sequential`` of the same layers, at batch 32 and 256, on the CPU.

Both models are compiled alike (SGD, sparse categorical cross-entropy, Keras's
defaults otherwise) and start from the same weights; each step is
``model.train_on_batch(x, y)`` on the same batch.  Measurements are interleaved
(hand-written, netdsl, netdsl, hand-written, ...) so machine noise hits both; the
figure reported is the ratio of the medians of per-step times over the rounds (with
the median of the per-round ratios beside it, which a changing machine load
disturbs less).  The script also checks that both models trace to the same
TensorFlow graph (the same ops, in the same numbers), which is why the ratio is 1
up to noise.

Usage: python bench/bench_keras_step.py [--rounds N] [--steps K] [--batches 32 256] [--device /CPU:0]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import netdsl  # noqa: E402
from netdsl.backends import keras as kb  # noqa: E402  (sets TF_CPP_MIN_LOG_LEVEL / KERAS_BACKEND first)

keras = kb.keras
tf = kb.tf
TARGET = 1.03


def hand_written():
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(6, 5, activation="sigmoid"),
            L.MaxPool2D(2, 2),
            L.Conv2D(16, 5, activation="sigmoid"),
            L.MaxPool2D(2, 2),
            L.Flatten(),
            L.Dense(120, activation="sigmoid"),
            L.Dense(84, activation="sigmoid"),
            L.Dense(10, activation="softmax"),
        ]
    )


def prepare(model):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="sparse_categorical_crossentropy")
    return model


def per_step(model, x, y, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)  # returns the loss as a number: the step has finished
    return (time.perf_counter() - t) / steps


def graph_ops(model) -> collections.Counter:
    """The op types of one traced training-mode forward + backward pass."""

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    graph = step.get_concrete_function(tf.TensorSpec((None, 28, 28, 1), tf.float32)).graph
    return collections.Counter(op.type for op in graph.get_operations())


def bench(batch: int, rounds: int, steps: int, where: str) -> tuple[float, float, float]:
    net = netdsl.load(ROOT / "examples" / "lenet5.net")
    with tf.device(where):
        hand = prepare(hand_written())
        ours = prepare(kb.build(net, device=where))
        ours.set_weights(hand.get_weights())  # same layers in the same order: the same start
        rng = np.random.default_rng(0)
        x = rng.random((batch, 28, 28, 1), dtype=np.float32)
        y = rng.integers(0, 10, size=(batch,)).astype(np.int32)
        for m in (hand, ours):  # trace the train functions, warm the caches
            per_step(m, x, y, 5)
        times: dict[str, list[float]] = {"hand": [], "netdsl": []}
        for r in range(rounds):
            order = (("hand", hand), ("netdsl", ours)) if r % 2 == 0 else (("netdsl", ours), ("hand", hand))
            for name, m in order:
                times[name].append(per_step(m, x, y, steps))
    paired = statistics.median(o / h for o, h in zip(times["netdsl"], times["hand"], strict=True))
    return statistics.median(times["hand"]), statistics.median(times["netdsl"]), paired


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--steps", type=int, default=20, help="train steps per timed round")
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--device", default="/CPU:0", help="TensorFlow device (default: the CPU)")
    args = ap.parse_args()
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, device {args.device}; "
        f"train_on_batch, {args.rounds} interleaved rounds x {args.steps} steps"
    )
    net = netdsl.load(ROOT / "examples" / "lenet5.net")
    same = graph_ops(hand_written()) == graph_ops(kb.build(net, device=args.device))
    print(f"same TensorFlow graph for one forward + backward pass: {'yes' if same else 'NO'}")
    worst = 0.0
    for batch in args.batches:
        hand, ours, paired = bench(batch, args.rounds, args.steps, args.device)
        ratio = ours / hand
        worst = max(worst, ratio)
        print(
            f"batch {batch:4d}: keras.Sequential median {hand * 1e3:7.3f} ms/step   "
            f"netdsl median {ours * 1e3:7.3f} ms/step   ratio {ratio:.3f}x  "
            f"(per-round median {paired:.3f}x; target <= {TARGET:.2f}x)"
        )
    print(f"worst ratio {worst:.3f}x: {'OK' if worst <= TARGET else 'over target'}")


if __name__ == "__main__":
    main()

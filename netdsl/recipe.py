"""The training recipe at work, the same for both backends and framework-free.

:func:`lr_at` is the learning rate of every step (the torch trainer sets it each step; the
Keras trainer's :class:`~netdsl.backends.keras_train.Schedule` computes the same formula in
float32); :func:`output_kind` says how the net's output is scored; :class:`Watch` keeps
what Keras's ReduceLROnPlateau and EarlyStopping keep between epochs.
"""

from __future__ import annotations

import math

from . import settings as table


def lr_at(s, step: int, steps_per_epoch: int, scale: float = 1.0) -> float:
    """The learning rate of training step ``step`` (0-based, counted over the whole run).

    ``s`` holds lr, schedule, gamma, step_size, min_lr, warmup and epochs; ``scale`` is what
    the plateau schedule has multiplied the rate by so far.  Warmup rises linearly to lr
    over its steps, then the schedule starts, counting its steps from the warmup's end.
    """
    warm = s.warmup * steps_per_epoch
    if step < warm:
        return s.lr * (step + 1) / warm * scale
    t = step - warm
    if s.schedule == "step":
        return s.lr * s.gamma ** (t // (s.step_size * steps_per_epoch)) * scale
    if s.schedule == "exponential":
        return s.lr * s.gamma ** (t / steps_per_epoch) * scale
    if s.schedule == "cosine":
        total = max(1, s.epochs * steps_per_epoch - warm)
        return s.min_lr + (s.lr - s.min_lr) * 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
    return s.lr * scale


def output_kind(graph) -> str:
    """What the net's output holds, which decides its loss (Keras's choices, in both backends):

    ``probabilities``      a final softmax: cross-entropy of the values before it (Keras's
                           ``_keras_logits``); any activation but those below: of ``log(clip(p))``
    ``sigmoid``            a final sigmoid: Keras scores the values before it as logits too
    ``log_probabilities``  a final log_softmax: NLL, as PyTorch's MNIST example trains
    ``logits``             a final dense/conv without activation, or ``linear``: from logits
    """
    node = graph.nodes[graph.graph["output"]]
    args = node.get("args") or {}
    act = node["op"] if node["op"] in ("softmax", "log_softmax", "linear", "sigmoid") else args.get("activation")
    return {"log_softmax": "log_probabilities", "linear": "logits", "sigmoid": "sigmoid"}.get(act, "probabilities")


class Watch:
    """What Keras's ReduceLROnPlateau and EarlyStopping(restore_best_weights=True) keep, for
    both backends alike; it watches val_loss (the training loss when nothing is held out)."""

    def __init__(self, s, saved: dict | None = None):
        self.s = s
        self.monitor = "val_loss" if s.validation > 0 else "loss"
        self.scale = 1.0  # the plateau schedule's reductions so far
        self.plateau_best = self.best = None
        self.plateau_wait = self.wait = self.best_epoch = 0
        self.stopped = False
        for key, value in (saved or {}).items():
            if key in self.state():
                setattr(self, key, value)

    def state(self) -> dict:
        keys = ("scale", "plateau_best", "plateau_wait", "best", "wait", "best_epoch", "stopped")
        return {k: getattr(self, k) for k in keys}

    def update(self, epoch: int, row: dict, snapshot) -> None:
        s, current = self.s, row[self.monitor]
        if current is None or current != current:
            return
        if s.schedule == "plateau":
            if self.plateau_best is None or current < self.plateau_best - table.PLATEAU_MIN_DELTA:
                self.plateau_best, self.plateau_wait = current, 0
            else:
                self.plateau_wait += 1
                rate = s.lr * self.scale
                if self.plateau_wait >= s.lr_patience and rate > s.min_lr:
                    self.scale = max(rate * s.gamma, s.min_lr) / s.lr
                    self.plateau_wait = 0
        if s.patience:
            if self.best is None or current < self.best:
                self.best, self.best_epoch, self.wait = current, epoch, 0
                snapshot()
            else:
                self.wait += 1
                self.stopped = self.wait >= s.patience


def snapshot(backend: str, net, model) -> dict:
    """A copy of the model's weights in the canonical layout (the best epoch's, for early stopping)."""
    import numpy as np

    from . import backends

    return {k: np.array(v, copy=True) for k, v in backends.get(backend).get_weights(model, net).items()}


def describe(s) -> str:
    """``adadelta lr=1, schedule step gamma=0.7`` for the first line of a run."""
    parts = [f"{s.optimizer} lr={s.lr:g}"]
    if s.optimizer == "sgd" and s.momentum:
        parts[0] += f" momentum={s.momentum:g}" + (" nesterov" if s.nesterov else "")
    if s.weight_decay:
        parts[0] += f" weight_decay={s.weight_decay:g}"
    if s.schedule != "constant":
        keys = [f"{k}={getattr(s, k):g}" for k in table.SCHEDULES[s.schedule]]
        parts.append(" ".join([f"schedule {s.schedule}", *keys]))
    for key in ("warmup", "clip_norm", "label_smoothing", "patience"):
        if getattr(s, key):
            parts.append(f"{key}={getattr(s, key):g}")
    return ", ".join(parts)

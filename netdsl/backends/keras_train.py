"""The tf.keras side of ``netdsl train``: ``compile``, ``fit`` and ``evaluate``.

Each epoch is one ``fit`` call on the training set in an order drawn from
``(seed, epoch)`` (``shuffle=False``: the order is already shuffled), so a resumed
run sees the same orders as an uninterrupted one; the shared loop in
:mod:`netdsl.train` validates, checkpoints and writes the metrics after each call.
On a terminal a callback drives the live bar from Keras's running loss and accuracy.
"""

from __future__ import annotations

import contextlib

import numpy as np

# isort: off
from . import keras as backend  # sets KERAS_BACKEND and quietens TensorFlow first
import keras
import tensorflow as tf
# isort: on

device = backend.device
EVAL_BATCH = 1024


def optimizer(name: str, lr: float):
    """``name``'s Keras optimizer (its own defaults: eps 1e-7, AdamW weight decay 0.004, rho 0.9)."""
    cls = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}
    cls["rmsprop"] = keras.optimizers.RMSprop
    return cls[name](learning_rate=lr)


class _LiveBar(keras.callbacks.Callback):
    def __init__(self, bar):
        super().__init__()
        self.bar = bar

    def on_train_batch_end(self, batch, logs=None):
        if self.bar.due() and logs:
            self.bar.update(batch + 1, float(logs["loss"]), float(logs["accuracy"]))


class _NaNStop(keras.callbacks.Callback):
    """Stops ``fit`` at the first batch whose (running mean) loss is NaN or infinite, and notes it."""

    def __init__(self):
        super().__init__()
        self.step = None

    def on_train_batch_end(self, batch, logs=None):
        if logs and self.step is None and not np.isfinite(float(logs["loss"])):
            self.step = batch + 1
            self.model.stop_training = True


class Trainer:
    """One compiled Keras model and the training set (numpy, channels last)."""

    def __init__(self, net, s, device: str, x_train, y_train, model=None):
        self.s, self.device = s, device
        keras.utils.set_random_seed(s.seed)  # the initial weights
        self.model = model if model is not None else backend.build(net, device=device)
        with self._on_device(), backend._calm():
            self.model.compile(optimizer=optimizer(s.optimizer, s.lr), loss=s.loss, metrics=[s.metrics])
        self.x = np.ascontiguousarray(x_train, dtype=np.float32)
        self.y = np.asarray(y_train, dtype=np.int64)

    def _on_device(self):
        return tf.device(self.device) if self.device else contextlib.nullcontext()

    def train_epoch(self, seed: int, bar) -> tuple[float, float]:
        keras.utils.set_random_seed(seed)  # dropout
        order = np.random.default_rng(seed).permutation(len(self.y))
        self._nan = _NaNStop()
        callbacks = [self._nan, *([_LiveBar(bar)] if bar.live else [])]
        with self._on_device(), backend._calm():
            h = self.model.fit(
                self.x[order],
                self.y[order],
                batch_size=self.s.batch,
                epochs=1,
                shuffle=False,
                verbose=0,
                callbacks=callbacks,
            )
        return float(h.history["loss"][-1]), float(h.history["accuracy"][-1])

    def first_nonfinite_step(self) -> int | None:
        """The first step of the last epoch whose loss was NaN or infinite (1-based), or None."""
        return self._nan.step

    def evaluate(self, x, y) -> tuple[float, float]:
        with self._on_device(), backend._calm():
            r = self.model.evaluate(
                np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64), batch_size=EVAL_BATCH, verbose=0
            )
        return float(r[0]), float(r[1])

    # -- checkpoints: every optimizer variable, in order, checked by path and shape ----------

    def optimizer_state(self) -> tuple[dict, dict]:
        opt = self.model.optimizer
        if not opt.built:
            opt.build(self.model.trainable_variables)
        vs = opt.variables
        tensors = {f"{i}": np.array(v.numpy()) for i, v in enumerate(vs)}
        return tensors, {"kind": type(opt).__name__, "paths": [v.path for v in vs]}

    def load_optimizer_state(self, tensors: dict, plain: dict) -> None:
        from ..errors import NetdslError

        opt = self.model.optimizer
        if not opt.built:
            opt.build(self.model.trainable_variables)
        vs = opt.variables
        if plain.get("kind") != type(opt).__name__ or len(vs) != len(tensors):
            raise NetdslError("E603", f"the checkpoint's optimizer state does not fit this {type(opt).__name__}")
        for i, v in enumerate(vs):
            t = tensors[f"{i}"]
            if tuple(t.shape) != tuple(v.shape):
                raise NetdslError("E603", f"optimizer variable `{v.path}` has shape {t.shape} in the checkpoint")
            v.assign(t.astype(v.dtype))

"""The tf.keras side of ``netdsl train``: ``compile``, ``fit`` and ``evaluate``.

Each epoch is one ``fit`` call on the training set in an order drawn from
``(seed, epoch)`` (``shuffle=False``: the order is already shuffled), so a resumed
run sees the same orders as an uninterrupted one; the shared loop in
:mod:`netdsl.train` validates, checkpoints and writes the metrics after each call.
On a terminal a callback drives the live bar from Keras's running loss and accuracy.

The recipe is Keras's own: its optimizers (with ``weight_decay`` and ``global_clipnorm``), a
:class:`Schedule` giving each step's learning rate by the formula of
:func:`netdsl.recipe.lr_at`, and a loss chosen by what the net outputs
(:func:`netdsl.recipe.output_kind`): from logits for logits and log-probabilities (the
cross-entropy of log-probabilities is their NLL), with label smoothing on one-hot labels.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

# isort: off
from . import keras as backend  # sets KERAS_BACKEND and quietens TensorFlow first
import keras
import tensorflow as tf
# isort: on

from .. import recipe  # noqa: E402
from . import keras_scale  # noqa: E402

device = backend.device
EVAL_BATCH = 1024
_CLASSES = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "nadam": "Nadam",
}


def optimizer(name: str, lr, momentum: float = 0.0, nesterov: bool = False, weight_decay=None, clip_norm=None):
    """``name``'s Keras optimizer with its own defaults; ``lr`` a rate or a schedule."""
    kw: dict = {"learning_rate": lr}
    if name == "sgd":
        kw.update(momentum=float(momentum), nesterov=bool(nesterov))
    if weight_decay:
        kw["weight_decay"] = float(weight_decay)
    elif name == "adamw" and weight_decay is not None:
        kw["weight_decay"] = 0.0
    if clip_norm:
        kw["global_clipnorm"] = float(clip_norm)
    return getattr(keras.optimizers, _CLASSES[name])(**kw)


class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """The rate of each step (Keras's ``iterations``, from 0): :func:`netdsl.recipe.lr_at` in float32.

    ``scale`` is a variable, read at every step: the plateau schedule lowers it between epochs.
    """

    def __init__(self, s, steps_per_epoch: int):
        self.s, self.steps = s, steps_per_epoch
        self.scale = tf.Variable(1.0, trainable=False, dtype="float32")

    def __call__(self, step):
        s, ops = self.s, keras.ops
        step = ops.cast(step, "float32")
        warm = float(s.warmup * self.steps)
        t = step - warm
        if s.schedule == "step":
            rate = s.lr * ops.power(s.gamma, ops.floor(t / float(s.step_size * self.steps)))
        elif s.schedule == "exponential":
            rate = s.lr * ops.power(s.gamma, t / float(self.steps))
        elif s.schedule == "cosine":
            total = float(max(1, s.epochs * self.steps - warm))
            cos = ops.cos(math.pi * ops.minimum(t, total) / total)
            rate = s.min_lr + (s.lr - s.min_lr) * 0.5 * (1 + cos)
        else:
            rate = ops.convert_to_tensor(s.lr, "float32") + 0 * step
        if warm:
            rate = ops.where(step < warm, s.lr * (step + 1) / warm, rate)
        return rate * self.scale

    def get_config(self):
        return {"steps_per_epoch": self.steps, **{k: getattr(self.s, k) for k in ("lr", "schedule", "warmup")}}


def loss(kind: str, smoothing: float, classes: int):
    """Keras's sparse categorical cross-entropy for what the net outputs (see the module's docstring)."""
    logits = kind in ("logits", "log_probabilities")  # softmax, sigmoid: Keras finds their logits itself
    if not smoothing:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    smoothed = keras.losses.CategoricalCrossentropy(from_logits=logits, label_smoothing=smoothing)

    def sparse_smoothed(y, out):
        return smoothed(keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y, (-1,)), "int32"), classes), out)

    return sparse_smoothed


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


def evaluate(net, model, x, y, smoothing: float = 0.0) -> tuple[float, float]:
    """(mean loss, accuracy) of an uncompiled ``model`` (``netdsl evaluate``): compiled with the
    trainer's own loss first, so the test loss is the one training reported."""
    with backend._calm():
        model.compile(
            loss=loss(recipe.output_kind(net.graph), smoothing, int(net.output_shape[-1])), metrics=["accuracy"]
        )
        r = model.evaluate(
            np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64), batch_size=EVAL_BATCH, verbose=0
        )
    return float(r[0]), float(r[1])


class Trainer:
    """One compiled Keras model and the training set (numpy, channels last)."""

    def __init__(self, net, s, device: str, x_train, y_train, model=None):
        self.s, self.device = s, device
        keras_scale.threads(s.threads)
        self.strategy = keras_scale.strategy(s)  # --distribute: everything below in its scope
        keras.utils.set_random_seed(s.seed)  # the initial weights
        with self._scope(), keras_scale.policy(s, device):
            self.model = model if model is not None else backend.build(net, device=None if self.strategy else device)
            self.steps = -(-len(y_train) // s.batch)
            self.schedule = Schedule(s, self.steps)
            opt = optimizer(s.optimizer, self.schedule, s.momentum, s.nesterov, s.weight_decay, s.clip_norm)
        self.lr_scale = 1.0  # the plateau schedule's, set by the loop before each epoch
        self.kept: dict = {}  # tensors saved with the optimizer state: the best weights of early stopping
        self.scaled = keras_scale.described(s, self.strategy)
        classes = int(net.output_shape[-1])
        with self._scope(), self._on_device(), backend._calm():
            self.model.compile(
                optimizer=opt,
                loss=loss(recipe.output_kind(net.graph), s.label_smoothing, classes),
                metrics=[s.metrics],
                # --compile: XLA required; else Keras's default ("auto": XLA when every layer supports it)
                jit_compile=True if s.compile else "auto",
            )
        self.x = np.ascontiguousarray(x_train, dtype=np.float32)
        self.y = np.asarray(y_train, dtype=np.int64)

    def _scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def _on_device(self):
        if self.strategy is not None:  # the strategy places the replicas
            return contextlib.nullcontext()
        return tf.device(self.device) if self.device else contextlib.nullcontext()

    def train_epoch(self, seed: int, bar, epoch: int = 1) -> tuple[float, float]:
        """One pass; the optimizer's step count (saved in checkpoints) drives the schedule."""
        self.schedule.scale.assign(self.lr_scale)
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
        tensors.update({f"kept.{k}": v for k, v in self.kept.items()})
        return tensors, {"kind": type(opt).__name__, "paths": [v.path for v in vs]}

    def load_optimizer_state(self, tensors: dict, plain: dict) -> None:
        from ..errors import NetdslError

        opt = self.model.optimizer
        if not opt.built:
            opt.build(self.model.trainable_variables)
        vs = opt.variables
        self.kept = {k[5:]: v for k, v in tensors.items() if k.startswith("kept.")}
        tensors = {k: v for k, v in tensors.items() if not k.startswith("kept.")}
        if plain.get("kind") != type(opt).__name__ or len(vs) != len(tensors):
            raise NetdslError("E603", f"the checkpoint's optimizer state does not fit this {type(opt).__name__}")
        for i, v in enumerate(vs):
            t = tensors[f"{i}"]
            if tuple(t.shape) != tuple(v.shape):
                raise NetdslError("E603", f"optimizer variable `{v.path}` has shape {t.shape} in the checkpoint")
            v.assign(t.astype(v.dtype))

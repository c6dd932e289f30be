"""The keras trainer's opt-in speed and ``tf.distribute`` (see :mod:`netdsl.scale`).

``--distribute`` builds and compiles the model in a strategy's scope: with ``TF_CONFIG`` set,
``tf.distribute.MultiWorkerMirroredStrategy`` (one process per machine, each started with its
own ``TF_CONFIG``); else ``tf.distribute.MirroredStrategy`` over the visible GPUs, or over the
logical CPU devices (one CPU device: a strategy of one replica).  As in Keras, ``--batch`` is
the global batch, split over the replicas.  ``--compile`` is ``jit_compile=True`` (XLA);
``--precision bf16`` the ``mixed_bfloat16`` policy, fp16 (``mixed_float16``, with Keras's
loss scaling) on a GPU only.
"""

from __future__ import annotations

import contextlib
import os

# isort: off
from . import keras as backend  # noqa: F401  (sets KERAS_BACKEND and quietens TensorFlow first)
import keras
import tensorflow as tf
# isort: on

from .. import scale
from ..errors import NetdslError


def threads(n: int | None) -> None:
    """TensorFlow's intra- and inter-op pools at ``n`` threads; once TensorFlow's runtime has
    started it keeps its pools (metrics.json's ``threads`` says which it used)."""
    if not n:
        return
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)


def strategy(s):
    """The tf.distribute strategy ``s`` asks for, or None."""
    if not s.distribute:
        return None
    if os.environ.get("TF_CONFIG"):
        scale.tf_config(os.environ["TF_CONFIG"])  # E633 before TensorFlow reads it
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)


def policy(s, device: str | None):
    """A context building the model under the precision's dtype policy (E631 where unsupported)."""
    if s.precision == "fp32":
        return contextlib.nullcontext()
    gpu = bool(tf.config.list_logical_devices("GPU")) and not (device or "").upper().endswith(("CPU:0", "CPU"))
    if s.precision == "fp16" and not gpu:
        raise NetdslError(
            "E631",
            "--precision fp16 needs a GPU (mixed_float16 with loss scaling); the device is the CPU",
            hint="on the CPU use --precision bf16",
        )
    return _policy("mixed_bfloat16" if s.precision == "bf16" else "mixed_float16")


@contextlib.contextmanager
def _policy(name: str):
    before = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(before)


def described(s, strat) -> dict:
    """What metrics.json records of the threads and the replicas."""
    out: dict = {"threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()}
    if strat is not None:
        n = strat.num_replicas_in_sync
        out["distributed"] = {
            "strategy": type(strat).__name__,
            "replicas": n,
            "global_batch": s.batch,
            "batch_per_replica": s.batch // n if s.batch % n == 0 else s.batch / n,
        }
    return out

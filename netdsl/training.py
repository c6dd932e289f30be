"""Training a checked net on MNIST or Fashion-MNIST, in PyTorch or tf.keras.

``netdsl train FILE`` and :func:`train` run one loop (:func:`_fit`) over a small
per-backend trainer (:mod:`netdsl.backends.torch_train`, :mod:`netdsl.backends.keras_train`).

Settings come from, in rising order: the defaults below (the Keras tutorial's loss,
metric and validation split; Keras's ``fit`` defaults of 1 epoch and batch 32; Adam),
the spec's ``train``/``data`` lines, then the command line or keyword arguments.
A learning rate belongs to its optimizer: the spec's ``lr`` is dropped when the
command line picks another optimizer, which then starts from Keras's default rate.

The run directory (``--out``; the CLI's default is ``runs/<stem>-<backend>-<time>``;
:mod:`netdsl.rundir` keeps it to what netdsl wrote and checks checkpoints before use)::

    netdsl-run.json            the marker, written first: netdsl writes into no other directory
    spec.net, summary.txt      the spec as given and its layer table
    metrics.json               settings, device, data, one record per epoch (loss,
                               accuracy, val_loss, val_accuracy, seconds, images_per_sec),
                               then test_loss, test_accuracy, train_images_per_sec;
                               rewritten atomically after every epoch
    checkpoint/latest.json     the checkpoint's manifest: epoch, settings, history, the
                               optimizer's plain values and the sha256 of the two files
    checkpoint/epoch-N.weights.safetensors     the weights (netdsl's file, either framework)
    checkpoint/epoch-N.optimizer.safetensors   the optimizer's tensors
    weights.safetensors        the trained weights (``Net.load_weights`` reads them)
    curves.png                 loss and accuracy per epoch, training vs validation

A checkpoint's files are written first (temporary file, fsync, rename), the manifest
last, in the same way; a file the manifest does not name, or whose sha256 differs, is
never read, so a run killed at any instant leaves the previous checkpoint usable.
Randomness is drawn per epoch from ``(seed, epoch)`` (the shuffle order, dropout), so
a resumed torch run on the CPU ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import recipe, scale, train_guards
from . import settings as table
from .errors import NetdslError, Source, did_you_mean
from .files import write_atomic as _write
from .rundir import RunDir, _pause

# Keras's default learning rate of each optimizer
OPTIMIZER_LR = {name: o["lr"] for name, o in table.OPTIMIZERS.items()}
CLASSES = 10
IMAGE = (28, 28, 1)


@dataclass
class Settings:
    """What one training run does; ``train(net, **settings)`` takes these names."""

    backend: str = "torch"
    optimizer: str = "adam"
    lr: float | None = None  # None: the optimizer's Keras default (OPTIMIZER_LR)
    epochs: int = 1  # Keras fit's default
    batch: int = 32  # Keras fit's default
    validation: float = 0.1  # the last fraction of the training set, as Keras's validation_split
    loss: str = "sparse_categorical_crossentropy"
    metrics: str = "accuracy"
    seed: int = 0
    # the recipe (netdsl.settings has each key's range; None: the optimizer's/schedule's default)
    momentum: float | None = None  # sgd
    nesterov: bool | None = None  # sgd
    weight_decay: float | None = None  # decoupled; adamw's default 0.004, others 0
    clip_norm: float | None = None  # the gradients' global norm
    label_smoothing: float = 0.0
    patience: int | None = None  # early stopping on val_loss, restoring the best weights
    schedule: str = "constant"
    gamma: float | None = None  # step, exponential, plateau
    step_size: int | None = None  # step, in epochs
    min_lr: float | None = None  # cosine, plateau
    lr_patience: int | None = None  # plateau
    warmup: int = 0  # epochs
    dataset: str = "mnist"
    data: str | None = None  # a directory holding the data set's files, an image folder or an .npz
    resize: bool = False  # image folders: scale images to the net's input (else a size mismatch is E613)
    scale: bool = True  # pixels in [0, 1]; False keeps 0..255 as the tutorial did
    device: str | None = None  # None: the best found
    out: str | None = None  # the run directory; None writes nothing
    resume: bool = False
    quiet: bool = False
    init_from: str | None = None  # weights (a file or a run directory) to start from, name-matched
    init_map: list | None = None  # "old=new" renamings of init_from's nodes
    # speed (netdsl.scale): they change how fast, not what is trained, so a resumed run may change them
    threads: int | None = None  # torch/TensorFlow CPU threads; None: the idle cores (netdsl train) or the framework's
    compile: bool = False  # torch.compile / Keras jit_compile=True
    precision: str = "fp32"  # fp32, bf16 (autocast), fp16 (autocast + GradScaler, CUDA only)
    channels_last: bool = False  # torch: NHWC memory format for conv nets
    distribute: bool = False  # keras: tf.distribute.MirroredStrategy (MultiWorkerMirroredStrategy with TF_CONFIG)


_SETTINGS = tuple(f.name for f in dataclasses.fields(Settings))
# settings that describe the experiment: a resumed run must keep them
_SPEED = ("threads", "compile", "precision", "channels_last", "distribute")
_KEPT = tuple(k for k in _SETTINGS if k not in ("epochs", "device", "data", "out", "resume", "quiet", *_SPEED))
_CHECKED = tuple(k for k in _SETTINGS if k in table.KEYS)  # the keys of netdsl.settings' table


def _bad(message: str, hint: str | None = None) -> NetdslError:
    return NetdslError("E601", message, hint=hint)


def resolve(net, given: dict, saved: dict | None = None) -> Settings:
    """Defaults < the spec's train/data lines < ``given`` (or, resuming, ``saved`` < ``given``).

    Every value is held to :mod:`netdsl.settings`' table, the same rules as the spec's
    ``train`` line (E601; E501 for a data set, E403 for a device's name).
    """
    from .backends import ALIASES

    for key in given:
        if key not in _SETTINGS:
            hint = did_you_mean(key, _SETTINGS)
            raise TypeError(f"train() got an unknown setting {key!r}" + (f" ({hint})" if hint else ""))
    given = {k: v for k, v in given.items() if v is not None}
    if saved is None:
        base = dict(net.train_config)
        if "optimizer" in given and _norm(given["optimizer"]) != base.get("optimizer", "adam"):
            for key in ("lr", "momentum", "nesterov"):  # the spec's values were for the spec's optimizer
                base.pop(key, None)
        if "schedule" in given and _norm(given["schedule"]) != base.get("schedule", "constant"):
            for key in ("gamma", "step_size", "min_lr", "lr_patience"):
                base.pop(key, None)
        merged = {**base, **given}
    else:
        for key in _KEPT:
            if key in given and key in saved and _norm(given[key]) != _norm(saved[key]):
                raise NetdslError(
                    "E603",
                    f"the checkpoint was made with {key}={saved[key]!r}, not {given[key]!r}",
                    hint="a resumed run keeps its settings (only epochs, device and data may change)",
                )
        merged = {**saved, **given}
    s = Settings(**{k: v for k, v in merged.items() if k in _SETTINGS})
    for name in ("data", "out", "init_from"):  # paths: str or os.PathLike
        if getattr(s, name) is not None:
            setattr(s, name, os.fspath(getattr(s, name)))
    if s.data not in (None, ""):  # recorded absolute: evaluate may run from another directory
        s.data = os.path.abspath(os.path.expanduser(s.data))
    s.backend = ALIASES.get(str(s.backend).lower(), str(s.backend).lower())
    if s.backend not in ("torch", "keras"):
        raise NetdslError("E401", f"unknown backend `{s.backend}` (known: torch, keras)")
    for key in _CHECKED:
        value = getattr(s, key)
        if value is None:
            continue
        result = table.normalise(key, value)
        if isinstance(result, table.Problem):
            code = {"dataset": "E501", "device": "E403"}.get(key, "E601")
            raise NetdslError(code, result.message, hint=result.hint)
        setattr(s, key, result)
    written = {k: getattr(s, k) for k in _CHECKED if getattr(s, k) is not None and k not in ("device", "dataset")}
    for _key, problem in table.conflicts(written, flagged=given):  # given: the caller's flags
        raise _bad(problem.message, problem.hint)
    for key, value in table.defaults(s.optimizer, s.schedule).items():
        if getattr(s, key) is None:
            setattr(s, key, value)
    if s.lr is not None and s.min_lr is not None and s.min_lr >= s.lr:  # the defaults, crossed
        raise _bad(f"min_lr must be below lr ({s.lr:g}), got {s.min_lr:g}")
    scale.check(s)  # the speed options (E63x)
    return s


def _norm(v):
    return v.lower() if isinstance(v, str) else v


def check_net(net) -> None:
    """The net must take 28x28x1 images and give 10 class scores, as MNIST (E602, at the spec's line)."""
    from .datasets import check

    check(net, IMAGE, CLASSES, "MNIST")


def _curves(metrics: dict, path: Path) -> None:
    """Loss and accuracy per epoch, training vs validation, as a PNG."""
    import io

    buf = io.BytesIO()
    _figure(metrics).savefig(buf, format="png")
    _write(path, buf.getvalue())


def _figure(metrics: dict):
    """The curves' matplotlib Figure (Agg, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = metrics["epochs"]
    x = [r["epoch"] for r in rows]
    with_lr = all(r.get("lr") is not None for r in rows)  # runs made before the lr was recorded have none
    fig = Figure(figsize=(15 if with_lr else 10, 4), dpi=100)
    FigureCanvasAgg(fig)
    if with_lr:
        ax = fig.add_subplot(1, 3, 3)
        rates = [r["lr"] for r in rows]
        ax.plot(x, rates, "o-", color="tab:green")
        if min(rates) > 0 and max(rates) >= 10 * min(rates):  # a step schedule's decades
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate (at the epoch's end)")
        ax.grid(alpha=0.3)
    for i, (key, label) in enumerate((("loss", "loss"), ("accuracy", "accuracy"))):
        ax = fig.add_subplot(1, 3 if with_lr else 2, i + 1)
        ax.plot(x, [r[key] for r in rows], "o-", label="training")
        if any(r[f"val_{key}"] is not None for r in rows):
            ax.plot(x, [r[f"val_{key}"] for r in rows], "o-", label="validation")
        ax.set_xlabel("epoch")
        if len(x) <= 12:  # epochs are whole numbers: a tick on each (one epoch alone gets room around it)
            ax.set_xticks(x)
            if len(x) == 1:
                ax.set_xlim(x[0] - 0.5, x[0] + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    test = metrics.get("test_accuracy")
    title = f"{metrics['net']} ({metrics['backend']}) on {_data_title(metrics['data'])}"
    fig.suptitle(title + (f": test accuracy {test:.4f}" if test is not None else ""))
    fig.tight_layout()
    return fig


def _data_title(d: dict) -> str:
    """The data actually used: "MNIST sample (5,000 digits)", "Fashion-MNIST (70,000 images)"."""
    name = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}.get(
        d.get("name"), str(d.get("name"))
    )
    total = sum(d.get(k) or 0 for k in ("train", "validation", "test"))
    return f"{name} sample ({total:,} digits)" if d.get("sample") else f"{name} ({total:,} images)"


# ---- progress ----------------------------------------------------------------------------


class Progress:
    """Keras's look: on a terminal a live bar per epoch; otherwise one line per epoch."""

    WIDTH = 30

    def __init__(self, epochs: int, steps: int, quiet: bool, stream=None):
        self.stream = stream or sys.stdout
        self.epochs, self.steps, self.quiet = epochs, steps, quiet
        self.live = not quiet and self.stream.isatty()
        self.t0 = self.last = 0.0

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def start(self, epoch: int) -> None:
        self.t0 = self.last = time.perf_counter()
        if self.live:
            self.say(f"Epoch {epoch}/{self.epochs}")

    def due(self) -> bool:
        """Time to redraw the bar (at most ten times a second)?"""
        return self.live and time.perf_counter() - self.last >= 0.1

    def update(self, step: int, loss: float, accuracy: float) -> None:
        self.last = now = time.perf_counter()
        eta = (now - self.t0) / step * (self.steps - step)
        done = self.WIDTH * step // self.steps
        bar = "=" * done + (">" if done < self.WIDTH else "") + "." * (self.WIDTH - done - 1)
        text = f"\r{step:{len(str(self.steps))}d}/{self.steps} [{bar}] - ETA: {eta:.0f}s - loss: {loss:.4f} - accuracy: {accuracy:.4f}"
        self.stream.write(text + "\x1b[K")
        self.stream.flush()

    def end(self, row: dict) -> None:
        ms = 1000 * row["train_seconds"] / self.steps
        scores = f"loss: {row['loss']:.4f} - accuracy: {row['accuracy']:.4f}"
        if row["val_loss"] is not None:
            scores += f" - val_loss: {row['val_loss']:.4f} - val_accuracy: {row['val_accuracy']:.4f}"
        if self.live:
            bar = "=" * self.WIDTH
            self.stream.write(
                f"\r{self.steps}/{self.steps} [{bar}] - {row['seconds']:.1f}s {ms:.0f}ms/step - {scores}\x1b[K\n"
            )
            self.stream.flush()
        else:
            self.say(f"Epoch {row['epoch']}/{self.epochs} - {row['seconds']:.1f}s {ms:.0f}ms/step - {scores}")


# ---- the loop ------------------------------------------------------------------------------


def _per_class(s: Settings, model, ds) -> dict:
    """The test set's per-class accuracy and confusion matrix (rows: true class), for metrics.json."""
    from . import backends
    from .evaluate import scores

    result = scores(backends.get(s.backend).predict(model, ds.x_test), ds.y_test, len(ds.class_names))
    return {k: result[k] for k in ("per_class_accuracy", "confusion")}


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's randomness (shuffle order, dropout): the same on a resume."""
    return (seed * 1_000_003 + epoch + 1) % 2**31


def _trainer(backend: str):
    """The backend's trainer module, imported now (E402 with the install hint when missing)."""
    from . import backends

    backends.get(backend)
    if backend == "torch":
        from .backends import torch_train as mod
    else:
        from .backends import keras_train as mod  # type: ignore[no-redef]
    return mod


def train(net, backend: str | None = None, *, model=None, verbose: bool = False, on_epoch=None, **settings) -> dict:
    """Train ``net`` (a :class:`~netdsl.net.Net` or a path to a spec) and return its metrics.

    ``backend`` is ``"torch"`` (the default) or ``"keras"``.  ``settings`` are
    :class:`Settings`' fields (``epochs=3, batch=64, lr=1e-3, data="dir"``); unset ones come
    from the spec's train/data lines, then the defaults.  ``out="runs/first"`` writes the
    run directory (nothing is written without it), and ``resume=True`` continues it.
    ``model``, if given, is trained in place (else a new one is built from ``seed``).
    ``verbose=True`` prints what ``netdsl train`` prints; by default nothing is printed.
    ``on_epoch(epoch, row)``, if given, runs after each epoch with its metrics row; a true
    result stops training there (``netdsl sweep`` prunes a poor trial so).
    The result is what ``metrics.json`` holds.  Bad settings raise :class:`NetdslError`
    before training; so do a damaged run directory and a loss that becomes NaN (E604).
    """
    if not hasattr(net, "graph"):
        from .net import load

        net = load(net)
    if settings.get("quiet") is None:
        settings["quiet"] = not verbose
    arrays = None
    if settings.get("data") is not None and not isinstance(settings["data"], (str, os.PathLike)):
        arrays = settings.pop("data")  # numpy arrays: (x_train, y_train, x_test, y_test) or a dict
    return _fit(net, {"backend": backend, **settings}, model, on_epoch, arrays)


def _fit(net, given: dict, model=None, on_epoch=None, arrays=None) -> dict:
    world = scale.World.current()  # under torchrun: only rank 0 reads and writes the run directory
    if world.size > 1:
        given = {**given, "quiet": given.get("quiet") or not world.main}
    run = RunDir(given.get("out") if world.main else None)
    try:
        return _fit_in(run, net, given, model, world, on_epoch, arrays)
    except (MemoryError, RuntimeError) as e:  # (TensorFlow's ResourceExhaustedError is neither)
        why = train_guards.out_of_memory(e)
        if why is None:
            raise
        raise train_guards.too_big(net, why) from None
    except Exception as e:
        if type(e).__name__ != "ResourceExhaustedError":
            raise
        raise train_guards.too_big(net, train_guards.out_of_memory(e)) from None
    finally:
        run.release()


def _threads_chosen(run: RunDir) -> bool:
    """Whether the run's metrics.json records a thread count netdsl chose (not --threads)."""
    import json

    try:
        return json.loads((Path(run.path) / "metrics.json").read_text(encoding="utf-8")).get("threads_chosen") is True
    except (OSError, ValueError, AttributeError):
        return False


def _open(run: RunDir, net, given: dict, arrays=None) -> tuple[dict | None, Settings, dict | None]:
    """(the checkpoint's manifest or None, the settings, the metrics of a run already complete or None)."""
    manifest = None
    restart = None  # the settings of a run stopped before its first checkpoint
    restarting = False  # --resume of a run that has no checkpoint yet: it starts over
    train_guards.check_trainable(net)  # E606: nothing to train
    train_guards.check_memory(net)  # E607: the weights alone exceed the machine's memory
    if given.get("resume") and given.get("init_from"):
        raise NetdslError("E601", "--init-from starts a new run from those weights; --resume continues a run's own")
    if given.get("resume"):
        if not run:
            raise NetdslError("E603", "resume needs the run directory (--out DIR)")
        run.check_resumable(net)
        manifest = run.checkpoint_manifest()  # E603 when one is there but damaged: never discarded
        if manifest is None:
            if run.has_spec() and not run.same_spec(net):
                raise NetdslError(
                    "E603", f"`{run.path}` holds a run of a different spec", hint="resume with its spec.net"
                )
            restart, restarting = run.started_settings(net), True
            if restart and _threads_chosen(run):
                restart["threads"] = None  # chosen for the machine as it was: choose again
    s = resolve(net, given, manifest["settings"] if manifest else restart)
    from . import datasets

    datasets.precheck(net, s, arrays)  # a standard data set's shape and classes, before any download
    done = None
    if manifest:
        if not run.same_spec(net):
            raise NetdslError("E603", f"`{run.path}` holds a run of a different spec", hint="resume with its spec.net")
        if manifest["epoch"] > s.epochs:
            raise _bad(f"the checkpoint is at epoch {manifest['epoch']}, past epochs={s.epochs}")
        done = run.finished() if manifest["epoch"] == s.epochs else None
    elif not restarting:
        run.check_fresh(net)
    return manifest, s, done


def _fit_in(run: RunDir, net, given: dict, model, world: scale.World, on_epoch=None, arrays=None) -> dict:
    from . import __version__, datasets

    if world.size == 1:
        manifest, s, done = _open(run, net, given, arrays)
    else:  # rank 0 opens the run directory; every rank goes on with its answer (or its error)
        from .backends import torch_scale

        torch_scale.join(given.get("device"))
        manifest, s, done = torch_scale.on_main(lambda: _open(run, net, given, arrays), world)
        s.quiet = given["quiet"]  # (rank 0's settings, this rank's voice)
    from .transfer import Start

    start = Start.of(net, s.init_from, s.init_map) if not manifest else None  # read and checked before the data
    if done is not None:  # nothing to train, test or write
        if not s.quiet:
            acc = done.get("test_accuracy")
            acc = f", test accuracy {acc:.4f}" if isinstance(acc, (int, float)) else ""
            print(
                f"{run.path} is complete: {s.epochs} of {s.epochs} epochs{acc}; nothing to do "
                f"(--epochs {s.epochs + 1} or more trains it further)",
                flush=True,
            )
        return done
    mod = _trainer(s.backend)
    device = mod.device(s.device)  # E403 for a device this machine lacks
    ds = datasets.load(net, s, arrays)
    split = math.ceil(len(ds.x_train) * (1 - s.validation))  # Keras's validation_split
    x_train, y_train, x_val, y_val = ds.x_train[:split], ds.y_train[:split], ds.x_train[split:], ds.y_train[split:]
    if len(x_train) == 0:
        raise _bad(f"validation={s.validation} leaves no training images")
    before = (manifest or {}).get("data", {})  # checked: train and validation are counts
    if manifest and (before.get("train"), before.get("validation")) != (len(x_train), len(x_val)):
        raise NetdslError(
            "E603",
            f"the checkpoint was trained on {before.get('train'):,} images from {before.get('source')}; "
            f"the data found now ({ds.source}) gives {len(x_train):,}",
            hint="resume with the same data (--data DIR)",
        )

    trainer = mod.Trainer(net, s, device, x_train, y_train, model=model)
    if start is not None:
        start.apply(net, trainer.model)
    metrics = {
        "netdsl": __version__,
        "spec": net.source.filename,
        "net": net.name,
        "params": net.total_params,
        "backend": s.backend,
        "device": trainer.device,
        "settings": dataclasses.asdict(s),
        "data": {
            "name": ds.name,
            "source": ds.source,
            "sample": ds.sample,
            "train": len(x_train),
            "validation": len(x_val),
            "test": len(ds.x_test),
            **datasets.describe(ds, s),
        },
        "epochs": [],
        "complete": False,
    }
    for key in ("out", "resume", "quiet") + (() if s.resize else ("resize",)):  # resize: only when asked
        metrics["settings"].pop(key)
    metrics.update(getattr(trainer, "scaled", {}))  # threads, and the ranks under torchrun
    if s.threads is None and isinstance(metrics.get("threads"), int):
        metrics["settings"]["threads"] = metrics["threads"]  # the count netdsl (or the framework) chose
        metrics["threads_chosen"] = True  # not asked for: a resumed run chooses again for its machine
    if manifest:
        if run:
            run.load_checkpoint(net, trainer, manifest)
        if world.size > 1:
            trainer.sync_from_main()
        metrics["epochs"] = manifest["epochs"]
    else:
        run.start(net)
    steps = trainer.steps  # (per rank under torchrun)
    watch = recipe.Watch(s, (manifest or {}).get("recipe"))
    bar = Progress(s.epochs, steps, s.quiet)
    bar.say(
        f"{net.name}: {net.total_params:,} params, {s.backend} on {trainer.device}; {recipe.describe(s)}, "
        f"{s.epochs} epoch{'s' * (s.epochs != 1)}, batch {s.batch}, seed {s.seed}"
        + scale.header(s, getattr(trainer, "scaled", {}))
    )
    bar.say(
        f"data: {ds.name} from {ds.source}: {len(x_train):,} train, {len(x_val):,} validation, {len(ds.x_test):,} test"
    )
    if manifest:
        bar.say(f"resuming {run.path} after epoch {manifest['epoch']}")
    if start is not None:
        bar.say(f"init from {s.init_from}: " + str(start.report).replace("\n", "\n  "))
    if run:
        run.write_metrics(metrics)
        _pause("metrics")

    for epoch in range(len(metrics["epochs"]) + 1, s.epochs + 1):
        if watch.stopped:
            break
        bar.start(epoch)
        t0 = time.perf_counter()
        trainer.lr_scale = watch.scale
        loss, acc = trainer.train_epoch(epoch_seed(s.seed, epoch), bar, epoch)
        t1 = time.perf_counter()
        val_loss, val_acc = trainer.evaluate(x_val, y_val) if len(x_val) else (None, None)
        _check_finite(trainer, s, epoch, loss, val_loss, run)
        row = {
            "epoch": epoch,
            "loss": loss,
            "accuracy": acc,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "seconds": round(time.perf_counter() - t0, 3),
            "train_seconds": round(t1 - t0, 3),
            "images_per_sec": round(len(x_train) / (t1 - t0), 1),
            "lr": recipe.lr_at(s, epoch * steps - 1, steps, watch.scale),  # at the epoch's last step
        }
        metrics["epochs"].append(row)
        bar.end(row)
        watch.update(epoch, row, lambda: trainer.kept.update(recipe.snapshot(s.backend, net, trainer.model)))
        state = {k: metrics[k] for k in ("settings", "data", "epochs")}
        state["settings"] = {**metrics["settings"], "threads": s.threads}  # as asked: None is chosen again
        state["recipe"] = watch.state()
        try:
            run.save_checkpoint(net, trainer, epoch, state)
        except NetdslError as e:
            if e.code == "E302":  # NaN weights after a finite loss: the last step diverged
                raise _diverged(s, epoch, "the weights", None, run) from None
            raise
        run.write_metrics(metrics)
        if watch.stopped:
            bar.say(f"early stopping: {watch.monitor} has not improved for {s.patience} epochs")
        if on_epoch is not None and on_epoch(epoch, row):  # the caller's stop (netdsl sweep's pruner)
            metrics["stopped_by_caller"] = epoch
            break

    if s.patience and trainer.kept:  # Keras's EarlyStopping(restore_best_weights=True)
        from . import backends

        backends.get(s.backend).set_weights(trainer.model, net, trainer.kept)
        if watch.best_epoch != metrics["epochs"][-1]["epoch"]:
            bar.say(f"restored the weights of epoch {watch.best_epoch}, the best {watch.monitor}")
        metrics.update(best_epoch=watch.best_epoch, stopped_early=watch.stopped)

    test_loss, test_acc = trainer.evaluate(ds.x_test, ds.y_test)
    metrics.update(_per_class(s, trainer.model, ds))
    train_time = sum(r["train_seconds"] for r in metrics["epochs"])
    metrics.update(
        test_loss=test_loss,
        test_accuracy=test_acc,
        train_images_per_sec=round(len(x_train) * len(metrics["epochs"]) / train_time, 1) if train_time else None,
        complete=True,
    )
    run.write_results(net, trainer.model, metrics, _curves, s.quiet)
    bar.say(f"Test accuracy: {test_acc:.4f} - test_loss: {test_loss:.4f} ({len(ds.x_test):,} images)")
    if run:
        bar.say(f"wrote {run.path}{os.sep} (metrics.json, weights.safetensors, curves.png, checkpoint/)")
    return metrics


def _check_finite(trainer, s: Settings, epoch: int, loss: float, val_loss: float | None, run: RunDir) -> None:
    """A loss that became NaN or infinite ends the run here, naming the first bad step."""
    if math.isfinite(loss) and (val_loss is None or math.isfinite(val_loss)):
        return
    step = trainer.first_nonfinite_step() if not math.isfinite(loss) else None
    bad = loss if not math.isfinite(loss) else val_loss
    raise _diverged(s, epoch, f"the {'validation ' * (bad is val_loss)}loss", step, run, bad)


def _diverged(s: Settings, epoch: int, what: str, step, run: RunDir, value: float = math.nan) -> NetdslError:
    became = "NaN" if math.isnan(value) else "infinite"
    where = f"epoch {epoch}" + (f", step {step}" if step else "")
    kept = f"; the checkpoint of epoch {run.saved_epoch} is kept" if run and run.saved_epoch else ""
    return NetdslError(
        "E604",
        f"training diverged: {what} became {became} at {where} ({s.optimizer} lr={s.lr:g}){kept}",
        hint="lower the learning rate (--lr), or check the data's scale (--raw-pixels gives 0..255)",
    )


# ---- the command ---------------------------------------------------------------------------


def default_out(spec: str, backend: str) -> str:
    stem = Path(spec).stem if not spec.startswith("<") else "net"
    return os.path.join("runs", f"{stem}-{backend}-{time.strftime('%Y%m%d-%H%M%S')}")


def latest_run(spec: str, backend: str | None) -> str | None:
    """The newest run ``runs/<stem>-<backend>-<time>`` (what a bare --resume continues)."""
    stem = Path(spec).stem if not spec.startswith("<") else "net"
    pattern = re.compile(re.escape(f"{stem}-") + f"({backend or 'torch|keras'})" + r"-(\d{8}-\d{6})\Z")
    runs = Path("runs")
    found = []
    for p in runs.iterdir() if runs.is_dir() else ():
        m = pattern.match(p.name)
        if m and ((p / "checkpoint" / "latest.json").exists() or (p / "netdsl-run.json").exists()):
            found.append((m.group(2), str(p)))
    return max(found)[1] if found else None


def _cpu_busy(seconds: float = 0.1) -> float | None:
    """How many CPUs other processes keep busy now (from /proc/stat over ``seconds``), or None."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + (values[4] if len(values) > 4 else 0)  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def spare_busy_cores(backend: str = "torch", threads: int | None = None) -> int | None:
    """Give the framework only the CPUs that are idle now (the command line's runs).

    torch's intra-op threads spin while they wait: on a 2-core machine with one core busy,
    2 threads made an epoch of LeNet-5 on the sample take 8-21 s instead of 0.5-0.75 s with
    1 thread.  On idle CPUs nothing changes; OMP_NUM_THREADS, when set, wins, and ``threads``
    (--threads) wins over both.  TensorFlow (keras) gets the same count for its intra-op pool.
    Returns the thread count set, or None when it was left alone.
    """
    explicit = threads is not None
    if not explicit:
        if "OMP_NUM_THREADS" in os.environ or not hasattr(os, "sched_getaffinity"):
            return None
        busy = _cpu_busy()
        if busy is None:
            return None
        free = len(os.sched_getaffinity(0)) - busy
        threads = max(1, math.floor(free + 0.5))
    if backend == "keras":
        # isort: off
        from .backends import keras as _  # noqa: F401  (sets KERAS_BACKEND, quietens TensorFlow first)
        import tensorflow as tf
        # isort: on

        if not explicit and threads >= len(os.sched_getaffinity(0)):
            return None  # every core idle: TensorFlow's own choice
        try:  # only before TensorFlow's runtime starts (nothing has run yet here)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            return None
        return threads
    import torch

    threads = threads if explicit else min(torch.get_num_threads(), threads)
    if threads == torch.get_num_threads():
        return None
    torch.set_num_threads(threads)
    return threads


def cli(args, params: dict) -> int:
    """``netdsl train``: the parsed arguments (see netdsl.cli) -> an exit code."""
    from .net import compile_source, read_spec

    try:
        source = read_spec(args.file)
        stem = "net" if source.filename.startswith("<") else Path(source.filename).stem or "net"
        net = compile_source(source, params, args.input, stem)
    except NetdslError as e:
        if args.traceback:
            raise
        print(str(e), file=sys.stderr)
        return 1
    try:
        world = scale.World.current()  # under torchrun: RANK, WORLD_SIZE
    except NetdslError as e:
        print(str(e.located(Source("", "netdsl train"))), file=sys.stderr)
        return 1
    out = args.out
    if out is None:
        if args.resume:
            out = latest_run(source.filename, args.backend)
            if out is None and not world.main:
                out = "runs"  # (only rank 0 reads the run directory)
            if out is None:
                print(f"netdsl train: error[E603]: no run of `{stem}` to resume under runs/", file=sys.stderr)
                print("  hint: name the run directory with --out DIR", file=sys.stderr)
                return 1
        else:
            out = default_out(source.filename, args.backend or "torch")
    if args.nproc is not None and world.size == 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return scale.launch_cli(args, out)
    given = {
        "backend": args.backend,
        **{k: getattr(args, k) for k in _SPEED},
        **{k.name: getattr(args, k.name) for k in table.flags()},
        "data": args.data,
        "resize": True if getattr(args, "resize", False) else None,
        "scale": False if args.raw_pixels else None,
        "out": out,
        "resume": args.resume,
        "quiet": args.quiet,
        "init_from": args.init_from,
        "init_map": list(args.map) or None,
    }
    try:
        backend = "torch" if str(args.backend or "torch").lower() in ("torch", "pytorch") else "keras"
        with contextlib.suppress(ImportError):  # (no framework: E402 follows from _fit)
            spare_busy_cores(backend, args.threads)
        _fit(net, given)
    except NetdslError as e:
        if args.traceback:
            raise
        if e.source is None:
            e.located(Source("", "netdsl train"))
        if world.size == 1 or (world.main and os.environ.get("NETDSL_LAUNCHED")):
            print(str(e), file=sys.stderr)
        elif not os.environ.get("NETDSL_LAUNCHED"):  # (--nproc: one machine, one error: rank 0 says it)
            print(f"[rank {world.rank}] {e}", file=sys.stderr)
        return 1
    except scale.RankStopped:  # rank 0 reported why
        return 1
    except KeyboardInterrupt:
        if world.size > 1 and (not world.main or os.environ.get("NETDSL_LAUNCHED")):
            return 130  # rank 0 (or `netdsl train --nproc`, which launched the ranks) gives the advice
        # --resume works only once the directory is marked as a run; before that, start it again
        resumable = RunDir(out).is_ours()
        hint = scale.again(args, out, resumable)  # every flag the user gave
        advice = "continue with" if resumable else "nothing was written yet; start it again with"
        print(f"\nnetdsl: interrupted; {advice}: {hint}", file=sys.stderr)
        return 130
    except RuntimeError as e:  # torch.distributed's DistBackendError: another rank is gone
        if world.size == 1 or args.traceback:
            raise
        why = re.sub(r"^\[[^\]]*\] ", "", str(e).splitlines()[0] if str(e) else type(e).__name__)
        why = why.split(". ")[0][:160]
        if os.environ.get("NETDSL_LAUNCHED"):  # `netdsl train --nproc` names the rank that died
            print(f"netdsl train: [rank {world.rank}] lost the other ranks ({why})", file=sys.stderr)
        else:
            print(
                f"netdsl train: error[{scale.RANK_LOST}]: [rank {world.rank}] lost the other ranks ({why})",
                file=sys.stderr,
            )
            print("  hint: the last complete checkpoint resumes: add --resume", file=sys.stderr)
        return 1
    finally:
        if world.size > 1:
            with contextlib.suppress(ImportError):
                from .backends import torch_scale

                torch_scale.leave()
    return 0

"""The run directory of ``netdsl train``: only what netdsl wrote, checkpoints checked before use.

A run directory holds only files netdsl created.  ``netdsl-run.json`` (the marker) is
its first file: a new directory is made under a temporary name, marked, then renamed
into place, so a directory at the given path is either the user's (never written into
unless empty) or marked as a run.  A marked directory without a checkpoint (a run killed
before its first epoch ended) is taken over by a fresh start and started over by
``--resume``; one with a checkpoint is continued only by ``--resume``.  While a run
writes, it holds a lock on the marker, so two runs never share a directory.

Every checkpoint manifest is checked whole (types, names, the history's length, the
sha256 of its files) before anything is loaded or written; a bad one is refused with
the reason (E603) and nothing is discarded.  A failed write (a full disk, a file-size
limit) is E605 with the path, the partial files of that checkpoint are removed, and the
previous checkpoint stays usable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import math
import os
import re
import sys
import time
from pathlib import Path

from .errors import NetdslError
from .files import write_atomic as _write

FORMAT = "netdsl-checkpoint"
MARKER = "netdsl-run.json"
_NEW = ".netdsl-new"  # the suffix of a directory being created
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
# the names netdsl writes in checkpoint/ (and the temporary files of files.write_atomic):
# the clean-up after a checkpoint removes only these, never a user's file
_OURS = re.compile(r"\.?(epoch-\d+\.(weights|optimizer)\.safetensors|latest\.json)(\.\d+\.tmp)?\Z")
# what netdsl writes or deletes in a run directory: none of them may be a symbolic link
_WRITTEN = (MARKER, "checkpoint", "spec.net", "summary.txt", "metrics.json", "weights.safetensors", "curves.png")
_ROW = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "train_seconds")


def _pause(point: str) -> None:
    """Tests stop a real process here (NETDSL_TEST_PAUSE=point) to SIGKILL it at that instant."""
    if os.environ.get("NETDSL_TEST_PAUSE") == point:
        print(f"netdsl-test-paused {point}", file=sys.stderr, flush=True)
        time.sleep(600)


def _sha256(path: Path) -> str:
    """The file's sha256; "" for a device or FIFO put in its place (read_bytes never ended on /dev/zero)."""
    import stat

    if not stat.S_ISREG(os.stat(path).st_mode):  # (OSError, a missing file: the caller says so)
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _number(v, none: bool = False) -> bool:
    if v is None:
        return none
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class RunDir:
    """The files of one run (nothing is written when ``path`` is None)."""

    def __init__(self, path: str | os.PathLike | None):
        if path is not None and os.fspath(path) == "":
            raise NetdslError(
                "E603", "the run directory is empty text", hint="name a new or empty directory: --out runs/first"
            )
        self.path = Path(path) if path is not None else None
        self.saved_epoch = 0  # the last complete checkpoint on disk
        self._lock: int | None = None

    def __bool__(self) -> bool:
        return self.path is not None

    def _f(self, name: str) -> Path:
        assert self.path is not None
        return self.path / name

    # -- whose directory is it --------------------------------------------------------------

    def is_ours(self) -> bool:
        """Marked as a run (or an older netdsl's run: a checkpoint manifest of ours)."""
        if self.path is None or not self.path.is_dir():
            return False
        if self._f(MARKER).is_file():
            return True
        try:
            return json.loads(self._f("checkpoint/latest.json").read_text(encoding="utf-8"))["format"] == FORMAT
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return False

    def _not_ours(self) -> NetdslError:
        names = sorted(os.listdir(self.path))
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5:,} more" if len(names) > 5 else "")
        return NetdslError(
            "E603",
            f"`{self.path}` already exists and holds files netdsl did not write ({shown})",
            hint="a run directory holds only what netdsl writes: choose a new or empty directory with --out",
        )

    def refuse_links(self) -> None:
        """E603 naming a symbolic link where netdsl writes or deletes (it would act on its target)."""
        if self.path is None or not self.path.is_dir():
            return
        names = [*_WRITTEN, "checkpoint/latest.json"]
        ck = self._f("checkpoint")
        if ck.is_dir() and not ck.is_symlink():
            names += [f"checkpoint/{p.name}" for p in ck.iterdir() if _OURS.match(p.name)]
        for name in names:
            if self._f(name).is_symlink():
                raise NetdslError(
                    "E603",
                    f"`{self._f(name)}` is a symbolic link; netdsl writes and deletes only its own files in a run",
                    hint="remove the link (its target is left alone), or choose another --out",
                )

    def lock(self) -> None:
        """Hold the marker's lock for this run (E603 when another netdsl train holds it)."""
        if self._lock is not None or self.path is None or not self._f(MARKER).is_file():
            return
        self._lock = _lock_file(self._f(MARKER), self.path)

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing drops the lock
            self._lock = None

    def has_spec(self) -> bool:
        """Were both the spec and its summary written (the run got past its start)?"""
        return self.path is not None and self._f("spec.net").exists() and self._f("summary.txt").exists()

    def has_checkpoint(self) -> bool:
        return self.path is not None and self._f("checkpoint/latest.json").exists()

    def check_fresh(self, net) -> None:
        """A new run may not write over the user's files or another run."""
        if self.path is None or not self.path.exists():
            return
        if not self.path.is_dir():
            raise NetdslError("E603", f"--out `{self.path}` is a file, not a directory")
        if not self.is_ours():
            if any(self.path.iterdir()):
                raise self._not_ours()
            return
        self.refuse_links()
        self.lock()
        if not self.has_checkpoint():
            return  # a run killed before its first checkpoint: nothing to keep, start it over
        if not self.same_spec(net):
            raise NetdslError("E603", f"`{self.path}` holds a run of a different spec", hint="choose another --out")
        raise NetdslError(
            "E603",
            f"`{self.path}` already holds a run of this spec",
            hint="add --resume to continue it, or choose another --out",
        )

    def check_resumable(self, net) -> None:
        if self.path is None or not self.path.is_dir():
            raise NetdslError(
                "E603", f"there is no run directory `{self.path}` to resume", hint="start it without --resume"
            )
        if not self.is_ours():
            if any(self.path.iterdir()):
                raise self._not_ours()
            raise NetdslError("E603", f"`{self.path}` holds no run to resume", hint="start it without --resume")
        self.refuse_links()
        self.lock()

    def started_settings(self, net) -> dict | None:
        """The settings of a run of this spec that stopped before finishing an epoch."""
        try:
            if not self.same_spec(net):
                return None
            settings = json.loads(self._f("metrics.json").read_text(encoding="utf-8"))["settings"]
            return dict(settings) if isinstance(settings, dict) else None
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None

    def same_spec(self, net) -> bool:
        try:
            spec = self._f("spec.net").read_text(encoding="utf-8")
            summary = self._f("summary.txt").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return False
        return spec == net.source.text and summary == net.summary() + "\n"

    def finished(self) -> dict | None:
        """The metrics of a complete run, or None."""
        try:
            m = json.loads(self._f("metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # (JSON nested 100,000 deep: RecursionError)
            return None
        return m if isinstance(m, dict) and m.get("complete") is True else None

    # -- writing ----------------------------------------------------------------------------

    def start(self, net) -> None:
        """Create (or take over) the directory: the marker first, then the spec and its summary."""
        if self.path is None:
            return
        try:
            if not self.path.exists():
                self._create()
            elif not self._f(MARKER).exists():  # an empty directory, or an older netdsl's run
                _write(self._f(MARKER), _marker())
                self.lock()
            self.lock()
            self.refuse_links()
            _pause("marked")
            (self.path / "checkpoint").mkdir(exist_ok=True)
            _write(self._f("spec.net"), net.source.text.encode("utf-8"))
            _pause("spec")
            _write(self._f("summary.txt"), (net.summary() + "\n").encode("utf-8"))
            _pause("summary")
        except OSError as e:
            raise NetdslError("E603", f"cannot write the run directory `{self.path}`: {e.strerror or e}") from None

    def _create(self) -> None:
        """A new directory: made and marked under a temporary name, then renamed into place."""
        assert self.path is not None
        parent, name = self.path.parent, self.path.name
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.glob(f".{glob_escape(name)}.*{_NEW}"):  # left by a run killed here
            _remove_unlocked(stale)
        tmp = parent / f".{name}.{os.getpid()}{_NEW}"
        tmp.mkdir()
        try:
            _pause("mkdir")
            _write(tmp / MARKER, _marker())
            self._lock = _lock_file(tmp / MARKER, self.path)
            _pause("marker")
            try:
                os.rename(tmp, self.path)  # refused when the path became a non-empty directory meanwhile
            except OSError:
                raise NetdslError(
                    "E603", f"`{self.path}` appeared while the run was being created", hint="choose another --out"
                ) from None
        except BaseException:
            self.release()
            _remove_tree(tmp)
            raise

    @contextlib.contextmanager
    def _writing(self, path: Path):
        """OSError (ENOSPC, EFBIG, EIO...) and the weights' E303 become E605, naming what is kept."""
        try:
            yield
        except OSError as e:
            raise self._failed(f"cannot write `{path}`: {e.strerror or e}") from None
        except NetdslError as e:
            if e.code != "E303":
                raise
            raise self._failed(e.message) from None

    def _failed(self, message: str) -> NetdslError:
        if self.saved_epoch:
            hint = f"the checkpoint of epoch {self.saved_epoch} is kept: make room, then add --resume"
        else:
            hint = "no epoch was saved yet: make room, then start again (or add --resume)"
        return NetdslError("E605", message, hint=hint)

    def write_metrics(self, metrics: dict) -> None:
        if self:
            with self._writing(self._f("metrics.json")):
                _write(self._f("metrics.json"), (json.dumps(metrics, indent=2) + "\n").encode("utf-8"))

    def save_checkpoint(self, net, trainer, epoch: int, state: dict) -> None:
        """Files first, the manifest last; then the previous epoch's files go.

        A failed write removes this epoch's files: the manifest still names the previous ones.
        """
        if not self:
            return
        import numpy as np
        from safetensors.numpy import save as to_bytes

        ck = self._f("checkpoint")
        stem = f"epoch-{epoch}"
        files = [f"{stem}.{part}.safetensors" for part in ("weights", "optimizer")]
        try:
            with self._writing(ck / files[0]):
                net.save_weights(trainer.model, ck / files[0])
            tensors, plain = trainer.optimizer_state()
            tensors = {k: np.array(v, order="C") for k, v in tensors.items()}  # (ascontiguousarray makes 0-d 1-d)
            with self._writing(ck / files[1]):
                _write(ck / files[1], to_bytes(tensors, metadata={"format": FORMAT}))
                manifest = {
                    "format": FORMAT,
                    "version": 1,
                    "epoch": epoch,
                    **state,
                    "optimizer_state": plain,
                    "files": {name: _sha256(ck / name) for name in files},
                }
            with self._writing(ck / "latest.json"):
                _write(ck / "latest.json", (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))
        except (NetdslError, OSError):  # (an interrupt leaves them to the next checkpoint's clean-up)
            for name in files:
                with contextlib.suppress(OSError):
                    (ck / name).unlink(missing_ok=True)
            raise
        self.saved_epoch = epoch
        if ck.is_symlink():  # (refused at the start; never follow one made since)
            return
        for old in ck.iterdir():  # earlier epochs and leftovers of a killed run: only names netdsl writes
            if old.name != "latest.json" and old.name not in files and _OURS.match(old.name):
                if old.is_symlink() or old.is_file():  # a link itself goes, never its target
                    with contextlib.suppress(OSError):
                        old.unlink()

    def checkpoint_manifest(self) -> dict | None:
        """The checked manifest of the last complete checkpoint; None when there is none.

        A manifest that is there but unreadable, of the wrong shape, or naming damaged files
        is refused (E603) with the reason: never taken for "no checkpoint".
        """
        manifest = read_manifest(self._f("checkpoint")) if self else None
        if manifest is not None:
            self.saved_epoch = manifest["epoch"]
        return manifest

    def load_checkpoint(self, net, trainer, manifest: dict) -> None:
        """Load the checked manifest's weights and optimizer state into ``trainer``."""
        load_checkpoint(self._f("checkpoint"), net, trainer, manifest)

    def write_results(self, net, model, metrics: dict, curves, quiet: bool) -> None:
        """The weights and the curves, then metrics.json saying the run is complete (last)."""
        if not self:
            return
        with self._writing(self._f("weights.safetensors")):
            net.save_weights(model, self._f("weights.safetensors"))
        with self._writing(self._f("curves.png")):
            try:
                curves(metrics, self._f("curves.png"))
            except ImportError:
                if not quiet:
                    print(
                        "netdsl: curves.png skipped: matplotlib is not installed (pip install matplotlib)",
                        file=sys.stderr,
                    )
        self.write_metrics(metrics)


def read_manifest(ck: Path) -> dict | None:
    """``ck/latest.json`` checked whole, its files' sha256 included (see RunDir.checkpoint_manifest)."""
    path = ck / "latest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # (JSON nested 100,000 deep: RecursionError)
        why = getattr(e, "strerror", None) or ("nested too deeply" if isinstance(e, RecursionError) else e)
        raise _damaged(path, f"not readable JSON ({why})") from None
    why = _manifest_problem(manifest)
    if why:
        raise _damaged(path, why)
    for name, digest in manifest["files"].items():
        try:
            ok = _sha256(ck / name) == digest
        except OSError as e:
            raise _damaged(path, f"its file `{name}` cannot be read ({e.strerror or e})") from None
        if not ok:
            raise NetdslError(
                "E603",
                f"checkpoint file `{ck / name}` is damaged (its sha256 differs)",
                hint="nothing was changed; restore the file, or start a new run with another --out",
            )
    return manifest


def load_checkpoint(ck: Path, net, trainer, manifest: dict) -> None:
    """The weights and optimizer state a checked manifest names, loaded into ``trainer`` (E603 if they do not fit)."""
    from safetensors.numpy import load as from_bytes

    stem = f"epoch-{manifest['epoch']}"
    try:
        net.load_weights(trainer.model, ck / f"{stem}.weights.safetensors")
    except NetdslError as e:
        raise _damaged(ck / "latest.json", f"its weights do not fit the net: {e.message}") from None
    try:
        tensors = from_bytes((ck / f"{stem}.optimizer.safetensors").read_bytes())
        trainer.load_optimizer_state(tensors, manifest["optimizer_state"])
    except NetdslError:
        raise
    except Exception as e:  # safetensors' own error, KeyError, ValueError, RuntimeError from the framework
        raise _damaged(ck / "latest.json", f"its optimizer state does not fit ({type(e).__name__}: {e})") from None


def _damaged(path: Path, why: str) -> NetdslError:
    return NetdslError(
        "E603",
        f"`{path}` is not a usable checkpoint: {why}",
        hint="nothing was changed; restore the file, or start a new run with another --out",
    )


def _manifest_problem(m) -> str | None:
    """What is wrong with a checkpoint manifest's shape, or None (the files are checked after)."""
    from .training import Settings

    if not isinstance(m, dict):
        return f"a JSON {type(m).__name__}, not an object"
    if m.get("format") != FORMAT or m.get("version") != 1:
        return f"format {m.get('format')!r} version {m.get('version')!r}, expected {FORMAT!r} version 1"
    for key, kind in (("epoch", int), ("files", dict), ("settings", dict), ("data", dict), ("epochs", list)):
        if not isinstance(m.get(key), kind) or isinstance(m.get(key), bool):
            return f"`{key}` is missing or not a{'n' * (kind is int)} {kind.__name__}"
    if "optimizer_state" not in m or not isinstance(m["optimizer_state"], dict):
        return "`optimizer_state` is missing or not an object"
    epoch = m["epoch"]
    if epoch < 1:
        return f"epoch {epoch} is below 1"
    stem = f"epoch-{epoch}"
    want = {f"{stem}.weights.safetensors", f"{stem}.optimizer.safetensors"}
    if set(m["files"]) != want or not all(isinstance(v, str) and _HEX64.match(v) for v in m["files"].values()):
        return f"`files` must name {' and '.join(sorted(want))}, each with its sha256"
    fields = {f.name for f in dataclasses.fields(Settings)}
    for key, v in m["settings"].items():
        if key not in fields:
            return f"unknown setting `{key}`"
        if v is not None and not isinstance(v, (str, int, float, bool)):
            return f"setting `{key}` is a {type(v).__name__}"
    for key in ("train", "validation"):
        v = m["data"].get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            return f"`data.{key}` is {v!r}, not a count"
    why = _recipe_problem(m.get("recipe", {}), epoch)
    if why:
        return why
    if len(m["epochs"]) != epoch:
        return f"it is at epoch {epoch} but its history has {len(m['epochs'])} epochs"
    for i, row in enumerate(m["epochs"], 1):
        if not isinstance(row, dict) or row.get("epoch") != i:
            return f"history entry {i} is not epoch {i}"
        for key in _ROW:
            if not _number(row.get(key), none=key.startswith("val_")):
                return f"epoch {i}'s `{key}` is {row.get(key)!r}, not a number"
    return None


def _recipe_problem(r, epoch: int) -> str | None:
    """What is wrong with the manifest's ``recipe`` (recipe.Watch's state), or None."""
    if not isinstance(r, dict):
        return f"`recipe` is a JSON {type(r).__name__}, not an object"
    kinds = {
        "scale": "a number, 0 < scale <= 1",
        "plateau_best": "a number or null",
        "best": "a number or null",
        "plateau_wait": "a count",
        "wait": "a count",
        "best_epoch": f"an epoch, 0 to {epoch}",
        "stopped": "true or false",
    }
    for key, v in r.items():
        if key not in kinds:
            return f"unknown `recipe.{key}`"
        if key == "scale":
            ok = _number(v) and 0 < v <= 1
        elif key in ("plateau_best", "best"):
            ok = _number(v, none=True)
        elif key == "stopped":
            ok = isinstance(v, bool)
        else:
            ok = (
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= (epoch if key == "best_epoch" else 1 << 62)
            )
        if not ok:
            return f"`recipe.{key}` is {v!r}, not {kinds[key]}"
    return None


def _marker() -> bytes:
    from . import __version__

    text = json.dumps({"format": "netdsl-run", "version": 1, "netdsl": __version__}) + "\n"
    return text.encode("utf-8")


def _lock_file(path: Path, run: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): runs are not guarded against each other
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None  # a file system without locks (some network ones): runs are not guarded
        raise NetdslError(
            "E603", f"`{run}` is in use by another netdsl train", hint="wait for it, or choose another --out"
        ) from None
    return fd


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _remove_unlocked(path: Path) -> None:
    """Remove a half-created run directory, unless a live process still holds its marker."""
    marker = path / MARKER
    if marker.is_file():
        try:
            fd = _lock_file(marker, path)
        except (NetdslError, OSError):
            return
        if fd is not None:
            os.close(fd)
    _remove_tree(path)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)

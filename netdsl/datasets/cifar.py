"""CIFAR-10 and CIFAR-100 from their official binary versions (never unpickled).

CIFAR-10: ``cifar-10-batches-bin/data_batch_1..5.bin``, ``test_batch.bin`` (records of one label
byte and 3,072 pixel bytes, the red, green and blue 32x32 planes) and ``batches.meta.txt``;
CIFAR-100: ``cifar-100-binary/train.bin``, ``test.bin`` (a coarse and a fine label byte, then
the pixels; netdsl trains on the 100 fine labels) and ``fine_label_names.txt``.

Found in the order MNIST is (:mod:`netdsl.data`): ``--data DIR``/``$NETDSL_DATA`` (the folder
itself or its parent), the netdsl cache, ``./data`` and ``~/data`` (torchvision's roots), then a
download of the official archive (``$NETDSL_CIFAR10_MIRROR``/``$NETDSL_CIFAR100_MIRROR``: URLs,
``none`` turns it off) verified by its published digest, whose members are extracted by name
(nothing else in the archive is written) into the netdsl cache, atomically.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tarfile
from pathlib import Path

from ..data import Dataset, _fetch, _Unreachable, cache_dir
from ..errors import NetdslError
from ..files import write_atomic

PIXELS = 3 * 32 * 32
SPEC = {  # name -> folder, train files, test files, label bytes, label index, names file, classes
    "cifar10": ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"], 1, 0,
                "batches.meta.txt", 10),
    "cifar100": ("cifar-100-binary", ["train.bin"], ["test.bin"], 2, 1, "fine_label_names.txt", 100),
}  # fmt: skip
ARCHIVE = {"cifar10": "cifar-10-binary.tar.gz", "cifar100": "cifar-100-binary.tar.gz"}
MIRRORS = {"cifar10": ("https://www.cs.toronto.edu/~kriz/",), "cifar100": ("https://www.cs.toronto.edu/~kriz/",)}
# sha256 of the archives (the same bytes as the author's published MD5s, c32a1d4a... and 03b5dce0...)
DIGESTS = {
    "cifar10": ("sha256", "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
    "cifar100": ("sha256", "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec"),
}
ENV_MIRROR = {"cifar10": "NETDSL_CIFAR10_MIRROR", "cifar100": "NETDSL_CIFAR100_MIRROR"}
MAX_ARCHIVE = 200 << 20  # the archives are 163 and 161 MB
MAX_RECORDS = 100_000  # per file: 50,000 in the largest


def _bad(path, what: str) -> NetdslError:
    return NetdslError("E617", f"`{path}`: {what}", hint="replace or delete the file (a download verifies the archive)")


def read_bin(path: Path, name: str):
    """uint8 images (N, 32, 32, 3) and int64 labels (N,) of one binary batch file (E617)."""
    import numpy as np

    _, _, _, label_bytes, label_at, _, classes = SPEC[name]
    record = label_bytes + PIXELS
    try:
        size = path.stat().st_size
        if size == 0 or size % record or size // record > MAX_RECORDS:
            what = "empty" if size == 0 else f"{size:,} bytes, not a whole number of {record:,}-byte records"
            if size // record > MAX_RECORDS:
                what = f"{size // record:,} records; a CIFAR batch holds at most {MAX_RECORDS:,}"
            raise _bad(path, f"not a CIFAR{'-10' if name == 'cifar10' else '-100'} binary batch ({what})")
        raw = np.fromfile(path, np.uint8).reshape(-1, record)
    except OSError as e:
        raise _bad(path, f"cannot be read ({e.strerror or e})") from None
    labels = raw[:, label_at].astype(np.int64)
    if labels.max() >= classes:
        i = int(np.argmax(labels >= classes))
        raise _bad(path, f"label {labels[i]} of record {i} is not a class 0..{classes - 1}")
    x = raw[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), labels


def _names(path: Path, classes: int) -> tuple[str, ...]:
    try:
        names = tuple(n.strip() for n in path.read_text(encoding="utf-8").splitlines() if n.strip())
    except (OSError, UnicodeDecodeError) as e:
        raise _bad(path, f"cannot be read ({e})") from None
    if len(names) != classes:
        raise _bad(path, f"names {len(names)} classes, expected {classes}")
    return names


def load_dir(folder: Path, name: str, *, scale: bool = True) -> Dataset:
    """The binary files of ``folder`` (``cifar-10-batches-bin`` or ``cifar-100-binary``)."""
    import numpy as np

    _, train, test, _, _, names_file, classes = SPEC[name]
    missing = [f for f in (*train, *test, names_file) if not (folder / f).is_file()]
    if missing:
        raise NetdslError("E617", f"`{folder}` has no {', '.join(missing)}", hint=_how(name))
    parts = {split: [read_bin(folder / f, name) for f in files] for split, files in (("train", train), ("test", test))}
    x = {k: np.concatenate([p[0] for p in v]) for k, v in parts.items()}
    y = {k: np.concatenate([p[1] for p in v]) for k, v in parts.items()}

    def images(a):
        a = a.astype(np.float32)
        return np.divide(a, np.float32(255), out=a) if scale else a

    names = _names(folder / names_file, classes)
    return Dataset(images(x["train"]), y["train"], images(x["test"]), y["test"], name, str(folder), class_names=names)


def _how(name: str) -> str:
    return (
        f"download {ARCHIVE[name]} (the binary version) from https://www.cs.toronto.edu/~kriz/cifar.html, "
        f"extract it and pass --data DIR (or set NETDSL_DATA), or allow the download"
    )


def _found(place: Path, name: str) -> Path | None:
    folder = SPEC[name][0]
    for cand in (place / folder, place):
        if (cand / SPEC[name][2][0]).is_file():
            return cand
    return None


def download(name: str, mirror=None, *, quiet: bool = False) -> Path | None:
    """Fetch and extract the archive into the netdsl cache; None when no mirror answers."""
    if mirror is None:
        mirror = os.environ.get(ENV_MIRROR[name])
    urls = list(MIRRORS[name]) if mirror is None else mirror.replace(",", " ").split()
    urls = [u.rstrip("/") + "/" for u in urls if u.lower() not in ("none", "off")]
    target = cache_dir(name)
    algorithm, digest = DIGESTS[name]
    failures = []
    for base in urls:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise NetdslError("E503", f"cannot create the cache `{target}`: {e.strerror or e}") from None
        archive = target / ARCHIVE[name]

        def announce(base=base) -> None:
            if not quiet:
                print(f"netdsl: downloading {name} from {base} into {target}", file=sys.stderr)

        try:
            _fetch(base + ARCHIVE[name], archive, digest, False, announce, MAX_ARCHIVE, algorithm)
        except _Unreachable:
            continue
        except NetdslError as e:
            failures.append(e.message)
            continue
        try:
            _extract(archive, target, name)
        finally:
            archive.unlink(missing_ok=True)
        return target / SPEC[name][0]
    with contextlib.suppress(OSError):
        target.rmdir()
    if failures:
        raise NetdslError("E503", f"download of {name} failed: " + "; ".join(failures), hint=_how(name))
    return None


def _extract(archive: Path, target: Path, name: str) -> None:
    """Only the members netdsl reads, each by its expected name and as a regular file."""
    folder, train, test, _, _, names_file, _ = SPEC[name]
    wanted = {f"{folder}/{f}" for f in (*train, *test, names_file)}
    (target / folder).mkdir(exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile() and member.size <= MAX_RECORDS * (2 + PIXELS):
                    data = tar.extractfile(member).read()
                    write_atomic(target / member.name, data)
                    wanted.discard(member.name)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise NetdslError("E503", f"`{archive}`: cannot be extracted ({e})") from None
    if wanted:
        raise NetdslError("E503", f"`{archive}` lacks {', '.join(sorted(wanted))}")


def load(name: str, data_dir=None, *, scale: bool = True, quiet: bool = False, mirror=None) -> Dataset:
    """CIFAR-10 or CIFAR-100 from the first place that has it (E617 bad files, E504 none)."""
    explicit = data_dir if data_dir not in (None, "") else os.environ.get("NETDSL_DATA") or None
    if explicit is not None:
        path = Path(explicit).expanduser()
        return load_dir(_found(path, name) or path, name, scale=scale)
    places = [cache_dir(name), *(Path(r).expanduser().absolute() for r in ("data", "~/data"))]
    for place in places:
        found = _found(place, name) if place.is_dir() else None
        if found is not None:
            return load_dir(found, name, scale=scale)
    got = download(name, mirror, quiet=quiet)
    if got is not None:
        return load_dir(got, name, scale=scale)
    looked = "; ".join(map(str, places))
    raise NetdslError("E504", f"no {name} data found; looked in {looked}; the download is unreachable", hint=_how(name))

"""Image folders: ``PATH/train/<class>/*.png|jpg`` (and ``PATH/test/<class>/...``), read with Pillow.

Classes are the sub-folders of ``train/``, in sorted order (as Keras's
``image_dataset_from_directory`` and torchvision's ``ImageFolder`` order them); images are
converted to the net's input: grayscale (``L``) for 1 channel, RGB for 3, and resized only when
asked (``resize=True``): otherwise the first image of another size is an E613 naming it.  With no
``test/``, every fifth image of each class (by a fixed hash of its path) is held out for testing.

Training images come in rounds of one image per class, shuffled within the round by a fixed
hash of the path, so any contiguous slice (the trainer's last-10% validation split) is
balanced.  A decoded folder is cached as ``.npz`` under the netdsl cache, keyed by its file
list, sizes and mtimes and the conversion: a second start reads the cache only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import MAX_ITEMS, Dataset, cache_dir
from ..errors import NetdslError

if TYPE_CHECKING:
    import numpy as np

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
CACHE_VERSION = 2  # 2: 16-bit PNGs scaled to 8 bits (1 clipped them to white)
TEST_EVERY = 5  # with no test/: one image in five of each class tests


def _bad(code: str, what: str, hint: str | None = None) -> NetdslError:
    return NetdslError(code, what, hint=hint)


def pillow():
    """PIL.Image, or E618 with the install hint."""
    try:
        from PIL import Image
    except ImportError:
        raise NetdslError(
            "E618", "reading images needs Pillow, which is not installed", hint="pip install 'netdsl[images]'"
        ) from None
    import warnings

    # a big image (over MAX_IMAGE_PIXELS, under twice it) is read as asked, without Pillow's
    # warning lines; beyond twice it DecompressionBombError stays an E612/E615 error
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    return Image


def is_folder(path: Path) -> bool:
    """Is ``path`` an image folder: ``train/<class>/`` or ``<class>/`` directly, a class holding an image?

    A directory of IDX files, of CIFAR binaries or with a ``mnist/`` sub-folder of them is not.
    """
    root = path / "train" if (path / "train").is_dir() else path
    try:
        with os.scandir(root) as entries:
            for d in entries:
                if d.is_dir() and not d.name.startswith("."):
                    with os.scandir(d.path) as inside:
                        if any(e.name.lower().endswith(EXTENSIONS) for e in inside):
                            return True
    except OSError:
        return False
    return False


def _images(directory: Path) -> list[str]:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as e:
        raise _bad("E611", f"`{directory}`: cannot be read ({e.strerror or e})") from None
    return [  # plain strings: a folder of 10,000 images is listed on every start
        e.path for e in entries if not e.name.startswith(".") and e.name.lower().endswith(EXTENSIONS) and e.is_file()
    ]


def _classes(root: Path) -> list[str]:
    try:
        names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as e:
        raise _bad("E611", f"`{root}`: cannot be read ({e.strerror or e})") from None
    return names


def scan(path: Path) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]], bool]:
    """(class names, train files with labels, test files with labels, whether test was split off)."""
    return _order(*listing(Path(path)))


def listing(path: Path) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]] | None, Path]:
    """(class names, train files, test files or None without test/, the train root), checked (E611)."""
    train_root = path / "train" if (path / "train").is_dir() else path
    test_root = path / "test" if train_root != path and (path / "test").is_dir() else None
    names = _classes(train_root)
    layout = "PATH/train/<class>/*.png (and PATH/test/<class>/...)"
    if len(names) < 2:
        got = f"one class folder (`{names[0]}`)" if names else "no class folders"
        raise _bad("E611", f"`{train_root}` holds {got}; a classifier needs at least two", f"lay it out as {layout}")
    train: list[tuple[str, int]] = []
    for label, name in enumerate(names):
        files = _images(train_root / name)
        if not files:
            raise _bad(
                "E611",
                f"`{train_root / name}`: an empty class folder (no .png/.jpg images)",
                "add images or remove the folder",
            )
        train += [(f, label) for f in files]
    if len(train) > MAX_ITEMS:
        raise _bad("E611", f"`{path}` holds {len(train):,} images; netdsl reads at most {MAX_ITEMS:,}")
    if test_root is None:
        return names, train, None, train_root
    test: list[tuple[str, int]] = []
    # the test/ tree: only classes train/ has
    extra = sorted(set(_classes(test_root)) - set(names))
    if extra:
        raise _bad(
            "E611",
            f"`{test_root / extra[0]}`: a test class that train/ does not have",
            f"train/ has {', '.join(names)}",
        )
    for label, name in enumerate(names):
        if (test_root / name).is_dir():
            test += [(f, label) for f in _images(test_root / name)]
    if not test:
        raise _bad("E611", f"`{test_root}` holds no images")
    if len(train) + len(test) > MAX_ITEMS:
        raise _bad("E611", f"`{path}` holds {len(train) + len(test):,} images; netdsl reads at most {MAX_ITEMS:,}")
    return names, train, test, train_root


def _order(names: list[str], train: list, test: list | None, train_root: Path):
    """The listing in training order (rounds), with the test set split off when there is no test/."""
    split = test is None
    if split:
        by_class: dict[int, list] = {}
        for item in train:
            by_class.setdefault(item[1], []).append(item)
        keep, test = [], []
        for group in by_class.values():  # stratified: a fifth of each class (at least one of two or more)
            group.sort(key=lambda it: (_keys(it[0])[0], it[0]))
            n = max(1, round(len(group) / TEST_EVERY)) if len(group) >= 2 else 0
            test += sorted(group[:n])
            keep += group[n:]
        train = keep
        if not test:
            raise _bad("E611", f"`{train_root}`: too few images to hold any out for testing", "add a test/ folder")
    return names, _rounds(train), test, split


def _keys(path: str) -> tuple[int, int, int]:
    """Three fixed pseudo-random keys of a file (split, order in its class, place in its round),
    from its class folder and name: the same on every platform and run."""
    head, name = os.path.split(path)
    d = hashlib.blake2b(os.fsencode(os.path.basename(head) + "/" + name), digest_size=24).digest()
    return int.from_bytes(d[:8], "big"), int.from_bytes(d[8:16], "big"), int.from_bytes(d[16:], "big")


def _rounds(items: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Round r holds the r-th image of every class (by a fixed hash), shuffled within the round."""
    keyed = [(_keys(p), p, label) for p, label in items]
    by_class: dict[int, list] = {}
    for k, p, label in sorted(keyed, key=lambda t: (t[0][1], t[1])):
        by_class.setdefault(label, []).append((k[2], p, label))
    ranked = sorted((rank, k, p, label) for group in by_class.values() for rank, (k, p, label) in enumerate(group))
    return [(p, label) for _, _, p, label in ranked]


def decode(files: list[tuple[Path, int]], shape: tuple, resize: bool) -> np.ndarray:
    """uint8 (N, H, W, C) images of ``files`` in the net's ``shape`` (E612 unreadable, E613 size).

    Decoded by a few threads (Pillow's decoders release the GIL) over contiguous chunks; the
    error reported is the one of the first file in order, whatever thread met it.
    """
    import numpy as np

    out = np.empty((len(files), *shape), np.uint8)
    workers = min(4, os.cpu_count() or 1) if len(files) >= 512 else 1
    step = -(-len(files) // workers) if files else 1
    chunks = [range(k, min(k + step, len(files))) for k in range(0, len(files), step)]
    if workers == 1:
        errors = [_decode_into(out, files, r, shape, resize) for r in chunks]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            errors = list(pool.map(lambda r: _decode_into(out, files, r, shape, resize), chunks))
    for e in errors:
        if e is not None:
            raise e
    return out


def to_mode(im, mode: str):
    """``im`` in ``mode`` (L or RGB).  Pillow's convert clips a 16-bit grayscale PNG (I;16, or I)
    to 255, so those are scaled to 8 bits first (65535 -> 255, rounded)."""
    import numpy as np
    from PIL import Image

    if im.mode.startswith("I"):  # 16-bit grayscale (PNG has no 32-bit pixels)
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(np.rint(a / 257), 0, 255).astype(np.uint8), "L")
    return im if im.mode == mode else im.convert(mode)


def _decode_into(out, files: list, indices: range, shape: tuple, resize: bool) -> NetdslError | None:
    """Decode ``files[indices]`` into ``out``; the first error met, or None."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    h, w, c = shape
    mode = {1: "L", 3: "RGB"}[c]
    for i in indices:
        path = files[i][0]
        try:
            with Image.open(path) as im:
                if im.size != (w, h) and not resize:
                    return _bad(
                        "E613",
                        f"`{path}`: a {im.size[0]}x{im.size[1]} image (width x height); the net takes {w}x{h}",
                        "resize the images, or pass --resize (resize=True) to scale them to the net's input",
                    )
                im = to_mode(im, mode)
                if im.size != (w, h):
                    im = im.resize((w, h), Image.Resampling.BILINEAR)
                out[i] = np.asarray(im).reshape(h, w, c)
        except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            return _bad("E612", f"`{path}`: not a readable image ({e})", "replace or delete the file")
    return None


def _fingerprint(path: Path, files: list, shape: tuple, resize: bool) -> str:
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, str(path.resolve()), list(shape), resize]).encode())
    for f, label in files:
        st = os.stat(f)
        digest.update(f"{f}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def load_folder(
    path: Path | str, shape: tuple, *, resize: bool = False, scale: bool = True, cache: bool = True
) -> Dataset:
    """The image folder at ``path`` as a Dataset in the net's input ``shape`` (H, W, C)."""
    import numpy as np

    path = Path(path)
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise NetdslError(
            "E602",
            f"the net takes {'x'.join(map(str, shape))} inputs; images are HxWx1 (grayscale) or HxWx3 (RGB)",
        )
    pillow()
    listed = listing(path)
    names, split = listed[0], listed[2] is None
    source = str(path) + (f" (no test/: 1 image in {TEST_EVERY} of each class held out for testing)" if split else "")
    # one cache file per folder: <the folder's key>-<its content's key>.npz; a changed folder replaces it.
    # The key is of the listing (sorted), so a cached start neither orders nor decodes anything.
    home = hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:16]
    where = cache_dir("folders") / f"{home}-{_fingerprint(path, listed[1] + (listed[2] or []), shape, resize)}.npz"
    arrays = _read_cache(where) if cache else None
    if arrays is None:
        _, train, test, _ = _order(*listed)
        arrays = {
            "x_train": decode(train, shape, resize),
            "y_train": np.array([lab for _, lab in train], np.int64),
            "x_test": decode(test, shape, resize),
            "y_test": np.array([lab for _, lab in test], np.int64),
        }
        if cache:
            _write_cache(where, arrays)
            for old in where.parent.glob(f"{home}-*.npz"):  # the same folder's earlier contents
                if old != where:
                    old.unlink(missing_ok=True)

    def x(a):
        a = a.astype(np.float32)
        return np.divide(a, np.float32(255), out=a) if scale else a

    return Dataset(
        x(arrays["x_train"]),
        arrays["y_train"],
        x(arrays["x_test"]),
        arrays["y_test"],
        "folder",
        source,
        class_names=tuple(names),
    )


def _read_cache(where: Path) -> dict | None:
    import numpy as np

    try:
        with open(where, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            return {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except Exception:  # absent, or damaged: decode again (and rewrite it)
        return None


def _write_cache(where: Path, arrays: dict) -> None:
    import numpy as np

    from ..files import write_atomic

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(where, buf.getvalue())
    except (OSError, NetdslError):  # a read-only or full cache: the run goes on without it
        pass

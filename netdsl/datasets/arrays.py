"""Numpy arrays a user brings: ``.npz`` files and arrays given to :func:`netdsl.train`.

``x_train, y_train, x_test, y_test`` (and optionally ``class_names``): images uint8 (scaled to
[0, 1] as MNIST is) or float (taken as they are), NHWC or (N, H, W); labels integers
0..K-1.  Samples whose shape is exactly the net's input shape are taken as they are, whatever
their rank and channel count: sequences (N, L, C) for a 1-D net, vectors (N, F) for a dense one.
Every problem is an E614 naming the array (and the file) and the first bad index.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..data import MAX_ITEMS, Dataset, read_npz
from ..errors import NetdslError

if TYPE_CHECKING:
    import numpy as np

KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_CLASSES = 100_000


def _bad(where: str, what: str, hint: str | None = None) -> NetdslError:
    return NetdslError("E614", f"{where}: {what}", hint=hint)


def load_npz(
    path: Path | str, *, scale: bool = True, checked: tuple = ("train", "test"), shape: tuple | None = None
) -> Dataset:
    """An ``.npz`` of the four arrays (and optionally ``class_names``), checked (E614); ``shape``:
    the net's input shape (samples of exactly that shape are taken as they are)."""

    path = Path(path)
    where = f"`{path}`"
    arrays, keys = read_npz(path, (*KEYS, "class_names"), lambda why: _bad(where, why))
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise _bad(where, f"needs arrays {', '.join(KEYS)}; it has {', '.join(keys) or 'none'}")
    names = arrays.get("class_names")
    names = None if names is None else list(names)
    return from_arrays(arrays, class_names=names, scale=scale, where=where, checked=checked, shape=shape)


def _names(class_names, where: str) -> tuple[str, ...] | None:
    if class_names is None:
        return None
    names = tuple(str(n) for n in class_names)
    if not 2 <= len(names) <= MAX_CLASSES:
        raise _bad(where, f"class_names holds {len(names)} names; a classifier needs 2 to {MAX_CLASSES:,}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise _bad(where, f"class_names names `{dup}` twice")
    return names


def from_arrays(
    arrays,
    *,
    class_names=None,
    scale: bool = True,
    where: str = "data",
    name: str = "arrays",
    checked: tuple = ("train", "test"),
    shape: tuple | None = None,
) -> Dataset:
    """The four arrays (a dict, or a sequence in the order x_train, y_train, x_test, y_test) as a Dataset.
    ``checked``: the splits whose values must be finite (evaluate uses only the test split);
    ``shape``: the net's input shape, if known (samples of exactly that shape are not images:
    taken as they are, any rank and channel count)."""
    import numpy as np

    if not isinstance(arrays, dict):
        try:
            seq = list(arrays)
        except TypeError:
            raise _bad(
                where, f"expected (x_train, y_train, x_test, y_test) or a dict of them, got {type(arrays).__name__}"
            ) from None
        if len(seq) != 4:
            raise _bad(where, f"expected 4 arrays (x_train, y_train, x_test, y_test), got {len(seq)}")
        arrays = dict(zip(KEYS, seq, strict=True))
        class_names = class_names
    else:
        class_names = arrays.get("class_names", class_names)
    names = _names(class_names, where)
    out = {}
    for split in ("train", "test"):
        try:
            x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        except KeyError as e:
            raise _bad(where, f"needs {e.args[0]}") from None
        except ValueError as e:  # ragged nested lists given to netdsl.train
            raise _bad(where, f"x_{split}/y_{split} are not arrays of one shape ({e})") from None
        exact = shape is not None and x.ndim >= 2 and tuple(x.shape[1:]) == tuple(shape)
        if x.ndim not in (3, 4) and not exact:
            raise _bad(
                where,
                f"x_{split} has rank {x.ndim} (shape {x.shape}); images are (N, H, W) or (N, H, W, C)"
                + (f", or samples of the net's input shape {_dims(shape)}" if shape else ""),
            )
        if x.dtype != np.uint8 and x.dtype.kind != "f":
            raise _bad(where, f"x_{split} is {x.dtype}; images are uint8 (0..255) or float")
        if len(x) == 0:
            raise _bad(where, f"x_{split} holds no images")
        if len(x) > MAX_ITEMS:
            raise _bad(where, f"x_{split} holds {len(x):,} images; netdsl reads at most {MAX_ITEMS:,}")
        if x.dtype.kind == "f" and split in checked:
            flat = x.reshape(len(x), -1)
            finite = np.isfinite(flat).all(axis=1)
            if x.dtype.itemsize > 4:  # float64 beyond float32's range would overflow to inf in the cast
                with np.errstate(invalid="ignore"):
                    finite &= (np.abs(flat) <= np.finfo(np.float32).max).all(axis=1)
            if not finite.all():
                i = int(np.argmin(finite))
                raise _bad(
                    where,
                    f"x_{split}[{i}] holds NaN, infinite values or values beyond float32's range",
                    "clean or drop that image",
                )
        if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
            raise _bad(where, f"y_{split} is {y.dtype} {y.shape}; expected integer labels ({len(x)},)")
        out[split] = (x if x.ndim == 4 or exact else x[..., None], y)
    (xtr, ytr), (xte, yte) = out["train"], out["test"]
    if xtr.shape[1:] != xte.shape[1:]:
        raise _bad(where, f"x_train samples are {_hwc(xtr)} but x_test samples are {_hwc(xte)}")
    if xtr.shape[1:] != tuple(shape or ()) and xtr.shape[3] not in (1, 3):
        raise _bad(where, f"images have {xtr.shape[3]} channels; netdsl reads 1 (grayscale) or 3 (RGB)")
    k = len(names) if names else int(max(ytr.max(), yte.max())) + 1
    for split, y in (("train", ytr), ("test", yte)):
        bad = (y < 0) | (y >= k)
        if bad.any():
            i = int(np.argmax(bad))
            of = f"the {k} class names" if names else f"0..{k - 1}"
            raise _bad(where, f"y_{split}[{i}] = {y[i]} is not a class of {of}")
    if k < 2 or len(np.unique(ytr)) < 2:
        raise _bad(where, "the training labels hold one class; a classifier needs at least two")
    if k > MAX_CLASSES:
        raise _bad(where, f"labels go up to {k - 1:,}; netdsl takes at most {MAX_CLASSES:,} classes")

    def images(a: np.ndarray) -> np.ndarray:
        if a.dtype == np.uint8:
            a = a.astype(np.float32)
            return np.divide(a, np.float32(255), out=a) if scale else a
        with np.errstate(over="ignore"):  # only in a split left unchecked, which is not used
            return a.astype(np.float32)

    ds = Dataset(images(xtr), ytr.astype(np.int64), images(xte), yte.astype(np.int64), name, where.strip("`"))
    return ds._replace(class_names=names or tuple(str(i) for i in range(k)))


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _hwc(x) -> str:
    return _dims(x.shape[1:])

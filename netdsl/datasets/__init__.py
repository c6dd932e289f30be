"""Every data set the trainer reads: MNIST/Fashion-MNIST (:mod:`netdsl.data`), CIFAR-10/100
(:mod:`.cifar`), image folders (:mod:`.folder`), ``.npz`` files and numpy arrays (:mod:`.arrays`).

:func:`load` picks the reader from the training settings, :func:`check` holds the net to the
data (E602 at the spec's line): its input must be the images' shape and its output one score
per class.  :func:`describe` is what metrics.json records so that ``netdsl predict`` converts an
image exactly as the training data was.
"""

from __future__ import annotations

from pathlib import Path

from ..data import Dataset
from ..errors import NetdslError

STANDARD = {  # name -> (image shape, classes)
    "mnist": ((28, 28, 1), 10),
    "fashion-mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
}
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def _user_path(s) -> Path | None:
    return Path(s.data).expanduser() if s.data not in (None, "") else None


def kind(s, arrays=None) -> str:
    """``arrays``, ``npz``, ``folder`` or the standard data set's name."""
    if arrays is not None:
        return "arrays"
    path = _user_path(s)
    if path is not None and s.dataset not in ("cifar10", "cifar100"):  # --data is CIFAR's place there
        from .folder import is_folder

        if path.is_file() and path.suffix.lower() == ".npz":
            return "npz"
        if path.is_dir() and is_folder(path):
            return "folder"
    return s.dataset


def precheck(net, s, arrays=None) -> None:
    """Before any data is read: a --data path that is not there, then a standard data set's shape and classes."""
    path = _user_path(s) if arrays is None else None
    if path is not None and not path.exists():  # else it reads as "the net does not fit MNIST"
        raise NetdslError("E502", f"`{path}`: no such file or directory (--data)")
    k = kind(s, arrays)
    if k in STANDARD:
        shape, classes = STANDARD[k]
        check(net, shape, classes, TITLES[k])


def load(net, s, arrays=None, *, test_only: bool = False) -> Dataset:
    """The data set the settings name, checked against ``net`` (E602); ``test_only``: only the
    test split is used (evaluate), so only its values are held to be finite."""
    k = kind(s, arrays)
    checked = ("test",) if test_only else ("train", "test")
    shape = tuple(net.input_shape[1:])
    if k == "arrays":
        from .arrays import from_arrays

        ds = from_arrays(arrays, scale=s.scale, where="data=", name="arrays", checked=checked, shape=shape)
    elif k == "npz":
        from .arrays import load_npz

        ds = load_npz(_user_path(s), scale=s.scale, checked=checked, shape=shape)._replace(name="npz")
    elif k == "folder":
        from .folder import load_folder

        shape = tuple(net.input_shape[1:])
        if len(shape) != 3 or shape[2] not in (1, 3):
            raise NetdslError(
                "E602",
                f"the net takes {'x'.join(map(str, shape))} inputs; images are HxWx1 (grayscale) or HxWx3 (RGB)",
                net.graph.nodes["input"].get("span"),
                hint="give it `input HxWx1` or `input HxWx3`",
            ).located(net.source)
        ds = load_folder(_user_path(s), tuple(net.input_shape[1:]), resize=bool(s.resize), scale=s.scale)
    elif k in ("cifar10", "cifar100"):
        from .cifar import load as load_cifar

        ds = load_cifar(k, s.data, scale=s.scale, quiet=s.quiet)
    else:
        from .. import data

        ds = data.load(s.dataset, s.data, scale=s.scale, quiet=s.quiet)
    names = ds.class_names or tuple(str(i) for i in range(10))
    ds = ds._replace(class_names=tuple(names))
    check(net, tuple(ds.x_train.shape[1:]), len(names), TITLES.get(ds.name, "the data"))
    return ds


def check(net, shape: tuple, classes: int, what: str) -> None:
    """The net must take ``shape`` images and give ``classes`` scores (E602, at the spec's line)."""
    g = net.graph
    if tuple(net.input_shape[1:]) != tuple(shape):
        have, want = "x".join(map(str, net.input_shape[1:])), "x".join(map(str, shape))
        raise NetdslError(
            "E602",
            f"the net takes {have} inputs; the images of {what} are {want}",
            g.nodes["input"].get("span"),
            hint=f"give it `input {want}`" + (" (or pass --resize for an image folder)" if what == "the data" else ""),
        ).located(net.source)
    if tuple(net.output_shape[1:]) != (classes,):
        out = g.graph["output"]
        have = "x".join(map(str, net.output_shape[1:]))
        raise NetdslError(
            "E602",
            f"the net's output `{out}` is {have}; the data set has {classes} classes",
            g.nodes[out].get("span"),
            hint=f"end with `dense {classes} softmax`",
        ).located(net.source)


def describe(ds: Dataset, s) -> dict:
    """What ``netdsl predict`` needs to convert an image as the training data was."""
    return {
        "class_names": list(ds.class_names or ()),
        "input": list(ds.x_train.shape[1:]),
        "scale": bool(s.scale),
        "resize": bool(getattr(s, "resize", False)),
    }

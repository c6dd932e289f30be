"""Preprocessing and augmentation layers: entries for the op table of :mod:`netdsl.ops`.

Keras's preprocessing-layer semantics: ``rescale`` (Rescaling: ``x * scale + offset``) and
``normalize`` (Normalization: ``(x - mean) / std``, per channel) act always; the random
layers act only in training and are the identity at inference (``randomcrop`` takes the
centre window of the padded input there, which is the identity when its size is the
input's, the CIFAR recipe ``randomcrop 32x32 padding=4``).  None has a weight.

Factors are Keras's: ``randomtranslation H [W]`` shifts by up to that fraction of the
height (width), ``randomrotation F`` turns by up to ``F * 360`` degrees, ``randomzoom H [W]``
zooms in or out by up to that fraction (W defaults to H: the aspect ratio is kept).
"""

from __future__ import annotations

from typing import Any

from .ops import REQUIRED, ArgError, Op, ShapeError, _needs_map, _same, enum, integer, pair, real

FILLS = ("reflect", "constant", "nearest")
FLIPS = ("horizontal", "vertical", "both", "horizontal_and_vertical")
WORDS = frozenset(FILLS + FLIPS)
FAMILY = "preprocessing"
RANDOM = ("randomflip", "randomcrop", "randomtranslation", "randomrotation", "randomzoom")


def _number(name: str, v: Any, lo: float = -1e9, hi: float = 1e9) -> float:
    return real(lo, hi)(name, v)


def _channels(lo: float, lo_open: bool = False):
    """A number, or a tuple of numbers (one per channel)."""

    def conv(name: str, v: Any):
        if isinstance(v, tuple):
            if not 1 <= len(v) <= 4096:
                raise ArgError(f"{name} takes one number or one per channel, got {len(v)}")
            return tuple(real(lo, 1e9, lo_open=lo_open)(name, x) for x in v)
        return real(lo, 1e9, lo_open=lo_open)(name, v)

    return conv


def _map_same(op: str):
    def rule(a: dict, ins: list):
        _needs_map(op, ins[0], f"{op} works on images (HxWxC); put it right after `input`")
        return ins[0]

    return rule


def _rescale_size(d: tuple, stride) -> dict:
    if len(d) != 1:
        raise ArgError(f"rescale takes a number or a fraction (`rescale 1/255`), got {'x'.join(map(str, d))}")
    if stride is not None:
        if isinstance(stride, tuple) or stride == 0:
            raise ArgError("rescale's fraction needs a non-zero number below the line, e.g. `rescale 1/255`")
        return {"scale": d[0] / stride}
    return {"scale": d[0]}


def _normalize_shape(a: dict, ins: list):
    (s,) = ins
    c = s[-1]
    for key in ("mean", "std"):
        v = a[key]
        if isinstance(v, tuple) and len(v) not in (1, c):
            raise ShapeError(
                "E461",
                f"normalize {key} has {len(v)} values for a {'x'.join(map(str, s))} input with {c} channels",
                "give one value, or one per channel",
            )
    return s


def _crop_shape(a: dict, ins: list):
    (s,) = ins
    _needs_map("randomcrop", s, "randomcrop works on images (HxWxC); put it right after `input`")
    h, w = a["size"]
    p = a["padding"]
    if h > s[0] + 2 * p or w > s[1] + 2 * p:
        raise ShapeError(
            "E462",
            f"randomcrop {h}x{w} does not fit the {s[0]}x{s[1]} input padded by {p}",
            "crop at most the input's size plus twice the padding",
        )
    return (h, w, s[2])


def _size_one(name: str, second: str | None = None):
    def size(d: tuple, stride) -> dict:
        if stride is not None or len(d) > (2 if second else 1):
            raise ArgError(f"{name} takes {'one or two numbers (HxW)' if second else 'one number'} here")
        out = {name: d[0]}
        if second and len(d) == 2:
            out[second] = d[1]
        return out

    return size


def _normalize_finish(a: dict) -> dict:
    """One value (a 1-tuple is one) or one per channel; a single value beside per-channel ones is
    repeated, so mean and std have one shape (Keras requires it)."""
    for key in ("mean", "std"):
        if isinstance(a[key], tuple) and len(a[key]) == 1:
            a[key] = a[key][0]
    m, s = a["mean"], a["std"]
    if isinstance(m, tuple) != isinstance(s, tuple):
        n = len(m) if isinstance(m, tuple) else len(s)
        a["mean"], a["std"] = (m if isinstance(m, tuple) else (m,) * n), (s if isinstance(s, tuple) else (s,) * n)
    return a


def _flip_finish(a: dict) -> dict:
    if a["mode"] == "horizontal_and_vertical":
        a["mode"] = "both"
    return a


def _factor_finish(a: dict) -> dict:
    if a.get("width") is None and "width" in a:
        a["width"] = a["height"]
    return a


def _fmt(v) -> str:
    return "x".join(f"{x:g}" for x in v) if isinstance(v, tuple) else f"{v:g}"


def _rescale_describe(a: dict) -> str:
    s = a["scale"]
    text = f"\u00d71/{1 / s:g}" if s and abs(1 / s - round(1 / s)) < 1e-9 and abs(s) < 1 else f"\u00d7{s:g}"
    return text + (f" {a['offset']:+g}" if a["offset"] else "")


_FILL = {"fill": (enum(*FILLS), "reflect")}
_FACTOR = real(0, 1)

OPS: dict[str, Op] = {
    op.name: op
    for op in [
        Op(
            "rescale",
            "Rescaling",
            FAMILY,
            {"scale": (lambda n, v: _number(n, v), REQUIRED), "offset": (lambda n, v: _number(n, v), 0.0)},
            _rescale_size,
            _same,
            describe=_rescale_describe,
        ),
        Op(
            "normalize",
            "Normalization",
            FAMILY,
            {"mean": (_channels(-1e9), REQUIRED), "std": (_channels(0, lo_open=True), REQUIRED)},
            None,
            _normalize_shape,
            describe=lambda a: f"mean={_fmt(a['mean'])} std={_fmt(a['std'])}",
            finish=_normalize_finish,
        ),
        Op(
            "randomflip",
            "RandomFlip",
            FAMILY,
            {"mode": (enum(*FLIPS), "both")},
            None,
            _map_same("randomflip"),
            describe=lambda a: a["mode"],
            finish=_flip_finish,
        ),
        Op(
            "randomcrop",
            "RandomCropPad",  # netdsl's own Keras layer (Keras's RandomCrop neither pads nor keeps inference exact)
            FAMILY,
            {"size": (pair(), REQUIRED), "padding": (integer(0), 0)},
            lambda d, stride: {"size": d[0] if len(d) == 1 else d},
            _crop_shape,
            describe=lambda a: f"{a['size'][0]}x{a['size'][1]}" + (f" pad {a['padding']}" if a["padding"] else ""),
        ),
        Op(
            "randomtranslation",
            "RandomTranslation",
            FAMILY,
            {"height": (_FACTOR, REQUIRED), "width": (_FACTOR, None), **_FILL},
            _size_one("height", "width"),
            _map_same("randomtranslation"),
            describe=lambda a: f"{a['height']:g}x{a['width']:g}",
            finish=_factor_finish,
        ),
        Op(
            "randomrotation",
            "RandomRotation",
            FAMILY,
            {"factor": (_FACTOR, REQUIRED), **_FILL},
            _size_one("factor"),
            _map_same("randomrotation"),
            describe=lambda a: f"\u00b1{a['factor'] * 360:g}\u00b0",
        ),
        Op(
            "randomzoom",
            "RandomZoom",
            FAMILY,
            {"height": (real(0, 1, hi_open=True), REQUIRED), "width": (real(0, 1, hi_open=True), None), **_FILL},
            _size_one("height", "width"),
            _map_same("randomzoom"),
            describe=lambda a: f"\u00b1{a['height']:g}x{a['width']:g}",
            finish=_factor_finish,
        ),
    ]
}

ALIASES = {
    "rescaling": "rescale",
    "normalization": "normalize",
    "normalise": "normalize",
    "random_flip": "randomflip",
    "random_crop": "randomcrop",
    "random_translation": "randomtranslation",
    "random_rotation": "randomrotation",
    "random_zoom": "randomzoom",
}

USAGE = {
    "rescale": "rescale SCALE [offset=O], e.g. `rescale 1/255`",
    "normalize": "normalize mean=M std=S (one value, or one per channel: mean=0.49x0.48x0.45)",
    "randomcrop": "randomcrop HxW [padding=P], e.g. `randomcrop 32x32 padding=4`",
    "randomtranslation": "randomtranslation H[xW] [fill=reflect], e.g. `randomtranslation 0.1`",
    "randomrotation": "randomrotation F [fill=reflect], e.g. `randomrotation 0.05` (F x 360 degrees)",
    "randomzoom": "randomzoom H[xW] [fill=reflect], e.g. `randomzoom 0.1`",
}


def word_slot(op: Op, word: str) -> str | None:
    """The argument a bare word fills for these ops (`randomflip horizontal`, `fill=`'s words), or None."""
    for key, (conv, _default) in op.args.items():
        if word in getattr(conv, "choices", ()) and key not in ("activation", "padding"):
            return key
    return None

"""The Keras backend's preprocessing and augmentation layers (see :mod:`netdsl.ops_preprocess`).

Importable without TensorFlow.  Keras has every layer but one: its RandomCrop pads nothing and
resizes at inference, so ``randomcrop HxW padding=P`` is a small Keras layer of netdsl's own,
``RandomCropPad``, given here as text: :mod:`netdsl.backends.keras` compiles it and generated
files carry a copy (registered as ``netdsl>RandomCropPad`` so ``.keras`` archives load).
"""

from __future__ import annotations

from collections.abc import Callable

HELPERS = {
    "RandomCropPad": '''\
@keras.saving.register_keras_serializable(package="netdsl")
class RandomCropPad(keras.layers.Layer):
    """Zero-pad by `padding`, then a random height x width window per image in training; the
    centre window at inference (the identity when the size is the input's)."""

    def __init__(self, height, width, padding=0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width, self.padding, self.seed = height, width, padding, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        ops, p, h, w = keras.ops, self.padding, self.height, self.width
        if p:
            x = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        big_h, big_w, c = x.shape[1], x.shape[2], x.shape[3]
        if not training:
            top, left = (big_h - h) // 2, (big_w - w) // 2
            return x[:, top : top + h, left : left + w, :]
        n = ops.shape(x)[0]
        top = keras.random.randint((n, 1), 0, big_h - h + 1, seed=self.generator)
        left = keras.random.randint((n, 1), 0, big_w - w + 1, seed=self.generator)
        rows = ops.broadcast_to((top + ops.arange(h)[None, :])[:, :, None, None], (n, h, big_w, c))
        x = ops.take_along_axis(x, rows, axis=1)
        cols = ops.broadcast_to((left + ops.arange(w)[None, :])[:, None, :, None], (n, h, w, c))
        return ops.take_along_axis(x, cols, axis=2)

    def compute_output_shape(self, shape):
        return (shape[0], self.height, self.width, shape[3])

    def get_config(self):
        extra = {"height": self.height, "width": self.width, "padding": self.padding, "seed": self.seed}
        return {**super().get_config(), **extra}
''',
}


def _fill(a: dict) -> dict:
    return {} if a["fill"] == "reflect" else {"fill_mode": a["fill"]}  # Keras's default is reflect


def _normalize(a: dict) -> tuple[tuple, dict]:
    std = a["std"]
    variance = tuple(s * s for s in std) if isinstance(std, tuple) else std * std
    return (), {"mean": a["mean"], "variance": variance}


def _rescale(a: dict) -> tuple[tuple, dict]:
    return (a["scale"],), ({"offset": a["offset"]} if a["offset"] else {})


FLIP = {"horizontal": "horizontal", "vertical": "vertical", "both": "horizontal_and_vertical"}

# op -> (Keras class, its arguments); keras_program turns these into its KerasOp entries
OPS: dict[str, tuple[str, Callable[[dict], tuple[tuple, dict]]]] = {
    "rescale": ("Rescaling", _rescale),
    "normalize": ("Normalization", _normalize),
    "randomflip": ("RandomFlip", lambda a: ((FLIP[a["mode"]],), {})),
    "randomcrop": (
        "RandomCropPad",
        lambda a: ((a["size"][0], a["size"][1]), {"padding": a["padding"]} if a["padding"] else {}),
    ),
    "randomtranslation": ("RandomTranslation", lambda a: ((a["height"], a["width"]), _fill(a))),
    "randomrotation": ("RandomRotation", lambda a: ((a["factor"],), _fill(a))),
    "randomzoom": ("RandomZoom", lambda a: ((a["height"], a["width"]), _fill(a))),
}

"""`affine`: a learned per-channel scale and shift, y = scale * (x * gamma + beta).

Registered through the entry point `netdsl.ops` (pyproject.toml).  Neither torch nor
TensorFlow is imported until a backend asks for the layer: `netdsl check` stays fast.
The class texts below are what the generated sources contain, and what the in-memory
builders compile, so both are the same layer.
"""

from __future__ import annotations

import math

TORCH_CLASS = '''\
class ChannelAffine(nn.Module):
    """netdsl-affine: y = scale * (x * gamma + beta) per channel (dim 1), channels first."""

    def __init__(self, channels: int, scale: float = 1.0, bias: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = x * self.gamma.view(shape)
        if self.beta is not None:
            y = y + self.beta.view(shape)
        return y * self.scale
'''

KERAS_CLASS = '''\
class ChannelAffine(keras.layers.Layer):
    """netdsl-affine: y = scale * (x * gamma + beta) on the last axis."""

    def __init__(self, scale=1.0, bias=True, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.bias = scale, bias

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="beta") if self.bias else None

    def call(self, x):
        y = x * self.gamma
        if self.beta is not None:
            y = y + self.beta
        return y * self.scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "bias": self.bias}
'''

_classes: dict = {}


def _compiled(kind: str):
    """The class of TORCH_CLASS or KERAS_CLASS, compiled once (the framework imported now)."""
    if kind not in _classes:
        if kind == "torch":
            import torch
            from torch import nn

            namespace = {"torch": torch, "nn": nn, "__name__": __name__}
            exec(TORCH_CLASS, namespace)  # fixed text of this package
        else:
            import keras

            namespace = {"keras": keras, "__name__": __name__}
            exec(KERAS_CLASS, namespace)
        _classes[kind] = namespace["ChannelAffine"]
    return _classes[kind]


def _shape(a, s):
    if a["scale"] == 0:
        raise ValueError("scale=0 would make every output 0")
    return s


def _weights(a, s):
    return [("gamma", (s[-1],), True)] + ([("beta", (s[-1],), True)] if a["bias"] else [])


def register() -> None:
    import netdsl

    netdsl.register_op(
        "affine",
        args={"scale": ("float", 1.0), "bias": ("bool", True)},
        shorthand="scale",
        keras_class="ChannelAffine",
        family="norm",
        shape=_shape,
        weights=_weights,
        macs=lambda a, s, out: math.prod(out),  # one multiply-add per element
        torch=lambda a, s, out: _compiled("torch")(s[-1], a["scale"], a["bias"]),
        keras=lambda a, s, out, name: _compiled("keras")(a["scale"], a["bias"], name=name),
        torch_source=lambda a, s, out: (TORCH_CLASS, f"ChannelAffine({s[-1]}, {a['scale']!r}, {a['bias']!r})"),
        keras_source=lambda a, s, out, name: (
            KERAS_CLASS,
            f"ChannelAffine({a['scale']!r}, {a['bias']!r}, name={name!r})",
        ),
        describe=lambda a: (f"\u00d7{a['scale']:g}" if a["scale"] != 1 else "") + ("" if a["bias"] else " no bias"),
    )

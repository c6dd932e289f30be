"""The torch backend's preprocessing and augmentation layers (see :mod:`netdsl.ops_preprocess`).

Importable without torch: each layer is a helper class given as text, compiled by
:mod:`netdsl.backends.torch` and copied into generated files (as ``AvgPool2dSame`` is), and
an entry of the op table.  The random layers draw per image (not one draw per batch) from
torch's global generator, which the trainer seeds per epoch, and are the identity in
``eval()`` mode, as Keras's are at inference.
"""

from __future__ import annotations

from .torch_program import Layer, TorchOp

HELPERS = {
    "Rescale": '''\
class Rescale(nn.Module):
    """Keras's Rescaling: x * scale + offset."""

    def __init__(self, scale: float, offset: float = 0.0) -> None:
        super().__init__()
        self.scale, self.offset = scale, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset if self.offset else x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}, offset={self.offset}"
''',
    "Normalize": '''\
class Normalize(nn.Module):
    """Keras's Normalization with a fixed mean and standard deviation (one, or one per channel)."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)  # per channel: dim 1
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).reshape(shape)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).reshape(shape)
        return (x - mean) / std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"
''',
    "RandomFlip": '''\
class RandomFlip(nn.Module):
    """Keras's RandomFlip: in training each image is flipped with probability 1/2; "both" flips
    both axes together on one draw (a half turn), as Keras 3 does."""

    def __init__(self, mode: str = "both") -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        axes = {"horizontal": (3,), "vertical": (2,), "both": (2, 3)}[self.mode]
        flip = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) < 0.5  # one draw per image
        return torch.where(flip, x.flip(axes), x)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
''',
    "RandomCrop": '''\
class RandomCrop(nn.Module):
    """Zero-pad by `padding`, then a random size[0] x size[1] window per image in training; the
    centre window at inference (the identity when the size is the input's)."""

    def __init__(self, size: tuple, padding: int = 0) -> None:
        super().__init__()
        self.size, self.padding = tuple(size), padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, (h, w) = self.padding, self.size
        if p:
            x = F.pad(x, (p, p, p, p))
        n, c, big_h, big_w = x.shape
        if not self.training:
            top, left = (big_h - h) // 2, (big_w - w) // 2
            return x[:, :, top : top + h, left : left + w]
        top = torch.randint(0, big_h - h + 1, (n, 1, 1), device=x.device)
        left = torch.randint(0, big_w - w + 1, (n, 1, 1), device=x.device)
        rows = top + torch.arange(h, device=x.device).view(1, h, 1)
        cols = left + torch.arange(w, device=x.device).view(1, 1, w)
        index = (rows * big_w + cols).view(n, 1, h * w).expand(n, c, h * w)
        return x.reshape(n, c, big_h * big_w).gather(2, index).view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"size={self.size}, padding={self.padding}"
''',
    "RandomAffine": '''\
class RandomAffine(nn.Module):
    """Keras's RandomTranslation, RandomRotation and RandomZoom: a random affine map per image
    in training (bilinear, the border filled by `fill`), the identity at inference.

    kind "translation": shifts by up to height/width of the image's size; "rotation": turns by
    up to height * 2 pi; "zoom": scales by 1 + z, z up to height/width (z > 0 zooms out).
    """

    FILL = {"reflect": "reflection", "constant": "zeros", "nearest": "border"}

    def __init__(self, kind: str, height: float, width: float = 0.0, fill: str = "reflect") -> None:
        super().__init__()
        self.kind, self.height, self.width, self.fill = kind, height, width, fill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        n, _, h, w = x.shape
        theta = torch.zeros(n, 2, 3, device=x.device)

        def uniform(limit: float) -> torch.Tensor:  # one draw per image in [-limit, limit]
            return (torch.rand(n, device=x.device) * 2 - 1) * limit

        if self.kind == "translation":  # grid coordinates span 2 across the image
            theta[:, 0, 0] = theta[:, 1, 1] = 1
            theta[:, 0, 2], theta[:, 1, 2] = 2 * uniform(self.width), 2 * uniform(self.height)
        elif self.kind == "rotation":
            angle = uniform(self.height * 2 * 3.141592653589793)
            cos, sin = angle.cos(), angle.sin()
            theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * (h / w)
            theta[:, 1, 0], theta[:, 1, 1] = sin * (w / h), cos
        else:
            zoom_h = 1 + uniform(self.height)
            same = self.width == self.height
            theta[:, 0, 0], theta[:, 1, 1] = (zoom_h if same else 1 + uniform(self.width)), zoom_h
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=self.FILL[self.fill], align_corners=False)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, height={self.height}, width={self.width}, fill={self.fill!r}"
''',
}

CLASSES = tuple(HELPERS)


def _one(cls: str, make) -> TorchOp:
    return TorchOp(lambda a, ins, out: Layer((cls, *make(a)), (("module",),)))


OPS: dict[str, TorchOp] = {
    "rescale": _one("Rescale", lambda a: ((a["scale"],), {"offset": a["offset"]} if a["offset"] else {})),
    "normalize": _one("Normalize", lambda a: ((a["mean"], a["std"]), {})),
    "randomflip": _one("RandomFlip", lambda a: ((a["mode"],), {})),
    "randomcrop": _one("RandomCrop", lambda a: ((tuple(a["size"]),), {"padding": a["padding"]})),
    "randomtranslation": _one(
        "RandomAffine", lambda a: (("translation", a["height"], a["width"]), {"fill": a["fill"]})
    ),
    "randomrotation": _one("RandomAffine", lambda a: (("rotation", a["factor"]), {"fill": a["fill"]})),
    "randomzoom": _one("RandomAffine", lambda a: (("zoom", a["height"], a["width"]), {"fill": a["fill"]})),
}

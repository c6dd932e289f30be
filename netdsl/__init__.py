"""netdsl: a compact language for neural networks, checked before any framework loads.

>>> import netdsl
>>> net = netdsl.parse("conv 6x5 sigmoid; maxpool 2/2; flatten; dense 10 softmax")
>>> net.output_shape
(None, 10)
"""

from .errors import NetdslError
from .net import Layer, Net, load, parse


def __getattr__(name: str):
    # netdsl.train(...) is imported when first used: the check path stays light
    if name == "train":
        from .training import train

        return train
    raise AttributeError(f"module 'netdsl' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """`%load_ext netdsl`: the `%%netdsl [name]` cell magic (see netdsl.notebook)."""
    from .notebook import load_ipython_extension as load

    load(ipython)


def __dir__() -> list[str]:
    return sorted({*globals(), "train"})  # train is there, only imported late


__all__ = ["Layer", "Net", "NetdslError", "load", "parse", "train"]
__version__ = "0.1.0"

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
    if name == "sweep":  # netdsl.sweep(...): Optuna is imported only then
        from .sweeping import sweep

        return sweep
    raise AttributeError(f"module 'netdsl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "train", "sweep"})  # train and sweep are there, only imported late


__all__ = ["Layer", "Net", "NetdslError", "load", "parse", "sweep", "train"]
__version__ = "0.1.0"

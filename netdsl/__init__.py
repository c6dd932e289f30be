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
    if name == "register_op":  # plugin layers (netdsl/plugins.py)
        from .plugins import register_op

        return register_op
    if name in ("from_torch", "from_keras"):  # netdsl import's API: the framework loads when called
        from . import importers

        return getattr(importers, name)
    if name == "sweep":  # netdsl.sweep(...): Optuna is imported only then
        from .sweeping import sweep

        return sweep
    raise AttributeError(f"module 'netdsl' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """`%load_ext netdsl`: the `%%netdsl [name]` cell magic (see netdsl.notebook)."""
    from .notebook import load_ipython_extension as load

    load(ipython)


def __dir__() -> list[str]:
    return sorted(
        {*globals(), "train", "sweep", "register_op", "from_torch", "from_keras"}
    )  # there, only imported late


__all__ = ["Layer", "Net", "NetdslError", "from_keras", "from_torch", "load", "parse", "register_op", "sweep", "train"]
__version__ = "0.1.0"

"""Modules a hostile user hands `netdsl import` (tests/importing/test_hostile.py): prints, exits, raises."""

import argparse
import sys

import torch.nn.functional as F
from torch import nn

print("hello from the module")  # must not land in `-o -`'s spec

# what `python hostile_models.py --lr 0.5` would parse; netdsl's own flags must not reach it
ARGS = argparse.ArgumentParser().parse_known_args()[0]
ARGV = list(sys.argv)


def mlp():
    return nn.Sequential(nn.Linear(4, 3))


class Prints(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        print("hello from forward")
        return self.fc(x)


class Exits(nn.Module):
    def __init__(self, code=3):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.code = code

    def forward(self, x):
        sys.exit(self.code)


def exits7():
    return Exits(7)


class Raises(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        raise RuntimeError("fwd boom")


class Dropping(nn.Module):
    """F.dropout with torch's default training=True: it drops at inference too."""

    def __init__(self, pass_training=False):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.pass_training = pass_training

    def forward(self, x):
        if self.pass_training:
            return F.dropout(self.fc(x), 0.5, training=self.training)
        return F.dropout(self.fc(x), 0.5)


class Leaky(nn.Module):
    def __init__(self, slope=-0.5):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.slope = slope

    def forward(self, x):
        return F.leaky_relu(self.fc(x), self.slope)

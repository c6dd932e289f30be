"""Kept for imports from before the front end moved to :mod:`netdsl.frontend`."""

from .frontend.recipe import DATASETS, LOSSES, METRICS, OPTIMIZERS

__all__ = ["DATASETS", "LOSSES", "METRICS", "OPTIMIZERS"]

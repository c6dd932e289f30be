"""The `train` and `data` statements: their keys, values and ranges.

Kept apart from the rest of the front end on purpose: the settings table
(optimizers, schedules, data sets, every key with its type and range) is meant to
live in one module shared with the trainer and the CLI, and only the bodies here
need to change to use it.  :class:`Recipe` gets each statement and fills ``config``
(the dict ``Net.train_config`` returns).
"""

from __future__ import annotations

from typing import Any

from .. import ops
from . import syntax as s
from .diagnostics import Reporter, suggest

DATASETS = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashion": "fashion-mnist",
}
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
LOSSES = ("sparse_categorical_crossentropy",)
METRICS = ("accuracy",)


def _rules() -> dict:
    return {
        "optimizer": ops.enum(*OPTIMIZERS),
        "lr": ops.real(0, 1e6, lo_open=True),
        "epochs": ops.integer(1),
        "batch": ops.integer(1),
        "validation": ops.real(0, 1, hi_open=True),
        "loss": ops.enum(*LOSSES),
        "metrics": ops.enum(*METRICS),
        "seed": ops.integer(0),
    }


class Recipe:
    def __init__(self, report: Reporter):
        self.report = report
        self.config: dict[str, Any] = {}
        self.train_span = None

    def train(self, st: s.Train, value, missing) -> None:
        """``value(expr, rule)`` evaluates a setting (``missing`` when it failed, already reported)."""
        if self.train_span is not None:
            self.report.error(
                "E115", "a second `train` statement", st.span, notes=[f"the first is at line {self.train_span.line}"]
            )
            return
        self.train_span = st.span
        _train(st, value, self.report, self.config, missing)

    def data(self, st: s.Data) -> None:
        _data(st, self.report, self.config)


def _train(st: s.Train, value, report: Reporter, config: dict[str, Any], missing) -> None:
    rules = _rules()
    given: dict[str, tuple[Any, Any]] = {}
    if st.optimizer is not None:  # the bare optimizer: a literal word
        given["optimizer"] = (st.optimizer.text, st.optimizer.span)
    for kw in st.settings:
        key = kw.key.text.lower()
        if key in given:
            report.error("E115", f"`{key}` is given twice", kw.span)
            continue
        v = value(kw.value, rules.get(key))
        if v is not missing:
            given[key] = (v, kw.span)
    for key, (v, vspan) in given.items():
        if key not in rules:
            report.error(
                "E115",
                f"`train` has no setting `{key}` (its settings: {', '.join(rules)})",
                vspan,
                hint=suggest(key, rules),
            )
            continue
        try:
            config[key] = rules[key](key, v)
        except ops.ArgError as e:
            report.error("E115", e.message, vspan, hint=e.hint)


def _data(st: s.Data, report: Reporter, config: dict[str, Any]) -> None:
    name = "-".join(w.text for w in st.words).lower()
    if name not in DATASETS:
        report.error(
            "E115",
            f"unknown data set `{name}` (known: mnist, fashion-mnist)",
            st.words[0].span.to(st.words[-1].span),
            hint=suggest(name, ["mnist", "fashion-mnist"]),
        )
        return
    if "dataset" in config:
        report.error("E115", "a second `data` statement", st.span)
        return
    config["dataset"] = DATASETS[name]

"""The `train` and `data` statements: their keys, values and ranges.

The rules (optimizers, schedules, data sets, every key with its type and range) are
:mod:`netdsl.settings`, the one table the trainer, the CLI and the docs read too; this
module only reports its verdicts at the statement's spans.  :class:`Recipe` gets each statement and fills ``config``
(the dict ``Net.train_config`` returns).
"""

from __future__ import annotations

from typing import Any

from .. import settings
from . import syntax as s
from .diagnostics import Reporter

# the words a `train` value may be (optimizers, schedules, losses, ...): from the one table
TRAIN_WORDS = settings.WORDS


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
    given: dict[str, tuple[Any, Any]] = {}
    if st.optimizer is not None:  # the bare optimizer: a literal word
        given["optimizer"] = (st.optimizer.text, st.optimizer.span)
    for kw in st.settings:
        key = kw.key.text.lower()
        if key in given:
            report.error("E115", f"`{key}` is given twice", kw.span)
            continue
        v = value(kw.value, settings.KEYS.get(key) if key in settings.TRAIN_KEYS else None)
        if v is not missing:
            given[key] = (v, kw.span)
    for key, (v, vspan) in given.items():
        result = settings.normalise(key, v) if key in settings.TRAIN_KEYS else settings.unknown(key)
        if isinstance(result, settings.Problem):
            report.error("E115", result.message, vspan, hint=result.hint)
        else:
            config[key] = result
    for key, problem in settings.conflicts(config):
        report.error("E115", problem.message, given[key][1], hint=problem.hint)


def _data(st: s.Data, report: Reporter, config: dict[str, Any]) -> None:
    name = "-".join(w.text for w in st.words).lower()
    result = settings.normalise("dataset", name)
    if isinstance(result, settings.Problem):
        report.error("E115", result.message, st.words[0].span.to(st.words[-1].span), hint=result.hint)
        return
    if "dataset" in config:
        report.error("E115", "a second `data` statement", st.span)
        return
    config["dataset"] = result

"""Checking the candidates of `netdsl sweep` before any training: :class:`Screen` builds one
candidate of the spec's search space and holds it to the checks of `netdsl check`, its training
settings, the data set it will train on and the budgets; :func:`suggest` (Optuna's proposal)
and :func:`draw` (a redraw without the study) pick candidates."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .errors import NetdslError, Source


@dataclass
class Options:
    trials: int = 20
    timeout: float | None = None
    max_params: int | None = None
    max_macs: int | None = None
    objectives: tuple[str, ...] = ("val_accuracy",)
    storage: str | None = None
    study: str | None = None
    out: str | None = None
    resume: bool = False
    max_rejects: int = 1000
    prune: bool = True
    quiet: bool = False
    train: dict = field(default_factory=dict)  # the train flags (None: the spec's or the default)


# ---- checking candidates -----------------------------------------------------------------


class Screen:
    """A spec parsed once; :meth:`check` builds and checks one candidate in milliseconds."""

    def __init__(self, source: Source, params: dict, input_shape, opts: Options, name: str = "net"):
        from .frontend.driver import parse_program
        from .frontend.spaces import extract

        self.source, self.params, self.input_shape, self.opts, self.name = source, params, input_shape, opts, name
        self._data: dict = {}  # (data set, input and output shape) -> None (it fits) or its E602
        try:
            self.program = parse_program(source.text)
            self.space = extract(self.program, source.text)
        except NetdslError as e:
            raise e.located(source) from None
        if not self.space:
            raise NetdslError(
                "E910",
                "the spec has no search space: nothing to sweep",
                hint="write one where a value may vary: `dense choice(64, 128)`, `train lr=log(1e-4, 1e-2)`",
                source=source,
            )
        self._whole_numbers()

    def train_line(self) -> dict:
        """The spec's `train` settings: key -> its expression (the optimizer word as `optimizer`)."""
        from .frontend import syntax as s

        found: dict = {}
        for st in self.program.stmts:
            if isinstance(st, s.Train):
                if st.optimizer is not None:
                    found["optimizer"] = st.optimizer
                found.update((k.key.text, k.value) for k in st.settings)
        return found

    def swept_settings(self) -> dict:
        """Training settings the spec searches: setting -> its dimension (`lr` -> log(1e-3, 1e-2))."""
        from .frontend import syntax as s

        dims = {d.name: d for d in self.space.dims}
        found = {}
        for k, v in self.train_line().items():
            if k in dims:
                found[k] = dims[k]
            elif isinstance(v, s.Name) and v.name in dims:  # `let r = log(...)` then `train lr=r`
                found[k] = dims[v.name]
        return found

    def overridden(self, given: dict) -> str | None:
        """Why the train flags in ``given`` would replace a setting the spec searches (the trial
        would train at the flag's value while the study records the drawn one), or None."""
        swept = self.swept_settings()
        line = self.train_line()
        for key, dim in swept.items():
            if given.get(key) is not None:
                flag = "--" + key.replace("_", "-")
                return f"{flag} replaces the search space `{dim.name}={dim.text()}` of the spec's train line"
        # a flag naming another optimizer (schedule) drops the spec's settings that were for its own
        for flag, tied in (("optimizer", ("lr", "momentum", "nesterov")), ("schedule", ("gamma", "step_size", "min_lr", "lr_patience"))):  # fmt: skip
            hit = [k for k in tied if k in swept]
            if given.get(flag) is not None and hit:
                mine = getattr(line.get(flag), "text", None)
                if mine is None or str(given[flag]).lower() != mine.lower():
                    return (
                        f"--{flag} {given[flag]} drops the spec's search space `{hit[0]}={swept[hit[0]].text()}` "
                        f"(it was for the spec's {flag})"
                    )
        return None

    def no_validation(self, given: dict, objectives) -> str | None:
        """Why a val_* objective cannot be measured: validation=0 (a flag or the train line)."""
        from .frontend import syntax as s

        need = [o for o in objectives if o.startswith("val_")]
        if not need:
            return None
        if given.get("validation") is not None:
            if float(given["validation"]) == 0:
                return f"--objective {need[0]} is measured on the validation split, and --validation 0 leaves none"
            return None
        v = self.train_line().get("validation")
        if isinstance(v, s.Num) and v.value == 0:
            return f"--objective {need[0]} is measured on the validation split, and the spec's validation=0 leaves none"
        return None

    def _whole_numbers(self) -> None:
        """E907 before any trial, as `netdsl check` does: a float space feeding a whole number
        would have every candidate but its lower bound pruned."""
        from .frontend.driver import compile_program, whole_numbers

        default = self.space.default()
        try:
            compile_program(self.source, self.program, self.params, self.input_shape, self.space, default)
        except NetdslError:
            return  # a sweep needs no valid default candidate: it is pruned like any other
        whole_numbers(self.source, self.program, self.params, self.input_shape, self.space, default)

    def check(self, values: dict):
        """(net, None) for a candidate that can be trained, else (None, reason)."""
        from .frontend.driver import compile_program
        from .net import Net
        from .training import resolve

        try:
            graph = compile_program(self.source, self.program, self.params, self.input_shape, self.space, dict(values))
            net = Net(graph, self.source, self.name)
            settings = {k: v for k, v in self.opts.train.items() if v is not None}
            arrays = settings.pop("data", None) if not isinstance(settings.get("data"), (str, os.PathLike)) else None
            self._fits_data(net, resolve(net, settings), arrays)
        except NetdslError as e:
            if getattr(e, "whole_sweep", False):
                raise
            first = e.errors[0] if getattr(e, "errors", None) else e
            where = f" (line {first.span.line})" if first.span else ""
            return None, f"{first.code}: {first.message}{where}"
        if net.trainable_params == 0:  # (the trainer refuses it too, after the sweep paid for a trial)
            return None, "nothing to train: the candidate has no trainable parameters (every layer frozen?)"
        if self.opts.max_params is not None and net.total_params > self.opts.max_params:
            return None, f"{net.total_params:,} params, over --max-params {self.opts.max_params:,}"
        if self.opts.max_macs is not None and net.total_macs > self.opts.max_macs:
            return None, f"{net.total_macs:,} MACs, over --max-macs {self.opts.max_macs:,}"
        return net, None

    def _fits_data(self, net, s, arrays) -> None:
        """E602 unless the candidate takes the samples of the data set the sweep trains on and
        gives one score per class (as `netdsl train` holds it).  A standard data set's shape is
        known; a user's (.npz, image folder, arrays) is read once per input and output shape,
        since only those decide, and not kept."""
        from . import datasets

        k = datasets.kind(s, arrays)
        if k in datasets.STANDARD:
            datasets.precheck(net, s, arrays)
            return
        key = (k, s.data, s.scale, getattr(s, "resize", None), tuple(net.input_shape[1:]), tuple(net.output_shape[1:]))
        if key not in self._data:
            try:
                datasets.load(net, s, arrays)
                self._data[key] = None
            except NetdslError as e:
                # a file that cannot be read fails every candidate alike: the sweep's error, not
                # a candidate's reason (E602, E613: the candidate's shape does not fit the data)
                e.whole_sweep = e.code not in ("E602", "E613")
                self._data[key] = e
        if self._data[key] is not None:
            raise self._data[key]

    def resolved(self, values: dict, net):
        """The candidate as a plain spec (every search space written as its value, as best.net
        is): what its trial trains, so that the run directory's spec.net rebuilds this very
        net for `netdsl evaluate`/`predict`/`train --resume`, not the spec's default."""
        from .frontend.spaces import plain_text
        from .net import compile_source

        try:
            text = plain_text(self.source.text, self.space, values)
            plain = compile_source(Source(text, self.source.filename), self.params, self.input_shape, self.name)
        except NetdslError:  # (cannot happen: the same values, written out) train what was checked
            return net
        return plain if plain.total_params == net.total_params else net


_BUDGET = re.compile(r"([\d,]+) (params|MACs), over ")


def reason_kind(reason: str) -> str:
    """What a reason is about, to count the common ones: a code, or a budget."""
    if reason.startswith("E"):
        return reason.split(":", 1)[0]
    return reason.split(", over ", 1)[-1].split(" ", 1)[0] if ", over " in reason else reason


def suggest(trial, space) -> dict:
    values = {}
    for d in space.dims:
        if d.kind == "choice":
            values[d.name] = trial.suggest_categorical(d.name, list(d.options))
        elif d.integer:
            values[d.name] = trial.suggest_int(d.name, d.low, d.high, log=d.kind == "log")
        else:
            values[d.name] = trial.suggest_float(d.name, d.low, d.high, log=d.kind == "log")
    return values


def draw(rng, space) -> dict:
    """A candidate drawn uniformly from the whole space (log-uniformly for `log`), without Optuna:
    the redraws after a rejection cost no storage round trip."""
    import math

    values = {}
    for d in space.dims:
        if d.kind == "choice":
            values[d.name] = d.options[rng.randrange(len(d.options))]
        elif d.kind == "int":
            values[d.name] = rng.randint(d.low, d.high)
        elif d.kind == "float":
            values[d.name] = rng.uniform(d.low, d.high)
        else:
            v = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
            values[d.name] = min(max(round(v), d.low), d.high) if d.integer else min(max(v, d.low), d.high)
    return values

"""`netdsl sweep`: search a spec's search spaces with Optuna, checking every candidate first.

A candidate is written into the spec (:mod:`netdsl.frontend.spaces`) and checked as
`netdsl check` does, with its training settings, the data set it trains on (shape and classes)
and the budgets (--max-params, --max-macs).
TPE's proposal is a trial of the study; when it fails the checks it is told as pruned, with
its reason, and costs no training.  Then candidates are redrawn at random from the whole
space, without the study (a storage round trip per candidate made screening slow), until one
passes: it is enqueued as the next trial.  The redrawn ones that fail are rows of
rejected.csv in the sweep directory.  --trials counts trained trials in the whole study (so
several processes sharing one storage stop together, and a rerun continues); after
--max-rejects candidates in a row fail, the sweep stops (E910 when none was ever trained).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections import Counter
from pathlib import Path

from .errors import NetdslError
from .sweep_screen import _BUDGET, Options, Screen, draw, reason_kind, suggest  # noqa: F401 - re-exported
from .sweep_study import OBJECTIVES, _Beat, counts, fail_lost, make_dir, open_study, undo  # noqa: F401 - re-exported

PER_EPOCH = ("val_accuracy", "val_loss", "accuracy", "loss")  # reported each epoch: the pruner's input
MAX_TRIALS = 100_000
WAIT_POLL = 2.0  # seconds between looks at trials other processes train


def _optuna():
    try:
        import optuna
    except ImportError:
        raise NetdslError(
            "E912", "netdsl sweep needs Optuna, which is not installed", hint="pip install 'netdsl[sweep]'"
        ) from None
    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the heartbeat is experimental and "meant for Study.optimize": netdsl beats itself (_Beat)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
    return optuna


# ---- the loop --------------------------------------------------------------------------------


class Sweep:
    """One process's part of a study: draw, check, train, tell; until the study has
    ``trials`` trained trials, the time is up, or too many candidates in a row fail."""

    def __init__(self, screen: Screen, opts: Options, out: Path, name: str, say):
        self.optuna = _optuna()
        self.screen, self.opts, self.out, self.say = screen, opts, out, say
        self.runs = out / "trials" / study_dir(name)  # each study its own: trial numbers restart per study
        if opts.storage == "memory" and self.runs.is_dir() and any(self.runs.iterdir()):
            raise NetdslError(
                "E911",
                f"a `--storage memory` study cannot be continued, and `{self.runs}` holds the trials of an earlier sweep",
                hint="name a new -o DIR or --study NAME (or leave --storage out: the SQLite study continues)",
            )
        self.study, created = open_study(self.optuna, opts, screen, out, name)
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise NetdslError("E911", f"cannot make the trials' directory `{self.runs}`: {e.strerror or e}") from None
        lost = fail_lost(self.optuna, self.study)
        if lost:
            say(f"marked {lost} trial{'s' * (lost != 1)} failed: their process ended while they trained")
        done = counts(self.optuna, self.study)
        seed = int(opts.train.get("seed") or 0)
        if not created:  # a rerun or a second worker: another stream than the first process's
            seed = (seed * 1_000_003 + len(self.study.trials) + os.getpid()) % 2**31
            say(f"continuing study `{name}`: {done} of {opts.trials} trained trials so far")
        import random

        self.study.sampler = self.optuna.samplers.TPESampler(seed=seed, constant_liar=len(opts.objectives) == 1)
        self.rng = random.Random(seed)
        self.log = out / "rejected.csv"
        if opts.prune and len(opts.objectives) == 1 and opts.objectives[0] in PER_EPOCH:
            self.study.pruner = self.optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        else:
            self.study.pruner = self.optuna.pruners.NopPruner()
        self.reasons: Counter = Counter()
        self.examples: dict[str, str] = {}  # kind -> its first reason
        self.varied: set[str] = set()  # kinds whose reasons differ in their text
        self.ranges: dict[str, tuple[int, int]] = {}  # budget -> the lowest and highest value over it
        self.trained = 0
        self.refused: set[tuple] = set()  # candidates of a discrete space the checks refused
        self.stopped = ""

    def run(self) -> None:
        deadline = None if self.opts.timeout is None else time.monotonic() + self.opts.timeout
        self.in_row = 0
        waited = False
        while True:
            if counts(self.optuna, self.study) >= self.opts.trials:
                self.stopped = f"the study has {self.opts.trials} trained trials"
                return
            if deadline is not None and time.monotonic() >= deadline:
                self.stopped = f"--timeout {self.opts.timeout:g} s reached"
                return
            if counts(self.optuna, self.study, running=True) >= self.opts.trials:
                # the rest of --trials is in training elsewhere: wait for it to finish, or for its
                # process to be found dead (its trial is then lost and trained again here)
                if not waited and not self.opts.quiet:
                    self.say("waiting for the trials other processes are training")
                waited = True
                lost = fail_lost(self.optuna, self.study)
                if lost:
                    self.say(f"marked {lost} trial{'s' * (lost != 1)} failed: their process ended while they trained")
                time.sleep(WAIT_POLL)
                continue
            if self._exhausted():
                self.stopped = f"all {self.screen.space.discrete():,} candidates of the space are trained"
                return
            if self._all_refused():
                n = self.screen.space.discrete()
                self.stopped = f"all {n:,} candidate{'s' * (n != 1)} of the space were drawn: none is left to train"
                return
            if self.in_row >= self.opts.max_rejects:
                self.stopped = f"{self.in_row} candidates in a row were pruned before training (--max-rejects)"
                return
            trial = self.study.ask()  # TPE's proposal, or a redrawn candidate enqueued below
            try:
                ok = self._one(trial)
            except KeyboardInterrupt:  # Ctrl-C, SIGTERM while it was checked: lost, not left running
                with contextlib.suppress(Exception):  # (one told already raises: nothing to do)
                    trial.set_user_attr("lost", "interrupted")
                    self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
                raise
            if ok:
                self.in_row = 0
                continue
            self.in_row += 1
            if counts(self.optuna, self.study, running=True) >= self.opts.trials:  # others took the rest meanwhile
                continue
            found = self._redraw(deadline)
            if found is not None:
                self.study.enqueue_trial(found, user_attrs={"redrawn": True}, skip_if_exists=False)

    def _exhausted(self) -> bool:
        """A space without continuous dimensions whose every candidate has been trained."""
        space = self.screen.space
        if space.continuous() or space.discrete() > 10_000:
            return False
        seen = {
            tuple(sorted(t.params.items()))
            for t in self.study.get_trials(deepcopy=False)
            if t.user_attrs.get("netdsl") == "trained" and "lost" not in t.user_attrs
        }
        return len(seen) >= space.discrete()

    def _all_refused(self, study: bool = True) -> bool:
        """A small discrete space whose every candidate was drawn and refused by the checks (or
        trained: with ``study``, which reads the study): drawing on to --max-rejects would only
        repeat them."""
        space = self.screen.space
        if space.continuous() or space.discrete() > 10_000 or not self.refused:
            return False
        if len(self.refused) >= space.discrete() or not study:
            return len(self.refused) >= space.discrete()
        seen = set(self.refused) | {
            tuple(sorted(t.params.items()))
            for t in self.study.get_trials(deepcopy=False)
            if t.user_attrs.get("netdsl") == "trained" and "lost" not in t.user_attrs
        }
        return len(seen) >= space.discrete()

    def _refuse(self, values: dict) -> None:
        if not self.screen.space.continuous() and len(self.refused) <= 10_000:
            self.refused.add(tuple(sorted(values.items())))

    def _redraw(self, deadline) -> dict | None:
        """Draw at random until a candidate passes the checks (then it is the next trial) or
        the bounds are reached; each rejected one is a row of rejected.csv."""
        rows = []
        try:
            while (
                self.in_row < self.opts.max_rejects
                and (deadline is None or time.monotonic() < deadline)
                and not (rows and self._all_refused(study=False))
            ):
                values = draw(self.rng, self.screen.space)
                _net, reason = self.screen.check(values)
                if reason is not None:
                    self._refuse(values)
                if reason is None:
                    reason = self._duplicate(None, values)
                    if reason is not None:  # trained already: as good as refused for the redraws
                        self._refuse(values)
                if reason is None:
                    return values
                self.in_row += 1
                self._count(reason)
                rows.append((reason, values))
            return None
        finally:
            self._write_rejected(rows)

    def _count(self, reason: str) -> None:
        kind = reason_kind(reason)
        self.reasons[kind] += 1
        self.examples.setdefault(kind, reason)
        if self.examples[kind] != reason:
            self.varied.add(kind)
        m = _BUDGET.match(reason)
        if m:
            n = int(m.group(1).replace(",", ""))
            lo, hi = self.ranges.get(kind, (n, n))
            self.ranges[kind] = (min(lo, n), max(hi, n))

    def common_reasons(self, k: int = 3) -> str:
        """The commonest kinds of reason (an error code, a budget), each with its count and
        what its reasons have in common: the budget's range of values, or one example when
        the messages differ (the values in them)."""
        parts = []
        for kind, n in self.reasons.most_common(k):
            example = self.examples[kind]
            if kind in self.ranges:
                lo, hi = self.ranges[kind]
                unit = _BUDGET.match(example).group(2)
                size = f"{lo:,} {unit}" if lo == hi else f"{lo:,} to {hi:,} {unit}"
                parts.append(f"{n} x over {kind} {example.rsplit(' ', 1)[-1]} ({size})")
            elif kind in self.varied:
                parts.append(f"{n} x {kind}, e.g. {example}")
            else:
                parts.append(f"{n} x {example}")
        return "; ".join(parts)

    def _write_rejected(self, rows) -> None:
        if not rows:
            return
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        host, pid = socket.gethostname(), os.getpid()
        for reason, values in rows:
            w.writerow([host, pid, reason, json.dumps(values)])
        with contextlib.suppress(OSError):
            with contextlib.suppress(FileExistsError), open(self.log, "x", encoding="utf-8") as f:
                f.write("host,pid,reason,candidate\n")  # the process that creates it writes the header
            with open(self.log, "a", encoding="utf-8") as f:  # appends: workers share it
                f.write(buf.getvalue())
        if not self.opts.quiet:
            self.say(f"  {len(rows)} redrawn candidate{'s' * (len(rows) != 1)} pruned before training (rejected.csv)")

    def _one(self, trial) -> bool:
        """Check and, if it fits, train one trial; False when it was pruned before training."""
        S = self.optuna.trial.TrialState
        values = suggest(trial, self.screen.space)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        try:
            net, reason = self.screen.check(values)
        except NetdslError as e:  # the data cannot be read: no trial can train
            trial.set_user_attr("lost", f"{e.code}: {e.message}")
            self.study.tell(trial, state=S.FAIL)
            raise
        if reason is not None:
            self._refuse(values)
        if reason is None:
            reason = self._duplicate(trial, values)
        if reason is None and counts(self.optuna, self.study, before=trial.number, running=True) >= self.opts.trials:
            reason = "not trained: other processes have trained the study's --trials"
        if reason is not None:
            trial.set_user_attr("netdsl", "rejected")
            trial.set_user_attr("reason", reason)
            self.study.tell(trial, state=S.PRUNED)
            self._count(reason)
            if not self.opts.quiet:
                self.say(f"trial {trial.number}: pruned before training: {reason}")
            return False
        trial.set_user_attr("netdsl", "trained")
        trial.set_user_attr("params", net.total_params)
        trial.set_user_attr("macs", net.total_macs)
        self.trained += 1
        self._train(trial, self.screen.resolved(values, net), values)
        return True

    def _failed(self, trial, error: str) -> None:
        trial.set_user_attr("error", error)
        self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        self.say(f"trial {trial.number}: failed in training: {error}")

    def _duplicate(self, trial, values: dict) -> str | None:
        S = self.optuna.trial.TrialState
        if self.screen.space.continuous():  # a float drawn twice: not worth reading every trial
            return None
        for t in self.study.get_trials(deepcopy=False, states=(S.COMPLETE, S.RUNNING, S.PRUNED)):
            if (
                (trial is None or t.number != trial.number)
                and t.user_attrs.get("netdsl") == "trained"
                and t.params == values
            ):
                return f"the same candidate as trial {t.number}"
        return None

    def _train(self, trial, net, values: dict) -> None:
        from .training import train

        S = self.optuna.trial.TrialState
        opts, objective = self.opts, self.opts.objectives
        run = self.runs / f"{trial.number:04d}"
        trial.set_user_attr("run", str(run))
        pruned = []

        def on_epoch(epoch: int, row: dict) -> bool:
            if len(objective) > 1 or objective[0] not in PER_EPOCH or row.get(objective[0]) is None:
                return False
            trial.report(float(row[objective[0]]), epoch)
            if trial.should_prune():
                pruned.append(epoch)
                return True
            return False

        t0 = time.perf_counter()
        try:
            settings = {k: v for k, v in opts.train.items() if v is not None}
            with _Beat(self.study, trial):
                metrics = train(net, settings.pop("backend", None), out=run, quiet=True, on_epoch=on_epoch, **settings)
        except NetdslError as e:
            if e.code not in CANDIDATE_ERRORS and not out_of_memory(e):
                # no data, no framework, a bad flag: every trial would fail so
                trial.set_user_attr("lost", f"{e.code}: {e.message}")
                self.study.tell(trial, state=S.FAIL)
                raise
            # this candidate diverged, or is too big for this machine's memory: it failed, and counts
            self._failed(trial, f"{e.code}: {e.message}")
            return
        except (MemoryError, RuntimeError) as e:
            if not out_of_memory(e):
                trial.set_user_attr("lost", f"{type(e).__name__}: {e}"[:300])
                with contextlib.suppress(Exception):
                    self.study.tell(trial, state=S.FAIL)
                raise
            # the framework's own allocation error (a trainer that does not turn it into a NetdslError)
            self._failed(trial, f"not enough memory to train this candidate ({net.total_params:,} params)")
            return
        except BaseException:  # Ctrl-C, SIGTERM: the trial is lost, not failed
            trial.set_user_attr("lost", "interrupted")
            with contextlib.suppress(Exception):
                self.study.tell(trial, state=S.FAIL)
            raise
        last = metrics["epochs"][-1] if metrics["epochs"] else {}
        got = {**{k: last.get(k) for k in PER_EPOCH}, "test_accuracy": metrics.get("test_accuracy")}
        got.update(params=net.total_params, macs=net.total_macs)
        seconds = round(time.perf_counter() - t0, 3)
        for k in (*PER_EPOCH, "test_accuracy"):
            if got.get(k) is not None:
                trial.set_user_attr(k, float(got[k]))
        trial.set_user_attr("seconds", seconds)
        trial.set_user_attr("epochs", len(metrics["epochs"]))
        shown = ", ".join(f"{k} {_fmt(got[k])}" for k in objective)
        if pruned and pruned[0] < metrics["settings"]["epochs"]:  # pruned at the last epoch: it finished
            self.study.tell(trial, state=S.PRUNED)
            self.say(f"trial {trial.number}: pruned after epoch {pruned[0]} ({shown}, {seconds:.1f} s)")
            return
        missing = [k for k in objective if got.get(k) is None]
        if missing:
            trial.set_user_attr("error", f"no {missing[0]} (validation=0?)")
            self.study.tell(trial, state=S.FAIL)
            self.say(f"trial {trial.number}: failed: training gave no {missing[0]} (set validation above 0)")
            return
        self.study.tell(trial, [float(got[k]) for k in objective])
        self.say(f"trial {trial.number}: {shown}, {net.total_params:,} params, {seconds:.1f} s")


# the trainer's errors about one candidate (the sweep goes on): diverged, or too big for this
# machine's memory (:func:`out_of_memory`); any other fails every trial alike.  (A candidate with
# nothing to train is pruned before training: Screen.check.)
CANDIDATE_ERRORS = ("E604",)
_NO_MEMORY = re.compile(r"memory|DefaultCPUAllocator|ResourceExhausted|\bOOM\b", re.IGNORECASE)


def out_of_memory(e: BaseException) -> bool:
    """An allocation that failed: one candidate too big for this machine, not a fault of the
    whole sweep (torch's "DefaultCPUAllocator: can't allocate memory", TensorFlow's
    ResourceExhaustedError, MemoryError, or the trainer's NetdslError saying so)."""
    if isinstance(e, MemoryError):
        return True
    text = e.message if isinstance(e, NetdslError) else f"{type(e).__name__}: {e}"
    return bool(_NO_MEMORY.search(text))


def study_dir(name: str) -> str:
    """The folder of a study's trial run directories under trials/: its name when that is a
    plain file name, else a name made from its hash (`--study ../x` stays inside)."""
    import hashlib

    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}", name) and name not in (".", ".."):
        return name
    return "study-" + hashlib.sha256(name.encode()).hexdigest()[:12]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def sweep(
    spec,
    *,
    trials: int = 20,
    out=None,
    objective: str = "val_accuracy",
    verbose: bool = False,
    max_rejects: int = 1000,
    **settings,
):
    """Search ``spec``'s search spaces from Python, as `netdsl sweep` does; returns the Optuna study.

    ``spec`` is a path or a :class:`~netdsl.net.Net`'s source; ``out`` the sweep directory
    (default ``sweeps/<stem>``); ``objective`` one name or two joined by a comma.  Of
    ``settings``, ``timeout``, ``max_params``, ``max_macs``, ``storage``, ``study``,
    ``resume`` and ``prune`` are the sweep's, the rest training settings (``epochs=2``,
    ``data="dir"``, ``seed=0``).  Errors raise :class:`NetdslError` (E910 when every
    candidate was pruned before training).
    """
    from .net import read_spec

    source = spec.source if hasattr(spec, "source") else read_spec(spec)
    stem = Path(source.filename).stem if not source.filename.startswith("<") else "net"
    own = {k: settings.pop(k) for k in ("timeout", "max_params", "max_macs", "storage", "study", "resume", "prune")
           if k in settings}  # fmt: skip
    opts = Options(
        trials=trials,
        objectives=tuple(o.strip() for o in objective.split(",")),
        out=None if out is None else str(out),
        max_rejects=max_rejects,
        quiet=not verbose,
        train=settings,
        **own,
    )
    bad = [o for o in opts.objectives if o not in OBJECTIVES]
    if bad:
        raise ValueError(f"unknown objective {bad[0]!r} (choose from {', '.join(OBJECTIVES)})")
    directory = Path(out) if out is not None else Path("sweeps") / stem
    screen = Screen(source, {}, None, opts, stem)
    usage = screen.overridden(settings) or screen.no_validation(settings, opts.objectives)
    if usage:
        raise ValueError(usage)
    made = make_dir(directory)
    try:
        run = Sweep(screen, opts, directory, opts.study or stem, print if verbose else (lambda _t: None))
    except BaseException:
        undo(made)
        raise
    run.run()
    from . import sweep_report

    sweep_report.write(run.optuna, run.study, screen, directory, opts, print if verbose else (lambda _t: None))
    if counts(run.optuna, run.study, running=True) == 0 and run.reasons:
        raise NetdslError("E910", f"every candidate was pruned before training: {run.common_reasons(1)}")
    return run.study

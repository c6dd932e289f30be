"""The `netdsl sweep` command line: its flags (the train flags included) and its run."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .errors import NetdslError, Source


def add_parser(sub, common) -> None:
    from . import settings
    from .cli import _backend, _setting
    from .sweeping import MAX_TRIALS

    p = sub.add_parser(
        "sweep",
        parents=[common],
        help="search the spec's search spaces with Optuna, checking each candidate before training",
        description="Search FILE's search spaces (choice, int, float, log) with Optuna's TPE sampler and median "
        "pruner. Each candidate is checked first; one that does not build or exceeds a budget is pruned "
        "without training and does not count against --trials (the trained trials of the whole study).",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--trials", type=_count(1, MAX_TRIALS), default=20, metavar="N", help="trained trials (default 20)")
    p.add_argument("--timeout", type=_seconds, metavar="S", help="stop starting trials after S seconds")
    p.add_argument("--max-params", type=_count(1, 10**15), metavar="P", help="prune candidates with more parameters")
    p.add_argument("--max-macs", type=_count(1, 10**18), metavar="M", help="prune candidates with more MACs")
    p.add_argument(
        "--objective",
        type=_objectives,
        default=("val_accuracy",),
        metavar="NAME[,NAME]",
        help="val_accuracy (default), val_loss, accuracy, loss, test_accuracy, params, macs; "
        "two (val_accuracy,params) make a multi-objective study",
    )
    p.add_argument("--storage", metavar="URL", help="an Optuna storage URL (default: sqlite:///DIR/study.db)")
    p.add_argument("--study", metavar="NAME", help="the study's name (default: the spec's stem)")
    p.add_argument("-o", "--out", metavar="DIR", help="the sweep directory (default: sweeps/<stem>)")
    p.add_argument("--resume", action="store_true", help="continue the study (rerunning the command does too)")
    p.add_argument(
        "--max-rejects",
        type=_count(1, 10**7),
        default=1000,
        metavar="N",
        help="stop after N candidates in a row are pruned before training (default 1000)",
    )
    p.add_argument("--no-prune", action="store_true", help="train every trial to the end (no median pruner)")
    p.add_argument("-b", "--backend", type=_backend, metavar="{torch,keras}", help="the framework (default: torch)")
    for k in settings.flags():
        flag = "--" + k.name.replace("_", "-")
        if k.kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=settings.flag_help(k))
            continue
        names = dict.fromkeys(settings.DATASETS.values()) if k.name == "dataset" else k.choices
        metavar = {"int": "N", "real": "X"}.get(k.kind) or ("{" + ",".join(names) + "}" if names else "NAME")
        p.add_argument(flag, type=_setting(k.name), metavar=metavar, help=settings.flag_help(k))
    p.add_argument("--data", metavar="DIR", help="a directory holding the data set's files (or set NETDSL_DATA)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result and errors")


_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def _count(low: int, high: int):
    def parse(text: str) -> int:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]+)?)\s*([kmg]?)\s*", text.lower())
        if not m:
            raise argparse.ArgumentTypeError(f"expected a whole number (1000, 1e6, 2.5M), got {text[:40]!r}")
        value = float(m.group(1)) * _SUFFIX[m.group(2)]
        if not value.is_integer() or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low:,} to {high:,}, got {text[:40]!r}")
        return int(value)

    parse.__name__ = "count"
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text[:40]!r}") from None
    if not 0 < value <= 10**9:
        raise argparse.ArgumentTypeError(f"expected seconds above 0 and at most 1e9 (31 years), got {text[:40]!r}")
    return value


def _objectives(text: str) -> tuple[str, ...]:
    from .errors import did_you_mean
    from .sweeping import OBJECTIVES

    names = tuple(x.strip().lower() for x in text.split(","))
    for n in names:
        if n not in OBJECTIVES:
            hint = did_you_mean(n, OBJECTIVES)
            raise argparse.ArgumentTypeError(
                f"unknown objective {n[:40]!r} (choose from {', '.join(OBJECTIVES)})" + (f"; {hint}" if hint else "")
            )
    if len(names) > 2 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("give one objective, or two different ones (val_accuracy,params)")
    return names


def cli(args, params: dict) -> int:
    from . import settings
    from .net import read_spec
    from .sweep_study import make_dir, undo
    from .sweeping import Options, Screen, Sweep

    quiet = args.quiet

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        source = read_spec(args.file)
        stem = "net" if source.filename.startswith("<") else Path(source.filename).stem or "net"
        if "\r" in source.text:  # as compile_source does: spans count lines the same way
            source = Source(source.text.replace("\r\n", "\n").replace("\r", "\n"), source.filename)
        train = {k.name: getattr(args, k.name) for k in settings.flags()}
        train.update(backend=args.backend, data=args.data)
        opts = Options(
            trials=args.trials,
            timeout=args.timeout,
            max_params=args.max_params,
            max_macs=args.max_macs,
            objectives=args.objective,
            storage=args.storage,
            study=args.study,
            out=args.out,
            resume=args.resume,
            max_rejects=args.max_rejects,
            prune=not args.no_prune,
            quiet=quiet,
            train=train,
        )
        screen = Screen(source, params, args.input, opts, stem)
        usage = screen.overridden(train) or screen.no_validation(train, opts.objectives)
        if usage:  # before any trial: a usage error, as argparse's
            hint = {True: "leave the flag out (or write the value in the spec)", False: "use --objective loss or accuracy, or --validation above 0"}  # fmt: skip
            print(f"netdsl sweep: error: {usage}; {hint['validation' not in usage]}", file=sys.stderr)
            return 2
        out = Path(args.out or Path("sweeps") / stem)
        made = make_dir(out)
        name = args.study or stem
        if not quiet:
            say(f"{source.filename}: {screen.space.describe()}")
        try:
            sweep = Sweep(screen, opts, out, name, say if not quiet else (lambda _t: None))
        except BaseException:
            undo(made)  # a refused storage or study leaves no sweep directory behind
            raise
    except NetdslError as e:
        if args.traceback:
            raise
        if e.source is None:
            e.located(Source("", "netdsl sweep"))
        print(str(e), file=sys.stderr)
        return 1
    interrupted = 0
    restore = _on_sigterm()
    try:
        try:
            sweep.run()
        except _Terminated:
            interrupted = 143
        except KeyboardInterrupt:
            interrupted = 130
        except NetdslError as e:
            if args.traceback:
                raise
            print(str(e.located(Source("", "netdsl sweep")) if e.source is None else e), file=sys.stderr)
            return 1
        return _finish(sweep, screen, out, opts, say, interrupted, args)
    finally:
        restore()


class _Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a batch system's stop): handled as Ctrl-C, so the trial in training is
    marked lost (not left running) and the results are written."""


def _on_sigterm():
    """Raise :class:`_Terminated` on SIGTERM until the returned function restores the handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(_signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: writing the results is not cut short
        raise _Terminated

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)


def _finish(sweep, screen, out: Path, opts, say, interrupted: int, args) -> int:
    from . import sweep_report
    from .sweeping import counts

    optuna = sweep.optuna
    try:
        result = sweep_report.write(optuna, sweep.study, screen, out, opts, say)
    except OSError as e:
        print(f"netdsl sweep: error[E911]: cannot write the results into `{out}`: {e.strerror or e}", file=sys.stderr)
        return 1
    if interrupted:
        how = "interrupted" if interrupted == 130 else "terminated (SIGTERM)"
        if opts.storage == "memory":
            print(f"\nnetdsl: {how}; a --storage memory study cannot be continued", file=sys.stderr)
        else:
            print(f"\nnetdsl: {how}; continue the study with the same command (or add --resume)", file=sys.stderr)
        return interrupted
    trained = counts(optuna, sweep.study)
    if trained == 0 and sweep.reasons:
        common = sweep.common_reasons(3)
        err = NetdslError(
            "E910",
            f"every candidate was pruned before training ({sum(sweep.reasons.values()):,} drawn): {common}",
            hint="widen the space, or raise --max-params/--max-macs",
            source=Source("", "netdsl sweep"),
        )
        print(str(err), file=sys.stderr)
        return 1
    say(f"stopped: {sweep.stopped}" if sweep.stopped else "stopped")
    best = result.get("best")
    if best is not None:
        say(
            f"best: trial {best.number} ({', '.join(f'{o} {_value(o, v)}' for o, v in zip(opts.objectives, best.values, strict=True))}); "
            f"wrote {out / 'best.net'}"
        )
    return 0


def _value(objective: str, v: float) -> str:
    """An objective's value as people read it: counts (params, MACs) whole, with commas."""
    return f"{int(v):,}" if objective in ("params", "macs") and float(v).is_integer() else f"{v:.4f}"

"""The ``netdsl`` command: parse arguments, call the library, print, return a code.

Exit codes: 0 success, 1 an error in a spec (printed like a compiler), 2 a usage
error, 3 an internal error (a bug: please report it; ``--traceback`` shows it).
"""

from __future__ import annotations

import argparse
import re
import sys

from . import __version__

_DEFINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z", re.S)


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints and exits 2; we want a return code
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise _Usage


def _define(text: str) -> tuple[str, object]:
    m = _DEFINE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    name, raw = m.group(1), m.group(2).strip()
    if re.fullmatch(r"[+-]?[0-9]{1,30}", raw):
        return name, int(raw)
    if re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", raw) and len(raw) <= 40:
        value = float(raw)
        if value == value and abs(value) != float("inf"):
            return name, value
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", raw):
        return name, raw
    raise argparse.ArgumentTypeError(f"the value of {name} must be a number or a word, got {raw!r}")


def _input(text: str) -> tuple[int, ...]:
    from .net import parse_input_shape

    try:
        return parse_input_shape(text)  # type: ignore[return-value]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-D",
        dest="defines",
        metavar="NAME=VALUE",
        type=_define,
        action="append",
        default=[],
        help="bind a free parameter of the spec (repeatable)",
    )
    common.add_argument("--input", metavar="HxWxC", type=_input, help="override the input shape (HxWxC or N)")
    common.add_argument("--traceback", action="store_true", help="show Python tracebacks (for debugging netdsl)")

    p = _Parser(prog="netdsl", description="Check, summarise and compile netdsl network specs.")
    p.add_argument("--version", action="version", version=f"netdsl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser(
        "check",
        parents=[common],
        help="check specs; exit 0 when all are valid",
        description="Parse and check every FILE (- for stdin); exit 0 when all are valid, 1 otherwise.",
    )
    c.add_argument("files", nargs="+", metavar="FILE")
    c.add_argument("-q", "--quiet", action="store_true", help="print only errors")

    s = sub.add_parser(
        "summary",
        parents=[common],
        help="print a Keras-style table of layers, shapes and parameters",
        description="Print the layer table of FILE (- for stdin): output shapes, parameters, MACs.",
    )
    s.add_argument("file", metavar="FILE")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")

    g = sub.add_parser(
        "compile",
        parents=[common],
        help="write standalone PyTorch or Keras source for a spec",
        description="Write Python that builds the network of FILE without netdsl: an nn.Module class (torch) "
        "or a function building a functional keras.Model (keras), each with build_model().",
    )
    g.add_argument("file", metavar="FILE")
    g.add_argument("-b", "--backend", required=True, type=_backend, metavar="{torch,keras}", help="the framework")
    g.add_argument(
        "-o",
        "--output",
        metavar="OUT.py",
        help="where to write; - for stdout (default: <stem>_<backend>.py beside FILE)",
    )

    pl = sub.add_parser(
        "plot",
        parents=[common],
        help="draw the network with Graphviz (svg, png, pdf or dot)",
        description="Draw FILE (- for stdin, with -o): every layer with its arguments, output shape and parameters, "
        "blocks as boxes. A broken spec is drawn up to its error, then reported (exit 1). svg, png and pdf need "
        "Graphviz's `dot` program; .dot does not.",
    )
    pl.add_argument("file", metavar="FILE")
    pl.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="OUT.svg, .png, .pdf or .dot; - writes DOT to stdout (default: <stem>.svg beside FILE)",
    )
    pl.add_argument(
        "--rankdir", type=str.upper, choices=("TB", "LR"), default="TB", help="top to bottom (default) or left to right"
    )
    pl.add_argument(
        "--expand", action="store_true", help="draw every pass of a repeat (default: the first, labelled ×N)"
    )

    d = sub.add_parser(
        "devices",
        help="show the device each installed backend would use",
        description="Show which device torch and keras would pick (cuda, mps, xpu, cpu; TF GPUs).",
    )
    d.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
    _train_parser(sub, common)
    return p


def _train_parser(sub, common) -> None:
    t = sub.add_parser(
        "train",
        parents=[common],
        help="train a spec on MNIST or Fashion-MNIST (torch or keras)",
        description="Train FILE on MNIST or Fashion-MNIST. Settings come from the spec's train/data lines; "
        "these options override them; the rest default to sparse categorical cross-entropy, accuracy, "
        "validation 0.1, adam (Keras's learning rate), 1 epoch, batch 32, seed 0.",
    )
    t.add_argument("file", metavar="FILE")
    t.add_argument("-b", "--backend", type=_backend, metavar="{torch,keras}", help="the framework (default: torch)")
    from . import settings

    for k in settings.flags():  # one table for the spec's train line and these flags (netdsl/settings.py)
        flag = "--" + k.name.replace("_", "-")
        if k.kind == "bool":
            t.add_argument(flag, action=argparse.BooleanOptionalAction, help=settings.flag_help(k))
            continue
        names = dict.fromkeys(settings.DATASETS.values()) if k.name == "dataset" else k.choices  # not the aliases
        metavar = {"int": "N", "real": "X"}.get(k.kind) or ("{" + ",".join(names) + "}" if names else "NAME")
        t.add_argument(flag, type=_setting(k.name), metavar=metavar, help=settings.flag_help(k))
    t.add_argument("--data", metavar="DIR", help="a directory holding the data set's files (or set NETDSL_DATA)")
    t.add_argument("--raw-pixels", action="store_true", help="keep pixel values 0..255 (default: scaled to [0, 1])")
    t.add_argument("-o", "--out", metavar="DIR", help="the run directory (default: runs/<stem>-<backend>-<time>)")
    t.add_argument(
        "--resume", action="store_true", help="continue the run in --out (default: the newest) from its checkpoint"
    )
    t.add_argument("-q", "--quiet", action="store_true", help="print only errors")


def _setting(key: str):
    """An argparse type: the flag's text as the value it spells; the trainer checks its range."""
    from . import settings

    def parse(text: str):
        value = settings.parse_flag(key, text)
        if isinstance(value, settings.Problem):
            raise argparse.ArgumentTypeError(value.message)
        return value

    parse.__name__ = key  # argparse names the type in its message
    return parse


def _backend(text: str) -> str:
    from .backends import ALIASES, NAMES

    key = ALIASES.get(text.lower(), text.lower())
    if key not in NAMES:
        raise argparse.ArgumentTypeError(f"unknown backend {text!r} (choose torch or keras)")
    return key


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # an ASCII console must not turn `—` into a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_usage(parser, args)
    except _Usage:
        return 2
    except SystemExit as e:  # --help / --version
        return int(e.code or 0)
    status = [0]
    try:
        return _run(args, status)
    except KeyboardInterrupt:
        print("netdsl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `netdsl check a b | head`: the reader left; keep the verdict
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return status[0]
    except Exception as e:  # a bug in netdsl, never the user's fault
        if getattr(args, "traceback", False):
            raise
        print(
            f"netdsl: internal error: {type(e).__name__}: {e}\n"
            "  this is a bug in netdsl; rerun with --traceback and report it",
            file=sys.stderr,
        )
        return 3


def _check_usage(parser, args) -> None:
    names = [n for n, _ in getattr(args, "defines", [])]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        parser.error(f"-D {twice[0]} is given more than once")
    files = getattr(args, "files", None) or [getattr(args, "file", None)]
    if files.count("-") > 1:
        parser.error("standard input (-) can be read only once")
    if args.command == "plot" and args.output not in (None, "-"):
        from .render import format_of

        try:
            format_of(args.output)
        except ValueError as e:
            parser.error(str(e))
    if args.command == "plot" and args.file == "-" and args.output is None:
        parser.error("plot needs -o OUT when the spec comes from standard input")


def _run(args, status: list) -> int:
    from .errors import NetdslError
    from .net import compile_source, read_spec

    if args.command == "devices":
        return _devices()
    params = dict(args.defines)
    if args.command == "train":
        from .training import cli

        return cli(args, params)
    if args.command == "plot":
        return _plot(args, params)
    if args.command == "check":
        for path in args.files:
            try:
                source = read_spec(path)
                net = compile_source(source, params, args.input, _stem(source.filename))
            except NetdslError as e:
                if args.traceback:
                    raise
                print(str(e), file=sys.stderr)
                status[0] = 1
                continue
            if not args.quiet:
                n = len(net.graph) - 1
                print(
                    f"{source.filename}: ok \u2014 {n} layer{'s' * (n != 1)}, {net.total_params:,} params, "
                    f"output {_fmt(net.output_shape)}"
                )
        return status[0]
    try:
        source = read_spec(args.file)
        net = compile_source(source, params, args.input, _stem(source.filename))
    except NetdslError as e:
        if args.traceback:
            raise
        print(str(e), file=sys.stderr)
        return 1
    if args.command == "compile":
        return _compile(args, source, net)
    if args.json:
        import json

        print(json.dumps(net.to_json(), indent=2))
    else:
        print(net.summary())
    return 0


def _compile(args, source, net) -> int:
    from pathlib import Path

    from .errors import NetdslError
    from .files import write_atomic

    try:
        code = net.generate(args.backend)
    except NetdslError as e:
        print(str(e), file=sys.stderr)
        return 1
    out = args.output
    if out is None:
        if source.filename.startswith("<"):
            out = "-"
        else:
            spec = Path(source.filename)
            out = str(spec.with_name(f"{spec.stem}_{args.backend}.py"))
    if out == "-":
        sys.stdout.write(code)
        return 0
    if not source.filename.startswith("<") and Path(out).resolve() == Path(source.filename).resolve():
        print(f"netdsl: error: refusing to overwrite the spec {out} with generated code", file=sys.stderr)
        return 1
    try:
        write_atomic(Path(out), code)
    except OSError as e:
        print(f"netdsl: error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({args.backend}; build_model() returns the model)", file=sys.stderr)
    return 0


def _plot(args, params) -> int:
    """Draw the spec; a broken one is drawn up to its error, then reported (exit 1)."""
    from pathlib import Path

    from . import render
    from .errors import NetdslError
    from .net import compile_source, read_spec

    error = None
    try:
        source = read_spec(args.file)
        drawn = compile_source(source, params, args.input, _stem(source.filename))
    except NetdslError as e:
        if e.graph is None:  # nothing to draw: a syntax error, an unreadable file
            if args.traceback:
                raise
            print(str(e), file=sys.stderr)
            return 1
        drawn = error = e
    out = args.output or str(Path(source.filename).with_suffix(".svg"))
    status = 1 if error else 0
    if out == "-":
        sys.stdout.write(render.to_dot(drawn, rankdir=args.rankdir, expand=args.expand))
    elif Path(out).resolve() == Path(source.filename).resolve():
        print(f"netdsl: error: refusing to overwrite the spec {out} with its drawing", file=sys.stderr)
        status = 1
    else:
        try:
            render.plot(drawn, out, rankdir=args.rankdir, expand=args.expand)
            print(f"wrote {out}" + (" (drawn up to the error)" if error else ""), file=sys.stderr)
        except render.RenderError as e:
            print(f"netdsl: error: {e}", file=sys.stderr)
            status = 1
        except OSError as e:
            print(f"netdsl: error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
            status = 1
    if error is not None:
        if args.traceback:
            raise error
        print(str(error), file=sys.stderr)
    return status


def _devices() -> int:
    from . import backends
    from .errors import NetdslError

    for name in backends.NAMES:
        try:
            mod = backends.get(name)
        except NetdslError as e:
            print(f"{name}: not installed ({e.hint})")
            continue
        print(f"{name}: {mod.device()}")
    return 0


def _stem(filename: str) -> str:
    from pathlib import Path

    return "net" if filename.startswith("<") else Path(filename).stem or "net"


def _fmt(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

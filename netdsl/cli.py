"""The ``netdsl`` command: parse arguments, call the library, print, return a code.

Exit codes: 0 success, 1 an error in a spec (printed like a compiler), 2 a usage
error, 3 an internal error (a bug: please report it; ``--traceback`` shows it).
"""

from __future__ import annotations

import argparse
import re
import sys

from . import __version__
from .outputs import OutputFailed, emit, silence_stdout, write

MAX_OPTIONS = 2_000  # flags such as -D; FILE arguments are not counted
_DEFINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z", re.S)


class _Usage(Exception):
    pass


_CHOICE = re.compile(r"invalid choice: '(.*)' \(choose from (.*)\)\Z", re.S)


class _Parser(argparse.ArgumentParser):
    write_failed: list[str] = []  # argparse swallows a failed write of --help / --version: keep why

    def _print_message(self, message, file=None):
        if not message:
            return
        file = file or sys.stderr
        try:
            file.write(message)
            file.flush()
        except (OSError, ValueError) as e:  # a full disk, a closed file object
            _Parser.write_failed.append(getattr(e, "strerror", None) or str(e))

    def error(self, message: str):  # argparse prints and exits 2; we want a return code
        m = _CHOICE.search(message)
        if m:  # a misspelt command: say which one was meant
            from .errors import did_you_mean

            word, choices = m.group(1), re.findall(r"'([^']*)'", m.group(2))
            hint = did_you_mean(word, choices)
            if hint is None and word.endswith(".net"):
                hint = f"the command comes first: `netdsl check {word}`"
            if hint:
                message += f"; {hint}"
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise _Usage

    def unrecognized(self, extras: list[str]) -> None:
        """argparse's "unrecognized arguments", from this (sub)command, with "did you mean"."""
        from .errors import did_you_mean

        message = f"unrecognized arguments: {' '.join(extras)}"
        flags = [a for a in extras if a.startswith("-") and len(a) > 1]
        if flags:
            hint = did_you_mean(flags[0].split("=", 1)[0], list(self._option_string_actions))
            if hint:
                message += f" ({flags[0]}: {hint})"
        self.error(message)


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
    common.add_argument("--input", metavar="HxWxC", type=_input, help="override the input shape (HxWxC, LxC or N)")
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
    g.add_argument(
        "-b",
        "--backend",
        default="torch",
        type=_backend,
        metavar="{torch,keras}",
        help="the framework: torch (or pytorch) or keras (or tf, tensorflow, tf.keras); default: torch",
    )
    g.add_argument(
        "-o",
        "--output",
        metavar="OUT.py",
        help="where to write; - for stdout (default: <stem>_<backend>.py in the current directory; "
        "stdout when FILE is -)",
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
        help="OUT.svg, .png, .pdf or .dot; - writes DOT to stdout (default: <stem>.svg, or <stem>.FORMAT with -T, "
        "in the current directory)",
    )
    pl.add_argument(
        "--rankdir", type=str.upper, choices=("TB", "LR"), default="TB", help="top to bottom (default) or left to right"
    )
    pl.add_argument(
        "--expand", action="store_true", help="draw every pass of a repeat (default: the first, labelled ×N)"
    )
    pl.add_argument(
        "--compact",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fold activation, batchnorm and dropout layers into the layer before them "
        "(default: when more than 30 boxes would be drawn)",
    )
    pl.add_argument(
        "-T",
        "--format",
        type=str.lower,
        choices=("svg", "png", "pdf", "dot"),
        help="the format, when OUT's suffix does not say it (default: from OUT; dot for -o -)",
    )

    e = sub.add_parser(
        "export",
        parents=[common],
        help="write a deployable model: ONNX (no framework needed), .keras or torch.export",
        description="Write FILE's network with its weights: ONNX written by netdsl itself (default), "
        "a .keras archive or a torch.export .pt2 program.",
    )
    e.add_argument("file", metavar="FILE")
    e.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="where to write; - for stdout (onnx) (default: <stem>.onnx|.keras|.pt2 in the current directory)",
    )
    e.add_argument("--weights", metavar="W.safetensors", help="trained weights (default: initial ones from --seed)")
    e.add_argument("--format", choices=("onnx", "keras", "pt2"), default="onnx", help="the file format (default: onnx)")
    e.add_argument("--opset", type=int, metavar="N", help="ONNX opset, 13 to 25 (default: 17)")
    e.add_argument("--layout", choices=("nchw", "nhwc"), help="ONNX input layout (default: nchw)")
    e.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the initial weights (default: 0)")

    d = sub.add_parser(
        "devices",
        help="show the device each installed backend would use",
        description="Show which device torch and keras would pick (cuda, mps, xpu, cpu; TF GPUs).",
    )
    d.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
    x = sub.add_parser(
        "explain",
        help="explain an error code, with an example of it",
        description="Print what error CODE (E201, or 201) means and, for a spec error, a spec that makes it "
        "with the message netdsl gives for it. Without CODE, list every code.",
    )
    x.add_argument("code", nargs="?", metavar="CODE")
    x.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
    _train_parser(sub, common)
    _import_parser(sub)
    from .fmt_cli import add_parser as _fmt_parser

    _fmt_parser(sub, common)
    from .lsp import add_parser as _lsp_parser

    _lsp_parser(sub)
    from .sweep_cli import add_parser as _sweep_parser

    _sweep_parser(sub, common)
    from .evaluate import add_parsers  # evaluate, predict

    add_parsers(sub, common)
    p.subcommands = sub.choices  # name -> its parser: usage errors are reported by the subcommand
    return p


def _train_parser(sub, common) -> None:
    t = sub.add_parser(
        "train",
        parents=[common],
        help="train a spec on MNIST, Fashion-MNIST, CIFAR or your own images (torch or keras)",
        description="Train FILE on MNIST, Fashion-MNIST, CIFAR-10/100, an image folder or an .npz. Settings come from the spec's train/data lines; "
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
    t.add_argument(
        "--data",
        metavar="PATH",
        help="the data set's files (or set NETDSL_DATA), an image folder (PATH/train/<class>/*.png) or an .npz",
    )
    t.add_argument("--resize", action="store_true", help="image folders: resize images to the net's input")
    t.add_argument("--raw-pixels", action="store_true", help="keep pixel values 0..255 (default: scaled to [0, 1])")
    t.add_argument("-o", "--out", metavar="DIR", help="the run directory (default: runs/<stem>-<backend>-<time>)")
    t.add_argument(
        "--resume", action="store_true", help="continue the run in --out (default: the newest) from its checkpoint"
    )
    t.add_argument(
        "--init-from",
        metavar="W",
        help="start from these weights (a .safetensors file or a run directory): every tensor whose name and "
        "shape fit is loaded, the rest start fresh",
    )
    t.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="with --init-from: load node OLD's tensors into NEW",
    )
    t.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    from .scale import add_arguments

    add_arguments(t)  # --nproc, --threads, --compile, --precision, --channels-last, --distribute


def _import_parser(sub) -> None:  # netdsl import: netdsl/importers/command.py
    i = sub.add_parser(
        "import",
        help="turn a PyTorch module or a saved Keras model into a spec and its weights",
        description="Write SOURCE's network as a spec (OUT.net) and, unless --no-weights, its weights "
        "(OUT.safetensors, the canonical layout) that give the same outputs. SOURCE is path/to/file.py:NAME "
        "or package.module:NAME (an nn.Module subclass, a function returning a module, or a module instance; "
        "needs --input) or a saved Keras model (.keras, .h5).",
    )
    i.add_argument("source", metavar="SOURCE")
    i.add_argument("-o", "--output", metavar="OUT.net", help="the spec to write; - for stdout (default: <name>.net)")
    i.add_argument("--input", metavar="HxWxC", type=_input, help="the torch module's input shape, channels last (or N)")
    i.add_argument("--no-weights", action="store_true", help="write the spec only")
    i.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)


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
        from .errors import did_you_mean

        hint = did_you_mean(text, [*NAMES, *ALIASES])
        raise argparse.ArgumentTypeError(
            f"unknown backend {text!r} (choose torch or keras; aliases: {', '.join(ALIASES)})"
            + (f"; {hint}" if hint else "")
        )
    return key


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # an ASCII console must not turn `—` into a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # bare `netdsl`: what a new user needs is the list of commands
        try:
            parser.print_help(sys.stdout)
        except (AttributeError, OSError):
            return 1
        return _flushed()
    try:
        if sum(1 for a in argv if a.startswith("-") and a != "-") > MAX_OPTIONS:  # argparse is quadratic in them
            parser.error(f"more than {MAX_OPTIONS:,} options on one command line")
        args, extras = parser.parse_known_args(argv)
        sub = parser.subcommands[args.command]
        if extras:  # reported by the subcommand, with its usage line
            sub.unrecognized(extras)
        _check_usage(sub, args)
    except _Usage:
        return 2
    except SystemExit as e:  # --help / --version
        return _flushed() if not e.code else int(e.code)
    status = [0]
    try:
        code = _run(args, status)
        if sys.stdout is not None:  # flush: a full disk must fail here, not at exit
            emit("")
        return code
    except KeyboardInterrupt:
        print("netdsl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `netdsl check a b | head`: the reader left; keep the verdict
        silence_stdout()
        return status[0]
    except MemoryError:  # a big net under a memory limit: the user's limit, not a bug; outputs are atomic
        print(
            f"netdsl: error: out of memory while running `netdsl {args.command}` "
            "(make the net smaller, or allow more memory)",
            file=sys.stderr,
        )
        return 1
    except OutputFailed as e:  # `netdsl summary x > /dev/full`
        print(f"netdsl: error: cannot write to standard output: {e}", file=sys.stderr)
        silence_stdout()
        return 1
    except Exception as e:  # a bug in netdsl, never the user's fault
        if getattr(args, "traceback", False):
            raise
        print(
            f"netdsl: internal error: {type(e).__name__}: {e}\n"
            "  this is a bug in netdsl; rerun with --traceback and report it",
            file=sys.stderr,
        )
        return 3


def _flushed() -> int:
    """0, or 1 with a message when what argparse printed (--help, --version) could not be written."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError) as e:
        _Parser.write_failed.append(getattr(e, "strerror", None) or str(e))
    if not _Parser.write_failed:
        return 0
    print(f"netdsl: error: cannot write to standard output: {_Parser.write_failed[0]}", file=sys.stderr)
    _Parser.write_failed.clear()
    silence_stdout()
    return 1


def check_defines(defines) -> None:
    """ValueError when a -D NAME is given twice (`-D w=6 -D w=7`: which one?); the %%netdsl magic
    refuses it with the same words."""
    seen: set[str] = set()
    for name, _ in defines:  # linear: 20,000 -D flags are a usage error at once
        if name in seen:
            raise ValueError(f"-D {name} is given more than once")
        seen.add(name)


def _check_usage(parser, args) -> None:
    try:
        check_defines(getattr(args, "defines", []))
    except ValueError as e:
        parser.error(str(e))
    if args.command in ("compile", "plot", "export") and args.output == "":
        parser.error("-o needs a file name (or - for standard output)")
    files = getattr(args, "files", None) or [getattr(args, "file", None)]
    if files.count("-") > 1:
        parser.error("standard input (-) can be read only once")
    if args.command == "plot" and args.output not in (None, "-"):
        from .render import format_of

        try:
            format_of(args.output, args.format)
        except ValueError as e:
            parser.error(str(e))
    if args.command == "export":
        if args.format != "onnx" and (args.opset is not None or args.layout is not None):
            parser.error("--opset and --layout apply to --format onnx only (keras is NHWC, pt2 NCHW)")
        from .export import MAX_OPSET, MIN_OPSET

        if args.opset is not None and not MIN_OPSET <= args.opset <= MAX_OPSET:
            parser.error(f"--opset must be from {MIN_OPSET} to {MAX_OPSET}, got {args.opset}")
        from .settings import MAX_SEED  # the train table's limit: one seed range for every command

        if not 0 <= args.seed <= MAX_SEED:
            parser.error(f"--seed must be from 0 to {MAX_SEED:,}, got {args.seed}")
        if args.output == "-" and args.format != "onnx":
            parser.error("-o - (stdout) works for --format onnx only")
        if args.file == "-" and args.output is None:
            parser.error("export needs -o OUT when the spec comes from standard input")
        args.layout = args.layout or "nchw"
    if args.command == "import":
        from .importers.command import usage

        problem = usage(args)
        if problem:
            parser.error(problem)
    if args.command == "plot" and args.file == "-" and args.output is None:
        parser.error("plot needs -o OUT when the spec comes from standard input")
    if args.command == "fmt":
        from .fmt_cli import usage_error

        if usage_error(args):
            parser.error(usage_error(args))


def _run(args, status: list) -> int:
    from .errors import NetdslError
    from .net import compile_source, read_spec

    if args.command == "devices":
        return _devices()
    if args.command == "explain":
        return _explain(args.code)
    if args.command == "import":
        from .importers.command import run

        return run(args)
    if args.command == "lsp":
        from .lsp import cli as lsp

        return lsp(args)
    params = dict(args.defines)
    if args.command == "train":
        from .training import cli

        return cli(args, params)
    if args.command == "sweep":
        from .sweep_cli import cli as sweep

        return sweep(args, params)
    if args.command in ("evaluate", "predict"):
        from .evaluate import cli as evaluate_cli

        return evaluate_cli(args, params)
    if args.command == "plot":
        return _plot(args, params)
    if args.command == "fmt":
        from .fmt_cli import cli as fmt

        return fmt(args, params)
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
                emit(
                    f"{source.filename}: ok \u2014 {n} layer{'s' * (n != 1)}, {net.total_params:,} params, "
                    f"output {_fmt(net.output_shape)}\n"
                )
                if net.space:  # search spaces: what the space is, and which candidate was checked
                    from .frontend.spaces import note

                    emit(f"  {note(net)}\n")
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
    if args.command == "export":
        from .export import cli

        return cli(args, source, net)

    if args.json:
        import json

        data = net.to_json()
        if net.space:
            data["candidate"] = net.candidate  # which candidate of the spec's search space
        emit(json.dumps(data, indent=2) + "\n")
    else:
        if net.space:  # a spec with search spaces: say which candidate the table shows
            from .frontend.spaces import note

            emit(f"# {note(net)}\n")
        emit(net.summary() + "\n")
    return 0


def _explain(code: str | None) -> int:
    from .codes import CODES
    from .errors import NetdslError, did_you_mean
    from .net import parse

    if code is None:
        emit("".join(f"{c}  {e.meaning}\n" for c, e in CODES.items()))
        return 0
    key = code.strip().upper()
    key = f"E{key}" if key.isdigit() else key
    if key not in CODES:
        hint = did_you_mean(key, CODES) if len(key) < 10 else None
        shown = code if len(code) <= 20 else code[:20] + "..."
        print(
            f"netdsl explain: no error code {shown!r}{'; ' + hint if hint else ''} (`netdsl explain` lists them)",
            file=sys.stderr,
        )
        return 1
    entry = CODES[key]
    emit(f"{key}: {entry.meaning}\n")
    if entry.example and entry.example_is_spec:
        emit(f"\nFor example, `printf '{entry.example}' | netdsl check -` says:\n\n")
        try:
            parse(entry.example, filename="<stdin>")
        except NetdslError as e:
            emit(str(e) + "\n")
    elif entry.example:
        emit(f"\nFor example: {entry.example}\n")
    return 0


def _compile(args, source, net) -> int:
    from .errors import NetdslError

    try:
        code = net.generate(args.backend)
    except NetdslError as e:
        print(str(e), file=sys.stderr)
        return 1
    out = args.output
    if out is None:
        out = "-" if source.filename.startswith("<") else f"{_stem(source.filename)}_{args.backend}.py"
    if out == "-":
        emit(code)
        return 0
    if not write(out, code, source, "generated code", default=args.output is None):
        return 1
    print(f"wrote {out} ({args.backend}; build_model() returns the model)", file=sys.stderr)
    return 0


def _plot(args, params) -> int:
    """Draw the spec; a broken one is drawn up to its error, then reported (exit 1)."""
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
    out = args.output or f"{_stem(source.filename)}.{args.format or 'svg'}"
    status = 1 if error else 0
    fmt = args.format or ("dot" if out == "-" else render.format_of(out))
    if out == "-" and fmt == "dot":
        emit(render.to_dot(drawn, rankdir=args.rankdir, expand=args.expand, compact=args.compact))
    else:
        try:
            data = render.draw(drawn, fmt, rankdir=args.rankdir, expand=args.expand, compact=args.compact)
        except render.RenderError as e:
            print(f"netdsl: error: {e}", file=sys.stderr)
            data, status = None, 1
        if data is not None and out == "-":
            emit(data)
        elif data is not None:
            if write(out, data, source, "its drawing", default=args.output is None):
                print(f"wrote {out}" + (" (drawn up to the error)" if error else ""), file=sys.stderr)
            else:
                status = 1
    if error is None and drawn.space:  # a spec with search spaces: which candidate is drawn
        from .frontend.spaces import note

        print(f"netdsl: {note(drawn)}", file=sys.stderr)
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
            emit(f"{name}: not installed ({e.hint})\n")  # emit: a closed or full stdout is exit 1
            continue
        emit(f"{name}: {mod.device()}\n")
    return 0


def _stem(filename: str) -> str:
    from pathlib import Path

    return "net" if filename.startswith("<") else Path(filename).stem or "net"


def _fmt(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

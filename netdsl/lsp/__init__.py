"""The language server, `netdsl lsp` (the extra ``netdsl[lsp]``: pygls and lsprotocol).

:mod:`netdsl.lsp.analysis` is the editor-independent part (no pygls), :mod:`netdsl.lsp.server`
the LSP wiring.  Neither imports a framework.
"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lsp",
        help="run the language server (stdio) for editors",
        description="Run netdsl's language server on standard input and output (LSP over JSON-RPC): "
        "diagnostics, hover with shapes and parameters, inlay hints, completion, go to definition, "
        "formatting and the outline.  Needs the extra: pip install 'netdsl[lsp]'.",
    )
    p.add_argument(
        "--stdio", action="store_true", help="use standard input and output (the default and only transport)"
    )
    p.add_argument("--traceback", action="store_true", help="show Python tracebacks (for debugging netdsl)")


def cli(args) -> int:
    import sys

    try:
        from .server import main
    except ImportError as e:
        from ..errors import NetdslError, Source

        err = NetdslError(
            "E803",
            f"netdsl lsp needs the language-server packages ({e.name or e} is not installed)",
            hint="pip install 'netdsl[lsp]'",
        ).located(Source("", "netdsl lsp"))  # named by the command, not `<string>` (there is no spec)
        print(err, file=sys.stderr)
        return 1
    try:
        code = main(traceback=args.traceback)
    except SystemExit as e:  # pygls ends the process on `exit`: 0 after `shutdown`, 1 without
        code = e.code if isinstance(e.code, int) else 1
    if sys.stdout is not None and sys.stdout.closed:  # the server closed it: nothing more to flush
        sys.stdout = None
    return code

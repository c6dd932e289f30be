"""Notebooks: the rich display of a :class:`~netdsl.net.Net`, and the ``%%netdsl`` cell magic.

``Net._repr_mimebundle_`` offers ``text/html`` (the drawing, inline SVG, with the summary
table beneath: Jupyter shows one mime type per output, and HTML is the one it prefers),
``image/svg+xml`` (the drawing alone) and ``text/plain``.  Without Graphviz's ``dot`` the
bundle holds the table and the plain text, and says how to get the drawing.

``%load_ext netdsl`` registers the magic::

    %%netdsl lenet [-D NAME=VALUE ...] [--input HxWxC]
    conv 6x5 sigmoid; maxpool 2/2; flatten; dense 10 softmax

checks the cell, shows the drawing and the summary, and binds the ``Net`` to ``lenet`` in
the user's namespace.  An error is shown as netdsl prints it, with the caret, not as a
Python traceback (and nothing is bound).
"""

from __future__ import annotations

import html
import keyword
import re
import shlex
import sys

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# a larger net is summarised, not drawn inline: dot's layout grows much faster than the graph
# (a branchy net of 397 nodes took 21 s, one of 2,000 more than two minutes)
MAX_DRAW_NODES = 500
MAX_DRAW_EDGES = 1000
DRAW_TIMEOUT = 10.0  # seconds; then dot is stopped and the table shown alone, with a note


def mimebundle(net, include=None, exclude=None) -> dict:
    from .render import GraphvizMissing, RenderError, summary_html

    svg, why = None, None
    if len(net.graph) > MAX_DRAW_NODES or net.graph.number_of_edges() > MAX_DRAW_EDGES:
        why = (
            f"the drawing is left out: {len(net.graph) - 1:,} layers, {net.graph.number_of_edges():,} connections "
            "(netdsl plot draws it to a file)"
        )
    else:
        try:
            from .render import render, to_dot

            svg = render(to_dot(net), "svg", timeout=DRAW_TIMEOUT).decode("utf-8")
        except GraphvizMissing:
            why = "the drawing needs Graphviz's `dot` program (apt-get install graphviz, brew install graphviz or conda install -c conda-forge graphviz)"
        except RenderError as e:
            why = f"the drawing failed: {e}"
    table = summary_html(net)
    parts = []
    if svg is not None:
        parts.append(f'<div class="netdsl-drawing">{_inline(svg)}</div>')
    elif why:
        parts.append(f'<p class="netdsl-note"><em>{html.escape(why)}</em></p>')
    parts.append(table)
    bundle = {"text/html": '<div class="netdsl">' + "".join(parts) + "</div>", "text/plain": repr(net)}
    if svg is not None:
        bundle["image/svg+xml"] = svg
    if include is not None:
        bundle = {k: v for k, v in bundle.items() if k in include}
    if exclude is not None:
        bundle = {k: v for k, v in bundle.items() if k not in exclude}
    return bundle


def _inline(svg: str) -> str:
    """An SVG document as an element to put inside HTML: no XML declaration, no DOCTYPE."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


# ---- the cell magic -------------------------------------------------------------------------------


def _magic_args(line: str):
    """``name``, params and input shape from the magic's line; ValueError with the reason."""
    from .cli import _define, _input, check_defines

    try:
        words = shlex.split(line)
    except ValueError as e:
        raise ValueError(f"cannot read the line: {e}") from None
    name, defines, shape = None, [], None
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-D", "--input"):
            if i + 1 == len(words):
                raise ValueError(f"{w} needs a value")
            value = words[i + 1]
            i += 2
            try:
                if w == "-D":
                    defines.append(_define(value))
                else:
                    shape = _input(value)
            except Exception as e:  # argparse's type errors
                raise ValueError(f"{w} {value}: {e}") from None
            continue
        if w.startswith("-D") and len(w) > 2:
            words[i : i + 1] = ["-D", w[2:]]
            continue
        if name is not None or not _NAME.match(w) or keyword.iskeyword(w):  # `class`, `None`: not bindable
            raise ValueError(f"`{w}` is not a Python name to bind the net to")
        name = w
        i += 1
    check_defines(defines)  # as `netdsl check -D w=6 -D w=7` does: the later one did not silently win
    return name, dict(defines), shape


USAGE = "usage: %%netdsl [NAME] [-D NAME=VALUE ...] [--input HxWxC]"


def netdsl_magic(shell, line: str, cell: str):
    """The body of ``%%netdsl``: returns nothing (the display is the output)."""
    from IPython.display import display

    from .errors import NetdslError, Source
    from .net import compile_source

    try:
        name, params, shape = _magic_args(line)
    except ValueError as e:
        print(f"%%netdsl: {e}\n{USAGE}", file=sys.stderr)
        return None
    try:
        net = compile_source(Source(cell.removeprefix("\ufeff"), "<cell>"), params, shape, name or "net")
    except NetdslError as e:
        print(str(e), file=sys.stderr)
        return None
    if name:
        shell.user_ns[name] = net
    display(net)
    return None


def load_ipython_extension(ipython) -> None:
    """``%load_ext netdsl``: register the ``%%netdsl`` cell magic."""
    ipython.register_magic_function(
        lambda line, cell: netdsl_magic(ipython, line, cell), magic_kind="cell", magic_name="netdsl"
    )

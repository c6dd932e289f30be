"""Notebook display: the mime bundle (valid SVG and HTML) and the %%netdsl magic under a real IPython shell."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from conftest import ROOT

import netdsl

IPython = pytest.importorskip("IPython")
LENET = (ROOT / "examples" / "lenet5.net").read_text(encoding="utf-8")


class _Tags(HTMLParser):
    """Checks that every element is closed in order (void elements aside) and counts tags."""

    VOID = {"br", "img", "hr", "meta", "input", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.seen = [], {}

    def handle_starttag(self, tag, attrs):
        self.seen[tag] = self.seen.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.seen[tag] = self.seen.get(tag, 0) + 1

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (self.stack[-3:], tag)
        self.stack.pop()


def parse_html(text: str) -> dict:
    p = _Tags()
    p.feed(text)
    p.close()
    assert not p.stack, f"unclosed: {p.stack}"
    return p.seen


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_mimebundle_has_svg_and_html():
    net = netdsl.parse(LENET, filename="lenet5.net")
    bundle = net._repr_mimebundle_()
    root = ET.fromstring(bundle["image/svg+xml"].encode())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "conv_1" in bundle["image/svg+xml"]
    tags = parse_html(bundle["text/html"])
    assert tags["svg"] == 1 and tags["table"] == 1 and tags["tr"] == 10  # header, 8 layers, totals
    html = bundle["text/html"]
    assert html.index("<svg") < html.index("<table")  # the drawing above the table
    assert "44,426" in html and bundle["text/plain"] == repr(net)
    assert set(net._repr_mimebundle_(include=["text/plain"])) == {"text/plain"}
    assert "image/svg+xml" not in net._repr_mimebundle_(exclude=["image/svg+xml"])


def test_mimebundle_without_graphviz(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    bundle = netdsl.parse(LENET)._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    tags = parse_html(bundle["text/html"])
    assert tags["table"] == 1 and "svg" not in tags and "needs Graphviz" in bundle["text/html"]


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "netdsl")
    yield ip
    InteractiveShell.clear_instance()


def run_cell(shell, line: str, cell: str):
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        result = shell.run_cell(f"%%netdsl {line}\n{cell}")
    return result, cap


def test_magic_binds_and_displays(shell):
    result, cap = run_cell(shell, "lenet", LENET)
    assert result.success and result.result is None
    net = shell.user_ns["lenet"]
    assert isinstance(net, netdsl.Net) and net.total_params == 44426 and net.name == "lenet"
    (out,) = cap.outputs
    assert "<table" in out.data["text/html"] and out.data["text/plain"] == repr(net)
    assert cap.stderr == ""


def test_magic_with_parameters(shell):
    result, cap = run_cell(shell, "m -D w=4 --input 8x8x1", "conv w x 3 same; flatten; dense 2")
    assert result.success and shell.user_ns["m"].input_shape == (None, 8, 8, 1)
    assert shell.user_ns["m"].output_shape == (None, 2)


def test_magic_shows_errors_with_a_caret_not_a_traceback(shell):
    shell.user_ns.pop("bad", None)
    result, cap = run_cell(shell, "bad", "conv 6x5 relu\ndense 10\n")
    assert result.success  # no exception reached IPython: no traceback
    assert "<cell>:2:1: error[E201]" in cap.stderr and "^^^^^" in cap.stderr
    assert "Traceback" not in cap.stderr + cap.stdout and "bad" not in shell.user_ns
    assert cap.outputs == []


@pytest.mark.parametrize("line", ["1x", "a b", "-D", "-D nope", "--input 0x0", "'unclosed", "class", "None", "lambda"])
def test_magic_usage_errors(shell, line):
    result, cap = run_cell(shell, line, "relu")
    assert result.success and "usage: %%netdsl" in cap.stderr and cap.outputs == []


def test_large_net_is_summarised_not_drawn():
    from netdsl.notebook import MAX_DRAW_NODES

    net = netdsl.parse(f"flatten; repeat {MAX_DRAW_NODES} {{ relu }}")
    bundle = net._repr_mimebundle_()
    assert "image/svg+xml" not in bundle and "left out" in bundle["text/html"]
    assert net._repr_svg_() is None
    parse_html(bundle["text/html"])


def test_a_slow_drawing_is_stopped_and_the_table_shown(monkeypatch):
    """dot is run with a time limit (real dot, a limit it cannot meet); a branchy net is not drawn at all."""
    import netdsl.notebook as nb

    if shutil.which("dot") is None:
        pytest.skip("needs Graphviz's dot")
    monkeypatch.setattr(nb, "DRAW_TIMEOUT", 1e-4)
    bundle = netdsl.parse(LENET)._repr_mimebundle_()
    assert "image/svg+xml" not in bundle and "took longer than" in bundle["text/html"]
    assert parse_html(bundle["text/html"])["table"] == 1
    assert netdsl.parse(LENET)._repr_svg_() is None  # the same limit for the drawing alone
    monkeypatch.undo()
    monkeypatch.setattr(nb, "MAX_DRAW_EDGES", 5)  # dot's time grows with the connections, not only the layers
    bundle = netdsl.parse(LENET)._repr_mimebundle_()
    assert "image/svg+xml" not in bundle and "connections" in bundle["text/html"]


def test_magic_binds_ordinary_names_only(shell):
    result, cap = run_cell(shell, "print", "relu")  # a builtin's name may be shadowed, as in Python
    assert result.success and isinstance(shell.user_ns["print"], netdsl.Net)
    shell.user_ns.pop("print")


def test_a_killed_dot_is_named(tmp_path, monkeypatch):
    """A dot killed by a signal (here a real process that kills itself) is reported as killed."""
    from netdsl.render import RenderError, render

    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\nkill -9 $$\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RenderError, match="killed by SIGKILL"):
        render("digraph {}", "svg")


def test_magic_refuses_a_parameter_given_twice(shell):
    """`-D w=6 -D w=7` silently used 7; `netdsl check` refuses it, and so does the magic, in the same words."""
    shell.user_ns.pop("x", None)
    result, cap = run_cell(shell, "x -D w=6 -Dw=7", "conv w x 3 same; flatten; dense 2")
    assert result.success and cap.outputs == [] and "x" not in shell.user_ns
    assert "%%netdsl: -D w is given more than once" in cap.stderr and "usage: %%netdsl" in cap.stderr

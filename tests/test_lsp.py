"""`netdsl lsp` driven over real stdio JSON-RPC by a minimal client (tests/lsp_client.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("pygls")
sys.path.insert(0, str(ROOT / "tests"))
from lsp_client import Client  # noqa: E402
from strategies import mutation_batches  # noqa: E402

from netdsl.fmt import format_text  # noqa: E402

URI = "file:///spec.net"
LENET = (ROOT / "examples" / "lenet5.net").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def lsp():
    c = Client()
    caps = c.initialize()["capabilities"]
    for cap in ("hoverProvider", "completionProvider", "definitionProvider", "documentFormattingProvider"):
        assert caps.get(cap), cap
    assert caps.get("inlayHintProvider") and caps.get("documentSymbolProvider")
    yield c
    assert c.close() == 0
    assert "failed" not in c.stderr and "Traceback" not in c.stderr, c.stderr  # no handler fell back


class Doc:
    """One open document of the server, with its version."""

    n = 0

    def __init__(self, lsp, text: str):
        Doc.n += 1
        self.lsp, self.uri, self.version = lsp, f"file:///doc{Doc.n}.net", 1
        lsp.open(self.uri, text)
        self.diags = lsp.diagnostics(self.uri)

    def change(self, text: str) -> list:
        self.version += 1
        self.lsp.change(self.uri, text, self.version)
        self.diags = self.lsp.diagnostics(self.uri, self.version)
        return self.diags

    def at(self, method: str, line: int, character: int, **extra):
        params = {"textDocument": {"uri": self.uri}, "position": {"line": line, "character": character}, **extra}
        return self.lsp.request(method, params)

    def whole(self, method: str, **extra):
        return self.lsp.request(method, {"textDocument": {"uri": self.uri}, **extra})


def rng(l0, c0, l1, c1):
    return {"start": {"line": l0, "character": c0}, "end": {"line": l1, "character": c1}}


def test_diagnostics_appear_and_clear(lsp):
    doc = Doc(lsp, "conv 6x5 relu\ndense 10\n")
    (d,) = doc.diags
    assert d["code"] == "E201" and d["source"] == "netdsl" and d["range"] == rng(1, 0, 1, 5)
    notes = [r["message"] for r in d["relatedInformation"]]
    assert any("comes from `conv_1`" in n for n in notes) and any(n.startswith("hint: insert `flatten`") for n in notes)
    assert doc.change("conv 6x5 relu\nflatten\ndense 10\n") == []
    (d,) = doc.change("conv 6x5 relu\nflatten\ndense 10 (\n")
    assert d["code"] == "E002" and d["range"]["start"]["line"] == 2


def test_positions_are_utf16(lsp):
    doc = Doc(lsp, "relu # \U0001f600\nrelu; \U0001f600 \U0001f600 relu\n")
    (d,) = doc.diags
    assert d["code"] == "E001" and d["range"] == rng(1, 6, 1, 8)  # the emoji is two UTF-16 units
    doc.change("relu # \U0001f600\nconv 6x5 relu # \U0001f600\n")
    hints = doc.whole("textDocument/inlayHint", range=rng(0, 0, 5, 0))
    assert [h["position"] for h in hints] == [{"line": 0, "character": 4}, {"line": 1, "character": 13}]
    assert "conv_1" in doc.at("textDocument/hover", 1, 2)["contents"]["value"]


def test_hover_shows_shape_params_macs_and_input(lsp):
    doc = Doc(lsp, LENET)
    h = doc.at("textDocument/hover", 2, 1)  # conv 6x5 sigmoid
    text = h["contents"]["value"]
    assert "**conv_1** (Conv2D): output `(None, 24, 24, 6)`" in text
    assert "receives `(None, 28, 28, 1)` from `input`" in text
    assert "params 156 (trainable 156, non-trainable 0)" in text and "MACs 86,400" in text
    assert doc.at("textDocument/hover", 0, 3) is None  # a comment


def test_a_document_that_does_not_parse_keeps_its_last_good_hovers(lsp):
    doc = Doc(lsp, LENET)
    broken = LENET.replace("flatten\n", "flatten (\n")
    assert doc.change(broken)[0]["code"] == "E002"
    text = doc.at("textDocument/hover", 2, 1)["contents"]["value"]
    assert "output `(None, 24, 24, 6)`" in text  # an unchanged line: from the last good version
    assert doc.at("textDocument/hover", 6, 1) is None  # the changed line: nothing stale
    hints = doc.whole("textDocument/inlayHint", range=rng(0, 0, 20, 0))
    assert {h["position"]["line"] for h in hints} == {1, 2, 3, 4, 5, 7, 8, 9}


def test_hover_on_def_call_shows_block_total(lsp):
    doc = Doc(lsp, "def f(c) { conv c x 3 same; batchnorm }\nf(8)\nf(8)\nflatten; dense 10")
    text = doc.at("textDocument/hover", 1, 0)["contents"]["value"]
    # conv 3*3*1*8+8 = 80, batchnorm 2*8 trainable + 2*8 not
    assert "2 layers" in text and "params 112 (trainable 96, non-trainable 16)" in text


def test_inlay_hints_give_each_line_its_shape(lsp):
    doc = Doc(lsp, LENET)
    hints = doc.whole("textDocument/inlayHint", range=rng(0, 0, 20, 0))
    labels = {h["position"]["line"]: h["label"] for h in hints}
    assert labels[2] == "\u2192 24x24x6  156 params" and labels[3] == "\u2192 12x12x6"
    assert labels[9] == "\u2192 10  850 params" and 0 not in labels and labels[1] == "\u2192 28x28x1"
    at = {h["position"]["line"]: h["position"]["character"] for h in hints}
    assert at[2] == len("conv 6x5 sigmoid")  # after the code, before the comment


def labels(result) -> list[str]:
    items = result["items"] if isinstance(result, dict) else result
    return [i["label"] for i in items]


def test_completion(lsp):
    doc = Doc(lsp, "e1: conv 32x3 \nlet width = 3\ndef blk(c) { relu }\n\n")
    got = labels(doc.at("textDocument/completion", 0, 14))
    assert {"relu", "softmax", "same", "valid", "filters", "kernel", "width"} <= set(got)
    doc.change("e1: conv 32x3 relu same\nlet width = 3\ndef blk(c) { relu }\nflatten\n")
    got = labels(doc.at("textDocument/completion", 3, 0))
    assert {"conv", "dense", "maxpool", "residual", "repeat", "blk"} <= set(got)
    doc.change("e1: conv 32x3 relu same\nlet width = 3\ndef blk(c) { relu }\nadd \n")
    assert {"e1", "input"} <= set(labels(doc.at("textDocument/completion", 3, 4)))
    doc.change("e1: conv 32x3 relu same\nconv 8x3 activation=\n")
    assert "gelu" in labels(doc.at("textDocument/completion", 1, 20))
    doc.change("e1: conv 32x3 relu same\ntrain \n")
    assert {"adam", "sgd", "lr", "epochs"} <= set(labels(doc.at("textDocument/completion", 1, 6)))


def test_completion_offers_layers_from_the_op_table(lsp):
    from netdsl.ops import OPS

    doc = Doc(lsp, "\n")
    assert set(OPS) <= set(labels(doc.at("textDocument/completion", 0, 0)))


def test_definition(lsp):
    text = "let w = 8\ndef f(c) { conv c x 3 same }\ne1: conv w x 3 same\nf(w)\nadd e1\nflatten; dense 10\n"
    doc = Doc(lsp, text)
    assert doc.diags == []
    loc = doc.at("textDocument/definition", 4, 5)  # e1 in `add e1`
    assert loc["uri"] == doc.uri and loc["range"] == rng(2, 0, 2, 2)
    assert doc.at("textDocument/definition", 3, 0)["range"] == rng(1, 4, 1, 5)  # f
    assert doc.at("textDocument/definition", 3, 2)["range"] == rng(0, 4, 0, 5)  # w
    assert doc.at("textDocument/definition", 5, 0) is None  # `flatten`, a layer word: nothing to go to


def test_formatting_returns_fmt_output(lsp):
    text = "conv 6x5 relu;flatten\n  dense 10 # x\n"
    doc = Doc(lsp, text)
    (edit,) = doc.whole("textDocument/formatting", options={"tabSize": 2, "insertSpaces": True})
    assert edit["newText"] == format_text(text) == "conv 6x5 relu\nflatten\ndense 10  # x\n"
    assert edit["range"]["start"] == {"line": 0, "character": 0}
    doc.change("conv 6x5 relu;dense 10\n")  # a shape error: formatted, as `netdsl fmt` does
    (edit,) = doc.whole("textDocument/formatting", options={"tabSize": 2, "insertSpaces": True})
    assert edit["newText"] == "conv 6x5 relu\ndense 10\n"
    doc.change("conv 6x5 relu;dense 10 (\n")  # does not parse: no edits
    assert doc.whole("textDocument/formatting", options={"tabSize": 2, "insertSpaces": True}) == []


def test_document_symbols(lsp):
    doc = Doc(lsp, (ROOT / "examples" / "resnet.net").read_text(encoding="utf-8"))
    syms = doc.whole("textDocument/documentSymbol")
    names = [s["name"] for s in syms]
    assert "def block(c, k)" in names and "width" in names and "conv 32x3 relu same" in names
    block = syms[names.index("def block(c, k)")]
    assert block["children"][0]["children"]  # the residual's body


def test_broken_documents_answer_every_request(lsp):
    doc = Doc(lsp, "")
    for text in ("", "}", "conv (", "def f(", "\x00", "repeat 1000000 { relu }", "a: b: c", "\ufeff# x", "é" * 50):
        doc.change(text)
        for line, ch in ((0, 0), (0, 3), (5, 40)):
            for m in ("textDocument/hover", "textDocument/completion", "textDocument/definition"):
                doc.at(m, line, ch)
        doc.whole("textDocument/documentSymbol")
        doc.whole("textDocument/inlayHint", range=rng(0, 0, 10, 0))
        doc.whole("textDocument/formatting", options={"tabSize": 2, "insertSpaces": True})


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutation_batches(8), st.randoms(use_true_random=False))
def test_200_random_edits_never_error(lsp, batch, rnd):
    """25 batches x 8 mutants = 200 edits; after each, every kind of request at a random place."""
    doc = Doc(lsp, batch[0].original)
    for mut in batch:
        doc.change(mut.text)
        lines = mut.text.split("\n")
        line = rnd.randrange(len(lines) + 1)
        ch = rnd.randrange(len(lines[line]) + 2) if line < len(lines) else 0
        ids = [
            lsp.send_request(m, {"textDocument": {"uri": doc.uri}, "position": {"line": line, "character": ch}})
            for m in ("textDocument/hover", "textDocument/completion", "textDocument/definition")
        ]
        ids.append(
            lsp.send_request("textDocument/inlayHint", {"textDocument": {"uri": doc.uri}, "range": rng(0, 0, 999, 0)})
        )
        ids.append(lsp.send_request("textDocument/documentSymbol", {"textDocument": {"uri": doc.uri}}))
        opts = {"tabSize": 2, "insertSpaces": True}
        ids.append(lsp.send_request("textDocument/formatting", {"textDocument": {"uri": doc.uri}, "options": opts}))
        for rid in ids:
            msg = lsp.wait(rid)
            assert "error" not in msg, (mut.text, msg)
    assert lsp.proc.poll() is None


def test_initialization_options_bind_parameters():
    with Client() as c:
        opts = {"params": {"w": 4, "unused": 1}}
        c.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}, "initializationOptions": opts})
        c.notify("initialized", {})
        c.open(URI, "conv w x 3 same\nflatten\ndense 10\n")
        assert c.diagnostics(URI) == []
        c.open("file:///other.net", "relu\n")  # a document without `w` is not told about it
        assert c.diagnostics("file:///other.net") == []


def test_missing_pygls_is_a_clear_error(tmp_path):
    import subprocess

    stub = tmp_path / "pygls"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('no pygls here', name='pygls')\n")
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "netdsl", "lsp"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "netdsl lsp: error[E803]" in proc.stderr and "netdsl[lsp]" in proc.stderr
    assert "<string>" not in proc.stderr


def test_byte_order_mark_is_accepted(lsp):
    """A document starting with U+FEFF is a spec, as `netdsl check` reads it; columns stay right."""
    doc = Doc(lsp, "\ufeffconv 6x5 relu\nflatten\ndense 10\n")
    assert doc.diags == []
    (d,) = doc.change("\ufeffconv 6x5 relu\ndense 10\n")
    assert d["code"] == "E201" and d["range"] == rng(1, 0, 1, 5)
    (edit,) = doc.whole("textDocument/formatting", options={"tabSize": 2, "insertSpaces": True}) or [None]
    assert edit is None or edit["newText"].startswith("\ufeff")


@pytest.mark.parametrize("eol", ["\r", "\r\n", "\n"])
def test_formatting_replaces_the_whole_document(lsp, eol):
    text = eol.join(["flatten;relu", "dense 10 # é"])  # no final line ending: the range ends inside the last line
    doc = Doc(lsp, text)
    (edit,) = doc.whole("textDocument/formatting", options={"tabSize": 2, "insertSpaces": True})
    assert edit["range"] == rng(0, 0, 1, len("dense 10 # é"))
    assert edit["newText"] == eol.join(["flatten", "relu", "dense 10  # é", ""])
    doc.change(text + eol)
    (edit,) = doc.whole("textDocument/formatting", options={"tabSize": 2, "insertSpaces": True})
    assert edit["range"] == rng(0, 0, 2, 0)


def test_invalid_params_get_an_error_reply():
    """pygls dropped such requests without an answer: the client waited forever."""
    with Client() as c:
        c.initialize()
        c.open("file:///bad.net", "relu\n")
        doc = {"uri": "file:///bad.net"}
        for params in (
            {"textDocument": doc, "position": {"line": -1, "character": -1}},
            {"textDocument": doc, "position": {"line": 2**33, "character": 0}},
            {"foo": 1},
            None,
        ):
            msg = c.wait(c.send_request("textDocument/hover", params), timeout=20)
            assert msg["error"]["code"] == -32602, msg
        big = {"textDocument": doc, "position": {"line": 2**31 - 1, "character": 2**31 - 1}}
        assert c.request("textDocument/hover", big) is None  # valid, far past the end: no hover
        assert c.request("textDocument/hover", {"textDocument": doc, "position": {"line": 0, "character": 1}})


def test_a_huge_content_length_is_skipped():
    import resource

    proc = subprocess.run(
        [sys.executable, "-m", "netdsl", "lsp"],
        input=b"Content-Length: 99999999999\r\n\r\n{}",
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)),
    )
    assert b"MemoryError" not in proc.stderr and b"Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr


def test_fallback_is_the_last_version_that_parsed(lsp):
    """good (6x5) -> a semantic error (8x5 kept, a bad last line) -> a syntax error: hovers come from the 8x5 version."""
    doc = Doc(lsp, "conv 6x5 relu\nflatten\ndense 10\n")
    assert doc.change("conv 8x5 relu\nflatten\ndense 10\nconv 3x3\n")[0]["code"] != "E002"
    assert doc.change("conv 8x5 relu\nflatten\ndense 10\nconv 3x3 (\n")[0]["code"] == "E002"
    text = doc.at("textDocument/hover", 0, 1)["contents"]["value"]
    assert "208" in text  # 8 x (5x5 + 1) parameters: the version that parsed, not the older good one


def test_train_completion_offers_what_is_left(lsp):
    doc = Doc(lsp, "flatten; dense 10\ntrain adam lr=0.1 ")
    got = labels(doc.at("textDocument/completion", 1, 18))
    assert "epochs" in got and "lr" not in got and "momentum" not in got and "nesterov" not in got
    doc.change("flatten; dense 10\ntrain sgd lr=0.1 ")
    got = labels(doc.at("textDocument/completion", 1, 17))
    assert "momentum" in got and "lr" not in got and "optimizer" not in got


def test_quick_changes_are_analysed_once_for_the_newest_version():
    """Each didChange ran the whole front end and published its diagnostics (4-6 s each for a
    100,000-layer `repeat`; a hover after 10 changes took 42 s).  Now a change only records
    the text: a burst of changes is analysed once, and only the newest version is published."""
    spec = "input 8\nrepeat 20000 {{ dense {} }}\n"
    with Client() as c:
        c.initialize()
        c.open(URI, spec.format(8))
        assert c.diagnostics(URI, 1) == []
        for v in range(2, 12):
            c.change(URI, spec.format(v), v)
        pos = {"textDocument": {"uri": URI}, "position": {"line": 1, "character": 17}}
        assert "output `(None, 11)`" in c.request("textDocument/hover", pos)["contents"]["value"]
        c.change(URI, spec.format(12) + "relu (\n", 12)  # the newest version is published, with its errors
        published = []
        while 12 not in published:
            note = c.notes.get(timeout=20)
            assert note["method"] == "textDocument/publishDiagnostics"
            published.append(note["params"]["version"])
            assert bool(note["params"]["diagnostics"]) == (published[-1] == 12)
    assert published in ([11, 12], [12])  # versions 2 to 10 were never analysed


def test_large_document_outline_and_hints_are_linear():
    """10,000 layers (80 kB): documentSymbol took 20 s and inlayHint 4 s (per-item position
    conversion split the whole text; each symbol split it again)."""
    import time

    text = "input 8\n" + "dense 8 # \u00e9\n" * 10_000
    with Client() as c:
        c.initialize()
        c.open(URI, text)
        assert c.diagnostics(URI) == []
        start = time.monotonic()
        syms = c.request("textDocument/documentSymbol", {"textDocument": {"uri": URI}})
        hints = c.request("textDocument/inlayHint", {"textDocument": {"uri": URI}, "range": rng(0, 0, 10_001, 0)})
        took = time.monotonic() - start
        assert len(syms) == len(hints) == 10_001
        assert hints[-1]["position"] == {"line": 10_000, "character": len("dense 8")}
        assert syms[-1]["range"] == rng(10_000, 0, 10_000, len("dense 8"))
    assert took < 4, f"documentSymbol + inlayHint of 10,000 layers took {took:.1f} s"


def raw(c, msg: dict) -> dict:
    c._send(msg)
    return c.wait(msg.get("id") if isinstance(msg.get("id"), (int, str)) else None, timeout=20)


def test_malformed_requests_get_invalid_request():
    """These got no answer at all: the client waited forever."""
    hover = {"textDocument": {"uri": URI}, "position": {"line": 0, "character": 0}}
    with Client() as c:
        c.initialize()
        c.open(URI, "relu\n")
        for msg, want_id in (
            ({"jsonrpc": "1.0", "id": 7, "method": "textDocument/hover", "params": hover}, 7),
            ({"id": 8, "method": "textDocument/hover", "params": hover}, 8),
            ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "textDocument/hover", "params": hover}, None),
            ({"jsonrpc": "2.0", "id": [1], "method": "textDocument/hover", "params": {"x": -1}}, None),
        ):
            got = raw(c, msg)
            assert got["error"]["code"] == -32600 and "id" in got and got["id"] == want_id, got
        msg = c.wait(c.send_request("textDocument/hover", {**hover, "position": {"line": -1, "character": 0}}), 20)
        assert msg["error"]["code"] == -32602
        assert raw(c, {"jsonrpc": "2.0", "id": "s", "method": "nope/x"})["error"]["code"] == -32601  # no params
        assert c.request("textDocument/hover", hover) is not None  # the server still serves
        assert c.request("shutdown", None) is None
        for method in ("textDocument/hover", "shutdown", "initialize"):  # LSP: InvalidRequest after shutdown
            assert c.wait(c.send_request(method, hover), 20)["error"]["code"] == -32600
        c.notify("exit", None)
        assert c.proc.wait(timeout=20) == 0
        c.close()
    lines = c.stderr.splitlines()
    err = c.stderr
    assert "Traceback" not in err and "+---" not in err and len(lines) == 9, err  # one line per refused request


def test_exit_without_shutdown_ends_with_1():
    """LSP: `exit` without a `shutdown` before it exits 1 (it exited 0)."""
    with Client() as c:
        c.initialize()
        c.notify("exit", None)
        assert c.proc.wait(timeout=20) == 1


def test_documents_not_opened_are_not_read_from_disk(lsp, tmp_path):
    """pygls reads an unopened URI from disk, at every access: a hover on file:///dev/zero grew
    to 6 GB.  Only documents the client opened are served."""
    spec = tmp_path / "on_disk.net"
    spec.write_text("conv 6x5 relu\nflatten\ndense 10\n", encoding="utf-8")
    pos = {"textDocument": {"uri": spec.as_uri()}, "position": {"line": 0, "character": 1}}
    assert lsp.request("textDocument/hover", pos) is None
    assert lsp.request("textDocument/documentSymbol", {"textDocument": {"uri": spec.as_uri()}}) == []
    doc = Doc(lsp, "relu\n")
    lsp.notify("textDocument/didClose", {"textDocument": {"uri": doc.uri}})
    assert lsp.diagnostics(doc.uri) == []
    assert lsp.request("textDocument/hover", {**pos, "textDocument": {"uri": doc.uri}}) is None


def test_position_table_counts_as_the_client_does():
    from lsprotocol.types import Position
    from pygls.workspace.position_codec import Utf8, Utf16

    from netdsl.lsp.positions import Positions

    text = "a\U0001f600b\r\n\u00e9x\rplain\n"
    p16, p8 = Positions(text, Utf16().code_units_for_char), Positions(text, Utf8().code_units_for_char)
    assert p16.lines == ["a\U0001f600b", "\u00e9x", "plain", ""]
    assert p16.to_client(1, 3) == Position(0, 3) and p8.to_client(1, 3) == Position(0, 5)  # b, after the emoji
    assert p16.from_client(Position(0, 3)) == (1, 3) and p8.from_client(Position(0, 5)) == (1, 3)
    assert p16.from_client(Position(0, 2)) == (1, 2)  # inside the surrogate pair: the emoji itself
    assert p8.to_client(2, 2) == Position(1, 2) and p16.to_client(2, 2) == Position(1, 1)
    assert p16.to_client(9, 9) == Position(3, 8)  # clamped to the last line (col kept, as before)
    assert p16.to_client(1, 99) == Position(0, 4)  # past the end of a non-ASCII line: its end
    assert p16.end() == Position(3, 0) and Positions("x\u00e9", Utf16().code_units_for_char).end() == Position(0, 2)

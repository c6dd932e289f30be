"""The Pygments lexer and the TextMate grammar: one token table, the same reading of every spec."""

from __future__ import annotations

import json
import re
import sys

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings

pygments = pytest.importorskip("pygments")
from pygments import lex  # noqa: E402

from netdsl.highlight import CATEGORIES, NetdslLexer, tmlanguage, tmlanguage_json  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from strategies import programs  # noqa: E402

EXAMPLES = sorted((ROOT / "examples").glob("*.net"))
TM_FILE = ROOT / "editors" / "netdsl.tmLanguage.json"
BY_TOKEN = {}
for cat, (tok, _scope) in CATEGORIES.items():
    BY_TOKEN.setdefault(tok, cat)
BY_SCOPE = {scope: cat for cat, (_tok, scope) in CATEGORIES.items()}
SAME = {"size": "number"}  # Pygments shows both as numbers


def pygments_words(text: str) -> list[tuple[str, str]]:
    """(text, category) of every token that is not whitespace."""
    out = []
    for tok, value in lex(text, NetdslLexer()):
        if not value.strip():
            continue
        assert "Error" not in str(tok), f"error token {value!r}"
        name = str(tok).removeprefix("Token.")
        out.append((value.strip(), SAME.get(BY_TOKEN[name], BY_TOKEN[name])))
    return out


def textmate_words(text: str) -> list[tuple[str, str]]:
    """A small TextMate engine for a grammar of match rules: at each position the rule whose
    match starts first wins (the earlier rule on a tie); what no rule matches is unscoped."""
    rules = [(re.compile(r["match"], re.M), r) for r in tmlanguage()["patterns"]]
    out = []
    for line in text.split("\n"):
        pos = 0
        while pos < len(line):
            best = None
            for rx, rule in rules:
                m = rx.search(line, pos)
                if m and m.end() > m.start() and (best is None or m.start() < best[0].start()):
                    best = (m, rule)
            if best is None:
                assert not line[pos:].strip(), f"unscoped text {line[pos:]!r}"
                break
            m, rule = best
            assert not line[pos : m.start()].strip(), f"unscoped text {line[pos : m.start()]!r}"
            if "name" in rule:
                out.append((m.group().strip(), BY_SCOPE[rule["name"]]))
            else:
                for i in sorted(int(k) for k in rule["captures"]):
                    if m.group(i) is not None:
                        out.append((m.group(i), BY_SCOPE[rule["captures"][str(i)]["name"]]))
            pos = m.end()
    return [(w, SAME.get(c, c)) for w, c in out]


def test_tmlanguage_file_is_generated():
    assert TM_FILE.read_text(encoding="utf-8") == tmlanguage_json(), (
        "regenerate: python -m netdsl.highlight > editors/netdsl.tmLanguage.json"
    )
    grammar = json.loads(TM_FILE.read_text(encoding="utf-8"))
    assert grammar["scopeName"] == "source.netdsl" and grammar["fileTypes"] == ["net"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_tokenize_the_same_in_both(path):
    text = path.read_text(encoding="utf-8")
    words = pygments_words(text)
    assert re.sub(r"\s+", "", "".join(w for w, _ in words)) == re.sub(r"\s+", "", text)  # every character is in a token
    assert words == textmate_words(text)


def test_categories():
    words = dict(pygments_words("e1: Conv 32x3/2 ReLU same # c\nlet w = 2*k\ntrain adam lr=1e-3\ndef f(c) { dense c }"))
    assert words == {
        "e1": "label", ":": "punctuation", "Conv": "function", "32x3/2": "number", "ReLU": "constant",
        "same": "constant", "# c": "comment", "let": "keyword", "w": "name", "=": "operator", "2": "number",
        "*": "operator", "k": "name", "train": "keyword", "adam": "name", "lr": "attribute", "1e-3": "number",
        "def": "keyword", "f": "function", "(": "punctuation", "c": "name", ")": "punctuation",
        "{": "punctuation", "dense": "function", "}": "punctuation",
    }  # fmt: skip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_programs_tokenize_the_same_in_both(prog):
    assert pygments_words(prog.text) == textmate_words(prog.text)


def test_vscode_extension_folder():
    """editors/ is a VS Code extension folder: its manifest names the grammar and the language settings."""
    manifest = json.loads((ROOT / "editors" / "package.json").read_text(encoding="utf-8"))
    (grammar,) = manifest["contributes"]["grammars"]
    assert grammar["scopeName"] == tmlanguage()["scopeName"]
    assert (ROOT / "editors" / grammar["path"]).resolve() == TM_FILE
    (lang,) = manifest["contributes"]["languages"]
    assert lang["extensions"] == [".net"]
    config = json.loads((ROOT / "editors" / lang["configuration"]).read_text(encoding="utf-8"))
    assert config["comments"]["lineComment"] == "#"


def test_netdsl_blocks_in_the_docs_highlight_cleanly():
    blocks = []
    for doc in (ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))):
        blocks += re.findall(r"```netdsl\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert len(blocks) > 10
    for block in blocks:
        assert pygments_words(block) == textmate_words(block), block


def test_every_statement_keyword_highlights_as_one():
    """`mul a b`, `mul { A | B }` (and any statement word added later) are keywords in both highlighters."""
    from netdsl.frontend.syntax import STATEMENT_WORDS

    for word in STATEMENT_WORDS:
        if word in ("def", "identity"):  # `def` has its own rule; `identity` is a layer
            continue
        text = f"a: relu\n{word} a b\n{word} {{ relu | identity }}\n"
        words = pygments_words(text)
        assert (word, "keyword") in words, word
        assert words == textmate_words(text)

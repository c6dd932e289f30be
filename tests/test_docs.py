"""The project's documentation stands alone: every relative link in README.md and docs/
resolves (files and #anchors), and no file of the project names a .md file it does not hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"(?<!\!)\[(?:[^\]\n]|\n(?!\n))*?\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    out: set[str] = set()
    seen: dict[str, int] = {}
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path: Path) -> list[str]:
    return LINK.findall(CODE.sub("", path.read_text(encoding="utf-8")))


def test_there_are_docs_and_links():
    assert (ROOT / "docs" / "language.md") in DOCS
    assert "docs/language.md#error-codes" in links(ROOT / "README.md")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    bad = []
    for target in links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: — not checked offline
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists() or ROOT.resolve() not in (dest, *dest.parents):
            bad.append(f"{target}: no such file in the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading `#{anchor}` in {dest.relative_to(ROOT.resolve())}")
    assert not bad, f"{doc.relative_to(ROOT)}: " + "; ".join(bad)


def test_no_file_names_a_markdown_file_the_repository_lacks():
    """`LANGUAGE.md` was named in docs and docstrings but never shipped: any *.md named anywhere must exist."""
    held = {p.name for p in ROOT.rglob("*.md") if ".git" not in p.parts}
    held |= {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.md") if ".git" not in p.parts}
    files = [*DOCS, *ROOT.glob("netdsl/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("examples/*.net")]
    files += [p for p in (ROOT / "pyproject.toml", ROOT / "grammars" / "netdsl.lark") if p.exists()]
    missing = []
    for f in files:
        if f == Path(__file__):
            continue
        for name in re.findall(r"(?<![\w/.-])([\w./-]*\w\.md)\b", f.read_text(encoding="utf-8")):
            if name not in held and name.lstrip("./") not in held:
                missing.append(f"{f.relative_to(ROOT)}: {name}")
    assert not missing, missing


NETDSL_BLOCK = re.compile(r"^```netdsl\n(.*?)^```", re.S | re.M)
SHOWS_AN_ERROR: set[tuple[str, int]] = set()  # (file, line of the block) of a block meant to fail: none now


def netdsl_blocks():
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in NETDSL_BLOCK.finditer(text):
            yield path, text[: m.start()].count("\n") + 1, m.group(1)


def test_every_netdsl_block_in_the_docs_passes_check(tmp_path, capsys):
    """docs/language.md says every ```netdsl block passes `netdsl check`: run it on each."""
    from netdsl.cli import main

    blocks = list(netdsl_blocks())
    assert len(blocks) >= 10
    failed = []
    for path, line, text in blocks:
        spec = tmp_path / "block.net"
        spec.write_text(text, encoding="utf-8")
        code = main(["check", "-q", str(spec)])
        err = capsys.readouterr().err
        where = (path.relative_to(ROOT).as_posix(), line)
        if (code == 0) == (where in SHOWS_AN_ERROR):
            failed.append(f"{where[0]}:{where[1]}: exit {code} {err[:300]}")
    assert not failed, "\n".join(failed)

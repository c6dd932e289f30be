"""The error-code registry (netdsl/codes.py) against the source and docs/language.md.

Every code the source raises is registered and documented with the registry's meaning, and
every registered code is raised somewhere: no code drifts out of the table, none is dead.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import netdsl
from netdsl.codes import CODES
from netdsl.errors import NetdslError

ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"^E\d{3}$")
ROW = re.compile(r"^\| (E\d{3}) \| (.*?) \|(?: (.*?) \|)?$", re.M)


def raised_codes() -> dict[str, list[str]]:
    """Every string constant in netdsl/ that is an error code, with where it stands."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "netdsl").rglob("*.py")):
        if path.name == "codes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.match(node.value):
                found.setdefault(node.value, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def documented() -> dict[str, tuple[str, str | None]]:
    rows = ROW.findall((ROOT / "docs" / "language.md").read_text(encoding="utf-8"))
    table: dict[str, tuple[str, str | None]] = {}
    for code, meaning, example in rows:
        assert code not in table, f"{code} is documented twice"
        table[code] = (meaning, example or None)
    return table


def test_every_raised_code_is_registered():
    missing = {c: where for c, where in raised_codes().items() if c not in CODES}
    assert not missing, f"raised but not in netdsl/codes.py: {missing}"


def test_every_registered_code_is_raised():
    dead = sorted(set(CODES) - set(raised_codes()))
    assert not dead, f"registered but raised nowhere: {dead}"


def test_docs_table_is_the_registry():
    docs = documented()
    assert sorted(docs) == sorted(CODES), "docs/language.md and netdsl/codes.py list different codes"
    for code, entry in CODES.items():
        meaning, example = docs[code]
        assert meaning == entry.meaning, f"{code}: the docs say {meaning!r}, the registry {entry.meaning!r}"
        if entry.example is not None:
            shown = f"`{entry.example}`" if entry.example_is_spec else entry.example
            assert example == shown, f"{code}: the docs' example is {example!r}, the registry's {shown!r}"


@pytest.mark.parametrize("code", [c for c, e in CODES.items() if e.example and e.example_is_spec])
def test_each_example_fails_with_its_code(code):
    with pytest.raises(NetdslError) as info:
        netdsl.parse(CODES[code].example)
    assert code in {e.code for e in info.value.errors}


def test_an_unregistered_code_is_a_bug_not_a_message():
    with pytest.raises(ValueError, match="unregistered error code 'E999'"):
        NetdslError("E999", "no such code")


@pytest.mark.parametrize("code", sorted(CODES))
def test_explain_prints_the_meaning_and_a_real_message(code, capsys):
    from netdsl.cli import main

    assert main(["explain", code.lower()[1:] if code.endswith("1") else code]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{code}: {CODES[code].meaning}\n")
    if CODES[code].example and CODES[code].example_is_spec:
        assert f"error[{code}]" in out  # the example's own message, made now


def test_explain_lists_every_code_and_refuses_an_unknown_one(capsys):
    from netdsl.cli import main

    assert main(["explain"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == list(CODES)
    assert main(["explain", "E2O1"]) == 1
    assert "did you mean `E201`" in capsys.readouterr().err
    assert main(["explain", "E" * 100_000]) == 1
    assert len(capsys.readouterr().err) < 200  # not echoed whole

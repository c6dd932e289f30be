"""Completion for the language server: what may be written at the cursor, from the op table
(layers that other modules add included), the statement words, and the document's names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..frontend import syntax as s
from .analysis import Analysis, _in_def, def_names, let_names


@dataclass
class Item:
    label: str
    kind: str  # layer keyword activation argument node def variable value
    detail: str = ""
    insert: str | None = None


def completions(a: Analysis, good: Analysis | None, line: int, col: int) -> list[Item]:
    """Completion items at 1-based ``line``/``col``: ``good`` is the last analysis without
    errors (its names stay offered while the user types a broken line)."""
    from ..ops import ACTIVATIONS, OPS, PADDINGS, USAGE

    lines = a.text.split("\n")
    before = lines[line - 1][: col - 1] if 1 <= line <= len(lines) else ""
    if "#" in before:
        return []
    stmt = re.split(r"[;{|}]", before)[-1]
    stmt = re.sub(r"^\s*[A-Za-z_]\w*\s*:(?!=)", "", stmt)  # a label
    words = stmt.split()
    partial = not stmt.endswith((" ", "\t", "=")) and bool(words)
    done = words[:-1] if partial else words
    names = _node_names(a) | (_node_names(good) if good else set())
    defs = set(def_names(a)) | (set(def_names(good)) if good else set())
    variables = set(let_names(a)) | (set(let_names(good)) if good else set())
    for d in def_names(a).values():  # inside a def body its parameters are names too
        if d.span.line <= line <= d.span.end_line:
            variables |= {p.name.text for p in d.params}
    if not done:  # the statement's first word
        items = [Item(op, "layer", OPS[op].keras, None) for op in OPS]
        items += [Item(k, "keyword") for k in s.STATEMENT_WORDS if k != "identity"]
        items += [Item(d, "def", "def", f"{d}(") for d in sorted(defs)]
        return items
    head = done[0].lower()
    if head in ("from", "add", "concat"):
        return [Item(n, "node") for n in sorted(names)]
    if head == "let":
        return [] if len(done) < 2 else [Item(v, "variable") for v in sorted(variables)]
    if head == "train":
        from ..settings import _OPTIMIZER_KEYS, OPTIMIZERS, TRAIN_KEYS

        last = stmt.rstrip().rsplit(None, 1)[-1] if stmt.strip() else ""
        if stmt.endswith("=") or (partial and "=" in last):
            return [Item(v, "variable") for v in sorted(variables)]
        given = {w.split("=", 1)[0].lower() for w in done[1:] if "=" in w}
        opt = done[1].lower() if len(done) > 1 and "=" not in done[1] else None
        for w in done[1:]:
            if w.lower().startswith("optimizer="):
                opt = w.split("=", 1)[1].lower()
        if opt is not None:
            given.add("optimizer")
        own = set(_OPTIMIZER_KEYS)  # sgd's own settings: not offered for another optimizer
        keys = [k for k in TRAIN_KEYS if k not in given and not (opt in OPTIMIZERS and opt != "sgd" and k in own)]
        items = [Item(k, "argument", insert=f"{k}=") for k in keys]
        if len(done) == 1:
            items += [Item(o, "value", "optimizer") for o in OPTIMIZERS]
        return items
    if head == "data":
        from ..settings import DATASETS

        return [Item(d, "value", "data set") for d in DATASETS]
    if head in ("input", "def", "repeat", "residual"):
        return [Item(v, "variable") for v in sorted(variables)]
    op = OPS.get(head)
    if op is None:
        return [Item(v, "variable") for v in sorted(variables)]
    key = None
    tail = stmt if stmt.endswith("=") else (words[-1] if partial else "")
    if "=" in tail:
        key = tail.rstrip().rsplit(None, 1)[-1].split("=", 1)[0].lower() if tail.strip() else None
    if key == "activation":
        return [Item(x, "activation") for x in ACTIVATIONS]
    if key == "padding":
        return [Item(x, "value", "padding") for x in PADDINGS]
    if key is not None:
        return [Item(v, "variable") for v in sorted(variables)]
    items = []
    if "activation" in op.args:
        items += [Item(x, "activation") for x in ACTIVATIONS]
    if "padding" in op.args:
        items += [Item(x, "value", "padding") for x in PADDINGS]
    given = {w.split("=", 1)[0].lower() for w in done if "=" in w}
    items += [Item(k, "argument", op.name, f"{k}=") for k in op.args if k not in given]
    items += [Item(v, "variable") for v in sorted(variables)]
    if USAGE.get(op.name):
        for it in items:
            it.detail = it.detail or USAGE[op.name]
    return items


def _node_names(a: Analysis | None) -> set[str]:
    if a is None or a.graph is None:
        return set()
    return {n for n, d in a.graph.nodes.items() if not d.get("groups") or not _in_def(a, n)}

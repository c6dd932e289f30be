"""Name-matched weight transfer (fine-tuning): load what fits from another net's weights.

:func:`load_matching` reads a netdsl weights file (or a run directory's ``weights.safetensors``)
and copies every tensor whose name and shape match the net's into the model; the rest keep the
values they have.  It returns a :class:`LoadReport`: loaded, skipped (the shape differs: old ->
new), missing (the net has it, the file does not) and unexpected (the file has it, the net does
not).  ``mapping`` renames the file's tensors first: ``{"dense_3": "head"}`` takes node
``dense_3``'s tensors for node ``head``, ``{"dense_3.kernel": "head.kernel"}`` one tensor.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from .errors import NetdslError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\Z")
SHOWN = 8  # names listed per line of the report; the rest are counted


class LoadReport(NamedTuple):
    loaded: list  # keys
    skipped: list  # (key, shape in the file, shape in the net)
    missing: list  # keys the net has and the file does not
    unexpected: list  # keys the file has and the net does not

    def __str__(self) -> str:
        def names(items) -> str:
            shown = ", ".join(items[:SHOWN])
            return shown + (f", and {len(items) - SHOWN} more" if len(items) > SHOWN else "")

        skipped = [f"{k} {_shape(old)} -> {_shape(new)}" for k, old, new in self.skipped]
        lines = [f"loaded {len(self.loaded)} tensor{'s' * (len(self.loaded) != 1)}"]
        for what, items in (
            ("skipped (shape differs)", skipped),
            ("missing (kept as initialised)", self.missing),
            ("unexpected (not in this net)", self.unexpected),
        ):
            lines.append(f"{what}: {len(items)}" + (f": {names(items)}" if items else ""))
        return "\n".join(lines)


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def parse_mapping(items) -> dict[str, str]:
    """``["old=new", ...]`` (node or ``node.weight`` names) -> ``{"old": "new"}``; E451 if malformed."""
    out: dict[str, str] = {}
    for item in items or ():
        old, sep, new = str(item).partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not _NAME.match(old) or not _NAME.match(new) or old.count(".") != new.count("."):
            raise NetdslError(
                "E451",
                f"--map takes OLD=NEW (node names, or node.weight names on both sides), got `{str(item)[:80]}`",
                hint="e.g. --map dense_3=head",
            )
        if old in out:
            raise NetdslError("E451", f"--map renames `{old}` twice")
        out[old] = new
    return out


def weights_path(source: str | os.PathLike) -> Path:
    """A weights file, or a run directory's ``weights.safetensors``."""
    path = Path(source)
    if path.is_dir():
        inside = path / "weights.safetensors"
        if not inside.is_file():
            raise NetdslError(
                "E450",
                f"`{path}` is a directory without a weights.safetensors (not a finished run directory)",
                hint="give a run directory that finished training, or the weights file itself",
            )
        return inside
    return path


def _rename(key: str, mapping: dict[str, str]) -> str:
    if key in mapping:
        return mapping[key]
    node, _, weight = key.partition(".")
    return f"{mapping[node]}.{weight}" if node in mapping else key


def _names(keys) -> tuple[set, list]:
    """(every node and node.weight name of ``keys``, the node names in order)."""
    nodes = list(dict.fromkeys(k.partition(".")[0] for k in keys))
    return set(keys) | set(nodes), nodes


def _listed(items: list) -> str:
    shown = ", ".join(items[:SHOWN])
    return (shown + (f", and {len(items) - SHOWN} more" if len(items) > SHOWN else "")) or "none"


def _check_mapping(mapping: dict[str, str], tensors: dict, expected: dict) -> None:
    """Every --map entry must name something there: OLD in the weights, NEW in the net (E451).

    An entry that matched nothing was accepted silently ("loaded 0 tensors")."""
    have, have_nodes = _names(sorted(tensors))
    want, want_nodes = _names(list(expected))
    for old, new in mapping.items():
        if old not in have:
            raise NetdslError(
                "E451",
                f"--map {old}={new}: the weights have no node or tensor `{old}`",
                hint=f"their nodes: {_listed(have_nodes)}",
            )
        if new not in want:
            raise NetdslError(
                "E451",
                f"--map {old}={new}: the net has no node or weight `{new}`",
                hint=f"its nodes with weights: {_listed(want_nodes)}",
            )


def match(net, tensors: dict, mapping: dict[str, str] | None = None) -> tuple[dict, LoadReport]:
    """The tensors that fit ``net`` (float32, checked finite) and the report on all of them."""
    import numpy as np

    from .weights import specs

    mapping = mapping or {}
    _check_mapping(mapping, tensors, specs(net))
    renamed: dict = {}
    for key, t in tensors.items():
        new = _rename(key, mapping)
        if new in renamed:
            raise NetdslError("E451", f"two tensors of the weights would both load into `{new}`", hint="check --map")
        renamed[new] = t
    expected = specs(net)
    fits, loaded, skipped, missing = {}, [], [], []
    for key, (shape, _) in expected.items():
        if key not in renamed:
            missing.append(key)
            continue
        t = renamed[key]
        if tuple(t.shape) != shape:
            skipped.append((key, tuple(t.shape), shape))
            continue
        if not np.issubdtype(t.dtype, np.floating):
            raise NetdslError("E302", f"tensor `{key}` holds {t.dtype}, not floating point numbers")
        with np.errstate(over="ignore"):
            t32 = np.asarray(t, dtype=np.float32)
        if not np.isfinite(t32).all():
            raise NetdslError("E302", f"tensor `{key}` holds NaN, infinite or out-of-float32-range values")
        fits[key] = t32
        loaded.append(key)
    unexpected = [k for k in renamed if k not in expected]
    return fits, LoadReport(loaded, skipped, missing, unexpected)


class Start(NamedTuple):
    """``netdsl train --init-from W [--map OLD=NEW]``: the tensors that fit, read before training starts."""

    fits: dict
    report: LoadReport

    @classmethod
    def of(cls, net, source, mapping_items) -> Start | None:
        mapping = parse_mapping(mapping_items)
        if source is None:
            if mapping:
                raise NetdslError("E451", "--map renames the tensors of --init-from; give --init-from too")
            return None
        from .weights import read

        return cls(*match(net, read(weights_path(source)), mapping))

    def apply(self, net, model) -> None:
        from .weights import backend_of

        backend = backend_of(model)
        current = backend.get_weights(model, net)
        current.update(self.fits)
        backend.set_weights(model, net, current)


def load_matching(net, model, source, mapping: dict[str, str] | None = None) -> LoadReport:
    """Copy every matching tensor of ``source`` (a weights file or a run directory) into ``model``."""
    from .weights import read

    start = Start(*match(net, read(weights_path(source)), mapping))
    start.apply(net, model)
    return start.report

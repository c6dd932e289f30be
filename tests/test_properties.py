"""Property tests: random valid programs against an independent shape/parameter
calculator, and random mutations that must end in a located NetdslError or a Net.

The strategies live in tests/strategies.py.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

import netdsl
from netdsl import NetdslError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strategies import mutation_batches, programs  # noqa: E402

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HANG_SECONDS = 20  # one parse taking longer than this is reported as a hang
CODE = re.compile(r"E\d{3}\Z")
CARET = re.compile(r"^ +\d* *\| [ \t]*\^+$", re.M)


@contextmanager
def no_hang(seconds: int = HANG_SECONDS):
    """Turn a parse that never returns into a test failure (main thread, POSIX only)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise TimeoutError(f"netdsl.parse did not return within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _parse(text: str, params: dict):
    with no_hang():
        return netdsl.parse(text, **params)


# ---- (a) valid programs: shapes and counts match the independent calculator ---------------


@settings(max_examples=300, **SETTINGS)
@given(programs())
def test_valid_programs_match_independent_calculator(prog):
    note(f"program:\n{prog.text}")
    note(f"params: {prog.params!r}")
    try:
        net = _parse(prog.text, prog.params)
    except NetdslError as e:
        pytest.fail(f"a valid program was rejected:\n{prog.text}\n--- params {prog.params!r}\n--- error:\n{e}")
    layers = net.layers
    got_shapes = [tuple(layer.output_shape[1:]) for layer in layers]
    assert [layer.output_shape[0] for layer in layers] == [None] * len(layers)
    assert got_shapes == prog.expected_shapes, "per-layer output shapes differ"
    assert [(layer.trainable, layer.non_trainable) for layer in layers] == prog.expected_layer_params
    assert net.input_shape == (None, *prog.input_shape)
    assert net.output_shape == (None, *prog.expected_output_shape)
    assert net.trainable_params == prog.expected_trainable
    assert net.non_trainable_params == prog.expected_non_trainable
    assert net.total_params == prog.expected_trainable + prog.expected_non_trainable
    assert net.total_params == net.trainable_params + net.non_trainable_params
    assert sum(layer.params for layer in layers) == net.total_params
    assert all(layer.params == layer.trainable + layer.non_trainable for layer in layers)
    assert len({layer.name for layer in layers}) == len(layers), "layer names are not unique"


# ---- (b) mutations: a Net or a NetdslError, never another exception -------------------------
#
# Hypothesis' shrinker is slow on these inputs (a program drawn through a flatmap, then
# edited), so (b) and (c) do not shrink: a failing mutant is cut down here instead, by
# deleting lines and characters while it keeps failing the same way, and the failure
# message ends with that minimal reproduction.

PER_PROGRAM = 10  # mutants tested per drawn program (drawing the program is the expensive part)
NO_SHRINK = dict(SETTINGS, phases=(Phase.explicit, Phase.reuse, Phase.generate))
MINIMIZE_TRIES = 3000


def _check_error(e: NetdslError) -> str:
    msg = str(e)
    assert CODE.match(e.code or ""), f"bad error code {e.code!r}"
    for sub in e.errors:
        assert CODE.match(sub.code or ""), f"bad error code {sub.code!r}"
    assert msg.startswith("<string>:"), f"message does not start with '<string>:': {msg[:80]!r}"
    return msg


def _signature(exc: BaseException) -> tuple:
    """How a check failed: the assertion's first words, or the exception type and where it was raised."""
    if isinstance(exc, AssertionError):
        return ("assert", str(exc).split(":")[0][:60])
    frames = traceback.extract_tb(exc.__traceback__)
    inner = [f for f in frames if f"{os.sep}netdsl{os.sep}" in f.filename] or frames
    return (
        (type(exc).__name__, os.path.basename(inner[-1].filename), inner[-1].lineno) if inner else (type(exc).__name__,)
    )


def _fails(check, text: str, params: dict):
    try:
        check(text, params)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: B036 - any failure counts, including RecursionError
        return _signature(e)
    return None


def _minimize(check, text: str, params: dict) -> tuple[str, dict]:
    """Greedy delta debugging: drop parameters, lines, then runs of characters while the failure stays the same."""
    sig = _fails(check, text, params)
    tries = 0

    def same(t, p):
        nonlocal tries
        tries += 1
        return _fails(check, t, p) == sig

    for k in list(params):
        smaller = {key: v for key, v in params.items() if key != k}
        if same(text, smaller):
            params = smaller
    lines = text.split("\n")
    i = 0
    while i < len(lines) and tries < MINIMIZE_TRIES and len(lines) > 1:
        cand = lines[:i] + lines[i + 1 :]
        if same("\n".join(cand), params):
            lines = cand
        else:
            i += 1
    text = "\n".join(lines)
    for size in (32, 16, 8, 4, 2, 1):
        i = 0
        while i < len(text) and tries < MINIMIZE_TRIES:
            cand = text[:i] + text[i + size :]
            if cand != text and same(cand, params):
                text = cand
            else:
                i += size
    return text, params


def _each(batch, check):
    """Run ``check(text, params)`` on every mutant; on a failure, report that mutant and a minimal reproduction."""
    for mut in batch:
        try:
            check(mut.text, mut.params)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: B036
            note(f"edits: {mut.edits}")
            note(f"original text: {mut.original!r}")
            note(f"mutated text: {mut.text!r}  params: {mut.params!r}")
            small, params = _minimize(check, mut.text, mut.params)
            args = "".join(f", {k}={v!r}" for k, v in params.items())
            what = str(e) if isinstance(e, AssertionError) else f"{type(e).__name__}: {e}"
            raise AssertionError(f"{what}\n\nminimal reproduction: netdsl.parse({small!r}{args})") from e


def _parses_or_raises_netdsl_error(text: str, params: dict) -> None:
    try:
        net = _parse(text, params)
    except NetdslError as e:
        _check_error(e)
        return
    # accepted: the Net must be usable, too
    layers = net.layers
    assert sum(layer.params for layer in layers) == net.total_params
    net.summary()
    repr(net)


@settings(max_examples=500, **NO_SHRINK)
@given(mutation_batches(PER_PROGRAM))
def test_mutations_parse_or_raise_netdsl_error(batch):
    _each(batch, _parses_or_raises_netdsl_error)


# ---- (c) formatting: a located error quotes its line with a caret -----------------------------


def _located_error_has_caret(text: str, params: dict) -> None:
    try:
        _parse(text, params)
    except NetdslError as e:
        msg = _check_error(e)
        for sub in e.errors:
            one = sub.format_one()
            if sub.line is not None:
                assert one.startswith(f"<string>:{sub.line}:{sub.column}: error[{sub.code}]"), one
                assert CARET.search(one), f"no caret line for a located error:\n{one}"
        if e.line is not None:
            assert CARET.search(msg), f"no caret line in:\n{msg}"


@settings(max_examples=300, **NO_SHRINK)
@given(mutation_batches(PER_PROGRAM))
def test_located_errors_show_a_caret(batch):
    _each(batch, _located_error_has_caret)


# ---- (d) amplified mutants: error limits outside the main loop, and small inputs that cost a lot ----
#
# A mutant is wrapped so that whatever it does wrong happens thousands of times, inside a
# body that never runs, or at the end of a long chain of defs.  The answer must still be
# a Net or at most 20 located errors, in seconds.

AMPLIFIED_SECONDS = 10


class Mutation(NamedTuple):
    text: str
    params: dict


@st.composite
def amplified(draw):
    from strategies import mutations, programs

    prog = draw(programs(max_layers=8))
    mut = draw(mutations(prog.text, max_edits=2))  # the amplified line is often wrong, the rest is valid
    lines = [ln for ln in mut.text.split("\n") if ln.strip() and "{" not in ln and "}" not in ln] or ["relu"]
    line = draw(st.sampled_from(lines))
    mut = Mutation(prog.text, prog.params)
    how = draw(st.sampled_from(["repeat", "copies", "uncalled", "chain", "prefix"]))
    if how == "repeat":  # the same mistake met in thousands of passes
        text = f"{mut.text}\nrepeat {draw(st.integers(500, 8000))} {{ relu; {line} }}"
    elif how == "copies":  # the same line many times: errors before, in and after the main loop
        text = "\n".join([line] * draw(st.integers(20, 60))) + "\n" + mut.text
    elif how == "uncalled":  # a body that never runs is still checked
        text = "def never() {\n" + "\n".join([*lines] * 3) + "\n}\n" + mut.text
    elif how == "chain":  # the program at the end of a long chain of calls
        n = draw(st.integers(50, 400))
        defs = "".join(f"def c{i}() {{ c{i + 1}() }}\n" for i in range(n))
        text = defs + f"def c{n}() {{ {line} }}\n{mut.text}\nc0()"
    else:  # many names to search for "did you mean"
        text = "".join(f"n{i}: relu\n" for i in range(draw(st.integers(1000, 5000)))) + mut.text
    return how, text, mut.params


@settings(max_examples=60, **NO_SHRINK)
@given(amplified())
def test_amplified_mutants_end_quickly_within_the_error_limit(case):
    import time

    how, text, params = case
    note(f"{how}: {text[:2000]!r} {params!r}")
    start = time.perf_counter()
    try:
        _parse(text, params)
    except NetdslError as e:
        _check_error(e)
        assert len(e.errors) <= 20, f"{len(e.errors)} errors"
    seconds = time.perf_counter() - start
    assert seconds < AMPLIFIED_SECONDS, f"{how}: took {seconds:.1f} s"

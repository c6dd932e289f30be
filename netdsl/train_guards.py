"""What is refused before training starts, and what an allocation failure becomes.

A net with nothing trainable (every weight frozen, or none at all) has nothing to train: torch
stopped with an internal error at the first backward pass, Keras trained nothing; both now
refuse it (E606) before the run directory is made.  A net too big for this machine's memory is
refused (E607) before the model is built; an allocation that fails anyway, while the model is
built or trained, is E607 too, not a framework's traceback.
"""

from __future__ import annotations

import os
import re

from .errors import NetdslError

BYTES = 4  # float32


def check_trainable(net) -> None:
    """E606, at the spec's line, for a net with no trainable weight (batchnorm's moving statistics are not)."""
    if net.trainable_params > 0:
        return
    nodes = net.graph.nodes
    frozen = [n for n in nodes if nodes[n].get("frozen")]
    at = nodes[frozen[-1]] if frozen else nodes["input"]
    if net.total_params:
        what = f"every weight of the net is frozen ({net.total_params:,} params, 0 trainable)"
        hint = "unfreeze a layer (drop its frozen=true)"
    else:
        what = "the net has no weights"
        hint = "add a layer with weights (dense, conv)"
    raise NetdslError("E606", f"nothing to train: {what}", at.get("span"), hint=hint).located(net.source)


def _memory() -> int | None:
    """This machine's physical memory in bytes, or None where it cannot be told."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def check_memory(net) -> None:
    """E607 before the model is built when its weights alone exceed the machine's memory."""
    total = _memory()
    need = net.total_params * BYTES
    if total is not None and need > total:
        raise too_big(net, f"this machine has {_gb(total)}")


def too_big(net, why: str) -> NetdslError:
    need = net.total_params * BYTES
    return NetdslError(
        "E607",
        f"not enough memory to build the model: {net.total_params:,} params need ~{_gb(need)} for the weights "
        f"alone (~{_gb(4 * need)} to train with adam); {why}",
        hint="make the net smaller (fewer units or channels, a pooling layer before flatten)",
    )


def out_of_memory(e: BaseException) -> str | None:
    """The reason when ``e`` is a failed allocation (torch, TensorFlow, Python), else None."""
    if isinstance(e, MemoryError):
        return "out of memory"
    if type(e).__name__ == "ResourceExhaustedError":  # TensorFlow's
        return "TensorFlow could not allocate memory"
    text = str(e)
    if isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "DefaultCPUAllocator" in text or "out of memory" in text.lower()
    ):
        m = re.search(r"tried to allocate (\d+) bytes", text)  # torch's CPU allocator
        if m:
            return f"torch could not allocate {int(m.group(1)):,} bytes"
        return text.splitlines()[0][:160] if text else "out of memory"
    return None

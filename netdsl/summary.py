"""The Keras-style summary table and its JSON form (compute apart from format)."""

from __future__ import annotations


def _shape(s) -> str:
    return "(" + ", ".join(map(str, s)) + ")"


def _is_chain(net) -> bool:
    prev = "input"
    for name, n in net.graph.nodes.items():
        if n["op"] == "input":
            continue
        if n["inputs"] != [prev]:
            return False
        prev = name
    return True


def _bytes(n: int) -> str:
    size = n * 4.0  # float32
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.2f} {unit}"
        size /= 1024
    return ""  # pragma: no cover


def table(net) -> str:
    """The summary as text: one row per layer, Keras's columns plus MACs."""
    chain = _is_chain(net)
    header = ["Layer (type)", "Output Shape", "Param #", "MACs"] + ([] if chain else ["Connected to"])
    rows = []
    for layer in net.layers:
        row = [f"{layer.name} ({layer.type})", _shape(layer.output_shape), f"{layer.params:,}", f"{layer.macs:,}"]
        if not chain:
            row.append(", ".join(layer.inputs))
        rows.append(row)
    widths = [max([len(header[i])] + [len(r[i]) for r in rows]) + 3 for i in range(len(header))]
    widths[0] = max(widths[0], 29)
    widths[1] = max(widths[1], 26)
    widths[2] = max(widths[2], 10)
    width = sum(widths) - 3

    def line(cells) -> str:
        return "".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [f'Model: "{net.name}"', "_" * width, line(header), "=" * width]
    for i, r in enumerate(rows):
        out.append(line(r))
        out.append("_" * width if i < len(rows) - 1 else "=" * width)
    if not rows:
        out.append("=" * width)
    total, trainable, fixed = net.total_params, net.trainable_params, net.non_trainable_params
    out += [
        f"Total params: {total:,} ({_bytes(total)})",
        f"Trainable params: {trainable:,} ({_bytes(trainable)})",
        f"Non-trainable params: {fixed:,} ({_bytes(fixed)})",
        f"Total MACs: {net.total_macs:,}",
        f"Input: {_shape(net.input_shape)}  Output: {_shape(net.output_shape)}",
        "_" * width,
    ]
    return "\n".join(out)


def as_json(net) -> dict:
    """The summary as data (``netdsl summary --json``)."""
    return {
        "name": net.name,
        "layers": [
            {
                "name": layer.name,
                "op": layer.op,
                "type": layer.type,
                "output_shape": list(layer.output_shape),
                "params": layer.params,
                "trainable": layer.trainable,
                "non_trainable": layer.non_trainable,
                "macs": layer.macs,
                "inputs": list(layer.inputs),
                "line": layer.line,
                "column": layer.column,
            }
            for layer in net.layers
        ],
        "total_params": net.total_params,
        "trainable_params": net.trainable_params,
        "non_trainable_params": net.non_trainable_params,
        "total_macs": net.total_macs,
        "input_shape": list(net.input_shape),
        "output_shape": list(net.output_shape),
        "train": net.train_config,
    }

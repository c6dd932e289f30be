"""``netdsl evaluate`` and ``netdsl predict``: a trained run (or a spec and a weights file) at work.

``evaluate`` scores the test set of the run's data (or of ``--data``/``--dataset``): loss,
accuracy, per-class accuracy and the confusion matrix, printed and drawn as ``confusion.png``.
``predict`` converts images exactly as the training data was (the run's metrics.json records
the input shape, the scaling and whether folders were resized; normalisation is a layer of the
net) and prints the top-k classes with the run's class names.
"""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import outputs
from .errors import NetdslError

if TYPE_CHECKING:
    import numpy as np


def scores(probs: np.ndarray, y: np.ndarray, classes: int) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix (rows: true, columns: predicted).

    The loss is not here: it is the trainer's (:func:`_test_loss`), computed from the logits."""
    import numpy as np

    pred = probs.argmax(1)
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (y, pred), 1)
    totals = confusion.sum(1)
    per_class = [float(confusion[i, i] / totals[i]) if totals[i] else None for i in range(classes)]
    return {
        "accuracy": float((pred == y).mean()),
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
    }


def _run_parts(target: str, weights: str | None):
    """(spec path, weights path, the run's metrics or {}) for a run directory or a spec file."""
    path = Path(target)
    if path.is_dir():
        spec, metrics = path / "spec.net", path / "metrics.json"
        if not spec.is_file() or not metrics.is_file():
            raise NetdslError("E616", f"`{path}` is not a run directory of netdsl train (no spec.net/metrics.json)")
        try:
            m = json.loads(metrics.read_text(encoding="utf-8"))
            if not isinstance(m, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as e:
            raise NetdslError("E616", f"`{metrics}`: not readable ({e})") from None
        w = Path(weights) if weights else path / "weights.safetensors"
        if not weights and not w.is_file():  # named weights: the reader says what is wrong with them (E303)
            raise NetdslError("E616", f"`{w}`: no weights (the run is not complete)", hint="finish it with --resume")
        return str(spec), str(w), m
    if not path.exists():
        raise NetdslError("E616", f"`{target}`: no such file or directory")
    if not path.is_file() or path.suffix.lower() != ".net":
        raise NetdslError("E616", f"`{target}` is neither a run directory of netdsl train nor a .net spec")
    if weights is None:
        raise NetdslError("E616", f"`{target}` is a spec: name its trained weights with --weights W.safetensors")
    return target, weights, {}


def _model(spec: str, weights: str, backend: str, params: dict, input_shape, name: str | None = None):
    from . import backends
    from . import weights as wfile
    from .net import compile_source, read_spec

    source = read_spec(spec)
    net = compile_source(source, params, input_shape, name or Path(spec).stem)
    mod = backends.get(backend)
    model = mod.build(net, "cpu" if backend == "torch" else None)
    wfile.load(net, model, weights)
    return net, mod, model


def _confusion_png(result: dict, names: list[str], title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = result["confusion"]
    k = len(m)
    side = min(4 + 0.45 * k, 30)
    fig = Figure(figsize=(side, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(m, cmap="Blues")
    if k <= 30:  # beyond that, labels and counts are unreadable
        ax.set_xticks(range(k), names, rotation=90)
        ax.set_yticks(range(k), names)
        top = max(max(r) for r in m) or 1
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(m[i][j]), ha="center", va="center", color="white" if m[i][j] > top / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: accuracy {result['accuracy']:.4f}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    from .render import _sign_png

    return _sign_png(buf.getvalue())  # signed, so a later default output may replace it (outputs.py)


def _table(result: dict, names: list[str]) -> str:
    width = max(8, *(len(n) for n in names))
    lines = [f"{'class':<{width}}  accuracy  images"]
    for name, acc, row in zip(names, result["per_class_accuracy"], result["confusion"], strict=True):
        lines.append(f"{name:<{width}}  {'-' if acc is None else f'{acc:.4f}':>8}  {sum(row):>6,}")
    if len(names) <= 20:
        lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
        cell = max(5, *(len(str(v)) + 1 for r in result["confusion"] for v in r))
        lines.append(" " * width + "".join(f"{i:>{cell}}" for i in range(len(names))))
        for i, (name, row) in enumerate(zip(names, result["confusion"], strict=True)):
            lines.append(f"{name[: width - 4]:<{width - 4}}{i:>3} " + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)


def _check_output(out: str, spec: str, default: bool) -> None:
    """The confusion matrix's file follows outputs.py's rule: a default one replaces only a file
    netdsl wrote, and never the spec; -o names an explicit target."""
    try:
        outputs.check(out, {spec: f"the spec {spec}"}, default)
    except outputs.Refused as e:
        raise NetdslError("E616", str(e)) from None


def evaluate_cli(args, params: dict) -> int:
    from . import datasets
    from .training import resolve

    spec, weights, run = _run_parts(args.target, args.weights)
    saved = dict(run.get("settings") or {})
    backend = args.backend or saved.get("backend") or "torch"
    net, mod, model = _model(spec, weights, backend, params, args.input, run.get("net"))
    if (run.get("data") or {}).get("name") == "arrays" and args.data is None and args.dataset is None:
        raise NetdslError(
            "E616",
            f"`{args.target}` was trained on arrays given to netdsl.train()",
            hint="name its data: --data PATH.npz",
        )
    given = {k: saved[k] for k in ("dataset", "data", "scale", "resize") if saved.get(k) is not None}
    given.update({k: v for k, v in (("dataset", args.dataset), ("data", args.data)) if v is not None})
    if args.data is not None and args.dataset is None:
        given.pop("dataset", None)
    if args.dataset is not None and args.data is None:  # that standard data set, not the run's own files
        given.pop("data", None)
    out = args.output or (str(Path(args.target) / "confusion.png") if run else "confusion.png")
    _check_output(out, spec, default=args.output is None)  # before the work: nothing to lose
    recorded = saved.get("data")
    if args.data is None and args.dataset is None and recorded and not Path(recorded).expanduser().is_absolute():
        # a run of an older netdsl recorded the path as typed: only its own directory knew it
        if not Path(recorded).expanduser().exists():
            raise NetdslError(
                "E616",
                f"`{args.target}` was trained on `{recorded}`, a relative path not found from here",
                hint="name its data: --data PATH (e.g. run from the directory it was trained in)",
            )
    s = resolve(net, {**given, "backend": backend, "quiet": True})
    theirs = (run.get("data") or {}).get("name")
    if args.data is None and args.dataset is None and theirs in ("folder", "npz") and datasets.kind(s) != theirs:
        # never another data set than the run's (kind() falls back to the standard one)
        raise NetdslError(
            "E616",
            f"`{args.target}` was trained on the {'image folder' if theirs == 'folder' else '.npz'} `{s.data}`, "
            "which is no longer there",
            hint="name its data: --data PATH",
        )
    datasets.precheck(net, s)
    ds = datasets.load(net, s, test_only=True)
    result = scores(mod.predict(model, ds.x_test), ds.y_test, len(ds.class_names))
    smoothing = saved.get("label_smoothing", s.label_smoothing)  # the run's (a flag), else the spec's
    result["loss"] = _test_loss(net, model, backend, ds, float(smoothing or 0.0))
    names = list(ds.class_names)
    print(f"{net.name} on {ds.source}: {len(ds.x_test):,} test images")
    print(f"test loss: {result['loss']:.4f} - test accuracy: {result['accuracy']:.4f}\n")
    print(_table(result, names))
    png = _confusion_png(result, names, net.name)
    try:
        outputs.put(out, png, {spec: f"the spec {spec}"}, default=args.output is None)
    except outputs.Refused as e:
        raise NetdslError("E616", str(e)) from None
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _test_loss(net, model, backend: str, ds, smoothing: float) -> float:
    """The test loss as training computes it (the trainer's own function: a softmax scored on its
    logits, the run's label smoothing), not from clipped probabilities, which disagreed."""
    if backend == "torch":
        from .backends import torch_train

        return torch_train.evaluate(model, ds.x_test, ds.y_test, torch_train.recipe.output_kind(net.graph), smoothing)[
            0
        ]
    from .backends import keras_train

    return keras_train.evaluate(net, model, ds.x_test, ds.y_test, smoothing)[0]


def read_image(path: str, shape: tuple, resize: bool) -> np.ndarray:
    """One PNG/JPEG (``-``: standard input) as uint8 (H, W, C) in the net's ``shape`` (E615)."""
    import numpy as np

    from .datasets.folder import pillow, to_mode

    pillow()
    from PIL import Image, UnidentifiedImageError

    h, w, c = shape
    name = "standard input" if path == "-" else f"`{path}`"
    try:
        if path == "-" and sys.stdin is None:
            raise NetdslError("E615", "standard input is closed: pipe one PNG or JPEG image into it")
        raw = sys.stdin.buffer.read(64 << 20) if path == "-" else None
        if raw == b"":
            raise NetdslError("E615", "standard input is empty: pipe one PNG or JPEG image into it")
        with Image.open(io.BytesIO(raw) if raw is not None else path) as im:
            if im.size != (w, h) and not resize:
                raise NetdslError(
                    "E615",
                    f"{name}: a {im.size[0]}x{im.size[1]} image (width x height); the net takes {w}x{h}",
                    hint="resize it to the size the net was trained on",
                )
            im = to_mode(im, {1: "L", 3: "RGB"}[c])  # as the folder reader converts (16-bit PNGs too)
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            return np.asarray(im).reshape(h, w, c)
    except NetdslError:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        # Pillow names what it read: for standard input that is a buffer's repr, not a name
        why = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(e)) or type(e).__name__
        raise NetdslError("E615", f"{name}: not a readable image ({why})") from None


def predict_cli(args, params: dict) -> int:
    import numpy as np

    spec, weights, run = _run_parts(args.target, args.weights)
    saved = dict(run.get("settings") or {})
    data = dict(run.get("data") or {})
    backend = args.backend or saved.get("backend") or "torch"
    net, mod, model = _model(spec, weights, backend, params, args.input, run.get("net"))
    shape = tuple(net.input_shape[1:])
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise NetdslError("E615", f"the net takes {'x'.join(map(str, shape))} inputs, not images (HxWx1 or HxWx3)")
    classes = net.output_shape[-1]
    names = [str(n) for n in data.get("class_names") or []]
    if len(names) != classes:
        names = [str(i) for i in range(classes)]
    scale = bool(saved.get("scale", True)) and not args.raw_pixels
    if args.images.count("-") > 1:
        raise NetdslError("E615", "standard input (`-`) holds one image; name it once")
    x = np.stack([read_image(p, shape, bool(data.get("resize"))) for p in args.images]).astype(np.float32)
    if scale:
        x /= np.float32(255)
    probs = mod.predict(model, x)
    k = max(1, min(args.top, classes))
    results = []
    for path, p in zip(args.images, probs, strict=True):
        top = np.argsort(-p, kind="stable")[:k]
        results.append(
            {"image": path, "top": [{"class": names[i], "index": int(i), "probability": float(p[i])} for i in top]}
        )
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    else:
        for r in results:
            print(f"{r['image']}: " + ", ".join(f"{t['class']} {t['probability']:.4f}" for t in r["top"]))
    return 0


def _top(text: str) -> int:
    """-k K: a whole number >= 1 (argparse makes anything else a usage error, exit 2)."""
    import argparse

    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {k}")
    return k


def add_parsers(sub, common) -> None:
    """The ``evaluate`` and ``predict`` subcommands (cli.py calls this: one line there)."""
    e = sub.add_parser(
        "evaluate",
        parents=[common],
        help="test loss, accuracy, per-class accuracy and the confusion matrix of a trained net",
        description="Score a run directory (or a spec with --weights) on its test set; draws confusion.png.",
    )
    e.add_argument("target", metavar="RUN_DIR|FILE")
    e.add_argument("--weights", metavar="W", help="the weights (default: the run's weights.safetensors)")
    e.add_argument("--data", metavar="PATH", help="another data set: IDX files, an image folder or an .npz")
    e.add_argument("--dataset", metavar="NAME", help="mnist, fashion-mnist, cifar10 or cifar100")
    e.add_argument("-b", "--backend", choices=("torch", "keras"), help="the framework (default: the run's)")
    e.add_argument("-o", "--output", metavar="PNG", help="the confusion matrix (default: RUN_DIR/confusion.png)")
    p = sub.add_parser(
        "predict",
        parents=[common],
        help="the top classes of images under a trained net",
        description="Classify PNG/JPEG images (- for one on stdin) with a run (or a spec and --weights).",
    )
    p.add_argument("target", metavar="RUN_DIR|FILE")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--weights", metavar="W", help="the weights (default: the run's weights.safetensors)")
    p.add_argument("-k", "--top", type=_top, default=3, metavar="K", help="how many classes to show (default 3)")
    p.add_argument("--json", action="store_true", help="JSON for machines")
    p.add_argument("--raw-pixels", action="store_true", help="keep pixel values 0..255 (a spec without a run)")
    p.add_argument("-b", "--backend", choices=("torch", "keras"), help="the framework (default: the run's)")


def cli(args, params: dict) -> int:
    """Run ``evaluate`` or ``predict``: NetdslError is printed, exit 1."""
    try:
        return (evaluate_cli if args.command == "evaluate" else predict_cli)(args, params)
    except NetdslError as e:
        if args.traceback:
            raise
        if e.source is None:
            from .errors import Source

            e.located(Source("", f"netdsl {args.command}"))
        print(str(e), file=sys.stderr)
        return 1

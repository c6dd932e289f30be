"""What `netdsl sweep` leaves for people: a table of trials (printed, and trials.csv),
best.net (the best candidate as a plain spec), pareto.png (accuracy against parameters)
and importances.json (Optuna's parameter importances, once enough trials finished)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .files import write_atomic

COLUMNS = ("trial", "state", "value", "params", "macs", "val_accuracy", "test_accuracy", "seconds", "reason")


def rows(optuna, study) -> list[dict]:
    S = optuna.trial.TrialState
    out = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if t.state == S.PRUNED and a.get("netdsl") == "rejected":
            state = "pruned before training"
        elif t.state == S.PRUNED:
            state = f"pruned after epoch {a.get('epochs', '?')}"
        elif t.state == S.FAIL:
            state = "lost" if "lost" in a else "failed"
        else:
            state = t.state.name.lower()
        values = t.values if t.state == S.COMPLETE else None
        out.append(
            {
                "trial": t.number,
                "state": state,
                "value": "/".join(f"{v:.4g}" for v in values) if values else "",
                "params": a.get("params", ""),
                "macs": a.get("macs", ""),
                "val_accuracy": _num(a.get("val_accuracy")),
                "test_accuracy": _num(a.get("test_accuracy")),
                "seconds": a.get("seconds", ""),
                "reason": a.get("reason") or a.get("error") or a.get("lost") or "",
                "candidate": t.params,
            }
        )
    return out


def redrawn(path: Path) -> list[dict]:
    """The rows of rejected.csv: candidates redrawn at random and pruned before training
    (they are no trials of the study: see netdsl.sweeping)."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for rec in csv.reader(lines):
        try:
            host, pid, reason, values = rec
            cand = json.loads(values)
        except (ValueError, RecursionError):
            continue  # a line cut short by a killed process
        if isinstance(cand, dict):
            row = dict.fromkeys(COLUMNS, "")
            out.append({**row, "trial": "-", "state": "pruned before training", "reason": reason, "candidate": cand})
    return out


def _num(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ""


def table(rs: list[dict], limit: int = 15) -> str:
    """The trained trials, best first (then a count of the others)."""
    shown = [r for r in rs if r["state"] != "pruned before training"]
    shown.sort(key=lambda r: (r["state"] != "complete", r["value"] == "", -_key(r)))
    if not shown:
        return "no trained trials yet" + (f" ({len(rs)} candidates pruned before training)" if rs else "")
    lines = [
        f"{'trial':>5}  {'state':<22} {'value':>9} {'params':>10} {'MACs':>12} {'val_acc':>8} {'seconds':>8}  candidate"
    ]
    for r in shown[:limit]:
        cand = ", ".join(f"{k}={_short(v)}" for k, v in r["candidate"].items())
        params = f"{r['params']:,}" if isinstance(r["params"], int) else ""
        macs = f"{r['macs']:,}" if isinstance(r["macs"], int) else ""
        lines.append(
            f"{r['trial']:>5}  {r['state']:<22} {r['value']:>9} {params:>10} {macs:>12} {r['val_accuracy']:>8} "
            f"{r['seconds']!s:>8}  {cand}"
        )
    rejected = sum(r["state"] == "pruned before training" for r in rs)
    more = len(shown) - min(len(shown), limit)
    tail = []
    if more:
        tail.append(f"{more} more trained trials")
    if rejected:
        tail.append(f"{rejected} candidates pruned before training (no training cost)")
    if tail:
        lines.append("  (" + "; ".join(tail) + "; all in trials.csv)")
    return "\n".join(lines)


def _key(r) -> float:
    try:
        return float(r["value"].split("/")[0])
    except ValueError:
        return 0.0


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def csv_text(rs: list[dict], names: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*COLUMNS, *names])
    for r in rs:
        w.writerow([*(r[c] for c in COLUMNS), *(r["candidate"].get(n, "") for n in names)])
    return buf.getvalue()


def best_spec(text: str, space, trial, objectives, train_flags: dict) -> str:
    """The best trial's candidate as a plain spec, with a header saying what it scored."""
    from .frontend.spaces import plain_text

    scores = ", ".join(f"{o} {v:.6g}" for o, v in zip(objectives, trial.values, strict=True))
    flags = retrain_flags(train_flags)
    head = [
        f"# netdsl sweep: trial {trial.number}, {scores}",
        "# candidate: " + ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items()),
        "# retrain: netdsl train best.net" + (f" {flags}" if flags else "") + " (the same seed gives the same score)",
    ]
    return "\n".join(head) + "\n" + plain_text(text, space, trial.params)


def retrain_flags(train_flags: dict) -> str:
    """The sweep's train flags as `netdsl train` takes them, to paste into a shell: the backend
    unless the default, every value quoted (a path with spaces), a float exactly, a boolean
    as `--flag`/`--no-flag` (train refuses `--nesterov True`)."""
    import shlex

    words: list[str] = []
    for k, v in train_flags.items():
        if v is None or (k == "data" and not isinstance(v, (str, os.PathLike))):  # arrays: no flag
            continue
        if k == "backend":
            if str(v).lower() not in ("torch", "pytorch"):
                words += ["-b", str(v)]
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            words.append(flag if v else "--no-" + flag[2:])
        else:
            words += [flag, repr(v) if isinstance(v, float) else str(v)]
    return " ".join(map(shlex.quote, words))


def pareto(points: list[tuple[int, float, int]]) -> list[tuple[int, float, int]]:
    """The trials no other beats on both accuracy (higher) and parameters (fewer)."""
    front = []
    for p in points:
        if not any(q[1] >= p[1] and q[2] <= p[2] and (q[1] > p[1] or q[2] < p[2]) for q in points):
            front.append(p)
    return sorted(front, key=lambda p: p[2])


def pareto_png(points, path: Path, metric: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    front = pareto(points)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.scatter([p[2] for p in points], [p[1] for p in points], s=18, c="#999999", label="trials")
    ax.plot([p[2] for p in front], [p[1] for p in front], "o-", c="#d62728", label="Pareto front")
    for p in front:
        ax.annotate(str(p[0]), (p[2], p[1]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel(metric)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return True


def importances(optuna, study, n_complete: int) -> dict | None:
    if n_complete < 4:
        return None
    import warnings

    target = None
    if len(study.directions) > 1:  # the first objective's; PED-ANOVA ranks low targets as good
        sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
        target = lambda t: sign * t.values[0]  # noqa: E731
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study, target=target))
    except Exception:  # too few distinct values, one dimension: Optuna declines
        return None


def write(optuna, study, screen, out: Path, opts, say) -> dict:
    """Write the results; return what the caller reports (best trial, counts)."""
    S = optuna.trial.TrialState
    rs = rows(optuna, study) + redrawn(out / "rejected.csv")
    names = [d.name for d in screen.space.dims]
    write_atomic(out / "trials.csv", csv_text(rs, names))
    complete = [t for t in study.get_trials(deepcopy=False, states=(S.COMPLETE,))]
    say(table(rs))
    result: dict = {"trials": len(rs), "complete": len(complete), "best": None}
    if not complete:
        return result
    objectives = list(opts.objectives)
    if len(objectives) == 1:
        front = [study.best_trial]
    else:
        front = sorted(study.best_trials, key=lambda t: t.number)
        acc = next((i for i, o in enumerate(objectives) if "accuracy" in o), 0)
        sign = 1 if opts.objectives[acc] in ("val_accuracy", "accuracy", "test_accuracy") else -1
        front.sort(key=lambda t: -sign * t.values[acc])
        lines = ["trial," + ",".join(objectives) + "," + ",".join(names)]
        for t in front:
            lines.append(",".join(map(str, [t.number, *t.values, *(t.params.get(n, "") for n in names)])))
        write_atomic(out / "front.csv", "\n".join(lines) + "\n")
        say(
            f"Pareto front: trials {', '.join(str(t.number) for t in sorted(front, key=lambda t: t.number))} (front.csv)"
        )
    best = front[0]
    write_atomic(out / "best.net", best_spec(screen.source.text, screen.space, best, objectives, opts.train))
    result["best"] = best
    metric = next((o for o in objectives if "accuracy" in o), "val_accuracy")
    points = [
        (t.number, t.user_attrs[metric], t.user_attrs["params"])
        for t in complete
        if isinstance(t.user_attrs.get(metric), float) and isinstance(t.user_attrs.get("params"), int)
    ]
    if points and pareto_png(points, out / "pareto.png", metric):
        result["pareto"] = True
    imp = importances(optuna, study, len(complete))
    if imp:
        write_atomic(out / "importances.json", json.dumps(imp, indent=2) + "\n")
        say("importances: " + ", ".join(f"{k} {v:.2f}" for k, v in imp.items()))
    return result

"""The study of `netdsl sweep`: its storage (SQLite in WAL mode by default, any Optuna URL),
created or joined (and refused when it holds a sweep of another spec, space or objectives),
trials lost by dead processes, the heartbeat of a trial in training, and the count of trained
trials that --trials bounds."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import socket
import time
from pathlib import Path

from .errors import NetdslError

# objective -> the direction it is optimised in
OBJECTIVES = {
    "val_accuracy": "maximize",
    "val_loss": "minimize",
    "accuracy": "maximize",
    "loss": "minimize",
    "test_accuracy": "maximize",
    "params": "minimize",
    "macs": "minimize",
}


class _Beat:
    """Optuna's heartbeat for a trial in training (what Study.optimize runs, for ask/tell):
    a trial whose process died stops beating, and any worker marks it failed later."""

    def __init__(self, study, trial):
        import threading

        self.storage, self.trial_id = study._storage, trial._trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        interval = getattr(self.storage, "get_heartbeat_interval", lambda: None)()
        if not interval:
            return
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                self.storage.record_heartbeat(self.trial_id)
            self.stop.wait(interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


# ---- the study -----------------------------------------------------------------------------


def space_record(space) -> list:
    return [[d.name, d.kind, list(d.options), d.low, d.high, d.integer] for d in space.dims]


def open_study(optuna, opts, screen, out: Path, name: str):
    """(study, created): the study named ``name`` in the storage, created unless --resume."""
    url = opts.storage or f"sqlite:///{out / 'study.db'}"
    path = _sqlite_path(url)
    if path is not None and os.path.isdir(path):  # (SQLite says only "disk I/O error")
        raise NetdslError(
            "E911", f"the study storage `{path}` is a directory", hint="name a file: --storage sqlite:///DIR/study.db"
        )
    new_file = path is not None and not os.path.exists(path)
    if path is not None and not new_file:
        _optuna_or_empty(path, url)  # E911 before Optuna adds its tables to someone's database
    if new_file and opts.resume:
        raise NetdslError("E911", f"there is no study `{name}` in `{url}` to resume", hint="start it without --resume")
    try:
        return _opened(optuna, opts, screen, url, name)
    except BaseException:
        if new_file and not _has_study(path):  # this invocation made the file: a refusal leaves nothing
            for p in (path, path + "-wal", path + "-shm", path + "-journal"):
                with contextlib.suppress(OSError):
                    os.remove(p)
        raise


def _sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///PATH`` URL (None for other URLs, memory, or query options)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return None if not path or path.startswith(":memory:") or "?" in path else path


# Optuna's RDB schema, each table with its key column (the same in every Optuna version since
# the schema was versioned): a database holding any other table, or a table of one of these
# names without its key column (another program's `trials`), is someone else's.  A schema that
# another sweep is creating at this moment holds some of these tables only.
_OPTUNA_TABLES = {
    "studies": "study_id", "study_directions": "study_direction_id",
    "study_user_attributes": "study_user_attribute_id", "study_system_attributes": "study_system_attribute_id",
    "trials": "trial_id", "trial_params": "param_id", "trial_values": "trial_value_id",
    "trial_intermediate_values": "trial_intermediate_value_id",
    "trial_user_attributes": "trial_user_attribute_id", "trial_system_attributes": "trial_system_attribute_id",
    "trial_heartbeats": "trial_heartbeat_id", "version_info": "version_info_id", "alembic_version": "version_num",
}  # fmt: skip


def _has_study(path: str) -> bool:
    """Whether the SQLite file holds a study (another process's, created meanwhile)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return bool(con.execute("SELECT count(*) FROM studies").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return False


def _optuna_or_empty(path: str, url: str) -> None:
    """Refuse (E911) a SQLite file that is not one, or holds tables and is not Optuna's storage:
    opened read-only, so nothing is written (no WAL switch, no tables added)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=120)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            other = {t for t in tables if t not in _OPTUNA_TABLES and not t.startswith("sqlite_")}
            for t in sorted(tables - other):
                if t in _OPTUNA_TABLES:  # (a quoted name: table_info takes no parameter)
                    columns = {r[1] for r in con.execute(f'PRAGMA table_info("{t}")')}
                    if _OPTUNA_TABLES[t] not in columns:
                        other.add(t)
        finally:
            con.close()
    except sqlite3.Error as e:
        raise NetdslError("E911", f"cannot open the study storage `{url}`: {_first_line(e)}") from None
    if other:
        some = ", ".join(sorted(other)[:5])
        raise NetdslError(
            "E911",
            f"`{path}` is a SQLite database of something else (tables {some}), not an Optuna study storage",
            hint="name a new file with --storage sqlite:///NEW.db (or leave --storage out)",
        )


def _opened(optuna, opts, screen, url: str, name: str):
    for attempt in range(RACE_TRIES):
        try:
            study, created = _open(optuna, url, opts, name)
            break
        except NetdslError as e:
            # Optuna creates its schema and the study without a lock of its own: several
            # processes started together on one new storage race ("table studies already
            # exists", a UNIQUE violation).  The loser waits a moment and joins what the
            # winner made; any other error (or the last try) is the user's.
            if not getattr(e, "race", False) or attempt == RACE_TRIES - 1:
                raise
            time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))
    spec = {
        "space": space_record(screen.space),
        "objectives": list(opts.objectives),
        "spec_sha256": hashlib.sha256(screen.source.text.encode()).hexdigest(),
    }
    if created:
        for k, v in spec.items():
            study.set_user_attr(k, v)
    else:
        have = study.user_attrs
        for k, v in spec.items():
            if k in have and have[k] != v:
                what = {"space": "another search space", "objectives": "other objectives"}.get(k, "another spec")
                raise NetdslError(
                    "E911",
                    f"study `{name}` in `{url}` is a sweep of {what}",
                    hint="name a new study with --study NAME (or another -o/--storage)",
                )
    return study, created


RACE_TRIES = 6


def _raced(e: Exception) -> bool:
    """sqlalchemy's OperationalError/IntegrityError: another process creating the same schema
    or study at the same moment (a bad URL or server is not one: it fails every try alike)."""
    return type(e).__name__ in ("OperationalError", "IntegrityError")


def _storage_error(message: str, e: Exception) -> NetdslError:
    err = NetdslError("E911", f"{message}: {_first_line(e)}")
    err.race = _raced(e) or _raced(getattr(e, "__cause__", None) or e)
    return err


def _open(optuna, url: str, opts, name: str):
    try:
        if url == "memory":  # a study that lives in this process only (nothing written)
            storage = optuna.storages.InMemoryStorage()
        elif url.startswith(("sqlite:", "postgresql", "mysql", "oracle", "mssql")):
            kw = _sqlite(url) if url.startswith("sqlite:") else {}
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120, engine_kwargs=kw)
        else:
            storage = optuna.storages.get_storage(url)
    except Exception as e:  # sqlalchemy's and Optuna's errors: a bad URL, an unreachable server
        raise _storage_error(f"cannot open the study storage `{url}`", e) from None
    directions = [OBJECTIVES[o] for o in opts.objectives]
    try:
        if opts.resume:
            return optuna.load_study(study_name=name, storage=storage), False
        try:
            return optuna.create_study(study_name=name, storage=storage, directions=directions), True
        except optuna.exceptions.DuplicatedStudyError:
            return optuna.load_study(study_name=name, storage=storage), False
    except KeyError:
        raise NetdslError(
            "E911", f"there is no study `{name}` in `{url}` to resume", hint="start it without --resume"
        ) from None
    except Exception as e:
        raise _storage_error(f"cannot open study `{name}` in `{url}`", e) from None


def _sqlite(url: str) -> dict:
    """SQLite in WAL mode with synchronous=NORMAL: a commit does not wait for the disk (Optuna
    commits a dozen times a trial; with fsyncs, screening 1,000 candidates took minutes), a
    crashed process loses nothing committed, and readers never block the writer.  Several
    processes on one machine share the file; its lock waits up to 2 minutes."""
    import sqlite3

    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path.startswith(":memory:") or "?" in path:
        return {"connect_args": {"timeout": 120}}

    def connect():
        con = sqlite3.connect(path, timeout=120, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    return {"creator": connect}


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs: a killed process that its parent has
    not reaped yet (a zombie, the moment after a SIGKILL) has ended too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] not in "ZX"  # the state letter after "(comm) "
    return True


def fail_lost(optuna, study) -> int:
    """Trials left running by a killed process: this machine's by their process id, any
    machine's by Optuna's heartbeat.  They are marked failed and do not count."""
    lost = 0
    host = socket.gethostname()
    with contextlib.suppress(Exception):
        optuna.storages.fail_stale_trials(study)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        a = t.user_attrs
        if a.get("host") == host and isinstance(a.get("pid"), int) and not _alive(a["pid"]):
            with contextlib.suppress(Exception):
                optuna.trial.Trial(study, t._trial_id).set_user_attr("lost", "its process ended while it ran")
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
                lost += 1
    return lost


def counts(optuna, study, before: int | None = None, running: bool = False) -> int:
    """Trained trials that finished (complete, pruned by the pruner, or failed in training; not
    lost), numbered below ``before``; with ``running``, those in training too.  --trials bounds
    the finished ones: a running trial may belong to a process that just died."""
    S = optuna.trial.TrialState
    n = 0
    for t in study.get_trials(deepcopy=False):
        if before is not None and t.number >= before:
            continue
        a = t.user_attrs
        if a.get("netdsl") != "trained" or "lost" in a:
            continue
        if t.state in (S.COMPLETE, S.PRUNED) or (t.state == S.FAIL and "error" in a):
            n += 1
        elif running and t.state == S.RUNNING:
            n += 1
    return n


MARKER = "netdsl-sweep.json"


def make_dir(out: Path) -> list[Path]:
    """The sweep directory: new, empty, or one netdsl marked as a sweep's (its files are
    rewritten: trials.csv, best.net...); a directory of other files is refused (E911).
    Returns what it created, for :func:`undo` when the study then cannot be opened."""
    import json

    made: list[Path] = []
    try:
        if out.exists() and not out.is_dir():
            raise NetdslError("E911", f"the sweep directory `{out}` is a file")
        if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
            raise NetdslError(
                "E911",
                f"`{out}` holds files that netdsl sweep did not write",
                hint="name a new or empty directory with -o DIR",
            )
        missing = [p for p in (out, *out.parents) if not p.exists()]
        out.mkdir(parents=True, exist_ok=True)
        made += reversed(missing)
        # Several `netdsl sweep` processes may start on one new directory at once: every step
        # tolerates another process having done it first, and the marker comes before any other
        # file, so a directory that is not empty always carries it (the check above never
        # refuses a sibling's half-made directory).
        try:
            fd = os.open(out / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            if not (out / MARKER).is_file():
                raise
        else:
            made.append(out / MARKER)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps({"netdsl": "sweep"}) + "\n")
        try:
            (out / "trials").mkdir()
        except FileExistsError:
            if not (out / "trials").is_dir():
                raise
        else:
            made.append(out / "trials")
    except OSError as e:
        undo(made)
        raise NetdslError("E911", f"cannot make the sweep directory `{out}`: {e.strerror or e}") from None
    return made


def undo(made: list[Path]) -> None:
    """Remove what :func:`make_dir` created (last first; a directory only when empty)."""
    for p in reversed(made):
        with contextlib.suppress(OSError):
            p.rmdir() if p.is_dir() else p.unlink()

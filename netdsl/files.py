"""Files written whole or not at all, and never in place of something that is not a file.

:func:`write_atomic` is for files netdsl owns (run directories, checkpoints): a
temporary file beside the target, fsync, rename.  :func:`write_output` is for a path a
user named (``-o``): it follows a symbolic link to the file it names, writes a device,
FIFO or ``/dev/stdout`` directly (a rename would put a regular file in place of
``/dev/full``, and replace an appended-to log), and refuses a directory.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

# names of an already open file descriptor: written through that descriptor
_FD_PATH = re.compile(r"/dev/(stdout|stderr|fd/(\d+))|/proc/self/fd/(\d+)")
_STD_FD = {"stdout": 1, "stderr": 2}


def write_atomic(
    path: str | os.PathLike, data: bytes | str, mode: int | None = None, owner: tuple[int, int] | None = None
) -> Path:
    """Write ``path`` atomically: a temporary file beside it, fsync, rename, fsync the directory.

    A reader (or a process killed mid-write) sees the old file or the new one, never half
    of one; the temporary file is removed on any failure, and the OSError is re-raised.
    ``mode``: the new file's permission bits (`netdsl fmt` keeps the original's); ``owner``:
    its (uid, gid), where this process may give it (root may; others keep their own).
    An existing target that is not a regular file (a directory, a device, a FIFO, or a
    link to one) is refused with an OSError rather than replaced.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    _refuse_special(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            if owner is not None:
                try:
                    os.fchown(f.fileno(), *owner)
                except OSError:  # not permitted: the file is ours, as any new file would be
                    pass
            if mode is not None:  # after fchown, which may clear set-id bits
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def write_output(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write a file the user named: atomically when it is (or will be) a regular file.

    A symbolic link stays a link and its target gets the data; ``/dev/stdout``,
    ``/dev/stderr`` and ``/dev/fd/N`` are written through that descriptor; another
    device or a FIFO is written directly (``/dev/full`` then fails with ENOSPC, as
    any write to it does); a directory is refused (IsADirectoryError).
    """
    path = Path(path)
    if isinstance(data, bytes | bytearray):
        raw = bytes(data)
    else:
        raw = data.encode("utf-8")
    m = _FD_PATH.fullmatch(os.path.normpath(os.path.abspath(path)))
    if m:
        fd = _STD_FD[m.group(1)] if m.group(1) in _STD_FD else int(m.group(2) or m.group(3))
        _write_all(fd, raw, path)
        return path
    real = Path(os.path.realpath(path))
    st = _stat(real)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if st is not None and not stat.S_ISREG(st.st_mode):  # a device or FIFO: there is no "beside" to rename from
        fd = os.open(real, os.O_WRONLY)
        try:
            _write_all(fd, raw, path)
        finally:
            os.close(fd)
        return path
    write_atomic(real, raw)
    return path


def _write_all(fd: int, data: bytes, path) -> None:
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as e:
        if e.filename is None:
            e.filename = os.fspath(path)
        raise


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _refuse_special(path: Path) -> None:
    st = _stat(path)
    if st is None or stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    raise OSError(errno.EINVAL, "not a regular file (netdsl will not replace it)", str(path))


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

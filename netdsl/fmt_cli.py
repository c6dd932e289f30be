"""`netdsl fmt FILE... [--check] [--diff] [--oneline [--force]]`: the command around :mod:`netdsl.fmt`.

Files are rewritten in place, atomically (a temporary file beside it, then a rename, with
the original's permission bits), and only when their text changes.  A spec with errors,
an unreadable file or one netdsl may not write is reported and left untouched; the other
files are still formatted.  Exit 0, or 1 when any file had errors, or (with --check or
--diff) would change.
"""

from __future__ import annotations

import os
import re
import stat
import sys

from .errors import NetdslError, Source
from .outputs import emit


def add_parser(sub, common) -> None:
    f = sub.add_parser(
        "fmt",
        parents=[common],
        help="format specs in the canonical layout (in place)",
        description=(
            "Rewrite every FILE in netdsl's canonical layout, in place and atomically; `-` formats standard "
            "input to standard output.  A spec with errors is reported and left untouched."
        ),
    )
    f.add_argument("files", nargs="+", metavar="FILE", help="a spec, a directory (its *.net files) or - for stdin")
    f.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file would change")
    f.add_argument("--diff", action="store_true", help="write nothing; print a unified diff of the changes")
    f.add_argument(
        "--oneline", action="store_true", help="print the `;`-separated one-line form (to embed in a string)"
    )
    f.add_argument("--force", action="store_true", help="with --oneline: drop comments instead of refusing")


def usage_error(args) -> str | None:
    if args.force and not args.oneline:
        return "--force applies to --oneline only"
    if args.oneline and (args.check or args.diff):
        return "--oneline prints the one-line form; it does not combine with --check or --diff"
    return None


def cli(args, params: dict) -> int:
    from .fmt import CommentsLost, format_source
    from .net import read_spec

    status, changed, would, unchanged = 0, [], 0, 0
    for path, walked in expand(args.files):
        try:
            if walked:
                _regular(path)
            source = read_spec(path, keep_bom=True)
            new = format_source(source, params, args.input, oneline=args.oneline, force=args.force, check=False)
        except NetdslError as e:
            if args.traceback:
                raise
            print(str(e), file=sys.stderr)
            status = 1
            continue
        except CommentsLost as e:
            hint = "a comment runs to the end of its line; keep the file as it is, or pass --force to drop them"
            print(NetdslError("E801", str(e), hint=hint, source=Source("", source.filename)), file=sys.stderr)
            status = 1
            continue
        old = source.text
        if args.oneline:
            emit(new)
            continue
        if new == old:
            unchanged += 1
            if path == "-" and not (args.check or args.diff):
                emit(new)
            continue
        if args.check or args.diff:
            status, would = 1, would + 1
            if args.diff:
                emit(_diff(old, new, source.filename))
            else:
                print(f"would reformat {source.filename}", file=sys.stderr)
            continue
        if path == "-":
            emit(new)
            continue
        try:
            write_in_place(path, new)
        except OSError as e:
            why = f"cannot write the formatted file: {e.strerror or e} (it is left as it was)"
            print(NetdslError("E802", why, source=Source("", source.filename)), file=sys.stderr)
            status = 1
            continue
        changed.append(source.filename)
    if not args.oneline and args.files != ["-"]:
        verb = "would be reformatted" if (args.check or args.diff) else "reformatted"
        n = would if (args.check or args.diff) else len(changed)
        parts = []
        if n:
            parts.append(f"{n} file{'s' * (n != 1)} {verb}")
        if unchanged:
            parts.append(f"{unchanged} file{'s' * (unchanged != 1)} left unchanged")
        if parts:
            print(", ".join(parts), file=sys.stderr)
    return status


def expand(paths: list[str]) -> list[tuple[str, bool]]:
    """A directory stands for the `*.net` files under it (hidden directories skipped), in order;
    each path comes with whether a directory walk found it (True) or the user named it."""
    out = []
    for p in paths:
        if p != "-" and os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, f) for f in files if f.endswith(".net") and not f.startswith(".")]
            out += [(f, True) for f in sorted(found)]
        else:
            out.append((p, False))
    return out


def _regular(path: str) -> None:
    """A file a directory walk found must be a regular file: reading a FIFO or a device would block
    or never end (a file the user names is read: that is their request)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or a dangling link: read_spec says so
    if not stat.S_ISREG(mode):
        why = "not a regular file (a FIFO, socket or device found in a directory); skipped"
        raise NetdslError("E005", f"cannot read `{path}`: {why}", source=Source("", path))


def _diff(old: str, new: str, name: str) -> str:
    import difflib

    def lines(text: str) -> list[str]:
        """Each line ended by `\n` whatever the file's own ending (CRLF, a lone CR); the last line
        without one carries the marker, so the diff shows a missing final newline."""
        parts = re.split(r"\r\n|\r|\n", text)  # not str.splitlines: a form feed or U+2028 is no line end
        out = [x + "\n" for x in parts[:-1]]
        if parts[-1]:
            out.append(parts[-1] + "\n\\ No newline at end of file\n")
        return out

    return "".join(difflib.unified_diff(lines(old), lines(new), f"{name}\t(original)", f"{name}\t(formatted)"))


def write_in_place(path: str, text: str) -> None:
    """Replace the regular file ``path`` (or a link's target) atomically, keeping its permission bits
    and owner (where permitted); a file with hard links is rewritten in place, so they stay linked;
    a file the user may not write is refused, not replaced by a rename around its permissions."""
    from .files import write_atomic

    real = os.path.realpath(path)
    st = os.stat(real)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(0, "not a regular file (netdsl fmt rewrites regular files only)")
    if not os.access(real, os.W_OK):
        raise OSError(13, "permission denied")
    if st.st_nlink > 1:  # hard links: rewrite the shared inode (the text is complete), or the links part
        data = text.encode("utf-8")
        fd = os.open(real, os.O_WRONLY)
        try:
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    write_atomic(real, text, mode=stat.S_IMODE(st.st_mode), owner=(st.st_uid, st.st_gid))

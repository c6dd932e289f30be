"""Scaling ``netdsl train``: data-parallel processes, opt-in speed, and a busy CPU.

Nothing here imports a framework (``netdsl train --help`` and the checker stay light).

* ``--nproc N`` re-runs the same ``netdsl train`` command under PyTorch's own launcher,
  ``python -m torch.distributed.run --standalone --nproc-per-node N -m netdsl train ...``;
  a user's own ``torchrun ... -m netdsl train ...`` (several machines) runs the same code.
  :class:`World` reads what torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); the
  torch side is :mod:`netdsl.backends.torch_scale`.  ``--batch`` is per rank, as
  ``DataLoader(batch_size=...)`` under torchrun is: the global batch is ``N * batch``.
* Keras's ``--distribute`` (a ``tf.distribute`` strategy) keeps Keras's convention: ``--batch``
  is the global batch, split over the replicas.
* ``--compile``, ``--precision`` and ``--channels-last`` are checked here against the backend
  (E632) and by the trainer against the device (E631).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading

from .errors import NetdslError

PRECISIONS = ("fp32", "bf16", "fp16")
RANK_LOST = "E634"  # a rank died or lost the others (printed by the launcher and the ranks)
MAX_PROCS = 256  # processes on one machine: more is a typo, not a machine
MAX_THREADS = 1024


def add_arguments(t) -> None:
    """``netdsl train``'s flags for scaling (argparse parser ``t``)."""
    import argparse

    g = t.add_argument_group("scaling and speed (opt-in; the default is one process, eager fp32)")
    g.add_argument(
        "--nproc",
        type=_count("nproc", MAX_PROCS),
        metavar="N",
        help="torch: train data-parallel in N processes on this machine, launched by torchrun "
        "(gloo on the CPU, nccl with one GPU each); --batch is per process",
    )
    g.add_argument(
        "--threads",
        type=_count("threads", MAX_THREADS),
        metavar="N",
        help="CPU threads of the framework (default: the cores idle when the run starts)",
    )
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile (torch) or jit_compile=True (keras) (default: eager)",
    )
    g.add_argument("--precision", choices=PRECISIONS, help="bf16/fp16: mixed precision (autocast) (default: fp32)")
    g.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="torch: NHWC memory format for conv nets (default: off)",
    )
    g.add_argument(
        "--distribute",
        action=argparse.BooleanOptionalAction,
        help="keras: tf.distribute.MirroredStrategy over the visible GPUs (or the CPU); "
        "MultiWorkerMirroredStrategy when TF_CONFIG is set; --batch is global (default: off)",
    )


def _count(name: str, most: int):
    import argparse

    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*\+?\d{1,6}\s*", text):
            raise argparse.ArgumentTypeError(f"--{name} takes a whole number from 1 to {most}, got {text[:20]!r}")
        n = int(text)
        if not 1 <= n <= most:
            raise argparse.ArgumentTypeError(f"--{name} takes a whole number from 1 to {most}, got {n}")
        return n

    parse.__name__ = name
    return parse


def header(s, scaled: dict) -> str:
    """What the run's first line adds about scale and speed: the ranks or replicas and the
    global batch, then each opt-in flag (``, 2 ranks (global batch 64), compiled, bf16``)."""
    parts = []
    d = scaled.get("distributed") or {}
    if "world_size" in d:
        parts.append(f"{d['world_size']} ranks (global batch {d['global_batch']})")
    elif "replicas" in d:
        n = d["replicas"]
        parts.append(f"{d['strategy']}, {n} replica{'s' * (n != 1)} (global batch {d['global_batch']})")
    if getattr(s, "compile", False):
        parts.append("compiled")
    if getattr(s, "precision", "fp32") != "fp32":
        parts.append(s.precision)
    if getattr(s, "channels_last", False):
        parts.append("channels-last")
    return "".join(f", {p}" for p in parts)


def check(s) -> None:
    """The speed settings of :class:`netdsl.training.Settings` ``s``, against its backend (E630, E632)."""
    if s.precision not in PRECISIONS:
        raise NetdslError("E630", f"precision must be one of {', '.join(PRECISIONS)}, got {s.precision!r}")
    for key in ("compile", "channels_last", "distribute"):
        if not isinstance(getattr(s, key), bool):
            raise NetdslError("E630", f"{key} must be true or false, got {getattr(s, key)!r}")
    if s.threads is not None and (
        isinstance(s.threads, bool) or not isinstance(s.threads, int) or not 1 <= s.threads <= MAX_THREADS
    ):
        raise NetdslError("E630", f"threads must be a whole number from 1 to {MAX_THREADS}, got {s.threads!r}")
    if s.backend == "keras" and s.channels_last:
        raise NetdslError(
            "E632", "--channels-last is for torch: Keras's conv layers are channels-last already", hint="drop it"
        )
    if s.backend == "torch" and s.distribute:
        raise NetdslError(
            "E632",
            "--distribute is the keras backend's (tf.distribute)",
            hint="torch trains data-parallel with --nproc N, or under your own torchrun",
        )
    if s.backend == "keras" and World.current().size > 1:
        raise NetdslError(
            "E632",
            "the keras backend does not run under torchrun",
            hint="use --distribute (MirroredStrategy; MultiWorkerMirroredStrategy with TF_CONFIG)",
        )
    if s.backend == "keras" and s.distribute and os.environ.get("TF_CONFIG"):
        tf_config(os.environ["TF_CONFIG"])


def tf_config(raw: str) -> dict:
    """``TF_CONFIG`` parsed and checked (E633): TensorFlow itself fails on a bad one with an
    IndexError/KeyError deep in its cluster resolver, or ignores a non-object silently."""

    def bad(why: str) -> NetdslError:
        return NetdslError("E633", f"TF_CONFIG {why}", hint="see the README's tf.distribute section")

    try:
        cfg = json.loads(raw)
    except ValueError:
        raise bad("is not JSON") from None
    if not isinstance(cfg, dict):
        raise bad(f"must be a JSON object with 'cluster' and 'task', got {type(cfg).__name__} {raw.strip()[:60]}")
    cluster, task = cfg.get("cluster"), cfg.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise bad('has no "cluster" object of job names to lists of host:port')
    for job, hosts in cluster.items():
        if not isinstance(hosts, list) or not hosts:
            raise bad(f'cluster "{job}" must be a non-empty list of host:port, got {json.dumps(hosts)[:60]}')
        for h in hosts:
            host, _, port = h.rpartition(":") if isinstance(h, str) else ("", "", "")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise bad(f'cluster "{job}" has {json.dumps(h)[:60]}, not a host:port')
    if not isinstance(task, dict):
        raise bad('has no "task" object (its "type" and "index": which of the cluster this process is)')
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise bad(f"task type {json.dumps(kind)} is not a job of the cluster ({', '.join(map(str, cluster))})")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise bad(f'task index {json.dumps(index)} is not in 0..{len(cluster[kind]) - 1} (the "{kind}" list)')
    return cfg


class RankStopped(Exception):
    """Another rank stopped with an error it reported itself: this rank ends quietly (exit 1)."""


class World:
    """This process's place in a torchrun job (rank 0 of 1 when not launched by torchrun)."""

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0):
        self.rank, self.size, self.local_rank = rank, size, local_rank

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> World:
        env = os.environ
        if "WORLD_SIZE" not in env or "RANK" not in env:
            return cls()
        try:
            w = cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))
        except ValueError:
            raise NetdslError(
                "E633", f"RANK={env['RANK']!r}, WORLD_SIZE={env['WORLD_SIZE']!r} are not numbers"
            ) from None
        if not 0 <= w.rank < w.size:
            raise NetdslError("E633", f"RANK={w.rank} is outside WORLD_SIZE={w.size}")
        return w


# ---- --nproc: the same command under torch.distributed.run ----------------------------------


def worker_command(args, out: str) -> list[str]:
    """``netdsl train`` as each rank runs it: the user's flags, ``--out`` fixed, no ``--nproc``."""
    from . import settings

    cmd = ["-m", "netdsl", "train", args.file, "--out", out]
    if args.backend:
        cmd += ["--backend", args.backend]
    for k in settings.flags():
        v = getattr(args, k.name)
        if v is None:
            continue
        flag = "--" + k.name.replace("_", "-")
        if k.kind == "bool":
            cmd.append(flag if v else "--no-" + flag[2:])
        else:
            cmd += [flag, repr(v) if isinstance(v, float) else str(v)]
    for name in ("threads", "precision"):
        if getattr(args, name) is not None:
            cmd += [f"--{name}", str(getattr(args, name))]
    for name in ("compile", "channels_last", "distribute"):
        v = getattr(args, name)
        if v is not None:
            cmd.append(("--" if v else "--no-") + name.replace("_", "-"))
    if args.data:
        cmd += ["--data", args.data]
    if getattr(args, "resize", False):
        cmd.append("--resize")
    if args.raw_pixels:
        cmd.append("--raw-pixels")
    if getattr(args, "init_from", None):
        cmd += ["--init-from", args.init_from]
    for m in getattr(args, "map", None) or ():
        cmd += ["--map", m]
    if args.resume:
        cmd.append("--resume")
    if args.quiet:
        cmd.append("--quiet")
    if args.input:
        cmd += ["--input", "x".join(map(str, args.input))]
    cmd += [f"-D{k}={v}" for k, v in args.defines]
    if getattr(args, "traceback", False):
        cmd.append("--traceback")
    return cmd


def launch_cli(args, out: str) -> int:
    """``netdsl train --nproc N``: the same command in N torchrun ranks; the exit code."""
    backend = str(args.backend or "torch").lower()
    if backend not in ("torch", "pytorch"):
        print("netdsl train: error[E632]: --nproc is the torch backend's (torchrun)", file=sys.stderr)
        print("  hint: keras trains on several devices with --distribute", file=sys.stderr)
        return 1
    if args.file == "-":
        print("netdsl train: error[E632]: --nproc needs the spec in a file (each rank reads it)", file=sys.stderr)
        return 1
    try:
        import torch.distributed  # noqa: F401
    except ImportError:
        print("netdsl train: error[E402]: --nproc needs torch (pip install 'netdsl[torch]')", file=sys.stderr)
        return 1
    threads = None  # the ranks share the idle cores (torchrun itself would give each rank 1 thread)
    if args.threads is None and "OMP_NUM_THREADS" not in os.environ and hasattr(os, "sched_getaffinity"):
        from .training import _cpu_busy

        busy = _cpu_busy()
        free = len(os.sched_getaffinity(0)) - (busy or 0)
        threads = max(1, math.floor((free + 0.5) / args.nproc))
    code = launch(args, out, args.nproc, threads)
    if code in (130, 143):
        from .rundir import RunDir

        resumable = RunDir(out).is_ours()
        advice = "continue with" if resumable else "nothing was written yet; start it again with"
        what = "terminated (SIGTERM)" if code == 143 else "interrupted"
        print(f"\nnetdsl: {what}; {advice}: {again(args, out, resumable)}", file=sys.stderr)
    return code


def again(args, out, resumable: bool) -> str:
    """The command that continues (``resumable``) or restarts an interrupted ``netdsl train``:
    every flag the user gave (the ranks' command, which carries them all), its ``--out``,
    ``--nproc`` when given, and ``--resume`` once the directory is a run."""
    import shlex

    cmd = [a for a in worker_command(args, str(out))[2:] if a != "--resume"]
    if getattr(args, "nproc", None):
        cmd += ["--nproc", str(args.nproc)]
    if resumable:
        cmd.append("--resume")
    if args.file == "-":  # the spec came on stdin: say where it goes
        cmd[1] = "SPEC"
    return shlex.join(["netdsl", *cmd])


# torchrun's own lines (its logger and the ChildFailedError report): kept from the user, who gets
# netdsl's one message; the workers' own output passes through, a located error's excerpt too
# (`  12 | conv ...` and its caret line `     | ^^^^`, which starts with four spaces).
_NOISE = re.compile(
    r"^(\[?[WEI]\d{4} |\*{5,}|={5,}|Traceback \(most recent call last\)|  File |    (?! *\| )|"
    r"torch\.distributed\.elastic|\S*\.py FAILED|Failures:|  <NO_OTHER_FAILURES>|Root Cause|"
    r"\[\d+\]:|  (time|host|rank|exitcode|error_file|traceback)\s*:|-{5,}|\s*$)"
)
_FAILED = re.compile(r"^\s*rank\s*:\s*(\d+)")
_EXIT = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")


def launch(args, out: str, nproc: int, threads: int | None = None) -> int:
    """Run ``args`` (``netdsl train``) in ``nproc`` processes under torchrun; its exit code.

    torchrun runs in its own session, so a Ctrl-C reaches it once, from here: it stops every
    rank.  When a rank dies, torchrun stops the others; its report is condensed to one message.
    """
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "--monitor-interval=0.5",
        *worker_command(args, out),
    ]
    env = {**os.environ, "NETDSL_LAUNCHED": "1", "LOGLEVEL": os.environ.get("LOGLEVEL", "ERROR")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)  # each rank's share of the idle cores
    proc = subprocess.Popen(
        cmd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    failed: dict = {}
    reader = threading.Thread(target=_relay, args=(proc.stderr, failed), daemon=True)
    reader.start()
    interrupted = False
    terminated: list = []

    def on_term(signum, frame):  # SIGTERM (kill, a job scheduler): stop the ranks as Ctrl-C does
        terminated.append(signum)
        raise KeyboardInterrupt

    try:
        before = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: the default stays
        before = None
    try:
        code = _wait(proc)
    except _Interrupted:
        interrupted = True
        code = None
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)
    reader.join(timeout=5)
    if interrupted:
        return 143 if terminated else 130
    return _outcome(code, failed, nproc, out)


class _Interrupted(Exception):
    pass


def _wait(proc) -> int:
    """torchrun's exit code; _Interrupted once a Ctrl-C (or SIGTERM) has stopped it."""
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # torchrun passes it to every rank
            try:
                proc.wait(timeout=30)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            raise _Interrupted from None
    return code


def _outcome(code: int, failed: dict, nproc: int, out: str) -> int:
    if code == 0:
        return 0
    if failed.get("said"):  # a rank gave its own error (E6xx): that is the message
        return 1
    if failed.get("rank") is not None:
        why = f"rank {failed['rank']} of {nproc} {_death(failed.get('exitcode'))}; torchrun stopped the other ranks"
    else:
        why = f"the distributed job failed (torchrun exit {code})"
    print(f"netdsl train: error[{RANK_LOST}]: {why}", file=sys.stderr)
    print(f"  hint: the last complete checkpoint resumes: add --resume (--out {out})", file=sys.stderr)
    return 1


def _die_with_parent() -> None:
    """In torchrun's process: SIGTERM when `netdsl train` itself is killed (torchrun then stops
    the ranks), so a killed launcher leaves no job training on behind it."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _death(exitcode) -> str:
    if exitcode is None:
        return "failed"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _relay(stream, failed: dict) -> None:
    """Pass the workers' stderr through; keep torchrun's report, noting the first failed rank."""
    root = False  # in the report's "Root Cause (first observed failure)" section
    for line in stream:
        m, e = _FAILED.match(line), _EXIT.match(line)
        if line.startswith("Root Cause"):
            root = True
            failed.pop("rank", None)
            failed.pop("exitcode", None)
        if m and "rank" not in failed:
            failed["rank"] = int(m.group(1))
        elif e and "exitcode" not in failed:
            failed["exitcode"] = int(e.group(1))
        if _NOISE.match(line) or (root and line.strip() == "") or line.rstrip().endswith(" FAILED"):
            continue
        if "error[" in line:
            failed["said"] = True
        sys.stderr.write(line)
        sys.stderr.flush()

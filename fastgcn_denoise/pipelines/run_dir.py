"""A run directory (``--out``): who may write into it, and its per-epoch log.

A directory *holds a run* when it has a ``checkpoint.pt``, a ``metrics.json`` or a non-empty
``log.jsonl``. Training into it is refused unless the run is continued (``--resume``) or replaced
(``--overwrite``), so a second ``train`` never destroys a finished run by accident.

While a run writes, ``run.lock`` in the directory holds its process id and host (JSON). A second
writer stops with a message naming them. A lock left by a process that is no longer running on
this host (killed with SIGKILL, or the machine rebooted) is taken over with a warning; a lock
from another host cannot be checked and is left to the user. The lock is released when the run
ends, fails or is interrupted (Ctrl-C).

``log.jsonl`` holds one JSON record per epoch. A run killed while appending can leave a torn last
line: ``read_log`` drops it with a warning (that epoch is redone on resume); damage anywhere else
is an error naming the line.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path

LOCK = "run.lock"
_RUN_FILES = ("checkpoint.pt", "metrics.json")  # besides a non-empty log.jsonl
_CLEARED = ("checkpoint.pt", "checkpoint.pt.tmp", "metrics.json", "log.jsonl")  # by --overwrite


def holds_run(out: Path) -> bool:
    """Whether ``out`` has a run's checkpoint, metrics or logged epochs."""
    log = out / "log.jsonl"
    return any((out / name).exists() for name in _RUN_FILES) or (
        log.is_file() and log.stat().st_size > 0
    )


def _refuse_existing(out: Path) -> None:
    raise ValueError(
        f"--out {out} already holds a run (checkpoint.pt, log.jsonl or metrics.json): "
        "continue it with --resume, or replace it with --overwrite"
    )


def _holder(lock: Path) -> dict | None:
    """The lock's {"pid", "host"}, or None when it is unreadable (a writer killed mid-write)."""
    try:
        holder = json.loads(lock.read_text())
        return holder if isinstance(holder.get("pid"), int) and "host" in holder else None
    except (OSError, ValueError, AttributeError):
        return None


def _alive(holder: dict | None) -> bool:
    """Whether the lock's process may still be running (another host's: assumed so)."""
    if holder is None:
        return False
    if holder["host"] != socket.gethostname() or os.name == "nt":  # Windows: kill(pid, 0) kills
        return True
    try:
        os.kill(holder["pid"], 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _refuse_busy(out: Path, holder: dict) -> None:
    lock = out / LOCK
    raise ValueError(
        f"--out {out} is in use by another run (process {holder['pid']} on "
        f"{holder['host']}): wait for it to end or choose another --out; if that run "
        f"is gone, delete {lock}"
    )


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse, before any work, an ``out`` that cannot take this run (ValueError, one line):
    a file, an unwritable place, a run there without ``resume``/``overwrite``, a live lock."""
    if resume and overwrite:
        raise ValueError(
            "--resume continues the run in --out and --overwrite replaces it: give one of them"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory: choose a directory")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {existing} is not writable (permission denied)")
    if out.is_dir():
        holder = _holder(out / LOCK) if (out / LOCK).exists() else None
        if _alive(holder):
            _refuse_busy(out, holder)
        if not (resume or overwrite) and holds_run(out):
            _refuse_existing(out)


def _take_lock(out: Path) -> list[str]:
    """Create ``out/run.lock`` for this process; the warnings (a stale lock taken over)."""
    lock, notes = out / LOCK, []
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if _alive(holder):
                _refuse_busy(out, holder)
            who = (
                "an unreadable lock"
                if holder is None
                else f"the lock of process {holder['pid']} on {holder['host']}, which is no longer running"
            )
            notes.append(f"{out}: took over {who} ({lock})")
            lock.unlink(missing_ok=True)
            continue
        except OSError as exc:
            raise ValueError(f"--out {out}: cannot write there ({exc.strerror})") from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return notes
    raise ValueError(f"--out {out}: another run took {lock} at the same time; try again")


@contextmanager
def claim(out: Path, resume: bool, overwrite: bool):
    """Make ``out``, hold its lock for the ``with`` block and yield the warnings; under the lock,
    refuse a run there without ``resume``/``overwrite`` and clear it with ``overwrite``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot create the directory ({exc.strerror})") from None
    notes = _take_lock(out)
    try:
        if not (resume or overwrite) and holds_run(out):  # another run finished meanwhile
            _refuse_existing(out)
        if overwrite:
            for name in _CLEARED:
                (out / name).unlink(missing_ok=True)
        yield notes
    finally:
        if (_holder(out / LOCK) or {}).get("pid") == os.getpid():
            (out / LOCK).unlink(missing_ok=True)


def read_log(path: Path, upto_epoch: int) -> tuple[list[dict], list[str]]:
    """The log's records up to ``upto_epoch`` and the warnings (a torn last line dropped)."""
    if not path.exists():
        return [], []
    lines = [
        (n, line)
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if line.strip()
    ]
    records, notes = [], []
    for k, (n, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError as exc:
            record, why = None, getattr(exc, "msg", str(exc))
        else:
            why = "no epoch in it"
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            if k < len(lines) - 1:
                raise ValueError(
                    f"{path}, line {n}: not a log record ({why}); the log is "
                    "damaged: repair or delete that line, or start again with "
                    "--overwrite"
                )
            notes.append(
                f"{path}, line {n}: dropped a torn last line (the run was killed while "
                "writing it); that epoch is redone"
            )
            continue
        records.append(record)
    return [r for r in records if r["epoch"] <= upto_epoch], notes


def write_log(path: Path, records: list[dict], mode: str = "w") -> None:
    """Write (``mode`` "w") or append ("a") records, one JSON line each."""
    with open(path, mode) as f:
        f.writelines(json.dumps(r) + "\n" for r in records)

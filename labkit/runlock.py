"""One process at a time per run name.

A run name owns a checkpoint folder and a results folder; two processes training under the same
name would overwrite each other. `claim_run` takes an exclusive lock (flock) on
<checkpoints>/<run>/lock and keeps it until `release_run` or the end of the process; the kernel
drops the lock of a process that dies, so a crash never leaves a stale lock. The lock file
records who holds it, so a refused claim names the other process.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import os
import socket
import sys
from pathlib import Path

from .checkpoint import checkpoint_root

_held: dict[str, object] = {}   # run name -> open lock file, for this process


class RunInUseError(RuntimeError):
    """Another process is training or saving under this run name."""


def lock_path(run_name: str) -> Path:
    return checkpoint_root() / run_name / "lock"


def claim_run(run_name: str) -> None:
    """Own `run_name` for this process (a second claim by the same process is a no-op)."""
    path = lock_path(run_name)
    if str(path) in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunInUseError(f"run {run_name!r} is in use by {holder} (lock {path}); wait for it to finish, "
                            f"or use another run_name") from None
    handle.seek(0)
    handle.truncate()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    handle.write(f"process {os.getpid()} on {socket.gethostname()} since {started}: {' '.join(sys.argv)[:200]}\n")
    handle.flush()
    _held[str(path)] = handle


def release_run(run_name: str) -> None:
    handle = _held.pop(str(lock_path(run_name)), None)
    if handle is not None:
        handle.close()   # closing the file drops the flock

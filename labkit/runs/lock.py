"""One process at a time per run name.

A run name owns a checkpoint folder and a results folder; two processes training under the same
name would overwrite each other. `with claimed(run):` takes an exclusive lock (flock) on
<checkpoints>/<run>/lock for the block (training, or publishing the results); the kernel drops
the lock of a process that dies, so a crash never leaves a stale lock. The lock file records who
holds it, so a refused claim names the other process. A claim nested in another claim of the same
run by the same process holds the lock it already has.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from pathlib import Path

from labkit.paths import checkpoint_root
from labkit.provenance import utc_timestamp
from labkit.storage import StorageError, describe

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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as err:
        raise StorageError(err.errno, f"cannot claim run {run_name!r}: its lock {path} cannot be made "
                                      f"({describe(err)}: {err}); is the checkpoint root "
                                      f"(LABKIT_CHECKPOINTS) a writable folder?") from err
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
    handle.write(f"process {os.getpid()} on {socket.gethostname()} since {utc_timestamp()}: {' '.join(sys.argv)[:200]}\n")
    handle.flush()
    _held[str(path)] = handle


def release_run(run_name: str) -> None:
    handle = _held.pop(str(lock_path(run_name)), None)
    if handle is not None:
        handle.close()   # closing the file drops the flock


@contextlib.contextmanager
def claimed(run_name: str, enabled: bool = True):
    """Hold `run_name` for the block (see the module docstring); `enabled=False` (the other ranks of a
    torchrun job, whose rank 0 holds it) makes it a no-op."""
    nested = not enabled or str(lock_path(run_name)) in _held
    if not nested:
        claim_run(run_name)
    try:
        yield
    finally:
        if not nested:
            release_run(run_name)

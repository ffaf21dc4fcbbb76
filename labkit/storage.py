"""Files written whole or not at all, and tensors read back only when they are intact.

    write_atomic(path, payload)   a temp file beside the target, flushed, then renamed over it; on any
                                  I/O error the temp file is removed and a StorageError names the
                                  path and the cause (no space left, read-only, permission denied)
    save_verified(path, obj)      torch.save with a header holding the sha256 of the payload
    load_verified(path)           checks that sha256 before loading (weights_only), so a flipped
                                  byte is a clear error, never silently wrong tensors
    publish_folder(folder, files) a whole folder replaced at once (a run's results): staged beside it,
                                  then swapped in by one atomic exchange of the two paths
    remove_leftovers(folder)      the temp files and folders of processes that died mid-write
    terminate_as_exception()      SIGTERM raises SystemExit for the block, so clean-ups run as on Ctrl-C

Temporary names are hidden (a leading dot) and carry the writer's pid: `.NAME.tmp<pid>` (files),
`.NAME.new<pid>` / `.NAME.old<pid>` (folders). Readers skip hidden names; `remove_leftovers` deletes
those whose process no longer runs.

A verified file is one header line, b"LABKIT-SHA256 <64 hex digits>\\n", followed by the bytes
torch.save wrote. Files written before the header existed (plain torch.save zip files) still load,
unverified; `load_verified` says which it was.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import io
import os
import re
import shutil
import signal
import sys
import threading
from pathlib import Path

import torch

HEADER = b"LABKIT-SHA256 "
HEADER_LENGTH = len(HEADER) + 64 + 1

CAUSES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
          errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
          errno.EPERM: "operation not permitted"}


class StorageError(OSError):
    """A file could not be written or read back intact; the message names the path and the cause."""


class IntegrityError(StorageError):
    """A file's content does not match the checksum written with it (damaged on disk)."""


def describe(err: OSError) -> str:
    return CAUSES.get(err.errno, err.strerror or type(err).__name__)


LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?:tmp|new|old)(?P<pid>\d+)")


def discard(path: Path) -> None:
    """Remove a file or folder if it is there; a clean-up never raises (its parent may be a file)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temp files and staging folders in `folder` whose writing process has died; returns them."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = LEFTOVER.fullmatch(entry.name)
        if match and int(match["pid"]) != os.getpid() and not process_alive(int(match["pid"])):
            discard(entry)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def terminate_as_exception():
    """Within the block, SIGTERM (what `kill` and job schedulers send) raises SystemExit(143) like
    Ctrl-C raises KeyboardInterrupt, so every `finally` and clean-up runs. A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_atomic(path: Path, payload: bytes) -> None:
    """Replace `path` with `payload` in one rename; the old file stays intact if anything fails, and
    the temp file is removed whatever stops the write (an error, Ctrl-C, SIGTERM in `terminate_as_exception`)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        discard(tmp)
        raise StorageError(err.errno, f"could not write {path}: {describe(err)} ({err}); "
                                      f"the previous file, if any, is unchanged") from err
    except BaseException:
        discard(tmp)
        raise


def save_verified(path: Path, obj) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    write_atomic(path, HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_verified(path: Path, map_location="cpu") -> tuple[object, bool]:
    """(the loaded object, whether a checksum was checked). Raises IntegrityError on a mismatch."""
    raw = Path(path).read_bytes()
    verified = raw.startswith(HEADER)
    if verified:
        expected, payload = raw[len(HEADER):HEADER_LENGTH - 1].decode("ascii", "replace"), raw[HEADER_LENGTH:]
        actual = hashlib.sha256(payload).hexdigest()
        if actual != expected:
            raise IntegrityError(errno.EIO, f"{path} is damaged: its content has sha256 {actual[:16]}…, "
                                            f"but it was written with {expected[:16]}…")
    else:
        payload = raw
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True), verified


def publish_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Make `folder` hold exactly `files` (relative name -> bytes), all at once: they are written
    to a hidden sibling, which is then exchanged with the folder in one atomic step (renameat2's
    RENAME_EXCHANGE on Linux; elsewhere two renames, with a roll-back that `recover_folder` completes
    after a crash). Readers see the old folder or the new one, never neither. If anything fails, the
    previous folder is left as it was and the staging one removed. A folder that is a symlink (results
    kept on another disk) is published where it points, and stays a symlink."""
    folder = Path(folder)
    target = folder.resolve() if folder.is_symlink() else folder
    staging = target.with_name(f".{target.name}.new{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        recover_folder(target)
        remove_leftovers(target.parent)
        discard(staging)
        staging.mkdir()
        for name, payload in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            with open(staging / name, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
        if target.is_dir():
            swap_in(staging, target)
        elif target.exists() or target.is_symlink():
            raise StorageError(errno.EEXIST, f"could not write {folder}: it is a file, not a folder; move it "
                                             f"away and save again")
        else:
            os.replace(staging, target)
    except OSError as err:
        discard(staging)
        if isinstance(err, StorageError):
            raise
        raise StorageError(err.errno, f"could not write {folder}: {describe(err)} ({err}); "
                                      f"its previous content, if any, is unchanged") from err
    except BaseException:
        discard(staging)
        raise


RENAME_EXCHANGE = 2
AT_FDCWD = -100


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):   # an old kernel or a file system without it
        return False
    raise OSError(code, os.strerror(code), str(second))


def swap_in(staging: Path, target: Path) -> None:
    """Put the staged folder at `target` and delete the old content."""
    if exchange(staging, target):
        discard(staging)          # now holds the old content
        return
    retired = target.with_name(f".{target.name}.old{os.getpid()}")
    os.replace(target, retired)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(retired, target)
        raise
    discard(retired)


def recover_folder(folder: Path) -> None:
    """After a crash between the two renames of `swap_in` (systems without an atomic exchange):
    `folder` is missing and its retired copy is there; put the copy back."""
    folder = Path(folder)
    if folder.exists():
        return
    retired = [path for path in folder.parent.glob(f".{folder.name}.old*")
               if (match := LEFTOVER.fullmatch(path.name)) and not process_alive(int(match["pid"]))]
    if retired:
        os.replace(max(retired, key=lambda path: path.stat().st_mtime), folder)

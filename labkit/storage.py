"""Files written whole or not at all, and tensors read back only when they are intact.

    write_atomic(path, payload)   a temp file beside the target, flushed, then renamed over it; on any
                                  I/O error the temp file is removed and a StorageError names the
                                  path and the cause (no space left, read-only, permission denied)
    save_verified(path, obj)      torch.save with a header holding the sha256 of the payload
    load_verified(path)           checks that sha256 before loading (weights_only), so a flipped
                                  byte is a clear error, never silently wrong tensors
    publish_folder(folder, files) a whole folder replaced at once (a run's results)

A verified file is one header line, b"LABKIT-SHA256 <64 hex digits>\\n", followed by the bytes
torch.save wrote. Files written before the header existed (plain torch.save zip files) still load,
unverified; `load_verified` says which it was.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
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


def write_atomic(path: Path, payload: bytes) -> None:
    """Replace `path` with `payload` in one rename; the old file stays intact if anything fails."""
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
        tmp.unlink(missing_ok=True)
        raise StorageError(err.errno, f"could not write {path}: {describe(err)} ({err}); "
                                      f"the previous file, if any, is unchanged") from err


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
    to a temporary sibling, which then replaces the folder by rename. If anything fails, the
    previous folder is left as it was and the temporary one is removed."""
    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.new{os.getpid()}")
    retired = folder.with_name(f".{folder.name}.old{os.getpid()}")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, payload in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            with open(staging / name, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
        if folder.exists():
            os.replace(folder, retired)
            try:
                os.replace(staging, folder)
            except OSError:
                os.replace(retired, folder)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, folder)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError(err.errno, f"could not write {folder}: {describe(err)} ({err}); "
                                      f"its previous content, if any, is unchanged") from err

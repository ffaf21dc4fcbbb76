"""Where a result came from: the commit of the code that made it and when (UTC)."""
from __future__ import annotations

import datetime as dt
import subprocess

from labkit.paths import REPO_ROOT


def git_commit() -> dict:
    """{"git_commit": HEAD or None, "git_dirty": whether labkit/ has uncommitted changes}."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    try:
        return {"git_commit": git("rev-parse", "HEAD") or None,
                "git_dirty": bool(git("status", "--porcelain", "--", "labkit"))}
    except OSError:
        return {"git_commit": None, "git_dirty": None}


def utc_timestamp() -> str:
    """Now, in UTC, to the second: '2026-12-01T15:40:00+00:00'."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")

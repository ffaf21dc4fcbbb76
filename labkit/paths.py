"""Where labkit reads and writes, and smoke mode.

    cache_dir()        env LABKIT_CACHE, else ~/.cache/labkit (decoded data sets)
    results_root()     env LABKIT_RESULTS, else <repo>/results
    checkpoint_root()  env LABKIT_CHECKPOINTS, else <cache>/checkpoints

Smoke mode (env LABKIT_SMOKE=1: one epoch on synthetic data) never writes into the real results/ or
the real checkpoints, whoever sets it: unless LABKIT_RESULTS / LABKIT_CHECKPOINTS point somewhere
else, its results and checkpoints go to a scratch folder under the system's temp directory.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def smoke_mode() -> bool:
    return os.environ.get("LABKIT_SMOKE", "") not in ("", "0")


def smoke_root() -> Path:
    return Path(tempfile.gettempdir()) / f"labkit-smoke-{os.getuid()}"


def cache_dir() -> Path:
    return Path(os.environ.get("LABKIT_CACHE", Path.home() / ".cache" / "labkit"))


def chosen_root(variable: str, real: Path, smoke_name: str) -> Path:
    chosen = Path(os.environ.get(variable) or real)
    if smoke_mode() and chosen.resolve() == real.resolve():
        return smoke_root() / smoke_name
    return chosen


def results_root() -> Path:
    return chosen_root("LABKIT_RESULTS", REPO_ROOT / "results", "results")


def checkpoint_root() -> Path:
    return chosen_root("LABKIT_CHECKPOINTS", cache_dir() / "checkpoints", "checkpoints")

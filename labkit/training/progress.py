"""The per-epoch progress bar: a tqdm text bar in a terminal, one line updated in place in a notebook.

In a Jupyter kernel (JupyterLab, or papermill headless) the bar is a single display output per
notebook cell, rewritten in place by every epoch's bar and cleared when an epoch ends, so an
executed notebook keeps only the epoch summaries, not one stale (or blank) output per epoch. Refreshes come at most every
LABKIT_PROGRESS_INTERVAL seconds (default 1), from values already on the host.
"""
from __future__ import annotations

import os
import time


def refresh_interval() -> float:
    return float(os.environ.get("LABKIT_PROGRESS_INTERVAL", "1"))


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return type(get_ipython()).__name__ == "ZMQInteractiveShell"


class NotebookBar:
    """tqdm's update / set_postfix / close, drawn as one text line with an IPython display id."""

    handles: dict[int, object] = {}   # notebook cell (execution count) -> its one progress output

    def __init__(self, total: int, description: str, interval: float):
        from IPython import get_ipython
        from IPython.display import display

        self.total, self.description, self.interval = total, description, interval
        self.done, self.postfix = 0, ""
        self.started = self.drawn = time.perf_counter()
        cell = get_ipython().execution_count
        self.handle = NotebookBar.handles.get(cell)
        if self.handle is None:
            self.handle = NotebookBar.handles[cell] = display({"text/plain": self.line()}, raw=True, display_id=True)
        else:
            self.handle.update({"text/plain": self.line()}, raw=True)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        return (f"{self.description}: {self.done}/{self.total} steps ({self.done / max(1, self.total):.0%}), "
                f"{elapsed:.0f} s {self.postfix}").rstrip()

    def update(self, steps: int = 1) -> None:
        self.done += steps
        if time.perf_counter() - self.drawn >= self.interval:
            self.handle.update({"text/plain": self.line()}, raw=True)
            self.drawn = time.perf_counter()

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.postfix = " ".join(f"{key} {value}" for key, value in values.items())

    def close(self) -> None:
        self.handle.update({"text/plain": ""}, raw=True)


def progress_bar(total: int, description: str, enabled: bool):
    if enabled and in_notebook():
        return NotebookBar(total, description, refresh_interval())
    from tqdm import tqdm

    return tqdm(total=total, desc=description, disable=not enabled, leave=False, mininterval=refresh_interval(),
                dynamic_ncols=True)

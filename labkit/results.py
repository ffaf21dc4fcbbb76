"""One folder per run under results/<run_name>/ (root overridable with env LABKIT_RESULTS):

    metrics.json   test/val accuracy, per-class accuracy, params, FLOPs, timings, memory,
                   device, torch version, data source + checksum, config, git commit, date
    history.csv    one row per epoch
    confusion.csv  test confusion matrix, rows true class, columns predicted
    model.pt       final weights, fp16 state_dict (load with `load_model`)

A run folder is published whole (labkit.storage.publish_folder): a failed or interrupted save
leaves the previous folder as it was. Readers name the broken file and what is wrong with it.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from .analysis import activation_memory, count_flops
from .paths import REPO_ROOT, results_root
from .runlock import claim_run, release_run
from .storage import publish_folder
from .models import build_model


def run_dir(run_name: str) -> Path:
    return results_root() / run_name


# Names under results/ that hold something other than runs.
RESERVED_NAMES = ("figures", "benchmarks", "tuning")


class RunDataError(ValueError):
    """A results file that is missing, truncated or does not fit its run; the message names it."""


def git_commit() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    try:
        return {"git_commit": git("rev-parse", "HEAD") or None,
                "git_dirty": bool(git("status", "--porcelain", "--", "labkit"))}
    except OSError:
        return {"git_commit": None, "git_dirty": None}


def save_run(result) -> Path:
    """Write a `labkit.train.FitResult` to results/<run_name>/ and return the folder."""
    if result.test is None:
        raise ValueError(f"{result.config.run_name} was trained without a test evaluation (a tuning trial); "
                         "only finished runs evaluated on test are saved to results/")
    name = result.config.run_name
    history = result.history
    metrics = {
        "run_name": name,
        "model": result.config.model,
        "test_accuracy": result.test.accuracy,
        "test_accuracy_no_tta": result.test_plain_accuracy,
        "test_tta": result.config.tta,
        "test_per_class_accuracy": result.test.per_class,
        "final_val_accuracy": history[-1]["val_acc"],
        "final_val_loss": history[-1]["val_loss"],
        "epochs": len(history),
        "flops_per_image": count_flops(result.model),
        # measured on a fresh CPU copy so the trained model is not touched
        "activation_mb_per_image": activation_memory(build_model(result.config.model), batch_size=16),
        **result.info,
        "config": asdict(result.config),
        **git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    columns = list(dict.fromkeys(key for record in history for key in record))  # runs resumed across versions
    classes = list(result.test.per_class)
    rows = [{"true": c, **dict(zip(classes, row))} for c, row in zip(classes, result.test.confusion.tolist())]
    weights = {k: (v.half() if v.is_floating_point() else v) for k, v in result.model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({k: v.cpu().contiguous() for k, v in weights.items()}, buffer)
    folder = run_dir(name)
    claim_run(name)   # no other process may publish this run meanwhile
    try:
        publish_folder(folder, {"metrics.json": (json.dumps(metrics, indent=2) + "\n").encode(),
                                "history.csv": to_csv(history, columns),
                                "confusion.csv": to_csv(rows, ["true", *classes]),
                                "model.pt": buffer.getvalue()})
    finally:
        release_run(name)
    return folder


def to_csv(rows: list[dict], columns: list[str]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def list_runs(root: Path | None = None) -> list[str]:
    root = root or results_root()
    return sorted(p.parent.name for p in root.glob("*/metrics.json"))


def read_metrics(folder: Path) -> dict:
    path = folder / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunDataError(f"{path} is not valid JSON ({err}); it is truncated or damaged") from err
    if not isinstance(metrics, dict) or "model" not in metrics:
        raise RunDataError(f"{path} does not describe a run (no 'model' entry)")
    return metrics


def load_run(run_name: str, root: Path | None = None) -> dict:
    """{"metrics": dict, "history": DataFrame, "confusion": DataFrame, "folder": Path}."""
    import pandas as pd

    folder = (root or results_root()) / run_name
    if not (folder / "metrics.json").is_file():
        raise FileNotFoundError(f"no run {run_name!r}: {folder}/metrics.json is missing")
    metrics = read_metrics(folder)
    tables = {}
    for name, options in (("history", {}), ("confusion", {"index_col": "true"})):
        path = folder / f"{name}.csv"
        try:
            tables[name] = pd.read_csv(path, **options)
        except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError, ValueError) as err:
            raise RunDataError(f"{path} cannot be read ({type(err).__name__}: {err}); it is missing, empty or "
                               f"damaged") from err
        if tables[name].empty:
            raise RunDataError(f"{path} has a header but no rows; it is truncated")
    return {"metrics": metrics, **tables, "folder": folder}


def load_model(run_name: str, root: Path | None = None) -> nn.Module:
    """Rebuild a run's model from its fp16 weights (returned in fp32, eval mode)."""
    folder = (root or results_root()) / run_name
    metrics = read_metrics(folder)
    model = build_model(metrics["model"])
    path = folder / "model.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise RunDataError(f"{path} cannot be read ({type(err).__name__}: {err})") from err
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (RuntimeError, AttributeError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise RunDataError(f"{path} does not hold weights of {metrics['model']!r}, the model its metrics.json "
                           f"names ({first_line})") from err
    return model.eval()

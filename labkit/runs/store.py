"""One folder per run under results/<run_name>/ (root overridable with env LABKIT_RESULTS):

    metrics.json   test/val accuracy, per-class accuracy, params, FLOPs, timings, memory,
                   device, torch version, data source + checksum, config, git commit, date
    history.csv    one row per epoch
    confusion.csv  test confusion matrix, rows true class, columns predicted
    model.pt       final weights, fp16 state_dict (load with `load_model`)

A run folder is published whole (labkit.storage.publish_folder): a failed or interrupted save
leaves the previous folder as it was, and a run whose metrics are not finite is not published.
Readers skip hidden names (the temp folders of a save in progress), name the broken file and what is
wrong with it, and check model.pt against the sha256 metrics.json records.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import TypedDict

import pandas as pd
import torch
from torch import nn

from labkit.models import build_model
from labkit.models.inspect import activation_memory, count_flops
from labkit.paths import checkpoint_root, results_root
from labkit.provenance import git_commit, utc_timestamp
from labkit.runs.lock import claimed
from labkit.storage import StorageError, publish_folder, recover_folder, terminate_as_exception


def run_dir(run_name: str) -> Path:
    return results_root() / run_name


# Names under results/ that hold something other than runs.
RESERVED_NAMES = ("figures", "benchmarks", "tuning")


class RequiredMetrics(TypedDict):
    """The keys every results/<run>/metrics.json holds (see `Metrics`)."""
    run_name: str
    model: str
    test_accuracy: float                    # at TTA level test_tta
    test_accuracy_no_tta: float
    test_tta: int                           # 0 none, 1 flip, 2 flip + two 1-px shifts
    test_per_class_accuracy: dict[str, float]
    final_val_accuracy: float | None        # None for a final fit on all training images (val_size 0)
    final_val_loss: float | None
    epochs: int
    flops_per_image: int
    activation_mb_per_image: float
    device: str
    device_type: str
    precision: str
    threads: int
    torch_version: str
    train_images: int
    val_images: int
    test_images: int
    training_wall_time_s: float
    images_per_s: float
    data_source: str
    data_location: str                      # relative to the repository, or the file's name
    data_checksum: str
    params: int
    peak_memory_mb: float
    peak_memory_kind: str
    config: dict
    git_commit: str | None
    git_dirty: bool | None
    date: str


class Metrics(RequiredMetrics, total=False):
    """The shape of results/<run>/metrics.json: every key a reader may look up, declared once. The keys
    declared here are absent from runs saved before labkit wrote them."""
    val_accuracy_by_tta: dict[str, float]
    test_accuracy_by_tta: dict[str, float]
    world_size: int
    weights_sha256: str                     # of model.pt, checked by load_model


class RunDataError(ValueError):
    """A results file that is missing, truncated or does not fit its run; the message names it."""


def save_run(result, root: Path | None = None) -> Path:
    """Write a `labkit.train.FitResult` to <root or results/>/<run_name>/ and return the folder."""
    if result.test is None:
        raise ValueError(f"{result.config.run_name} was trained without a test evaluation (a tuning trial); "
                         "only finished runs evaluated on test are saved to results/")
    name = result.config.run_name
    history = result.history
    metrics: Metrics = {
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
        "date": utc_timestamp(),
    }
    columns = list(dict.fromkeys(key for record in history for key in record))  # runs resumed across versions
    classes = list(result.test.per_class)
    rows = [{"true": c, **dict(zip(classes, row))} for c, row in zip(classes, result.test.confusion.tolist())]
    weights = {k: (v.half() if v.is_floating_point() else v) for k, v in result.model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({k: v.cpu().contiguous() for k, v in weights.items()}, buffer)
    metrics["weights_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    refuse_non_finite(metrics)
    folder = (root or results_root()) / name
    with terminate_as_exception(), claimed(name):   # no other process may train or publish this run meanwhile
        publish_folder(folder, {"metrics.json": (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode(),
                                "history.csv": to_csv(history, columns),
                                "confusion.csv": to_csv(rows, ["true", *classes]),
                                "model.pt": buffer.getvalue()})
    return folder


def refuse_non_finite(metrics: Metrics) -> None:
    """A run whose accuracies or losses are NaN or infinite is not published (it diverged)."""
    bad = [key for key, value in metrics.items()
           if isinstance(value, float) and not math.isfinite(value)]
    bad += [f"{key}[{k}]" for key in ("test_per_class_accuracy", "val_accuracy_by_tta", "test_accuracy_by_tta")
            for k, v in metrics.get(key, {}).items() if not math.isfinite(v)]
    if bad:
        raise RunDataError(f"run {metrics['run_name']!r} was not published: {', '.join(bad)} not finite (the "
                           f"training diverged); its checkpoint is kept at "
                           f"{checkpoint_root() / metrics['run_name']}. Lower lr or use fp32, and train again "
                           f"with overwrite")


def check_destinations(run_name: str) -> None:
    """Before the first epoch: the results and checkpoint folders of `run_name` can be made, so a run
    does not train for hours and then fail to save."""
    for root, what in ((results_root(), "results root (LABKIT_RESULTS)"),
                       (checkpoint_root(), "checkpoint root (LABKIT_CHECKPOINTS)")):
        for folder in (root, root / run_name):
            if folder.exists() and not folder.is_dir():
                raise StorageError(f"the {what} {folder} is a file, not a folder; move it away or point "
                                   f"the variable elsewhere")
        existing = next(parent for parent in (root, *root.parents) if parent.exists())
        if not os.access(existing, os.W_OK):
            raise StorageError(f"the {what} {root} cannot be written ({existing} is not writable); point the "
                               f"variable at a writable folder")


def to_csv(rows: list[dict], columns: list[str]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def list_runs(root: Path | None = None) -> list[str]:
    """The run names in the results root: folders holding a metrics.json, hidden ones (a save in
    progress, or a dead process's leftovers) excluded."""
    root = root or results_root()
    return sorted(p.parent.name for p in root.glob("*/metrics.json") if not p.parent.name.startswith("."))


def read_metrics(folder: Path) -> Metrics:
    """A run's metrics.json, checked to hold every key `Metrics` requires."""
    path = folder / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunDataError(f"{path} is not valid JSON ({err}); it is truncated or damaged") from err
    if not isinstance(metrics, dict) or "model" not in metrics:
        raise RunDataError(f"{path} does not describe a run (no 'model' entry)")
    absent = sorted(Metrics.__required_keys__ - set(metrics))
    if absent:
        raise RunDataError(f"{path} lacks {', '.join(absent)}; it was not written by labkit.runs.store.save_run")
    return metrics


def load_run(run_name: str, root: Path | None = None) -> dict:
    """{"metrics": dict, "history": DataFrame, "confusion": DataFrame, "folder": Path}."""
    folder = (root or results_root()) / run_name
    recover_folder(folder)
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
        payload = path.read_bytes()
    except OSError as err:
        raise RunDataError(f"{path} cannot be read ({err.strerror or err})") from err
    if not payload:
        raise RunDataError(f"{path} is an empty file")
    recorded = metrics.get("weights_sha256")
    if recorded and hashlib.sha256(payload).hexdigest() != recorded:
        raise RunDataError(f"{path} is damaged or was replaced: its sha256 is not the {recorded[:16]}… that "
                           f"metrics.json records")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise RunDataError(f"{path} cannot be read, it is truncated or damaged ({type(err).__name__}: "
                           f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})") from err
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (RuntimeError, AttributeError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise RunDataError(f"{path} does not hold weights of {metrics['model']!r}, the model its metrics.json "
                           f"names ({first_line})") from err
    return model.eval()

"""One folder per run under results/<run_name>/ (root overridable with env LABKIT_RESULTS):

    metrics.json   test/val accuracy, per-class accuracy, params, FLOPs, timings, memory,
                   device, torch version, data source + checksum, config, git commit, date
    history.csv    one row per epoch
    confusion.csv  test confusion matrix, rows true class, columns predicted
    model.pt       final weights, fp16 state_dict (load with `load_model`)

All writes are atomic (temp file, then rename).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from .analysis import activation_memory, count_flops
from .data import REPO_ROOT
from .models import build_model


def results_root() -> Path:
    return Path(os.environ.get("LABKIT_RESULTS", REPO_ROOT / "results"))


def run_dir(run_name: str) -> Path:
    return results_root() / run_name


def atomic_write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


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
    folder = run_dir(result.config.run_name)
    history = result.history
    metrics = {
        "run_name": result.config.run_name,
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
    atomic_write(folder / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    columns = list(dict.fromkeys(key for record in history for key in record))  # runs resumed across versions
    atomic_write(folder / "history.csv", to_csv(history, columns))
    classes = list(result.test.per_class)
    rows = [{"true": c, **dict(zip(classes, row))} for c, row in zip(classes, result.test.confusion.tolist())]
    atomic_write(folder / "confusion.csv", to_csv(rows, ["true", *classes]))
    weights = {k: (v.half() if v.is_floating_point() else v) for k, v in result.model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({k: v.cpu().contiguous() for k, v in weights.items()}, buffer)
    atomic_write(folder / "model.pt", buffer.getvalue())
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


def load_run(run_name: str, root: Path | None = None) -> dict:
    """{"metrics": dict, "history": DataFrame, "confusion": DataFrame, "folder": Path}."""
    import pandas as pd

    folder = (root or results_root()) / run_name
    if not (folder / "metrics.json").is_file():
        raise FileNotFoundError(f"no run {run_name!r}: {folder}/metrics.json is missing")
    return {"metrics": json.loads((folder / "metrics.json").read_text()),
            "history": pd.read_csv(folder / "history.csv"),
            "confusion": pd.read_csv(folder / "confusion.csv", index_col="true"),
            "folder": folder}


def load_model(run_name: str, root: Path | None = None) -> nn.Module:
    """Rebuild a run's model from its fp16 weights (returned in fp32, eval mode)."""
    folder = (root or results_root()) / run_name
    metrics = json.loads((folder / "metrics.json").read_text())
    model = build_model(metrics["model"])
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval()

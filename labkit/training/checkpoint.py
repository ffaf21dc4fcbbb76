"""Training checkpoints: one per run, `<LABKIT_CHECKPOINTS or ~/.cache/labkit/checkpoints>/<run>/last.pt`,
rewritten atomically after every epoch.

Format versions, all of which load:
    1  plain torch.save of {config, data_checksum, epoch, history, model, optimizer, schedule, rng_cpu}
    2  the same state behind a sha256 header (labkit.storage), plus "ema" (None when off)
    3  plus "scaler", the fp16 GradScaler's state (None for other precisions)

A checkpoint is resumed only with the config it was written with. Fields added to TrainConfig after
a checkpoint was written take their defaults when it is read, so runs in flight stay resumable
across labkit versions; fields that do not change what is computed (RESUMABLE_FIELDS) may differ.
"""
from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import torch

from labkit.paths import checkpoint_root
from labkit.storage import IntegrityError, load_verified, save_verified

CHECKPOINT_VERSION = 3
REQUIRED_KEYS = ("config", "model", "optimizer", "schedule", "epoch", "history", "rng_cpu")
# Fields that do not change what is computed; a checkpoint may be resumed with other values.
# `data` is compared through the data checksum instead, so a relative and an absolute path agree.
RESUMABLE_FIELDS = {"resume", "overwrite", "progress", "device", "compile", "run_name", "tta", "data"}


WRAPPER_PREFIXES = ("_orig_mod.", "module.")


class CheckpointError(RuntimeError):
    """A checkpoint that is damaged, unreadable, or belongs to another model, config or data set."""


def checkpoint_path(run_name: str) -> Path:
    return checkpoint_root() / run_name / "last.pt"


def saved_config(saved: dict, config) -> dict:
    """The checkpoint's config with today's defaults for fields it predates."""
    defaults = {f.name: f.default for f in fields(config)}
    return {**defaults, **saved}


def saved_settings(run_name: str) -> dict:
    """The settings run `run_name`'s checkpoint was written with ({} when it has none or it cannot be
    read: resuming then reports why), so a resume needs no option repeated."""
    try:
        state, _ = load_verified(checkpoint_path(run_name))
        return {k: v for k, v in state["config"].items() if k not in RESUMABLE_FIELDS - {"data"}}
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is reported by load_checkpoint, with advice
        return {}


def config_differences(saved: dict, config) -> list[str]:
    saved, current = saved_config(saved, config), asdict(config)
    return [f"{k}: checkpoint {saved[k]!r} vs now {current[k]!r}"
            for k in current if k not in RESUMABLE_FIELDS and saved[k] != current[k]]


def plain_keys(state_dict: dict) -> dict:
    """State-dict keys without the prefixes torch.compile ('_orig_mod.') and DDP ('module.') add, so
    weights saved from a wrapped model load into the plain one, compiled or not."""
    def plain(key: str) -> str:
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        return key
    return {plain(key): value for key, value in state_dict.items()}


def save_checkpoint(path: Path, state: dict) -> None:
    save_verified(path, {"version": CHECKPOINT_VERSION, **state})


def load_checkpoint(path: Path, config, data_checksum: str) -> dict:
    """The checkpoint's state, if it is intact and was written for this config and data."""
    advice = "delete it (or move it aside) to train from scratch, or run without resume"
    try:
        state, _ = load_verified(path)
    except IntegrityError as err:
        raise CheckpointError(f"checkpoint {err.strerror}; nothing was loaded or overwritten. {advice}") from err
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {err}); "
                              f"{advice}") from err
    missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable (missing {', '.join(missing)}); {advice}")
    if state.get("version", 1) > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} was written by a newer labkit (format {state['version']}, "
                              f"this one reads up to {CHECKPOINT_VERSION}); update labkit to resume it")
    differences = config_differences(state["config"], config)
    to_continue = ["without those settings (a resume takes the checkpoint's)"] if differences else []
    if state.get("data_checksum") != data_checksum:
        differences.append(f"data checksum: checkpoint {state.get('data_checksum')!r} vs now {data_checksum!r}")
        to_continue.append("on the data it trained on")
    if differences:
        raise CheckpointError(f"checkpoint {path} belongs to another model, config or data set and was not "
                              f"loaded: " + "; ".join(differences) + f". To continue it, resume "
                              f"{' and '.join(to_continue)}; to train anew, use another run_name, or delete "
                              "the checkpoint")
    state["model"] = plain_keys(state["model"])
    state.setdefault("ema", None)
    state.setdefault("scaler", None)
    return state


def capture_state(config, data_checksum: str, history: list[dict], model, optimizer, schedule, ema, scaler) -> dict:
    """Everything a run needs to continue after its last epoch in `history` (format CHECKPOINT_VERSION)."""
    return {"config": asdict(config), "data_checksum": data_checksum, "epoch": len(history), "history": history,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "ema": ema.state_dict() if ema else None,
            "scaler": scaler.state_dict() if scaler.is_enabled() else None, "rng_cpu": torch.get_rng_state()}


def restore_state(state: dict, model, optimizer, schedule, ema, scaler) -> list[dict]:
    """Load a checkpoint's state (from `load_checkpoint`, any format version) into the run's objects;
    returns the history of the epochs it covers."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    if ema:
        ema.load_state_dict(state["ema"])
    if scaler.is_enabled() and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"])
    return state["history"][:state["epoch"]]

"""Recipe tuning judged on the validation split; the test split is never evaluated here.

Each trial is a short run of the full schedule (warmup, then linear decay to zero over `epochs`)
with some TrainConfig fields overridden, compared by its final val accuracy. Trials checkpoint like
any run (resumable across sessions) and are recorded, with provenance, in
results/tuning/<model>-<epochs>ep.json; a trial already recorded there is not run again.

    python -m labkit.tune --model resnet18 --epochs 4 --data ../shared/datasets/cifar10-jpeg.tar.gz \\
        --trial "" --trial lr=0.2 --trial "lr=0.2 label_smoothing=0"
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd

from labkit import data as datalib
from labkit.paths import results_root, smoke_mode
from labkit.provenance import git_commit, utc_timestamp
from labkit.reporting.select import load_json_files
from labkit.reporting.stats import difference_noise
from labkit.reporting.tables import format_table
from labkit.storage import write_atomic
from labkit.training.checkpoint import CheckpointError, saved_config
from labkit.training.config import RECIPE_FIELDS, TrainConfig, add_option, smoke_config
from labkit.training.loop import NonFiniteLossError, fit

FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}
TUNABLE = RECIPE_FIELDS + ("precision",)


def parse_overrides(text: str) -> dict:
    """'lr=0.2 label_smoothing=0' -> {'lr': 0.2, 'label_smoothing': 0.0}; '' is the base recipe."""
    overrides = {}
    for item in text.replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep or key not in TUNABLE:
            raise ValueError(f"trial setting {item!r}: use name=value with name one of {', '.join(TUNABLE)}")
        kind = FIELD_TYPES[key]
        if kind == "bool":
            if value not in ("True", "False"):
                raise ValueError(f"trial setting {item!r}: {key} takes True or False")
            overrides[key] = value == "True"
            continue
        try:
            overrides[key] = int(value) if kind == "int" else float(value) if kind == "float" else value
        except ValueError:
            raise ValueError(f"trial setting {item!r}: {key} takes {'an integer' if kind == 'int' else 'a number'}"
                             ) from None
    return overrides


def trial_name(model: str, epochs: int, overrides: dict) -> str:
    label = "-".join(f"{key}{value}" for key, value in sorted(overrides.items())) or "base"
    return f"tune-{model}-{epochs}ep-{label}"


def log_path(model: str, epochs: int, root: Path | None = None) -> Path:
    return (root or results_root()) / "tuning" / f"{model}-{epochs}ep.json"


def trial_configs(base: TrainConfig, trials: list[dict]) -> list[TrainConfig]:
    """One validated config per trial, built before any trial runs, so a bad one fails at once."""
    return [TrainConfig(**{**asdict(base), **overrides, "run_name": trial_name(base.model, base.epochs, overrides),
                           "resume": True, "progress": False})
            for overrides in trials]


def run_trials(base: TrainConfig, trials: list[dict], data: datalib.Cifar10, log: Path) -> list[dict]:
    """Run each override set on top of `base` (skipping those already in `log`); return all records."""
    records = json.loads(log.read_text())["trials"] if log.is_file() else []
    for overrides, config in zip(trials, trial_configs(base, trials)):
        if any(saved_config(r["config"], config) == asdict(config) and r["data_checksum"] == data.checksum
               for r in records):
            print(f"{config.run_name}: already recorded in {log}")
            continue
        result = fit(config, data, evaluate_test=False)
        history = result.history
        records.append({
            "overrides": overrides, "run_name": config.run_name,
            "final_val_accuracy": history[-1]["val_acc"],
            "val_accuracy_by_epoch": [r["val_acc"] for r in history],
            **({"val_accuracy_no_ema_by_epoch": [r["val_acc_no_ema"] for r in history]} if config.ema_decay else {}),
            "final_val_accuracy_by_tta": result.info["val_accuracy_by_tta"],
            **{key: result.info[key] for key in ("training_wall_time_s", "images_per_s", "device",
                                                 "torch_version", "data_source", "data_checksum")},
            "config": asdict(config), **git_commit(),
            "date": utc_timestamp(),
        })
        log.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(log, (json.dumps({"model": base.model, "epochs": base.epochs, "trials": records}, indent=2)
                           + "\n").encode())
    return records


def decided(stem: str, key: str, baseline, candidate, root: Path | None = None):
    """The value of `key` a run should use, by the report's rule, from the trials in results/tuning/<stem>.json
    that differ only in `key`: `candidate` if its final val accuracy beats `baseline`'s by more than two
    standard errors of the difference, else `baseline`. Says why on stderr."""
    log = load_logs(root).get(stem)
    if log is None:
        raise ValueError(f"no tuning log results/tuning/{stem}.json; run the trials first")
    trials: dict[str, list[dict]] = {}      # the trials grouped by every override except `key`
    for trial in log["trials"]:
        rest = json.dumps({k: v for k, v in trial["overrides"].items() if k != key}, sort_keys=True)
        trials.setdefault(rest, []).append(trial)
    for group in trials.values():
        by_value = {t["overrides"].get(key, t["config"].get(key)): t for t in group}
        if baseline in by_value and candidate in by_value:
            base, new = by_value[baseline], by_value[candidate]
            val_images = base["config"]["val_size"]
            noise = difference_noise((base["final_val_accuracy"], val_images), (new["final_val_accuracy"], val_images))
            gap = new["final_val_accuracy"] - base["final_val_accuracy"]
            chosen = candidate if gap > noise else baseline
            print(f"{stem}: {key} {candidate} vs {baseline}: val {new['final_val_accuracy']:.2%} vs "
                  f"{base['final_val_accuracy']:.2%} ({gap * 100:+.2f} points, 2 SE = {noise * 100:.2f}); "
                  f"chosen: {chosen}", file=sys.stderr)
            return chosen
    raise ValueError(f"results/tuning/{stem}.json has no pair of trials that differ only in {key} "
                     f"({baseline} and {candidate})")


def load_logs(root: Path | None = None, problems: list[str] | None = None) -> dict[str, dict]:
    """Every tuning log under results/tuning/, keyed by its file stem ('resnet18-4ep'); a broken
    one is skipped with a warning."""
    return load_json_files((root or results_root()) / "tuning", problems)


def trial_label(trial: dict) -> str:
    """'ema_decay 0.997, lr 0.05': the settings a trial changed from the base recipe."""
    return ", ".join(f"{k} {v}" for k, v in sorted(trial["overrides"].items())) or "base recipe"


def trials_table(log: dict) -> pd.DataFrame:
    """One row per trial, best final val accuracy first: val accuracy at a quarter, half, three quarters
    and the end of the schedule, whether it is within two standard errors of the best (one seed each,
    so those are not told apart), and the cost in minutes."""
    best = max(r["final_val_accuracy"] for r in log["trials"])
    rows = []
    for r in log["trials"]:
        curve, images = r["val_accuracy_by_epoch"], r["config"]["val_size"]
        at = {f"val acc at {q}%": curve[max(0, round(len(curve) * q / 100) - 1)] for q in (25, 50, 75)}
        close = best - r["final_val_accuracy"] <= difference_noise((best, images), (r["final_val_accuracy"], images))
        rows.append({"settings": trial_label(r), **at, "final val acc": r["final_val_accuracy"],
                     "within noise of the best": "yes" if close else "no",
                     "train min": f"{r['training_wall_time_s'] / 60:.0f}"})
    return pd.DataFrame(rows).sort_values("final val acc", ascending=False).set_index("settings")


def summary(records: list[dict]) -> str:
    return format_table(trials_table({"trials": records})).to_string()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.tune", description=__doc__.split("\n\n")[0])
    add_option(p, "model")
    p.add_argument("--epochs", type=int, default=4, help="length of each trial's whole schedule (default 4)")
    for name in ("data", "val_size", "device"):
        add_option(p, name)
    p.add_argument("--trial", action="append", default=[], metavar="SETTINGS",
                   help='overrides of the default recipe, e.g. "lr=0.2 label_smoothing=0"; "" is the default; repeatable')
    args = p.parse_args(argv)
    try:
        trials = [parse_overrides(t) for t in args.trial or [""]]
        base = TrainConfig(model=args.model, epochs=args.epochs, data=args.data, val_size=args.val_size,
                           device=args.device)
        if smoke_mode():
            base = smoke_config(base, max_epochs=1)
            print("LABKIT_SMOKE=1: smoke mode, 1-epoch trials on synthetic data")
        if base.val_size == 0:
            raise ValueError("tuning is judged on the validation split: val_size must be > 0")
        trial_configs(base, trials)
        data = datalib.load_cifar10(base.data)
        log = log_path(base.model, base.epochs)
        records = run_trials(base, trials, data, log)
    except (ValueError, CheckpointError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{log}:\n{summary(records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

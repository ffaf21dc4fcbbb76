"""Recipe tuning judged on the validation split; the test split is never evaluated here.

Each trial is a short run of the full schedule (warmup, then linear decay to zero over `epochs`)
with some TrainConfig fields overridden, compared by its final val accuracy. Trials checkpoint like
any run (resumable across sessions) and are recorded, with provenance, in
results/tuning/<model>-<epochs>ep.json; a trial already recorded there is not run again. A trial of
an SE model also records its gates on val images (are they alive, or flat at 0.5?).

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
from torch import Tensor, nn

from labkit import data as datalib
from labkit.models import build_model
from labkit.models.inspect import flat_blocks, gate_statistics, se_blocks, se_gates
from labkit.paths import results_root, smoke_mode
from labkit.provenance import git_commit, utc_timestamp
from labkit.reporting.select import load_json_files
from labkit.reporting.stats import difference_noise
from labkit.reporting.tables import format_table
from labkit.storage import write_atomic
from labkit.training.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, plain_keys, saved_config
from labkit.training.config import RECIPE_FIELDS, TrainConfig, add_option, smoke_config
from labkit.training.loop import NonFiniteLossError, fit, round_weights_to_fp16

FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}
TUNABLE = RECIPE_FIELDS + ("precision",)
GATE_IMAGES = 2000      # val images the gates are measured on, 200 per class (as many as the SE notebook's look)


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


def gate_image_indices(labels: Tensor, val_size: int, seed: int) -> Tensor:
    """The train-set indices of the val images the gates are measured on: all of them up to GATE_IMAGES,
    else a seeded subset with every class equally."""
    _, val_idx = datalib.train_val_split(labels, val_size, seed)
    if len(val_idx) <= GATE_IMAGES:
        return val_idx
    return val_idx[datalib.subset_indices(labels[val_idx], GATE_IMAGES, seed)]


def val_gate_statistics(model: nn.Module, data: datalib.Cifar10, config: TrainConfig) -> dict | None:
    """Each SE block's gate statistics (`inspect.gate_statistics`) on the trial's val images of
    `gate_image_indices` (not the first ones: the val indices are sorted, and a folder data set stores
    its images class by class), with `model`'s weights: {block: {statistic: value}}; None for a model
    without SE."""
    if not se_blocks(model):
        return None
    chosen = gate_image_indices(data.train_labels, config.val_size, config.seed)
    images = datalib.normalize(data.train_images[chosen].to(next(model.parameters()).device))
    table = gate_statistics(se_gates(model, images))
    return {block: {name: round(value, 4) for name, value in row.items()} for block, row in table.iterrows()}


def checkpoint_gate_statistics(config: TrainConfig, data: datalib.Cifar10) -> dict | None:
    """`val_gate_statistics` of a finished trial recorded before trials measured gates, from the weights
    it was judged by (the EMA's when it kept one, rounded to fp16 as at its evaluation) in its
    checkpoint; None when the model has no SE or the checkpoint is gone, unfinished or unreadable
    (said on stderr: the trials go on)."""
    model, path = build_model(config.model), checkpoint_path(config.run_name)
    if not se_blocks(model) or not path.is_file():
        return None
    try:
        state = load_checkpoint(path, config, data.checksum)
    except CheckpointError as err:
        print(f"{config.run_name}: gate statistics not added: {err}", file=sys.stderr)
        return None
    if state["epoch"] < config.epochs:
        return None
    model.load_state_dict(plain_keys(state["ema"]["model"]) if state["ema"] else state["model"])
    round_weights_to_fp16(model)
    return val_gate_statistics(model, data, config)


def write_log(log: Path, base: TrainConfig, records: list[dict]) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(log, (json.dumps({"model": base.model, "epochs": base.epochs, "trials": records}, indent=2)
                       + "\n").encode())


def same_trial(record: dict, config: TrainConfig, data_checksum: str) -> bool:
    """Whether `record` is the trial `config` on the same images: the data are matched by their checksum,
    not by the path they were given (an absolute and a relative path name the same archive)."""
    recorded = {**saved_config(record["config"], config), "data": config.data}
    return recorded == asdict(config) and record["data_checksum"] == data_checksum


def run_trials(base: TrainConfig, trials: list[dict], data: datalib.Cifar10, log: Path) -> list[dict]:
    """Run each override set on top of `base` (skipping those already in `log`, but adding the gate
    statistics that an SE trial recorded before they existed); return all records."""
    records = json.loads(log.read_text())["trials"] if log.is_file() else []
    for overrides, config in zip(trials, trial_configs(base, trials)):
        recorded = next((r for r in records if same_trial(r, config, data.checksum)), None)
        if recorded is not None:
            if "val_gate_statistics" not in recorded:
                gates = checkpoint_gate_statistics(config, data)
                if gates:
                    recorded["val_gate_statistics"] = gates
                    write_log(log, base, records)
                    print(f"{config.run_name}: gate statistics added from its checkpoint")
            print(f"{config.run_name}: already recorded in {log}")
            continue
        result = fit(config, data, evaluate_test=False)
        gates = val_gate_statistics(result.model, data, config)
        history = result.history
        records.append({
            "overrides": overrides, "run_name": config.run_name,
            "final_val_accuracy": history[-1]["val_acc"],
            "val_accuracy_by_epoch": [r["val_acc"] for r in history],
            **({"val_accuracy_no_ema_by_epoch": [r["val_acc_no_ema"] for r in history]} if config.ema_decay else {}),
            "final_val_accuracy_by_tta": result.info["val_accuracy_by_tta"],
            **({"val_gate_statistics": gates} if gates else {}),
            **{key: result.info[key] for key in ("training_wall_time_s", "images_per_s", "device",
                                                 "torch_version", "data_source", "data_checksum")},
            "config": asdict(config), **git_commit(),
            "date": utc_timestamp(),
        })
        write_log(log, base, records)
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
    """One row per trial, best final val accuracy first: val accuracy at the epochs nearest a quarter,
    half and three quarters of the schedule (named by epoch) and at its end, whether it is within two
    standard errors of the best (one seed each, so those are not told apart), and the cost in minutes."""
    best = max(r["final_val_accuracy"] for r in log["trials"])
    epochs = log.get("epochs") or max(len(r["val_accuracy_by_epoch"]) for r in log["trials"])
    marks = sorted({max(1, round(epochs * q / 100)) for q in (25, 50, 75)} - {epochs})
    rows = []
    for r in log["trials"]:
        curve, images = r["val_accuracy_by_epoch"], r["config"]["val_size"]
        at = {f"val acc at epoch {epoch}": curve[epoch - 1] if epoch <= len(curve) else None for epoch in marks}
        close = best - r["final_val_accuracy"] <= difference_noise((best, images), (r["final_val_accuracy"], images))
        rows.append({"settings": trial_label(r), **at, "final val acc": r["final_val_accuracy"],
                     "within noise of the best": "yes" if close else "no",
                     "train min": f"{r['training_wall_time_s'] / 60:.0f}"})
    return pd.DataFrame(rows).sort_values("final val acc", ascending=False).set_index("settings")


def gate_trials(log: dict) -> dict[str, tuple[dict, pd.DataFrame]]:
    """The trials that recorded SE gate statistics, each labelled by the settings in which they differ
    ('exempt_excitation_decay True'): {label: (trial, blocks × statistics)}, fewest overrides first."""
    trials = sorted((r for r in log["trials"] if "val_gate_statistics" in r), key=lambda r: len(r["overrides"]))
    configs = [saved_config(r["config"], TrainConfig) for r in trials]     # today's defaults for older fields
    differing = [key for key in TUNABLE if len({json.dumps(c[key]) for c in configs}) > 1]
    return {(", ".join(f"{key} {c[key]}" for key in differing) or trial_label(r)):
            (r, pd.DataFrame(r["val_gate_statistics"]).T) for r, c in zip(trials, configs)}


def gate_contrasts(log: dict) -> list[dict]:
    """Each gate-measuring trial against the first (`gate_trials`): the settings that differ ({setting:
    (first trial's value, this trial's)}), how many blocks' gates are flat in
    each (`inspect.flat_blocks`), the ratio of their spread over images per block, and the final val
    accuracy gap with two standard errors of it (`within`: not beyond them). A block whose first-trial
    spread is 0 has no ratio (NaN)."""
    trials = list(gate_trials(log).items())
    if len(trials) < 2:
        return []
    (base_label, (base_trial, base)), *others = trials
    base_config = saved_config(base_trial["config"], TrainConfig)
    contrasts = []
    for label, (trial, table) in others:
        config = saved_config(trial["config"], TrainConfig)
        images = trial["config"]["val_size"]
        gap = trial["final_val_accuracy"] - base_trial["final_val_accuracy"]
        noise = difference_noise((trial["final_val_accuracy"], images), (base_trial["final_val_accuracy"], images))
        contrasts.append({
            "label": label, "base_label": base_label, "blocks": len(table), "epochs": log["epochs"],
            "changed": {key: (base_config[key], config[key]) for key in TUNABLE if base_config[key] != config[key]},
            "flat": len(flat_blocks(table)), "base_flat": len(flat_blocks(base)),
            "spread_ratio": table["sd over images"] / base["sd over images"].where(base["sd over images"] > 0),
            "gap": gap, "noise": noise, "within": abs(gap) <= noise,
        })
    return contrasts


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

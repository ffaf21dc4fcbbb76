"""Tables of the comparison: the runs side by side, the lab report's numbers against ours, and the
benchmarks; `format_table` turns fractions into percentages for display."""
from __future__ import annotations

import math
import numbers
import re
from pathlib import Path

import pandas as pd

from labkit.models.inspect import architecture_activation_mb
from labkit.reporting.claims import LAB_REPORT_ACCURACY
from labkit.reporting.select import budget_groups, is_final_fit, runs_by_model
from labkit.reporting.stats import (accuracy_standard_error, compiled_fast_path, machine_name, peak_for,
                                   seed_summary, typical_images_per_s)


def lab_report_table(runs: dict) -> pd.DataFrame:
    """Per model: what the lab report said, and what its longest budget measures (test accuracy at
    its TTA level and without TTA; the mean ± sd when several seeds ran at that budget) on how many
    training images (50,000 for a final fit), with the gap judged without TTA (the lab report's figures
    probably are) against two standard errors: the test set's binomial one and, over seeds, the seeds'
    spread."""
    rows = []
    for model, entries in runs_by_model(runs).items():
        epochs, group = budget_groups(entries)[-1]
        mean, sd = seed_summary(group)
        plain, plain_sd = seed_summary(group, "test_accuracy_no_tta")
        m = group[0][1]["metrics"]
        said = LAB_REPORT_ACCURACY.get(model)
        row = {"model": model, "lab report's test acc": said, "our test acc": mean,
               "our test acc (no TTA)": plain,
               "seeds": len(group), "test acc sd over seeds": sd, "run": ", ".join(name for name, _ in group),
               "epochs": epochs, "train images": f"{m['train_images']:,}", "verdict": "no claim to check"}
        if said is not None:
            variance = (accuracy_standard_error(plain, m["test_images"]) ** 2
                        + (plain_sd ** 2 / len(group) if plain_sd else 0.0))
            noise = 2 * variance ** 0.5
            gap = plain - said
            row["verdict"] = (f"ours higher by {gap * 100:.2f} points without TTA" if gap > noise else
                              f"ours lower by {-gap * 100:.2f} points without TTA" if gap < -noise else
                              f"within noise without TTA ({gap * 100:+.2f} points, 2 SE = {noise * 100:.2f})")
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


MODEL_TITLES = {"cnn": "CNN (tutorial)", "resnet18": "ResNet-18", "plain18": "ResNet-18, no shortcuts",
                "densenet_cifar": "DenseNet (k=12)", "se_resnet18": "SE-ResNet-18",
                "se_resnet18_imagenet_stem": "SE-ResNet-18, ImageNet stem"}


def and_list(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join(filter(None, [", ".join(items[:-1]), items[-1]])) if items else ""


def budget(run: dict) -> str:
    """'40 epochs', or for a final fit '80 epochs on all 50,000 training images': what a ranking must say
    when runs trained on different amounts of data."""
    m = run["metrics"]
    return f"{m['epochs']} epochs" + (f" on all {m['train_images']:,} training images" if is_final_fit(run) else "")


def percent(value: float | None, sd: float | None = None) -> str:
    if value is None:
        return "—"
    return f"{value:.2%}" if sd is None else f"{value:.2%} ± {sd:.2%}"


def duration(seconds: float) -> str:
    """'4.3 min', or '7 s' under a minute."""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def headline_table(every_run: dict) -> pd.DataFrame:
    """Per model, its headline result (the longest budget, recipe chosen on val; over seeds the mean ±
    sd): test accuracy with and without TTA, the lab report's number, epochs, training images, the time
    per epoch and in all, and the machine that trained it."""
    rows = []
    for model, entries in runs_by_model(every_run).items():
        epochs, group = budget_groups(entries)[-1]
        m = group[0][1]["metrics"]
        epoch_seconds = sorted(run["history"].epoch_time_s.median() for _, run in group)
        hours = [run["metrics"]["training_wall_time_s"] / 3600 for _, run in group]
        rows.append({
            "model": MODEL_TITLES.get(model, model),
            "test acc (TTA)": percent(*seed_summary(group)),
            "test acc (no TTA)": percent(*seed_summary(group, "test_accuracy_no_tta")),
            "lab report": percent(LAB_REPORT_ACCURACY.get(model)),
            "epochs": epochs, "train images": f"{m['train_images']:,}",
            "time/epoch": " – ".join(dict.fromkeys(duration(t) for t in (epoch_seconds[0], epoch_seconds[-1]))),
            "train time": f"{hours[0]:.1f} h" if len(group) == 1 else f"{sum(hours):.1f} h ({len(group)} seeds)",
            "machine": machine_name(m["device"]),
            "run": ", ".join(name for name, _ in group) if len(group) < 3 else f"{group[0][0]} + {len(group) - 1} seeds",
        })
    return pd.DataFrame(rows).set_index("model")


ACCURACY_COLUMNS = ["params", "MFLOPs/img", "test acc", "test acc (no TTA)", "final val acc", "epochs"]


COST_COLUMNS = ["device", "train min (as run)", "median epoch img/s", "act. MB/img", "peak mem (MB)"]


def comparison_table(runs: dict) -> pd.DataFrame:
    """One row per run: ACCURACY_COLUMNS then COST_COLUMNS (the report shows them as two tables)."""
    rows = []
    for name, run in runs.items():
        if run is None:
            rows.append({"run": name, "status": "missing"})
            continue
        m = run["metrics"]
        rows.append({
            "run": name, "status": "ok", "params": m["params"], "MFLOPs/img": m["flops_per_image"] / 1e6,
            "test acc": m["test_accuracy"], "test acc (no TTA)": m["test_accuracy_no_tta"],
            "final val acc": m["final_val_accuracy"], "epochs": m["epochs"],
            "train min (as run)": m["training_wall_time_s"] / 60,
            "median epoch img/s": typical_images_per_s(run),
            "act. MB/img": architecture_activation_mb(m["model"]), "peak mem (MB)": m["peak_memory_mb"],
            "device": machine_name(m["device"]).removeprefix("CPU "),
        })
    return pd.DataFrame(rows).set_index("run")


def training_commits(history: pd.DataFrame) -> str:
    """'abc1234 (epochs 1–6), def5678 (epochs 7–15)': the code that trained each stretch of epochs,
    from the history's git_commit column; epochs trained before labkit recorded it say so."""
    commits = history.get("git_commit", pd.Series([None] * len(history))).fillna("").astype(str)
    stretches, start = [], 0
    for i in range(1, len(history) + 1):
        if i == len(history) or commits.iloc[i] != commits.iloc[start]:
            first, last = int(history.epoch.iloc[start]), int(history.epoch.iloc[i - 1])
            span = f"epoch {first}" if first == last else f"epochs {first}–{last}"
            stretches.append(f"{commits.iloc[start][:7] or 'not recorded'} ({span})")
            start = i
    return ", ".join(stretches)


RESUMED = re.compile(r"resumed \S+ from .*? after epoch (\d+)/(\d+)")


def notebook_epochs(folder: Path, epochs: int) -> str:
    """Which epochs the run's executed notebook (results/<run>/notebook.ipynb) trained itself: a run
    resumed from a checkpoint says so in its output, and its earlier epochs ran in earlier sessions."""
    path = folder / "notebook.ipynb"
    if not path.is_file():
        return "none (command line)"
    text = path.read_text()
    resumed = RESUMED.search(text)
    if not resumed:
        return f"1–{epochs}"
    after = int(resumed.group(1))
    if after >= epochs:
        return f"none (resumed after the last epoch, {after})"
    return (f"{after + 1}–{epochs}" if after + 1 < epochs else f"{epochs}") + f" (resumed after {after})"


def benchmark_table(bench: dict) -> pd.DataFrame:
    rows = []
    for model, entry in bench["models"].items():
        rows.append({"model": model, "reference img/s": entry.get("reference", {}).get("images_per_s"),
                     "fast img/s": entry["fast"]["images_per_s"], "speed-up": entry.get("speedup"),
                     "reference share of its peak": entry.get("reference", {}).get("peak_share"),
                     "fast share of its peak": entry["fast"].get("peak_share"),
                     "fast peak mem (MB)": entry["fast"].get("peak_memory_mb"),
                     "compiled img/s": entry.get("compiled", {}).get("images_per_s"),
                     "compile time (s)": entry.get("compiled", {}).get("warmup_s")})
    return pd.DataFrame(rows).set_index("model")


PIPELINES = ("reference", "fast", "compiled")


def latest_benchmarks(benchmarks: dict[str, dict]) -> tuple[pd.DataFrame, list[str]]:
    """One row per device, model and setting (batch size, pipeline): the newest measurement of it
    across the benchmark files. Also returns the files none of whose measurements is the newest."""
    newest: dict[tuple, tuple[str, str, dict, dict]] = {}
    for stem, bench in benchmarks.items():
        for model, entry in bench.get("models", {}).items():
            for pipeline in PIPELINES:
                if pipeline in entry:
                    key = (bench["device"], model, bench["settings"]["batch_size"], pipeline)
                    if key not in newest or bench["date"] > newest[key][0]:
                        newest[key] = (bench["date"], stem, bench, entry)
    rows = []
    for (device, model, batch, pipeline), (date, stem, bench, entry) in sorted(newest.items()):
        measured = entry[pipeline]
        reference = entry.get("reference", {}).get("images_per_s")
        precision = measured.get("precision") or "fp32"
        if pipeline == "compiled" and not compiled_fast_path(entry):   # the oldest files compiled the fp32
            pipeline = "reference + compile"                            # reference pipeline: say which it was
        peak = peak_for(bench, precision)
        rows.append({"device": machine_name(device), "model": model, "batch": batch, "pipeline": pipeline,
                     "precision": precision, "img/s": f"{measured['images_per_s']:,.0f}",
                     "× reference": f"×{measured['images_per_s'] / reference:.2f}"
                     if reference and pipeline != "reference" else "",
                     # against the peak of the row's own precision (an fp32 row against the fp32 peak)
                     "share of its peak": measured["achieved_gflops"] / peak if "achieved_gflops" in measured
                     else measured.get("peak_share"),
                     "peak from": "matmul, conv" if "conv_peak_gflops" in bench else "matmul",
                     "peak mem (MB)": f"{measured['peak_memory_mb']:,.0f}" if measured.get("peak_memory_mb") else "",
                     "file": f"{stem}.json", "date": date[:10]})
    used = {row["file"] for row in rows}
    older = [stem for stem in benchmarks if "models" in benchmarks[stem] and f"{stem}.json" not in used]
    table = pd.DataFrame(rows).set_index(["model", "batch", "pipeline"]) if rows else pd.DataFrame()
    if rows and table["device"].nunique() == 1:      # one machine: the caption names it, not every row
        table = table.drop(columns="device")
    return table, older


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Human formatting for display, as text: accuracies and shares as percentages, other numbers in
    one format per column (`number_format`), missing values empty."""
    shown = table.copy().astype(object)
    for column in shown.columns:
        if "acc" in str(column) or "share" in str(column):
            shown[column] = table[column].map(lambda v: f"{v:.2%}" if is_number(v) else "" if is_missing(v) else v)
        else:
            fmt = number_format(table[column])
            shown[column] = table[column].map(lambda v: fmt.format(v) if is_number(v) else "" if is_missing(v) else v)
    return shown


def is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def constant_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The frame without the columns that hold one value in every row (when it has several rows), and
    those columns said once: 'batch 128, peak lr 0.1'."""
    if len(frame) < 2:
        return frame, ""
    constant = [c for c in frame.columns if frame[c].astype(str).nunique() == 1]
    return frame.drop(columns=constant), ", ".join(f"{c} {frame[c].iloc[0]}" for c in constant)


def markdown_table(frame) -> str:
    """A markdown table; every column of numbers in one format (its decimals set by its largest value),
    empty cells for missing values."""
    frame = frame.reset_index()
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    formats = [number_format(frame[column]) for column in frame.columns]

    def cell(v, fmt):
        return "" if is_missing(v) else fmt.format(v) if is_number(v) else str(v)
    return "\n".join([header, rule] + ["| " + " | ".join(cell(v, f) for v, f in zip(row, formats)) + " |"
                                       for row in frame.itertuples(index=False)])


def number_format(column: pd.Series) -> str:
    """One format for a column's numbers, with thousands separators: whole numbers as they are; else
    the decimals the largest value needs for three significant digits (none from 100 up), raised so
    the smallest non-zero value keeps two, at most 4."""
    values = [abs(float(v)) for v in column if is_number(v)]
    if not values or all(v.is_integer() for v in values):
        return "{:,.0f}"
    decimals = max(0, 2 - math.floor(math.log10(max(values)))) if max(values) > 0 else 0
    smallest = min((v for v in values if v > 0), default=0)
    if smallest:
        decimals = max(decimals, 1 - math.floor(math.log10(smallest)))
    return f"{{:,.{min(decimals, 4)}f}}"
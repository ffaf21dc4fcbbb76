"""Which runs a comparison shows: loading every run in results/, grouping one model's runs by epoch
budget and recipe (seeds of one recipe together), and picking each model's longest run, with the
recipe chosen on val. A broken run is skipped with a warning that names its file."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from labkit.paths import results_root
from labkit.reporting.stats import seed_summary
from labkit.runs.store import RunDataError, list_runs, load_run
from labkit.training.checkpoint import saved_config
from labkit.training.config import RECIPE_FIELDS, TrainConfig

# The models in report order; each one's first run (15 epochs, the CNN's 30) is named after it.
DEFAULT_RUNS = ("cnn", "resnet18", "plain18", "densenet_cifar", "se_resnet18", "se_resnet18_imagenet_stem")


def load_runs(names=DEFAULT_RUNS, root: Path | None = None, problems: list[str] | None = None
              ) -> dict[str, dict | None]:
    """{name: run dict from `load_run`, or None where results/<name>/ does not exist or is broken}.
    A broken run is skipped with a warning that names the file, also appended to `problems`."""
    runs = {}
    for name in names:
        try:
            runs[name] = load_run(name, root)
        except FileNotFoundError:
            runs[name] = None
        except RunDataError as err:
            runs[name] = None
            skip(f"run {name} skipped: {err}", problems)
    return runs


def load_every_run(root: Path | None = None, problems: list[str] | None = None) -> dict[str, dict | None]:
    """Every run in the results root (None for a broken one, with a warning), by run name."""
    return load_runs(list_runs(root), root, problems)


def longest_runs(every_run: dict) -> dict[str, dict | None]:
    """Each model's run at its longest epoch budget (of the recipe chosen on val, `budget_groups`), keyed
    by run name, in DEFAULT_RUNS order then any other model. Where several seeds ran at that budget,
    the notebook's run (the one with results/<run>/notebook.ipynb) stands for them, else the first by
    name. A model of DEFAULT_RUNS with no readable run maps its own name to None, so it is reported as
    missing."""
    grouped = runs_by_model(every_run)
    chosen: dict[str, dict | None] = {}
    for model in list(DEFAULT_RUNS) + sorted(set(grouped) - set(DEFAULT_RUNS)):
        if model not in grouped:
            chosen[model] = None
            continue
        _, group = budget_groups(grouped[model])[-1]
        name, run = representative(group)
        chosen[name] = run
    return chosen


def runs_at_each_budget(every_run: dict) -> list[tuple[int, dict[str, dict]]]:
    """Every epoch budget some model ran, longest first, each with every model's run at that budget
    (its recipe chosen on val, as in `longest_runs`): the sets on which a claim compares like with like."""
    budgets: dict[int, dict[str, dict]] = {}
    for entries in runs_by_model(every_run).values():
        for epochs, group in budget_groups(entries):
            name, run = representative(group)
            budgets.setdefault(epochs, {})[name] = run
    return sorted(budgets.items(), key=lambda item: -item[0])


def first_runs(every_run: dict) -> dict:
    """Each model's first run, named after the model (15 epochs, the CNN's 30), or None."""
    return {name: every_run.get(name) for name in DEFAULT_RUNS}


def representative(group: list[tuple[str, dict]]) -> tuple[str, dict]:
    """The run that stands for seeds of one recipe: the notebook's run, else the first by name."""
    return min(group, key=lambda entry: (not is_notebook_run(entry[1]), entry[0]))


def is_notebook_run(run: dict) -> bool:
    folder = run.get("folder")
    return folder is not None and (folder / "notebook.ipynb").is_file()


def select_runs(runs: str, root: Path | None = None, problems: list[str] | None = None) -> dict[str, dict | None]:
    """The runs a comparison or analysis names: "longest" is each model's longest run (`longest_runs`),
    anything else a comma-separated list of run names."""
    if runs.strip() == "longest":
        return longest_runs(load_every_run(root, problems))
    names = [name.strip() for name in runs.split(",") if name.strip()]
    if not names:
        raise ValueError("runs is empty; give 'longest' or run names separated by commas, e.g. 'cnn,resnet18'")
    return load_runs(names, root, problems)


def skip(message: str, problems: list[str] | None) -> None:
    warnings.warn(message, stacklevel=3)
    if problems is not None:
        problems.append(message)


def load_json_files(folder: Path, problems: list[str] | None = None) -> dict[str, dict]:
    """{file stem: content} for folder/*.json; a truncated or damaged file is skipped with a warning."""
    loaded = {}
    for path in sorted(folder.glob("*.json")):
        try:
            loaded[path.stem] = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            skip(f"{path} skipped: not valid JSON ({err}); it is truncated or damaged", problems)
    return loaded


def runs_by_model(runs: dict) -> dict[str, list[tuple[str, dict]]]:
    """{model: [(run name, run), ...] ordered by epochs}: one model trained at several budgets. Models
    come in DEFAULT_RUNS order, then any others by name."""
    grouped: dict[str, list[tuple[str, dict]]] = {}
    for name, run in present(runs).items():
        grouped.setdefault(run["metrics"]["model"], []).append((name, run))
    order = {model: i for i, model in enumerate(DEFAULT_RUNS)}
    return {model: sorted(grouped[model], key=lambda e: e[1]["metrics"]["epochs"])
            for model in sorted(grouped, key=lambda m: (order.get(m, len(order)), m))}


def budget_groups(entries: list[tuple[str, dict]]) -> list[tuple[int, list[tuple[str, dict]]]]:
    """One model's runs grouped by epoch budget, shortest first. Runs of one recipe at a budget are
    seeds; where several recipes ran at a budget, the one with the best mean final val accuracy stands
    for it (recipes are chosen on val, never on test). A final fit on all training images (no val
    figures) stands for its budget before any run with val: its recipe was fixed on val beforehand."""
    def rank(group):
        val, _ = seed_summary(group, "final_val_accuracy")
        return (val is None, val or 0.0)
    return [(epochs, max(recipes, key=rank)) for epochs, recipes in recipe_variants(entries)]


def recipe_variants(entries: list[tuple[str, dict]]) -> list[tuple[int, list[list[tuple[str, dict]]]]]:
    """One model's runs by epoch budget, shortest first, each budget's runs split by recipe (the seeds
    of one recipe together), recipes in order of their first run."""
    budgets: dict[int, dict[tuple, list[tuple[str, dict]]]] = {}
    for name, run in entries:
        budgets.setdefault(run["metrics"]["epochs"], {}).setdefault(tuple(recipe(run).items()), []).append((name, run))
    return [(epochs, list(recipes.values())) for epochs, recipes in sorted(budgets.items())]


def recipe(run: dict) -> dict:
    """The run's RECIPE_FIELDS settings, with TrainConfig's defaults for fields older runs predate."""
    config = saved_config(run["metrics"].get("config", {}), TrainConfig)
    return {name: config[name] for name in RECIPE_FIELDS}


def recipe_difference(group: list[tuple[str, dict]], other: list[tuple[str, dict]]) -> str:
    """'cutout 12': the settings where `group`'s recipe differs from `other`'s."""
    mine, theirs = recipe(group[0][1]), recipe(other[0][1])
    return ", ".join(f"{name} {value}" for name, value in mine.items() if value != theirs[name])


def present(runs: dict) -> dict:
    return {name: run for name, run in runs.items() if run is not None}


def is_final_fit(run: dict) -> bool:
    """A run trained on all 50,000 training images: it held out no val split."""
    return not run["metrics"].get("val_images", 1)


def val_stand_ins(runs: dict, every_run: dict) -> dict[str, str]:
    """{final fit: the run whose val curve stands for it}: for each final fit among `runs`, its model's
    longest run with a val split (of the recipe chosen on val, `budget_groups`), the run on which the
    final fit's recipe was judged. A final fit whose model has no run with val is left out, and so is one
    whose stand-in is among `runs` already, drawn there as itself."""
    with_val = {name: run for name, run in present(every_run).items() if not is_final_fit(run)}
    grouped = runs_by_model(with_val)
    stand_ins = {}
    for name, run in present(runs).items():
        model = run["metrics"]["model"]
        if is_final_fit(run) and model in grouped:
            stand_in = representative(budget_groups(grouped[model])[-1][1])[0]
            if stand_in not in runs:
                stand_ins[name] = stand_in
    return stand_ins


def one_per_model(runs: dict) -> dict[str, dict]:
    """{model: run} for the present runs; two runs of one model are an error, not a silent pick."""
    names: dict[str, str] = {}
    for name, run in present(runs).items():
        model = run["metrics"]["model"]
        if model in names:
            raise ValueError(f"the claims compare one run per model, but {model} has two: {names[model]} and {name}")
        names[model] = name
    return {model: runs[name] for model, name in names.items()}


def saved_gates(run: dict) -> pd.DataFrame | None:
    """The SE gate statistics per block that the run's notebook saved (figures/excitation.csv), or None."""
    if not run.get("folder"):
        return None
    path = Path(run["folder"]) / "figures" / "excitation.csv"
    return pd.read_csv(path, index_col=0).rename_axis("block") if path.is_file() else None


def load_benchmarks(root: Path | None = None, problems: list[str] | None = None) -> dict[str, dict]:
    return load_json_files((root or results_root()) / "benchmarks", problems)


def on_common_data(runs: dict) -> tuple[dict, list[str]]:
    """The runs trained on the data set most runs used (by checksum), and the names of the others (a
    quick run on synthetic data, say), which a comparison must not mix in."""
    checksums = [run["metrics"]["data_checksum"] for run in present(runs).values()]
    if not checksums:
        return runs, []
    common = max(set(checksums), key=checksums.count)
    other = [name for name, run in present(runs).items() if run["metrics"]["data_checksum"] != common]
    return {name: run for name, run in runs.items() if name not in other}, other

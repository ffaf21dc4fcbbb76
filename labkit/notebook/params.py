"""The notebooks' parameters: papermill's injected names checked against the known ones, the
training and analysis settings validated in the first code cell, and smoke mode.

With env LABKIT_SMOKE=1 (set by the test suite) every notebook trains one epoch on the small
synthetic data set, so nbval runs all six in a few minutes; results then go wherever
LABKIT_RESULTS points (the suite points it at a temporary folder).
"""
from __future__ import annotations

import ast
from pathlib import Path

from labkit.data import Cifar10, check_data_spec, load_cifar10
from labkit.models import available_models
from labkit.paths import results_root, smoke_mode
from labkit.reporting.select import load_every_run, longest_runs
from labkit.robustness.suite import AnalysisSettings
from labkit.runs.store import check_destinations, list_runs, run_dir, save_run
from labkit.training.checkpoint import saved_settings
from labkit.training.config import (RUN_NAME, SYNTHETIC_VAL_SIZE, TrainConfig, defaults_for, smoke_config,
                                    unfinished_run)
from labkit.training.loop import fit, refuse_to_replace

SMOKE = smoke_mode()
# The model notebooks and the models each trains (the first is its default): each shows its family's inside.
NOTEBOOK_MODELS = {
    "01_cnn": ("cnn",),
    "02_resnet18": ("resnet18", "plain18"),
    "03_densenet": ("densenet_cifar",),
    "04_se_resnet18": ("se_resnet18", "se_resnet18_imagenet_stem"),
}


def injected_parameters() -> set[str]:
    """Names papermill injected (`-p name value`) in this kernel: it runs them as a cell that
    starts with the line '# Parameters'. Empty outside papermill."""
    try:
        from IPython import get_ipython
    except ImportError:
        return set()
    shell = get_ipython()
    cells = [cell for cell in (shell.user_ns.get("In", []) if shell else []) if cell.startswith("# Parameters\n")]
    if not cells:
        return set()
    tree = ast.parse(cells[-1])
    return {target.id for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def reject_unknown_parameters(known) -> None:
    """Fail with the valid names when papermill was given a parameter this notebook does not take
    (papermill itself only logs 'Passed unknown parameter' and carries on)."""
    unknown = sorted(injected_parameters() - set(known))
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {', '.join(unknown)}; this notebook takes: "
                         f"{', '.join(sorted(known))}")


def configure(notebook: str, **parameters) -> TrainConfig:
    """Check the parameters of `notebook` (a key of NOTEBOOK_MODELS) and build the training config.
    Fails here, in the first code cell, before any data is decoded or model built, with a message
    naming the bad value, an unknown parameter name, a model another notebook trains, or a run name
    that would replace a finished run. Smoke mode overrides the size."""
    reject_unknown_parameters(parameters)
    check_notebook_model(notebook, parameters.get("model", NOTEBOOK_MODELS[notebook][0]))
    from_checkpoint = set()
    if parameters.get("resume") and not SMOKE:
        parameters, from_checkpoint = resumed_parameters(notebook, parameters)
    data = str(parameters.get("data", "auto"))
    check_data_spec(data)
    chosen = injected_parameters() | from_checkpoint
    if data == "synthetic" and "val_size" not in chosen and parameters.get("val_size", 0) > SYNTHETIC_VAL_SIZE:
        print(f"data 'synthetic' has 1,000 train images: holding out {SYNTHETIC_VAL_SIZE} for val, not "
              f"{parameters['val_size']:,}")
        parameters["val_size"] = SYNTHETIC_VAL_SIZE
    config = TrainConfig(**{**parameters, "progress": True})       # validates what the user asked for
    check_notebook_model(notebook, config.model)                   # a resumed run's model comes from its checkpoint
    if SMOKE:
        print("LABKIT_SMOKE=1: smoke mode, 1 epoch on synthetic data; results go to", run_dir(""))
        config = smoke_config(config, max_epochs=1, resume=False)     # nbval runs every notebook
    refuse_to_replace(config)
    check_destinations(config.run_name)
    print(f"run {config.run_name}: {config.model}, {config.epochs} epochs{', resuming' if config.resume else ''}; "
          f"results will go to {run_dir(config.run_name)}")
    return config


def check_notebook_model(notebook: str, model: str) -> None:
    """Refuse a model another notebook trains, naming that notebook (an unknown name is TrainConfig's
    to refuse, with the valid ones)."""
    if model in available_models() and model not in NOTEBOOK_MODELS[notebook]:
        home = next(name for name, models in NOTEBOOK_MODELS.items() if model in models)
        raise ValueError(f"notebook {notebook} trains {' or '.join(NOTEBOOK_MODELS[notebook])}, not "
                         f"{model!r}: use notebooks/{home}.ipynb")


def resumed_parameters(notebook: str, parameters: dict) -> tuple[dict, set[str]]:
    """The parameters of a resumed run, and the names taken from its checkpoint: the settings it was
    written with, as on the command line, except those the notebook was told, by papermill (`-p name
    value`) or by a value in the parameters cell other than its default. So `-p resume True` alone
    continues a run that started with other `-p` values, and a value given on purpose still reaches the
    checkpoint's check."""
    run = parameters.get("run_name") or unfinished_run(parameters.get("model", NOTEBOOK_MODELS[notebook][0]))
    defaults = defaults_for(NOTEBOOK_MODELS[notebook][0])
    told = injected_parameters() | {name for name, value in parameters.items() if value != defaults[name]}
    kept = {name: value for name, value in saved_settings(run).items() if name not in told}
    changed = [f"{name} {value!r} (parameters cell: {parameters[name]!r})" for name, value in kept.items()
               if name in parameters and parameters[name] != value]
    if changed:
        print(f"resuming {run} with the settings it started with: {', '.join(changed)}")
    return {**parameters, **kept, "run_name": run}, set(kept)


def load_data(config: TrainConfig) -> Cifar10:
    data = load_cifar10(config.data)
    print(f"data: {data.source} from {data.location} (checksum {data.checksum[:16]}…), "
          f"{len(data.train_labels)} train / {len(data.test_labels)} test images")
    return data


ANALYSIS_SMOKE_SIZES = dict(calibration_size=200, corruption_size=50, attack_size=20)


def model_of_run(run_name: str) -> str:
    """The model a run name stands for: 'resnet18' and 'resnet18-40ep' both mean resnet18."""
    for model in sorted(available_models(), key=len, reverse=True):
        if run_name == model or run_name.startswith(model + "-"):
            return model
    raise ValueError(f"run name {run_name!r} does not start with a model name ({', '.join(available_models())})")


def configure_analysis(runs: str, results_dir: str, epsilons: str, save: bool = True, analyse: bool = True,
                       **settings):
    """Check the analysis notebook's parameters: (run names, results root or None, AnalysisSettings).
    `runs` is "longest" (each model's longest run) or run names, each of which must be in the results
    root. In smoke mode the subsets shrink, and a run that is not there (for "longest": a model with
    no run) is trained for one epoch on synthetic data first."""
    reject_unknown_parameters(["runs", "results_dir", "epsilons", "data", "save", "analyse", *settings])
    for name, value in (("save", save), ("analyse", analyse)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    root = Path(results_dir) if results_dir else None
    if root is not None and not root.is_dir():
        raise ValueError(f"results_dir {results_dir!r} is not a folder")
    try:
        budgets = tuple(float(e) for e in str(epsilons).split(",") if e.strip())
    except ValueError:
        raise ValueError(f"epsilons must be numbers separated by commas (in units of 1/255), got {epsilons!r}") from None
    config = AnalysisSettings(epsilons=budgets, **settings)
    if runs.strip() == "longest":
        names = [name for name, run in longest_runs(load_every_run(root)).items() if run is not None or SMOKE]
        if not names:
            raise ValueError(f"no saved run in {root or results_root()}; train one with a model notebook first")
    else:
        names = [name.strip() for name in runs.split(",") if name.strip()]
    if not names:
        raise ValueError("runs is empty; give 'longest' or run names separated by commas, e.g. 'cnn,resnet18'")
    bad = [name for name in names if not RUN_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"runs must be run names (letters, digits, '_', '-', '.'; no path separators), got "
                         f"{', '.join(map(repr, bad))}")
    if SMOKE:
        config = AnalysisSettings(**{**settings, **ANALYSIS_SMOKE_SIZES, "epsilons": budgets})
        print("LABKIT_SMOKE=1: smoke mode, small subsets; runs come from", root or results_root())
        for name in names:   # throwaway one-epoch runs: a leftover checkpoint of the same name is replaced
            if not ((root or results_root()) / name / "metrics.json").is_file():
                smoke_run = TrainConfig(model=model_of_run(name), run_name=name, progress=False)
                save_run(fit(smoke_config(smoke_run, max_epochs=1, resume=False, overwrite=True)), root)
    missing = [name for name in names if not ((root or results_root()) / name / "metrics.json").is_file()]
    if missing:
        raise ValueError(f"no saved run {', '.join(missing)} in {root or results_root()}; runs there: "
                         f"{', '.join(list_runs(root)) or 'none'}")
    return names, root, config


def analysis_data(data: str) -> Cifar10:
    """The data set to analyse on: the one the runs trained on (synthetic in smoke mode)."""
    return load_cifar10("synthetic" if SMOKE else data)

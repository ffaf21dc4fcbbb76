"""What a newcomer meets first: fresh runs that never collide, defaults that are the report's recipe,
every setting declared once with its help, and a clean tree."""
import importlib
import json
import subprocess
from dataclasses import fields

import nbformat
import pytest

from labkit import data as datalib
from labkit.models import available_models
from labkit.notebook.params import NOTEBOOK_MODELS, configure
from labkit.paths import REPO_ROOT
from labkit.reporting.select import load_every_run, longest_runs, on_common_data
from labkit.robustness.suite import AnalysisSettings
from labkit.train import main, parse_args
from labkit.training.checkpoint import checkpoint_path
from labkit.training.config import RECIPE_FIELDS, TrainConfig, defaults_for, notebook_settings

TINY = ["--model", "cnn", "--epochs", "1", "--data", "synthetic", "--batch-size", "64", "--no-progress"]


def run_line(out: str) -> str:
    """The line naming the run, which comes before the data is loaded and any epoch trains."""
    lines = [line for line in out.splitlines() if not line.startswith("LABKIT_SMOKE")]
    assert lines[0].startswith("run cnn-"), lines[:3]
    return lines[0]


def test_every_command_line_option_prints_help(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    options = [f"--{f.name.replace('_', '-')}" for f in fields(TrainConfig)] + ["--download", "--stop-after"]
    for option in options:
        entry = text.split(option, 1)[1].split("\n  --", 1)[0]
        assert len(entry.split()) > 3, f"{option} has no help text"



@pytest.mark.parametrize("command, shared", [
    ("tune", ("model", "data", "val_size", "device")),
    ("bench", ("batch_size", "device")),
    ("doctor", ("batch_size", "device")),
])
def test_other_commands_take_shared_settings_as_declared_for_training(command, shared, capsys):
    main_of = importlib.import_module(f"labkit.{command}").main
    with pytest.raises(SystemExit):
        main_of(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    declared = {f.name: f for f in fields(TrainConfig)}
    for name in shared:
        assert f"--{name.replace('_', '-')}" in text
        assert " ".join(declared[name].metadata["help"].split()) in text, f"{command} --{name}: not the declared help"
    if "model" in shared:
        with pytest.raises(SystemExit):
            main_of(["--model", "resnet19"])
        assert "invalid choice: 'resnet19'" in capsys.readouterr().err


def test_fresh_runs_get_new_names_and_never_touch_a_finished_run(capsys, isolated_roots):
    assert main([*TINY, "--run-name", "cnn"]) == 0                      # a committed-like run under the model's name
    finished = (isolated_roots / "results" / "cnn" / "metrics.json").read_bytes()
    capsys.readouterr()
    names = []
    for _ in range(2):
        assert main(TINY) == 0
        name_line = run_line(capsys.readouterr().out)                   # printed before any data is read
        names.append(name_line.split()[1].rstrip(":"))
    assert len(set(names)) == 2 and "cnn" not in names
    assert all((isolated_roots / "results" / n / "metrics.json").is_file() for n in names)
    assert (isolated_roots / "results" / "cnn" / "metrics.json").read_bytes() == finished


def test_resume_without_a_name_continues_the_models_newest_unfinished_run(capsys, isolated_roots):
    assert main([*TINY, "--epochs", "2", "--lr", "0.05", "--stop-after", "1"]) == 0
    started = run_line(capsys.readouterr().out).split()[1].rstrip(":")
    assert checkpoint_path(started).is_file() and not (isolated_roots / "results" / started).exists()
    assert main(["--model", "cnn", "--resume", "--no-progress"]) == 0    # no option repeated: the run's own
    out = capsys.readouterr().out
    assert f"resumed {started}" in out and (isolated_roots / "results" / started / "metrics.json").is_file()
    assert main([*TINY, "--epochs", "2", "--resume"]) == 2              # nothing unfinished is left
    assert "no checkpoint of an unfinished cnn run" in capsys.readouterr().err


def test_an_existing_run_name_is_refused_before_any_data_is_read(capsys, monkeypatch):
    assert main([*TINY, "--run-name", "taken"]) == 0
    monkeypatch.setattr(datalib, "load_cifar10", lambda *a, **k: pytest.fail("data loaded before the check"))
    assert main([*TINY, "--run-name", "taken"]) == 2
    assert "already has" in capsys.readouterr().err


def test_the_command_line_starts_from_the_models_headline_recipe(monkeypatch):
    monkeypatch.setenv("LABKIT_SMOKE", "0")
    args = vars(parse_args(["--model", "densenet_cifar"]))
    from labkit.train import config_from_args
    args.pop("download"), args.pop("stop_after")
    config = config_from_args(args)
    assert (config.epochs, config.cutout, config.ema_decay, config.tta, config.val_size) == (80, 12, 0.997, 2, 0)


def notebook_parameters(name: str) -> dict:
    book = nbformat.read(REPO_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    scope: dict = {}
    exec(cell.source, scope)
    return {k: v for k, v in scope.items() if not k.startswith("__")}


@pytest.mark.parametrize("name", NOTEBOOK_MODELS)
def test_each_notebook_takes_every_setting_of_its_model_with_the_recipe_as_default(name):
    model = NOTEBOOK_MODELS[name][0]
    parameters = notebook_parameters(name)
    assert list(parameters) == [f.name for f in notebook_settings(model)]
    defaults = defaults_for(model)
    assert parameters == {key: defaults[key] for key in parameters}


@pytest.mark.parametrize("name", NOTEBOOK_MODELS)
def test_each_notebooks_defaults_are_the_recipe_of_the_run_the_report_headlines(name):
    every_run, _ = on_common_data(load_every_run(REPO_ROOT / "results"))
    model = NOTEBOOK_MODELS[name][0]
    headline = next(run for run in longest_runs(every_run).values() if run and run["metrics"]["model"] == model)
    recorded = {**{f.name: f.default for f in fields(TrainConfig)}, **headline["metrics"]["config"]}
    parameters = {**defaults_for(model), **notebook_parameters(name)}    # a setting that does not apply: its default
    for key in (*RECIPE_FIELDS, "epochs", "tta", "val_size"):
        assert parameters[key] == recorded[key], f"{name}: {key} {parameters[key]!r} vs the headline run's {recorded[key]!r}"


def test_a_notebook_trains_its_own_family_and_names_the_notebook_of_another(isolated_roots):
    """01_cnn's look inside reads the CNN's first convolution, 04's the SE gates: another model would
    fail there, hours into the run, so the first cell refuses it."""
    assert configure("02_resnet18", model="plain18", data="synthetic", run_name="control").model == "plain18"
    with pytest.raises(ValueError, match=r"notebook 01_cnn trains cnn, not 'se_resnet18': use notebooks/04_se_resnet18"):
        configure("01_cnn", model="se_resnet18", data="synthetic")
    assert sorted(m for models in NOTEBOOK_MODELS.values() for m in models) == sorted(available_models())


def test_the_committed_notebooks_are_what_the_builder_writes(tmp_path):
    builder = REPO_ROOT / "scripts" / "build_notebooks.py"
    spec = __import__("importlib").util.spec_from_file_location("build", builder)
    build = __import__("importlib").util.module_from_spec(spec)
    spec.loader.exec_module(build)
    books = {name: build.architecture_notebook(name, spec_) for name, spec_ in build.ARCHITECTURES.items()}
    books.update({"05_comparison": build.comparison_notebook(), "06_analysis": build.analysis_notebook()})
    for name, book in books.items():
        committed = nbformat.read(REPO_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in book.cells], \
            f"notebooks/{name}.ipynb is stale: run python scripts/build_notebooks.py"


def test_the_analysis_notebook_takes_every_analysis_setting_with_its_declared_default():
    parameters = notebook_parameters("06_analysis")
    for f in fields(AnalysisSettings):
        expected = ",".join(f"{e:g}" for e in f.default) if f.name == "epsilons" else f.default
        assert parameters[f.name] == expected, f"06_analysis: {f.name} {parameters[f.name]!r}, declared {expected!r}"


def test_no_build_output_is_tracked_and_runs_record_portable_data_paths():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    assert not [path for path in tracked if ".egg-info" in path]
    for path in (REPO_ROOT / "results").glob("*/metrics.json"):
        location = json.loads(path.read_text())["data_location"]
        assert not location.startswith("/"), f"{path}: {location}"

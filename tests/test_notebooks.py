"""papermill: notebooks run headless with parameters; bad values fail in the first code cell."""
from pathlib import Path

import papermill as pm
import pytest

from labkit.data import synthetic_cifar10
from labkit.notebook import params
from labkit.runs.store import save_run
from labkit.training.config import TrainConfig, defaults_for, notebook_settings
from labkit.training.loop import fit

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


BAD_TRAINING_PARAMETERS = [
    (dict(model="resnet19"), "unknown model 'resnet19'; valid names: cnn, resnet18"),
    (dict(data="/no/such/cifar.tar.gz"), "data path '/no/such/cifar.tar.gz' does not exist"),
    (dict(run_name="../../etc"), "without path separators"),
    (dict(epochs=2, precision="fp8"), "precision must be one of auto, bf16, fp16, fp32"),
    (dict(cutout=12.5), "cutout must be an integer in [0, 32]"),
]


@pytest.mark.parametrize("parameters, message", BAD_TRAINING_PARAMETERS)
def test_the_first_code_cell_refuses_bad_values(parameters, message):
    """What the configure cell of 01_cnn calls; the two notebook runs below show that it fails there."""
    with pytest.raises(ValueError) as error:
        params.configure("01_cnn", **parameters)
    assert message in str(error.value)


@pytest.mark.parametrize("parameters, message", [
    (dict(epochs=0), "epochs must be an integer ≥ 1"),
    (dict(foo=1), "unknown notebook parameter(s) foo; this notebook takes: batch_size, channels_last, compile, cutout"),
])
def test_bad_parameters_fail_in_the_first_code_cell(tmp_path, parameters, message):
    output = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as error:
        pm.execute_notebook(str(NOTEBOOKS / "01_cnn.ipynb"), str(output), parameters=parameters,
                            kernel_name="python3", progress_bar=False)
    assert error.value.ename == "ValueError" and message in error.value.evalue
    executed = __import__("nbformat").read(output, 4)
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    failing = [i for i, c in enumerate(code_cells) if any(o.get("output_type") == "error" for o in c.outputs)]
    # code cells: parameters, injected-parameters, then the configure cell that must fail
    assert failing == [2]


def test_the_comparison_notebook_rejects_unknown_parameters_and_lists_its_own(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="unknown notebook parameter.*takes: results_dir, runs"):
        pm.execute_notebook(str(NOTEBOOKS / "05_comparison.ipynb"), str(tmp_path / "o.ipynb"), kernel_name="python3",
                            progress_bar=False, parameters=dict(run="cnn"))
    listed = {p["name"] for p in pm.inspect_notebook(str(NOTEBOOKS / "05_comparison.ipynb")).values()}
    assert listed == {"runs", "results_dir"}


def test_comparison_notebook_reads_the_given_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path / "runs"))
    data = synthetic_cifar10(train_per_class=20, test_per_class=5)
    for name in ("cnn", "resnet18"):
        save_run(fit(TrainConfig(model=name, run_name=name, epochs=2, batch_size=32, val_size=50,
                                 data="synthetic", progress=False), data))
    output = tmp_path / "comparison.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "05_comparison.ipynb"), str(output), kernel_name="python3",
                        progress_bar=False,
                        parameters=dict(runs="cnn,resnet18,se_resnet18", results_dir=str(tmp_path / "runs")))
    text = output.read_text()
    assert "'se_resnet18': 'missing'" in text
    assert "The deep networks (ResNet-18, SE-ResNet-18, DenseNet) beat the plain CNN" in text and "missing run(s): se_resnet18" in text


def test_a_headless_run_leaves_no_progress_bars_and_a_resumed_run_shows_earlier_epochs(tmp_path, monkeypatch):
    """papermill output keeps the epoch summaries only; after a resume it lists the epochs from
    the checkpoint's history too."""
    import nbformat

    monkeypatch.setenv("LABKIT_PROGRESS_INTERVAL", "0")     # redraw at every step: the worst case
    small = dict(epochs=2, batch_size=64, val_size=100, data="synthetic")
    fit(TrainConfig(**{**defaults_for("cnn"), **small, "progress": False}), synthetic_cifar10(), stop_after=1)
    output = tmp_path / "out.ipynb"
    monkeypatch.setenv("LABKIT_SMOKE", "0")
    pm.execute_notebook(str(NOTEBOOKS / "01_cnn.ipynb"), str(output), kernel_name="python3", progress_bar=False,
                        parameters=dict(small, resume=True))      # the model's newest unfinished run
    [training] = [c for c in nbformat.read(output, 4).cells if c.cell_type == "code" and "fit(config" in c.source]
    texts = [o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in training.outputs]
    shown = "".join(texts)
    assert "steps (" not in shown and "%|" not in shown        # no stale bars
    assert sum(1 for o in training.outputs if o.output_type == "display_data") == 1   # one bar output, not one per epoch
    assert "resumed cnn-" in shown and "] epoch 1/2" in shown and "] epoch 2/2" in shown


def test_a_notebook_resume_keeps_the_settings_the_run_started_with(monkeypatch, tiny_data):
    """`-p resume True` alone continues a run started with other `-p` values, as the command line's
    --resume does; a value given on purpose (injected, or edited in the parameters cell) still counts."""
    monkeypatch.setattr(params, "SMOKE", False)
    started = dict(epochs=2, batch_size=64, val_size=100, cutout=4, data="synthetic")
    fit(TrainConfig(**{**defaults_for("cnn"), **started, "run_name": "cnn-started", "progress": False}), tiny_data,
        stop_after=1)
    cell = {f.name: defaults_for("cnn")[f.name] for f in notebook_settings("cnn")}    # the notebook's defaults
    monkeypatch.setattr(params, "injected_parameters", lambda: {"resume"})
    config = params.configure("01_cnn", **{**cell, "resume": True})      # the model's newest unfinished run
    assert (config.run_name, config.epochs, config.batch_size, config.val_size, config.cutout, config.data) == \
        ("cnn-started", 2, 64, 100, 4, "synthetic")
    monkeypatch.setattr(params, "injected_parameters", lambda: {"resume", "epochs"})
    assert params.configure("01_cnn", **{**cell, "resume": True, "epochs": cell["epochs"]}).epochs == cell["epochs"]
    monkeypatch.setattr(params, "injected_parameters", set)              # JupyterLab: an edited cell counts
    assert params.configure("01_cnn", **{**cell, "resume": True, "epochs": 3}).epochs == 3
    fit(TrainConfig(**{**defaults_for("cnn"), **started, "val_size": 200, "run_name": "cnn-val200",
                       "progress": False}), tiny_data, stop_after=1)   # synthetic, but more val than the default 100
    monkeypatch.setattr(params, "injected_parameters", lambda: {"resume", "run_name"})
    assert params.configure("01_cnn", **{**cell, "resume": True, "run_name": "cnn-val200"}).val_size == 200
    with pytest.raises(ValueError, match="notebook 02_resnet18 trains resnet18 or plain18, not 'cnn': use "
                                         "notebooks/01_cnn.ipynb"):
        params.configure("02_resnet18", **{**cell, "model": "cnn", "resume": True})   # before looking for its run


@pytest.mark.parametrize("parameters, message", [
    (dict(epsilons="1,two"), "epsilons must be numbers separated by commas"),
    (dict(runs="no_such_run"), "no saved run no_such_run in"),
    (dict(runs="longest"), "no saved run in"),                          # nothing trained yet
])
def test_the_analysis_configure_cell_refuses_bad_values(monkeypatch, parameters, message):
    monkeypatch.setattr(params, "SMOKE", False)     # no smoke runs made up for a missing run
    with pytest.raises(ValueError) as error:
        params.configure_analysis(**{"runs": "longest", "results_dir": "", "epsilons": "1", **parameters})
    assert message in str(error.value)


@pytest.mark.parametrize("parameters, message", [
    (dict(attack_size=3), "attack_size must be an integer ≥ 10"),
    (dict(eps="1"), "unknown notebook parameter(s) eps; this notebook takes: analyse, attack_precision, attack_size"),
])
def test_the_analysis_notebook_fails_in_its_first_code_cell_on_bad_parameters(tmp_path, monkeypatch, parameters,
                                                                              message):
    monkeypatch.setenv("LABKIT_SMOKE", "0")      # no smoke runs made up for a missing run
    with pytest.raises(pm.PapermillExecutionError) as error:
        pm.execute_notebook(str(NOTEBOOKS / "06_analysis.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                            progress_bar=False, parameters=parameters)
    assert message in error.value.evalue

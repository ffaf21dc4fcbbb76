import json

import pytest

from labkit import tune
from labkit.data import synthetic_cifar10
from labkit.reporting.markdown import tuning_section
from labkit.runs.store import save_run
from labkit.training.config import TrainConfig
from labkit.training.loop import fit


def test_overrides_are_parsed_with_the_field_types():
    assert tune.parse_overrides("lr=0.2 batch_size=256,label_smoothing=0") == \
        {"lr": 0.2, "batch_size": 256, "label_smoothing": 0.0}
    assert tune.parse_overrides("") == {}
    for bad in ("lr", "epochs=3", "seed=1", "lr=fast"):
        with pytest.raises(ValueError, match="trial setting"):
            tune.parse_overrides(bad)


def test_trials_are_judged_on_val_recorded_once_and_never_touch_test(tmp_path, monkeypatch):
    data = synthetic_cifar10(train_per_class=20, test_per_class=5)
    data.test_images, data.test_labels = None, None   # any evaluation on test would raise
    base = TrainConfig(model="cnn", epochs=2, batch_size=32, val_size=50, data="synthetic")
    log = tmp_path / "tuning" / "cnn-2ep.json"
    records = tune.run_trials(base, [{}, {"lr": 0.05}], data, log)
    assert [r["run_name"] for r in records] == ["tune-cnn-2ep-base", "tune-cnn-2ep-lr0.05"]
    assert all(len(r["val_accuracy_by_epoch"]) == 2 and 0 <= r["final_val_accuracy"] <= 1 for r in records)
    assert json.loads(log.read_text())["trials"] == records
    calls = []
    monkeypatch.setattr(tune, "fit", lambda *a, **k: calls.append(a))
    assert tune.run_trials(base, [{"lr": 0.05}], data, log) == records and not calls
    assert "lr" in tune.summary(records)

    table = tune.trials_table(tune.load_logs(tmp_path)["cnn-2ep"])
    assert set(table.index) == {"base recipe", "lr 0.05"}
    assert list(table["final val acc"]) == sorted((r["final_val_accuracy"] for r in records), reverse=True)
    section = "\n".join(tuning_section(tmp_path))
    assert "## Recipe tuning: cnn, 2-epoch trials" in section and "2 trials" in section
    assert "| lr 0.05 |" in section and "validation images; the test split is never evaluated" in section


def test_a_run_without_test_evaluation_is_not_saved_as_a_result():
    data = synthetic_cifar10(train_per_class=10, test_per_class=2)
    result = fit(TrainConfig(model="cnn", epochs=1, batch_size=32, val_size=20, data="synthetic",
                             run_name="trial", progress=False), data, evaluate_test=False)
    assert result.test is None
    with pytest.raises(ValueError, match="without a test evaluation"):
        save_run(result)


def test_a_setting_is_adopted_only_when_it_wins_on_val_beyond_the_noise(tmp_path):
    import json

    def trial(overrides, val):
        return {"overrides": overrides, "final_val_accuracy": val,
                "config": {"val_size": 5000, "weight_decay": overrides.get("weight_decay", 5e-4)}}
    (tmp_path / "tuning").mkdir()
    for stem, candidate_val in (("clear", 0.80), ("close", 0.765)):
        log = {"model": "densenet_cifar", "epochs": 6,
               "trials": [trial({"cutout": 12}, 0.76), trial({"cutout": 12, "weight_decay": 1e-4}, candidate_val)]}
        (tmp_path / "tuning" / f"{stem}.json").write_text(json.dumps(log))
    assert tune.decided("clear", "weight_decay", 5e-4, 1e-4, tmp_path) == 1e-4     # +4 points, 2 SE ≈ 1.7
    assert tune.decided("close", "weight_decay", 5e-4, 1e-4, tmp_path) == 5e-4     # +0.5: within the noise
    with pytest.raises(ValueError, match="no pair of trials that differ only in lr"):
        tune.decided("clear", "lr", 0.1, 0.2, tmp_path)

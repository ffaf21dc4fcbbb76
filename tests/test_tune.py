import json

import pandas as pd
import pytest

from labkit import tune
from labkit.data import synthetic_cifar10
from labkit.reporting.markdown import tuning_section
from labkit.runs.store import save_run
from labkit.training.checkpoint import checkpoint_path
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
    # the same images by another path are the same trial; other images are not
    elsewhere = TrainConfig(**{**base.__dict__, "data": "/elsewhere/synthetic"})
    assert tune.run_trials(elsewhere, [{"lr": 0.05}], data, log) == records and not calls
    data.checksum = "other images"
    with pytest.raises(AttributeError):   # the stubbed fit returns no result: the trial runs again
        tune.run_trials(base, [{"lr": 0.05}], data, log)
    assert len(calls) == 1
    data.checksum = records[0]["data_checksum"]
    assert "lr" in tune.summary(records)

    table = tune.trials_table(tune.load_logs(tmp_path)["cnn-2ep"])
    assert set(table.index) == {"base recipe", "lr 0.05"}
    assert list(table["final val acc"]) == sorted((r["final_val_accuracy"] for r in records), reverse=True)
    assert list(table.columns[:2]) == ["val acc at epoch 1", "final val acc"]     # 2 epochs: the curve's marks
    six = {"trials": [dict(records[0], val_accuracy_by_epoch=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], final_val_accuracy=0.6)]}
    assert list(tune.trials_table(six).iloc[0, :4]) == [0.2, 0.3, 0.4, 0.6]    # epochs 2, 3, 4 of 6, and the last
    assert list(tune.trials_table(six).columns[:3]) == [f"val acc at epoch {e}" for e in (2, 3, 4)]
    short = dict(six["trials"][0], val_accuracy_by_epoch=[0.1, 0.2], final_val_accuracy=0.2)   # its own epochs
    mixed = tune.trials_table({"epochs": 6, "trials": [*six["trials"], short]})
    assert mixed["val acc at epoch 3"].isna().sum() == 1 and mixed["val acc at epoch 2"].notna().all()
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


def test_se_trials_record_their_gates_on_val_and_older_records_get_them_from_the_checkpoint(tmp_path, monkeypatch,
                                                                                             capsys):
    data = synthetic_cifar10(train_per_class=12, test_per_class=2)
    base = TrainConfig(model="se_resnet18", epochs=1, batch_size=32, val_size=40, data="synthetic", ema_decay=0.9)
    log = tmp_path / "tuning" / "se_resnet18-1ep.json"
    records = tune.run_trials(base, [{}, {"exempt_excitation_decay": True}], data, log)
    blocks = ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    for record in records:
        gates = record["val_gate_statistics"]
        assert list(gates) == blocks
        assert all(0 <= s["min"] <= s["mean gate"] <= s["max"] <= 1 and s["sd over images"] >= 0 for s in gates.values())
    # a trial recorded before trials measured gates: they are added from its checkpoint, without training again
    measured = records[1].pop("val_gate_statistics")
    log.write_text(json.dumps({"model": "se_resnet18", "epochs": 1, "trials": records}))
    monkeypatch.setattr(tune, "fit", lambda *a, **k: pytest.fail("a recorded trial was trained again"))
    again = tune.run_trials(base, [{"exempt_excitation_decay": True}], data, log)
    assert list(again[1]["val_gate_statistics"]) == blocks
    assert all(again[1]["val_gate_statistics"][b] == pytest.approx(measured[b], abs=2e-4) for b in blocks)
    assert json.loads(log.read_text())["trials"][1]["val_gate_statistics"] == again[1]["val_gate_statistics"]
    # a damaged checkpoint: said, and the trials go on without the statistics
    del again[1]["val_gate_statistics"]
    log.write_text(json.dumps({"model": "se_resnet18", "epochs": 1, "trials": again}))
    path = checkpoint_path(again[1]["run_name"])
    path.write_bytes(path.read_bytes()[:1000])
    assert "val_gate_statistics" not in tune.run_trials(base, [{"exempt_excitation_decay": True}], data, log)[1]
    assert "gate statistics not added" in capsys.readouterr().err


def test_the_gates_are_measured_on_every_class_equally_even_when_the_images_are_stored_class_by_class():
    import torch
    labels = torch.arange(10).repeat_interleave(600)            # a folder data set: class by class
    chosen = tune.gate_image_indices(labels, 5000, seed=0)
    assert len(chosen) == tune.GATE_IMAGES and labels[chosen].bincount().tolist() == [200] * 10
    assert len(tune.gate_image_indices(labels, 100, seed=0)) == 100      # a smaller val split: all of it


def gate_log(base_spread: float, exempt_spread: float, exempt_val: float) -> dict:
    def trial(overrides, spread, val):
        stats = {f"layer{i}.{j}": {"mean gate": 0.5, "sd over images": spread, "sd over channels": spread,
                                   "min": 0.5 - 4 * spread, "max": 0.5 + 4 * spread} for i in (1, 2, 3, 4) for j in (0, 1)}
        return {"overrides": overrides, "final_val_accuracy": val, "val_gate_statistics": stats,
                "config": {"val_size": 5000, "exempt_excitation_decay": overrides.get("exempt_excitation_decay", False)}}
    return {"model": "se_resnet18", "epochs": 6,
            "trials": [trial({"cutout": 12, "exempt_excitation_decay": True}, exempt_spread, exempt_val),
                       trial({"cutout": 12}, base_spread, 0.80)]}


def test_the_report_contrasts_the_gates_of_trials_that_differ_in_one_setting(tmp_path):
    from labkit.reporting.markdown import trial_gate_lines
    from labkit.reporting.overview import gate_findings

    (tmp_path / "tuning").mkdir()
    (tmp_path / "tuning" / "se_resnet18-6ep.json").write_text(json.dumps(gate_log(0.01, 0.06, 0.805)))
    lines = "\n".join(trial_gate_lines(gate_log(0.01, 0.06, 0.805)))
    assert "| exempt_excitation_decay False | sd over images | 0.010 |" in lines
    assert "With exempt_excitation_decay False: 8 of 8 SE blocks" in lines
    assert "With exempt_excitation_decay True: No SE block has flat gates" in lines
    assert "×6.0 to ×6.0 as much as with exempt_excitation_decay False" in lines and "+0.50 points, within" in lines
    [finding] = gate_findings(tmp_path)
    assert "with exempt_excitation_decay True against False (exempt_excitation_decay: no weight decay on the SE " \
           "excitation layers' weights) the gates vary ×6.0 as much between images" in finding
    assert "0 of 8 blocks are flat against 8 of 8" in finding
    assert finding.endswith("the accuracy does not measurably improve at this horizon.")
    (tmp_path / "tuning" / "se_resnet18-6ep.json").write_text(json.dumps(gate_log(0.01, 0.06, 0.85)))
    [finding] = gate_findings(tmp_path)
    assert "+5.00 points, beyond the noise" in finding and finding.endswith(").")
    assert gate_findings(tmp_path / "nothing") == [] and trial_gate_lines({"trials": []}) == []


def test_the_se_section_and_conclusions_say_which_gate_variant_the_headline_run_used(tmp_path):
    from labkit.reporting.markdown import gate_trial_lines
    from labkit.reporting.overview import gate_findings

    (tmp_path / "tuning").mkdir()
    log = gate_log(0.01, 0.06, 0.805)
    (tmp_path / "tuning" / "se_resnet18-6ep.json").write_text(json.dumps(log))
    folder = tmp_path / "se-final"
    (folder / "figures").mkdir(parents=True)
    pd.DataFrame({"mean gate": [0.5, 0.42], "sd over images": [0.001, 0.2], "sd over channels": [0.001, 0.1]},
                 index=pd.Index(["layer2.1", "layer4.1"], name="block")).to_csv(folder / "figures" / "excitation.csv")
    run = {"folder": folder, "metrics": {"model": "se_resnet18", "epochs": 80, "train_images": 50000, "val_images": 0,
                                         "config": {"exempt_excitation_decay": False}}}
    [line] = gate_trial_lines(run, {"se_resnet18-6ep": log})
    assert line.startswith("- trained with exempt_excitation_decay False. In the 6-epoch val trials (appendix), with "
                           "exempt_excitation_decay True against False")
    assert "final val accuracy +0.50 points, within" in line and "0 of 8 blocks are flat against 8 of 8" in line
    assert gate_trial_lines(dict(run, metrics=dict(run["metrics"], model="resnet18")), {"x": log}) == []
    [finding] = gate_findings(tmp_path, {"se_resnet18": [("se-final", run)]})
    assert finding.endswith("The headline run se-final (80 epochs on all 50,000 training images) trained with "
                            "exempt_excitation_decay False; on its test images 1 of its 2 blocks is flat, layer2.1, "
                            "after 80 epochs rather than the trials' 6.")
    (folder / "figures" / "excitation.csv").unlink()    # a run whose notebook saved no gates: the setting only
    [finding] = gate_findings(tmp_path, {"se_resnet18": [("se-final", run)]})
    assert finding.endswith("trained with exempt_excitation_decay False.")


def test_a_contrast_of_trials_that_change_several_settings_names_each_on_its_side():
    from labkit.reporting.overview import run_side, sides

    log = gate_log(0.01, 0.06, 0.805)
    log["trials"][0]["overrides"]["lr"] = 0.2
    log["trials"][0]["config"]["lr"] = 0.2
    [contrast] = tune.gate_contrasts(log)
    assert contrast["changed"] == {"lr": (0.1, 0.2), "exempt_excitation_decay": (False, True)}
    assert sides(contrast) == ("lr 0.2, exempt_excitation_decay True", "lr 0.1, exempt_excitation_decay False")
    run = {"metrics": {"config": {"lr": 0.2, "exempt_excitation_decay": True}}}
    assert run_side(contrast, run) == "lr 0.2, exempt_excitation_decay True"
    assert run_side(contrast, {"metrics": {"config": {"lr": 0.2}}}) is None     # a mix of the two sides

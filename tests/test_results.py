
import torch

from labkit.models import build_model
from labkit.runs.store import list_runs, load_model, load_run, save_run
from labkit.training.config import TrainConfig
from labkit.training.loop import fit


def test_saved_run_round_trips(tiny_data, isolated_roots):
    result = fit(TrainConfig(model="cnn", epochs=2, batch_size=32, val_size=50, progress=False,
                             data="synthetic", run_name="rt"), tiny_data)
    folder = save_run(result)
    assert folder == isolated_roots / "results" / "rt"
    assert list_runs() == ["rt"]
    run = load_run("rt")
    metrics = run["metrics"]
    for key in ("test_accuracy", "test_per_class_accuracy", "final_val_accuracy", "params", "flops_per_image",
                "training_wall_time_s", "images_per_s", "peak_memory_mb", "device", "torch_version",
                "data_source", "data_checksum", "config", "git_commit", "date", "epochs"):
        assert key in metrics, key
    assert metrics["flops_per_image"] > 2 * 62_006            # convs reuse weights across positions
    assert len(run["history"]) == 2
    assert run["confusion"].to_numpy().sum() == len(tiny_data.test_labels)
    weights = torch.load(folder / "model.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for k, v in weights.items() if "num_batches" not in k)
    reloaded = load_model("rt")
    with torch.no_grad():
        x = torch.randn(4, 3, 32, 32)
        result.model.eval()
        torch.testing.assert_close(reloaded(x), result.model(x), atol=2e-2, rtol=2e-2)
    assert not list(folder.glob(".*tmp*"))                 # atomic writes leave no temp files


def test_resnet18_weights_fit_in_25_mb(tmp_path):
    state = {k: v.half() if v.is_floating_point() else v for k, v in build_model("resnet18").state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    assert (tmp_path / "w.pt").stat().st_size < 25 * 2**20


def test_missing_run_is_reported():
    import pytest
    with pytest.raises(FileNotFoundError, match="no run 'ghost'"):
        load_run("ghost")


def test_history_with_columns_added_mid_run_is_saved(tiny_data, isolated_roots):
    """A run resumed under a newer labkit may gain history columns; none may be dropped."""
    result = fit(TrainConfig(model="cnn", epochs=2, batch_size=32, val_size=50, progress=False,
                             data="synthetic", run_name="mixed"), tiny_data)
    del result.history[0]["git_commit"]
    save_run(result)
    history = load_run("mixed")["history"]
    assert "git_commit" in history.columns and history.git_commit.isna().tolist() == [True, False]

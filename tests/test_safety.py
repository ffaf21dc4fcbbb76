"""Nothing lost, nothing silently wrong: each case reproduces a way results were lost or mixed,
and checks the clear error or the right behaviour instead."""
import errno
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from labkit import bench, paths, storage, tune
from labkit import data as datalib
from labkit.data import DataError, load_cifar10
from labkit.paths import REPO_ROOT
from labkit.runs.lock import RunInUseError, lock_path
from labkit.runs.store import RunDataError, load_model, load_run, save_run
from labkit.storage import StorageError
from labkit.train import main
from labkit.training.checkpoint import CheckpointError, checkpoint_path
from labkit.training.config import TrainConfig, smoke_config
from labkit.training.loop import RunExistsError, fit
from tests.helpers import export_image_folder

FAST = dict(model="cnn", epochs=2, batch_size=32, val_size=50, data="synthetic", progress=False, lr=0.02)


def capped_open(limit: int, error: int = errno.ENOSPC):
    """An `open` whose files fail with `error` once more than `limit` bytes are written: a full
    disk (ENOSPC) or, with limit 0 and EROFS, a read-only file system."""
    real_open = open

    class Capped:
        def __init__(self, path, mode="r", *args, **kwargs):
            self.file, self.written = real_open(path, mode, *args, **kwargs), 0

        def write(self, payload):
            self.written += len(payload)
            if self.written > limit:
                raise OSError(error, os.strerror(error))
            return self.file.write(payload)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    return Capped


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- 1. smoke mode

def test_smoke_mode_never_resolves_to_the_real_results_or_checkpoints(monkeypatch):
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.delenv("LABKIT_RESULTS")
    monkeypatch.delenv("LABKIT_CHECKPOINTS")
    assert paths.results_root() == paths.smoke_root() / "results"
    assert paths.checkpoint_root() == paths.smoke_root() / "checkpoints"
    monkeypatch.setenv("LABKIT_RESULTS", str(REPO_ROOT / "results"))   # even when pointed there on purpose
    assert paths.results_root() == paths.smoke_root() / "results"
    monkeypatch.setenv("LABKIT_SMOKE", "0")
    assert paths.results_root() == REPO_ROOT / "results"


def test_smoke_size_is_one_definition_that_keeps_the_recipe():
    """Every command (train, tune, the notebooks) cuts its run to smoke size with smoke_config."""
    config = TrainConfig(model="resnet18", epochs=40, lr=0.05, cutout=12, warmup_epochs=3.0, data="auto")
    small = smoke_config(config, max_epochs=1, resume=False)
    assert (small.data, small.epochs, small.warmup_epochs, small.batch_size) == ("synthetic", 1, 1.0, 64)
    assert (small.lr, small.cutout, small.run_name, small.resume) == (0.05, 12, config.run_name, False)
    assert smoke_config(TrainConfig(model="cnn", epochs=1, data="synthetic", val_size=100)).epochs == 1


def test_a_smoke_run_outside_pytest_leaves_results_alone(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LABKIT_RESULTS", "LABKIT_CHECKPOINTS")}
    env.update(LABKIT_SMOKE="1", TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "labkit.train", "--model", "cnn", "--data", "synthetic",
                           "--epochs", "1", "--val-size", "100", "--no-progress", "--run-name", "cnn"],
                          env=env, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    scratch = tmp_path / f"labkit-smoke-{os.getuid()}"
    assert f"saved to {scratch / 'results' / 'cnn'}" in done.stdout
    assert (scratch / "checkpoints" / "cnn" / "last.pt").is_file()


# ----------------------------------------------------------------------------- 2. one owner per run name

def test_a_fresh_run_refuses_to_replace_a_checkpoint_or_finished_results(tiny_data):
    fit(TrainConfig(run_name="r", **FAST), tiny_data, stop_after=1)
    before = checkpoint_path("r").read_bytes()
    with pytest.raises(RunExistsError, match=r"already has a checkpoint.*resume=True.*overwrite=True"):
        fit(TrainConfig(run_name="r", **FAST), tiny_data)
    assert checkpoint_path("r").read_bytes() == before
    folder = save_run(fit(TrainConfig(run_name="r", resume=True, **FAST), tiny_data))
    saved = files_under(folder)
    with pytest.raises(RunExistsError, match="already has finished results"):
        fit(TrainConfig(run_name="r", resume=True, **FAST), tiny_data)
    assert files_under(folder) == saved
    replaced = fit(TrainConfig(run_name="r", overwrite=True, **dict(FAST, epochs=1)), tiny_data)
    assert len(replaced.history) == 1                       # trained afresh, not resumed
    save_run(replaced)
    assert load_run("r")["metrics"]["epochs"] == 1
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        TrainConfig(run_name="r", resume=True, overwrite=True, **FAST)


def test_a_run_name_held_by_another_process_is_refused_with_its_pid(tiny_data):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom labkit.runs.lock import claim_run\n"
                               "claim_run('busy'); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunInUseError, match=rf"run 'busy' is in use by process {holder.pid} "):
            fit(TrainConfig(run_name="busy", **FAST), tiny_data)
    finally:
        holder.kill()
        holder.wait()
    assert fit(TrainConfig(run_name="busy", **FAST), tiny_data) is not None   # a dead holder frees the name
    assert lock_path("busy").is_file()


# ----------------------------------------------------------------------------- 3. full disk

def test_a_full_disk_leaves_the_previous_run_folder_whole_and_no_temp_files(tiny_data, monkeypatch):
    folder = save_run(fit(TrainConfig(run_name="disk", **FAST), tiny_data))
    before = files_under(folder)
    again = fit(TrainConfig(run_name="disk", overwrite=True, **dict(FAST, seed=1)), tiny_data)
    monkeypatch.setattr(storage, "open", capped_open(50_000), raising=False)   # room for each file but model.pt
    with pytest.raises(StorageError, match=rf"could not write {folder}: no space left on the device"):
        save_run(again)
    assert files_under(folder) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["disk"]
    load_model("disk")                                       # still the old, consistent run


def test_a_full_disk_during_a_checkpoint_names_the_path_and_keeps_the_last_good_one(tiny_data, monkeypatch):
    fit(TrainConfig(run_name="ckpt", **FAST), tiny_data, stop_after=1)
    path = checkpoint_path("ckpt")
    good = path.read_bytes()
    monkeypatch.setattr(storage, "open", capped_open(10_000), raising=False)
    with pytest.raises(StorageError, match=rf"could not write {path}: no space left on the device"):
        fit(TrainConfig(run_name="ckpt", resume=True, **FAST), tiny_data)
    assert path.read_bytes() == good
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt", "lock"]


def test_the_cli_reports_a_full_disk_as_an_error_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setattr(storage, "open", capped_open(10_000), raising=False)
    code = main(["--model", "cnn", "--data", "synthetic", "--epochs", "1", "--val-size", "100", "--no-progress"])
    assert code == 2 and "no space left on the device" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 4. flipped bytes

def flip_byte(path: Path, offset_from_end: int = 1000) -> None:
    raw = bytearray(path.read_bytes())
    raw[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_checkpoint_with_a_flipped_byte_is_refused_and_nothing_is_overwritten(tiny_data):
    fit(TrainConfig(run_name="flip", **FAST), tiny_data, stop_after=1)
    path = checkpoint_path("flip")
    flip_byte(path)
    damaged = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"checkpoint .*last.pt is damaged: its content has sha256"):
        fit(TrainConfig(run_name="flip", resume=True, **FAST), tiny_data)
    assert path.read_bytes() == damaged


def test_a_cache_with_a_flipped_byte_is_rebuilt(tmp_path, tiny_data, monkeypatch):
    tree = export_image_folder(tiny_data, tmp_path / "tree", "png")
    first = load_cifar10(tree)
    [cache_file] = datalib.cache_dir().glob("cifar10-folder-*.pt")
    flip_byte(cache_file, 5000)                              # inside the pixel data, same size
    calls = []
    original = datalib.decode_image_tree
    monkeypatch.setattr(datalib, "decode_image_tree", lambda *a: calls.append(1) or original(*a))
    assert torch.equal(load_cifar10(tree).train_images, first.train_images)
    assert calls == [1]


# ----------------------------------------------------------------------------- 5. read-only cache

def test_an_unwritable_cache_warns_and_the_run_carries_on_uncached(tmp_path, tiny_data, monkeypatch):
    tree = export_image_folder(tiny_data, tmp_path / "tree", "png")
    monkeypatch.setattr(storage, "open", capped_open(0, errno.EROFS), raising=False)
    with pytest.warns(UserWarning, match=r"data cache not written, carrying on without it: could not write "
                                         r".*cifar10-folder-.*\.pt: the file system is read-only"):
        loaded = load_cifar10(tree)
    assert torch.equal(loaded.train_images, tiny_data.train_images)
    assert not list(datalib.cache_dir().glob("*"))


# ----------------------------------------------------------------------------- 6. data sources

def test_labkit_data_is_named_in_its_errors_and_cannot_recurse(monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", "auto")
    with pytest.raises(DataError, match="LABKIT_DATA=auto refers to itself"):
        load_cifar10("auto")
    monkeypatch.setenv("LABKIT_DATA", "/no/such/place.tar.gz")
    with pytest.raises(DataError, match=r"LABKIT_DATA='/no/such/place.tar.gz': data path .* does not exist"):
        load_cifar10("auto")


def test_an_offline_download_says_what_to_do(tmp_path, monkeypatch):
    from urllib.error import URLError

    import torchvision.datasets

    def offline(self):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    monkeypatch.setattr(datalib, "CANONICAL_ROOT", tmp_path / "data")
    monkeypatch.setenv("LABKIT_DATA", "torchvision")
    with pytest.raises(DataError, match=r"LABKIT_DATA='torchvision': could not download CIFAR-10 .*without network"):
        load_cifar10("auto")


def test_a_zip_made_on_macos_loads(tmp_path, tiny_data):
    tree = export_image_folder(tiny_data, tmp_path / "tree", "png")
    archive = tmp_path / "mac.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(tree.rglob("*.png")):
            name = f.relative_to(tree).as_posix()
            z.write(f, name)
            z.writestr(f"__MACOSX/{Path(name).parent}/._{Path(name).name}", b"\x00\x05\x16\x07 resource fork")
        z.writestr("train/.DS_Store", b"\x00\x00\x00\x01Bud1")
    assert torch.equal(load_cifar10(archive).train_images, tiny_data.train_images)


# ----------------------------------------------------------------------------- 7. settings checked first

@pytest.mark.parametrize("argv, message", [
    (["--stop-after", "-1"], "stop_after (--stop-after) must be an epoch ≥ 1, got -1"),
    (["--run-name", "figures"], "run_name 'figures' is reserved"),
    (["--warmup-epochs", "nan"], "warmup_epochs must be a finite number, got nan"),
    (["--weight-decay", "inf"], "weight_decay must be a finite number, got inf"),
])
def test_cli_rejects_bad_settings_before_any_work(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(datalib, "load_cifar10", lambda *a, **k: pytest.fail("data loaded before the check"))
    assert main(["--model", "cnn", "--data", "synthetic", *argv]) == 2
    assert message in capsys.readouterr().err


def test_tune_checks_every_trial_before_running_any(monkeypatch, capsys):
    monkeypatch.setattr(tune, "fit", lambda *a, **k: pytest.fail("a trial ran before all were checked"))
    assert tune.main(["--model", "cnn", "--data", "synthetic", "--trial", "", "--trial", "lr=nan"]) == 2
    assert "lr must be a finite number, got nan" in capsys.readouterr().err
    assert tune.main(["--model", "cnn", "--data", "synthetic", "--trial", "batch_size=2.5"]) == 2
    assert "batch_size takes an integer" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--models", "vgg"], "unknown model 'vgg'"),
    (["--device", "cuda"], "CUDA is not available" if not torch.cuda.is_available() else "-"),
])
def test_bench_rejects_bad_settings_with_a_message(argv, message, capsys):
    if message == "-":
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


# ----------------------------------------------------------------------------- 9. broken results files

def test_broken_results_files_are_named(tiny_data, isolated_roots):
    folder = save_run(fit(TrainConfig(run_name="broken", **FAST), tiny_data))
    metrics = (folder / "metrics.json").read_text()
    (folder / "metrics.json").write_text(metrics[:100])
    with pytest.raises(RunDataError, match=rf"{folder / 'metrics.json'} is not valid JSON"):
        load_run("broken")
    (folder / "metrics.json").write_text(metrics)
    (folder / "history.csv").write_text("")
    with pytest.raises(RunDataError, match=rf"{folder / 'history.csv'} cannot be read"):
        load_run("broken")
    (folder / "metrics.json").write_text(json.dumps({**json.loads(metrics), "model": "resnet18"}))
    with pytest.raises(RunDataError, match=rf"{folder / 'model.pt'} does not hold weights of 'resnet18'"):
        load_model("broken")

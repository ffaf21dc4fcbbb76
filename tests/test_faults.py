"""Faults: a process killed mid-write, leftovers of dead processes, a results folder that is a symlink or
a file, a diverged run, over-long run names, broken data and model files. Each test reproduces one and
checks that nothing is lost, nothing half-written is read, and the user gets a clear error."""
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from labkit import data as datalib
from labkit import doctor, storage
from labkit.data import DataError, load_cifar10, synthetic_cifar10
from labkit.models import build_model
from labkit.notebook.params import configure_analysis
from labkit.paths import REPO_ROOT, checkpoint_root, results_root
from labkit.reporting.select import load_every_run, longest_runs
from labkit.robustness.suite import ANALYSIS_FILE, AnalysisSettings, analyse_runs
from labkit.runs.lock import claim_run
from labkit.runs.store import RunDataError, list_runs, load_model, load_run, save_run
from labkit.storage import StorageError, load_verified, publish_folder
from labkit.train import main
from labkit.training import loop
from labkit.training.checkpoint import checkpoint_path
from labkit.training.config import MAX_RUN_NAME, TrainConfig
from labkit.training.loop import (
    NonFiniteGuard,
    NonFiniteLossError,
    fit,
    train_one_epoch,
)
from tests.helpers import export_image_folder

FAST = dict(model="cnn", batch_size=32, val_size=50, data="synthetic", progress=False, lr=0.02)
CLI = ["--model", "cnn", "--data", "synthetic", "--epochs", "1", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def result(tiny_data, tmp_path_factory):
    """One epoch of the cnn, trained once for the module, as run 'cnn-a' (saved by each test as it needs)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("RESULTS", "CHECKPOINTS"):
            patch.setenv(f"LABKIT_{name}", str(tmp_path_factory.mktemp(f"module-{name.lower()}")))
        return fit(TrainConfig(run_name="cnn-a", epochs=1, **FAST), tiny_data)


def renamed(result, name: str):
    return dataclasses.replace(result, config=dataclasses.replace(result.config, run_name=name))


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def flip_a_byte(path: Path) -> None:
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0x01
    path.write_bytes(bytes(payload))


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# ----------------------------------------------------------------------------- 1. killed mid-write

# Far more epochs than the signal needs: on a loaded machine the watcher below may be starved for
# seconds, and a run that finished first would exit 0 before any signal.
KILLED_TRAINING = """
import os, time
real_fsync = os.fsync
os.fsync = lambda fd: (time.sleep(0.3), real_fsync(fd))   # widen the window in which the temp file exists
from labkit.data import synthetic_cifar10
from labkit.training.config import TrainConfig
from labkit.training.loop import fit
fit(TrainConfig(run_name="sig", epochs=1000, model="cnn", batch_size=32, val_size=50, data="synthetic",
                progress=False, lr=0.02), synthetic_cifar10(train_per_class=30, test_per_class=10))
"""


@pytest.mark.parametrize("signum, returncode", [(signal.SIGTERM, 143), (signal.SIGINT, -signal.SIGINT)])
def test_a_signal_during_a_checkpoint_write_leaves_no_temp_file_and_the_last_checkpoint_whole(signum, returncode):
    folder = checkpoint_root() / "sig"
    process = subprocess.Popen([sys.executable, "-c", KILLED_TRAINING], cwd=REPO_ROOT, env=os.environ.copy(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        # the second write: one checkpoint is on disk and the next one is being written beside it
        while not ((folder / "last.pt").is_file() and list(folder.glob(".last.pt.tmp*"))):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint write seen"
            time.sleep(0.01)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == returncode, err
    assert hidden(folder) == [], "a temp file was left behind"
    state, verified = load_verified(folder / "last.pt")
    assert verified and state["epoch"] >= 1 and len(state["history"]) == state["epoch"]


def test_a_dead_process_temp_checkpoint_is_removed_on_resume_and_a_live_one_kept(tiny_data):
    config = dict(run_name="r", epochs=2, **FAST)
    fit(TrainConfig(**config), tiny_data, stop_after=1)
    folder = checkpoint_path("r").parent
    stale, live = folder / f".last.pt.tmp{dead_pid()}", folder / f".last.pt.tmp{os.getppid()}"
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    resumed = fit(TrainConfig(resume=True, **config), tiny_data)
    assert len(resumed.history) == 2
    assert not stale.exists() and live.exists()
    assert load_verified(checkpoint_path("r"))[0]["epoch"] == 2


# ----------------------------------------------------------------------------- 2-4. publishing a run folder

def test_hidden_leftover_folders_are_neither_listed_nor_picked(result):
    folder = save_run(result)
    for leftover in (".cnn-a.new12345", ".cnn-a.old12345"):
        shutil.copytree(folder, folder.parent / leftover)
    assert list_runs() == ["cnn-a"]
    chosen = longest_runs(load_every_run())
    assert "cnn-a" in chosen and chosen["cnn-a"] is not None
    assert not any(name.startswith(".") for name in chosen)


@pytest.mark.parametrize("atomic_exchange", [True, False])
def test_publish_replaces_the_folder_whole_and_leaves_no_sibling(tmp_path, monkeypatch, atomic_exchange):
    if not atomic_exchange:    # a file system without renameat2: the two-rename fallback
        monkeypatch.setattr(storage, "exchange", lambda first, second: False)
    folder = tmp_path / "run"
    publish_folder(folder, {"a.txt": b"old", "sub/b.txt": b"old"})
    publish_folder(folder, {"c.txt": b"new"})
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == ["c.txt"]
    assert (folder / "c.txt").read_bytes() == b"new"
    assert hidden(tmp_path) == []


def test_a_failed_fallback_swap_rolls_back_to_the_previous_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "exchange", lambda first, second: False)
    folder = tmp_path / "run"
    publish_folder(folder, {"a.txt": b"old"})
    real_replace = os.replace

    def failing_replace(src, dst):
        if ".new" in Path(src).name:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StorageError, match="no space left"):
        publish_folder(folder, {"b.txt": b"new"})
    assert [p.name for p in folder.iterdir()] == ["a.txt"] and (folder / "a.txt").read_bytes() == b"old"
    assert hidden(tmp_path) == []


def test_a_crash_between_the_two_renames_is_recovered_by_load_run(result):
    folder = save_run(result)
    retired = folder.with_name(f".{folder.name}.old{dead_pid()}")
    folder.rename(retired)                      # the old folder moved aside, the new one never moved in
    assert list_runs() == []
    run = load_run("cnn-a")
    assert run["metrics"]["run_name"] == "cnn-a" and len(run["history"]) == 1
    assert folder.is_dir() and not retired.exists() and list_runs() == ["cnn-a"]


def test_a_symlinked_run_folder_is_published_where_it_points_and_stays_a_link(result, tmp_path):
    target = tmp_path / "other-disk" / "cnn-a"
    target.mkdir(parents=True)
    results_root().mkdir(parents=True)
    link = results_root() / "cnn-a"
    link.symlink_to(target)
    save_run(result)
    (target / "stale.txt").write_text("from the first save")
    save_run(result)
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert sorted(p.name for p in target.iterdir()) == ["confusion.csv", "history.csv", "metrics.json", "model.pt"]
    assert hidden(target.parent) == [] and hidden(results_root()) == []
    assert list_runs() == ["cnn-a"] and load_run("cnn-a")["folder"] == link


# ----------------------------------------------------------------------------- 5. diverged runs

def test_a_saved_run_records_the_weights_checksum_in_strict_json(result):
    folder = save_run(result)

    def refuse(constant):
        raise AssertionError(f"metrics.json holds {constant}, which is not JSON")

    metrics = json.loads((folder / "metrics.json").read_text(), parse_constant=refuse)
    assert metrics["weights_sha256"] == hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()


@pytest.mark.parametrize("spoil, named", [
    (lambda r: r.history[-1].update(val_loss=math.nan), "final_val_loss"),
    (lambda r: r.info["val_accuracy_by_tta"].update({"1": math.inf}), r"val_accuracy_by_tta\[1\]"),
])
def test_a_run_with_non_finite_metrics_is_not_published_and_its_checkpoint_kept(result, spoil, named):
    spoilt = dataclasses.replace(result, history=[dict(r) for r in result.history],
                                 info={**result.info, "val_accuracy_by_tta": dict(result.info["val_accuracy_by_tta"])})
    spoil(spoilt)
    checkpoint = checkpoint_path("cnn-a")
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"the last good checkpoint")
    with pytest.raises(RunDataError, match=rf"'cnn-a' was not published: {named} not finite .*checkpoint is kept"):
        save_run(spoilt)
    assert not (results_root() / "cnn-a").exists() and list_runs() == []
    assert checkpoint.read_bytes() == b"the last good checkpoint"


class NaNInEvalAfter(nn.Module):
    """Wraps a model; its eval outputs turn NaN once it has made `steps` training forwards."""
    def __init__(self, inner, steps):
        super().__init__()
        self.inner, self.steps, self.trained = inner, steps, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.trained += 1
        elif self.trained > self.steps:
            out = out * math.nan
        return out


def test_a_nan_val_loss_stops_the_run_before_its_epoch_is_checkpointed(tiny_data, monkeypatch):
    steps_per_epoch = (300 - 50) // 32
    monkeypatch.setattr(loop, "build_model", lambda *a, **k: NaNInEvalAfter(build_model("cnn"), steps_per_epoch))
    with pytest.raises(NonFiniteLossError, match=r"val loss became nan after epoch 2; the last good checkpoint "
                                                 r"\(epoch 1\) is kept"):
        fit(TrainConfig(run_name="v", epochs=3, **FAST), tiny_data)
    assert load_verified(checkpoint_path("v"))[0]["epoch"] == 1
    assert not (results_root() / "v").exists()


class ZeroLogitsOrNaN(nn.Module):
    """Logits all zero (a cross-entropy of exactly ln 10, zero gradients), or NaN at the given calls."""
    def __init__(self, nan_calls):
        super().__init__()
        self.inner, self.nan_calls, self.calls = build_model("cnn"), nan_calls, 0

    def forward(self, x):
        self.calls += 1
        out = self.inner(x) * 0.0
        return out * math.nan if self.nan_calls(self.calls) else out


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")   # its first step was skipped
@pytest.mark.parametrize("nan_calls, expected", [(lambda call: call % 2 == 1, math.log(10)),
                                                 (lambda call: True, math.nan)])
def test_the_epoch_train_loss_is_the_mean_over_steps_with_a_finite_loss(tiny_data, nan_calls, expected):
    model = ZeroLogitsOrNaN(nan_calls)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = datalib.BatchLoader(tiny_data.train_images, tiny_data.train_labels, 32, train=True)
    record = train_one_epoch(model, loader, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
                             torch.amp.GradScaler("cpu"),   # skips the steps whose gradients are NaN
                             None, TrainConfig(run_name="m", epochs=1, **FAST), 0, device=torch.device("cpu"),
                             precision="fp32", guard=NonFiniteGuard(1000, Path("unused")))
    assert record["train_loss"] == pytest.approx(expected, rel=1e-5, nan_ok=True)


# ----------------------------------------------------------------------------- 6. run names

@pytest.mark.parametrize("length", [250, 300])
def test_an_over_long_run_name_is_refused_up_front(length, capsys):
    name = "x" * length
    with pytest.raises(ValueError, match=f"run_name is {length} characters long; at most {MAX_RUN_NAME}"):
        TrainConfig(run_name=name, **FAST)
    assert main([*CLI, "--run-name", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{length} characters" in err and "Traceback" not in err
    assert not checkpoint_root().exists() and not results_root().exists()
    TrainConfig(run_name="x" * MAX_RUN_NAME, **FAST)     # the longest allowed


# ----------------------------------------------------------------------------- 7-8. roots that are files

def make_archive(tmp_path: Path, empty: int | None = None) -> tuple[Path, str | None]:
    """A .tar.gz image tree of 10 train + 10 test PNGs; with `empty`, that train image is 0 bytes."""
    tree = export_image_folder(synthetic_cifar10(train_per_class=1, test_per_class=1), tmp_path / "cifar10")
    emptied = None
    if empty is not None:
        victim = sorted((tree / "train").rglob("*.png"))[empty]
        victim.write_bytes(b"")
        emptied = victim.relative_to(tmp_path).as_posix()
    archive = tmp_path / "cifar10.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="cifar10")
    return archive, emptied


def test_a_cache_root_that_is_a_file_is_skipped_with_a_warning(tmp_path, monkeypatch):
    archive, _ = make_archive(tmp_path)
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LABKIT_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="data cache not written, carrying on without it"):
        data = load_cifar10(archive)
    expected = synthetic_cifar10(train_per_class=1, test_per_class=1)
    assert torch.equal(data.train_images, expected.train_images) and torch.equal(data.test_labels, expected.test_labels)
    assert blocker.read_text() == "not a folder"


def test_a_checkpoint_root_that_is_a_file_is_a_clear_storage_error(tmp_path, monkeypatch, tiny_data):
    blocker = tmp_path / "checkpoints-file"
    blocker.write_text("")
    monkeypatch.setenv("LABKIT_CHECKPOINTS", str(blocker))
    with pytest.raises(StorageError, match=r"cannot claim run 'c'.*LABKIT_CHECKPOINTS") as raised:
        claim_run("c")
    assert not isinstance(raised.value, NotADirectoryError)
    with pytest.raises(StorageError, match=r"checkpoint root \(LABKIT_CHECKPOINTS\) .* is a file"):
        fit(TrainConfig(run_name="c", epochs=1, **FAST), tiny_data)


def test_doctor_refuses_an_output_under_a_file_before_benchmarking(tmp_path, capsys):
    blocker = tmp_path / "report"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exited:
        doctor.main(["--models", "cnn", "--steps", "1", "--batch-size", "16", "--device", "cpu",
                     "--output", str(blocker / "x.json")])
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert "error:" in err and str(blocker) in err and "img/s" not in out
    assert blocker.read_text() == ""


@pytest.mark.parametrize("command", ["bench", "doctor"])
def test_a_benchmark_is_not_replaced_without_overwrite(command, isolated_roots, capsys):
    """The README's usage runs bench and doctor: on the machine that made a committed benchmark they
    would write over it. Refused before measuring, with the two ways out."""
    from labkit.device import device_name, device_slug

    module = __import__(f"labkit.{command}", fromlist=["main"])
    suffix = "-doctor" if command == "doctor" else ""
    earlier = isolated_roots / "results" / "benchmarks" / f"{device_slug(device_name(torch.device('cpu')))}{suffix}.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"models": {}}')
    with pytest.raises(SystemExit) as exited:
        module.main(["--models", "cnn", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and f"{earlier} exists" in err and "--overwrite" in err and "img/s" not in out
    assert earlier.read_text() == '{"models": {}}'


@pytest.mark.parametrize("where", ["results root", "run folder"])
def test_the_cli_refuses_a_results_destination_that_is_a_file_before_training(where, tmp_path, monkeypatch, capsys):
    if where == "results root":
        blocker = tmp_path / "results-file"
        monkeypatch.setenv("LABKIT_RESULTS", str(blocker))
    else:
        blocker = results_root() / "r8"
        blocker.parent.mkdir(parents=True)
    blocker.write_text("keep me")
    assert main([*CLI, "--run-name", "r8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{blocker} is a file" in err and "Traceback" not in err
    assert not checkpoint_path("r8").exists()
    assert blocker.read_text() == "keep me"


# ----------------------------------------------------------------------------- 9. data

def test_a_zero_byte_image_in_an_archive_is_named(tmp_path):
    archive, emptied = make_archive(tmp_path, empty=3)
    with pytest.raises(DataError, match=re.escape(f"{emptied}: an empty (0-byte) file")):
        load_cifar10(archive, use_cache=False)


# ----------------------------------------------------------------------------- 10-11. analysis and model files

@pytest.mark.parametrize("runs", ["c2ep,../r13/a1", "cnn/../../x", "/abs"])
def test_analysis_refuses_run_names_with_path_separators(runs):
    with pytest.raises(ValueError, match="no path separators"):
        configure_analysis(runs=runs, results_dir="", epsilons="1")


def test_a_broken_model_is_skipped_and_the_other_run_still_analysed_and_saved(result, tiny_data):
    broken = save_run(result) / "model.pt"
    save_run(renamed(result, "cnn-b"))
    flip_a_byte(broken)
    settings = AnalysisSettings(calibration_size=40, corruption_size=20, attack_size=10, epsilons=(1.0,), device="cpu")
    with pytest.warns(UserWarning, match=f"run cnn-a skipped: {re.escape(str(broken))}"):
        analyses = analyse_runs(["cnn-a", "cnn-b"], tiny_data, settings, log=lambda *a: None, save=True)
    assert list(analyses) == ["cnn-b"]
    assert (results_root() / "cnn-b" / ANALYSIS_FILE).is_file()
    assert not (results_root() / "cnn-a" / ANALYSIS_FILE).exists()


def truncate_unrecorded(path: Path) -> None:    # a run saved before weights_sha256 was recorded
    metrics = json.loads((path.parent / "metrics.json").read_text())
    del metrics["weights_sha256"]
    (path.parent / "metrics.json").write_text(json.dumps(metrics))
    path.write_bytes(path.read_bytes()[:1000])


@pytest.mark.parametrize("damage, message", [
    (flip_a_byte, r"model\.pt is damaged or was replaced: its sha256"),
    (lambda path: path.write_bytes(b""), r"model\.pt is an empty file"),
    (truncate_unrecorded, r"model\.pt cannot be read, it is truncated or damaged"),
])
def test_a_damaged_model_file_is_a_clear_run_data_error(result, damage, message):
    damage(save_run(result) / "model.pt")
    with pytest.raises(RunDataError, match=message):
        load_model("cnn-a")


def test_a_run_saved_before_the_optional_metrics_existed_still_loads(result):
    folder = save_run(result)
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("weights_sha256", "world_size", "val_accuracy_by_tta", "test_accuracy_by_tta"):
        del metrics[key]
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert load_run("cnn-a")["metrics"]["run_name"] == "cnn-a"
    assert isinstance(load_model("cnn-a"), nn.Module)

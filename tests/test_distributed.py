"""Data-parallel training on the CPU: two gloo ranks under torchrun, as on several GPUs."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from labkit.data import BatchLoader, synthetic_cifar10
from labkit.models import build_model
from labkit.paths import REPO_ROOT
from labkit.runs.store import load_run
from labkit.storage import load_verified
from labkit.training.checkpoint import checkpoint_path, plain_keys
from labkit.training.distributed import barrier, from_environment, start, stop, wrap

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
CNN_ON_SYNTHETIC = ["-m", "labkit.train", "--model", "cnn", "--data", "synthetic", "--val-size", "100",
                    "--batch-size", "32", "--lr", "0.05", "--no-progress"]


def test_ranks_take_disjoint_slices_of_the_single_process_batches():
    data = synthetic_cifar10(train_per_class=20, test_per_class=1)
    labels = torch.arange(len(data.train_labels))          # labels as image ids
    single = [y for _, y in BatchLoader(data.train_images, labels, 16, train=True, seed=4)]
    ranks = [[y for _, y in BatchLoader(data.train_images, labels, 8, train=True, seed=4, rank=r, world_size=2)]
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for whole, first, second in zip(single, *ranks):
        assert torch.equal(torch.cat([first, second]), whole)


def global_batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(16, 3, 32, 32, generator=generator), torch.randint(0, 10, (16,), generator=generator)


def ddp_gradient(rank: int, world_size: int, port: int, output: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    context = from_environment()
    start(context, torch.device("cpu"))
    torch.manual_seed(0)
    model = wrap(build_model("cnn"), context, torch.device("cpu"), sync_batchnorm=False)
    images, labels = global_batch()
    shard = slice(rank * len(images) // world_size, (rank + 1) * len(images) // world_size)
    torch.nn.functional.cross_entropy(model(images[shard]), labels[shard]).backward()
    if rank == 0:
        torch.save({name: p.grad for name, p in model.module.named_parameters()}, output)
    barrier(context)
    stop(context)


def test_the_averaged_ddp_gradient_equals_the_single_process_gradient_of_the_global_batch(tmp_path):
    images, labels = global_batch()
    torch.manual_seed(0)
    model = build_model("cnn")                               # no batch norm: samples are independent
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(ddp_gradient, args=(2, port, str(tmp_path / "grads.pt")), nprocs=2, join=True)
    averaged = torch.load(tmp_path / "grads.pt", weights_only=True)
    for name, p in model.named_parameters():
        torch.testing.assert_close(averaged[name], p.grad, rtol=1e-5, atol=1e-6)


def run_torchrun(arguments, env, **kwargs):
    return subprocess.run([*TORCHRUN, *arguments], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600, **kwargs)


def test_two_gloo_ranks_train_to_high_accuracy_and_write_one_results_folder(isolated_roots):
    done = run_torchrun([*CNN_ON_SYNTHETIC, "--epochs", "10", "--run-name", "ddp"],
                        {**os.environ, "LABKIT_SMOKE": "0"})     # 10 epochs, not smoke mode's 2
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("saved to") == 1                # rank 0 alone publishes
    metrics = load_run("ddp")["metrics"]
    assert metrics["world_size"] == 2 and metrics["test_accuracy"] >= 0.9
    assert sorted(p.name for p in (isolated_roots / "results").iterdir()) == ["ddp"]


def test_a_rank_killed_mid_run_stops_the_job_and_torchrun_resumes_from_the_checkpoint(isolated_roots):
    arguments = [*CNN_ON_SYNTHETIC, "--epochs", "40", "--run-name", "killed"]
    job = subprocess.Popen([*TORCHRUN, *arguments], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env={**os.environ, "LABKIT_SMOKE": "0"})
    path = checkpoint_path("killed")
    deadline = time.time() + 300
    while time.time() < deadline and job.poll() is None:
        if path.is_file():
            try:
                if load_verified(path)[0]["epoch"] >= 2:
                    break
            except Exception:  # noqa: BLE001 - caught mid-replace; look again
                pass
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, "torchrun should run two worker processes"
    os.kill(int(workers[-1]), signal.SIGKILL)               # one rank dies
    _, stderr = job.communicate(timeout=300)
    assert job.returncode != 0 and "FAILED" in stderr
    epoch = load_verified(path)[0]["epoch"]                 # the last checkpoint is intact
    assert 2 <= epoch < 40
    done = run_torchrun([*arguments, "--resume"], {**os.environ, "LABKIT_SMOKE": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed killed from {path} after epoch" in done.stdout
    assert load_run("killed")["metrics"]["epochs"] == 40


def test_weights_saved_through_a_wrapper_load_into_the_plain_model():
    model = build_model("cnn")
    wrapped = {f"_orig_mod.module.{k}": v for k, v in model.state_dict().items()}
    assert plain_keys({f"module.{k}": v for k, v in model.state_dict().items()}).keys() == model.state_dict().keys()
    assert plain_keys({f"_orig_mod.{k}": v for k, v in model.state_dict().items()}).keys() == model.state_dict().keys()
    assert plain_keys(wrapped).keys() == model.state_dict().keys()


@pytest.mark.parametrize("first, second", [(True, False), (False, True)])
def test_a_compiled_run_resumes_uncompiled_and_the_other_way_round(tiny_data, monkeypatch, first, second):
    from labkit.training.config import TrainConfig
    from labkit.training.loop import fit

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: real_compile(model, backend="eager"))  # no C++ toolchain
    config = dict(model="cnn", epochs=2, batch_size=32, val_size=50, data="synthetic", progress=False, lr=0.02)
    whole = fit(TrainConfig(run_name="plain", **config), tiny_data)
    fit(TrainConfig(run_name="mixed", compile=first, **config), tiny_data, stop_after=1)
    saved = load_verified(checkpoint_path("mixed"))[0]["model"]
    assert not any(key.startswith(("_orig_mod.", "module.")) for key in saved)
    resumed = fit(TrainConfig(run_name="mixed", compile=second, resume=True, **config), tiny_data)
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)

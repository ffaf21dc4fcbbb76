import math
import re

import pytest
import torch
from torch import nn

from labkit.data import synthetic_cifar10
from labkit.models import build_model
from labkit.storage import load_verified
from labkit.train import main
from labkit.training import loop
from labkit.training.checkpoint import CheckpointError, checkpoint_path
from labkit.training.config import TrainConfig
from labkit.training.loop import NonFiniteLossError, fit, make_optimizer, make_schedule

FAST = dict(model="cnn", batch_size=32, val_size=50, data="synthetic", progress=False, lr=0.02)


@pytest.fixture(scope="module")
def learnable():
    return synthetic_cifar10(train_per_class=200, test_per_class=20)


def test_fit_learns_synthetic_data_and_evaluates_test_once(learnable, monkeypatch):
    calls = []
    for name in ("evaluate", "evaluate_levels"):
        original = getattr(loop, name)
        monkeypatch.setattr(loop, name, lambda m, images, *a, original=original, name=name, **k:
                            calls.append((name, len(images))) or original(m, images, *a, **k))
    result = fit(TrainConfig(epochs=6, **dict(FAST, batch_size=64, val_size=100)), learnable)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0] * 0.6
    assert result.history[-1]["val_acc"] >= 0.9
    assert result.test.accuracy >= 0.9
    # val every epoch (100 images); after the last one val and test (200) once, at every TTA level
    assert calls == [("evaluate", 100)] * 6 + [("evaluate_levels", 100), ("evaluate_levels", 200)]
    assert set(result.info["test_accuracy_by_tta"]) == set(result.info["val_accuracy_by_tta"]) == {"0", "1", "2"}
    assert result.test.accuracy == result.info["test_accuracy_by_tta"]["1"]       # the default level, flip
    assert result.test_plain_accuracy == result.info["test_accuracy_by_tta"]["0"]
    assert set(result.history[0]) >= {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                                      "epoch_time_s", "images_per_s"}
    assert result.info["params"] == 62_006 and result.info["data_source"] == "synthetic"


def test_resume_reproduces_the_uninterrupted_run(tiny_data):
    config = dict(epochs=3, **FAST)
    whole = fit(TrainConfig(run_name="whole", **config), tiny_data)
    assert fit(TrainConfig(run_name="split", **config), tiny_data, stop_after=1) is None
    assert load_verified(checkpoint_path("split"))[0]["epoch"] == 1
    resumed = fit(TrainConfig(run_name="split", resume=True, **config), tiny_data)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [r["train_loss"] for r in whole.history] == [r["train_loss"] for r in resumed.history]
    assert resumed.test.accuracy == whole.test.accuracy


def test_resume_refuses_another_config(tiny_data):
    fit(TrainConfig(run_name="r", epochs=2, **FAST), tiny_data, stop_after=1)
    changed = dict(FAST, lr=0.2)
    with pytest.raises(CheckpointError, match=r"another model, config.*lr: checkpoint 0.02 vs now 0.2\. To continue "
                                              r"it, resume without those settings \(a resume takes the checkpoint's\)"):
        fit(TrainConfig(run_name="r", epochs=2, resume=True, **changed), tiny_data)
    with pytest.raises(CheckpointError, match=r"model: checkpoint 'cnn' vs now 'resnet18'"):
        fit(TrainConfig(run_name="r", epochs=2, resume=True, **dict(FAST, model="resnet18")), tiny_data)


def test_resume_refuses_other_data(tiny_data):
    fit(TrainConfig(run_name="d", epochs=2, **FAST), tiny_data, stop_after=1)
    other = synthetic_cifar10(train_per_class=30, test_per_class=10, seed=1)
    with pytest.raises(CheckpointError, match="data checksum.*To continue it, resume on the data it trained on;"):
        fit(TrainConfig(run_name="d", epochs=2, resume=True, **FAST), other)


def test_corrupt_checkpoint_is_reported_not_loaded(tiny_data):
    path = checkpoint_path("c")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=r"checkpoint .*last.pt is corrupt or unreadable"):
        fit(TrainConfig(run_name="c", epochs=1, resume=True, **FAST), tiny_data)
    assert path.read_bytes() == b"\x00garbage"   # left for the user to inspect


class NaNAfter(nn.Module):
    """Wraps a model; its output turns NaN from the n-th training forward on."""
    def __init__(self, inner, n):
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.n:
                out = out * math.nan
        return out


def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_checkpoint(tiny_data, monkeypatch):
    steps_per_epoch = (300 - 50) // 32
    monkeypatch.setattr(loop, "build_model", lambda *a, **k: NaNAfter(build_model("cnn"), steps_per_epoch + 3))
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2, step 3 .*checkpoint \(epoch 1\)"):
        fit(TrainConfig(run_name="n", epochs=3, **FAST), tiny_data)
    assert load_verified(checkpoint_path("n"))[0]["epoch"] == 1


@pytest.mark.parametrize("overrides, message", [
    (dict(epochs=0), "epochs must be an integer ≥ 1"),
    (dict(lr=0.0), "lr must be a finite number > 0"),
    (dict(lr=float("nan")), "lr must be a finite number, got nan"),
    (dict(warmup_epochs=float("nan")), "warmup_epochs must be a finite number, got nan"),
    (dict(weight_decay=float("inf")), "weight_decay must be a finite number, got inf"),
    (dict(weight_decay=float("nan")), "weight_decay must be a finite number, got nan"),
    (dict(momentum=float("-inf")), "momentum must be a finite number"),
    (dict(warmup_start_factor=1.5), "warmup_start_factor must be in [0, 1]"),
    (dict(ema_decay=1.0), "ema_decay must be in [0, 1)"),
    (dict(cutout=40), "cutout must be an integer in [0, 32]"),
    (dict(cutout=2.5), "cutout must be an integer in [0, 32]"),
    (dict(tta=3), "tta must be one of [0, 1, 2]"),
    (dict(batch_size=0), "batch_size must be an integer ≥ 1"),
    (dict(device="tpu"), "device must be auto, cpu, cuda or cuda:N"),
    (dict(precision="fp8"), "precision must be one of auto, bf16, fp16, fp32, got 'fp8'"),
    (dict(run_name="../escape"), "without path separators"),
    (dict(model="vgg"), "unknown model 'vgg'; valid names: cnn, resnet18"),
    (dict(val_size=-1), "val_size must be an integer ≥ 0"),
    (dict(label_smoothing=1.0), "label_smoothing must be in"),
    (dict(memory_efficient=True), "memory_efficient applies to densenet_cifar only"),
])
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**overrides)


def test_cuda_device_without_cuda_is_explained():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        TrainConfig(device="cuda")


def test_batch_larger_than_split_is_explained(tiny_data):
    with pytest.raises(ValueError, match=r"batch_size 512 is larger than the training split \(250 images\)"):
        fit(TrainConfig(**dict(FAST, batch_size=512)), tiny_data)


def test_schedule_warms_up_then_decays_to_zero():
    model = nn.Linear(2, 2)
    config = TrainConfig(epochs=4, warmup_epochs=1, lr=0.4)
    optimizer = make_optimizer(model, config)
    schedule = make_schedule(optimizer, config, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.04) and lrs[9] == pytest.approx(0.4)
    assert max(lrs) == pytest.approx(0.4) and lrs[-1] < 0.02
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert optimizer.param_groups[0]["nesterov"]


def test_no_weight_decay_on_batchnorm_and_biases():
    model = build_model("resnet18")
    decay, no_decay = make_optimizer(model, TrainConfig()).param_groups
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0
    assert all(p.ndim == 4 or p.ndim == 2 for p in decay["params"])
    bn_and_bias = {id(m.weight) for m in model.modules() if isinstance(m, nn.BatchNorm2d)} | {id(model.fc.bias)}
    assert bn_and_bias <= {id(p) for p in no_decay["params"]}


def test_se_excitation_weights_can_be_exempt_from_weight_decay():
    from labkit.models.se_resnet import SqueezeExcitation
    model = build_model("se_resnet18")
    excitation = {id(p) for m in model.modules() if isinstance(m, SqueezeExcitation) for p in m.parameters()}
    assert len(excitation) == 16                     # 8 blocks × 2 bias-free linear layers
    decay, no_decay = make_optimizer(model, TrainConfig(model="se_resnet18")).param_groups
    assert excitation <= {id(p) for p in decay["params"]}          # the default: as the lab report's SELayer
    decay, no_decay = make_optimizer(model, TrainConfig(model="se_resnet18", exempt_excitation_decay=True)).param_groups
    assert excitation <= {id(p) for p in no_decay["params"]} and not excitation & {id(p) for p in decay["params"]}
    assert any(p.ndim == 4 for p in decay["params"])               # the convolutions keep their decay
    with pytest.raises(ValueError, match="exempt_excitation_decay applies to se_resnet18 and "):
        TrainConfig(model="resnet18", exempt_excitation_decay=True)


def test_cli_trains_saves_and_prints_a_summary(capsys, isolated_roots):
    code = main(["--model", "cnn", "--epochs", "2", "--data", "synthetic", "--val-size", "100",
                 "--batch-size", "64", "--no-progress", "--run-name", "cli"])
    out = capsys.readouterr().out
    assert code == 0
    assert "[cli] test accuracy" in out and "img/s" in out and "wall time" in out
    assert {p.name for p in (isolated_roots / "results" / "cli").iterdir()} == {
        "metrics.json", "history.csv", "confusion.csv", "model.pt"}


def test_cli_reports_bad_values_clearly(capsys):
    assert main(["--model", "cnn", "--epochs", "0", "--data", "synthetic"]) == 2
    assert "epochs must be an integer ≥ 1" in capsys.readouterr().err
    assert main(["--model", "cnn", "--data", "/no/such/data.tar.gz"]) == 2
    assert "data path '/no/such/data.tar.gz' does not exist" in capsys.readouterr().err


def test_cli_help_and_unknown_model(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "--resume" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--model", "vgg"])
    assert "invalid choice: 'vgg'" in capsys.readouterr().err


def test_train_subset_is_used_and_bounded(tiny_data):
    result = fit(TrainConfig(epochs=1, train_subset=100, **FAST), tiny_data)
    assert result.info["train_images"] == 100 and result.info["val_images"] == 50
    with pytest.raises(ValueError, match="train_subset 999 exceeds the 250 training images"):
        fit(TrainConfig(epochs=1, train_subset=999, **FAST), tiny_data)

"""Precision: what auto picks per device, and fp16 with a GradScaler, exercised on the CPU."""
import math

import pytest
import torch
from torch import nn

from labkit import device as devicelib
from labkit.data import synthetic_cifar10
from labkit.device import resolve_precision
from labkit.models import build_model
from labkit.storage import load_verified
from labkit.training import loop
from labkit.training.checkpoint import checkpoint_path
from labkit.training.config import TrainConfig
from labkit.training.loop import NonFiniteLossError, fit
from tests.test_train import NaNAfter

FP16 = dict(model="cnn", batch_size=32, val_size=50, data="synthetic", progress=False, lr=0.02, precision="fp16")


@pytest.mark.parametrize("capability, expected", [((7, 5), "fp16"), ((7, 0), "fp16"), ((8, 0), "bf16"),
                                                  ((9, 0), "bf16")])
def test_auto_picks_by_compute_capability_not_by_emulated_bf16(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)   # what a T4 answers
    assert resolve_precision("auto", torch.device("cuda")) == expected


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(devicelib, "native_bf16", lambda device: native)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp16", torch.device("cpu")) == "fp16"


def test_fp16_with_a_grad_scaler_learns_the_synthetic_set():
    data = synthetic_cifar10(train_per_class=200, test_per_class=20)
    result = fit(TrainConfig(epochs=6, **dict(FP16, batch_size=64, val_size=100)), data)
    assert result.info["precision"] == "fp16"
    assert result.test.accuracy >= 0.9
    scaler = load_verified(checkpoint_path(result.config.run_name))[0]["scaler"]
    assert scaler and scaler["scale"] > 0


class InfGradientOnce(nn.Module):
    """Wraps a model; on training step `at` its output's gradient becomes inf (an fp16 overflow)."""
    def __init__(self, inner, at):
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                out.register_hook(lambda grad: grad * math.inf)
        return out


def test_an_overflowing_step_is_skipped_and_training_goes_on(tiny_data, monkeypatch):
    clean = fit(TrainConfig(run_name="clean", epochs=2, **FP16), tiny_data)
    monkeypatch.setattr(loop, "build_model", lambda *a, **k: InfGradientOnce(build_model("cnn"), 3))
    skipped = fit(TrainConfig(run_name="skipped", epochs=2, **FP16), tiny_data)
    assert all(math.isfinite(r["train_loss"]) for r in skipped.history)
    scales = [load_verified(checkpoint_path(name))[0]["scaler"]["scale"] for name in ("clean", "skipped")]
    assert scales[1] == scales[0] / 2                 # the scaler backed off once, for the skipped step
    assert skipped.history[-1]["train_loss"] != clean.history[-1]["train_loss"]   # one update fewer


def test_fp16_resume_with_the_scaler_is_exact(tiny_data):
    config = dict(epochs=3, **FP16)
    whole = fit(TrainConfig(run_name="whole16", **config), tiny_data)
    fit(TrainConfig(run_name="split16", **config), tiny_data, stop_after=1)
    resumed = fit(TrainConfig(run_name="split16", resume=True, **config), tiny_data)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [r["train_loss"] for r in whole.history] == [r["train_loss"] for r in resumed.history]


def test_a_loss_that_stays_non_finite_still_stops_an_fp16_run(tiny_data, monkeypatch):
    monkeypatch.setattr(loop, "build_model", lambda *a, **k: NaNAfter(build_model("cnn"), 2))
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch \d, step \d+ .*stayed non-finite for 11 "
                                                 r"steps; the last good checkpoint"):
        fit(TrainConfig(run_name="nan16", epochs=3, **FP16), tiny_data)

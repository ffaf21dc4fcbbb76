"""The recipe options (cutout, warmup start, EMA, TTA levels) and checkpoints that stay resumable
across format versions."""
import torch
from torch import nn

from labkit.data import BatchLoader
from labkit.evaluate import predict, predict_levels
from labkit.models import build_model
from labkit.storage import load_verified
from labkit.training.checkpoint import checkpoint_path
from labkit.training.config import TrainConfig
from labkit.training.ema import WeightEMA
from labkit.training.loop import fit, make_optimizer, make_schedule

FAST = dict(model="cnn", batch_size=32, val_size=50, data="synthetic", progress=False, lr=0.02)


def test_cutout_blanks_one_square_per_image_and_leaves_the_crop_and_flip_stream_alone(tiny_data):
    images, labels = tiny_data.train_images[:64], tiny_data.train_labels[:64]
    plain = next(iter(BatchLoader(images, labels, 64, train=True, seed=3)))[0]
    cut = next(iter(BatchLoader(images, labels, 64, train=True, seed=3, cutout=12)))[0]
    changed = (plain != cut).any(1)                                   # N×32×32: pixels cut out
    zeroed = (cut == 0).all(1)
    assert (changed <= zeroed).all()                                  # what changed is now the mean colour
    assert ((zeroed & ~(plain == 0).all(1)) == changed).all()
    # every image loses one 12×12 square (a pixel already at the mean may not show as a change)
    rows, cols = zeroed.any(2).sum(1), zeroed.any(1).sum(1)
    assert (rows == 12).all() and (cols == 12).all()
    assert cut.is_contiguous(memory_format=torch.channels_last)


def test_warmup_starts_at_the_given_fraction_of_the_peak():
    model = nn.Linear(2, 2)
    config = TrainConfig(model="cnn", epochs=10, lr=0.2, warmup_epochs=2, warmup_start_factor=0.2)
    optimizer = make_optimizer(model, config)
    schedule = make_schedule(optimizer, config, steps_per_epoch=10)   # 20 warmup steps of 100
    lrs = [schedule.get_last_lr()[0]]
    for _ in range(99):
        optimizer.step()
        schedule.step()
        lrs.append(schedule.get_last_lr()[0])
    assert abs(lrs[0] - 0.2 * (0.2 + 0.8 / 20)) < 1e-9
    assert abs(lrs[19] - 0.2) < 1e-9 and lrs[19] == max(lrs)
    assert abs(lrs[-1] - 0.2 * 1 / 80) < 1e-9


def test_ema_is_the_running_average_of_the_weights():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = WeightEMA(model, decay=0.9)
    with torch.no_grad():
        for step in range(1, 40):
            before = ema.model[0].weight.clone()
            model[0].weight.add_(1.0)
            model[1].num_batches_tracked.add_(1)
            ema.update()
            decay = min(0.9, (1 + step) / (10 + step))
            torch.testing.assert_close(ema.model[0].weight, decay * before + (1 - decay) * model[0].weight)
    assert ema.model[1].num_batches_tracked == model[1].num_batches_tracked
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_run_reports_both_weights_and_resumes_exactly(tiny_data):
    config = dict(epochs=3, ema_decay=0.9, **FAST)
    whole = fit(TrainConfig(run_name="ema-whole", **config), tiny_data)
    assert all(0 <= r["val_acc_no_ema"] <= 1 for r in whole.history)
    assert fit(TrainConfig(run_name="ema-split", **config), tiny_data, stop_after=2) is None
    resumed = fit(TrainConfig(run_name="ema-split", resume=True, **config), tiny_data)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    live = load_verified(checkpoint_path("ema-whole"))[0]["model"]
    assert any(not torch.equal(live[k].half().float(), v.float()) for k, v in whole.model.state_dict().items()
               if v.is_floating_point())                              # the result is the EMA, not the live weights


def test_tta_level_two_adds_mirrored_one_pixel_shifts():
    torch.manual_seed(0)
    model = build_model("cnn").eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    levels = predict_levels(model, images, (0, 1, 2), channels_last=False)
    x = next(iter(BatchLoader(images, torch.zeros(6, dtype=torch.int64), 6, train=False, channels_last=False)))[0]
    with torch.no_grad():
        def mirrored(v):
            return (model(v) + model(v.flip(3))) / 2
        padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        expected = mirrored(x) / 2 + (mirrored(padded[..., :32, :32]) + mirrored(padded[..., 2:, 2:])) / 4
    torch.testing.assert_close(levels[2], expected.softmax(1))
    torch.testing.assert_close(levels[1], predict(model, images, tta=True, channels_last=False))
    torch.testing.assert_close(levels[0], predict(model, images, channels_last=False))


def test_a_version_1_checkpoint_from_before_the_new_fields_still_resumes(tiny_data):
    """A run in flight when labkit gained cutout, warmup_start_factor, ema_decay and TTA levels:
    its checkpoint is a plain torch.save without them, and resumes to the uninterrupted result."""
    whole = fit(TrainConfig(run_name="v1-whole", epochs=3, **FAST), tiny_data)
    fit(TrainConfig(run_name="v1", epochs=3, **FAST), tiny_data, stop_after=1)
    path = checkpoint_path("v1")
    state = load_verified(path)[0]
    for new_field in ("cutout", "warmup_start_factor", "ema_decay", "overwrite", "exempt_excitation_decay"):
        state["config"].pop(new_field, None)
    state["config"]["tta"] = True
    for new_key in ("version", "ema"):
        state.pop(new_key)
    torch.save(state, path)                                           # the old format: no header, no version
    assert not load_verified(path)[1]
    resumed = fit(TrainConfig(run_name="v1", epochs=3, resume=True, **FAST), tiny_data)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert load_verified(path)[1]                                     # rewritten in today's verified format


def test_a_checkpoint_written_before_the_stage_layout_resumes(tiny_data):
    """tests/fixtures/checkpoint-656d364-v3.pt was written by commit 656d364 (format 3, the flat
    labkit/ package that the DenseNet weight-decay trials of issue 29 were started with) after epoch 1
    of 3, with EMA and cutout; today's labkit resumes it and finishes the run."""
    import shutil

    from tests.helpers import FIXTURES
    path = checkpoint_path("from-656d364")
    path.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "checkpoint-656d364-v3.pt", path)
    written = load_verified(path)[0]
    assert written["version"] == 3 and "exempt_excitation_decay" not in written["config"]
    result = fit(TrainConfig(run_name="from-656d364", epochs=3, ema_decay=0.9, cutout=8, resume=True, **FAST),
                 tiny_data)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.history[0] == written["history"][0]                 # epoch 1 came from the checkpoint
    assert result.test is not None and load_verified(path)[0]["epoch"] == 3

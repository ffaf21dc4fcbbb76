"""Training: one config dataclass, one `fit()`, resumable checkpoints, and the CLI.

    python -m labkit.train --model resnet18 --epochs 15 --data auto [--run-name NAME] [--resume]

Recipe: SGD with Nesterov momentum, weight decay on conv/linear weights only (not on BN or
biases), label smoothing, a learning rate that rises linearly for `warmup_epochs` and then
falls linearly to zero, stepped every batch. bf16 autocast and channels_last where the device
supports them. Validation curves come from a split carved from train; the test split is
evaluated once, after the last epoch.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from . import data as datalib, distributed
from .checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint
from .ema import WeightEMA
from .evaluate import TTA_LEVELS, Evaluation, evaluate, evaluate_levels
from .models import available_models, build_model, check_model_name, count_parameters
from .precision import PRECISIONS, autocast, grad_scaler, resolve_precision
from .progress import progress_bar
from .results import RESERVED_NAMES, git_commit, run_dir, save_run
from .runlock import RunInUseError, claim_run, release_run
from .storage import StorageError

# Epoch budgets of the real runs (issue: CNN 30, the others 15).
RECOMMENDED_EPOCHS = {"cnn": 30}
SYNTHETIC_VAL_SIZE = 100   # the synthetic set has 1,000 train images: CIFAR's 5,000 would not fit


HOST_SYNC_STEPS = 50      # on CUDA, steps between reads of loss and accuracy by the host
MAX_SKIPPED_STEPS = 10    # fp16: overflowing steps in a row the scaler may skip before the run stops


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class RunExistsError(ValueError):
    """A fresh run would replace an existing checkpoint or finished results."""


# The TrainConfig fields that make a training recipe: runs that differ in nothing else are seeds of one recipe.
RECIPE_FIELDS = ("batch_size", "lr", "warmup_epochs", "warmup_start_factor", "momentum", "weight_decay",
                 "label_smoothing", "cutout", "ema_decay")


@dataclass
class TrainConfig:
    model: str = "resnet18"
    epochs: int = 15
    batch_size: int = 128           # small batches run fastest per image on CPU (cache-resident)
    lr: float = 0.1                 # peak learning rate, reached after warmup
    warmup_epochs: float = 1.0
    warmup_start_factor: float = 0.0  # the warmup starts at this fraction of the peak lr
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    cutout: int = 0                 # side of the square cut out of each training image (0 = off)
    ema_decay: float = 0.0          # per-step decay of an EMA of the weights (0 = off); curves and test use it
    data: str = "auto"              # see labkit.data.load_cifar10
    val_size: int = 5000            # held out from train for curves and tuning
    train_subset: int = 0           # >0: train on a stratified subset of this size
    seed: int = 0
    device: str = "auto"            # auto, cpu, cuda, cuda:N
    precision: str = "auto"         # auto, bf16, fp16 (with a GradScaler) or fp32; see labkit.precision
    channels_last: bool = True
    compile: bool = False
    sync_batchnorm: bool = False    # torchrun with several ranks: batch-norm statistics over the global batch
    memory_efficient: bool = False  # densenet_cifar only: recompute concat+BN+ReLU+1×1 in backward
    tta: int = 1                    # TTA level reported as the test accuracy: 0 none, 1 flip, 2 flip + shifts
    run_name: str = ""              # defaults to the model name
    resume: bool = False            # continue from the run's checkpoint
    overwrite: bool = False         # replace the run's checkpoint and results instead of refusing
    progress: bool = True

    def __post_init__(self):
        self.run_name = self.run_name or self.model
        self.validate()

    def validate(self) -> None:
        check_model_name(self.model)
        problems = []
        if not isinstance(self.epochs, int) or self.epochs < 1:
            problems.append(f"epochs must be an integer ≥ 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch_size must be an integer ≥ 1, got {self.batch_size!r}")
        not_finite = [f.name for f in fields(self) if f.type == "float" and not finite_number(getattr(self, f.name))]
        problems += [f"{name} must be a finite number, got {getattr(self, name)!r}" for name in not_finite]
        if "lr" not in not_finite and not self.lr > 0:
            problems.append(f"lr must be a finite number > 0, got {self.lr!r}")
        if "warmup_epochs" not in not_finite and not 0 <= self.warmup_epochs <= self.epochs:
            problems.append(f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs!r}")
        if "warmup_start_factor" not in not_finite and not 0 <= self.warmup_start_factor <= 1:
            problems.append(f"warmup_start_factor must be in [0, 1], got {self.warmup_start_factor!r}")
        if "momentum" not in not_finite and not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum!r}")
        if "weight_decay" not in not_finite and not self.weight_decay >= 0:
            problems.append(f"weight_decay must be ≥ 0, got {self.weight_decay!r}")
        if "label_smoothing" not in not_finite and not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if "ema_decay" not in not_finite and not 0 <= self.ema_decay < 1:
            problems.append(f"ema_decay must be in [0, 1) (0 = no EMA), got {self.ema_decay!r}")
        if not isinstance(self.cutout, int) or not 0 <= self.cutout <= 32:
            problems.append(f"cutout must be an integer in [0, 32] (0 = off), got {self.cutout!r}")
        if self.tta not in TTA_LEVELS:
            problems.append(f"tta must be one of {sorted(TTA_LEVELS)} ({TTA_LEVELS}), got {self.tta!r}")
        if not isinstance(self.val_size, int) or self.val_size < 0:
            problems.append(f"val_size must be an integer ≥ 0, got {self.val_size!r}")
        if not isinstance(self.train_subset, int) or self.train_subset < 0:
            problems.append(f"train_subset must be an integer ≥ 0 (0 = all), got {self.train_subset!r}")
        if device_problem(self.device):
            problems.append(device_problem(self.device))
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.memory_efficient and self.model != "densenet_cifar":
            problems.append("memory_efficient applies to densenet_cifar only")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.run_name):
            problems.append(f"run_name must be letters, digits, '_', '-' or '.', without path separators, "
                            f"got {self.run_name!r}")
        elif self.run_name in RESERVED_NAMES:
            problems.append(f"run_name {self.run_name!r} is reserved: results/{self.run_name}/ holds "
                            f"{', '.join(RESERVED_NAMES)} rather than a run")
        if self.resume and self.overwrite:
            problems.append("resume and overwrite exclude each other: resume continues the run, overwrite "
                            "starts it again")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def validate_sizes(self, train_size: int) -> None:
        """Checks that need the data: the batch must fit in the training split."""
        if self.batch_size > train_size:
            raise ValueError(f"batch_size {self.batch_size} is larger than the training split "
                             f"({train_size} images); lower batch_size or val_size")


def finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def device_problem(name: str) -> str | None:
    """Why `name` is not a usable device here, or None."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(name)):
        return f"device must be auto, cpu, cuda or cuda:N, got {name!r}"
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        return f"device {name!r} asked for, but CUDA is not available here"
    return None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Nesterov SGD; BN weights and all biases (1-D parameters) get no weight decay."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Linear warmup from `warmup_start_factor` × the peak lr to the peak, then linear decay to 0;
    one step per batch."""
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    start = config.warmup_start_factor

    def factor(step: int) -> float:
        if step < warmup:
            return start + (1 - start) * (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class FitResult:
    config: TrainConfig
    model: nn.Module                # the evaluated weights: the EMA when ema_decay > 0
    history: list[dict]
    test: Evaluation | None         # at TTA level config.tta; None for a tuning trial (evaluate_test=False)
    test_plain_accuracy: float | None  # without TTA, for reference
    info: dict                      # device, precision, timings, memory, data provenance, params, and
                                    # val (and test) accuracy at every TTA level, keyed "0", "1", "2"


def fit(config: TrainConfig, data: datalib.Cifar10 | None = None, *, stop_after: int | None = None,
        evaluate_test: bool = True) -> FitResult | None:
    """Train `config.model` and evaluate it once on test after the last epoch.

    `data` defaults to `load_cifar10(config.data)`. `stop_after=k` trains up to epoch k,
    checkpoints and returns None (to split a long run across sessions; resume later).
    `evaluate_test=False` (recipe tuning, judged on val) never touches the test split.
    The run name stays claimed by this process (labkit.runlock) until `save_run` publishes the
    result; it is released at once when there is nothing to publish or training fails.
    """
    check_stop_after(stop_after)
    try:
        result = train_run(config, data, stop_after, evaluate_test)
    except BaseException:
        release_run(config.run_name)
        raise
    if result is None or result.test is None:
        release_run(config.run_name)
    return result


def train_run(config: TrainConfig, data: datalib.Cifar10 | None, stop_after: int | None,
              evaluate_test: bool) -> FitResult | None:
    """The body of `fit`: set-up, resume, the epochs, the final evaluation."""
    context = distributed.from_environment()
    device = distributed.start(context, resolve_device(config.device))
    precision = resolve_precision(config.precision, device)
    data = data if data is not None else datalib.load_cifar10(config.data)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

    train_idx, val_idx = datalib.train_val_split(data.train_labels, config.val_size, config.seed)
    if config.train_subset > len(train_idx):
        raise ValueError(f"train_subset {config.train_subset} exceeds the {len(train_idx)} training images")
    if 0 < config.train_subset < len(train_idx):
        train_idx = train_idx[datalib.subset_indices(data.train_labels[train_idx], config.train_subset, config.seed)]
    config.validate_sizes(len(train_idx))
    train_loader = datalib.BatchLoader(data.train_images[train_idx], data.train_labels[train_idx],
                                       config.batch_size, train=True, device=device, seed=config.seed,
                                       channels_last=config.channels_last, cutout=config.cutout,
                                       rank=context.rank, world_size=context.world_size)

    torch.manual_seed(config.seed)
    options = {"memory_efficient": True} if config.memory_efficient else {}
    model = build_model(config.model, len(data.classes), **options).to(device, memory_format=memory_format)
    optimizer = make_optimizer(model, config)
    schedule = make_schedule(optimizer, config, len(train_loader))
    ema = WeightEMA(model, config.ema_decay) if config.ema_decay else None
    scaler = grad_scaler(device, precision)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True   # fixed input shapes: let cuDNN pick its fastest kernels
    step_model = distributed.wrap(model, context, device, config.sync_batchnorm)
    step_model = torch.compile(step_model) if config.compile else step_model

    history: list[dict] = []
    start_epoch = 0
    ckpt = checkpoint_path(config.run_name)
    refuse_to_replace(config, ckpt)
    if context.is_main:
        claim_run(config.run_name)
        if config.overwrite:
            ckpt.unlink(missing_ok=True)
    distributed.barrier(context)
    if config.resume and ckpt.is_file():
        state = load_checkpoint(ckpt, config, data.checksum)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if ema:
            ema.load_state_dict(state["ema"])
        if scaler.is_enabled() and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        history, start_epoch = state["history"], state["epoch"]
        print(f"resumed {config.run_name} from {ckpt} after epoch {start_epoch}/{config.epochs}; "
              f"the epochs before, from the checkpoint's history:")
        for record in history:
            print(epoch_line(config, record), flush=True)
    elif config.resume:
        print(f"no checkpoint at {ckpt}; training {config.run_name} from scratch")

    def score_val(net: nn.Module, **options) -> Evaluation:
        return evaluate(net, data.train_images[val_idx], data.train_labels[val_idx], data.classes,
                        device=device, precision=precision, channels_last=config.channels_last, **options)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    commit = (git_commit()["git_commit"] or "unknown")[:10]
    guard = NonFiniteGuard(MAX_SKIPPED_STEPS if scaler.is_enabled() else 0, ckpt)
    last_epoch = config.epochs if stop_after is None else min(stop_after, config.epochs)
    for epoch in range(start_epoch, last_epoch):
        started = time.perf_counter()
        guard.checkpoint_epoch = epoch
        record = train_one_epoch(step_model, train_loader, optimizer, schedule, scaler, ema, config, epoch,
                                 device=device, precision=precision, guard=guard, context=context)
        if len(val_idx) and context.is_main:
            val = score_val(ema.model if ema else model)
            record.update(val_loss=val.loss, val_acc=val.accuracy)
            if ema:  # the live weights too, so one run measures what the EMA adds
                record["val_acc_no_ema"] = score_val(model).accuracy
        record["epoch_time_s"] = time.perf_counter() - started
        record["git_commit"] = commit  # the code that trained this epoch (runs may resume across versions)
        history.append(record)
        if not context.is_main:
            distributed.barrier(context)   # rank 0 evaluates and checkpoints meanwhile
            continue
        print(epoch_line(config, record), flush=True)
        save_checkpoint(ckpt, {
            "config": asdict(config), "data_checksum": data.checksum, "epoch": epoch + 1, "history": history,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "ema": ema.state_dict() if ema else None, "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng_cpu": torch.get_rng_state(),
        })
        distributed.barrier(context)
    if last_epoch < config.epochs:
        return None
    if not context.is_main:   # rank 0 alone evaluates and publishes the run
        distributed.barrier(context)
        return FitResult(config, model, history, None, None, {"rank": context.rank})

    final = ema.model if ema else model
    round_weights_to_fp16(final)  # evaluate exactly the weights that results/<run>/model.pt ships
    tta_options = dict(device=device, precision=precision, channels_last=config.channels_last)
    info = {}
    if len(val_idx):
        val_levels = evaluate_levels(final, data.train_images[val_idx], data.train_labels[val_idx], data.classes,
                                     **tta_options)
        info["val_accuracy_by_tta"] = {str(level): e.accuracy for level, e in val_levels.items()}
    test, plain = None, None
    if evaluate_test:
        test_levels = evaluate_levels(final, data.test_images, data.test_labels, data.classes, **tta_options)
        test, plain = test_levels[config.tta], test_levels[0].accuracy
        info["test_accuracy_by_tta"] = {str(level): e.accuracy for level, e in test_levels.items()}
    train_time = sum(r["train_time_s"] for r in history)
    info.update({
        "device": device_name(device), "device_type": device.type, "precision": precision,
        "threads": torch.get_num_threads(), "torch_version": torch.__version__,
        "train_images": len(train_idx), "val_images": len(val_idx), "test_images": len(data.test_labels) if evaluate_test else 0,
        "training_wall_time_s": sum(r["epoch_time_s"] for r in history),
        "images_per_s": len(train_loader) * config.batch_size * context.world_size * len(history) / train_time,
        "world_size": context.world_size,
        "data_source": data.source, "data_location": data.location, "data_checksum": data.checksum,
        "params": count_parameters(model), **peak_memory(device),
    })
    distributed.barrier(context)
    return FitResult(config, final, history, test, plain, info)


def check_stop_after(stop_after: int | None) -> None:
    if stop_after is not None and (not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after (--stop-after) must be an epoch ≥ 1, got {stop_after!r}")


def refuse_to_replace(config: TrainConfig, ckpt: Path) -> None:
    """A run starts afresh only where it would destroy nothing, or when told to overwrite."""
    if config.overwrite:
        return
    how = ("pass resume=True (--resume) to continue it, overwrite=True (--overwrite) to start again, "
           "or choose another run_name")
    if ckpt.is_file() and not config.resume:
        raise RunExistsError(f"run {config.run_name!r} already has a checkpoint at {ckpt}; {how}")
    finished = run_dir(config.run_name) / "metrics.json"
    if finished.is_file():
        raise RunExistsError(f"run {config.run_name!r} already has finished results in {finished.parent}; "
                             f"pass overwrite=True (--overwrite) to train it again and replace them, "
                             f"or choose another run_name")


class NonFiniteGuard:
    """Stops the run on a non-finite loss; with fp16 only once it has stayed non-finite for more
    than `tolerated` steps in a row (the scaler skips such steps and lowers its scale)."""

    def __init__(self, tolerated: int, checkpoint: Path):
        self.tolerated, self.checkpoint, self.run, self.checkpoint_epoch = tolerated, checkpoint, 0, 0

    def check(self, bad_steps: int, window: int, where: str) -> None:
        """`bad_steps` of the last `window` steps had a non-finite loss."""
        self.run = self.run + bad_steps if bad_steps == window else 0
        if self.run > self.tolerated:
            lasted = f" and stayed non-finite for {self.run} steps" if self.tolerated else ""
            raise NonFiniteLossError(f"{where}{lasted}; the last good checkpoint (epoch {self.checkpoint_epoch}) "
                                     f"is kept at {self.checkpoint}. Lower lr or use fp32")


def train_one_epoch(model: nn.Module, loader: datalib.BatchLoader, optimizer: torch.optim.Optimizer, schedule,
                    scaler: torch.amp.GradScaler, ema: WeightEMA | None, config: TrainConfig, epoch: int, *,
                    device: torch.device, precision: str, guard: NonFiniteGuard,
                    context: distributed.Context = distributed.SINGLE) -> dict:
    """One pass over the shuffled, augmented training split; returns the epoch's train record.

    Loss and accuracy accumulate on the device. The host reads them (a GPU sync) only every
    HOST_SYNC_STEPS steps on CUDA, every step elsewhere, and at the end of the epoch. With fp16 the
    scaler skips a step whose gradients overflowed; only a loss that stays non-finite stops the run.
    """
    model.train()
    loader.epoch = epoch
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    sync_every = HOST_SYNC_STEPS if device.type == "cuda" else 1
    started = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    non_finite = torch.zeros((), device=device, dtype=torch.int64)   # in the current sync window
    seen, loss_value = 0, float("nan")
    bar = progress_bar(len(loader), f"{config.run_name} epoch {epoch + 1}/{config.epochs}",
                       config.progress and context.is_main)
    for step, (x, y) in enumerate(loader):
        with autocast(device, precision):
            logits = model(x)
            loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)       # an ordinary optimizer.step() unless fp16
        scaler.update()
        schedule.step()
        if ema:
            ema.update()
        finite = torch.isfinite(loss.detach())
        non_finite += ~finite
        loss_sum += torch.where(finite, loss.detach(), 0.0) * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if (step + 1) % sync_every == 0 or step + 1 == len(loader):
            loss_value = loss.item()
            guard.check(int(non_finite.item()), (step % sync_every) + 1,
                        f"loss became {loss_value} at epoch {epoch + 1}, step {step + 1} of {config.run_name}")
            non_finite.zero_()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", img_s=f"{seen / (time.perf_counter() - started):.0f}",
                        refresh=False)
    bar.close()
    train_time = time.perf_counter() - started
    images = torch.tensor(seen, device=device)
    distributed.sum_over_ranks(context, loss_sum, correct, images)   # the whole global batch's statistics
    seen = int(images.item())
    return {"epoch": epoch + 1, "train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen,
            "val_loss": None, "val_acc": None, "lr": schedule.get_last_lr()[0],
            "train_time_s": train_time, "images_per_s": seen / train_time}


@torch.no_grad()
def round_weights_to_fp16(model: nn.Module) -> None:
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(tensor.half())


def epoch_line(config: TrainConfig, r: dict) -> str:
    val = f" val_loss {r['val_loss']:.4f} val_acc {r['val_acc']:.4f}" if r["val_acc"] is not None else ""
    if r.get("val_acc_no_ema") is not None:
        val += f" (no EMA {r['val_acc_no_ema']:.4f})"
    return (f"[{config.run_name}] epoch {r['epoch']}/{config.epochs} train_loss {r['train_loss']:.4f} "
            f"train_acc {r['train_acc']:.4f}{val} lr {r['lr']:.4f} {r['images_per_s']:.0f} img/s "
            f"{r['epoch_time_s']:.0f} s")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model_name = ""
    try:
        model_name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                          if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {model_name} ({os.cpu_count()} cores)".replace("  ", " ")


def peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "peak_memory_kind": "CUDA max_memory_allocated"}
    return {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_memory_kind": "process peak RSS (includes the decoded data set)"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m labkit.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="resnet18", choices=available_models())
    for f in fields(TrainConfig):
        if f.name in ("model", "epochs", "resume", "overwrite", "progress", "channels_last", "compile",
                      "memory_efficient", "tta", "sync_batchnorm", "val_size"):
            continue
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    p.add_argument("--epochs", type=int, default=None, help="default: 30 for cnn, 15 for the others")
    p.add_argument("--val-size", type=int, default=None,
                   help=f"train images held out for validation (default: {TrainConfig.val_size}; "
                        f"{SYNTHETIC_VAL_SIZE} with --data synthetic, whose train split has 1,000 images)")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run's existing checkpoint and results (otherwise a fresh run refuses)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--memory-efficient", action="store_true", help="DenseNet: recompute in backward")
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="under torchrun: batch-norm statistics over all ranks' images (SyncBatchNorm)")
    p.add_argument("--tta", type=int, default=1, choices=sorted(TTA_LEVELS),
                   help="TTA level of the reported test accuracy: 0 none, 1 flip, 2 flip + two 1-pixel shifts "
                        "(all three are recorded)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--download", action="store_true", help="allow torchvision to download CIFAR-10")
    p.add_argument("--stop-after", type=int, default=None, help="train up to this epoch, checkpoint, exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = vars(parse_args(argv))
    download, stop_after = args.pop("download"), args.pop("stop_after")
    if args["epochs"] is None:
        args["epochs"] = RECOMMENDED_EPOCHS.get(args["model"], 15)
    if args["val_size"] is None:
        args["val_size"] = SYNTHETIC_VAL_SIZE if args["data"] == "synthetic" else TrainConfig.val_size
    try:
        check_stop_after(stop_after)
        config = TrainConfig(**args)
        data = datalib.load_cifar10(config.data, download=download) if config.data != "auto" \
            else datalib.load_cifar10("auto")
        result = fit(config, data, stop_after=stop_after)
    except (ValueError, CheckpointError, NonFiniteLossError, RunInUseError, StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.stop(distributed.from_environment())
    if result is None:
        print(f"stopped after epoch {stop_after}; continue with --resume")
        return 0
    if result.test is None:   # a rank other than 0 under torchrun: rank 0 saves the run
        return 0
    try:
        folder = save_run(result)
    except StorageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[{config.run_name}] test accuracy {result.test.accuracy:.4f} "
          f"(no TTA {result.test_plain_accuracy:.4f}) | wall time {result.info['training_wall_time_s']:.0f} s | "
          f"{result.info['images_per_s']:.0f} img/s | saved to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

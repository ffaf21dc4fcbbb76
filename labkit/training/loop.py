"""Training: one `fit()` over a TrainConfig, resumable from its checkpoint after every epoch.

Recipe: SGD with Nesterov momentum, weight decay on conv/linear weights only (not on BN or
biases), label smoothing, a learning rate that rises linearly for `warmup_epochs` and then
falls linearly to zero, stepped every batch. bf16 autocast and channels_last where the device
supports them. Validation curves come from a split carved from train; the test split is
evaluated once, after the last epoch.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from labkit import data as datalib
from labkit.device import autocast, device_name, grad_scaler, peak_memory, resolve_device, resolve_precision
from labkit.evaluate import Evaluation, evaluate, evaluate_levels
from labkit.models import build_model, count_parameters
from labkit.models.se_resnet import SqueezeExcitation
from labkit.provenance import git_commit
from labkit.runs.lock import claimed
from labkit.runs.store import check_destinations, run_dir
from labkit.storage import remove_leftovers, terminate_as_exception
from labkit.training import distributed
from labkit.training.checkpoint import capture_state, checkpoint_path, load_checkpoint, restore_state, save_checkpoint
from labkit.training.config import TrainConfig
from labkit.training.ema import WeightEMA
from labkit.training.progress import progress_bar

HOST_SYNC_STEPS = 50      # on CUDA, steps between reads of loss and accuracy by the host
MAX_SKIPPED_STEPS = 10    # fp16: overflowing steps in a row the scaler may skip before the run stops


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class RunExistsError(ValueError):
    """A fresh run would replace an existing checkpoint or finished results."""


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Nesterov SGD; BN weights and all biases (1-D parameters) get no weight decay, nor, with
    `exempt_excitation_decay`, the SE excitation layers' weights (decay can pull those bias-free
    layers, and so the gates, to a constant 0.5 faster than the loss pushes back)."""
    exempt = {id(p) for m in model.modules() if isinstance(m, SqueezeExcitation) for p in m.parameters()} \
        if config.exempt_excitation_decay else set()
    decay = [p for p in model.parameters() if p.ndim > 1 and id(p) not in exempt]
    no_decay = [p for p in model.parameters() if p.ndim <= 1 or id(p) in exempt]
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


@dataclass
class Setup:
    """Everything one run trains with, built by `set_up` before the first epoch."""
    config: TrainConfig
    context: distributed.Context
    device: torch.device
    precision: str
    data: datalib.Cifar10
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    loader: datalib.BatchLoader
    model: nn.Module                # the plain model: what the checkpoint holds
    step_model: nn.Module           # the model as trained: DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    ema: WeightEMA | None
    scaler: torch.amp.GradScaler
    checkpoint: Path

    @property
    def evaluated(self) -> nn.Module:
        """The weights that curves and test measure: the EMA's when there is one."""
        return self.ema.model if self.ema else self.model

    def score_val(self, net: nn.Module) -> Evaluation:
        return evaluate(net, self.data.train_images[self.val_idx], self.data.train_labels[self.val_idx],
                        self.data.classes, device=self.device, precision=self.precision,
                        channels_last=self.config.channels_last)


def fit(config: TrainConfig, data: datalib.Cifar10 | None = None, *, stop_after: int | None = None,
        evaluate_test: bool = True) -> FitResult | None:
    """Train `config.model` and evaluate it once on test after the last epoch.

    `data` defaults to `load_cifar10(config.data)`. `stop_after=k` trains up to epoch k,
    checkpoints and returns None (to split a long run across sessions; resume later).
    `evaluate_test=False` (recipe tuning, judged on val) never touches the test split.
    The run name is claimed by this process (labkit.runs.lock) while it trains; SIGTERM stops it
    like Ctrl-C, leaving the last checkpoint whole and no temp file behind.
    """
    check_stop_after(stop_after)
    refuse_to_replace(config)
    check_destinations(config.run_name)
    with terminate_as_exception():
        setup = set_up(config, data)
        with claimed(config.run_name, enabled=setup.context.is_main):
            if setup.context.is_main:
                remove_leftovers(setup.checkpoint.parent)   # temp files of a process killed mid-write
                if config.overwrite:
                    setup.checkpoint.unlink(missing_ok=True)
            distributed.barrier(setup.context)
            history = resume(setup)
            last_epoch = config.epochs if stop_after is None else min(stop_after, config.epochs)
            train_epochs(setup, history, last_epoch)
            if last_epoch < config.epochs:
                return None
            return final_evaluation(setup, history, evaluate_test)


def set_up(config: TrainConfig, data: datalib.Cifar10 | None) -> Setup:
    """Device, precision, the data split and loader, the model, optimiser, schedule, EMA and scaler."""
    context = distributed.from_environment()
    device = distributed.start(context, resolve_device(config.device))
    precision = resolve_precision(config.precision, device)
    data = data if data is not None else datalib.load_cifar10(config.data)
    train_idx, val_idx = datalib.train_val_split(data.train_labels, config.val_size, config.seed)
    if config.train_subset > len(train_idx):
        raise ValueError(f"train_subset {config.train_subset} exceeds the {len(train_idx)} training images")
    if 0 < config.train_subset < len(train_idx):
        train_idx = train_idx[datalib.subset_indices(data.train_labels[train_idx], config.train_subset, config.seed)]
    config.validate_sizes(len(train_idx))
    loader = datalib.BatchLoader(data.train_images[train_idx], data.train_labels[train_idx], config.batch_size,
                                 train=True, device=device, seed=config.seed, channels_last=config.channels_last,
                                 cutout=config.cutout, rank=context.rank, world_size=context.world_size)

    torch.manual_seed(config.seed)
    options = {"memory_efficient": True} if config.memory_efficient else {}
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = build_model(config.model, len(data.classes), **options).to(device, memory_format=memory_format)
    optimizer = make_optimizer(model, config)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True   # fixed input shapes: let cuDNN pick its fastest kernels
    step_model = distributed.wrap(model, context, device, config.sync_batchnorm)
    step_model = torch.compile(step_model) if config.compile else step_model
    return Setup(config, context, device, precision, data, train_idx, val_idx, loader, model, step_model, optimizer,
                 make_schedule(optimizer, config, len(loader)),
                 WeightEMA(model, config.ema_decay) if config.ema_decay else None,
                 grad_scaler(device, precision), checkpoint_path(config.run_name))


def resume(setup: Setup) -> list[dict]:
    """The history so far: restored from the checkpoint with everything it holds when resuming, else empty."""
    config, ckpt = setup.config, setup.checkpoint
    if not config.resume:
        return []
    if not ckpt.is_file():
        print(f"no checkpoint at {ckpt}; training {config.run_name} from scratch")
        return []
    state = load_checkpoint(ckpt, config, setup.data.checksum)
    history = restore_state(state, setup.model, setup.optimizer, setup.schedule, setup.ema, setup.scaler)
    print(f"resumed {config.run_name} from {ckpt} after epoch {len(history)}/{config.epochs}; "
          f"the epochs before, from the checkpoint's history:")
    for record in history:
        print(epoch_line(config, record), flush=True)
    return history


def train_epochs(setup: Setup, history: list[dict], last_epoch: int) -> None:
    """Train from the end of `history` up to `last_epoch`, appending one record per epoch; the main
    rank scores val and checkpoints after each."""
    config, context = setup.config, setup.context
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    commit = (git_commit()["git_commit"] or "unknown")[:10]
    guard = NonFiniteGuard(MAX_SKIPPED_STEPS if setup.scaler.is_enabled() else 0, setup.checkpoint)
    for epoch in range(len(history), last_epoch):
        started = time.perf_counter()
        guard.checkpoint_epoch = epoch
        record = train_one_epoch(setup.step_model, setup.loader, setup.optimizer, setup.schedule, setup.scaler,
                                 setup.ema, config, epoch, device=setup.device, precision=setup.precision,
                                 guard=guard, context=context)
        if len(setup.val_idx) and context.is_main:
            val = setup.score_val(setup.evaluated)
            guard.check_val(val.loss, epoch + 1)
            record.update(val_loss=val.loss, val_acc=val.accuracy)
            if setup.ema:  # the live weights too, so one run measures what the EMA adds
                record["val_acc_no_ema"] = setup.score_val(setup.model).accuracy
        record["epoch_time_s"] = time.perf_counter() - started
        record["git_commit"] = commit  # the code that trained this epoch (runs may resume across versions)
        history.append(record)
        if context.is_main:
            print(epoch_line(config, record), flush=True)
            save_checkpoint(setup.checkpoint, capture_state(config, setup.data.checksum, history, setup.model,
                                                            setup.optimizer, setup.schedule, setup.ema, setup.scaler))
        distributed.barrier(context)   # the other ranks wait while rank 0 evaluates and checkpoints


def final_evaluation(setup: Setup, history: list[dict], evaluate_test: bool) -> FitResult:
    """Val and (unless tuning) test at every TTA level, on the weights that results/<run>/model.pt
    ships, with the run's provenance; rank 0 alone evaluates."""
    config, context, data = setup.config, setup.context, setup.data
    if not context.is_main:
        distributed.barrier(context)
        return FitResult(config, setup.model, history, None, None, {"rank": context.rank})
    final = setup.evaluated
    round_weights_to_fp16(final)  # evaluate exactly the weights that results/<run>/model.pt ships
    tta_options = dict(device=setup.device, precision=setup.precision, channels_last=config.channels_last)
    info = {}
    if len(setup.val_idx):
        val_levels = evaluate_levels(final, data.train_images[setup.val_idx], data.train_labels[setup.val_idx],
                                     data.classes, **tta_options)
        info["val_accuracy_by_tta"] = {str(level): e.accuracy for level, e in val_levels.items()}
    test, plain = None, None
    if evaluate_test:
        test_levels = evaluate_levels(final, data.test_images, data.test_labels, data.classes, **tta_options)
        test, plain = test_levels[config.tta], test_levels[0].accuracy
        info["test_accuracy_by_tta"] = {str(level): e.accuracy for level, e in test_levels.items()}
    train_time = sum(r["train_time_s"] for r in history)
    info.update({
        "device": device_name(setup.device), "device_type": setup.device.type, "precision": setup.precision,
        "threads": torch.get_num_threads(), "torch_version": torch.__version__,
        "train_images": len(setup.train_idx), "val_images": len(setup.val_idx),
        "test_images": len(data.test_labels) if evaluate_test else 0,
        "training_wall_time_s": sum(r["epoch_time_s"] for r in history),
        "images_per_s": len(setup.loader) * config.batch_size * context.world_size * len(history) / train_time,
        "world_size": context.world_size,
        "data_source": data.source, "data_location": datalib.portable_location(data.location), "data_checksum": data.checksum,
        "params": count_parameters(setup.model), **peak_memory(setup.device),
    })
    distributed.barrier(context)
    return FitResult(config, final, history, test, plain, info)


def estimate_epoch_seconds(config: TrainConfig, data: datalib.Cifar10, steps: int = 4) -> float:
    """Seconds one training epoch of `config` takes on this machine, from `steps` timed steps of the
    same model, batch size, precision and device after as many warm-up steps (eager: compiling would
    take minutes). Touches no checkpoint or result."""
    train_images = config.train_subset or len(data.train_labels) - config.val_size
    probe = replace(config, train_subset=min(config.batch_size * steps, train_images), resume=False, overwrite=False,
                    progress=False, compile=False)   # compiling takes minutes: the eager pace is the estimate
    setup = set_up(probe, data)
    guard = NonFiniteGuard(MAX_SKIPPED_STEPS, setup.checkpoint)
    for epoch in range(2):       # the first pass warms up (kernel selection, allocations); the second is timed
        record = train_one_epoch(setup.step_model, setup.loader, setup.optimizer, setup.schedule, setup.scaler,
                                 setup.ema, probe, epoch, device=setup.device, precision=setup.precision, guard=guard)
    return train_images / record["images_per_s"]


def check_stop_after(stop_after: int | None) -> None:
    if stop_after is not None and (not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after (--stop-after) must be an epoch ≥ 1, got {stop_after!r}")


def refuse_to_replace(config: TrainConfig) -> None:
    """A run starts afresh only where it would destroy nothing, or when told to overwrite; checked
    before any data is decoded or model built."""
    if config.overwrite:
        return
    ckpt = checkpoint_path(config.run_name)
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

    def check_val(self, val_loss: float, epoch: int) -> None:
        """A non-finite val loss stops the run before its epoch is checkpointed or published."""
        if not math.isfinite(val_loss):
            raise NonFiniteLossError(f"the val loss became {val_loss} after epoch {epoch}; the last good checkpoint "
                                     f"(epoch {self.checkpoint_epoch}) is kept at {self.checkpoint}. Lower lr or "
                                     f"use fp32")


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
    counted = torch.zeros((), device=device, dtype=torch.int64)      # images of steps with a finite loss
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
        counted += finite * len(y)
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
    distributed.sum_over_ranks(context, loss_sum, correct, images, counted)   # the global batch's statistics
    seen, counted = int(images.item()), int(counted.item())
    # the mean over the steps whose loss was finite (fp16 skips the others): NaN when there were none
    train_loss = loss_sum.item() / counted if counted else float("nan")
    return {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": correct.item() / seen,
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

"""The training recipe and run settings: one dataclass, validated on construction.

Every setting is declared once, here, with its help text: the command line (`python -m labkit.train
--help`), the notebooks' parameter cells (scripts/build_notebooks.py) and the README's settings table
are generated from these declarations. HEADLINE_RECIPES holds each model's recipe as report.md
headlines it; the command line and the notebooks start from it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import re
from dataclasses import dataclass, field, fields, replace

from labkit.device import PRECISIONS, device_problem
from labkit.evaluate import TTA_LEVELS
from labkit.models import available_models, check_model_name
from labkit.paths import checkpoint_root, results_root
from labkit.runs.store import RESERVED_NAMES

SYNTHETIC_VAL_SIZE = 100   # the synthetic set has 1,000 train images: CIFAR's 5,000 would not fit
# Smoke mode (env LABKIT_SMOKE=1, labkit.paths): every command trains at most this many epochs on synthetic data
# (`smoke_config`).
SMOKE_EPOCHS = 2
SMOKE_SETTINGS = dict(data="synthetic", val_size=SYNTHETIC_VAL_SIZE, batch_size=64, train_subset=0)
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")   # a folder name: no path separators
MAX_RUN_NAME = 100         # characters; the results and checkpoint folders and their temp siblings must fit a file name
# The TrainConfig fields that make a training recipe: runs that differ in nothing else are seeds of one recipe.
RECIPE_FIELDS = ("batch_size", "lr", "warmup_epochs", "warmup_start_factor", "momentum", "weight_decay",
                 "label_smoothing", "cutout", "ema_decay", "exempt_excitation_decay")

LONG_RUN = dict(epochs=40, cutout=12, ema_decay=0.997, tta=2)
# The recipe of each model's headline run in report.md (chosen on val: results/tuning/, scripts/real_runs.sh),
# over TrainConfig's defaults. The command line and the notebooks start from it; when a new headline run
# lands, change it here (tests/test_recipe.py checks it against the run report.md shows).
HEADLINE_RECIPES = {
    "cnn": dict(LONG_RUN, epochs=60, cutout=0),   # its runs predate the cutout decision (scripts/real_runs.sh)
    "resnet18": dict(LONG_RUN, epochs=80, val_size=0),         # the final fits (issue 29), on all 50,000 images
    "densenet_cifar": dict(LONG_RUN, epochs=80, val_size=0),
    "se_resnet18": dict(LONG_RUN, epochs=80, val_size=0),
    "se_resnet18_imagenet_stem": LONG_RUN,
    "plain18": dict(epochs=15),     # the control: the committed 15-epoch resnet18 run's recipe
}


def setting(default, help: str, *, notebook: bool = True, models: tuple[str, ...] | None = None):
    """A TrainConfig field with its help text; `notebook`: whether notebooks take it as a parameter;
    `models`: the models it applies to (None: all)."""
    return field(default=default, metadata={"help": help, "notebook": notebook, "models": models})


@dataclass
class TrainConfig:
    model: str = setting("resnet18", "architecture: cnn, resnet18, plain18, densenet_cifar, se_resnet18 or "
                                     "se_resnet18_imagenet_stem")
    epochs: int = setting(15, "training epochs: the whole schedule, warmup then linear decay to zero")
    batch_size: int = setting(128, "images per SGD step (small batches run fastest per image on CPU)")
    lr: float = setting(0.1, "peak learning rate, reached after the warmup")
    warmup_epochs: float = setting(1.0, "length of the linear warmup, in epochs")
    warmup_start_factor: float = setting(0.0, "the warmup starts at this fraction of the peak lr")
    momentum: float = setting(0.9, "SGD momentum (Nesterov when > 0)")
    weight_decay: float = setting(5e-4, "L2 weight decay on conv and linear weights (not on BN or biases)")
    exempt_excitation_decay: bool = setting(False, "no weight decay on the SE excitation layers' weights",
                                            models=("se_resnet18", "se_resnet18_imagenet_stem"))
    label_smoothing: float = setting(0.1, "label smoothing of the cross-entropy loss; 0 turns it off")
    cutout: int = setting(0, "side of the square blanked in each training image; 0 turns it off")
    ema_decay: float = setting(0.0, "per-step decay of an average of the weights, which curves and test "
                                    "use; 0 turns it off")
    tta: int = setting(1, "TTA level of the reported test accuracy: 0 none, 1 flip, 2 flip and two 1-px "
                          "shifts (all three are recorded)")
    data: str = setting("auto", "auto, synthetic, torchvision, or a path to an image folder or archive "
                                "(see README, Data)")
    val_size: int = setting(5000, "train images held out for curves and tuning; 0 trains on all of them "
                                  "(a final fit)")
    train_subset: int = setting(0, "> 0: train on a stratified subset of this many images (quick trials)")
    seed: int = setting(0, "seeds the split, the initialisation and the batch order")
    device: str = setting("auto", "auto (CUDA if present), cpu, cuda or cuda:N")
    precision: str = setting("auto", "auto (bf16 or fp16 by device), bf16, fp16 (with loss scaling) or fp32")
    channels_last: bool = setting(True, "NHWC memory layout for convolutions")
    compile: bool = setting(False, "torch.compile the model (on these CPUs faster for DenseNet, mixed for the "
                                         "others: see results/benchmarks)")
    sync_batchnorm: bool = setting(False, "under torchrun: batch-norm statistics over all ranks' images",
                                   notebook=False)
    memory_efficient: bool = setting(False, "recompute concat, BN, ReLU and the 1×1 convolution in backward "
                                            "(less memory, slower)", models=("densenet_cifar",))
    run_name: str = setting("", "folder name under results/; empty: a new name, <model>-<date>-<time> (with "
                                "resume: the model's newest unfinished run)")
    resume: bool = setting(False, "continue the run from its checkpoint in ~/.cache/labkit/checkpoints")
    overwrite: bool = setting(False, "replace the run's existing checkpoint and results (otherwise refused)")
    progress: bool = setting(True, "show a progress bar per epoch", notebook=False)

    def __post_init__(self):
        if not self.run_name and isinstance(self.model, str):
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise ValueError("under torchrun every rank must train the same run: pass run_name (--run-name)")
            self.run_name = unfinished_run(self.model) if self.resume else fresh_run_name(self.model)
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
        problems += [f"{f.name} applies to {' and '.join(f.metadata['models'])} only" for f in fields(self)
                     if f.metadata.get("models") and self.model not in f.metadata["models"]
                     and getattr(self, f.name) != f.default]
        if not isinstance(self.run_name, str) or not RUN_NAME.fullmatch(self.run_name):
            problems.append(f"run_name must be letters, digits, '_', '-' or '.', without path separators, "
                            f"got {self.run_name!r}")
        elif len(self.run_name) > MAX_RUN_NAME:
            problems.append(f"run_name is {len(self.run_name)} characters long; at most {MAX_RUN_NAME} fit a "
                            f"folder name with room for its temporary siblings")
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


def defaults_for(model: str) -> dict:
    """Every setting's default for `model`: TrainConfig's, with the model's headline recipe over it."""
    return {**{f.name: f.default for f in fields(TrainConfig)}, "model": model, **HEADLINE_RECIPES.get(model, {})}


def smoke_config(config: TrainConfig, max_epochs: int = SMOKE_EPOCHS, **changes) -> TrainConfig:
    """`config` cut to smoke size: synthetic data, at most `max_epochs` epochs and one of warmup; `changes` on top."""
    return replace(config, **SMOKE_SETTINGS, epochs=min(config.epochs, max_epochs),
                   warmup_epochs=min(config.warmup_epochs, 1.0), **changes)


def notebook_settings(model: str) -> list:
    """The fields a notebook for `model` takes as parameters, in declaration order."""
    return [f for f in fields(TrainConfig) if f.metadata["notebook"]
            and (f.metadata["models"] is None or model in f.metadata["models"])]


def fresh_run_name(model: str) -> str:
    """'resnet18-20261201-154012': the model and the start time, with '-2', '-3'… if that is taken."""
    name = f"{model}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    candidate, n = name, 1
    while (results_root() / candidate).exists() or (checkpoint_root() / candidate).exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def unfinished_run(model: str) -> str:
    """The newest run of `model` with a checkpoint and no published results, for resume without a name."""
    candidates = [*checkpoint_root().glob(f"{model}/last.pt"), *checkpoint_root().glob(f"{model}-*/last.pt")]
    unfinished = [path.parent for path in candidates
                  if not (results_root() / path.parent.name / "metrics.json").is_file()]
    if not unfinished:
        raise ValueError(f"resume without a run_name continues {model}'s newest unfinished run, but no checkpoint "
                         f"of an unfinished {model} run is in {checkpoint_root()}; pass run_name, or start a new "
                         f"run without resume")
    return max(unfinished, key=lambda folder: (folder / "last.pt").stat().st_mtime).name


def add_option(parser: argparse.ArgumentParser, name: str, *, unset: bool = False, note: str = "") -> None:
    """Setting `name` as the option --name-with-dashes, with its declared type and help. An absent
    option takes the declared default, or with `unset` stays None for the caller to fill in; `note`
    replaces "default …" in the help."""
    f = next(f for f in fields(TrainConfig) if f.name == name)
    option = "--" + name.replace("_", "-")
    default = None if unset else f.default
    help = f"{f.metadata['help']} ({note or f'default {f.default!r}'})"
    if name == "model":
        parser.add_argument(option, choices=available_models(), default=default, help=help)
    elif isinstance(f.default, bool):
        parser.add_argument(option, action=argparse.BooleanOptionalAction, default=default, help=help)
    else:
        parser.add_argument(option, type=type(f.default), metavar=type(f.default).__name__.upper(), default=default,
                            help=help)

"""Train one model from the command line: evaluate it once on test after the last epoch and save
results/<run>/.

    python -m labkit.train --model resnet18 [--epochs 40] [--data auto] [--run-name NAME] [--resume]

The loop itself lives in labkit.training; `from labkit.train import fit, TrainConfig` still works.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from labkit import data as datalib
from labkit.paths import smoke_mode
from labkit.runs.lock import RunInUseError
from labkit.runs.store import RunDataError, check_destinations, run_dir, save_run
from labkit.storage import StorageError
from labkit.training import distributed
from labkit.training.checkpoint import CheckpointError, saved_settings
from labkit.training.config import (
    HEADLINE_RECIPES,
    SMOKE_EPOCHS,
    SYNTHETIC_VAL_SIZE,
    TrainConfig,
    add_option,
    defaults_for,
    smoke_config,
    unfinished_run,
)
from labkit.training.loop import NonFiniteLossError, check_stop_after, fit, refuse_to_replace

__all__ = ["TrainConfig", "fit", "main"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """One option per TrainConfig setting, with its help text; unset options stay None and take the
    model's headline recipe (`training.config.defaults_for`)."""
    p = argparse.ArgumentParser(prog="python -m labkit.train", description=__doc__.split("\n\n")[0],
                                epilog="Unset options take the model's recipe as report.md headlines it "
                                       "(labkit.training.config.HEADLINE_RECIPES), else the default shown.")
    for f in fields(TrainConfig):
        recipe = sorted({m for m, r in HEADLINE_RECIPES.items() if f.name in r})
        add_option(p, f.name, unset=True,
                   note=f"default {f.default!r}" + (f"; the recipe sets it for {', '.join(recipe)}" if recipe else ""))
    p.add_argument("--download", action="store_true", help="allow torchvision to download CIFAR-10 into data/")
    p.add_argument("--stop-after", type=int, default=None, metavar="EPOCH",
                   help="train up to this epoch, checkpoint and exit (continue later with --resume)")
    return p.parse_args(argv)


def config_from_args(args: dict) -> TrainConfig:
    """The options given, over the model's headline recipe; synthetic data holds out 100 images for val."""
    model = args["model"] or TrainConfig.model
    given = {name: value for name, value in args.items() if value is not None}
    if args.get("data") == "synthetic" and args.get("val_size") is None:
        given["val_size"] = SYNTHETIC_VAL_SIZE
    base = defaults_for(model)
    if given.get("resume"):     # a resumed run keeps the settings it started with, unless told otherwise
        base.update(saved_settings(given.get("run_name") or unfinished_run(model)))
    config = TrainConfig(**{**base, **given})     # validates what the user asked for
    datalib.check_data_spec(config.data)
    if not smoke_mode():
        return config
    print(f"LABKIT_SMOKE=1: smoke mode, at most {SMOKE_EPOCHS} epochs on synthetic data")
    return smoke_config(config)


def main(argv: list[str] | None = None) -> int:
    args = vars(parse_args(argv))
    download, stop_after = args.pop("download"), args.pop("stop_after")
    try:
        check_stop_after(stop_after)
        config = config_from_args(args)
        refuse_to_replace(config)      # before any data is decoded or model built
        check_destinations(config.run_name)
        print(f"run {config.run_name}: {config.model}, {config.epochs} epochs"
              f"{', resuming' if config.resume else ''}; results go to {run_dir(config.run_name)}", flush=True)
        data = datalib.load_cifar10(config.data, download=download)
        result = fit(config, data, stop_after=stop_after)
    except (ValueError, CheckpointError, NonFiniteLossError, RunInUseError, StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.stop(distributed.from_environment())
    if result is None:
        print(f"stopped after epoch {stop_after}; continue with --resume --run-name {config.run_name}")
        return 0
    if result.test is None:   # a rank other than 0 under torchrun: rank 0 saves the run
        return 0
    try:
        folder = save_run(result)
    except (StorageError, RunDataError, RunInUseError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[{config.run_name}] test accuracy {result.test.accuracy:.4f} "
          f"(no TTA {result.test_plain_accuracy:.4f}) | wall time {result.info['training_wall_time_s']:.0f} s | "
          f"{result.info['images_per_s']:.0f} img/s | saved to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

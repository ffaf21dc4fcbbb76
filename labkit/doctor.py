"""Self-check of a machine before a long run: what labkit will use here, and how fast it trains.

    python -m labkit.doctor [--models cnn,resnet18] [--steps 50] [--batch-size 128] [--device auto]

Prints the device, its compute capability, the precision `auto` picks, the torch / CUDA / cuDNN
versions, the number of GPUs, and where `--data auto` would find CIFAR-10. Then it times a short
training of each model on the fast path (synthetic data, so it needs no download) and reports
images/s, achieved TFLOP/s (3 × forward FLOPs per image) against the machine's peak (the faster of
a matmul and a 3×3 convolution), and peak memory. Writes results/benchmarks/<device>-doctor.json
(+ .png), which the report shows beside the benchmarks. It runs on a CPU too, with fewer steps by
default.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from labkit import bench
from labkit.data import OFFLINE_ARCHIVE, resolve_auto
from labkit.device import device_name, device_problem, device_slug, native_bf16, resolve_device, resolve_precision
from labkit.models.inspect import count_flops
from labkit.paths import smoke_mode
from labkit.provenance import git_commit, utc_timestamp
from labkit.reporting.stats import peak_for
from labkit.storage import StorageError, write_atomic
from labkit.training.config import add_option

DEFAULT_MODELS = "cnn,resnet18,se_resnet18,densenet_cifar"


def environment(device: torch.device) -> dict:
    facts = {"device": device_name(device), "device_type": device.type,
             "precision_auto": resolve_precision("auto", device), "native_bf16": native_bf16(device),
             "torch_version": torch.__version__, "cuda_version": torch.version.cuda,
             "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
             "gpus": torch.cuda.device_count(), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        facts["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        facts["memory_gb"] = torch.cuda.get_device_properties(device).total_memory / 2**30
    spec = resolve_auto()
    facts["data_auto"] = spec
    facts["data_found"] = spec in ("synthetic",) or (spec != "torchvision" and Path(spec).exists())
    if spec == "torchvision":
        facts["data_note"] = (f"no local copy (neither data/cifar-10-batches-py nor {OFFLINE_ARCHIVE}); "
                              f"--data auto would download it")
    return facts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.doctor", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--steps", type=int, default=None, help="timed steps per model (default: 50 on a GPU, 5 on CPU)")
    for setting in ("batch_size", "device"):
        add_option(p, setting)
    p.add_argument("--output", default=None, help="JSON path (default results/benchmarks/<device>-doctor.json)")
    p.add_argument("--overwrite", action="store_true", help="replace the JSON if it exists (otherwise refused)")
    args = p.parse_args(argv)
    specs = [s.strip() for s in args.models.split(",") if s.strip()]
    try:
        if device_problem(args.device):
            raise ValueError(device_problem(args.device))
        for spec in specs:
            bench.build(spec)
        if (args.steps is not None and args.steps < 1) or args.batch_size < 1:
            raise ValueError("--steps and --batch-size must be ≥ 1")
        device = resolve_device(args.device)
        path = bench.output_path(args.output, f"{device_slug(device_name(device))}-doctor.json", args.overwrite)
    except ValueError as err:
        p.error(str(err))
    if smoke_mode():
        args.steps = 1
        print("LABKIT_SMOKE=1: smoke mode, 1 timed step per model")
    steps = args.steps or (50 if device.type == "cuda" else 5)
    facts = environment(device)
    for key, value in facts.items():
        print(f"{key:>20}: {value}")
    peaks = bench.machine_peaks(device)
    for key, label in (("matmul_peak_gflops", "matmul peak"), ("conv_peak_gflops", "3×3 conv peak")):
        print(f"{label:>20}: " + ", ".join(f"{k} {v / 1e3:.2f} TFLOP/s" for k, v in peaks[key].items()))
    report = {"device": facts["device"], "kind": "doctor", "environment": facts, "torch_version": torch.__version__,
              **git_commit(), "date": utc_timestamp(),
              "settings": {"steps": steps, "warmup_steps": bench.WARMUP_STEPS, "batch_size": args.batch_size,
                           "repeats": 1, "reference_workers": 0},
              **peaks, "models": {}}
    for spec in specs:
        flops = count_flops(bench.build(spec))
        run = bench.worker(spec, "fast", steps, args.batch_size, args.device, False)
        fast = bench.summarise([run], flops, peak_for(report, run["precision"]))
        report["models"][spec] = {"flops_per_image": flops, "fast": fast}
        print(f"{spec:>20}: {fast['images_per_s']:,.0f} img/s, {fast['achieved_gflops'] / 1e3:.2f} TFLOP/s "
              f"({fast['peak_share']:.0%} of the {run['precision']} peak), peak memory "
              f"{fast['peak_memory_mb']:,.0f} MB", flush=True)
    try:
        write_atomic(path, (json.dumps(report, indent=2) + "\n").encode())
    except StorageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    bench.figure(report, path.with_suffix(".png"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

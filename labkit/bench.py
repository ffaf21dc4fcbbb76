"""Training-speed benchmark: labkit's fast path against the reference pipeline, in one run.

    python -m labkit.bench [--models resnet18,densenet_cifar] [--steps 5] [--batch-size 128]
                           [--device cpu] [--repeats 3] [--compile]

For each model it measures training images/s end to end, data loading and augmentation included:
  reference  fp32, NCHW, torchvision transforms on PIL images through a DataLoader (2 workers);
  fast       labkit's BatchLoader (augmentation as batch tensor ops on the device), bf16
             autocast where supported, channels_last (and torch.compile with --compile).
The two alternate, each measurement in a fresh subprocess (so peak memory is its own), and the
median of the repeats is kept. The same run measures the machine's peak in each precision (fp32,
bf16, and fp16 on a GPU), the faster of a large matmul and a 3×3 convolution (on an AMD EPYC
oneDNN's fp32 convolutions ran more than twice as fast as the matmul), and reports achieved
GFLOP/s (3 × forward FLOPs per training image) as a share of it.
Peak memory is CUDA's max_memory_allocated, or on the CPU the main process's peak resident
memory above what it held before building the model (DataLoader workers not included).
Writes results/benchmarks/<device>.json and .png.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

from labkit.data import BatchLoader, reference_loader, synthetic_cifar10
from labkit.device import (AUTOCAST_DTYPES, autocast, device_name, device_problem, device_slug, resolve_device,
                           resolve_precision)
from labkit.models import build_model
from labkit.models.inspect import count_flops
from labkit.paths import results_root, smoke_mode
from labkit.provenance import git_commit, utc_timestamp
from labkit.reporting.stats import peak_for
from labkit.storage import write_atomic
from labkit.training.config import add_option

VARIANTS = {"densenet_cifar_memory_efficient": ("densenet_cifar", {"memory_efficient": True})}
WARMUP_STEPS = 2


def best_rate(operations: list, device: torch.device, seconds: float) -> float:
    """Best GFLOP/s over (callable, FLOPs per call) pairs, each run for about seconds / len(operations)."""
    best = 0.0
    for operation, flops in operations:
        operation()
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / len(operations) or calls < 2:
            operation()
            calls += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, flops * calls / (time.perf_counter() - started) / 1e9)
    return best


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Best GFLOP/s of square matmuls over a few sizes, for about `seconds`."""
    operations = []
    for n in ((1024, 2048, 4096) if device.type == "cpu" else (4096, 8192)):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        operations.append((lambda a=a, b=b: a @ b, 2 * n ** 3))
    return best_rate(operations, device, seconds)


def conv_peak(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Best GFLOP/s of channels-last 3×3 convolutions (the layers these models spend their time in)
    over a few shapes, for about `seconds`."""
    batch = 64 if device.type == "cpu" else 256
    operations = []
    for channels, size in ((128, 32), (256, 16), (512, 8)):
        x = torch.randn(batch, channels, size, size, device=device, dtype=dtype).to(memory_format=torch.channels_last)
        w = torch.randn(channels, channels, 3, 3, device=device, dtype=dtype).to(memory_format=torch.channels_last)
        operations.append((lambda x=x, w=w: nn.functional.conv2d(x, w, padding=1),
                           2 * batch * channels ** 2 * 9 * size ** 2))
    return best_rate(operations, device, seconds)


def machine_peaks(device: torch.device) -> dict[str, dict[str, float]]:
    """{"matmul_peak_gflops": {precision: GFLOP/s}, "conv_peak_gflops": {...}}, as a benchmark file keeps
    them: fp32 and bf16, and on a GPU fp16 too (what older GPUs train in)."""
    dtypes = {"fp32": torch.float32, **AUTOCAST_DTYPES}
    precisions = ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16")
    return {key: {p: measure_peak(device, dtypes[p]) for p in precisions}
            for key, measure_peak in (("matmul_peak_gflops", matmul_peak), ("conv_peak_gflops", conv_peak))}


def build(spec: str) -> nn.Module:
    name, options = VARIANTS.get(spec, (spec, {}))
    return build_model(name, **options)


def worker(spec: str, pipeline: str, steps: int, batch_size: int, device_name_: str, compile_: bool) -> dict:
    """One measurement: `steps` timed training steps after WARMUP_STEPS, loader included."""
    device = resolve_device(device_name_)
    total = (steps + WARMUP_STEPS) * batch_size
    data = synthetic_cifar10(train_per_class=-(-total // 10), test_per_class=1)
    baseline_mb = current_rss_mb()
    torch.manual_seed(0)
    fast = pipeline in ("fast", "compiled")    # compiled: the fast path (bf16, channels_last, batch tensors) + torch.compile
    memory_format = torch.channels_last if fast else torch.contiguous_format
    model = build(spec).to(device, memory_format=memory_format)
    precision = resolve_precision("auto", device) if fast else "fp32"
    if fast:
        loader = BatchLoader(data.train_images, data.train_labels, batch_size, train=True, device=device)
    else:
        loader = reference_loader(data.train_images, data.train_labels, batch_size, train=True, num_workers=2)
    step_model = torch.compile(model) if compile_ else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    sampler = RssSampler()
    sampler.start()
    batches = iter(loader)
    started = time.perf_counter()
    for step in range(steps + WARMUP_STEPS):
        if step == WARMUP_STEPS:
            sync()
            warmup_s, started = time.perf_counter() - started, time.perf_counter()
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, precision):
            loss = criterion(step_model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync()
    elapsed = time.perf_counter() - started
    peak_rss = sampler.stop()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = peak_rss - baseline_mb
    return {"images_per_s": steps * batch_size / elapsed, "peak_memory_mb": peak, "warmup_s": warmup_s,
            "precision": precision}


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class RssSampler(threading.Thread):
    """Peak resident memory of this process while it runs, sampled every 2 ms (CPU runs;
    ru_maxrss would also count spikes from before the measurement)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_mb, self.running = current_rss_mb(), True

    def run(self):
        while self.running:
            self.peak_mb = max(self.peak_mb, current_rss_mb())
            time.sleep(0.002)

    def stop(self) -> float:
        self.running = False
        self.join()
        return self.peak_mb


def measure(spec: str, pipeline: str, args) -> dict:
    command = [sys.executable, "-m", "labkit.bench", "--worker", spec, pipeline, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--device", args.device] + (["--compile"] if
                                                                                   pipeline == "compiled" else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {spec}/{pipeline} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict], flops: int, peak_gflops: float) -> dict:
    rate = statistics.median(r["images_per_s"] for r in runs)
    gflops = rate * 3 * flops / 1e9
    return {"images_per_s": rate, "runs_images_per_s": [r["images_per_s"] for r in runs],
            "peak_memory_mb": max(r["peak_memory_mb"] for r in runs), "achieved_gflops": gflops,
            "peak_share": gflops / peak_gflops, "precision": runs[0]["precision"],
            "warmup_s": statistics.median(r["warmup_s"] for r in runs)}


PIPELINE_LABELS = {"reference": "reference: fp32 NCHW, PIL transforms + DataLoader",
                   "fast": "labkit fast path", "compiled": "fast path + torch.compile"}
PIPELINE_COLOURS = {"reference": "tab:gray", "fast": "tab:blue", "compiled": "tab:purple"}


def model_panel_title(name: str, entry: dict) -> str:
    """A model's panel title: its name and, where the reference ran, how many times faster the fast path is."""
    return name + (f"\nfast path: {entry['speedup']:.1f}× reference speed" if entry.get("speedup") else "")


def figure(report: dict, path) -> None:
    """One panel per model (models differ 50-fold in speed), linear axes from zero, every
    pipeline measured side by side, the legend below the panels; titled by the benchmark file."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["models"])
    fig, axes = plt.subplots(1, len(names), figsize=(max(7.0, 2.5 * len(names) + 1), 3.8), squeeze=False)
    for ax, name in zip(axes.flat, names):
        entry = report["models"][name]
        pipelines = [p for p in PIPELINE_LABELS if p in entry]
        speeds = [entry[p]["images_per_s"] for p in pipelines]
        bars = ax.bar(range(len(pipelines)), speeds, color=[PIPELINE_COLOURS[p] for p in pipelines],
                      label=[PIPELINE_LABELS[p] for p in pipelines])
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in speeds], fontsize=8)
        ax.set_xticks([])
        ax.set_ylim(0, max(speeds) * 1.2)
        ax.set_title(model_panel_title(name, entry), fontsize=9)
    axes.flat[0].set_ylabel("training images/s")
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(2, len(handles)), fontsize=8,
               frameon=False)
    fig.suptitle(f"benchmark {Path(path).stem}\n{report['device']}, batch {report['settings']['batch_size']}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=150, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def output_path(output: str | None, default_name: str, overwrite: bool) -> Path:
    """Where a benchmark goes: `output`, or results/benchmarks/<default_name>. Checked before minutes of
    measuring: a folder, a path under a file, or (without `overwrite`) an existing default file, a
    benchmark the report may show, raise ValueError. A file named by `output` is replaced."""
    path = Path(output) if output else results_root() / "benchmarks" / default_name
    if path.is_dir():
        raise ValueError(f"--output {path} is a folder; give a file name, e.g. {path / default_name}")
    blocker = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocker is not None:
        raise ValueError(f"{path} cannot be written: {blocker} is a file, not a folder")
    if output is None and path.exists() and not overwrite:
        raise ValueError(f"{path} exists (report.md may show it); pass --output with a file name, or "
                         f"--overwrite to replace it")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="cnn,resnet18,se_resnet18,densenet_cifar,densenet_cifar_memory_efficient")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per measurement")
    for setting in ("batch_size", "device"):
        add_option(p, setting)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also measure the fast path with torch.compile")
    p.add_argument("--output", default=None, help="JSON path (default results/benchmarks/<device>.json)")
    p.add_argument("--overwrite", action="store_true", help="replace the JSON if it exists (otherwise refused)")
    p.add_argument("--worker", nargs=2, metavar=("MODEL", "PIPELINE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.batch_size, args.device, args.compile)))
        return 0
    if args.steps < 1 or args.repeats < 1 or args.batch_size < 1:
        p.error("--steps, --repeats and --batch-size must be ≥ 1")
    if smoke_mode():
        args.steps, args.repeats = 1, 1
        print("LABKIT_SMOKE=1: smoke mode, 1 step, 1 repeat")
    specs = [s.strip() for s in args.models.split(",") if s.strip()]
    try:
        for spec in specs:
            build(spec)  # fails early, with the valid names, on a typo
        if device_problem(args.device):
            raise ValueError(device_problem(args.device))
        device = resolve_device(args.device)
        path = output_path(args.output, f"{device_slug(device_name(device))}.json", args.overwrite)
    except ValueError as err:
        p.error(str(err))
    report = {"device": device_name(device), "torch_version": torch.__version__, **git_commit(),
              "date": utc_timestamp(),
              "settings": {"steps": args.steps, "warmup_steps": WARMUP_STEPS, "batch_size": args.batch_size,
                           "repeats": args.repeats, "reference_workers": 2},
              **machine_peaks(device), "models": {}}
    for spec in specs:
        flops = count_flops(build(spec))
        pipelines = (["fast"] if spec in VARIANTS else ["reference", "fast"]) + (["compiled"] if args.compile else [])
        runs = {name: [] for name in pipelines}
        for _ in range(args.repeats):
            for name in pipelines:                         # alternate, so drifts hit both alike
                runs[name].append(measure(spec, name, args))
        entry = {"flops_per_image": flops}
        for name in pipelines:
            entry[name] = summarise(runs[name], flops, peak_for(report, runs[name][0]["precision"]))
        if "reference" in entry:
            entry["speedup"] = entry["fast"]["images_per_s"] / entry["reference"]["images_per_s"]
        report["models"][spec] = entry
        print(f"{spec}: " + ", ".join(f"{n} {entry[n]['images_per_s']:.1f} img/s "
                                      f"(peak mem {entry[n]['peak_memory_mb']:.0f} MB)" for n in pipelines)
              + (f", speed-up ×{entry['speedup']:.2f}" if "speedup" in entry else ""), flush=True)
    write_atomic(path, (json.dumps(report, indent=2) + "\n").encode())
    figure(report, path.with_suffix(".png"))
    print("peak (faster of matmul and 3×3 conv): " + ", ".join(
        f"{precision} {peak_for(report, precision):.0f}" for precision in report["matmul_peak_gflops"])
          + f" GFLOP/s; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

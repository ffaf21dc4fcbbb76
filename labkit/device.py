"""The device and numeric precision of training: which device and precision `auto` picks, the
autocast context, the gradient scaler that fp16 needs, and the device's name and peak memory.

    auto  bf16 on CUDA devices of compute capability ≥ 8.0 (A100, H100, RTX 30xx and later) and on
          CPUs with native bf16 (AVX512-BF16, AMX); fp16 with a GradScaler on older GPUs (T4, V100,
          P100), which have fast fp16 but no native bf16; fp32 elsewhere.
    bf16  autocast to bfloat16: fp32's exponent range, so no loss scaling.
    fp16  autocast to float16 with torch.amp.GradScaler: the loss is scaled up so small gradients
          survive in fp16, and a step whose gradients overflow (inf/NaN) is skipped while the
          scale comes down. Runs on CPU too (slowly), which is how the tests exercise it.
    fp32  no autocast.

`torch.cuda.is_bf16_supported()` answers True on a T4 (bf16 is emulated there, and slow), so
`auto` decides by compute capability instead.
"""
from __future__ import annotations

import contextlib
import os
import re
import resource

import torch

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(name: str, device: torch.device) -> str:
    """The precision `name` stands for on `device` (auto: see the module docstring)."""
    if name != "auto":
        return name
    if native_bf16(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def autocast(device: torch.device, precision: str):
    """Autocast to bf16 or fp16; a no-op for fp32."""
    if precision in AUTOCAST_DTYPES:
        return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A GradScaler, enabled for fp16 only (disabled, its calls pass straight through)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


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


def device_slug(device: str) -> str:
    """'CPU AMD EPYC (2 cores)' -> 'cpu-amd-epyc-2-cores': a device name as a file name."""
    return re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")


def peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "peak_memory_kind": "CUDA max_memory_allocated"}
    return {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_memory_kind": "process peak RSS (includes the decoded data set)"}

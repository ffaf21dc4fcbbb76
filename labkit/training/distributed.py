"""Data-parallel training over several processes with torchrun and DistributedDataParallel (DDP).

    torchrun --nproc_per_node 4 -m labkit.train --model resnet18 ...          # one machine, 4 GPUs
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d \\
             --rdzv-endpoint HOST:29500 -m labkit.train --model resnet18 ...  # two machines

torchrun starts one process per GPU and sets RANK, LOCAL_RANK and WORLD_SIZE; without them labkit
runs as one process, as always. The backend is nccl on CUDA and gloo on CPU (which is how the
tests run two ranks). Each rank trains on its own slice of every global batch (one shuffled order,
the same seed on every rank; its own augmentation draws), so the global batch is the per-rank
batch × world size. DDP averages the gradients, so one step equals a single-process step on the
global batch. Rank 0 alone evaluates val and test, writes checkpoints and results; the others wait.
If one rank dies, torchrun stops the others and names the failed rank; the last checkpoint,
written whole by rank 0, stays intact and a rerun with --resume continues from it.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Context()


def from_environment() -> Context:
    """The process's place in a torchrun job (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return SINGLE
    return Context(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def start(context: Context, device: torch.device) -> torch.device:
    """Join the process group (once) and return this rank's device: cuda:LOCAL_RANK on CUDA."""
    if not context.active:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # rank 0 evaluates alone while the others wait at a barrier: allow for a long test pass
        timeout = dt.timedelta(seconds=float(os.environ.get("LABKIT_DIST_TIMEOUT_S", "3600")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return device


def stop(context: Context) -> None:
    if context.active and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, context: Context, device: torch.device, sync_batchnorm: bool) -> nn.Module:
    """The model as the training step sees it: DDP-wrapped (optionally with synchronised batch
    norm) when several ranks train, the model itself otherwise."""
    if not context.active:
        return model
    if sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def barrier(context: Context) -> None:
    if context.active:
        dist.barrier()


def sum_over_ranks(context: Context, *tensors: torch.Tensor) -> None:
    """In place: each tensor becomes its sum over all ranks (for epoch-level train statistics)."""
    if context.active:
        for tensor in tensors:
            dist.all_reduce(tensor)

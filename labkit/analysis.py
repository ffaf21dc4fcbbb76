"""Looks inside models: FLOPs, per-stage summary, activation memory, gradient norms,
SE excitations and DenseNet channel growth. Used by notebooks, results and the report."""
from __future__ import annotations

import functools
from collections import defaultdict

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def probe(model: nn.Module, batch: int = 1) -> Tensor:
    p = next(model.parameters())
    return torch.randn(batch, 3, 32, 32, device=p.device)


@torch.no_grad()
def count_flops(model: nn.Module) -> int:
    """Forward FLOPs for one 3×32×32 image (a multiply-add counts as 2)."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(probe(model))
    model.train(was_training)
    return counter.get_total_flops()


def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Top-level children in forward order, with `features`/`classifier` containers opened."""
    out = []
    for name, child in model.named_children():
        if name in ("features", "classifier") and isinstance(child, nn.Sequential):
            out += [(f"{name}.{n}", c) for n, c in child.named_children()]
        else:
            out.append((name, child))
    return out


@torch.no_grad()
def stage_summary(model: nn.Module) -> list[dict]:
    """One row per stage for a 1×3×32×32 input: parameters, forward FLOPs, output shape."""
    was_training = model.training
    model.eval()
    x = probe(model)
    rows = []
    for name, stage in stages(model):
        if isinstance(stage, nn.Linear) and x.ndim > 2:
            x = x.flatten(1)
        with FlopCounterMode(display=False) as counter:
            x = stage(x)
        rows.append({"stage": name, "type": type(stage).__name__,
                     "params": sum(p.numel() for p in stage.parameters()),
                     "flops": counter.get_total_flops(), "output_shape": "×".join(map(str, x.shape[1:]))})
    model.train(was_training)
    return rows


def activation_memory(model: nn.Module, batch_size: int = 64) -> float:
    """MB per image of the activations autograd keeps for backward in one training forward
    (fp32, each storage counted once). Parameters and buffers that autograd also saves are not
    activations and are left out, so the figure does not depend on the batch size it is
    measured with. Device-independent, unlike allocator peaks."""
    weights = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    storages: dict[int, int] = {}

    def pack(t: Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    was_training = model.training
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(probe(model, batch_size)).sum()
    del loss
    model.train(was_training)
    return sum(storages.values()) / 2**20 / batch_size


@functools.lru_cache(maxsize=None)
def architecture_activation_mb(model_name: str) -> float:
    """`activation_memory` of a freshly built `model_name` (a property of the architecture)."""
    from .models import build_model

    return activation_memory(build_model(model_name), batch_size=8)


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from .models.resnet import BasicBlock
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BasicBlock)]


def block_gradient_norms(model: nn.Module, images: Tensor, labels: Tensor, use_shortcut: bool = True
                         ) -> dict[str, float]:
    """L2 norm of the loss gradient w.r.t. each residual block's parameters, for one batch
    (float, normalised images), with the identity/projection shortcuts switched on or off."""
    blocks = residual_blocks(model)
    for _, block in blocks:
        block.use_shortcut = use_shortcut
    model.zero_grad(set_to_none=True)
    try:
        nn.functional.cross_entropy(model(images), labels).backward()
    finally:
        for _, block in blocks:
            block.use_shortcut = True
    norms = {}
    for name, block in blocks:
        grads = [p.grad.flatten() for p in block.residual.parameters() if p.grad is not None]
        norms[name] = torch.cat(grads).norm().item() if grads else 0.0
    model.zero_grad(set_to_none=True)
    return norms


@torch.no_grad()
def excitation_by_class(model: nn.Module, images: Tensor, labels: Tensor, num_classes: int = 10,
                        batch_size: int = 500) -> dict[str, Tensor]:
    """Mean SE gate per class for every SE block: {block name: classes×channels}.
    `images` are float, normalised, on the model's device."""
    from .models.se_resnet import SqueezeExcitation

    modules = {name.removesuffix(".se"): m for name, m in model.named_modules() if isinstance(m, SqueezeExcitation)}
    sums = defaultdict(lambda: 0)
    was_training = model.training
    model.eval()
    for m in modules.values():
        m.record_gates = True
    one_hot = nn.functional.one_hot(labels, num_classes).float()
    try:
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
            for name, m in modules.items():
                sums[name] = sums[name] + one_hot[start:start + batch_size].T @ m.last_gates.float()
    finally:
        for m in modules.values():
            m.record_gates, m.last_gates = False, None
        model.train(was_training)
    counts = one_hot.sum(0).clamp(min=1)[:, None]
    return {name: (total / counts).cpu() for name, total in sums.items()}


def densenet_channels(model: nn.Module) -> list[dict]:
    """Input channels of every bottleneck layer and transition, in forward order."""
    from .models.densenet import Bottleneck, DenseBlock

    rows, block = [], 0
    for name, m in model.features.named_children():
        if isinstance(m, DenseBlock):
            block += 1
            for i, layer in enumerate(m.layers):
                assert isinstance(layer, Bottleneck)
                rows.append({"block": block, "layer": i + 1, "kind": "dense layer",
                             "in_channels": layer.reduce[0].num_features})
        elif isinstance(m, nn.Sequential):
            rows.append({"block": block, "layer": 0, "kind": "transition", "in_channels": m[0].num_features})
    return rows

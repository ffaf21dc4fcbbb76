"""Looks inside models: FLOPs, per-stage summary, activation memory, gradient norms,
SE gates and DenseNet channel growth. Used by the notebooks, the run store and the report."""
from __future__ import annotations

import functools
from collections import defaultdict

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from labkit.models import build_model, eval_mode, mode
from labkit.models.densenet import Bottleneck, DenseBlock
from labkit.models.resnet import BasicBlock
from labkit.models.se_resnet import SqueezeExcitation


def probe(model: nn.Module, batch: int = 1) -> Tensor:
    p = next(model.parameters())
    return torch.randn(batch, 3, 32, 32, device=p.device)


@torch.no_grad()
def count_flops(model: nn.Module) -> int:
    """Forward FLOPs for one 3×32×32 image (a multiply-add counts as 2)."""
    with eval_mode(model), FlopCounterMode(display=False) as counter:
        model(probe(model))
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
    x = probe(model)
    rows = []
    with eval_mode(model):
        for name, stage in stages(model):
            if isinstance(stage, nn.Linear) and x.ndim > 2:
                x = x.flatten(1)
            with FlopCounterMode(display=False) as counter:
                x = stage(x)
            rows.append({"stage": name, "type": type(stage).__name__,
                         "params": sum(p.numel() for p in stage.parameters()),
                         "flops": counter.get_total_flops(), "output_shape": "×".join(map(str, x.shape[1:]))})
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

    with mode(model, True), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(probe(model, batch_size)).sum()
    del loss
    return sum(storages.values()) / 2**20 / batch_size


@functools.lru_cache(maxsize=None)
def architecture_activation_mb(model_name: str) -> float:
    """`activation_memory` of a freshly built `model_name` (a property of the architecture)."""
    return activation_memory(build_model(model_name), batch_size=8)


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
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


def se_blocks(model: nn.Module) -> dict[str, SqueezeExcitation]:
    """The model's SE modules by the name of the block that holds them ('layer2.1'); empty without SE."""
    return {name.removesuffix(".se"): m for name, m in model.named_modules() if isinstance(m, SqueezeExcitation)}


@torch.no_grad()
def se_gates(model: nn.Module, images: Tensor, batch_size: int = 500) -> dict[str, Tensor]:
    """Every SE block's gates on `images` (float, normalised, on the model's device), in eval mode:
    {block name: images×channels, on the CPU}."""
    modules = se_blocks(model)
    gates = defaultdict(list)
    for m in modules.values():
        m.record_gates = True
    try:
        with eval_mode(model):
            for start in range(0, len(images), batch_size):
                model(images[start:start + batch_size])
                for name, m in modules.items():
                    gates[name].append(m.last_gates.float().cpu())
    finally:
        for m in modules.values():
            m.record_gates, m.last_gates = False, None
    return {name: torch.cat(parts) for name, parts in gates.items()}


def excitation_by_class(gates: dict[str, Tensor], labels: Tensor, num_classes: int = 10) -> dict[str, Tensor]:
    """Mean SE gate per class for every SE block, from `se_gates`: {block name: classes×channels}."""
    one_hot = nn.functional.one_hot(labels.cpu(), num_classes).float()
    counts = one_hot.sum(0).clamp(min=1)[:, None]
    return {name: one_hot.T @ g / counts for name, g in gates.items()}


def class_split(profiles: Tensor, classes: list[str]) -> tuple[list[str], list[str], float]:
    """The classes of a classes×channels matrix of mean gates (`excitation_by_class`) in two groups, by
    the sign of each class's score on the first principal component of the rows, and that component's
    share of the variance between the classes (0 when the rows are all alike). The first class's group
    comes first."""
    centred = profiles.double() - profiles.double().mean(0)
    scores, singular, _ = torch.linalg.svd(centred, full_matrices=False)
    variance = singular.square()
    share = (variance[0] / variance.sum()).item() if variance.sum() > 0 else 0.0
    first = scores[:, 0] * (1 if scores[0, 0] >= 0 else -1)
    return ([c for c, v in zip(classes, first.tolist()) if v >= 0],
            [c for c, v in zip(classes, first.tolist()) if v < 0], share)


def gate_statistics(gates: dict[str, Tensor]) -> pd.DataFrame:
    """Per SE block, from `se_gates`: the mean gate, its standard deviation over images (per channel,
    then averaged over channels) and over channels (of the per-channel means). A block whose gates
    sit near 0.5 with both spreads near 0 only scales its residual by a constant: its excitation
    does not recalibrate anything."""
    return pd.DataFrame({name: {"mean gate": g.mean().item(), "sd over images": g.std(0).mean().item(),
                                "sd over channels": g.mean(0).std().item(), "min": g.min().item(),
                                "max": g.max().item()} for name, g in gates.items()}).T


def densenet_channels(model: nn.Module) -> list[dict]:
    """Input channels of every bottleneck layer and transition, in forward order."""
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


def gradient_reading(table: pd.DataFrame) -> str:
    """What the with/without-shortcut gradient table shows, in words, from its numbers."""
    first, last = table.index[0], table.index[-1]
    lower = [name for name, r in table.ratio.items() if r < 1]
    return (f"At initialisation the shortcuts change the gradient norm of the first block ({first}) by "
            f"×{table.ratio.iloc[0]:.2f} and of the last ({last}) by ×{table.ratio.iloc[-1]:.2f}; "
            f"{len(lower)} of {len(table)} blocks get a smaller gradient with them than without. So at step 0 "
            f"the plain stack does not starve its early blocks: with BN after every convolution the gradient "
            f"does not vanish over 18 layers. A likely reason for the smaller early gradients with shortcuts, not "
            f"measured here: the identity additions let activations grow with depth, so gradients flowing back "
            f"through the later BN layers are divided by a larger scale. The usual "
            f"case for shortcuts (plain nets much deeper than 18 layers train worse over many steps) is not "
            f"what this one-batch measurement at initialisation tests.")


GATE_SPREAD = 0.05     # a gate spread below this over images (or channels) counts as none
VISIBLE_SPREAD = 0.02  # class means of a gate closer than this hardly show on a 0–1 colour scale


def flat_blocks(table: pd.DataFrame) -> list[str]:
    """The blocks of a `gate_statistics` table whose gates sit within GATE_SPREAD of 0.5 and vary by less
    than GATE_SPREAD over images and over channels: they scale their residual by about one half, almost
    whatever the image
    (the gate of an excitation whose weights decayed to zero is sigmoid(0) = 0.5)."""
    return [name for name, row in table.iterrows()
            if abs(row["mean gate"] - 0.5) < GATE_SPREAD
            and max(row["sd over images"], row["sd over channels"]) < GATE_SPREAD]


def gate_reading(table: pd.DataFrame) -> str:
    """What the gate statistics say, in words: which blocks about halve their residual, which scale each
    channel by an amount that hardly depends on the image, and which gate channels per image."""
    flat = flat_blocks(table)
    fixed = [name for name, row in table.iterrows() if name not in flat and row["sd over images"] < GATE_SPREAD]
    per_image = [name for name in table.index if name not in flat and name not in fixed]

    def count(names: list[str], singular: str, plural: str) -> str:
        listed = f" ({', '.join(names)})" if names else ""
        return f"{len(names)} of {len(table)} SE blocks{listed} {singular if len(names) == 1 else plural}"

    definition = (f"flat gates (mean within {GATE_SPREAD} of 0.5, standard deviation under {GATE_SPREAD} over images "
                  "and over channels)")
    parts = [count(flat, "has", "have") + f" {definition}: "
             + ("it scales its residual by about one half, almost whatever the image" if len(flat) == 1
                else "they scale their residual by about one half, almost whatever the image")
             if flat else f"No SE block has {definition}"]
    if flat:   # a small sd still allows rare outliers: give the widest block's extremes, and the narrowest's
        ranges = table.loc[flat, "max"] - table.loc[flat, "min"]
        widest, narrowest = ranges.idxmax(), ranges.idxmin()
        parts[0] += (f"; a few single gates still stray, from {table.loc[widest, 'min']:.3f} to "
                     f"{table.loc[widest, 'max']:.3f} in {widest} (the extremes over every image and channel)")
        if narrowest != widest:
            parts[0] += (f", while every gate of {narrowest} lies between {table.loc[narrowest, 'min']:.3f} and "
                         f"{table.loc[narrowest, 'max']:.3f}")
    if fixed:
        parts.append(count(fixed, "scales", "scale") + " each channel by its own amount, which changes little from image "
                     f"to image (sd over images under {GATE_SPREAD})")
    if per_image:
        parts.append(count(per_image, "gates", "gate") + " channels differently per image")
    return ". ".join(parts) + "."


def last_blocks(names) -> list[str]:
    """The last block of each stage among SE block names ('layer1.1', …): the ones the excitation figure shows."""
    return [name for name in names if name.endswith(".1")]


def class_reading(table: pd.DataFrame, blocks: list[str]) -> str:
    """What a figure of the mean gates per class at `blocks` shows between its rows, from the gate table
    (its "sd over classes", "class split" and "split share" columns): how much the rows differ in each
    block, and how the classes group where the difference shows (VISIBLE_SPREAD or more)."""
    shown = table.loc[[b for b in blocks if b in table.index]].sort_values("sd over classes", ascending=False)
    spreads = ", ".join(f"{name} {row['sd over classes']:.3f}" for name, row in shown.iterrows())
    text = (f"How much the rows differ (each channel's spread over the class means, averaged over channels): "
            f"{spreads}.")
    visible = shown[shown["sd over classes"] >= VISIBLE_SPREAD]
    said, splits = set(), []
    for name, row in visible.iterrows():
        if row["class split"] in said:
            splits.append(f"{name}'s into the same two ({row['split share']:.0%})")
        else:
            first, second = row["class split"].split(" / ")
            splits.append(f"{name}'s classes fall into two groups, ({first}) and ({second}) "
                          f"({row['split share']:.0%} of the variance between the rows)")
            said.add(row["class split"])
    if splits:
        rows = len(visible["class split"].iloc[0].replace(" / ", ", ").split(", "))
        text += f" By the first principal component of the {rows} rows, " + ", and ".join(splits) + "."
    faint = [name for name in shown.index if name not in visible.index]
    if faint:
        text += (f" Below {VISIBLE_SPREAD} ({', '.join(faint)}) the rows hardly differ on the figure's 0–1 colour "
                 "scale: there the gates depend little on the class.")
    return text

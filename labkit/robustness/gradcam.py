"""What does each network look at? Grad-CAM (Selvaraju et al., 2017) through captum's
LayerGradCam: the gradient of the class score, averaged over a layer's map, weighs that layer's
channels; the ReLU of the weighted sum is a coarse map of the evidence for the class.

The layer is the deepest convolutional stage whose maps are still at least 4×4 (Grad-CAM on a
2×2 or 1×1 map cannot say where anything is): conv2 of the CNN (10×10), layer4 of the CIFAR
ResNets (4×4), the last dense block (4×4), but layer2 (4×4) of the ImageNet-stem variant, which
has shrunk a 32×32 image to 8×8 before its first stage.
"""
from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from labkit.data import normalize
from labkit.models import eval_mode
from labkit.models.inspect import probe, stages

NOT_FEATURE_MAPS = ("ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm2d", "Flatten", "Linear")
MIN_MAP_SIZE = 4


@torch.no_grad()
def feature_map_stages(model: nn.Module) -> list[tuple[str, nn.Module, int]]:
    """(name, module, map side) of every stage that outputs feature maps, in forward order,
    from the output shapes of one forward pass of a probe image."""
    shapes = {}
    hooks = [module.register_forward_hook(lambda _, __, out, name=name: shapes.__setitem__(name, out.shape))
             for name, module in stages(model)]
    try:
        with eval_mode(model):
            model(probe(model))
    finally:
        for hook in hooks:
            hook.remove()
    return [(name, module, shapes[name][-1]) for name, module in stages(model)
            if type(module).__name__ not in NOT_FEATURE_MAPS and len(shapes.get(name, ())) == 4]


def target_layer(model: nn.Module) -> tuple[str, nn.Module, int]:
    """(name, module, map side) of the deepest stage with feature maps of at least 4×4."""
    usable = [stage for stage in feature_map_stages(model) if stage[2] >= MIN_MAP_SIZE]
    if not usable:
        raise ValueError(f"{type(model).__name__} has no stage with maps of at least {MIN_MAP_SIZE}×{MIN_MAP_SIZE}")
    return usable[-1]


def grad_cam(model: nn.Module, images: Tensor, classes: Tensor) -> tuple[Tensor, str, int]:
    """Grad-CAM maps for uint8 `images` (N×3×32×32) and the class to explain per image (N).
    Returns (maps N×s×s at the layer's resolution, each scaled to a maximum of 1; layer name; s)."""
    name, layer, side = target_layer(model)
    device = next(model.parameters()).device
    x = normalize(images.to(device)).requires_grad_(True)
    with eval_mode(model):
        maps = LayerGradCam(model, layer).attribute(x, target=classes.to(device).tolist(), relu_attributions=True)
    maps = maps.detach().float().sum(1).cpu()                              # N×s×s
    peak = maps.flatten(1).max(1).values.clamp(min=1e-12)
    return maps / peak[:, None, None], name, side


def upsample(maps: Tensor, size: int = 32) -> Tensor:
    """Maps N×s×s bilinearly resized to N×size×size, for overlaying on the images."""
    return LayerAttribution.interpolate(maps[:, None], (size, size), interpolate_mode="bilinear")[:, 0]

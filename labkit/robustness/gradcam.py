"""What does each network look at? Grad-CAM (Selvaraju et al., 2017) through captum's
LayerGradCam: the gradient of the class score, averaged over a layer's map, weighs that layer's
channels; the ReLU of the weighted sum is a coarse map of the evidence for the class.

The layer is the deepest convolutional stage whose maps are still at least 4×4 (Grad-CAM on a
2×2 or 1×1 map cannot say where anything is): conv2 of the CNN (10×10), layer4 of the CIFAR
ResNets (4×4), the last dense block (4×4), but layer2 (4×4) of the ImageNet-stem variant, which
has shrunk a 32×32 image to 8×8 before its first stage.

A map is drawn over the image with each cell over the pixels it sees (`place`). The CNN's unpadded
convolutions centre its 10×10 cells 2 pixels apart, from pixel 6.5 to 24.5 (its first cell sees
pixels 0–13), so its map covers the middle 20×20 pixels and its outer 6 are left uncoloured. The
padded models' 4×4 maps tile the image and are drawn as the usual even resize.
"""
from __future__ import annotations

import torch
from captum.attr import LayerGradCam
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


class _Reached(Exception):
    """Stops a probe's forward pass at the layer it measures."""


@torch.no_grad()
def map_stride(model: nn.Module, size: int = 32) -> float:
    """Pixels between neighbouring cells of the Grad-CAM layer's map: how much the map grows when the
    image grows by `size` pixels (2 for the CNN, 8 for the CIFAR ResNets' layer4), from two probe
    passes stopped at that layer (the layers after it may accept only `size`×`size` images)."""
    _, layer, _ = target_layer(model)
    sides = []
    def stop(_, __, out):
        sides.append(out.shape[-1])
        raise _Reached
    hook = layer.register_forward_hook(stop)
    p = next(model.parameters())
    try:
        with eval_mode(model):
            for side in (size, 2 * size):
                try:
                    model(torch.zeros(1, 3, side, side, device=p.device, dtype=p.dtype))
                except _Reached:
                    pass
    finally:
        hook.remove()
    return size / (sides[1] - sides[0])


def cell_offsets(side: int, stride: float) -> Tensor:
    """Each cell centre's offset in pixels from the image's centre, along one axis."""
    return (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * stride


def border(side: int, stride: float, size: int = 32) -> float:
    """Pixels along each edge outside every cell's stride-wide tile: 6 for the CNN's 10×10 cells 2 px
    apart, 0 for a map that tiles the image."""
    return max((size - side * stride) / 2, 0.0)


def place(maps: Tensor, stride: float, size: int = 32) -> Tensor:
    """Maps N×s×s drawn over a size×size image, each cell over the pixels it sees: cells `stride`
    pixels apart, centred on the image (its convolutions pad both sides alike, or neither),
    interpolated bilinearly between cell centres, each edge cell held over the stride-wide tile
    around its centre, and pixels outside every tile NaN (drawn uncoloured; `border`). With
    stride = size / s the tiles cover the image and this is the usual bilinear resize, as the padded
    models are drawn, although their stride-2 convolutions with padding 1 put each cell's geometric
    centre up to 3.5 px up and left of its tile's (those cells see the whole image anyway)."""
    side = maps.shape[-1]
    offset = torch.arange(size, dtype=torch.float32) - (size - 1) / 2     # each pixel from the image's centre
    cell = offset / stride + (side - 1) / 2                               # ... in cells from the first
    axis = (cell / max(side - 1, 1) * 2 - 1).to(maps.dtype)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).expand(len(maps), -1, -1, -1)
    drawn = nn.functional.grid_sample(maps[:, None], grid, mode="bilinear", padding_mode="border",
                                      align_corners=True)[:, 0]
    outside = offset.abs() > size / 2 - border(side, stride, size)
    drawn[:, outside, :] = drawn[:, :, outside] = float("nan")
    return drawn


def saved_stride(gradcam: dict, size: int = 32) -> float | None:
    """The cell spacing a saved analysis's Grad-CAM recorded as "map_stride". An analysis saved before
    that was recorded: size / side for a map that divides the image evenly (what a padded network
    gives), None for one that does not (its geometry is unknown: rerun the analysis to record it)."""
    if "map_stride" in gradcam:
        return gradcam["map_stride"]
    return size / gradcam["map_size"] if size % gradcam["map_size"] == 0 else None


def drawn_maps(gradcam: dict, size: int = 32) -> Tensor:
    """A saved analysis's Grad-CAM maps as drawn over its images (`place`); maps of unknown geometry
    (`saved_stride`) as an even resize, as they were drawn when analysed."""
    stride = saved_stride(gradcam, size) or size / gradcam["map_size"]
    return place(torch.as_tensor(gradcam["maps"], dtype=torch.float32), stride, size)

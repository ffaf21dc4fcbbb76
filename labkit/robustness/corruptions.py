"""Common corruptions in the manner of CIFAR-10-C (Hendrycks & Dietterich, 2019), generated here.

The corruptions that need no external files: four noises, five blurs, contrast, brightness,
saturate, pixelate, JPEG and elastic, each at severities 1–5 with CIFAR-10-C's parameters.
Everything works on whole uint8 batches N×3×32×32 as tensors; the torchvision.transforms.v2
operations are used where one does the job (Gaussian blur, JPEG), the rest are a few tensor ops.

These are not the published CIFAR-10-C files: the base images are the data set at hand (here a
JPEG copy), the random streams are ours, and motion blur approximates ImageMagick's kernel. Use
the numbers to compare models with each other, not with published CIFAR-10-C figures.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor

# name -> (family, the five severity parameters of CIFAR-10-C's generator)
CORRUPTIONS: dict[str, tuple[str, list]] = {
    "gaussian_noise": ("noise", [0.04, 0.06, 0.08, 0.09, 0.10]),
    "shot_noise": ("noise", [500, 250, 100, 75, 50]),
    "impulse_noise": ("noise", [0.01, 0.02, 0.03, 0.05, 0.07]),
    "speckle_noise": ("noise", [0.06, 0.10, 0.12, 0.16, 0.20]),
    "gaussian_blur": ("blur", [0.4, 0.6, 0.7, 0.8, 1.0]),                       # sigma
    "defocus_blur": ("blur", [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)]),  # radius, alias blur
    "glass_blur": ("blur", [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)]),  # sigma, delta, rounds
    "motion_blur": ("blur", [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)]),      # radius, sigma
    "zoom_blur": ("blur", [1.06, 1.11, 1.16, 1.21, 1.26]),                      # zooms 1, 1.01, … below this
    "contrast": ("digital", [0.75, 0.5, 0.4, 0.3, 0.15]),
    "brightness": ("digital", [0.05, 0.1, 0.15, 0.2, 0.3]),
    "saturate": ("digital", [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)]),
    "pixelate": ("digital", [0.95, 0.9, 0.85, 0.75, 0.65]),
    "jpeg_compression": ("digital", [80, 65, 58, 50, 40]),                      # quality
    "elastic_transform": ("digital", [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                                      (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)]),   # × image size
}
SEVERITIES = (1, 2, 3, 4, 5)
# Bumped when a corruption's images change; analyses record it, and one made with an older generator gets its
# corruption figures redone (`suite.analyse_runs`). What each version changed, for the report:
GENERATOR_CHANGES = {
    2: "pixelate resized with PIL's box filter, as CIFAR-10-C does, not torch's area mode, which blurred the mild "
       "severities about as much as the harsh ones",
}
GENERATOR_VERSION = max(GENERATOR_CHANGES)
# What the severity parameters of the corruptions whose reading is not obvious set, for the report's sentences
PARAMETER_MEANINGS = {
    "glass_blur": "blur sigma, shuffle distance, rounds",
    "saturate": "(scale, shift) of the saturation",
    "pixelate": "fraction of the image side kept",
    "jpeg_compression": "JPEG quality",
}


def corrupt(images: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """`images` (uint8 N×3×H×W) with corruption `name` at `severity` 1–5, as uint8. The same
    images, name, severity and seed give the same result."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 N×3×H×W, got {images.dtype} {tuple(images.shape)}")
    parameter = CORRUPTIONS[name][1][severity - 1]
    g = torch.Generator().manual_seed(seed * 1_000_003 + list(CORRUPTIONS).index(name) * 10 + severity)
    if name == "jpeg_compression":
        return TF.jpeg(images.cpu(), quality=parameter).to(images.device)
    x = images.cpu().float() / 255
    x = GENERATORS[name](x, parameter, g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).to(images.device)


def normal(x: Tensor, g: torch.Generator) -> Tensor:
    return torch.randn(x.shape, generator=g)


def gaussian_noise(x, c, g):
    return x + c * normal(x, g)


def shot_noise(x, c, g):
    return torch.poisson(x * c, generator=g) / c


def impulse_noise(x, c, g):
    """Salt and pepper: a fraction c of the values (per channel) set to 0 or 1, half each."""
    hit = torch.rand(x.shape, generator=g) < c
    salt = torch.rand(x.shape, generator=g) < 0.5
    return torch.where(hit, salt.float(), x)


def speckle_noise(x, c, g):
    return x + x * c * normal(x, g)


def blur(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur truncated at 4 sigma (as scikit-image's `gaussian`)."""
    radius = int(4 * sigma + 0.5)
    return TF.gaussian_blur(x, [2 * radius + 1] * 2, [sigma] * 2) if radius else x


def gaussian_blur(x, sigma, g):
    return blur(x, sigma)


def filter_each_channel(x: Tensor, kernels: Tensor) -> Tensor:
    """Convolve every image with its own k×k kernel (kernels: N×k×k, or 1×k×k for all), reflect-padded."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    weight = kernels.expand(n, k, k).repeat_interleave(c, 0)[:, None]       # (n·c)×1×k×k
    padded = F.pad(x.reshape(1, n * c, h, w), [k // 2] * 4, mode="reflect")
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w)


def defocus_blur(x, parameter, g):
    """A disk of the given radius on a 17×17 grid, anti-aliased by a 3×3 Gaussian."""
    radius, alias_blur = parameter
    span = torch.arange(-8, 9, dtype=torch.float32)
    disk = ((span[:, None] ** 2 + span[None] ** 2) <= radius ** 2).float()
    disk = TF.gaussian_blur(disk[None] / disk.sum(), [3, 3], [alias_blur] * 2)
    return filter_each_channel(x, disk)


def glass_blur(x, parameter, g):
    """Blur, quantise to uint8 levels, then, `rounds` times, give every pixel not on the top or left
    border the value of a random neighbour at offsets in [-1, 0]² (what CIFAR-10-C's pixel loop does
    in effect: its swap writes through numpy views, so it copies), then blur again. Its parameters
    all have delta 1, the only one this implements."""
    sigma, delta, rounds = parameter
    assert delta == 1, "CIFAR-10-C's glass blur uses delta 1 throughout"
    x = (blur(x, sigma) * 255).round().clamp(0, 255) / 255
    n, size = len(x), x.shape[-1]
    inner = torch.arange(2, size)
    for _ in range(rounds):
        dy, dx = torch.randint(-1, 1, (2, n, size - 2, size - 2), generator=g)
        rows, cols = inner[None, :, None] + dy, inner[None, None, :] + dx          # n×30×30 each
        picked = x[torch.arange(n)[:, None, None], :, rows, cols]                   # n×30×30×3
        x[:, :, 2:, 2:] = picked.permute(0, 3, 1, 2)
    return blur(x, sigma)


def motion_blur(x, parameter, g):
    """A one-sided Gaussian-weighted line kernel at a random angle in [-45°, 45°) per image
    (after ImageMagick's MotionBlurImage, which CIFAR-10-C used)."""
    radius, sigma = parameter
    width = 2 * radius + 1
    size = 2 * width + 1
    angles = (torch.rand(len(x), generator=g) * 90 - 45) * math.pi / 180
    kernels = torch.zeros(len(x), size, size)
    for i in range(width):
        weight = math.exp(-(i * i) / (2 * sigma * sigma))
        rows = (width + (i * torch.sin(angles)).round()).long()
        cols = (width + (i * torch.cos(angles)).round()).long()
        kernels[torch.arange(len(x)), rows, cols] += weight
    kernels /= kernels.sum((1, 2), keepdim=True)
    return filter_each_channel(x, kernels)


def zoom_blur(x, top_zoom, g):
    """The mean of the image and centre zooms by 1.00, 1.01, … up to below `top_zoom`."""
    size = x.shape[-1]
    zooms = torch.arange(1, top_zoom - 1e-9, 0.01).tolist()
    total = x.clone()
    for zoom in zooms:
        crop = math.ceil(size / zoom)
        top = (size - crop) // 2
        grown = round(crop * zoom)
        zoomed = TF.resize(x[..., top:top + crop, top:top + crop], [grown, grown], antialias=False)
        trim = (grown - size) // 2
        total += zoomed[..., trim:trim + size, trim:trim + size]
    return total / (len(zooms) + 1)


def contrast(x, c, g):
    means = x.mean((2, 3), keepdim=True)
    return (x - means) * c + means


def rgb_to_hsv(x: Tensor) -> Tensor:
    r, gr, b = x.unbind(1)
    value, _ = x.max(1)
    spread = value - x.min(1).values
    saturation = torch.where(value > 0, spread / value.clamp(min=1e-12), torch.zeros_like(value))
    safe = spread.clamp(min=1e-12)
    hue = torch.where(value == r, (gr - b) / safe % 6,
                      torch.where(value == gr, (b - r) / safe + 2, (r - gr) / safe + 4)) / 6
    hue = torch.where(spread > 0, hue, torch.zeros_like(hue))
    return torch.stack([hue, saturation, value], 1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    hue, saturation, value = x.unbind(1)
    k = (torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1) + hue[:, None] * 6) % 6
    return value[:, None] - value[:, None] * saturation[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def brightness(x, c, g):
    hsv = rgb_to_hsv(x)
    hsv[:, 2] = (hsv[:, 2] + c).clamp(0, 1)
    return hsv_to_rgb(hsv)


def saturate(x, parameter, g):
    scale, shift = parameter
    hsv = rgb_to_hsv(x)
    hsv[:, 1] = (hsv[:, 1] * scale + shift).clamp(0, 1)
    return hsv_to_rgb(hsv)


def box_window(size_in: int, size_out: int) -> Tensor:
    """size_out × size_in 0/1 window of a box-filter resize, as PIL's BOX (CIFAR-10-C's pixelate): each output
    pixel is the plain mean of the input pixels whose centres fall in its box, max(scale, 1) input pixels
    wide. (torch's "area" mode averages every pixel the box touches: a blur of two pixels where the sizes
    differ by a pixel or two, the mild severities.)"""
    scale = size_in / size_out
    width = max(scale, 1.0)
    centres = (torch.arange(size_out, dtype=torch.float64) + 0.5) * scale
    offsets = (torch.arange(size_in, dtype=torch.float64) + 0.5)[None] - centres[:, None]
    return ((offsets > -width / 2) & (offsets <= width / 2)).double()


def box_resize(x: Tensor, size: int) -> Tensor:
    """x (N×C×H×W, values in [0, 1]) resized to size × size through `box_window`, width then height, each
    pass rounded half up to 8-bit levels, as PIL resizes an 8-bit image."""
    def mean(levels: Tensor, window: Tensor) -> Tensor:      # exact sums of whole levels, then the division
        return torch.floor(levels / window.sum(1) + 0.5)
    levels = (x.double() * 255).round()
    across = box_window(x.shape[-1], size)
    levels = mean(levels @ across.T, across)
    down = box_window(x.shape[-2], size)
    levels = mean((down @ levels).transpose(-1, -2), down).transpose(-1, -2)
    return (levels / 255).to(x.dtype)


def pixelate(x, c, g):
    """Box-downsample to c × the size, then box-upsample back."""
    size = x.shape[-1]
    return box_resize(box_resize(x, int(size * c)), size)


def sample(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Bilinear values of x at pixel coordinates (rows, cols: N×H×W), reflecting at the borders."""
    h, w = x.shape[-2:]
    grid = torch.stack([cols / (w - 1) * 2 - 1, rows / (h - 1) * 2 - 1], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


def elastic_transform(x, parameter, g):
    """A random affine map (three control points moved by up to `shift` pixels), then a smooth
    random displacement field of amplitude `alpha` and smoothness `sigma` (all × image size)."""
    alpha, sigma, shift = (p * x.shape[-1] for p in parameter)
    n, size = len(x), x.shape[-1]
    centre, third = size // 2, size // 3
    source = torch.tensor([[centre + third, centre + third], [centre + third, centre - third],
                           [centre - third, centre - third]], dtype=torch.float32)
    target = source + (torch.rand(n, 3, 2, generator=g) * 2 - 1) * shift
    ones = torch.ones(n, 3, 1)
    # affine map target -> source: output pixel (x, y) reads the input at A @ (x, y, 1)
    inverse = torch.linalg.lstsq(torch.cat([target, ones], 2), source.expand(n, 3, 2)).solution  # n×3×2
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, -1, 3)
    mapped = (points @ inverse).reshape(n, size, size, 2)
    x = sample(x, mapped[..., 1], mapped[..., 0])
    noise = torch.rand(n, 2, size, size, generator=g) * 2 - 1
    if sigma > 0:
        radius = int(3 * sigma + 0.5)
        noise = TF.gaussian_blur(noise, [2 * radius + 1] * 2, [sigma] * 2)
    dx, dy = (noise * alpha).unbind(1)
    return sample(x, ys + dy, xs + dx)


GENERATORS = {name: globals()[name] for name in CORRUPTIONS if name != "jpeg_compression"}

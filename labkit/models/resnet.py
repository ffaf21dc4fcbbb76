"""ResNet-18 for 32×32 inputs (He et al. 2016, CIFAR variant as in kuangliu/pytorch-cifar).

stem  3×3 conv, 64 ch, stride 1                     → 64×32×32
layer1  2 BasicBlocks,  64 ch, stride 1            → 64×32×32
layer2  2 BasicBlocks, 128 ch, stride 2            → 128×16×16
layer3  2 BasicBlocks, 256 ch, stride 2            → 256×8×8
layer4  2 BasicBlocks, 512 ch, stride 2            → 512×4×4
global average pool (4×4 → 1×1) · linear 512 → classes

`ResNet` takes the block class and an optional stem, so SE-ResNet reuses it, and so does `plain18`:
the same network with every shortcut removed (PlainBlock), the control that isolates what the
shortcuts contribute.
"""
from typing import Callable

from torch import Tensor, nn


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(out_ch)]


class BasicBlock(nn.Module):
    """Two 3×3 convs plus a shortcut: relu(F(x) + shortcut(x)).

    The shortcut is the identity, or a 1×1 conv + BN projection when the stride or the
    channel count changes. Input N×in_ch×H×W → output N×out_ch×H/stride×W/stride.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.residual = nn.Sequential(
            *conv_bn(in_ch, out_ch, 3, stride), nn.ReLU(inplace=True), *conv_bn(out_ch, out_ch, 3)
        )
        needs_projection = stride != 1 or in_ch != out_ch
        self.shortcut = nn.Sequential(*conv_bn(in_ch, out_ch, 1, stride)) if needs_projection else nn.Identity()
        self.use_shortcut = True  # switched off only to study gradients without shortcuts

    def residual_branch(self, x: Tensor) -> Tensor:
        return self.residual(x)

    def forward(self, x: Tensor) -> Tensor:
        out = self.residual_branch(x)
        if self.use_shortcut:
            out = out + self.shortcut(x)
        return out.relu()


class PlainBlock(nn.Module):
    """BasicBlock without a shortcut: relu(F(x)), the two 3×3 convs with BN alone.
    Input N×in_ch×H×W → output N×out_ch×H/stride×W/stride."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.residual = nn.Sequential(
            *conv_bn(in_ch, out_ch, 3, stride), nn.ReLU(inplace=True), *conv_bn(out_ch, out_ch, 3)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x).relu()


def cifar_stem() -> nn.Sequential:
    """3×3 conv, stride 1: keeps 32×32 resolution (N×3×32×32 → N×64×32×32)."""
    return nn.Sequential(*conv_bn(3, 64, 3), nn.ReLU(inplace=True))


class ResNet(nn.Module):
    """Input: N×3×32×32 float images. Output: N×num_classes logits."""

    def __init__(self, block: Callable[..., nn.Module], blocks_per_stage: list[int],
                 num_classes: int = 10, stem: nn.Module | None = None):
        super().__init__()
        self.stem = stem if stem is not None else cifar_stem()
        widths, in_ch, stages = [64, 128, 256, 512], 64, []
        for i, (width, count) in enumerate(zip(widths, blocks_per_stage)):
            strides = [1 if i == 0 else 2] + [1] * (count - 1)
            layers = []
            for stride in strides:
                layers.append(block(in_ch, width, stride))
                in_ch = width
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.pool(x).flatten(1))


def resnet18(num_classes: int = 10) -> ResNet:
    """ResNet-18, CIFAR variant: 11,173,962 parameters for 10 classes."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def plain18(num_classes: int = 10) -> ResNet:
    """ResNet-18 without its shortcuts (same widths, BN and stem; no projections): 11,000,138 parameters
    for 10 classes, the control for the claim that residual connections explain the gap."""
    return ResNet(PlainBlock, [2, 2, 2, 2], num_classes)

"""SE-ResNet-18 (Hu et al. 2018): ResNet-18 whose blocks recalibrate their channels.

Each block computes the residual branch F(x), then squeeze-and-excitation:
  squeeze   global average pool          N×C×H×W → N×C
  excite    fc C→C/16 · ReLU · fc C/16→C · sigmoid (no biases)
  rescale   F(x) · s, per channel
and only then adds the shortcut. Two stems:
  `se_resnet18`                the CIFAR 3×3 stride-1 stem (11,261,002 parameters);
  `se_resnet18_imagenet_stem`  the lab report's 7×7 stride-2 conv + 3×3 stride-2 max-pool,
                               which shrinks 32×32 inputs to 8×8 before layer1.
"""
from torch import Tensor, nn

from .resnet import BasicBlock, ResNet


class SqueezeExcitation(nn.Module):
    """N×C×H×W → N×C×H×W, each channel scaled by a learned gate in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excite = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False), nn.Sigmoid(),
        )
        self.last_gates: Tensor | None = None  # kept only when record_gates is set
        self.record_gates = False

    def forward(self, x: Tensor) -> Tensor:
        gates = self.excite(self.squeeze(x).flatten(1))
        if self.record_gates:
            self.last_gates = gates.detach()
        return x * gates[:, :, None, None]


class SEBasicBlock(BasicBlock):
    """BasicBlock with SE applied to the residual branch before the shortcut add."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__(in_ch, out_ch, stride)
        self.se = SqueezeExcitation(out_ch)

    def residual_branch(self, x: Tensor) -> Tensor:
        return self.se(self.residual(x))


def imagenet_stem() -> nn.Sequential:
    """7×7 conv stride 2 + 3×3 max-pool stride 2: N×3×32×32 → N×64×8×8."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    )


def se_resnet18(num_classes: int = 10) -> ResNet:
    """SE-ResNet-18, CIFAR stem: 11,261,002 parameters for 10 classes."""
    return ResNet(SEBasicBlock, [2, 2, 2, 2], num_classes)


def se_resnet18_imagenet_stem(num_classes: int = 10) -> ResNet:
    """SE-ResNet-18 with the ImageNet stem, the variant printed in the lab report."""
    return ResNet(SEBasicBlock, [2, 2, 2, 2], num_classes, stem=imagenet_stem())

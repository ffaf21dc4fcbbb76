"""DenseNet-BC for 32×32 inputs (Huang et al. 2017), the `densenet_cifar` of kuangliu/pytorch-cifar.

stem        3×3 conv to 2k channels                  → 24×32×32   (growth rate k = 12)
block1      6 bottleneck layers, each adds k channels → 96×32×32
transition  BN-ReLU-1×1 conv halving channels, 2×2 avg pool → 48×16×16
block2     12 layers → 192×16×16 · transition → 96×8×8
block3     24 layers → 384×8×8   · transition → 192×4×4
block4     16 layers → 384×4×4
head        BN · ReLU · global average pool · linear 384 → classes

Every layer sees the concatenation of all earlier feature maps of its block. With
`memory_efficient=True` the concat, BN, ReLU and 1×1 conv of each layer are recomputed in
backward instead of stored (Pleiss et al. 2017): same numbers, less activation memory.
"""
import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


class Bottleneck(nn.Module):
    """features (list of N×Ci×H×W) → N×k×H×W: BN-ReLU-1×1 conv to 4k, BN-ReLU-3×3 conv to k."""

    def __init__(self, in_ch: int, growth: int, memory_efficient: bool = False):
        super().__init__()
        self.reduce = nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True),
                                    nn.Conv2d(in_ch, 4 * growth, 1, bias=False))
        self.grow = nn.Sequential(nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True),
                                  nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False))
        self.memory_efficient = memory_efficient

    def _concat_reduce(self, *features: Tensor) -> Tensor:
        return self.reduce(torch.cat(features, 1))

    def forward(self, features: list[Tensor]) -> Tensor:
        if self.memory_efficient and torch.is_grad_enabled():
            bottleneck = checkpoint(self._concat_reduce, *features, use_reentrant=False)
        else:
            bottleneck = self._concat_reduce(*features)
        return self.grow(bottleneck)


class DenseBlock(nn.Module):
    """N×C×H×W → N×(C + layers·k)×H×W."""

    def __init__(self, in_ch: int, layers: int, growth: int, memory_efficient: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(
            Bottleneck(in_ch + i * growth, growth, memory_efficient) for i in range(layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, 1)


def transition(in_ch: int, out_ch: int) -> nn.Sequential:
    """N×in_ch×H×W → N×out_ch×H/2×W/2."""
    return nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True),
                         nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.AvgPool2d(2))


class DenseNet(nn.Module):
    """Input: N×3×32×32 float images. Output: N×num_classes logits."""

    def __init__(self, layers_per_block: list[int], growth: int = 12, reduction: float = 0.5,
                 num_classes: int = 10, memory_efficient: bool = False):
        super().__init__()
        channels = 2 * growth
        stages: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1, bias=False)]
        for i, layers in enumerate(layers_per_block):
            stages.append(DenseBlock(channels, layers, growth, memory_efficient))
            channels += layers * growth
            if i < len(layers_per_block) - 1:
                halved = int(channels * reduction)
                stages.append(transition(channels, halved))
                channels = halved
        stages += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def densenet_cifar(num_classes: int = 10, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-BC, blocks [6, 12, 24, 16], k = 12: 1,000,618 parameters for 10 classes."""
    return DenseNet([6, 12, 24, 16], growth=12, num_classes=num_classes, memory_efficient=memory_efficient)

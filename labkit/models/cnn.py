"""The PyTorch tutorial CNN ("Training a classifier"), unchanged.

conv(3→6, 5×5) · ReLU · maxpool 2 · conv(6→16, 5×5) · ReLU · maxpool 2 · fc 400→120→84→10
"""
from torch import Tensor, nn


class TutorialCNN(nn.Module):
    """Input: N×3×32×32 float images. Output: N×num_classes logits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),   # → 6×14×14
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # → 16×5×5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),                                                 # → 400
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def cnn(num_classes: int = 10) -> TutorialCNN:
    """The tutorial net: 62,006 parameters for 10 classes."""
    return TutorialCNN(num_classes)

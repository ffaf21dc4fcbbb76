import pytest
import torch
from torch import nn

from labkit.data import BatchLoader
from labkit.evaluate import confusion_matrix, evaluate, predict, score


def test_confusion_matrix_rows_are_true_classes():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(preds, labels, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


class ColourClassifier(nn.Module):
    """Predicts class 0 when the red channel is brighter than the blue one, else 1."""
    def forward(self, x):
        score = x[:, 0].mean((1, 2)) - x[:, 2].mean((1, 2))
        return torch.stack([score, -score], 1) * 10


def test_evaluate_accuracy_and_per_class():
    images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    images[:2, 0] = 255            # red → class 0
    images[2:, 2] = 255            # blue → class 1
    labels = torch.tensor([0, 1, 1, 1])
    result = evaluate(ColourClassifier(), images, labels, ("red", "blue"))
    assert result.accuracy == 0.75
    assert result.per_class == pytest.approx({"red": 1.0, "blue": 2 / 3})
    assert result.probabilities.shape == (4, 2)
    torch.testing.assert_close(result.probabilities.sum(1), torch.ones(4))


def test_accuracies_are_exact_ratios_of_counts():
    labels = torch.zeros(200, dtype=torch.int64)
    probabilities = torch.tensor([[1.0, 0.0]]).repeat(200, 1)
    probabilities[:20] = torch.tensor([0.0, 1.0])          # 180 of 200 right
    result = score(probabilities, labels, ("a", "b"))
    assert result.accuracy == 0.9 and result.per_class["a"] == 0.9   # float32 would give 0.89999998


class LeftRight(nn.Module):
    """Logit 0 = brightness of the left half: mirror-sensitive, so TTA changes its output."""
    def forward(self, x):
        left = x[..., :16].mean((1, 2, 3))
        return torch.stack([left, torch.zeros_like(left)], 1)


def test_flip_tta_averages_image_and_mirror():
    images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    images[..., :16] = 255
    x, _ = next(iter(BatchLoader(images, torch.zeros(1, dtype=torch.int64), 1, train=False)))
    model = LeftRight()
    expected = ((model(x) + model(x.flip(3))) / 2).softmax(1)
    torch.testing.assert_close(predict(model, images, tta=True), expected)
    assert not torch.allclose(predict(model, images), expected)

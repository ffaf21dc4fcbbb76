"""Accuracy, per-class accuracy, confusion matrix and predictions, with test-time augmentation
(TTA) at three levels: none, flip, flip + two 1-pixel translations."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from labkit.data import BatchLoader
from labkit.device import autocast
from labkit.models import eval_mode

TTA_LEVELS = {0: "none", 1: "flip", 2: "flip + two 1-pixel translations"}


def tta_logits(model: nn.Module, x: Tensor, max_level: int) -> dict[int, Tensor]:
    """Logits of a normalised batch at every TTA level up to `max_level`, sharing the passes:
    level 1 averages the image and its mirror image; level 2 weighs that ½ and the same pair
    shifted by one pixel up-left and down-right (reflect padding) ¼ each."""
    def mirrored(view: Tensor) -> Tensor:
        return (model(view).float() + model(view.flip(3)).float()) / 2

    levels = {0: model(x).float()}
    if max_level >= 1:
        levels[1] = (levels[0] + model(x.flip(3)).float()) / 2
    if max_level >= 2:
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        size = x.shape[-1]
        shifted = [padded[..., :size, :size], padded[..., 2:, 2:]]
        levels[2] = levels[1] / 2 + sum(mirrored(v.contiguous(memory_format=layout)) for v in shifted) / 4
    return levels


@torch.no_grad()
def predict_levels(model: nn.Module, images: Tensor, levels: tuple[int, ...] = (0,), *,
                   device: str | torch.device = "cpu", precision: str = "fp32", batch_size: int = 500,
                   channels_last: bool = True) -> dict[int, Tensor]:
    """Class probabilities (float32 N×C, on the CPU) for uint8 images N×3×32×32 at each TTA level
    in `levels` (see TTA_LEVELS), in one pass over the images."""
    unknown = set(levels) - set(TTA_LEVELS)
    if unknown:
        raise ValueError(f"unknown TTA level(s) {sorted(unknown)}; valid: {TTA_LEVELS}")
    device = torch.device(device)
    loader = BatchLoader(images, torch.zeros(len(images), dtype=torch.int64), batch_size, train=False,
                         device=device, channels_last=channels_last)
    chunks: dict[int, list[Tensor]] = {level: [] for level in levels}
    with eval_mode(model):
        for x, _ in loader:
            with autocast(device, precision):
                logits = tta_logits(model, x, max(levels))
            for level in levels:
                chunks[level].append(logits[level].softmax(1).cpu())
    return {level: torch.cat(parts) for level, parts in chunks.items()}


def predict(model: nn.Module, images: Tensor, *, tta: int = 0, **options) -> Tensor:
    """Class probabilities at one TTA level (0 none, 1 flip, 2 flip + translations; True means 1)."""
    return predict_levels(model, images, (int(tta),), **options)[int(tta)]


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """C×C int64 counts; row = true class, column = predicted class."""
    return torch.bincount(labels * num_classes + predictions, minlength=num_classes ** 2).view(num_classes, -1)


@dataclass
class Evaluation:
    accuracy: float
    per_class: dict[str, float]
    confusion: Tensor          # C×C, rows true, columns predicted
    probabilities: Tensor      # N×C
    predictions: Tensor        # N
    loss: float                # mean cross-entropy (no smoothing)


def score(probabilities: Tensor, labels: Tensor, classes: tuple[str, ...]) -> Evaluation:
    predictions = probabilities.argmax(1)
    labels = labels.cpu()
    confusion = confusion_matrix(predictions, labels, len(classes))
    # accuracies as counts over counts in float64: 180 of 200 is 0.9, not float32's 0.89999998
    per_class = (confusion.diag().double() / confusion.sum(1).clamp(min=1)).tolist()
    loss = nn.functional.nll_loss(probabilities.clamp(min=1e-12).log(), labels).item()
    return Evaluation(accuracy=confusion.trace().item() / len(labels),
                      per_class=dict(zip(classes, per_class)), confusion=confusion,
                      probabilities=probabilities, predictions=predictions, loss=loss)


def evaluate(model: nn.Module, images: Tensor, labels: Tensor, classes: tuple[str, ...], **predict_options
             ) -> Evaluation:
    """Score a model on uint8 images with int64 labels; options go to `predict`."""
    return score(predict(model, images, **predict_options), labels, classes)


def evaluate_levels(model: nn.Module, images: Tensor, labels: Tensor, classes: tuple[str, ...],
                    levels: tuple[int, ...] = tuple(TTA_LEVELS), **predict_options) -> dict[int, Evaluation]:
    """`evaluate` at several TTA levels, sharing the forward passes."""
    return {level: score(p, labels, classes)
            for level, p in predict_levels(model, images, levels, **predict_options).items()}

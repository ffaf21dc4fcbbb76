"""Accuracy, per-class accuracy, confusion matrix and predictions, with optional flip TTA."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .data import BatchLoader


def autocast(device: torch.device, precision: str):
    """bf16 autocast context for 'bf16', a no-op for 'fp32'."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, *, device: str | torch.device = "cpu", precision: str = "fp32",
            batch_size: int = 500, tta: bool = False, channels_last: bool = True) -> Tensor:
    """Class probabilities (float32 N×C, on the CPU) for uint8 images N×3×32×32.
    With tta, the logits of the image and its mirror image are averaged."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = BatchLoader(images, torch.zeros(len(images), dtype=torch.int64), batch_size, train=False,
                         device=device, channels_last=channels_last)
    chunks = []
    for x, _ in loader:
        with autocast(device, precision):
            logits = model(x).float()
            if tta:
                logits = (logits + model(x.flip(3)).float()) / 2
        chunks.append(logits.softmax(1).cpu())
    model.train(was_training)
    return torch.cat(chunks)


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


def evaluate(model: nn.Module, images: Tensor, labels: Tensor, classes: tuple[str, ...], **predict_options
             ) -> Evaluation:
    """Score a model on uint8 images with int64 labels; options go to `predict`."""
    probabilities = predict(model, images, **predict_options)
    predictions = probabilities.argmax(1)
    confusion = confusion_matrix(predictions, labels.cpu(), len(classes))
    per_class = (confusion.diag().float() / confusion.sum(1).clamp(min=1)).tolist()
    loss = nn.functional.nll_loss(probabilities.clamp(min=1e-12).log(), labels.cpu()).item()
    return Evaluation(accuracy=(predictions == labels.cpu()).float().mean().item(),
                      per_class=dict(zip(classes, per_class)), confusion=confusion,
                      probabilities=probabilities, predictions=predictions, loss=loss)

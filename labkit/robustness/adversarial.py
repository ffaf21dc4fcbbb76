"""Adversarial robustness: accuracy under FGSM and PGD-10 (L∞) attacks made by torchattacks.

Attacks work in pixel space, images in [0, 1], so the model is wrapped with the normalisation
it was trained with (`PixelModel`). ε is in units of 1/255, one grey level of a uint8 image.
PGD takes 10 steps of size 2.5·ε/10 from a random start inside the ε-ball (Madry et al.'s
settings). Images the model already gets wrong count as wrong at every ε and are not attacked.
"""
from __future__ import annotations

import torch
import torchattacks
from torch import Tensor, nn

from labkit.data import normalize
from labkit.device import autocast
from labkit.models import eval_mode

EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)     # × 1/255
PGD_STEPS = 10


class PixelModel(nn.Module):
    """`model` on images in [0, 1]: normalises, runs in `precision`, returns float32 logits."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32"):
        super().__init__()
        self.model, self.device, self.precision = model, device, precision

    def forward(self, x: Tensor) -> Tensor:
        x = normalize(x, max_value=1.0).contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            return self.model(x).float()


def attack_accuracy(model: nn.Module, images: Tensor, labels: Tensor, *, epsilons=EPSILONS,
                    device: torch.device | str = "cpu", precision: str = "fp32", batch_size: int = 250,
                    seed: int = 0) -> dict:
    """Accuracy on uint8 `images` under FGSM and PGD-10 at every ε (×1/255):
    {"clean": acc, "fgsm": {"0.5": acc, …}, "pgd": {…}}."""
    if any(not eps > 0 for eps in epsilons):
        raise ValueError(f"every ε must be > 0, got {list(epsilons)}")
    device = torch.device(device)
    with eval_mode(model):   # the wrapper in eval mode too: torchattacks restores the wrapper's mode after each attack
        return attack_each_budget(PixelModel(model, device, precision).to(device).eval(), images, labels, epsilons,
                                  device, batch_size, seed)


def attack_each_budget(pixel_model: PixelModel, images: Tensor, labels: Tensor, epsilons, device: torch.device,
                       batch_size: int, seed: int) -> dict:
    """The body of `attack_accuracy`: clean accuracy, then FGSM and PGD on the images each model gets right."""
    x = images.to(device).float() / 255
    y = labels.to(device)
    with torch.no_grad():
        correct = torch.cat([pixel_model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                             for i in range(0, len(x), batch_size)])
    targets = correct.nonzero().flatten()
    result = {"clean": float(correct.float().mean()), "images": len(x), "fgsm": {}, "pgd": {}}
    for eps in epsilons:
        attacks = {"fgsm": torchattacks.FGSM(pixel_model, eps=eps / 255),
                   "pgd": torchattacks.PGD(pixel_model, eps=eps / 255, alpha=2.5 * eps / 255 / PGD_STEPS,
                                           steps=PGD_STEPS, random_start=True)}
        for name, attack in attacks.items():
            survived = 0
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)          # PGD's random start
                for i in range(0, len(targets), batch_size):
                    part = targets[i:i + batch_size]
                    adversarial = attack(x[part], y[part])
                    with torch.no_grad():
                        survived += int((pixel_model(adversarial).argmax(1) == y[part]).sum())
            result[name][f"{eps:g}"] = survived / len(x)
    return result

"""Model registry: `build_model(name)` and `available_models()`."""
from typing import Callable

from torch import nn

from .cnn import cnn
from .densenet import densenet_cifar
from .resnet import resnet18
from .se_resnet import se_resnet18, se_resnet18_imagenet_stem

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "cnn": cnn,
    "resnet18": resnet18,
    "densenet_cifar": densenet_cifar,
    "se_resnet18": se_resnet18,
    "se_resnet18_imagenet_stem": se_resnet18_imagenet_stem,
}


def available_models() -> list[str]:
    return list(_BUILDERS)


def check_model_name(name: str) -> None:
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_BUILDERS)}")


def build_model(name: str, num_classes: int = 10, **options) -> nn.Module:
    """Build a freshly initialised model by name; options go to its builder
    (e.g. `memory_efficient=True` for densenet_cifar)."""
    check_model_name(name)
    return _BUILDERS[name](num_classes=num_classes, **options)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

"""Model registry: `build_model(name)` and `available_models()`; `mode(model, training)` switches a
model to train or eval mode for a block and back."""
import contextlib
from typing import Callable

from torch import nn

from .cnn import cnn
from .densenet import densenet_cifar
from .resnet import plain18, resnet18
from .se_resnet import se_resnet18, se_resnet18_imagenet_stem

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "cnn": cnn,
    "resnet18": resnet18,
    "plain18": plain18,
    "densenet_cifar": densenet_cifar,
    "se_resnet18": se_resnet18,
    "se_resnet18_imagenet_stem": se_resnet18_imagenet_stem,
}


def available_models() -> list[str]:
    return list(_BUILDERS)


def available_builders() -> dict[str, Callable[..., nn.Module]]:
    """{model name: the function that builds it}."""
    return dict(_BUILDERS)


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


@contextlib.contextmanager
def mode(model: nn.Module, training: bool):
    """`model` in train (True) or eval (False) mode for the block, then back in the mode it had."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def eval_mode(model: nn.Module):
    """`with eval_mode(model):` BN and dropout in inference mode for the block."""
    return mode(model, False)

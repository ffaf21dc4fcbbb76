"""An exponential moving average (EMA) of a model's weights, updated after every optimiser step.

The average covers every floating-point entry of the state dict, BN running statistics included,
so the averaged copy can be evaluated as it is; integer buffers (BN's batch counter) are copied.
`decay` is per step: the average spans about 1 / (1 - decay) steps. Early on the decay is capped
at (1 + t) / (10 + t) after t updates, so the first random weights fade out quickly.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        averaged = self.model.state_dict()
        pairs = [(averaged[name], value) for name, value in model.state_dict().items()]
        self._floats = [(mine, theirs) for mine, theirs in pairs if mine.is_floating_point()]
        self._others = [(mine, theirs) for mine, theirs in pairs if not mine.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the live model's current state (the tensors captured at init)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        mine, theirs = zip(*self._floats)
        torch._foreach_lerp_(list(mine), list(theirs), 1 - decay)
        for mine, theirs in self._others:
            mine.copy_(theirs)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]
        self.model.load_state_dict(state["model"])

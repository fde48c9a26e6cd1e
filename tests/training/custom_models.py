"""Custom model factories a TrainingJob names by import path."""

from __future__ import annotations

import torch
from torch import nn


def small(n_inputs: int, width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(n_inputs, width), nn.Tanh(), nn.Linear(width, 1))


def fixed_width(n_inputs: int) -> nn.Module:
    """Ignores n_inputs: fails when the features are not exactly 3 wide."""
    return nn.Linear(3, 1)


def two_outputs(n_inputs: int) -> nn.Module:
    return nn.Linear(n_inputs, 2)


class Exploding(nn.Module):
    """Trains to a non-finite loss on its first step."""

    def __init__(self, n_inputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_inputs, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(features)
        return out if not self.training else out * float("inf")


def exploding(n_inputs: int) -> nn.Module:
    return Exploding(n_inputs)


def not_a_module(n_inputs: int) -> object:
    return object()


class OutlierWeight(nn.Module):
    """A linear model with one more input, always zero, weighing 1e5: the float model
    never sees it, but it sets the per-tensor int8 scale of the weights so high that
    every other weight rounds to zero (what quantization's gate is for)."""

    def __init__(self, n_inputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_inputs + 1, 1)
        with torch.no_grad():
            self.linear.weight[0, -1] = 1e5

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # Its gradient is always zero, so training leaves the outlier as it is.
        zero = features.new_zeros((features.shape[0], 1))
        out: torch.Tensor = self.linear(torch.cat([features, zero], dim=1))
        return out


def outlier_weight(n_inputs: int) -> nn.Module:
    return OutlierWeight(n_inputs)

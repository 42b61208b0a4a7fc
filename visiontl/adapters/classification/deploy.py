"""The graph the classification adapter exports: logits and their softmax."""
from __future__ import annotations

import torch


class WithProbabilities(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        logits = self.model(images)
        return logits, logits.softmax(1)

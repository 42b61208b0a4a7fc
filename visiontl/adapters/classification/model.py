"""Classification head and model; the head sizes itself from ``backbone.feature_info``."""
from __future__ import annotations

import torch
from torch import nn

from ...backbones import Backbone


class ClassificationHead(nn.Module):
    """Global average pooling → [Linear → ReLU → Dropout] → Dropout → Linear.

    Shape: (N, C, H, W) → (N, num_classes).
    """

    def __init__(self, in_channels: int, num_classes: int, *, hidden: int = 0, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        width = in_channels
        if hidden > 0:
            layers += [nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ClassificationModel(nn.Module):
    """Backbone (with its own preprocessing) + head. Input: RGB, uint8 or float in [0, 1]."""

    def __init__(self, backbone: Backbone, num_classes: int, *, hidden: int = 0, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ClassificationHead(backbone.feature_info[-1].channels, num_classes, hidden=hidden, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1])

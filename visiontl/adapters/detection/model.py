"""Registry backbone → strides 8/16/32 → a light PAN neck → ultralytics' YOLOv8 ``Detect``
head (anchor-free, decoupled box/class branches, DFL box regression)."""
from __future__ import annotations

import torch
from torch import nn
from . import _ultralytics  # noqa: F401,I001  (before ultralytics: offline, its patches undone)
from ultralytics.nn.modules.head import Detect

from ...backbones import Backbone

STRIDES = (8, 16, 32)


class ConvBNAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


class PAN(nn.Module):
    """FPN top-down then PAN bottom-up over three levels, all ``width`` channels wide.

    Shape: features at strides 8/16/32 with ``in_channels`` → three maps of ``width``.
    """

    def __init__(self, in_channels: list[int], width: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(ConvBNAct(c, width, 1) for c in in_channels)
        self.top_down = nn.ModuleList(ConvBNAct(width, width) for _ in in_channels[:-1])
        self.down = nn.ModuleList(ConvBNAct(width, width, 3, 2) for _ in in_channels[:-1])
        self.bottom_up = nn.ModuleList(ConvBNAct(width, width) for _ in in_channels[:-1])

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        x = [lat(f) for lat, f in zip(self.lateral, features)]
        for i in range(len(x) - 2, -1, -1):  # top-down: coarse semantics into fine maps
            up = nn.functional.interpolate(x[i + 1], size=x[i].shape[-2:], mode="nearest")
            x[i] = self.top_down[i](x[i] + up)
        for i in range(1, len(x)):  # bottom-up: fine localisation into coarse maps
            x[i] = self.bottom_up[i - 1](x[i] + self.down[i - 1](x[i - 1]))
        return x


def stride_levels(backbone: Backbone, strides: tuple[int, ...] = STRIDES, needed_by: str = "detection") -> list[int]:
    """Index of the last stage at each of ``strides`` (or a clear error)."""
    reductions = [f.reduction for f in backbone.feature_info]
    missing = [s for s in strides if s not in reductions]
    if missing:
        raise ValueError(f"backbone {backbone.name!r} has no stage at stride(s) {missing} "
                         f"(its strides: {reductions}); {needed_by} needs {', '.join(map(str, strides))}")
    return [max(i for i, r in enumerate(reductions) if r == s) for s in strides]


class DetectionModel(nn.Module):
    """In training mode returns the head's raw outputs (what ``v8DetectionLoss`` takes); in
    eval mode ``(decoded, raw)`` with decoded = (B, 4 + classes, anchors), boxes as cx cy w h
    in input pixels and class scores after the sigmoid."""

    def __init__(self, backbone: Backbone, num_classes: int, width: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.levels = stride_levels(backbone)
        channels = [backbone.feature_info[i].channels for i in self.levels]
        width = width or min(256, max(64, channels[0]))  # from the finest level, within bounds
        self.neck = PAN(channels, width)
        self.head = Detect(nc=num_classes, ch=(width,) * len(STRIDES))
        self.head.stride = torch.tensor(STRIDES, dtype=torch.float32)
        self.head.bias_init()
        self.num_classes = num_classes

    @property
    def stride(self) -> torch.Tensor:
        return self.head.stride

    def forward(self, images: torch.Tensor):
        features = self.backbone(images)
        h, w = images.shape[-2:]
        # the head decodes cell (i, j) of level s at pixel s·(i, j); a backbone with unpadded
        # convolutions (inception_v3: 77 cells at 640 px, not 80) is resampled onto that grid
        levels = [features[i] if features[i].shape[-2:] == (h // s, w // s) else
                  nn.functional.interpolate(features[i], size=(h // s, w // s), mode="bilinear", align_corners=False)
                  for i, s in zip(self.levels, STRIDES)]
        return self.head(self.neck(levels))


class DecodedOnly(nn.Module):
    """Eval-mode detector → its decoded predictions only (what ONNX carries)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[0]

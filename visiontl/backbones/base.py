"""The Backbone contract: multi-scale features, ``feature_info``, layer groups, preprocessing.

Every backbone takes **RGB images in [0, 1]** (float) or ``uint8`` in [0, 255] and applies
the preprocessing that its weights were trained with itself (mean/std, channel order,
0–1 or 0–255 scale). Weights from different sources differ (torchvision's VGG19 wants
RGB mean/std, the original Caffe VGG19 wants BGR 0–255 minus a mean), so the
preprocessing travels with the weights, never with the dataset.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d  # a detection backbone's BatchNorm (Faster R-CNN)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Preprocessing:
    """How pixels must look to a set of weights.

    ``mean``/``std`` are given in the weights' own channel order and scale.
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"  # or "BGR"
    scale: float = 1.0  # 1.0: pixels in [0, 1]; 255.0: pixels in [0, 255]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def caffe(cls) -> "Preprocessing":
        return cls(mean=CAFFE_MEAN_BGR, std=(1.0, 1.0, 1.0), channel_order="BGR", scale=255.0)


class Preprocess(nn.Module):
    """Turns RGB [0, 1] (or uint8) images into what the weights expect; part of the model,
    so that export and predict cannot forget it."""

    def __init__(self, spec: Preprocessing) -> None:
        super().__init__()
        self.set(spec)

    def set(self, spec: Preprocessing) -> None:
        self.spec = spec
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        if self.spec.channel_order == "BGR":
            x = x.flip(1)
        if self.spec.scale != 1.0:
            x = x * self.spec.scale
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


@dataclass(frozen=True)
class FeatureInfo:
    """Channels and stride (reduction) of one output stage."""

    channels: int
    reduction: int
    name: str


class Backbone(nn.Module):
    """A CNN cut into sequential stages; ``forward`` returns one feature map per stage.

    Args:
        stages: modules applied in order; stage ``i`` outputs ``feature_info[i]``.
        feature_info: declared channels/strides per stage (checked by the test suite).
        preprocessing: what the weights expect; see :class:`Preprocessing`.
        name: registry key.
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        feature_info: Sequence[FeatureInfo],
        *,
        preprocessing: Preprocessing = Preprocessing(),
        name: str = "",
    ) -> None:
        super().__init__()
        if len(stages) != len(feature_info):
            raise ValueError(f"{name}: {len(stages)} stages but {len(feature_info)} feature_info entries")
        self.name = name
        self.preprocess = Preprocess(preprocessing)
        self.stages = nn.ModuleList(stages)
        self.feature_info = list(feature_info)
        self.weights_source = "none"  # filled in by the weights resolver

    @property
    def preprocessing(self) -> Preprocessing:
        return self.preprocess.spec

    def layer_groups(self) -> list[nn.Module]:
        """Ordered groups (input → output) that "unfreeze the last N" counts in: one per
        block (an inverted residual, a residual block, a VGG convolution), finer than the
        stages that ``feature_info`` describes."""
        return block_groups(self.stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(self.preprocess(x))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Preprocessed images → one feature map per stage."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


NORMS = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d, nn.GroupNorm, nn.LayerNorm,
         nn.modules.instancenorm._InstanceNorm)


def block_groups(modules) -> list[nn.Module]:
    """Blocks, in order: plain ``Sequential``/``ModuleList`` containers are opened (a stage
    of blocks, a slice of ``features``; a timm stage with ``.blocks``), anything else (a block class, a conv-BN-act unit)
    is one group; a normalisation layer or a module without parameters joins the group
    before it (conv | BN | ReLU | pool is one group, not four)."""
    groups: list[list[nn.Module]] = []

    def visit(m: nn.Module) -> None:
        blocks = getattr(m, "blocks", None)  # a timm stage: downsample, then its blocks
        if type(m) in (nn.Sequential, nn.ModuleList) or type(blocks) in (nn.Sequential, nn.ModuleList):
            for child in m.children():
                visit(child)
            return
        has_params = any(True for _ in m.parameters())
        if groups and (not has_params or isinstance(m, NORMS)):
            groups[-1].append(m)
        else:
            groups.append([m])

    for m in modules:
        visit(m)
    # a group of parameter-free modules only (a leading pool) joins the next one
    merged: list[list[nn.Module]] = []
    for g in groups:
        if merged and not any(True for m in merged[-1] for _ in m.parameters()):
            merged[-1].extend(g)
        else:
            merged.append(g)
    return [g[0] if len(g) == 1 else nn.ModuleList(g) for g in merged]


def freeze(module: nn.Module, frozen: bool = True) -> None:
    """Set ``requires_grad`` on every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(not frozen)


def set_bn_eval(module: nn.Module) -> None:
    """Put every normalisation layer whose parameters are all frozen into eval mode, so its
    running statistics are not silently updated by training batches."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if not any(p.requires_grad for p in m.parameters(recurse=False)):
                m.eval()

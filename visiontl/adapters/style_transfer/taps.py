"""Named feature taps on a frozen registry backbone: the loss network of style transfer.

VGG-style backbones (plain conv / ReLU / max-pool sequences) get the names of the style
transfer literature — ``conv1_1``, ``relu1_1``, …, ``pool1``, ``conv2_1``, … — counted
from the network's own layers, so ``relu4_2`` is VGG19's ``features[22]`` as in Gatys et al.
Every backbone also has its stage outputs, ``stage0`` … ``stage4`` (strides 2 … 32); a
backbone that runs its own forward (``timm:``) has only those, one per ``feature_info`` entry.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...backbones import Backbone


def named_layers(backbone: Backbone) -> list[tuple[str, nn.Module | None, int]]:
    """(name, module, stage) for every tappable layer in forward order; the module is None
    for a backbone without separate stages (its feature maps come from its own forward)."""
    if not len(backbone.stages):
        return [(f"stage{s}", None, s) for s in range(len(backbone.feature_info))]
    out: list[tuple[str, nn.Module, int]] = []
    block, conv, relu = 1, 0, 0
    for s, stage in enumerate(backbone.stages):
        children = list(stage.children()) if isinstance(stage, nn.Sequential) else [stage]
        plain = all(isinstance(m, (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.BatchNorm2d)) for m in children)
        if not plain:  # not a VGG-like sequence: only the stage output is named
            out.append((f"stage{s}", stage, s))
            continue
        for m in children:
            if isinstance(m, nn.Conv2d):
                conv += 1
                name = f"conv{block}_{conv}"
            elif isinstance(m, nn.ReLU):
                relu += 1
                name = f"relu{block}_{relu}"
            elif isinstance(m, nn.MaxPool2d):
                name = f"pool{block}"
                block, conv, relu = block + 1, 0, 0
            else:
                name = f"bn{block}_{conv}"
            out.append((name, m, s))
        out.append((f"stage{s}", nn.Identity(), s))
    return out


class FeatureTaps(nn.Module):
    """Frozen ``backbone`` → {layer name: feature map} for the requested ``layers``, running
    only as deep as the deepest one. Input: RGB in [0, 1] (the backbone's preprocessing,
    e.g. Caffe's BGR 0–255, is applied inside).

    Shape: (N, 3, H, W) → {name: (N, C, H / s, W / s)}.
    """

    def __init__(self, backbone: Backbone, layers: list[str]) -> None:
        super().__init__()
        table = named_layers(backbone)
        names = [n for n, _, _ in table]
        unknown = [layer for layer in layers if layer not in names]
        if unknown:
            raise KeyError(f"{backbone.name}: no layer {unknown[0]!r}; its layers: {', '.join(names)}")
        last = max(names.index(layer) for layer in layers)
        self.names = names[: last + 1]
        self.whole = backbone if table and table[0][1] is None else None  # its own forward (timm)
        self.layers = nn.ModuleList(m for _, m, _ in table[: last + 1] if m is not None)
        self.wanted = set(layers)
        self.preprocess = backbone.preprocess
        for m in self.layers.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False  # a tapped conv output must not be overwritten by the next ReLU
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FeatureTaps":
        return super().train(False)  # always frozen: BatchNorm (if any) keeps its statistics

    def forward(self, images: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """The tapped layers' features, or only ``layers`` (then it stops at the deepest of them)."""
        wanted = self.wanted if layers is None else set(layers)
        if self.whole is not None:
            return {name: f for name, f in zip(self.names, self.whole(images)) if name in wanted}
        x, out = self.preprocess(images), {}
        for name, layer in zip(self.names, self.layers):
            x = layer(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out

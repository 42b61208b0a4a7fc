"""Test-time augmentation (TTA): a trained model wrapped so that its forward runs several
views of each batch and merges them the standard way for its task. The wrapper goes where
the model goes (``predict``, validation), so TTA's predictions and metrics come from the
same code as the plain model's.

- classification: the image and the flips training used (its mirror; the vertical flip
  where ``data.augment.vflip`` > 0, and both together); the class probabilities averaged,
  as fastai's and ultralytics' classification TTA do;
- segmentation: the same flips, and the quarter turns where training used
  ``data.augment.rotate90``; each view's per-pixel probabilities turned back and averaged;
- detection: ultralytics' ``augment``: the image at scales 1, 0.83 and 0.67, the middle one
  mirrored; every view's boxes mapped back to the input's pixels and pooled before NMS.

The averaged probabilities come out as their logarithm, a valid set of logits (its softmax
is the average), so the loss, argmax and softmax downstream need no change.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

View = tuple[int, bool, bool]  # (quarter turns, mirror, vertical flip)


def flip_views(*, hflip: bool, vflip: bool = False, rotate90: bool = False) -> list[View]:
    """The views of :class:`FlipAverage`, the identity first: every combination of the
    transforms asked for (a group: mirror × vertical flip, quarter turns, or with both
    the square's eight symmetries), so the average is exactly invariant to each of them."""
    turns = (0, 1, 2, 3) if rotate90 else (0,)
    mirrors = (False, True) if hflip else (False,)
    flips = (False, True) if vflip and not (rotate90 and hflip) else (False,)  # turns × mirror hold the flip
    return [(k, h, v) for k in turns for h in mirrors for v in flips]


def _apply(x: torch.Tensor, view: View) -> torch.Tensor:
    k, h, v = view
    if h:
        x = x.flip(-1)
    if v:
        x = x.flip(-2)
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def _undo(y: torch.Tensor, view: View) -> torch.Tensor:
    k, h, v = view
    y = torch.rot90(y, -k, dims=(-2, -1)) if k else y
    if v:
        y = y.flip(-2)
    return y.flip(-1) if h else y


class FlipAverage(nn.Module):
    """Classification (``spatial=False``: one score vector per image) and segmentation
    (``spatial=True``: per-pixel maps, turned back before averaging).

    Shape: (N, 3, H, W) → (N, C) or (N, C, H, W) log-probabilities."""

    def __init__(self, model: nn.Module, views: list[View], *, spatial: bool) -> None:
        super().__init__()
        self.model, self.views, self.spatial = model, views, spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for view in self.views:
            p = self.model(_apply(x, view)).float().softmax(1)
            p = _undo(p, view) if self.spatial else p
            total = p if total is None else total + p
        return (total / len(self.views)).clamp_min(1e-12).log()


class DetectAugment(nn.Module):
    """A YOLO-style detector's views at several scales (mirrored where asked), pooled.

    Shape: (N, 3, H, W) → ((N, 4 + C, A × views) decoded xywh in input pixels, None)."""

    scales = (1.0, 0.83, 0.67)
    mirror = (False, True, False)

    def __init__(self, model: nn.Module, stride: int = 32, pad_value: float = 114 / 255) -> None:
        super().__init__()
        self.model, self.stride, self.pad_value = model, stride, pad_value

    def forward(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        pooled = []
        for scale, mirror in zip(self.scales, self.mirror):
            xi = x.flip(-1) if mirror else x
            if scale != 1.0:
                xi = xi.float() / 255.0 if xi.dtype == torch.uint8 else xi.float()
                xi = F.interpolate(xi, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False)
                ph, pw = -xi.shape[-2] % self.stride, -xi.shape[-1] % self.stride  # the detector's grid
                xi = F.pad(xi, (0, pw, 0, ph), value=self.pad_value)
            decoded = self.model(xi)[0].float().clone()
            decoded[:, :4] /= scale
            if mirror:
                decoded[:, 0] = w - decoded[:, 0]
            pooled.append(decoded)
        return torch.cat(pooled, 2), None

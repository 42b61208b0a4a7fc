"""Test-time augmentation (TTA): a trained model wrapped so that its forward runs several
views of each batch and merges them the standard way for its task. The wrapper goes where
the model goes (``predict``, validation), so TTA's predictions and metrics come from the
same code as the plain model's.

- classification: the image and the flips training used (its mirror; the vertical flip
  where ``data.augment.vflip`` > 0, and both together); the class probabilities averaged,
  as fastai's and ultralytics' classification TTA do;
- segmentation: the same flips, and the quarter turns where training used
  ``data.augment.rotate90``; each view's per-pixel probabilities turned back and averaged;
- detection: the image at scales 1, 0.83 and 0.67, the middle one mirrored (ultralytics'
  ``augment`` views); every view's boxes mapped back to the input's pixels and fused by
  weighted box fusion.

The averaged probabilities come out as their logarithm, a valid set of logits (its softmax
is the average), so the loss, argmax and softmax downstream need no change.
"""
from __future__ import annotations

import numpy as np
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
    """A YOLO-style detector's views at several scales (mirrored where asked), each view's
    boxes kept by NMS, mapped back to the input and fused across views by weighted box
    fusion (Solovyev et al. 2021, the usual way to merge TTA boxes): boxes of one class from
    different views that overlap (IoU > ``fuse_iou``) become one box, their coordinates
    averaged with the scores as weights, the score averaged over the views (a box only one
    view found counts for less). Pooling the views' boxes into one NMS instead keeps the single best box and loses
    what the others say about where the object is: on the tree crowns it lowered mAP50-95
    (benchmarks/RESULTS.md).

    Shape: (N, 3, H, W) → ((N, 4 + C, K) fused boxes as xywh in input pixels with class
    scores, zero-padded to the largest K, None)."""

    scales = (1.0, 0.83, 0.67)
    mirror = (False, True, False)

    def __init__(self, model: nn.Module, stride: int = 32, pad_value: float = 114 / 255, *, iou: float = 0.7,
                 fuse_iou: float = 0.55, max_det: int = 300) -> None:
        super().__init__()
        self.model, self.stride, self.pad_value = model, stride, pad_value
        self.iou, self.fuse_iou, self.max_det = iou, fuse_iou, max_det

    def views(self, x: torch.Tensor):
        """Each view's decoded predictions (N, 4 + C, A), boxes in the input's pixels."""
        h, w = x.shape[-2:]
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
            yield decoded

    def forward(self, x: torch.Tensor):
        from ultralytics.utils.nms import non_max_suppression

        decoded = list(self.views(x))
        num_classes = decoded[0].shape[1] - 4
        kept = [non_max_suppression(d, conf_thres=0.001, iou_thres=self.iou, max_det=self.max_det)
                for d in decoded]  # per view, per image: (n, 6) xyxy, score, class
        fused = []
        for i in range(x.shape[0]):
            det = torch.cat([view[i] for view in kept])
            which = torch.cat([torch.full((len(view[i]),), k, device=det.device) for k, view in enumerate(kept)])
            fused.append(weighted_box_fusion(det, which, len(kept), self.fuse_iou)[: self.max_det])
        k = max(1, max(len(f) for f in fused))
        out = x.new_zeros((x.shape[0], 4 + num_classes, k), dtype=torch.float32)
        for i, f in enumerate(fused):
            n = len(f)
            xyxy = f[:, :4]
            out[i, 0, :n], out[i, 1, :n] = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
            out[i, 2, :n], out[i, 3, :n] = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
            out[i, 4 + f[:, 5].long(), torch.arange(n)] = f[:, 4]
        return out, None


def weighted_box_fusion(det: torch.Tensor, view: torch.Tensor, views: int, iou: float = 0.55) -> torch.Tensor:
    """Fuse (n, 6) detections (x1, y1, x2, y2, score, class), ``view[j]`` the view that found
    detection j: per class, best first, a box joins the cluster whose first (best) box it
    overlaps most (IoU > ``iou``) among those with no box of its view yet (one view's boxes
    are distinct objects: NMS kept them apart); a cluster's box is its members'
    score-weighted mean, its score their sum / ``views`` (a view that missed it counts 0).
    Returns (m, 6), best first."""
    from torchvision.ops import box_iou

    out = []
    for c in det[:, 5].unique():
        keep = det[:, 5] == c
        d = det[keep]
        order = d[:, 4].argsort(descending=True)
        d, v = d[order], view[keep][order].cpu().numpy()
        overlaps = box_iou(d[:, :4], d[:, :4]).cpu().numpy()
        first: list[int] = []  # each cluster's best box
        seen = np.zeros((0, views), bool)  # which views a cluster has a box from
        cluster = np.empty(len(d), np.int64)
        for j in range(len(d)):
            if first:
                o = np.where(seen[:, v[j]], 0.0, overlaps[j, first])
                best = int(o.argmax())
                if o[best] > iou:
                    cluster[j], seen[best, v[j]] = best, True
                    continue
            cluster[j] = len(first)
            first.append(j)
            seen = np.vstack([seen, np.eye(views, dtype=bool)[v[j]]])
        index = torch.as_tensor(cluster, device=d.device)
        weights = d.new_zeros(len(first)).index_add_(0, index, d[:, 4])
        boxes = d.new_zeros((len(first), 4)).index_add_(0, index, d[:, :4] * d[:, 4:5]) / weights[:, None]
        out.append(torch.cat([boxes, (weights / views)[:, None], c.expand(len(first), 1)], 1))
    if not out:
        return det.new_zeros((0, 6))
    fused = torch.cat(out)
    return fused[fused[:, 4].argsort(descending=True)]

"""The YOLOv8 detection loss (CIoU + DFL box terms, BCE class term, task-aligned
assignment), ultralytics' own ``v8DetectionLoss``, fed by any model whose last module is a
``Detect`` head with its strides set (visiontl's detector or a native ultralytics one)."""
from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import torch
from . import _ultralytics  # noqa: F401,I001  (before ultralytics: offline, its patches undone)
from ultralytics.utils.loss import v8DetectionLoss

from .config import DetectLossConfig


class _LossView:
    """What ``v8DetectionLoss`` reads from a model: ``model[-1]`` (the head), ``args``
    (the gains) and the device of its parameters."""

    def __init__(self, head: torch.nn.Module, gains: DetectLossConfig, device: torch.device) -> None:
        self.model = [head]
        self.args = SimpleNamespace(box=gains.box, cls=gains.cls, dfl=gains.dfl)
        self._device = torch.zeros((), device=device)

    def parameters(self):
        yield self._device


class DetectionLoss:
    """``loss(raw_outputs, batch) -> (total, {"box": …, "cls": …, "dfl": …}, weight)``.

    Shape: raw outputs as the head returns them in training mode; ``batch`` with
    ``batch_idx`` (N,), ``cls`` (N,) and ``bboxes`` (N, 4) normalised cx cy w h.

    Per image, whatever the batch size: each image's loss is ultralytics' (its terms over
    its own assigned target scores, at least 1), and a batch's is their mean weighted by
    those target scores (``weight``, their sum: how the validation loop pools batches). So
    a batch of one image is that image's loss, the same images repeated give the same loss,
    and ``val/loss`` does not depend on the batch size. ultralytics divides by the whole
    batch's target scores clamped at 1, which turned a sum over the images into a loss that
    grew with the batch wherever the targets are faint (a barely trained model, sparse data).
    A plain mean of the images' losses weighs sparse images up and cost 1.5–2.5 mAP50-95
    points on the tree crowns (benchmarks/RESULTS.md), so the weights stay the targets'.
    """

    def __init__(self, head: torch.nn.Module, gains: DetectLossConfig) -> None:
        self.head, self.gains, self._criterion, self._device = head, gains, None, None

    def __call__(self, raw: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        raw = raw[1] if isinstance(raw, tuple) else raw
        device = raw["scores"].device
        if self._criterion is None or device != self._device:  # it keeps tensors on its device
            self._criterion = v8DetectionLoss(_LossView(self.head, self.gains, device))
            self._device = device
        raw = {"boxes": raw["boxes"].float(), "scores": raw["scores"].float(), "feats": raw["feats"]}
        mass: dict[str, torch.Tensor] = {}  # filled during this call by the class term (it sees the targets)
        bce = self._criterion.bce
        self._criterion.bce = partial(_per_image_bce, bce, mass)
        try:
            parts, _ = self._criterion.loss(raw, batch)
        finally:
            self._criterion.bce = bce
        parts = parts / raw["scores"].shape[0] * mass["scale"]  # ultralytics multiplies by the batch size
        return parts.sum(), dict(zip(("box", "cls", "dfl"), parts)), mass["weight"]  # the parts keep their gradients


def _per_image_bce(bce, mass: dict, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ultralytics' class term, unchanged; it records from the assigned ``target`` scores
    (B, anchors, classes) the batch's ``weight`` (each image's target scores, at least 1,
    summed) and the ``scale`` that turns ultralytics' normaliser (all target scores, at
    least 1) into that weight."""
    with torch.no_grad():
        own = target.float().sum((1, 2)).clamp(min=1)
        mass["weight"] = own.sum()
        mass["scale"] = target.float().sum().clamp(min=1) / mass["weight"]
    return bce(pred, target)

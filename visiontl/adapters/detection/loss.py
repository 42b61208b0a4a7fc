"""The YOLOv8 detection loss (CIoU + DFL box terms, BCE class term, task-aligned
assignment), ultralytics' own ``v8DetectionLoss``, fed by any model whose last module is a
``Detect`` head with its strides set (visiontl's detector or a native ultralytics one)."""
from __future__ import annotations

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
    """``loss(raw_outputs, batch) -> (total, {"box": …, "cls": …, "dfl": …})``.

    Shape: raw outputs as the head returns them in training mode; ``batch`` with
    ``batch_idx`` (N,), ``cls`` (N,) and ``bboxes`` (N, 4) normalised cx cy w h.

    The total is the mean of the images' own losses, whatever the batch size: ultralytics
    divides each term by the target scores of the whole batch (and multiplies by the batch
    size for its SGD recipe), so the same image weighs differently in other company. Each
    image's terms are weighted here by ``total / (batch × its own)`` target scores
    (:func:`image_weights`), one batched call, the assignment unchanged.
    """

    def __init__(self, head: torch.nn.Module, gains: DetectLossConfig) -> None:
        self.head, self.gains, self._criterion, self._device = head, gains, None, None

    def __call__(self, raw: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raw = raw[1] if isinstance(raw, tuple) else raw
        device = raw["scores"].device
        if self._criterion is None or device != self._device:  # it keeps tensors on its device
            self._criterion = per_image(v8DetectionLoss(_LossView(self.head, self.gains, device)))
            self._device = device
        raw = {"boxes": raw["boxes"].float(), "scores": raw["scores"].float(), "feats": raw["feats"]}
        parts, _ = self._criterion.loss(raw, batch)
        n = raw["scores"].shape[0]
        parts = parts / n
        return parts.sum(), dict(zip(("box", "cls", "dfl"), parts))  # the parts keep their gradients


def image_weights(target_scores: torch.Tensor) -> torch.Tensor:
    """(B, anchors, classes) assigned target scores → (B, 1, 1) weights that turn ultralytics'
    batch normalisation (a sum over the batch divided by the batch's target scores, each
    clamped at 1) into the mean of per-image normalisations."""
    own = target_scores.sum((1, 2)).clamp(min=1)
    total = target_scores.sum().clamp(min=1)
    return (total / (len(own) * own)).detach().view(-1, 1, 1)


def per_image(criterion: v8DetectionLoss) -> v8DetectionLoss:
    """``criterion`` with its class term (``bce``) and box terms (``bbox_loss``, which weighs
    each foreground anchor by its target score) weighted per image (:func:`image_weights`)."""
    bce, bbox_loss = criterion.bce, criterion.bbox_loss

    def weighted_bce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return bce(pred, target) * image_weights(target)

    def weighted_bbox_loss(pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, *rest):
        return bbox_loss(pred_dist, pred_bboxes, anchor_points, target_bboxes,
                         target_scores * image_weights(target_scores), *rest)

    criterion.bce, criterion.bbox_loss = weighted_bce, weighted_bbox_loss
    return criterion

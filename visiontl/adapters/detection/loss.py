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
    ``batch_idx`` (N,), ``cls`` (N,) and ``bboxes`` (N, 4) normalised cx cy w h. The total
    is per image (ultralytics multiplies by the batch size for its SGD recipe).
    """

    def __init__(self, head: torch.nn.Module, gains: DetectLossConfig) -> None:
        self.head, self.gains, self._criterion, self._device = head, gains, None, None

    def __call__(self, raw: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raw = raw[1] if isinstance(raw, tuple) else raw
        device = raw["scores"].device
        if self._criterion is None or device != self._device:  # it keeps tensors on its device
            self._criterion = v8DetectionLoss(_LossView(self.head, self.gains, device))
            self._device = device
        raw = {"boxes": raw["boxes"].float(), "scores": raw["scores"].float(), "feats": raw["feats"]}
        parts, _ = self._criterion.loss(raw, batch)
        n = raw["scores"].shape[0]
        parts = parts / n
        return parts.sum(), dict(zip(("box", "cls", "dfl"), parts))  # the parts keep their gradients

"""Segmentation losses: cross-entropy, Dice and focal, alone or summed with weights, all
with per-class weights and void pixels (``ignore_index``) left out.

The math is pure functions. smp's DiceLoss and FocalLoss take no class weights (and its
focal loss is the one-vs-rest sigmoid form), so these are written out here; the tests
check ``dice_loss`` equals smp's ``DiceLoss`` and ``focal_loss`` at gamma 0 equals the
weighted cross-entropy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import SegmentLossConfig


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = 255,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """``F.cross_entropy`` averaged over the weight of the valid pixels, and 0 (not NaN) for
    a crop that is all void.

    Shape: logits (N, C, H, W), target (N, H, W) int64 → scalar.
    """
    total = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore_index, reduction="sum")
    valid = target != ignore_index
    denom = weight[torch.where(valid, target, 0)][valid].sum() if weight is not None else valid.sum()
    return total / denom.clamp_min(1e-12)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = 255,
              weight: torch.Tensor | None = None, eps: float = 1e-7) -> torch.Tensor:
    """Soft Dice loss over the batch, 1 − 2|P∩T| / (|P| + |T|) per class, averaged (with
    ``weight``) over the classes; a class absent from ``target`` adds 0 (as smp).

    Shape: logits (N, C, H, W), target (N, H, W) int64 → scalar.
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(torch.where(valid[:, 0], target, 0), num_classes).permute(0, 3, 1, 2) * valid
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    cardinality = (probs + onehot).sum(dims)
    loss = (1 - 2 * intersection / cardinality.clamp_min(eps)) * (onehot.sum(dims) > 0)
    if weight is None:
        return loss.mean()
    return (loss * weight).sum() / weight.sum()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0, ignore_index: int = 255,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax focal loss (Lin et al. 2017): cross-entropy scaled by (1 − p_true)^gamma, so
    easy pixels count less; averaged like ``F.cross_entropy`` (over weight of valid pixels).

    Shape: logits (N, C, H, W), target (N, H, W) int64 → scalar.
    """
    valid = target != ignore_index
    safe = torch.where(valid, target, 0)
    log_p = logits.float().log_softmax(1).gather(1, safe.unsqueeze(1)).squeeze(1)
    w = weight[safe] * valid if weight is not None else valid.float()
    loss = -((1 - log_p.exp()) ** gamma) * log_p * w
    return loss.sum() / w.sum().clamp_min(1e-12)


class SegmentationLoss(nn.Module):
    """``ce``·CE + ``dice``·Dice + ``focal``·Focal; returns (total, {part: value})."""

    def __init__(self, cfg: SegmentLossConfig, ignore_index: int = 255, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        if cfg.ce < 0 or cfg.dice < 0 or cfg.focal < 0 or cfg.ce + cfg.dice + cfg.focal == 0:
            raise ValueError("loss: ce, dice and focal are non-negative weights and at least one is > 0")
        self.cfg, self.ignore_index = cfg, ignore_index
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c, w, parts = self.cfg, self.weight, {}
        if c.ce:
            parts["ce"] = cross_entropy(logits, target, ignore_index=self.ignore_index, weight=w)
        if c.dice:
            parts["dice"] = dice_loss(logits, target, ignore_index=self.ignore_index, weight=w)
        if c.focal:
            parts["focal"] = focal_loss(logits, target, gamma=c.focal_gamma, ignore_index=self.ignore_index, weight=w)
        total = sum(getattr(c, k) * v for k, v in parts.items())
        return total, {k: v.detach() for k, v in parts.items()}

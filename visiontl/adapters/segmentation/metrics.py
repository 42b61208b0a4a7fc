"""Segmentation metrics from one pixel confusion matrix over the whole dataset: IoU and
Dice (F1) per class and their means, pixel accuracy. Void pixels (``ignore_index``) are
not counted. (Dataset-level, "micro over images": every pixel counts once, as in the
Cityscapes and ADE20K benchmarks; the tests check against scikit-learn and smp.)"""
from __future__ import annotations

import numpy as np
import torch


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(C, C) pixel counts, rows = true class, columns = predicted.

    Shape: pred, target (N, H, W) int64 → (C, C) int64.
    """
    valid = target != ignore_index
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes ** 2).view(num_classes, num_classes)


def summarize(cm: np.ndarray, classes: list[str]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(headline metrics, per-class table) from a confusion matrix. A class that appears
    neither in the truth nor in the predictions has no IoU (NaN) and is left out of the means."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        dice = 2 * tp / (2 * tp + fp + fn)
        recall = tp / (tp + fn)
    headline = {"mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
                "mDice": float(np.nanmean(dice)) if np.isfinite(dice).any() else 0.0,
                "pixel_accuracy": float(tp.sum() / max(cm.sum(), 1))}
    per_class = {name: {"IoU": float(iou[k]), "Dice": float(dice[k]), "recall": float(recall[k]),
                        "pixels": int(cm[k].sum())} for k, name in enumerate(classes)}
    return headline, per_class

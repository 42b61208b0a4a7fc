"""Classification metrics as pure functions of predictions and targets."""
from __future__ import annotations

import torch


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``cm[t, p]`` counts samples of true class ``t`` predicted as ``p``. Shape: (C, C)."""
    idx = targets.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def summarize(cm: torch.Tensor) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 from a confusion matrix. Classes absent
    from both predictions and targets do not count towards the macro average."""
    cm = cm.double()
    tp = cm.diag()
    predicted, actual = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(tp))
    present = (predicted + actual) > 0
    n = present.sum().clamp(min=1)
    return {
        "accuracy": (tp.sum() / cm.sum().clamp(min=1)).item(),
        "precision": (precision[present].sum() / n).item(),
        "recall": (recall[present].sum() / n).item(),
        "f1": (f1[present].sum() / n).item(),
    }

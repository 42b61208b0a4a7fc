"""Detection metrics as COCO defines them: predictions matched to ground truth at IoU
0.50:0.95 (ten thresholds, greedy by score), AP per class as the mean of the precision
envelope at 101 recall points; precision and recall at the score that maximises F1.
The test suite checks the numbers against pycocotools."""
from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)


def match(pred_boxes: torch.Tensor, pred_scores: torch.Tensor, pred_classes: torch.Tensor,
          true_boxes: torch.Tensor, true_classes: torch.Tensor) -> torch.Tensor:
    """(N, 10) bool: is prediction i a true positive at threshold t. Predictions in
    descending score each claim the best still-free same-class target above t.

    Shape: pred boxes (N, 4) xyxy, scores (N,), classes (N,); targets (M, 4), (M,).
    """
    correct = torch.zeros(len(pred_boxes), len(IOU_THRESHOLDS), dtype=torch.bool)
    if len(pred_boxes) == 0 or len(true_boxes) == 0:
        return correct
    iou = box_iou(true_boxes.float(), pred_boxes.float()) * (true_classes[:, None] == pred_classes[None, :])
    iou = iou.cpu().numpy()
    thresholds = IOU_THRESHOLDS.numpy()
    claimed = np.zeros((iou.shape[0], len(thresholds)), dtype=bool)
    for j in torch.argsort(pred_scores, descending=True).tolist():
        free = np.where(claimed, 0.0, iou[:, j, None])  # (M, T)
        k = free.argmax(0)
        hit = free[k, range(len(thresholds))] >= thresholds
        correct[j] = torch.from_numpy(hit)
        claimed[k, range(len(thresholds))] |= hit
    return correct


RECALL_POINTS = np.linspace(0, 1, 101)


def average_precision(tp: np.ndarray, scores: np.ndarray, n_true: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """COCO AP of one class. ``tp`` (N, T) per prediction and threshold, ``scores`` (N,).
    Returns (AP per threshold (T,), the envelope at 101 recall points at the first
    threshold, precision and recall at the best-F1 score at the first threshold)."""
    order = np.argsort(-scores, kind="mergesort")  # COCO's stable sort
    tp = tp[order].astype(np.float64)
    tps, fps = np.cumsum(tp, 0), np.cumsum(1.0 - tp, 0)
    recall = tps / max(n_true, 1)
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    ap, envelope0 = np.zeros(tp.shape[1]), np.zeros(len(RECALL_POINTS))
    for t in range(tp.shape[1]):
        env = np.maximum.accumulate(precision[::-1, t])[::-1]  # best precision at this recall or more
        idx = np.searchsorted(recall[:, t], RECALL_POINTS, side="left")
        sampled = np.where(idx < len(env), env[np.minimum(idx, len(env) - 1)], 0.0)
        ap[t] = sampled.mean()
        if t == 0:
            envelope0 = sampled
    f1 = 2 * precision[:, 0] * recall[:, 0] / np.maximum(precision[:, 0] + recall[:, 0], 1e-16)
    best = int(np.argmax(f1))
    return ap, envelope0, float(precision[best, 0]), float(recall[best, 0])


def summarize(stats: dict[str, list], names: list[str]) -> tuple[dict[str, float], dict]:
    """Overall (mean over the classes that have ground truth) and per-class metrics from
    accumulated ``tp`` (N, 10), ``conf``, ``pred_cls`` and ``target_cls``; returns
    (metrics, details for the plots)."""
    def cat(key, shape):
        return np.concatenate(stats[key]) if stats[key] else np.zeros(shape)

    tp, conf = cat("tp", (0, len(IOU_THRESHOLDS))).astype(bool), cat("conf", 0)
    pred_cls, target_cls = cat("pred_cls", 0).astype(int), cat("target_cls", 0).astype(int)
    per_class = {n: {"precision": 0.0, "recall": 0.0, "mAP50": 0.0, "mAP50-95": 0.0, "instances": 0} for n in names}
    curves, present = [], []
    for c, name in enumerate(names):
        n_true = int((target_cls == c).sum())
        per_class[name]["instances"] = n_true
        if n_true == 0:
            continue  # as COCO: a class without ground truth has no AP
        mine = pred_cls == c
        if mine.any():
            ap, envelope, p, r = average_precision(tp[mine], conf[mine], n_true)
        else:
            ap, envelope, p, r = np.zeros(len(IOU_THRESHOLDS)), np.zeros(len(RECALL_POINTS)), 0.0, 0.0
        per_class[name].update(precision=p, recall=r, mAP50=float(ap[0]), **{"mAP50-95": float(ap.mean())})
        curves.append(envelope)
        present.append(name)
    details = {"per_class": per_class, "recall_x": RECALL_POINTS if present else None,
               "precision_curves": np.array(curves) if present else None, "classes": present}
    if not present:
        return {"precision": 0.0, "recall": 0.0, "mAP50": 0.0, "mAP50-95": 0.0}, details
    mean = {k: float(np.mean([per_class[n][k] for n in present])) for k in ("precision", "recall", "mAP50", "mAP50-95")}
    return mean, details

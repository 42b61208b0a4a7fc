"""Detection metrics as COCO defines them: predictions matched to ground truth at IoU
0.50:0.95 (ten thresholds, greedy by score), detections on crowd regions ignored, AP per
class as the mean of the precision envelope at 101 recall points; precision and recall at
the score that maximises F1. The test suite checks the numbers against pycocotools."""
from __future__ import annotations

import numpy as np
import torch

from ...data.detection import crowd_label

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # float64, as pycocotools


def match(pred_boxes: torch.Tensor, pred_scores: torch.Tensor, pred_classes: torch.Tensor,
          true_boxes: torch.Tensor, true_classes: torch.Tensor) -> np.ndarray:
    """(N, 10) int8 per prediction and IoU threshold: 1 true positive, 0 false positive, -1
    ignored (on a crowd region), by pycocotools' rules. Predictions in descending score
    (stable) each claim the free same-class target of highest IoU ≥ the threshold (ties: the
    later target); one that claims none but covers a crowd region of its class
    (intersection / its own area ≥ the threshold) is ignored. Crowd regions are targets
    with label ``crowd_label(c)``; any number of predictions may fall on one.

    Shape: pred boxes (N, 4) xyxy, scores (N,), classes (N,); targets (M, 4), (M,).
    """
    thresholds = IOU_THRESHOLDS
    out = np.zeros((len(pred_boxes), len(thresholds)), np.int8)
    if len(pred_boxes) == 0 or len(true_boxes) == 0:
        return out
    labels = true_classes.cpu().numpy().astype(np.int64)
    crowd = labels < 0
    classes = np.where(crowd, crowd_label(labels), labels)  # its own inverse
    tb, pb = true_boxes.cpu().numpy().astype(np.float64), pred_boxes.cpu().numpy().astype(np.float64)
    wh = (np.minimum(tb[:, None, 2:], pb[None, :, 2:]) - np.maximum(tb[:, None, :2], pb[None, :, :2])).clip(min=0)
    inter = wh[..., 0] * wh[..., 1]  # (M, N)
    area_t = (tb[:, 2] - tb[:, 0]) * (tb[:, 3] - tb[:, 1])
    area_p = (pb[:, 2] - pb[:, 0]) * (pb[:, 3] - pb[:, 1])
    union = np.where(crowd[:, None], area_p[None, :], area_t[:, None] + area_p[None, :] - inter)
    iou = inter / np.maximum(union, 1e-12)  # a crowd region: the share of the prediction inside it
    iou[classes[:, None] != pred_classes.cpu().numpy().astype(np.int64)[None, :]] = -1.0  # another class never matches
    regular = np.where(crowd[:, None], -1.0, iou)
    if crowd.any():  # where no target is claimed below, a prediction on a crowd region is ignored
        out[iou[crowd].max(0)[:, None] >= thresholds] = -1
    # every (prediction, target) pair that can match at all, each prediction's targets by IoU
    # (the later target first on a tie), predictions by score: then a short loop in Python
    rank = np.empty(len(pred_boxes), np.int64)
    rank[np.argsort(-pred_scores.cpu().numpy(), kind="mergesort")] = np.arange(len(pred_boxes))
    t_idx, p_idx = np.nonzero(regular >= thresholds[0])
    values = regular[t_idx, p_idx]
    pairs = np.lexsort((-t_idx, -values, rank[p_idx]))
    claimed = [set() for _ in thresholds]
    p_sorted = p_idx[pairs]
    starts = [0, *(np.flatnonzero(np.diff(p_sorted)) + 1).tolist(), len(pairs)]
    p_list, t_list, v_list = p_sorted.tolist(), t_idx[pairs].tolist(), values[pairs].tolist()
    hits = []
    for start, end in zip(starts, starts[1:]):  # one prediction's candidate targets at a time
        candidates = list(zip(t_list[start:end], v_list[start:end]))
        for ti, t in enumerate(thresholds.tolist()):
            for target, value in candidates:
                if value < t:
                    break
                if target not in claimed[ti]:
                    claimed[ti].add(target)
                    hits.append((p_list[start], ti))
                    break
    if hits:
        rows, cols = zip(*hits)
        out[list(rows), list(cols)] = 1
    return out


RECALL_POINTS = np.linspace(0, 1, 101)


def average_precision(outcome: np.ndarray, scores: np.ndarray, n_true: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """COCO AP of one class. ``outcome`` (N, T) per prediction and threshold (1 TP, 0 FP, -1
    ignored, see :func:`match`), ``scores`` (N,). Returns (AP per threshold (T,), the
    envelope at 101 recall points at the first threshold, precision and recall at the
    best-F1 score at the first threshold)."""
    order = np.argsort(-scores, kind="mergesort")  # COCO's stable sort
    outcome = outcome[order]
    tps, fps = np.cumsum(outcome == 1, 0, dtype=np.float64), np.cumsum(outcome == 0, 0, dtype=np.float64)
    recall = tps / max(n_true, 1)
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    ap, envelope0 = np.zeros(outcome.shape[1]), np.zeros(len(RECALL_POINTS))
    for t in range(outcome.shape[1]):
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

    tp, conf = cat("tp", (0, len(IOU_THRESHOLDS))).astype(np.int8), cat("conf", 0)
    pred_cls, target_cls = cat("pred_cls", 0).astype(int), cat("target_cls", 0).astype(int)  # crowd: < 0, not counted
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

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
    if len(pred_boxes) == 0 or len(true_boxes) == 0:
        return np.zeros((len(pred_boxes), len(thresholds)), np.int8)
    labels = true_classes.cpu().numpy().astype(np.int64)
    crowd = labels < 0
    classes = np.where(crowd, crowd_label(labels), labels)  # its own inverse
    tb, pb = true_boxes.cpu().numpy().astype(np.float64), pred_boxes.cpu().numpy().astype(np.float64)
    # pairs that overlap along x (M, N), then the rest only for those: most pairs are far apart
    tx1, ty1, tx2, ty2 = tb.T
    px1, py1, px2, py2 = pb.T
    width = np.minimum(tx2[:, None], px2)
    width -= np.maximum(tx1[:, None], px1)
    candidate = width > 0
    candidate &= classes[:, None] == pred_classes.cpu().numpy().astype(np.int64)[None, :]
    t_idx, p_idx = np.divmod(np.flatnonzero(candidate), len(pb))  # faster than a 2-D nonzero
    height = np.minimum(ty2[t_idx], py2[p_idx]) - np.maximum(ty1[t_idx], py1[p_idx])
    overlap = height > 0
    t_idx, p_idx = t_idx[overlap], p_idx[overlap]
    inter = width[t_idx, p_idx] * height[overlap]
    area_t, area_p = (tx2 - tx1)[t_idx] * (ty2 - ty1)[t_idx], (px2 - px1)[p_idx] * (py2 - py1)[p_idx]
    on_crowd = crowd[t_idx]  # for a crowd region: the share of the prediction inside it
    value = inter / np.where(on_crowd, area_p, area_t + area_p - inter)
    reach = (1 << np.searchsorted(thresholds, value, side="right")) - 1  # bit i: IoU ≥ threshold i
    ignored = np.zeros(len(pred_boxes), np.int64)  # where it claims no target, one on a crowd region is ignored
    np.bitwise_or.at(ignored, p_idx[on_crowd], reach[on_crowd])
    # each prediction's targets by IoU (the later target first on a tie), predictions by score,
    # then one short loop in Python with the ten thresholds as the bits of an int
    rank = np.empty(len(pred_boxes), np.int64)
    rank[np.argsort(-pred_scores.cpu().numpy(), kind="mergesort")] = np.arange(len(pred_boxes))
    regular = ~on_crowd & (reach > 0)
    t_idx, p_idx, value, reach = t_idx[regular], p_idx[regular], value[regular], reach[regular]
    pairs = np.lexsort((-t_idx, -value, rank[p_idx]))
    claimed = [0] * len(true_boxes)  # per target: the thresholds at which it is taken
    hits = [0] * len(pred_boxes)
    last, wanted = -1, 0
    for p, t, bits in zip(p_idx[pairs].tolist(), t_idx[pairs].tolist(), reach[pairs].tolist()):
        if p != last:  # a new prediction: it wants a target at every threshold its best IoU reaches
            last, wanted = p, bits
        free = wanted & bits & ~claimed[t]
        if free:
            claimed[t] |= free
            hits[p] |= free
            wanted &= ~free
    # back from bits to (N, 10): 1 where claimed, else -1 where on a crowd region, else 0
    hits = np.array(hits, "<u2")
    return (_unpack(hits).astype(np.int8) - _unpack(ignored.astype("<u2") & ~hits)).astype(np.int8)


def _unpack(bits: np.ndarray) -> np.ndarray:
    """(N,) little-endian uint16 of threshold bits → (N, 10) uint8 of 0/1."""
    return np.unpackbits(bits.view(np.uint8).reshape(-1, 2), axis=1, bitorder="little")[:, :len(IOU_THRESHOLDS)]


RECALL_POINTS = np.linspace(0, 1, 101)


def average_precision(outcome: np.ndarray, scores: np.ndarray, n_true: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """COCO AP of one class. ``outcome`` (N, T) per prediction and threshold (1 TP, 0 FP, -1
    ignored, see :func:`match`), ``scores`` (N,). Returns (AP per threshold (T,), the
    envelope at 101 recall points at the first threshold, precision and recall at the
    best-F1 score at the first threshold)."""
    order = np.argsort(-scores, kind="mergesort")  # COCO's stable sort
    outcome = np.ascontiguousarray(outcome[order].T)  # (T, N): each threshold's run is contiguous
    tps, fps = np.cumsum(outcome == 1, 1), np.cumsum(outcome == 0, 1)
    recall = tps / max(n_true, 1)
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    ap, envelope0 = np.zeros(len(outcome)), np.zeros(len(RECALL_POINTS))
    for t in range(len(outcome)):
        env = np.maximum.accumulate(precision[t, ::-1])[::-1]  # best precision at this recall or more
        idx = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        sampled = np.where(idx < len(env), env[np.minimum(idx, len(env) - 1)], 0.0)
        ap[t] = sampled.mean()
        if t == 0:
            envelope0 = sampled
    f1 = 2 * precision[0] * recall[0] / np.maximum(precision[0] + recall[0], 1e-16)
    best = int(np.argmax(f1))
    return ap, envelope0, float(precision[0, best]), float(recall[0, best])


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

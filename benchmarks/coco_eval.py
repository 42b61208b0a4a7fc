"""Detection evaluation speed, side by side with pycocotools on the same boxes, and equal to it.

    python -m benchmarks coco_eval                       # 500 images per scene, 300 detections each
    python -m benchmarks coco_eval --baseline old.py     # also time another metrics.py (e.g. from git)

Three synthetic scenes of 300 detections per image (the usual ``max_det``): ``dense`` (60
objects of one class, several overlapping detections per object, as a detector at
conf 0.001 gives), ``sparse`` (5 objects of 3 classes, most detections on background) and
``crowd`` (the dense scene plus two COCO crowd regions per image). Each contender evaluates
a whole validation set: visiontl matches every image (``match``) and summarises once
(``summarize``), as ``val`` does; pycocotools runs ``loadRes`` + ``evaluate`` + ``accumulate``.
The mAPs must agree to 1e-6, or the entry fails.
"""
from __future__ import annotations

import argparse
import importlib.util
from functools import partial

import numpy as np
import torch

from visiontl.adapters.detection import metrics
from visiontl.data.detection import crowd_label

from . import harness


def scene(rng: np.random.Generator, kind: str, n_det: int) -> dict:
    """One image: ground truth, crowd regions and ``n_det`` scored detections."""
    n_gt, n_cls = (5, 3) if kind == "sparse" else (60, 1)
    xy, wh = rng.uniform(0, 600, (n_gt, 2)), rng.uniform(10, 60, (n_gt, 2))
    gt, gl = np.concatenate([xy, xy + wh], 1), rng.integers(0, n_cls, n_gt)
    near = n_det // 3 if kind == "sparse" else n_det
    src = rng.integers(0, n_gt, near)
    det = gt[src] + rng.normal(0, 6, (near, 4))
    rxy = rng.uniform(0, 600, (n_det - near, 2))
    det = np.concatenate([det, np.concatenate([rxy, rxy + rng.uniform(10, 60, (n_det - near, 2))], 1)])
    det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
    dl = np.concatenate([np.where(rng.uniform(size=near) < 0.9, gl[src], rng.integers(0, n_cls, near)),
                         rng.integers(0, n_cls, n_det - near)])
    cxy = rng.uniform(0, 500, (2, 2)) if kind == "crowd" else np.zeros((0, 2))
    crowd = np.concatenate([cxy, cxy + rng.uniform(50, 120, cxy.shape)], 1)
    return {"gt": gt, "gl": gl, "crowd": crowd, "cl": np.zeros(len(crowd), np.int64),
            "det": det, "dl": dl, "score": rng.uniform(0.001, 1, n_det), "classes": n_cls}


def visiontl_eval(images: list[dict], module=metrics) -> dict:
    stats = {"tp": [], "conf": [], "pred_cls": [], "target_cls": []}
    for im in images:
        labels = np.concatenate([im["gl"], crowd_label(im["cl"])])
        boxes = np.concatenate([im["gt"], im["crowd"]])
        stats["tp"].append(np.asarray(module.match(torch.from_numpy(im["det"]), torch.from_numpy(im["score"]),
                                                   torch.from_numpy(im["dl"]), torch.from_numpy(boxes),
                                                   torch.from_numpy(labels))))
        stats["conf"].append(im["score"])
        stats["pred_cls"].append(im["dl"])
        stats["target_cls"].append(labels)
    result, _ = module.summarize(stats, [str(c) for c in range(images[0]["classes"])])
    return result


def coco_dicts(images: list[dict]) -> tuple[dict, list[dict]]:
    """The same images as a COCO ground-truth dataset and a detection list (xywh)."""
    anns, dets = [], []
    for i, im in enumerate(images):
        for boxes, labels, crowd in ((im["gt"], im["gl"], 0), (im["crowd"], im["cl"], 1)):
            for b, c in zip(boxes.tolist(), labels.tolist()):
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "iscrowd": crowd,
                             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, c, s in zip(im["det"].tolist(), im["dl"].tolist(), im["score"].tolist()):
            dets.append({"image_id": i, "category_id": c, "score": s, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    dataset = {"images": [{"id": i, "width": 700, "height": 700} for i in range(len(images))], "annotations": anns,
               "categories": [{"id": c, "name": str(c)} for c in range(images[0]["classes"])]}
    return dataset, dets


def pycocotools_eval(dataset: dict, dets: list[dict], max_det: int) -> dict:
    """mAP50-95 and mAP50 over all areas with up to ``max_det`` detections per image."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e10]], ["all"], [max_det]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, 0]  # (threshold, recall, class); -1: class without objects
    return {"mAP50-95": float(np.mean(precision[precision > -1])), "mAP50": float(np.mean(precision[0][precision[0] > -1]))}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks coco_eval")
    p.add_argument("--images", type=int, default=500, help="images per scene")
    p.add_argument("--detections", type=int, default=300, help="detections per image")
    p.add_argument("--scenes", nargs="+", default=["dense", "sparse", "crowd"], choices=["dense", "sparse", "crowd"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline", help="another metrics.py to time alongside (match + summarize)")
    args = p.parse_args()
    baseline = None
    if args.baseline:
        spec = importlib.util.spec_from_file_location("baseline_metrics", args.baseline)
        baseline = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(baseline)
    rows = []
    for kind in args.scenes:
        rng = np.random.default_rng(0)
        images = [scene(rng, kind, args.detections) for _ in range(args.images)]
        dataset, dets = coco_dicts(images)
        ours, theirs = visiontl_eval(images), pycocotools_eval(dataset, dets, args.detections)
        for key in ("mAP50-95", "mAP50"):
            if abs(ours[key] - theirs[key]) > 1e-6:
                raise SystemExit(f"{kind}: visiontl {key} {ours[key]:.9f} != pycocotools {theirs[key]:.9f}")
        contenders = {"visiontl": lambda: visiontl_eval(images),
                      "pycocotools": lambda: pycocotools_eval(dataset, dets, args.detections)}
        if baseline is not None:
            contenders["baseline"] = lambda: visiontl_eval(images, baseline)
        rates = harness.interleaved({name: partial(harness.timed, partial(_counted, fn, len(images)))
                                     for name, fn in contenders.items()}, args.repeats)
        ms = {name: 1e3 / harness.median(r) for name, r in rates.items()}
        rows.append({"scene": kind, "images": args.images, "detections": args.detections, "mAP50-95": ours["mAP50-95"],
                     "mAP50": ours["mAP50"], "ms_per_image": ms, "rates": rates,
                     "speedup_vs_pycocotools": ms["pycocotools"] / ms["visiontl"],
                     **({"speedup_vs_baseline": ms["baseline"] / ms["visiontl"]} if baseline is not None else {})})
    path = harness.save("coco-eval-cpu", {"machine": harness.machine(), "args": vars(args), "rows": rows})
    names = list(rows[0]["ms_per_image"])
    print(f"\nms per image (median of {args.repeats}), {args.detections} detections per image")
    print(f"{'scene':8}" + "".join(f"{n:>13}" for n in names) + f"{'vs pycoco':>11}" + (f"{'vs base':>9}" if baseline else ""))
    for r in rows:
        print(f"{r['scene']:8}" + "".join(f"{r['ms_per_image'][n]:>13.3f}" for n in names)
              + f"{r['speedup_vs_pycocotools']:>10.1f}x" + (f"{r['speedup_vs_baseline']:>8.1f}x" if baseline else ""))
    print(f"mAPs equal to pycocotools to 1e-6 in every scene; wrote {path}")



def _counted(fn, n: int) -> int:
    fn()
    return n

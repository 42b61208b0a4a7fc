"""Detection: the model on every registry backbone, the loss, training through the engine,
metrics against pycocotools, predict, export, native ultralytics models, strategies."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import DETECT_CLASSES, tiny_detect_config
from PIL import Image

from visiontl.adapters import Detector
from visiontl.backbones import BACKBONES, create_backbone, input_sizes

pytest.importorskip("ultralytics")


def _batch(det: Detector, data, n: int = 2) -> dict:
    return det.collate([data[i] for i in range(n)])


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_builds_trains_one_step_and_infers(name, detection_set):
    from visiontl.adapters.detection.model import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(create_backbone(name, weights="none"), num_classes=2)
    size = 64 if input_sizes(name)[1] <= 64 else 96  # inception_v3 takes 75 px and up
    det = Detector(config=tiny_detect_config(detection_set, "unused", data__image_size=size))
    det.classes, det.model = DETECT_CLASSES, model
    from visiontl.adapters.detection.loss import DetectionLoss

    det.criterion = DetectionLoss(model.head, det.config.loss)
    train, _ = det.datasets()
    batch = _batch(det, train)
    model.train()
    out = det.training_step(model, batch)
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    out["loss"].backward()
    head_grad = model.head.cv3[0][-1].weight.grad
    assert head_grad is not None and head_grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        decoded, _ = model(batch["img"])
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))  # inception_v3's maps resampled onto the grid
    assert decoded.shape == (2, 4 + 2, anchors)
    assert ((decoded[:, 4:] >= 0) & (decoded[:, 4:] <= 1)).all()  # scores after the sigmoid


def test_head_sizes_itself_from_feature_info():
    from visiontl.adapters.detection.model import DetectionModel

    for name in ("mobilenet_v2", "resnet18", "vgg16"):
        backbone = create_backbone(name, weights="none")
        model = DetectionModel(backbone, num_classes=3)
        chans = [backbone.feature_info[i].channels for i in model.levels]
        assert [model.neck.lateral[i][0].in_channels for i in range(3)] == chans
        assert [backbone.feature_info[i].reduction for i in model.levels] == [8, 16, 32]


def test_fit_writes_run_dir_plots_and_predicts(detection_set, tmp_path):
    det = Detector(config=tiny_detect_config(detection_set, tmp_path / "runs", train__epochs=2))
    history = det.fit()
    assert len(history) == 2 and {"val/mAP50", "val/mAP50-95", "val/precision", "val/recall"} <= set(history[-1])
    run = det.run_dir
    for name in ("best.pt", "last.pt", "metrics.csv", "summary.txt", "per_class.csv"):
        assert (run / name).is_file(), name
    for name in ("curves.png", "pr_curve.png", "per_class_ap.png", "val_predictions.png"):
        arr = np.asarray(Image.open(run / name).convert("L"), dtype=np.float32)
        assert arr.shape[0] > 200 and arr.std() > 5, f"{name} looks empty"
    from visiontl.report import report

    assert f"data       {detection_set}" in report(run)  # the data.yaml, not an empty data.train
    assert "2 classes" in (run / "summary.txt").read_text()
    # reload and predict a folder: JSON/CSV and drawn images, boxes inside the original image
    loaded = Detector.load(run / "best.pt")
    out = tmp_path / "pred"
    results = loaded.predict(detection_set.parent / "images" / "val", conf=0.0, out_dir=out)
    assert len(results) == 4
    assert json.loads((out / "predictions.json").read_text())[0]["path"] == results[0]["path"]
    assert (out / "predictions.csv").read_text().startswith("path,label,score,x1,y1,x2,y2")
    assert len(list(out.glob("*_boxes.png"))) == 4
    for r in results:
        for o in r["objects"]:
            x1, y1, x2, y2 = o["box"]
            assert 0 <= x1 <= x2 <= r["width"] and 0 <= y1 <= y2 <= r["height"]
            assert o["label"] in DETECT_CLASSES


def _random_case(seed: int, n_images: int = 6, n_classes: int = 2):
    """Ground truth, and predictions near it (jittered, some missing, some false)."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n_images):
        k = int(rng.integers(1, 6))
        xy = rng.uniform(0, 80, (k, 2))
        wh = rng.uniform(8, 40, (k, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(0, n_classes, k)
        gts.append((boxes, labels))
        keep = rng.uniform(size=k) > 0.2
        jitter = rng.normal(0, 3, (k, 4))
        p_boxes = (boxes + jitter)[keep]
        p_labels = labels[keep]
        extra = int(rng.integers(0, 3))
        exy = rng.uniform(0, 80, (extra, 2))
        p_boxes = np.concatenate([p_boxes, np.concatenate([exy, exy + 20], 1)])
        p_labels = np.concatenate([p_labels, rng.integers(0, n_classes, extra)])
        scores = rng.uniform(0.05, 1.0, len(p_boxes))
        preds.append((p_boxes, p_labels, scores))
    return gts, preds


def _ours_and_pycocotools(gts, preds, crowds=None):
    """(visiontl's metrics, pycocotools' mAP50-95 and mAP50) on the same boxes; ``crowds``
    per image: (boxes, classes) of crowd regions."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from visiontl.adapters.detection.metrics import crowd_label, match, summarize

    stats = {"tp": [], "conf": [], "pred_cls": [], "target_cls": []}
    images, anns, dets = [], [], []
    for i, ((g, gl), (p, pl, s)) in enumerate(zip(gts, preds)):
        cb, cl = crowds[i] if crowds else (np.zeros((0, 4)), np.zeros(0, np.int64))
        boxes = np.concatenate([np.asarray(g, float).reshape(-1, 4), np.asarray(cb, float).reshape(-1, 4)])
        labels = np.concatenate([gl, [crowd_label(int(c)) for c in cl]]).astype(np.int64)
        stats["tp"].append(match(torch.tensor(p), torch.tensor(s), torch.tensor(pl), torch.tensor(boxes),
                                 torch.tensor(labels)))
        stats["conf"].append(s)
        stats["pred_cls"].append(pl)
        stats["target_cls"].append(labels)
        images.append({"id": i, "width": 128, "height": 128})
        for b, c, crowd in [*((b, c, 0) for b, c in zip(g, gl)), *((b, c, 1) for b, c in zip(cb, cl))]:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "iscrowd": crowd,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, c, sc in zip(p, pl, s):
            dets.append({"image_id": i, "category_id": int(c), "score": float(sc),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    metrics, _ = summarize(stats, ["a", "b"])
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]}
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(dets), "bbox")
    ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
    ev.params.maxDets = [max(100, *(len(p) for p, _, _ in preds))]  # all of them, as visiontl
    ev.evaluate()
    ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, 0]  # (iou, recall, class)
    return metrics, float(np.mean(precision[precision > -1])), float(np.mean(precision[0][precision[0] > -1]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_agrees_with_pycocotools(seed):
    pytest.importorskip("pycocotools")
    metrics, coco_map, coco_map50 = _ours_and_pycocotools(*_random_case(seed))
    assert metrics["mAP50-95"] == pytest.approx(coco_map, abs=1e-9)
    assert metrics["mAP50"] == pytest.approx(coco_map50, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_map_agrees_with_pycocotools_on_crowded_scenes(seed):
    """300 detections per image, several on each of 60 objects, exact duplicate boxes and
    equal scores (ties in IoU and in score order), and a crowd region."""
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(seed)
    gts, preds, crowds = [], [], []
    for _ in range(3):
        xy = rng.uniform(0, 500, (60, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 60, (60, 2))], 1)
        labels = rng.integers(0, 2, 60)
        src = rng.integers(0, 60, 300)
        p = boxes[src] + rng.normal(0, 5, (300, 4)).round()  # rounding: many equal IoUs
        p[:, 2:] = np.maximum(p[:, 2:], p[:, :2] + 1)
        p[::7] = p[1::7][: len(p[::7])]  # exact duplicates
        scores = rng.choice(np.linspace(0.01, 1, 40), 300)  # many equal scores
        pl = np.where(rng.uniform(size=300) < 0.9, labels[src], 1 - labels[src])
        gts.append((boxes, labels))
        preds.append((p, pl, scores))
        crowds.append((np.array([[100.0, 100, 220, 200]]), np.array([0])))
    metrics, coco_map, coco_map50 = _ours_and_pycocotools(gts, preds, crowds)
    assert metrics["mAP50-95"] == pytest.approx(coco_map, abs=1e-9)
    assert metrics["mAP50"] == pytest.approx(coco_map50, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_map_with_crowd_regions_agrees_with_pycocotools(seed):
    """Detections on a crowd region (intersection over their own area ≥ the threshold) are
    neither true nor false positives; several may fall on one region."""
    pytest.importorskip("pycocotools")
    gts, preds = _random_case(seed)
    rng, crowds = np.random.default_rng(100 + seed), []
    for i, (p, pl, s) in enumerate(preds):
        xy = rng.uniform(0, 60, (2, 2))
        cb = np.concatenate([xy, xy + rng.uniform(20, 60, (2, 2))], 1)
        cl = rng.integers(0, 2, 2)
        crowds.append((cb, cl))
        inside = cb[0, :2] + rng.uniform(0, 10, (3, 2))  # three detections inside the first region
        preds[i] = (np.concatenate([p, np.concatenate([inside, inside + 8], 1)]), np.concatenate([pl, [cl[0]] * 3]),
                    np.concatenate([s, rng.uniform(0.05, 1.0, 3)]))
    metrics, coco_map, coco_map50 = _ours_and_pycocotools(gts, preds, crowds)
    assert metrics["mAP50-95"] == pytest.approx(coco_map, abs=1e-9)
    assert metrics["mAP50"] == pytest.approx(coco_map50, abs=1e-9)
    # the two-box case: one object, one detection on it and one on a crowd region
    two = _ours_and_pycocotools([(np.array([[10, 10, 40, 40]]), np.array([0]))],
                                [(np.array([[10, 10, 40, 40], [60, 60, 70, 70]]), np.array([0, 0]), np.array([0.9, 0.95]))],
                                [(np.array([[50, 50, 100, 100]]), np.array([0]))])
    assert two[0]["mAP50-95"] == pytest.approx(two[1]) and two[1] == pytest.approx(1.0)


def test_matching_is_fast_at_300_detections():
    """A validation image with 300 detections and 30 objects: matched in well under 2 ms
    (the per-detection loop of the first version took 19 ms)."""
    import time

    from visiontl.adapters.detection.metrics import match

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 600, (30, 2))
    true = torch.tensor(np.concatenate([xy, xy + rng.uniform(10, 40, (30, 2))], 1))
    pxy = rng.uniform(0, 600, (300, 2))
    pred = torch.tensor(np.concatenate([pxy, pxy + rng.uniform(10, 40, (300, 2))], 1))
    pred[:30] = true + torch.tensor(rng.normal(0, 2, (30, 4)))
    scores, classes, true_cls = torch.tensor(rng.uniform(size=300)), torch.tensor(rng.integers(0, 3, 300)), None
    true_cls = torch.tensor(rng.integers(0, 3, 30))
    classes[:30] = true_cls
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        out = match(pred, scores, classes, true, true_cls)
        times.append(time.perf_counter() - t0)
    assert (out[:30, 0] == 1).sum() >= 25
    assert sorted(times)[15] < 0.002, sorted(times)[15]


def test_perfect_and_empty_predictions():
    from visiontl.adapters.detection.metrics import match, summarize

    g = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])
    gl = torch.tensor([0, 1])
    tp = match(g, torch.tensor([0.9, 0.8]), gl, g, gl)
    assert (tp == 1).all()
    m, _ = summarize({"tp": [tp], "conf": [np.array([0.9, 0.8])], "pred_cls": [gl.numpy()],
                      "target_cls": [gl.numpy()]}, ["a", "b"])
    assert m["mAP50-95"] == pytest.approx(1.0, abs=1e-6)
    wrong_class = match(g, torch.tensor([0.9, 0.8]), torch.tensor([1, 0]), g, gl)
    assert not wrong_class.any()
    m, _ = summarize({"tp": [np.zeros((0, 10), bool)], "conf": [np.zeros(0)], "pred_cls": [np.zeros(0)],
                      "target_cls": [gl.numpy()]}, ["a", "b"])
    assert m["mAP50"] == 0.0


def test_onnx_export_matches_pytorch(detection_set, tmp_path):
    pytest.importorskip("onnxruntime")
    det = Detector(config=tiny_detect_config(detection_set, tmp_path / "runs"))
    det.fit()
    loaded = Detector.load(det.run_dir / "best.pt")
    meta = loaded.export(tmp_path / "export", formats=["onnx"], int8=True)
    assert meta["onnx_max_abs_diff_vs_pytorch"] < 1e-3
    # int8: smaller, scored by the task's own validation code; the float ONNX model scores as PyTorch
    q = meta["int8_vs_float"]
    assert q["metric"] == "mAP50-95" and q["int8_mb"] < q["float_mb"] / 2 and 0 <= q["int8"]["mAP50"] <= 1
    want = loaded.evaluate(loaded.datasets()[1])
    assert q["float"]["mAP50"] == pytest.approx(want["mAP50"], abs=1e-3) and np.isnan(q["float"]["loss"])
    assert meta["classes"] == DETECT_CLASSES and "nms" in meta
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    out = sess.run(None, {sess.get_inputs()[0].name: np.random.rand(3, 3, 64, 64).astype(np.float32)})[0]
    assert out.shape == (3, 6, sum((64 // s) ** 2 for s in (8, 16, 32)))


def test_strategies_freeze_the_backbone_and_its_batchnorm(detection_set, tmp_path):
    cfg = tiny_detect_config(detection_set, tmp_path / "runs", finetune__strategy="two_phase",
                             finetune__head_epochs=1, finetune__last_n=1)
    det = Detector(config=cfg)
    train, _ = det.datasets()
    det.prepare(train)
    ft = det.resolve_finetune(len(train))[0]
    ft.apply(0)
    det.train_mode(det.model)
    assert not any(p.requires_grad for p in det.model.backbone.parameters())
    assert all(p.requires_grad for p in det.model.neck.parameters()) and det.model.head.training
    bns = [m for m in det.model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    ft.apply(1)
    det.train_mode(det.model)
    last = ft.groups[-1]
    assert all(p.requires_grad for p in last.parameters())
    assert not any(p.requires_grad for p in ft.groups[0].parameters())
    assert "backbone.0" in det.plan() and "head" in det.plan()


def test_native_ultralytics_yaml_and_checkpoint(detection_set, tmp_path):
    from ultralytics.nn.tasks import DetectionModel as UltralyticsModel

    from visiontl.adapters.detection.native import build_native, load_ultralytics_checkpoint

    source = UltralyticsModel("yolov8n.yaml", nc=80, verbose=False)
    torch.save({"model": source, "date": "x"}, tmp_path / "y8n.pt")
    architecture, state = load_ultralytics_checkpoint(tmp_path / "y8n.pt")
    assert architecture["nc"] == 80 and len(state) == len(source.state_dict())
    model = build_native(str(tmp_path / "y8n.pt"), num_classes=2)
    # everything outside the class branch (sized by the class count) comes from the checkpoint
    mine = model.net.state_dict()
    outside = [k for k in source.state_dict() if ".cv3." not in k]
    assert len(outside) > 250 and all(torch.equal(mine[k], source.state_dict()[k].float()) for k in outside)
    cfg = tiny_detect_config(detection_set, tmp_path / "runs")
    cfg.model.ultralytics = str(tmp_path / "y8n.pt")
    det = Detector(config=cfg)
    history = det.fit()
    assert "val/mAP50-95" in history[-1]
    loaded = Detector.load(det.run_dir / "best.pt")  # rebuilt from the stored architecture
    (tmp_path / "y8n.pt").unlink()
    assert len(loaded.predict(detection_set.parent / "images" / "val" / "000.png", conf=0.0)) == 1


class _RunsACommand:
    def __reduce__(self):
        import os

        return os.system, ("touch pwned",)


def test_native_checkpoint_with_foreign_code_is_refused(tmp_path, monkeypatch):
    from visiontl.adapters.detection.native import load_ultralytics_checkpoint

    monkeypatch.chdir(tmp_path)
    torch.save({"model": _RunsACommand()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="refusing to load.*system"):
        load_ultralytics_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_importing_detection_leaves_pil_and_torch_alone():
    """ultralytics patches PIL's Image.open and torch.save on import; the adapter undoes it."""
    import PIL.Image

    import visiontl.adapters.detection  # noqa: F401

    assert PIL.Image.open.__module__ == "PIL.Image"
    assert torch.save.__module__ == "torch.serialization"


def test_ddp_two_cpu_ranks_train_one_detector(tmp_path, detection_set):
    import os
    import subprocess
    import sys
    from pathlib import Path

    out, weights = tmp_path / "runs", tmp_path / "weights"
    weights.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(Path(__file__).parent / "ddp_worker.py"), str(detection_set), str(out), str(weights), "two_phase", "detect"],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(weights / "rank0.pt", weights_only=True)
    b = torch.load(weights / "rank1.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    (run,) = list(out.iterdir())
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 3
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert all(torch.equal(ckpt["train_model"][k], a[k]) for k in a)  # "model": the average after the switch

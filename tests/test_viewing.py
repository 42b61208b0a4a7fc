"""Seeing what a model does: results objects, drawing, test-time augmentation, explanations,
video, and the web page in a real headless browser."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import (DETECT_CLASSES, tiny_config, tiny_detect_config, tiny_segment_config,
                      write_video)
from visiontl import draw
from visiontl.adapters import Classifier, Detector, Segmenter
from visiontl.adapters.tta import DetectAugment, FlipAverage, flip_views, weighted_box_fusion
from visiontl.results import DetectResult, Results


# -- results objects -------------------------------------------------------------------------
def test_classification_results_are_objects_to_look_at(classifier, tmp_path):
    model, data = classifier
    files = sorted((data / "red").glob("*.png"))[:2] + sorted((data / "green").glob("*.png"))[:2]
    results = model.predict(files, topk=2)
    assert isinstance(results, Results) and len(results) == 4
    r = results[0]
    assert r.labels == r["labels"] and r.labels[0] == "red" and results[2].labels[0] == "green"
    drawn = r.plot()  # a 40 px image is enlarged so that its label can be read
    assert drawn.dtype == np.uint8 and min(drawn.shape[:2]) >= draw.MIN_SIDE
    # the headline label sits on its filled box at the top left, in the accent colour
    assert (np.abs(drawn[:12, :40].astype(int) - (31, 119, 180)).sum(axis=2) < 10).mean() > 0.3
    assert Image.open(r.save(tmp_path / "one.png")).size == (drawn.shape[1], drawn.shape[0])
    assert json.loads(r.to_json())["labels"] == r.labels
    table = results.to_pandas()
    assert list(table.columns[:3]) == ["path", "label1", "score1"] and len(table) == 4
    # numbers stay numbers (formatted only when printed), as detection's and segmentation's do
    assert str(table["score1"].dtype) == "float64" and table["score1"].iloc[0] == pytest.approx(r.scores[0])
    assert results.to_csv(tmp_path / "p.csv").read_text().startswith("path,label1,score1,label2,score2,error")
    saved = results.save(tmp_path / "drawn")
    assert len(saved) == 4 and all(p.is_file() for p in saved)
    grid = results.grid(cols=2)
    assert grid.shape == (640, 640, 3)
    # an image handed in as an array gives the same answer as its file, and keeps its pixels
    arr = np.asarray(Image.open(files[0]).convert("RGB"))
    (a,) = model.predict(arr, topk=2)
    assert a.path == "array[0]" and a.labels == r.labels and np.allclose(a.scores, r.scores, atol=1e-5)
    assert a.plot().shape == drawn.shape
    (bad,) = model.predict(np.zeros((8, 8, 3), np.float32))
    assert not bad.ok and "uint8" in bad.error and bad.to_dict()["error"]
    with pytest.raises(AttributeError, match="no 'boxes'"):
        r.boxes


def test_show_without_a_display_saves_a_file_and_says_where(classifier, monkeypatch, capsys):
    model, data = classifier
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(Image.Image, "show", lambda *a, **k: pytest.fail("a viewer was started with no display"))
    (r,) = model.predict(sorted((data / "red").glob("*.png"))[:1])
    path = r.show()
    assert path is not None and path.is_file() and Image.open(path).size == r.plot().shape[1::-1]
    assert f"saved to {path}" in capsys.readouterr().err


def test_detection_result_draws_boxes_in_class_colours_with_labels():
    image = np.full((64, 80, 3), 40, np.uint8)
    r = DetectResult({"path": "array[0]", "width": 80, "height": 64, "objects": [
        {"label": "bar", "score": 0.9, "box": [10.0, 30.0, 50.0, 40.0]},
        {"label": "square", "score": 0.8, "box": [50.0, 5.0, 70.0, 25.0]}]}, image=image, classes=DETECT_CLASSES)
    drawn = r.plot()
    f = min(drawn.shape[:2]) // 64
    assert f >= 5 and drawn.shape[:2] == (64 * f, 80 * f)  # enlarged by a whole factor
    colors = draw.box_colors(2)
    # the left edge of each box is drawn in its class's colour (square: class 0, bar: class 1)
    assert (drawn[35 * f, 10 * f] == colors[1]).all() and (drawn[15 * f, 50 * f] == colors[0]).all()
    # the label of the bar is a filled box of its colour above the box, with text in it
    above = drawn[30 * f - 14:30 * f - 2, 10 * f + 2:10 * f + 40]
    assert (above == colors[1]).all(axis=2).mean() > 0.4 and not (above == colors[1]).all()
    assert r.boxes.shape == (2, 4) and r.rows()[0]["label"] == "bar"


def test_text_scales_with_the_image():
    small, large = draw.sizes(np.zeros((320, 320, 3))), draw.sizes(np.zeros((1600, 1600, 3)))
    assert large[0] > small[0] and large[1] > 3 * small[1] // 2


def test_segmentation_results_confidence_maps_and_explanation(segmentation_set, tmp_path):
    seg = Segmenter(config=tiny_segment_config(segmentation_set, tmp_path))
    train, _ = seg.datasets()
    seg.prepare(train)
    image = tmp_path / "one.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 70, 3), dtype=np.uint8)).save(image)
    (r,) = seg.predict(image, probabilities=True)
    p = r.probabilities.astype(np.float32)
    assert p.shape == (3, 48, 70) and np.allclose(p.sum(0), 1, atol=1e-2)
    assert (p.argmax(0) == r.mask).mean() > 0.99
    assert min(r.plot().shape[:2]) >= draw.MIN_SIDE and set(r.rows()[0]) >= {"fraction_disc", "confidence"}
    (e,) = seg.explain(image, out_dir=tmp_path / "x")
    assert e.maps.shape == (3, 48, 70)
    panel = e.plot()
    assert panel.shape[1] == 4 * r.plot().shape[1]  # the image, then one map per class
    assert (tmp_path / "x" / "one_confidence.png").is_file() and (tmp_path / "x" / "explanations.csv").is_file()
    (only,) = seg.explain(image, target="disc")
    assert only.maps.shape == (1, 48, 70)
    with pytest.raises(ValueError, match="not a class"):
        seg.explain(image, target="cat")


# -- test-time augmentation -------------------------------------------------------------------
def test_flip_average_is_invariant_and_equivariant_where_the_model_is_not():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)  # an asymmetric kernel: not flip-equivariant alone
    x = torch.rand(2, 3, 16, 16)
    seg = FlipAverage(conv, flip_views(hflip=True, vflip=True), spatial=True)
    assert not torch.allclose(conv(x.flip(-1)), conv(x).flip(-1), atol=1e-4)
    out = seg(x)
    assert torch.allclose(out.exp().sum(1), torch.ones(2, 16, 16), atol=1e-5)  # log-probabilities
    assert torch.allclose(seg(x.flip(-1)), out.flip(-1), atol=1e-5)
    head = torch.nn.Sequential(conv, torch.nn.Flatten(), torch.nn.LazyLinear(5))
    head(x)
    cls = FlipAverage(head, flip_views(hflip=True), spatial=False)
    assert not torch.allclose(head(x.flip(-1)), head(x), atol=1e-4)
    assert torch.allclose(cls(x.flip(-1)), cls(x), atol=1e-5)
    turns = FlipAverage(conv, flip_views(hflip=False, rotate90=True), spatial=True)
    assert len(turns.views) == 4 and torch.allclose(turns(torch.rot90(x, 1, (-2, -1))),
                                                    torch.rot90(turns(x), 1, (-2, -1)), atol=1e-5)
    assert len(flip_views(hflip=True, rotate90=True)) == 8  # the square's symmetries


class _BrightSquare(torch.nn.Module):
    """A fake detector that finds the bright square of its input exactly: one box, score 0.9."""

    def forward(self, x):
        rows = []
        for image in x.float():
            ys, xs = torch.nonzero(image.sum(0) > 1.5, as_tuple=True)
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            rows.append(torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, torch.tensor(0.9)]).float())
        return torch.stack(rows)[:, :, None], None


def test_detection_tta_maps_every_view_back_to_the_input():
    x = torch.zeros(1, 3, 96, 128)
    x[0, :, 30:54, 20:44] = 1.0  # a bright square, centre (32, 42)
    t = DetectAugment(_BrightSquare(), stride=32)
    views = list(t.views(x))
    centres = torch.stack([v[0, :2, 0] for v in views])
    assert torch.allclose(centres, torch.tensor([[32.0, 42.0]]).expand(3, 2), atol=1.5), centres  # in every view
    decoded, raw = t(x)  # the three views' boxes fused into one, found by all: its score stays
    assert raw is None and decoded.shape == (1, 5, 1)
    assert torch.allclose(decoded[0, :2, 0], centres.mean(0), atol=1.0) and abs(float(decoded[0, 4, 0]) - 0.9) < 1e-4


def test_weighted_box_fusion_fuses_across_views_only():
    det = torch.tensor([[10, 10, 50, 50, 0.9, 0], [12, 12, 52, 52, 0.6, 0],  # one object, views 0 and 1
                        [10, 18, 50, 58, 0.8, 0],  # view 0 again, overlapping (IoU 0.67): another object
                        [10, 10, 50, 50, 0.7, 1]], dtype=torch.float32)  # another class
    fused = weighted_box_fusion(det, torch.tensor([0, 1, 0, 1]), views=2)
    assert len(fused) == 3
    a = fused[(fused[:, 5] == 0) & (fused[:, 1] < 15)][0]
    assert torch.allclose(a[:4], torch.tensor([10.8, 10.8, 50.8, 50.8])) and abs(float(a[4]) - 0.75) < 1e-6
    assert sorted(fused[:, 4].tolist()) == pytest.approx([0.35, 0.4, 0.75])  # found by one view of two: half


def test_tta_through_predict_evaluate_and_the_command_line(classifier, detection_set, segmentation_set, tmp_path,
                                                           capsys):
    from visiontl.cli import main

    model, data = classifier
    plain, tta = model.evaluate(str(data)), model.evaluate(str(data), tta=True)
    assert set(plain) == set(tta) and abs(plain["accuracy"] - tta["accuracy"]) < 0.5
    (r,) = model.predict(sorted((data / "blue").glob("*.png"))[0], tta=True)
    assert r.labels[0] == "blue" and abs(sum(r.scores) - 1) < 1e-4
    det = Detector(config=tiny_detect_config(detection_set, tmp_path))
    train, val = det.datasets()
    det.prepare(train)
    assert {"mAP50", "mAP50-95"} <= set(det.evaluate(val, tta=True))
    (d,) = det.predict(sorted((detection_set.parent / "images" / "val").glob("*.png"))[0], tta=True, conf=0.0)
    assert d.ok and all(0 <= v <= 64 for o in d.objects for v in o["box"])
    seg = Segmenter(config=tiny_segment_config(segmentation_set, tmp_path))
    strain, sval = seg.datasets()
    seg.prepare(strain)
    assert 0 <= seg.evaluate(sval, tta=True)["mIoU"] <= 1
    ckpt = next(Path(model.run_dir).glob("best.pt"))
    assert main(["val", str(ckpt), "--data", str(data), "--tta", "--out", str(tmp_path / "v")]) == 0
    assert '"accuracy"' in capsys.readouterr().out


# -- explanations -----------------------------------------------------------------------------
def _quadrant_set(root: Path, per_class: int = 16, size: int = 64, seed: int = 0) -> Path:
    """Grey noise with one coloured quadrant: the class is the colour, anywhere."""
    rng = np.random.default_rng(seed)
    colors = {"red": (230, 30, 30), "green": (30, 210, 30)}
    for name, color in colors.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(90, 130, (size, size, 3)).astype(np.uint8)
            qy, qx = divmod(int(rng.integers(0, 4)), 2)
            h = size // 2
            img[qy * h:(qy + 1) * h, qx * h:(qx + 1) * h] = color
            Image.fromarray(img).save(root / name / f"{i:02d}_q{qy}{qx}.png")
    return root


def test_class_activation_maps_point_at_the_evidence(tmp_path, capsys):
    pytest.importorskip("pytorch_grad_cam")
    from visiontl.cli import main

    data = _quadrant_set(tmp_path / "q", size=128)  # at 64 px the last stage is 2×2: too coarse to say where
    model = Classifier(config=tiny_config(data, tmp_path / "runs", model__backbone="mobilenet_v2",
                                          model__weights="imagenet", finetune__strategy="frozen", train__epochs=4,
                                          optim__lr=0.01, data__image_size=128, eval__worst_cams="gradcam",
                                          data__augment__random_resized_crop=False))
    model.fit()
    worst = Image.open(Path(model.run_dir) / "val_worst_cams.png")  # the run's worst cases with their maps
    assert worst.size[0] > 600 and np.asarray(worst.convert("L")).std() > 20
    files = sorted(data.glob("*/*.png"))
    results = model.explain(files, method="gradcam", out_dir=tmp_path / "cams")
    inside, outside = [], []
    for r, f in zip(results, files):
        assert r.cam.shape == (128, 128) and 0 <= r.cam.min() and r.cam.max() <= 1
        qy, qx = int(f.stem[-2]), int(f.stem[-1])
        quadrant = np.zeros((128, 128), bool)
        quadrant[qy * 64:(qy + 1) * 64, qx * 64:(qx + 1) * 64] = True
        inside.append(r.cam[quadrant].mean())
        outside.append(r.cam[~quadrant].mean())
    # where the coloured quadrant is, the map for the predicted class is hotter
    # (measured: median difference 0.46, hotter inside on 31 of 32 images)
    assert np.median(np.subtract(inside, outside)) > 0.2, (np.median(inside), np.median(outside))
    assert np.mean(np.greater(inside, outside)) > 0.8
    assert len(list((tmp_path / "cams").glob("*_gradcam.png"))) == len(files)
    assert (tmp_path / "cams" / "explanations.csv").read_text().startswith("path,label,score,target,method")
    other = model.explain(files[:2], method="gradcam++", target="green")
    assert all(r.target == "green" for r in other)
    assert model.explain(files[:1], method="eigencam")[0].cam.shape == (128, 128)
    with pytest.raises(ValueError, match="choose one of"):
        model.explain(files[:1], method="magic")
    with pytest.raises(ValueError, match="eval.worst_cams"):  # before any training
        Classifier(config=tiny_config(data, tmp_path / "bad", eval__worst_cams="magic")).fit()
    ckpt = Path(model.run_dir) / "best.pt"
    assert main(["explain", str(ckpt), str(files[0]), "--method", "layercam", "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / f"{files[0].stem}_layercam.png").is_file()


# -- video ------------------------------------------------------------------------------------
def test_video_prediction_streams_frames_into_an_annotated_video(classifier, tmp_path, monkeypatch, capsys):
    import cv2

    from visiontl.cli import main

    model, data = classifier
    frames = [np.asarray(Image.open(p).convert("RGB").resize((64, 48))) for p in sorted(data.glob("*/*.png"))[:11]]
    clip = write_video(tmp_path / "clip.mp4", frames)
    seen = []
    original = Classifier.predict

    def counting(self, inputs, **kw):
        seen.append(len(inputs))
        return original(self, inputs, **kw)

    monkeypatch.setattr(Classifier, "predict", counting)
    info = model.predict_video(clip, out_dir=tmp_path / "out", batch_size=4, topk=1)
    assert info["frames"] == 11 and seen == [4, 4, 3]  # streamed in batches: memory does not grow with length
    cap = cv2.VideoCapture(info["video"])
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 11 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) >= draw.MIN_SIDE
    cap.release()
    rows = Path(info["table"]).read_text().splitlines()
    assert rows[0] == "frame,label1,score1" and len(rows) == 12
    def interrupted(self, inputs, **kw):  # Ctrl-C during the second batch: the first is kept, whole
        if seen:
            raise KeyboardInterrupt
        seen.append(len(inputs))
        return original(self, inputs, **kw)

    seen.clear()
    monkeypatch.setattr(Classifier, "predict", interrupted)
    info = model.predict_video(clip, out_dir=tmp_path / "stopped", batch_size=4)
    cap = cv2.VideoCapture(info["video"])
    assert info["frames"] == 4 and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()
    monkeypatch.undo()
    ckpt = Path(model.run_dir) / "best.pt"
    assert main(["predict", str(ckpt), str(clip), "--out", str(tmp_path / "cli"), "--max-frames", "5"]) == 0
    assert "5 frames" in capsys.readouterr().err and (tmp_path / "cli" / "clip_pred.mp4").is_file()
    assert main(["predict", str(ckpt), str(clip)]) == 2
    assert "give --out" in capsys.readouterr().err
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="broken.mp4"):
        model.predict_video(tmp_path / "broken.mp4", out_dir=tmp_path / "b")



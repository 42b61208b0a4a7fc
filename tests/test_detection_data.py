"""Detection data: YOLO txt and COCO JSON reading, the checks on bad labels, and
augmentation that keeps boxes on their objects."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from visiontl.data import DataError
from visiontl.data.detect_transforms import DetectAugment, DetectEval, DetectTrain, letterbox, to_tensors, unletterbox
from visiontl.data.detection import (DetectionDataset, coco_samples, collate, label_path, read_data_yaml, yolo_images,
                                     yolo_samples)


def _yolo(tmp_path, labels: dict[str, str], size=(100, 80)):
    for name, text in labels.items():
        (tmp_path / "images").mkdir(exist_ok=True)
        Image.new("RGB", size).save(tmp_path / "images" / f"{name}.png")
        if text is not None:
            (tmp_path / "labels").mkdir(exist_ok=True)
            (tmp_path / "labels" / f"{name}.txt").write_text(text)
    return yolo_images(tmp_path, "images")


def test_yolo_labels_to_pixel_boxes(tmp_path):
    images = _yolo(tmp_path, {"a": "1 0.5 0.5 0.2 0.25\n0 0.1 0.1 0.2 0.2\n"})
    (s,), report = yolo_samples(images, ["x", "y"], "set")
    np.testing.assert_allclose(s.boxes[0], [40, 30, 60, 50], atol=1e-4)  # 100×80 image
    assert s.labels.tolist() == [1, 0] and report.boxes == 2 and not report.dropped


def test_label_path_follows_yolo_rule(tmp_path):
    assert label_path(tmp_path / "images" / "train" / "a.jpg") == tmp_path / "labels" / "train" / "a.txt"
    assert label_path(tmp_path / "pics" / "a.jpg") == tmp_path / "pics" / "a.txt"


def test_missing_label_file_is_an_image_without_objects(tmp_path):
    images = _yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n", "b": None})
    samples, report = yolo_samples(images, ["x"], "set")
    assert [len(s.labels) for s in samples] == [1, 0]
    assert report.no_label_file == 1 and "1 images without a label file" in report.summary()


def test_boxes_outside_are_clipped_and_empty_ones_dropped(tmp_path):
    images = _yolo(tmp_path, {"a": "0 0.95 0.5 0.2 0.2\n0 0.5 0.5 0 0.1\n0 1.5 0.5 0.2 0.2\n"})
    (s,), report = yolo_samples(images, ["x"], "set")
    np.testing.assert_allclose(s.boxes, [[85, 32, 100, 48]], atol=1e-4)
    assert report.clipped == 1 and len(report.dropped) == 2
    assert "a.txt:2 (degenerate)" in report.dropped[0] and "a.txt:3 (outside the image)" in report.dropped[1]
    assert "2 boxes with no area dropped" in report.summary()


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.2", "a.txt:2: 4 fields"),
    ("0 0.5 zero 0.2 0.2", "a.txt:2: not numbers"),
    ("3 0.5 0.5 0.2 0.2", "a.txt:2: class id 3 is not one of the 2 classes"),
    ("0.5 0.5 0.5 0.2 0.2", "a.txt:2: class id 0.5"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    images = _yolo(tmp_path, {"a": f"0 0.5 0.5 0.2 0.2\n{line}\n"})
    with pytest.raises(DataError, match=message):
        yolo_samples(images, ["x", "y"], "set")


def test_polygon_lines_become_their_bounding_box(tmp_path):
    images = _yolo(tmp_path, {"a": "0 0.1 0.1 0.3 0.1 0.3 0.5 0.1 0.5\n"})
    (s,), _ = yolo_samples(images, ["x"], "set")
    np.testing.assert_allclose(s.boxes[0], [10, 8, 30, 40], atol=1e-4)


def test_data_yaml_names_as_dict_and_relative_root(tmp_path):
    (tmp_path / "d.yaml").write_text("path: ds\ntrain: images/train\nval: images/val\nnames: {0: cat, 1: dog}\n")
    spec = read_data_yaml(tmp_path / "d.yaml")
    assert spec["names"] == ["cat", "dog"] and spec["root"] == tmp_path / "ds"
    (tmp_path / "bad.yaml").write_text("train: x\n")
    with pytest.raises(DataError, match="bad.yaml: a data.yaml needs"):
        read_data_yaml(tmp_path / "bad.yaml")


def _coco(tmp_path, annotations, categories=({"id": 3, "name": "cat"}, {"id": 7, "name": "dog"})):
    Image.new("RGB", (50, 40)).save(tmp_path / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 40}],
            "annotations": annotations, "categories": list(categories)}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return tmp_path / "ann.json"


def test_coco_reads_boxes_and_maps_category_ids(tmp_path):
    path = _coco(tmp_path, [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [5, 6, 10, 12]},
                            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [40, 30, 20, 20]},
                            {"id": 3, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1}])
    (s,), names, report = coco_samples(path)
    assert names == ["cat", "dog"]
    np.testing.assert_allclose(s.boxes, [[5, 6, 15, 18], [40, 30, 50, 40], [0, 0, 5, 5]])
    # the crowd region stays, as -1 - class: out of the loss, and the metrics ignore detections on it
    assert s.labels.tolist() == [1, 0, -1] and report.clipped == 1 and (report.boxes, report.crowd) == (2, 1)
    batch = collate([to_tensors(np.zeros((40, 50, 3), np.uint8), s.boxes, s.labels)])
    assert batch["cls"].tolist() == [1.0, 0.0] and len(batch["bboxes"]) == 2 and batch["labels"][0].tolist() == [1, 0, -1]


@pytest.mark.parametrize("ann, message", [
    ({"id": 9, "image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5]}, "annotation 9: category_id 5 is not in"),
    ({"id": 9, "image_id": 4, "category_id": 3, "bbox": [1, 1, 5, 5]}, "annotation 9: image_id 4 is not in"),
    ({"id": 9, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5]}, "annotation 9: bbox"),
])
def test_coco_errors_name_file_and_annotation(tmp_path, ann, message):
    with pytest.raises(DataError, match=message):
        coco_samples(_coco(tmp_path, [ann]))


def test_letterbox_round_trip():
    image = np.zeros((60, 120, 3), np.uint8)
    out, scale, pad = letterbox(image, 64)
    assert out.shape == (64, 64, 3) and scale == pytest.approx(64 / 120) and pad == (0, 16)
    boxes = torch.tensor([[12.0, 6, 60, 30]])
    on_letterbox = boxes * scale + torch.tensor([pad[0], pad[1], pad[0], pad[1]])
    torch.testing.assert_close(unletterbox(on_letterbox, scale, pad, 120, 60), boxes)


def _marked(size=64):
    """An image with one bright object at a known box."""
    image = np.zeros((size, size, 3), np.uint8)
    image[10:20, 5:30] = 255
    return image, np.array([[5, 10, 30, 20]], np.float32), np.array([0])


def test_hflip_moves_the_box_with_the_object():
    image, boxes, labels = _marked()
    aug = DetectAugment(hflip=1.0, scale=0, translate=0, color=0)
    out, out_boxes, out_labels = DetectTrain(64, aug)(image, boxes, labels)
    np.testing.assert_allclose(out_boxes.numpy(), [[34, 10, 59, 20]], atol=0.5)
    ys, xs = np.nonzero(out.numpy()[0] > 128)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (34, 59, 10, 20)
    assert out_labels.tolist() == [0]


@pytest.mark.parametrize("seed", range(5))
def test_random_scale_translate_keeps_boxes_on_the_object(seed):
    torch.manual_seed(seed)
    image, boxes, labels = _marked()
    aug = DetectAugment(hflip=0.5, vflip=0.5, scale=0.3, translate=0.1, color=0)
    out, out_boxes, _ = DetectTrain(64, aug)(image, boxes, labels)
    if len(out_boxes) == 0:
        return  # moved out of view: dropped, as it should be
    ys, xs = np.nonzero(out.numpy()[0] > 128)
    x1, y1, x2, y2 = out_boxes[0].tolist()
    assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5
    assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5


def test_mosaic_combines_four_images_with_their_boxes(tmp_path):
    images = _yolo(tmp_path, {f"i{k}": "0 0.5 0.5 0.4 0.4\n" for k in range(4)}, size=(64, 64))
    samples, report = yolo_samples(images, ["x"], "set")
    aug = DetectAugment(hflip=0, scale=0, translate=0, color=0, mosaic=1.0)
    data = DetectionDataset(samples, ["x"], DetectTrain(64, aug), report)
    torch.manual_seed(0)
    image, boxes, labels = data[0]
    assert image.shape == (3, 64, 64) and 1 <= len(boxes) <= 4 and (labels == 0).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes >= 0).all() and (boxes <= 64).all()


def test_collate_builds_ultralytics_targets():
    items = [(torch.zeros(3, 32, 32, dtype=torch.uint8), torch.tensor([[0.0, 0, 16, 8]]), torch.tensor([1])),
             (torch.zeros(3, 32, 32, dtype=torch.uint8), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))]
    batch = collate(items)
    assert batch["img"].shape == (2, 3, 32, 32)
    assert batch["batch_idx"].tolist() == [0.0] and batch["cls"].tolist() == [1.0]
    torch.testing.assert_close(batch["bboxes"], torch.tensor([[0.25, 0.125, 0.5, 0.25]]))


def test_eval_transform_scales_boxes_with_the_image():
    image = np.zeros((40, 80, 3), np.uint8)
    out, boxes, _ = DetectEval(64)(image, np.array([[0, 0, 80, 40]], np.float32), np.array([0]))
    assert out.shape == (3, 64, 64)
    np.testing.assert_allclose(boxes.numpy(), [[0, 16, 64, 48]])


def test_nuclei_as_boxes_one_box_per_nucleus_and_splits_apart(tmp_path):
    """stardist's nuclei as a detection set: every nucleus wholly inside a crop is one box
    whose edges are its mask's; YOLO and COCO copies agree; validation crops share no row
    with training crops."""
    from visiontl.data.nuclei import TRAIN_ROWS, load_nuclei, materialize_nuclei_boxes, stardist_dir

    if stardist_dir() is None:
        pytest.skip("stardist's images not installed (pip install --no-deps stardist)")
    data_yaml = materialize_nuclei_boxes(size=128, step=64, root=tmp_path / "nb")
    _, labels = load_nuclei(instances=True)
    for split in ("train", "val"):
        coco = json.loads((data_yaml.parent / f"{split}.json").read_text())
        by_image = {im["id"]: im for im in coco["images"]}
        assert coco["annotations"]
        for im in coco["images"]:
            y0, x0 = map(int, im["file_name"].split("/")[-1][len("nuclei_"):-4].split("_"))
            assert (y0 >= TRAIN_ROWS) == (split == "val")
            crop = labels[y0:y0 + 128, x0:x0 + 128]
            whole = [i for i in np.unique(crop) if i and (labels == i).sum() == (crop == i).sum()]
            boxes = [a["bbox"] for a in coco["annotations"] if a["image_id"] == im["id"]]
            assert len(boxes) >= len(whole)  # cut nuclei with >= 40 % inside count too
            for i in whole:
                ys, xs = np.nonzero(crop == i)
                assert [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),
                        float(ys.max() + 1 - ys.min())] in boxes
            rows = (data_yaml.parent / "labels" / split / (im["file_name"].split("/")[-1][:-4] + ".txt"))
            yolo = [list(map(float, line.split()[1:])) for line in rows.read_text().splitlines()]
            assert len(yolo) == len(boxes)
            for (cx, cy, w, h), (x, y, bw, bh) in zip(yolo, boxes):
                assert cx * 128 == pytest.approx(x + bw / 2, abs=1e-3) and w * 128 == pytest.approx(bw, abs=1e-3)
        assert all(by_image[a["image_id"]] for a in coco["annotations"])


def test_training_letterbox_is_the_evaluation_letterbox():
    """With every random step off, a training sample is the evaluation sample, pixel for pixel:
    one letterbox (resize + padding) for training, evaluation and predict."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (90, 150, 3), dtype=np.uint8)
    boxes, labels = np.array([[10, 20, 60, 70], [100, 5, 149, 89]], np.float32), np.array([0, 1])
    off = DetectAugment(hflip=0, vflip=0, scale=0, translate=0, color=0, mosaic=0)
    for size in (64, 96, 320):  # down and up
        train = DetectTrain(size, off)(image, boxes, labels)
        val = DetectEval(size)(image, boxes, labels)
        assert torch.equal(train[0], val[0]), size
        torch.testing.assert_close(train[1], val[1], atol=1e-3, rtol=0)


@pytest.mark.parametrize("ann, message", [
    ({"id": 9, "image_id": 1, "category_id": 3, "bbox": [1, "a", 5, 5]}, "annotation 9: bbox"),
    ({"id": 9, "image_id": 1, "category_id": 3, "bbox": [1, float("nan"), 5, 5]}, "annotation 9: bbox"),
])
def test_coco_non_numeric_bbox_names_the_annotation(tmp_path, ann, message):
    with pytest.raises(DataError, match=message):
        coco_samples(_coco(tmp_path, [ann]))


def test_coco_entries_without_their_keys_and_nan_yolo_labels_are_named(tmp_path):
    path = _coco(tmp_path, [])
    data = json.loads(path.read_text())
    data["categories"].append({"id": 11})
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"ann.json: categories\[2\] has no 'name'"):
        coco_samples(path)
    data["categories"].pop()
    data["images"].append({"id": 5})
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"ann.json: images\[1\] has no 'file_name'"):
        coco_samples(path)
    from visiontl.data.detection import LabelReport, read_yolo_label

    (tmp_path / "l.txt").write_text("0 0.5 0.5 0.2 0.2\n0 nan 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"l.txt:2: not finite"):
        read_yolo_label(tmp_path / "l.txt", 100, 100, 1, LabelReport("x"))


def test_box_tiles_keep_each_box_class_in_yolo_and_coco(tmp_path):
    """write_box_tiles (the built-in box sets): a fifth column is the class, the same in the
    YOLO label files (index) and the COCO JSON (category id = index + 1); cut boxes follow keep."""
    from visiontl.data.trees import write_box_tiles

    image = np.zeros((40, 80, 3), np.uint8)
    boxes = np.array([[2, 2, 12, 12, 2], [30, 5, 50, 25, 1], [38, 30, 44, 40, 0]], np.float32)
    crops = [("train", "a", image[:, :40], boxes, (0, 0)), ("val", "b", image[:, 40:], boxes, (40, 0))]
    root = write_box_tiles(tmp_path, iter(crops), ["x", "y", "z"]).parent
    (s,), _ = yolo_samples(yolo_images(root, "images/train"), ["x", "y", "z"], "set")
    assert s.labels.tolist() == [2, 1]  # box 2 is half inside (keep 0.4), box 3 a third
    coco = json.loads((root / "val.json").read_text())
    assert [a["category_id"] for a in coco["annotations"]] == [2, 1]  # box 2 half, box 3 two thirds inside

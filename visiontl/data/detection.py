"""Detection data: YOLO txt (with an ultralytics ``data.yaml``, or a plain images/labels
folder) and COCO JSON, read into one sample list, checked before training starts.

Conventions, as in YOLO: an image without a label file has no objects; a box reaching
outside the image is clipped to it; a box with no area left is dropped. Both are counted
and reported. A malformed line or an unknown class id is an error naming file and line.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from ..config import yaml_problem
from .detect_transforms import to_tensors
from .images import IMAGE_EXTENSIONS, KEEP, DataError, check_image, list_images, read_image


@dataclass
class DetectionSample:
    path: Path
    boxes: np.ndarray  # (n, 4) float32, xyxy in pixels of the original image
    labels: np.ndarray  # (n,) int64 class indices


@dataclass
class LabelReport:
    """What reading the labels found; printed once, so nothing is dropped silently."""
    source: str
    images: int = 0
    boxes: int = 0
    crowd: int = 0  # COCO crowd regions: ignored by the metrics, not trained on
    no_label_file: int = 0
    clipped: int = 0
    dropped: list[str] = field(default_factory=list)  # "file:line (why)"

    def summary(self) -> str:
        parts = [f"{self.source}: {self.images} images, {self.boxes} boxes"]
        if self.crowd:
            parts.append(f"{self.crowd} crowd regions (detections on them are ignored, as COCO evaluation does)")
        if self.no_label_file:
            parts.append(f"{self.no_label_file} images without a label file (no objects)")
        if self.clipped:
            parts.append(f"{self.clipped} boxes clipped to the image")
        if self.dropped:
            shown = "; ".join(self.dropped[:3]) + (" …" if len(self.dropped) > 3 else "")
            parts.append(f"{len(self.dropped)} boxes with no area dropped ({shown})")
        return ", ".join(parts)


def _clip(box: list[float], width: int, height: int, where: str, report: LabelReport) -> list[float] | None:
    x1, y1, x2, y2 = box
    c = [min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height)]
    if c[2] - c[0] < 1.0 or c[3] - c[1] < 1.0:  # less than a pixel: nothing a detector can learn
        report.dropped.append(f"{where} ({'degenerate' if c == [x1, y1, x2, y2] else 'outside the image'})")
        return None
    if any(abs(a - b) > 0.5 for a, b in zip(c, box)):
        report.clipped += 1
    return c


# -- YOLO txt -------------------------------------------------------------------------
def label_path(image: Path) -> Path:
    """YOLO's rule: the last ``images`` folder of the path becomes ``labels``, the
    extension ``.txt``; an image outside an ``images`` folder keeps its label beside it."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def read_yolo_label(path: Path, width: int, height: int, n_classes: int,
                    report: LabelReport) -> tuple[np.ndarray, np.ndarray]:
    """Lines ``class cx cy w h`` (normalised), or ``class x1 y1 x2 y2 …`` polygons (YOLO
    segment labels, boxed)."""
    boxes, labels = [], []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{n}"
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise DataError(f"{where}: not numbers: {line.strip()!r} (expected 'class cx cy w h')") from None
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"{where}: not finite numbers (nan or inf) in {line.strip()!r}")
        if len(values) != 5 and (len(values) < 7 or len(values) % 2 == 0):
            raise DataError(f"{where}: {len(values)} fields in {line.strip()!r}; expected 'class cx cy w h' "
                            "(5 fields) or a polygon 'class x1 y1 x2 y2 …'")
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < n_classes:
            raise DataError(f"{where}: class id {fields[0]} is not one of the {n_classes} classes (0…{n_classes - 1})")
        if len(values) == 5:
            cx, cy, w, h = values[1:]
            box = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
        else:
            xs, ys = values[1::2], values[2::2]
            box = [min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height]
        box = _clip(box, width, height, where, report)
        if box is not None:
            boxes.append(box)
            labels.append(int(cls))
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def read_data_yaml(path: str | Path) -> dict:
    """An ultralytics ``data.yaml``: ``path`` (root), ``train``/``val`` (folders, list files
    or lists of them, relative to the root) and ``names`` (a list or an index → name map)."""
    path = Path(path).expanduser()
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise DataError(f"{path}: {yaml_problem(e)}") from None
    if not isinstance(spec, dict) or "names" not in spec or "train" not in spec:
        raise DataError(f"{path}: a data.yaml needs at least 'train' and 'names'")
    names = spec["names"]
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise DataError(f"{path}: names must be indexed 0…{len(names) - 1}, got {sorted(names)}")
        names = [names[i] for i in range(len(names))]
    root = Path(spec.get("path") or ".").expanduser()
    if not root.is_absolute():
        root = path.parent / root
    return {"root": root, "names": [str(n) for n in names], "train": spec["train"], "val": spec.get("val")}


def yolo_images(root: Path, entry: str | Sequence[str]) -> list[Path]:
    """Images named by a data.yaml entry: folders, ``.txt`` lists of image paths, or a list of both."""
    images: list[Path] = []
    for item in [entry] if isinstance(entry, str) else entry:
        p = Path(item).expanduser()
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            images += list_images(p)
        elif p.suffix == ".txt" and p.is_file():
            for line in p.read_text().splitlines():
                if line.strip():
                    q = Path(line.strip())
                    images.append(q if q.is_absolute() else (p.parent / q))
        else:
            raise DataError(f"{p}: not a folder of images or a .txt list of them")
    return images


def yolo_samples(images: list[Path], names: list[str], source: str) -> tuple[list[DetectionSample], LabelReport]:
    report = LabelReport(source)
    samples = []
    for image in images:
        if image.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        width, height = check_image(image)
        label = label_path(image)
        if label.is_file():
            boxes, labels = read_yolo_label(label, width, height, len(names), report)
        else:
            report.no_label_file += 1
            boxes, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        samples.append(DetectionSample(image, boxes, labels))
        report.boxes += len(labels)
    report.images = len(samples)
    if not samples:
        raise DataError(f"{source}: no images found")
    return samples, report


def crowd_label(label):
    """How a COCO crowd region of class ``label`` travels with the boxes: ``-1 - label`` (and
    back: the map is its own inverse). Training leaves it out of the loss (``collate``);
    evaluation ignores the detections that fall on it, as pycocotools does."""
    return -1 - label


# -- COCO JSON ------------------------------------------------------------------------
def coco_samples(path: str | Path, images_root: str | Path = "",
                 classes: list[str] | None = None) -> tuple[list[DetectionSample], list[str], LabelReport]:
    """COCO ``instances`` JSON: ``images`` (file_name, width, height), ``annotations``
    (image_id, category_id, bbox = [x, y, w, h] in pixels), ``categories``. Category ids
    map to class indices in id order. Crowd annotations (``iscrowd: 1``) are kept as regions
    labelled ``crowd_label(class)``."""
    path = Path(path).expanduser()
    try:
        coco = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise DataError(f"{path}: not a COCO detection file (no {key!r})")
    for key, entries, needed in (("categories", coco["categories"], ("id", "name")),
                                 ("images", coco["images"], ("id", "file_name"))):
        for k, entry in enumerate(entries):
            missing = [n for n in needed if not isinstance(entry, dict) or n not in entry]
            if missing:
                raise DataError(f"{path}: {key}[{k}] has no {' or '.join(repr(n) for n in missing)}")
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    names = [str(c["name"]) for c in categories]
    if classes is not None and names != classes:
        raise DataError(f"{path}: categories {names} differ from the training set's {classes}")
    index = {c["id"]: i for i, c in enumerate(categories)}
    root = Path(images_root).expanduser() if images_root else path.parent
    report = LabelReport(str(path))
    per_image: dict = {img["id"]: ([], []) for img in coco["images"]}
    sizes = {img["id"]: (img.get("width"), img.get("height")) for img in coco["images"]}
    for ann in coco["annotations"]:
        where = f"{path}: annotation {ann.get('id')}"
        if ann.get("image_id") not in per_image:
            raise DataError(f"{where}: image_id {ann.get('image_id')} is not in 'images'")
        if ann.get("category_id") not in index:
            raise DataError(f"{where}: category_id {ann.get('category_id')} is not in 'categories' "
                            f"({sorted(index)})")
        bbox = ann.get("bbox")
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
            raise DataError(f"{where}: bbox {bbox!r} is not [x, y, width, height] in finite numbers")
        x, y, w, h = (float(v) for v in bbox)
        width, height = sizes[ann["image_id"]]
        box = _clip([x, y, x + w, y + h], width or 1e9, height or 1e9, where, report)
        if box is not None:
            per_image[ann["image_id"]][0].append(box)
            label = index[ann["category_id"]]
            per_image[ann["image_id"]][1].append(crowd_label(label) if ann.get("iscrowd") else label)
    samples = []
    for img in coco["images"]:
        file = root / img["file_name"]
        check_image(file)
        boxes, labels = per_image[img["id"]]
        samples.append(DetectionSample(file, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)))
        report.boxes += sum(label >= 0 for label in labels)
        report.crowd += sum(label < 0 for label in labels)
    report.images = len(samples)
    if not samples:
        raise DataError(f"{path}: no images")
    return samples, names, report


# -- the dataset ----------------------------------------------------------------------
class DetectionDataset(Dataset):
    """Samples → ``(CHW uint8 image, (n, 4) float xyxy boxes, (n,) labels)`` after
    ``transform(image, boxes, labels, dataset)`` (see :mod:`visiontl.data.detect_transforms`)."""

    def __init__(self, samples: list[DetectionSample], classes: list[str], transform: Callable | None = None,
                 report: LabelReport | None = None) -> None:
        self.samples, self.classes, self.transform, self.report = samples, list(classes), transform, report

    def __len__(self) -> int:
        return len(self.samples)

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.samples[i]
        return read_image(s.path), s.boxes, s.labels

    def __getitem__(self, i: int):
        image, boxes, labels = self.raw(i)
        if self.transform is not None:
            return self.transform(image, boxes, labels, self)
        return to_tensors(image, boxes, labels)

    def subset(self, indices: Sequence[int], transform: Callable | None = KEEP) -> "DetectionDataset":
        """The samples at ``indices``, with ``transform`` (KEEP: this dataset's; None: none)."""
        return DetectionDataset([self.samples[i] for i in indices], self.classes,
                                self.transform if transform is KEEP else transform, self.report)


def collate(batch: list) -> dict:
    """Stack images; targets both as ultralytics' flat batch (``batch_idx``, ``cls``,
    normalised ``bboxes`` cx cy w h) and per image (pixel xyxy) for the metrics."""
    images = torch.stack([b[0] for b in batch])
    h, w = images.shape[-2:]
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    boxes = [b[1].float().reshape(-1, 4) for b in batch]
    labels = [b[2].long().reshape(-1) for b in batch]
    objects = [l >= 0 for l in labels]  # crowd regions (label < 0) are for the metrics only, not the loss
    flat = torch.cat([b[k] for b, k in zip(boxes, objects)]) / scale if boxes else torch.zeros(0, 4)
    xywh = torch.cat([(flat[:, :2] + flat[:, 2:]) / 2, flat[:, 2:] - flat[:, :2]], 1)
    return {"img": images, "batch_idx": torch.cat([torch.full((int(k.sum()),), i, dtype=torch.float32)
                                                   for i, k in enumerate(objects)]),
            "cls": torch.cat([l[k] for l, k in zip(labels, objects)]).float(), "bboxes": xywh, "boxes": boxes,
            "labels": labels}


def print_report(report: LabelReport) -> None:
    print(report.summary(), file=sys.stderr)

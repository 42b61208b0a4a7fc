"""A real detection dataset offline: deepforest's annotated aerial tiles (NEON sites; tree
crowns as boxes), cut into square crops and written once in YOLO and COCO format.

``pip install --no-deps deepforest`` ships the tiles: 2019_YELL_2_…_crop2 (2299×2472, 574
crowns), 2019_YELL_2_…_crop (1249×1035, 279), OSBS_029 and SOAP_061 (400×400, 61 and 37).
Crops are taken on a grid without overlap; every fifth crop of each tile (in grid order)
goes to validation, so the two sets share no pixels. A crown cut by a crop edge keeps the
part inside if at least 40 % of its area is inside; one class, ``tree``.
"""
from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from .builtin import cache_dir

TILES = ["2019_YELL_2_528000_4978000_image_crop2", "2019_YELL_2_541000_4977000_image_crop", "OSBS_029", "SOAP_061"]


def deepforest_dir() -> Path | None:
    spec = importlib.util.find_spec("deepforest")  # found, not imported (it imports lightning)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return folder if (folder / f"{TILES[0]}.xml").is_file() else None


def _voc_boxes(xml: Path) -> np.ndarray:
    boxes = [[float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
             for o in ET.parse(xml).getroot().findall("object")]
    return np.array(boxes, np.float32).reshape(-1, 4)


def write_box_tiles(root: Path, crops, names: list[str], keep: float = 0.4) -> Path:
    """Write ``crops`` — (split, name, image crop, boxes ``xyxy`` in the whole image, crop
    origin ``(x0, y0)``) — as ``<root>/{images,labels}/{split}``, COCO ``{split}.json`` and
    ``data.yaml``; returns the data.yaml. A box cut by the crop's edge keeps the part inside
    if at least ``keep`` of its area is inside. A fifth column of ``boxes``, where there is
    one, is the class index (else every box is class 0). Shared by the box sets."""
    coco = {s: {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
            for s in ("train", "val")}
    for split, name, crop_img, boxes, (x0, y0) in crops:
        h, w = crop_img.shape[:2]
        cls = boxes[:, 4].astype(int) if boxes.shape[1] > 4 else np.zeros(len(boxes), int)
        boxes = boxes[:, :4]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        inside = np.clip(boxes - np.array([x0, y0, x0, y0], np.float32), 0, [w, h, w, h])
        kept_area = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])
        kept = kept_area >= keep * np.maximum(area, 1)
        inside, cls = inside[kept], cls[kept]
        for sub in ("images", "labels"):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop_img).save(root / "images" / split / f"{name}.png")
        lines = [f"{k} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} "
                 f"{(b[2] - b[0]) / w:.6f} {(b[3] - b[1]) / h:.6f}" for b, k in zip(inside, cls)]
        (root / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        c = coco[split]
        image_id = len(c["images"]) + 1
        c["images"].append({"id": image_id, "file_name": f"images/{split}/{name}.png", "width": w, "height": h})
        for b, k in zip(inside.tolist(), cls.tolist()):
            c["annotations"].append({"id": len(c["annotations"]) + 1, "image_id": image_id, "category_id": k + 1,
                                     "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "iscrowd": 0,
                                     "area": (b[2] - b[0]) * (b[3] - b[1])})
    for split, c in coco.items():  # file_name values are relative to the root, the JSON's folder
        (root / f"{split}.json").write_text(json.dumps(c))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: [{', '.join(names)}]\n")
    (root / ".complete").touch()
    return root / "data.yaml"


def materialize_trees(crop: int = 192, *, root: Path | None = None, keep: float = 0.4) -> Path:
    """Write ``<root>/{images,labels}/{train,val}``, ``data.yaml`` and COCO
    ``{train,val}.json`` (once); returns the data.yaml."""
    root = root or cache_dir() / "datasets" / f"deepforest-trees-{crop}-v2"
    if (root / ".complete").is_file():
        return root / "data.yaml"
    source = deepforest_dir()
    if source is None:
        raise FileNotFoundError("deepforest's tiles not found: pip install --no-deps deepforest")

    def crops():
        for tile in TILES:
            image = np.asarray(Image.open(source / f"{tile}.png").convert("RGB"))
            yield from grid_crops(tile, image, _voc_boxes(source / f"{tile}.xml"), crop)

    return write_box_tiles(root, crops(), ["tree"], keep)


def grid_crops(prefix: str, image: np.ndarray, boxes: np.ndarray, crop: int):
    """``image`` cut into ``crop`` px tiles without overlap, every fifth (in grid order) for
    validation, as :func:`write_box_tiles` takes them; ``boxes`` (``xyxy``) are the whole image's."""
    h, w = image.shape[:2]
    k = 0
    for y0 in range(0, h - crop + 1, crop):
        for x0 in range(0, w - crop + 1, crop):
            split = "val" if k % 5 == 4 else "train"
            k += 1
            yield split, f"{prefix}_{y0}_{x0}", image[y0:y0 + crop, x0:x0 + crop], boxes, (x0, y0)

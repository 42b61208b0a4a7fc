"""A real segmentation dataset offline: stardist's fluorescence microscopy image of cell
nuclei (``img2d.tif``, 512×512, with its instance mask ``mask2d.tif``), cut into tiles
with binary masks (background / nucleus) and written once as images/ + masks/ folders.

``pip install --no-deps stardist`` ships the two files. The top three quarters of the image
(rows 0–383) give the training tiles (``size`` px, every ``step`` px, so they overlap),
the bottom quarter the validation tiles (no overlap): the two sets share no pixels.
Intensities are scaled from the 1st–99.8th percentile to 0–255 (stardist's own
normalisation) and saved as 8-bit grayscale PNG; masks are index PNGs (0, 1).

:func:`materialize_nuclei_boxes` writes the same image as a detection set: each nucleus of
the instance mask becomes a box (class ``nucleus``), in YOLO and COCO format, with the same
train / validation split by rows.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from .builtin import cache_dir

CLASSES = ["background", "nucleus"]
TRAIN_ROWS = 384  # rows of the 512-px image used for training; the rest is validation


def stardist_dir() -> Path | None:
    spec = importlib.util.find_spec("stardist")  # found, not imported (it imports tensorflow/csbdeep)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    return folder if (folder / "img2d.tif").is_file() and (folder / "mask2d.tif").is_file() else None


def load_nuclei(instances: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(8-bit image (512, 512), binary mask (512, 512) uint8; or, with ``instances``, the
    instance labels: 0 background, 1… one per nucleus)."""
    import tifffile

    source = stardist_dir()
    if source is None:
        raise FileNotFoundError("stardist's img2d.tif / mask2d.tif not found: pip install --no-deps stardist")
    image = tifffile.imread(source / "img2d.tif").astype(np.float64)
    lo, hi = np.percentile(image, (1, 99.8))
    image = np.clip((image - lo) / (hi - lo) * 255, 0, 255).round().astype(np.uint8)
    labels = tifffile.imread(source / "mask2d.tif")
    return image, (labels if instances else (labels > 0).astype(np.uint8))


def materialize_nuclei(size: int = 128, step: int = 32, *, root: Path | None = None) -> Path:
    """Write ``<root>/{train,val}/{images,masks}`` (once); returns ``root``."""
    root = root or cache_dir() / "datasets" / f"stardist-nuclei-{size}-{step}-v1"
    if (root / ".complete").is_file():
        return root
    image, mask = load_nuclei()
    h, w = image.shape
    grids = {"train": (range(0, TRAIN_ROWS - size + 1, step), range(0, w - size + 1, step)),
             "val": (range(TRAIN_ROWS, h - size + 1, size), range(0, w - size + 1, size))}
    for split, (rows, cols) in grids.items():
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for y in rows:
            for x in cols:
                name = f"nuclei_{y:03d}_{x:03d}.png"
                Image.fromarray(image[y:y + size, x:x + size]).save(root / split / "images" / name)
                Image.fromarray(mask[y:y + size, x:x + size]).save(root / split / "masks" / name)
    (root / "README.txt").write_text(__doc__)
    (root / ".complete").touch()
    return root


def materialize_nuclei_boxes(size: int = 128, step: int = 64, *, root: Path | None = None) -> Path:
    """The nuclei as boxes (detection, one class): training crops from rows 0–383 every
    ``step`` px, validation crops from the bottom quarter without overlap; returns the
    data.yaml (YOLO layout and COCO ``{train,val}.json``)."""
    from .trees import write_box_tiles

    root = root or cache_dir() / "datasets" / f"stardist-nuclei-boxes-{size}-{step}-v1"
    if (root / ".complete").is_file():
        return root / "data.yaml"
    image, labels = load_nuclei(instances=True)
    ids = [i for i in np.unique(labels) if i]
    boxes = []
    for i in ids:
        ys, xs = np.nonzero(labels == i)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    h, w = image.shape

    def crops():
        grids = {"train": (range(0, TRAIN_ROWS - size + 1, step), range(0, w - size + 1, step)),
                 "val": (range(TRAIN_ROWS, h - size + 1, size), range(0, w - size + 1, size))}
        for split, (rows, cols) in grids.items():
            for y in rows:
                for x in cols:
                    yield split, f"nuclei_{y:03d}_{x:03d}", image[y:y + size, x:x + size], boxes, (x, y)

    return write_box_tiles(root, crops(), ["nucleus"])

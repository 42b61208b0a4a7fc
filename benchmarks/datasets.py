"""Real image-classification data of other kinds than the built-in greyscale sets, from files
that packages ship (no download): for the recipes benchmark only.

- ``textures``: natural-photo textures, the Brodatz protocol: each class is one large
  photograph (fur, fruit, a painting, a facade, stars, tissue, gravel …) and its samples are
  48 px patches; train, tune and test patches come from three disjoint horizontal bands of
  the photo (top 55 %, next 15 %, bottom 30 %), so no test pixel was seen in training.
  Photos from Debian's ``opencv-doc`` examples and scikit-image's ``skimage.data``.
- ``faces``: scikit-image's ``lfw_subset``: 100 faces from Labeled Faces in the Wild and 100
  non-face patches, 25×25 greyscale; a fixed 50 / 20 / 30 split per class.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
TEXTURES = {  # class: (package, file)
    "baboon-fur": ("opencv", "baboon.jpg"),
    "fruits": ("opencv", "fruits.jpg"),
    "starry-night": ("opencv", "starry_night.jpg"),
    "building": ("opencv", "building.jpg"),
    "orange": ("opencv", "orange.jpg"),
    "apple": ("opencv", "apple.jpg"),
    "deep-field": ("skimage", "hubble_deep_field.jpg"),
    "ihc-tissue": ("skimage", "ihc.png"),
    "gravel": ("skimage", "gravel.png"),
    "brick": ("skimage", "brick.png"),
}
BANDS = (0.55, 0.70)  # train band ends, tune band ends; the rest is test


def _skimage_dir() -> Path:
    import skimage

    return Path(os.path.dirname(skimage.__file__)) / "data"


def _photo(source: str, name: str) -> np.ndarray:
    folder = OPENCV if source == "opencv" else _skimage_dir()
    path = folder / name
    if not path.is_file():
        hint = "apt-get install opencv-doc" if source == "opencv" else "pip install scikit-image"
        raise FileNotFoundError(f"{path} not found ({hint})")
    return np.asarray(Image.open(path).convert("RGB"))


def _patches(img: np.ndarray, top: float, bottom: float, size: int, stride: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    y0, y1 = int(top * h), int(bottom * h)
    return [img[y:y + size, x:x + size] for y in range(y0, y1 - size + 1, stride)
            for x in range(0, w - size + 1, stride)]


def _band_of(y0: int, size: int, h: int, bands: tuple[float, float]) -> int | None:
    """0 train, 1 tune, 2 test: the band a patch of rows y0…y0+size lies wholly inside, or None."""
    edges = [0, int(bands[0] * h), int(bands[1] * h), h]
    for i in range(3):
        if edges[i] <= y0 and y0 + size <= edges[i + 1]:
            return i
    return None


def _pools(patches) -> tuple:
    """(band, image, label) triples → (train, test, tune) (images, labels) arrays."""
    pools: list[tuple[list, list]] = [([], []), ([], []), ([], [])]
    for band, img, label in patches:
        pools[band][0].append(img)
        pools[band][1].append(label)
    (trx, tr_y), (tux, tu_y), (tex, te_y) = [(np.stack(x), np.array(y, np.uint8)) for x, y in pools]
    return (trx, tr_y), (tex, te_y), (tux, tu_y)


def textures(size: int = 48, stride: int = 24, bands: tuple[float, float] = BANDS,
             classes: list[str] | None = None, train_stride: int | None = None):
    """(train, test, classes, tune) pools as (images, labels) arrays: ``size`` px patches
    every ``stride`` px (``train_stride`` in the training band) of each class's photo, the
    bands of rows ending at ``bands``; ``classes``: a subset of TEXTURES."""
    names = classes or list(TEXTURES)
    edges = [(0.0, bands[0]), (bands[0], bands[1]), (bands[1], 1.0)]
    patches = []
    for c, name in enumerate(names):
        img = _photo(*TEXTURES[name])
        for band, (top, bottom) in enumerate(edges):
            step = train_stride if band == 0 and train_stride else stride
            patches += [(band, p, c) for p in _patches(img, top, bottom, size, step)]
    train, test, tune = _pools(patches)
    return train, test, names, tune


def faces():
    x = np.load(_skimage_dir() / "lfw_subset.npy")  # 100 faces, then 100 non-faces; floats in [0, 1]
    x = np.rint(x * 255).astype(np.uint8)
    y = np.repeat(np.arange(2, dtype=np.uint8), 100)
    idx = np.arange(200) % 100
    train, tune, test = idx < 50, (idx >= 50) & (idx < 70), idx >= 70
    return (x[train], y[train]), (x[test], y[test]), ["face", "not-face"], (x[tune], y[tune])


LOADERS = {"textures": textures, "faces": faces}


# --- RGB sets at the default 224 px, for the threshold of ``auto`` (python -m benchmarks threshold) ---

def textures224():
    """The textures photos cut into 96 px patches (stride 48) — upscaled to 224 px by the
    pipeline, as a user's photos of a few hundred pixels would be; bands 50 / 20 / 30 %."""
    return textures(96, 48, (0.5, 0.7))


def photos4():
    """Four of the textures photos (fur, a fruit bowl, an orange, an apple: ImageNet-like
    subjects) with training patches every 24 px: up to 126 per class, overlapping."""
    return textures(96, 48, (0.5, 0.7), ["baboon-fur", "fruits", "orange", "apple"], train_stride=24)


def _centred(image: np.ndarray, centres: dict[int, np.ndarray], size: int, bands=(0.5, 0.7)) -> list:
    """Square ``size`` patches of ``image`` centred at each class's (x, y) points, wholly
    inside the image and one band of its rows."""
    h, w = image.shape[:2]
    out = []
    for label, points in centres.items():
        for x, y in np.round(points).astype(int):
            x0, y0 = x - size // 2, y - size // 2
            band = _band_of(y0, size, h, bands)
            if band is not None and 0 <= x0 <= w - size:
                out.append((band, image[y0:y0 + size, x0:x0 + size], label))
    return out


def crowns(size: int = 64, seed: int = 0):
    """deepforest's aerial tiles as patch classification: ``crown`` (a 64 px patch centred
    on a tree crown's box) vs ``gap`` (centred on a point inside no crown box, at least 20 px
    from every crown's centre). Bands of each tile's rows: 50 / 20 / 30 %."""
    from visiontl.data.trees import TILES, _voc_boxes, deepforest_dir

    source = deepforest_dir()
    if source is None:
        raise FileNotFoundError("deepforest's tiles not found: pip install --no-deps deepforest")
    rng = np.random.default_rng(seed)
    patches = []
    for tile in TILES:
        img = np.asarray(Image.open(source / f"{tile}.png").convert("RGB"))
        boxes = _voc_boxes(source / f"{tile}.xml")
        centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
        h, w = img.shape[:2]
        cand = rng.uniform([0, 0], [w, h], size=(20 * len(boxes), 2))
        inside = ((cand[:, None, 0] >= boxes[:, 0]) & (cand[:, None, 0] <= boxes[:, 2])
                  & (cand[:, None, 1] >= boxes[:, 1]) & (cand[:, None, 1] <= boxes[:, 3])).any(1)
        far = np.linalg.norm(cand[:, None] - centres[None], axis=2).min(1) >= 20
        gaps = cand[~inside & far][:len(boxes)]
        patches += _centred(img, {0: centres, 1: gaps}, size)
    train, test, tune = _pools(patches)
    return train, test, ["crown", "gap"], tune


def nuclei(size: int = 48, seed: int = 0):
    """stardist's fluorescence image (grey, written as RGB) as patch classification:
    ``nucleus`` (a 48 px patch centred on a pixel inside a nucleus, 2 px from its edge) vs
    ``background`` (centred 2 px or more outside every nucleus). Bands of rows: 50 / 20 / 30 %."""
    from scipy import ndimage

    from visiontl.data.nuclei import load_nuclei

    image, mask = load_nuclei()
    rgb = np.repeat(image[..., None], 3, axis=2)
    rng = np.random.default_rng(seed)
    inner = ndimage.binary_erosion(mask > 0, iterations=2)
    outer = ~ndimage.binary_dilation(mask > 0, iterations=2)
    points = {}
    for label, region in ((0, inner), (1, outer)):
        ys, xs = np.nonzero(region)
        pick = rng.choice(len(xs), size=min(len(xs), 1500), replace=False)
        points[label] = np.stack([xs[pick], ys[pick]], 1).astype(np.float64)
    train, test, tune = _pools(_centred(rgb, points, size))
    return train, test, ["nucleus", "background"], tune


LOADERS.update({"textures224": textures224, "photos4": photos4, "crowns": crowns, "nuclei": nuclei})


def galaxies(crop: int = 64, threshold: float = 0.2, min_area: int = 20) -> Path:
    """A box set far from ImageNet's photos and from the tree / nuclei tiles: scikit-image's
    Hubble eXtreme Deep Field (872×1000 RGB), every galaxy or star a box. Boxes are the
    connected regions of the smoothed brightness above ``threshold`` (at least ``min_area``
    px: about 360 objects, a median side of 8 px); the image is cut into ``crop`` px tiles
    without overlap, every fifth tile (in grid order) for validation: 156 / 39 tiles.
    Returns the data.yaml (YOLO layout and COCO ``{train,val}.json``)."""
    from skimage import color, filters, measure

    from visiontl.data.builtin import cache_dir
    from visiontl.data.trees import grid_crops, write_box_tiles

    root = cache_dir() / "datasets" / f"hubble-galaxies-{crop}-v1"
    if (root / ".complete").is_file():
        return root / "data.yaml"
    image = np.asarray(Image.open(_skimage_dir() / "hubble_deep_field.jpg").convert("RGB"))
    smooth = filters.gaussian(color.rgb2gray(image), 1.5)
    regions = [r for r in measure.regionprops(measure.label(smooth > threshold)) if r.area >= min_area]
    boxes = np.array([[r.bbox[1], r.bbox[0], r.bbox[3], r.bbox[2]] for r in regions], np.float32)
    return write_box_tiles(root, grid_crops("hudf", image, boxes, crop), ["galaxy"])


def digit_pages(train: int = 167, val: int = 42, side: int = 320, seed: int = 0) -> Path:
    """A 10-class box set far from ImageNet's photos: handwritten digits on paper. The digits
    are the 5,000 real 20 px handwritten digits of Debian ``opencv-doc``'s ``digits.png``
    (50 rows × 100 columns, 500 per class); each page is ``side`` px of noisy, unevenly lit
    paper with 4–12 digits, dark ink, 1–2.5× their size, not touching; a box is the ink's
    tight extent. Training pages take digits from columns 0–79 of the sheet, validation pages
    from columns 80–99 (no written digit is in both). Returns the data.yaml (YOLO and COCO)."""
    from visiontl.data.builtin import cache_dir
    from visiontl.data.trees import write_box_tiles

    root = cache_dir() / "datasets" / f"digit-pages-{train}-{val}-{side}-v1"
    if (root / ".complete").is_file():
        return root / "data.yaml"
    sheet = np.asarray(Image.open(OPENCV / "digits.png").convert("L"))
    cells = sheet.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3)  # row, column, 20, 20
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side

    def page(columns: range) -> tuple[np.ndarray, np.ndarray]:
        light = 200 + 40 * rng.random() + 25 * (rng.random() - 0.5) * (xx + yy)  # uneven lighting
        paper = light + rng.normal(0, 6, (side, side))
        ink = np.zeros((side, side))
        boxes: list[list[float]] = []
        for _ in range(rng.integers(4, 13)):
            row, col = rng.integers(50), rng.choice(columns)
            size = int(round(20 * rng.uniform(1.0, 2.5)))
            digit = np.asarray(Image.fromarray(cells[row, col]).resize((size, size), Image.BILINEAR), np.float64) / 255
            ys, xs = np.nonzero(digit > 0.25)
            if len(xs) == 0:
                continue
            for _try in range(20):  # a free place: the ink's box, 3 px apart from the others
                x0, y0 = rng.integers(0, side - size, size=2)
                box = [x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1]
                if all(box[0] >= b[2] + 3 or box[2] + 3 <= b[0] or box[1] >= b[3] + 3 or box[3] + 3 <= b[1]
                       for b in boxes):
                    ink[y0:y0 + size, x0:x0 + size] = np.maximum(ink[y0:y0 + size, x0:x0 + size], digit)
                    boxes.append(box + [row // 5])
                    break
        grey = paper * (1 - 0.85 * ink)
        tint = rng.uniform(0.9, 1.0, 3)
        rgb = np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)
        return rgb, np.array(boxes, np.float32).reshape(-1, 5)

    def pages():
        for split, n, columns in (("train", train, range(0, 80)), ("val", val, range(80, 100))):
            for i in range(n):
                image, boxes = page(columns)
                yield split, f"page_{split}_{i:03d}", image, boxes, (0, 0)

    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    return write_box_tiles(root, pages(), names)

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


def textures(size: int = 48, stride: int = 24):
    """(train, test, classes, tune) pools as (images, labels) arrays."""
    pools: list[tuple[list, list]] = [([], []), ([], []), ([], [])]  # train, tune, test
    bands = [(0.0, BANDS[0]), (BANDS[0], BANDS[1]), (BANDS[1], 1.0)]
    for c, (source, name) in enumerate(TEXTURES.values()):
        img = _photo(source, name)
        for pool, (top, bottom) in zip(pools, bands):
            found = _patches(img, top, bottom, size, stride)
            pool[0].extend(found)
            pool[1].extend([c] * len(found))
    (trx, tr_y), (tux, tu_y), (tex, te_y) = [(np.stack(x), np.array(y, np.uint8)) for x, y in pools]
    return (trx, tr_y), (tex, te_y), list(TEXTURES), (tux, tu_y)


def faces():
    x = np.load(_skimage_dir() / "lfw_subset.npy")  # 100 faces, then 100 non-faces; floats in [0, 1]
    x = np.rint(x * 255).astype(np.uint8)
    y = np.repeat(np.arange(2, dtype=np.uint8), 100)
    idx = np.arange(200) % 100
    train, tune, test = idx < 50, (idx >= 50) & (idx < 70), idx >= 70
    return (x[train], y[train]), (x[test], y[test]), ["face", "not-face"], (x[tune], y[tune])


LOADERS = {"textures": textures, "faces": faces}

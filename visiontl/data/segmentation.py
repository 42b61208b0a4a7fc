"""Segmentation data: an images folder and a masks folder, paired by file name.

A mask is an image of the same size whose pixel values say the class: an index PNG
(grayscale or palette mode, value = class index), values listed in ``mask_values`` (e.g.
``[0, 255]`` for black/white binary masks), or colours listed in ``palette`` (RGB masks).
Pixels equal to ``ignore_index`` (255 by default) are void: no loss, no metric.

Every pair is checked before training starts (so a broken file fails the run at once,
naming it): a missing mask, an image and mask of different sizes, a mask value outside the
class list. The same pass counts the pixels of each class (for ``class_weights: balanced``).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .images import KEEP, BadImageError, DataError, check_image, list_images, read_image

MASK_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp", ".gif")


@dataclass(frozen=True)
class MaskSpec:
    """How mask files encode classes; ``decode`` turns one into class indices."""

    num_classes: int
    mask_values: tuple[int, ...] = ()  # raw value of each class; () = the value is the class index
    palette: tuple[tuple[int, int, int], ...] = ()  # RGB colour of each class (colour masks)
    ignore_index: int = 255

    def decode(self, path: str | Path) -> np.ndarray:
        """(H, W) int64 class indices, ``ignore_index`` where void; DataError naming the file
        and the first offending value otherwise."""
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode in ("RGBA", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA"):
                    im = im.convert("L" if im.mode == "LA" else "RGB")
                raw = np.asarray(im)
        except FileNotFoundError:
            raise DataError(f"{path}: mask file not found") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise DataError(f"{path}: not a readable mask image ({e})") from None
        if raw.ndim == 3:
            return self._from_colours(raw, path)
        if raw.dtype.kind == "f":
            if not np.all(np.isfinite(raw)) or not np.array_equal(raw, np.round(raw)):
                raise DataError(f"{path}: a float mask with non-integer values; masks hold class indices")
            raw = raw.astype(np.int64)
        values, inverse = np.unique(raw, return_inverse=True)
        lookup = np.empty(len(values), np.int64)
        for k, v in enumerate(values.tolist()):
            lookup[k] = self._class_of(v, path)
        return lookup[inverse.reshape(raw.shape)]

    def _class_of(self, value, path) -> int:
        if self.mask_values:
            if value in self.mask_values:
                return self.mask_values.index(value)
            if value == self.ignore_index:
                return self.ignore_index
            raise DataError(f"{path}: mask value {value} is not in data.mask_values {list(self.mask_values)} "
                            f"(nor the ignore_index {self.ignore_index})")
        if value == self.ignore_index or (isinstance(value, (int, np.integer)) and 0 <= value < self.num_classes):
            return int(value)
        raise DataError(f"{path}: mask value {value} is outside the {self.num_classes} classes (0…"
                        f"{self.num_classes - 1}, ignore_index {self.ignore_index}); for masks that store other values "
                        "set data.mask_values (e.g. [0, 255]) or data.palette (colour masks)")

    def _from_colours(self, rgb: np.ndarray, path) -> np.ndarray:
        if not self.palette:
            raise DataError(f"{path}: a colour (RGB) mask needs data.palette, the RGB colour of each class; "
                            "or save masks as single-channel index images")
        code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        out = np.full(code.shape, self.ignore_index, np.int64)
        known = np.zeros(code.shape, bool)
        for k, (r, g, b) in enumerate(self.palette):
            hit = code == ((r << 16) | (g << 8) | b)
            out[hit], known = k, known | hit
        if not known.all():
            y, x = np.argwhere(~known)[0]
            raise DataError(f"{path}: colour {tuple(int(c) for c in rgb[y, x])} at (x={x}, y={y}) is not in "
                            f"data.palette {[list(c) for c in self.palette]}")
        return out


@dataclass
class MaskReport:
    """What the check of a split found: pairs, pixels per class, void pixels."""

    source: str
    pairs: int = 0
    pixels: list[int] = field(default_factory=list)
    void: int = 0
    shorter_sides: list[int] = field(default_factory=list)  # per image, to tell when images are small

    def text(self, classes: Sequence[str]) -> str:
        total = max(sum(self.pixels) + self.void, 1)
        shares = ", ".join(f"{c} {n / total:.1%}" for c, n in zip(classes, self.pixels))
        return f"{self.source}: {self.pairs} image/mask pairs; pixels: {shares}, void {self.void / total:.1%}"


def find_pairs(images: str | Path, masks: str | Path, *, suffix: str = "") -> list[tuple[Path, Path]]:
    """(image, mask) for every image under ``images``; the mask has the same relative path
    and stem (plus ``suffix``, e.g. ``_mask``) with any mask extension."""
    images, masks = Path(images).expanduser(), Path(masks).expanduser()
    for folder, what in ((images, "images"), (masks, "masks")):
        if not folder.is_dir():
            raise DataError(f"{folder}: {what} folder not found")
    found = list_images(images)
    if not found:
        raise DataError(f"{images}: no images found")
    pairs = []
    for image in found:
        rel = image.relative_to(images).with_suffix("")
        stem = masks / rel.parent / (rel.name + suffix)
        mask = next((stem.with_name(stem.name + ext) for ext in MASK_EXTENSIONS
                     if stem.with_name(stem.name + ext).is_file()), None)
        if mask is None:
            raise DataError(f"{image}: no mask for it: expected {stem}.png (or {', '.join(MASK_EXTENSIONS[1:])})")
        pairs.append((image, mask))
    return pairs


def split_folder(root: str | Path) -> tuple[Path, Path]:
    """A dataset folder → its ``images/`` and ``masks/`` subfolders (``labels/``,
    ``annotations/`` also accepted for masks)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: segmentation data folder not found")
    for name in ("masks", "labels", "annotations"):
        if (root / name).is_dir() and (root / "images").is_dir():
            return root / "images", root / name
    raise DataError(f"{root}: expected images/ and masks/ subfolders (or set data.train to the images folder and "
                    "data.train_masks to the masks folder)")


def check_pairs(pairs: Sequence[tuple[Path, Path]], spec: MaskSpec, source: str) -> MaskReport:
    """Decode every mask once: sizes match, values are valid; count pixels per class."""
    report = MaskReport(source, pixels=[0] * spec.num_classes)
    for image, mask in pairs:
        try:
            size = check_image(image)
        except BadImageError as e:
            raise DataError(str(e)) from None
        classes = spec.decode(mask)
        if classes.shape[::-1] != size:
            raise DataError(f"{mask}: mask is {classes.shape[1]}×{classes.shape[0]} but its image {image} is "
                            f"{size[0]}×{size[1]}")
        counts = np.bincount(classes[classes != spec.ignore_index].ravel(), minlength=spec.num_classes)
        report.pixels = [a + int(b) for a, b in zip(report.pixels, counts)]
        report.void += int((classes == spec.ignore_index).sum())
        report.pairs += 1
        report.shorter_sides.append(min(size))
    return report


class SegmentationDataset(Dataset):
    """(image path, mask path) pairs → (CHW uint8 image, (H, W) int64 class mask).

    ``transform(image, mask)`` takes and returns numpy arrays (see
    :mod:`visiontl.data.seg_transforms`).
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], classes: Sequence[str], spec: MaskSpec,
                 transform: Callable | None = None, report: MaskReport | None = None) -> None:
        self.samples, self.classes, self.spec = list(pairs), list(classes), spec
        self.transform, self.report = transform, report

    def __len__(self) -> int:
        return len(self.samples)

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self.samples[i]
        return read_image(image), self.spec.decode(mask)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.raw(i)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return (torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)))

    def subset(self, indices: Sequence[int], transform: Callable | None = KEEP) -> "SegmentationDataset":
        """The samples at ``indices``, with ``transform`` (KEEP: this dataset's; None: none,
        the images at their own size)."""
        return SegmentationDataset([self.samples[i] for i in indices], self.classes, self.spec,
                                   self.transform if transform is KEEP else transform, self.report)


def collate(batch: list, ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images and masks, padding different sizes to the largest (images with 0,
    masks with ``ignore_index``, so padding counts for nothing)."""
    h = max(img.shape[1] for img, _ in batch)
    w = max(img.shape[2] for img, _ in batch)
    images = torch.zeros(len(batch), 3, h, w, dtype=torch.uint8)
    masks = torch.full((len(batch), h, w), ignore_index, dtype=torch.int64)
    for k, (img, mask) in enumerate(batch):
        images[k, :, : img.shape[1], : img.shape[2]] = img
        masks[k, : mask.shape[0], : mask.shape[1]] = mask
    return images, masks


def print_report(report: MaskReport, classes: Sequence[str]) -> None:
    print(report.text(classes), file=sys.stderr)

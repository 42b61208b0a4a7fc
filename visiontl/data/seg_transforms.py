"""Mask-aware pipelines for segmentation. Geometry (scale, crop, flips, rotation) moves
image and mask together, the mask with nearest-neighbour interpolation and void
(``ignore_index``) where the rotation or padding has no pixels; colour changes touch the
image only. Each image is first brought to the input scale of :func:`input_scale`;
training works on random crops at that scale, and prediction slides a window over the
whole image at the same scale, so the model sees the same scale in both."""
from __future__ import annotations


import albumentations as A
import cv2
import numpy as np
import torch

from .augment import SegmentAugment


def input_scale(height: int, width: int, size: int, *, upscale: bool, downscale: float) -> float:
    """The factor an image is scaled by so that ``size`` (``data.image_size``) is its input
    size: a shorter side below ``size`` grows to it (``upscale``); one above it but at most
    ``downscale`` × ``size`` shrinks to it, so the whole image is the input (what a resize
    loop gives); larger images (scenes, orthophotos) keep their scale: random crops in
    training, tiles in prediction. 1: kept as it is."""
    short = max(min(height, width), 1)
    if short < size:
        return size / short if upscale else 1.0
    return size / short if short <= downscale * size else 1.0


def rescale_pair(image: np.ndarray, mask: np.ndarray, f: float) -> tuple[np.ndarray, np.ndarray]:
    """An image (bilinear; area-averaged when shrinking) and its mask (nearest) scaled by ``f``."""
    if f == 1.0:
        return image, mask
    h, w = mask.shape[:2]
    H, W = max(1, round(h * f)), max(1, round(w * f))
    image = cv2.resize(image, (W, H), interpolation=cv2.INTER_LINEAR if f > 1 else cv2.INTER_AREA)
    ys = np.minimum(((np.arange(H) + 0.5) / f).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(W) + 0.5) / f).astype(np.int64), w - 1)
    return image, mask[ys][:, xs]


class SegmentTrain:
    """Images scaled to the input size where :func:`input_scale` says so, then random scale,
    a random ``size``² crop (padded with void where the image is smaller), flips, rotations,
    colour. Seeded from torch's RNG: reproducible runs and resumes."""

    def __init__(self, size: int, aug: SegmentAugment, ignore_index: int = 255, upscale: bool = True,
                 downscale: float = 2.0) -> None:
        self.size, self.upscale, self.downscale = size, upscale, downscale
        ops: list = []
        if (aug.scale_min, aug.scale_max) != (1.0, 1.0):
            ops.append(A.RandomScale(scale_limit=(aug.scale_min - 1, aug.scale_max - 1), p=1.0))
        ops += [A.PadIfNeeded(size, size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index),
                A.RandomCrop(size, size)]
        if aug.hflip > 0:
            ops.append(A.HorizontalFlip(p=aug.hflip))
        if aug.vflip > 0:
            ops.append(A.VerticalFlip(p=aug.vflip))
        if aug.rotate90:
            ops.append(A.RandomRotate90(p=1.0))
        if aug.rotate > 0:
            ops.append(A.Rotate(limit=aug.rotate, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index,
                                p=0.5))
        if aug.color > 0:
            c = aug.color
            ops.append(A.ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(c / 4, 0.5), p=0.8))
        self.compose = A.Compose(ops)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = mask.shape[:2]
        image, mask = rescale_pair(image, mask, input_scale(h, w, self.size, upscale=self.upscale,
                                                            downscale=self.downscale))
        self.compose.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        out = self.compose(image=image, mask=mask.astype(np.int32))  # cv2 has no int64 warps
        return out["image"], out["mask"]


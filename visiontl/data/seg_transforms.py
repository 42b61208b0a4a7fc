"""Mask-aware pipelines for segmentation. Geometry (scale, crop, flips, rotation) moves
image and mask together, the mask with nearest-neighbour interpolation and void
(``ignore_index``) where the rotation or padding has no pixels; colour changes touch the
image only. Training works on random crops at the images' own scale, and prediction
slides a window over the full image, so the model sees the same scale in both."""
from __future__ import annotations


import albumentations as A
import cv2
import numpy as np
import torch

from .augment import SegmentAugment


def upscale_factor(height: int, width: int, size: int) -> float:
    """How much an image must grow for its shorter side to reach ``size`` (1: it is big enough)."""
    return max(1.0, size / max(min(height, width), 1))


def upscale_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale an image (bilinear) and its mask (nearest) up until the shorter side is ``size``."""
    h, w = mask.shape[:2]
    f = upscale_factor(h, w, size)
    if f == 1.0:
        return image, mask
    H, W = round(h * f), round(w * f)
    image = cv2.resize(image, (W, H), interpolation=cv2.INTER_LINEAR)
    ys = np.minimum((np.arange(H) / f).astype(np.int64), h - 1)
    xs = np.minimum((np.arange(W) / f).astype(np.int64), w - 1)
    return image, mask[ys][:, xs]


class SegmentTrain:
    """Images smaller than ``size`` scaled up to it (``upscale``), then random scale, a random ``size``² crop (padded with void where the image is smaller),
    flips, rotations, colour. Seeded from torch's RNG: reproducible runs and resumes."""

    def __init__(self, size: int, aug: SegmentAugment, ignore_index: int = 255, upscale: bool = True) -> None:
        self.size, self.upscale = size, upscale
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
        if self.upscale:
            image, mask = upscale_pair(image, mask, self.size)
        self.compose.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        out = self.compose(image=image, mask=mask.astype(np.int32))  # cv2 has no int64 warps
        return out["image"], out["mask"]


"""albumentations pipelines built from config. Pixels stay RGB uint8 here: normalisation
belongs to the backbone (``Backbone.preprocess``), because it depends on the weights."""
from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch


@dataclass
class AugmentConfig:
    random_resized_crop: bool = True  # random crop of scale_min..1 of the area, resized; false: plain resize
    scale_min: float = 0.6  # smallest crop area fraction for random_resized_crop
    hflip: float = 0.5  # probability
    vflip: float = 0.0  # probability (right for aerial/microscopy images, wrong for photos)
    rotate: float = 0.0  # max degrees
    color_jitter: float = 0.2  # brightness/contrast/saturation strength; 0 = off


def train_transform(size: int, aug: AugmentConfig) -> A.Compose:
    ops: list = []
    if aug.random_resized_crop:
        ops.append(A.RandomResizedCrop(size=(size, size), scale=(aug.scale_min, 1.0)))
    else:
        ops.append(A.Resize(size, size))
    if aug.hflip > 0:
        ops.append(A.HorizontalFlip(p=aug.hflip))
    if aug.vflip > 0:
        ops.append(A.VerticalFlip(p=aug.vflip))
    if aug.rotate > 0:
        ops.append(A.Rotate(limit=aug.rotate, border_mode=cv2.BORDER_REFLECT_101, p=0.5))
    if aug.color_jitter > 0:
        j = aug.color_jitter
        ops.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(j / 4, 0.5), p=0.8))
    return A.Compose(ops)


def eval_transform(size: int) -> A.Compose:
    return A.Compose([A.Resize(size, size)])


def apply(transform: A.Compose, image: np.ndarray) -> torch.Tensor:
    """Run ``transform`` seeded from torch's RNG (so runs and resumes are reproducible),
    return a CHW uint8 tensor."""
    transform.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
    out = transform(image=image)["image"]
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))

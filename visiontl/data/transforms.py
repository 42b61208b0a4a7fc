"""albumentations pipelines built from config. Pixels stay RGB uint8 here: normalisation
belongs to the backbone (``Backbone.preprocess``), because it depends on the weights."""
from __future__ import annotations


import albumentations as A
import cv2
import numpy as np
import torch

from .augment import AugmentConfig


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

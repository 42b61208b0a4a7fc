"""Box-aware pipelines for detection: letterbox to a square, then (training) optional
mosaic, random scale/translate, flips and colour, with albumentations keeping the boxes
right. Pixels stay RGB uint8; normalisation belongs to the backbone."""
from __future__ import annotations


import albumentations as A
import cv2
import numpy as np
import torch

from .augment import DetectAugment

FILL = 114  # YOLO's grey for padding


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize the longer side to ``size`` and pad to ``size``² (centred): (image, scale,
    (left, top) padding). Boxes map as ``xy * scale + (left, top)``."""
    h, w = image.shape[:2]
    r = size / max(h, w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    if (nh, nw) != (h, w):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
    top, left = (size - nh) // 2, (size - nw) // 2
    out = np.full((size, size, 3), FILL, np.uint8)
    out[top:top + nh, left:left + nw] = image
    return out, r, (left, top)


def unletterbox(boxes: torch.Tensor, scale: float, pad: tuple[int, int], width: int, height: int) -> torch.Tensor:
    """Boxes on a letterboxed image → boxes on the original ``width`` × ``height`` image."""
    offset = torch.tensor([pad[0], pad[1], pad[0], pad[1]], dtype=boxes.dtype, device=boxes.device)
    out = (boxes - offset) / scale
    out[:, 0::2] = out[:, 0::2].clamp(0, width)
    out[:, 1::2] = out[:, 1::2].clamp(0, height)
    return out


def to_tensors(image: np.ndarray, boxes, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(CHW uint8 image, (n, 4) float32 boxes, (n,) int64 labels)."""
    return (torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)),
            torch.as_tensor(np.asarray(labels, np.int64).reshape(-1)))


class DetectEval:
    """Letterbox only; deterministic, and the same geometry ``predict`` inverts."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, dataset=None):
        out, r, (left, top) = letterbox(image, self.size)
        return to_tensors(out, boxes * r + np.array([left, top, left, top], np.float32), labels)


class DetectTrain:
    """Training augmentation, seeded from torch's RNG (reproducible runs and resumes)."""

    def __init__(self, size: int, aug: DetectAugment) -> None:
        self.size, self.aug = size, aug
        bbox = A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True, filter_invalid_bboxes=True,
                            min_visibility=0.3, min_area=4.0)
        ops = []  # after visiontl's own letterbox, the one evaluation and predict use
        if aug.scale > 0 or aug.translate > 0:
            ops.append(A.Affine(scale=(1 - aug.scale, 1 + aug.scale), translate_percent=(-aug.translate, aug.translate),
                                border_mode=cv2.BORDER_CONSTANT, fill=FILL, p=1.0))
        if aug.hflip > 0:
            ops.append(A.HorizontalFlip(p=aug.hflip))
        if aug.vflip > 0:
            ops.append(A.VerticalFlip(p=aug.vflip))
        if aug.color > 0:
            c = aug.color
            ops.append(A.ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(c / 4, 0.5), p=0.8))
        self.plain = A.Compose(ops, bbox_params=bbox) if ops else None  # None: the letterbox alone
        mosaic = A.Mosaic(grid_yx=(2, 2), target_size=(size, size), cell_shape=(size, size), fill=FILL, p=1.0)
        self.mosaic = A.Compose([mosaic, *ops], bbox_params=bbox) if aug.mosaic > 0 else None

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, dataset=None):
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        data = {"image": image, "bboxes": boxes, "labels": labels}
        if self.mosaic is not None and dataset is not None and torch.rand(()).item() < self.aug.mosaic:
            others = torch.randint(0, len(dataset), (3,)).tolist()
            data["mosaic_metadata"] = [dict(zip(("image", "bboxes", "labels"), dataset.raw(j))) for j in others]
            compose = self.mosaic
        else:  # the same letterbox (resize and padding) as evaluation and predict, then the random part
            image, r, (left, top) = letterbox(image, self.size)
            data = {"image": image, "bboxes": np.asarray(boxes, np.float32).reshape(-1, 4) * r
                    + np.array([left, top, left, top], np.float32), "labels": labels}
            compose = self.plain
            if compose is None:
                return to_tensors(data["image"], data["bboxes"], labels)
        compose.set_random_seed(seed)
        out = compose(**data)
        return to_tensors(out["image"], out["bboxes"], out["labels"])

"""Each task's ``data.augment`` config section: plain dataclasses with no heavy imports (the
pipelines that read them are in transforms.py, seg_transforms.py and detect_transforms.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

# RANGES: each key's allowed values, as an interval ([ closed, ( open); checked with the config


@dataclass
class AugmentConfig:
    random_resized_crop: bool = True  # random crop of scale_min..1 of the area, resized; false: plain resize
    scale_min: float = 0.6  # smallest crop area fraction for random_resized_crop
    hflip: float = 0.5  # probability
    vflip: float = 0.0  # probability (right for aerial/microscopy images, wrong for photos)
    rotate: float = 0.0  # max degrees
    color_jitter: float = 0.2  # brightness/contrast/saturation strength; 0 = off
    RANGES: ClassVar[dict[str, str]] = {"scale_min": "(0, 1]", "hflip": "[0, 1]", "vflip": "[0, 1]",
                                        "rotate": "[0, 180]", "color_jitter": "[0, 1]"}


@dataclass
class SegmentAugment:
    scale_min: float = 0.75  # random rescale before cropping, in [scale_min, scale_max]
    scale_max: float = 1.25  # (scale_min < 1: a smaller view padded with void)
    hflip: float = 0.5  # probability
    vflip: float = 0.0  # probability (microscopy and aerial images have no "up")
    rotate90: bool = False  # random multiples of 90° (microscopy, aerial)
    rotate: float = 0.0  # max degrees of a free rotation
    color: float = 0.2  # brightness / contrast / saturation (hue a quarter of it); 0 = off
    RANGES: ClassVar[dict[str, str]] = {"scale_min": "(0, 1]", "scale_max": "[1, 4]", "hflip": "[0, 1]",
                                        "vflip": "[0, 1]", "rotate": "[0, 180]", "color": "[0, 1]"}


@dataclass
class DetectAugment:
    hflip: float = 0.5  # probability
    vflip: float = 0.0  # probability (aerial and microscopy images have no "up")
    scale: float = 0.25  # random zoom in [1 - scale, 1 + scale]
    translate: float = 0.1  # random shift, fraction of the image size
    color: float = 0.3  # brightness / contrast / saturation (hue a quarter of it); 0 = off
    mosaic: float = 0.0  # probability of a 2×2 mosaic of four training images
    RANGES: ClassVar[dict[str, str]] = {"hflip": "[0, 1]", "vflip": "[0, 1]", "scale": "[0, 1)",
                                        "translate": "[0, 0.5]", "color": "[0, 1]", "mosaic": "[0, 1]"}

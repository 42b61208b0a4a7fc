"""The segmentation task's config: its own sections plus the engine's shared ones."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from ...data.augment import SegmentAugment
from ...engine.config import DistillConfig, FinetuneConfig, OptimConfig, TrainConfig


@dataclass
class SegmentData:
    train: str = ""  # a folder with images/ and masks/, or an images folder (with train_masks)
    train_masks: str = ""  # the masks folder when train is an images folder
    val: str = ""  # the same for validation; empty: a random split of train
    val_masks: str = ""  # mask folder of data.val (default: its masks/)
    mask_suffix: str = ""  # mask name = image stem + suffix (e.g. "_mask") + .png/.tif/…
    classes: list[str] = field(default_factory=list)  # class names in index order, e.g. [background, road]
    mask_values: list[int] = field(default_factory=list)  # raw mask value of each class, e.g. [0, 255]
    palette: list[list[int]] = field(default_factory=list)  # RGB of each class: reads colour masks, draws overlays
    ignore_index: int = 255  # void pixels: no loss, no metric
    val_fraction: float = 0.2  # share of train held out when data.val is empty
    image_size: int = 256  # training crop size (a multiple of 32)
    upscale: bool = True  # images whose shorter side is below image_size are scaled up to it (train and predict)
    downscale: float = 2.0  # images whose shorter side is above image_size, up to this × it, are scaled down to it (whole image in view); larger ones keep their scale (crops, tiles); 1 = off
    augment: SegmentAugment = field(default_factory=SegmentAugment)


@dataclass
class SegmentModel:
    backbone: str = "mobilenet_v2"  # a registry name (visiontl backbones) or timm:NAME
    weights: str = "imagenet"  # imagenet | a tag | a file path | none
    architecture: Literal["unet", "fpn", "deeplabv3plus"] = "unet"  # decoder
    width: int = 0  # decoder channels (U-Net: first block, halved per block); 0 = 256


@dataclass
class SegmentEval:
    tile: int = 0  # images larger than this are predicted in overlapping tiles of this size; 0 = data.image_size
    overlap: float = 0.25  # fraction of a tile shared with its neighbour
    overlay_alpha: float = 0.45  # opacity of class colours in predicted overlays


@dataclass
class SegmentLossConfig:
    ce: float = 1.0  # weight of cross-entropy in the sum
    dice: float = 1.0  # weight of the Dice loss
    focal: float = 0.0  # weight of the focal loss
    focal_gamma: float = 2.0  # focal loss focusing; 0 = plain cross-entropy
    class_weights: Optional[Union[Literal["balanced"], list[float]]] = None  # balanced: from the training pixels


@dataclass
class SegmentConfig:
    task: Literal["segment"] = "segment"
    data: SegmentData = field(default_factory=SegmentData)
    model: SegmentModel = field(default_factory=SegmentModel)
    loss: SegmentLossConfig = field(default_factory=SegmentLossConfig)
    eval: SegmentEval = field(default_factory=SegmentEval)
    # full, as the Python API. two_phase: after the frozen epochs everything trains as in full
    # (phase2: full, fastai's fine_tune): a U-Net's decoder is most of the model and starts from
    # scratch, so it needs the LR a classifier's small head can do without. With the gentle phase 2
    # (top 40 % of the blocks at 0.05 ×, the decoder at 0.5 ×) two_phase ended 2.5 points below a
    # plain smp loop on aerial crowns; with this one it ties the loop there and gains 1–2 points on
    # two microscopy sets. gradual keeps the gentle rates but runs one LR schedule after the frozen
    # epoch (gradual_schedule: once): with the decoder's schedule restarted at every block, runs
    # ended up to 9 points below their best epoch; with one, within 0.5, and 0.3–3.9 points higher
    # on all three sets (benchmarks/RESULTS.md, small mask datasets)
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(strategy="full", phase2="full",
                                                                            gradual_schedule="once"))
    # the whole network trains from the first step (full): one epoch of linear warmup keeps
    # AdamW's first full-size steps off the pretrained encoder, as every shipped segmentation
    # recipe does; on three small mask sets it matched or beat no warmup (benchmarks/RESULTS.md)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(warmup_epochs=1.0))
    # mask sets are small: at least 8 optimiser steps an epoch (the engine's default is 4); on three
    # small mask sets 8 matched or beat 4 (benchmarks/RESULTS.md, small mask datasets)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(min_steps_per_epoch=8))
    distill: DistillConfig = field(default_factory=DistillConfig)  # train on a teacher's soft targets too

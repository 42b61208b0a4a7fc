"""The detection task's config: its own sections plus the engine's shared ones."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...data.augment import DetectAugment
from ...engine.config import DistillConfig, FinetuneConfig, OptimConfig, TrainConfig


@dataclass
class DetectData:
    yaml: str = ""  # an ultralytics data.yaml (path, train, val, names): YOLO txt labels
    train: str = ""  # without yaml: a YOLO images folder / .txt list, or a COCO instances .json
    val: str = ""  # the same for validation; empty: a random split of train
    train_images: str = ""  # COCO: the folder file_name is relative to (default: the JSON's folder)
    val_images: str = ""  # image folder of a COCO data.val (default: beside the JSON)
    names: list[str] = field(default_factory=list)  # class names of a YOLO folder given without data.yaml
    val_fraction: float = 0.2  # share of train held out when data.val is empty
    image_size: int = 640  # letterboxed input side in pixels (a multiple of 32)
    augment: DetectAugment = field(default_factory=DetectAugment)


@dataclass
class DetectModel:
    architecture: Literal["yolo", "faster_rcnn"] = "yolo"  # yolo: one-stage YOLOv8 head; faster_rcnn: torchvision's
    backbone: str = "mobilenet_v2"  # a registry name (visiontl backbones) or timm:NAME
    weights: str = "imagenet"  # imagenet | a tag | a file path | none; faster_rcnn: also coco (on resnet50) or its file
    width: int = 0  # neck / head channels; 0 = yolo: from the backbone's stride-8 channels (64…256), faster_rcnn: 256
    anchor_size: int = 0  # faster_rcnn: smallest anchor side (stride 4), doubled per level; 0 = 32 × image_size / 800
    rois: int = 128  # faster_rcnn: RoIs sampled per training image for the box head (torchvision: 512, slower)
    ultralytics: str = ""  # a native ultralytics model instead: a .pt checkpoint or a model .yaml


@dataclass
class DetectLossConfig:
    box: float = 7.5  # gains, as in YOLOv8
    cls: float = 0.5  # gain of the classification (BCE) term
    dfl: float = 1.5  # gain of the distribution focal loss term


@dataclass
class DetectEvalConfig:
    conf: float = 0.001  # score threshold for metrics (low, as mAP needs the whole PR curve)
    iou: float = 0.0  # NMS IoU threshold; 0 = the architecture's: yolo 0.7 (ultralytics'), faster_rcnn 0.5 (torchvision's)
    max_det: int = 300  # most detections kept per image
    predict_conf: float = 0.25  # score threshold for `predict` outputs


@dataclass
class DetectConfig:
    task: Literal["detect"] = "detect"
    data: DetectData = field(default_factory=DetectData)
    model: DetectModel = field(default_factory=DetectModel)
    loss: DetectLossConfig = field(default_factory=DetectLossConfig)
    eval: DetectEvalConfig = field(default_factory=DetectEvalConfig)
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(strategy="full"))  # as the Python API
    optim: OptimConfig = field(default_factory=OptimConfig)
    # batch 16, ultralytics' default: on 150–170 box images, batch 32's 6 steps an epoch left
    # 30 epochs short of their plateau (benchmarks/RESULTS.md, "one change at a time")
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=16))
    distill: DistillConfig = field(default_factory=DistillConfig)  # a teacher's class scores too (boxes: labels)

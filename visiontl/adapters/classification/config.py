"""The classification task's config: its own sections plus the engine's shared ones."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, Optional, Union

from ...data.augment import AugmentConfig
from ...engine.config import DistillConfig, FinetuneConfig, OptimConfig, TrainConfig


@dataclass
class ClassifyData:
    format: Literal["folder", "csv"] = "folder"  # folder: ImageFolder layout; csv: a CSV of path,label
    train: str = ""  # folder of class folders, or a CSV with path,label
    val: str = ""  # the same for validation; empty: a stratified split of train
    root: str = ""  # base folder for relative CSV paths (default: the CSV's folder)
    val_fraction: float = 0.2  # share of train held out when data.val is empty
    image_size: int = 0  # input side in pixels (images are resized/cropped to it); 0 = the backbone's (224; inception_v3: 299)
    skip_bad: bool = False  # skip unreadable images (counted and reported) instead of failing
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ClassifyModel:
    backbone: str = "mobilenet_v2"  # a registry name (visiontl backbones) or timm:NAME
    weights: str = "imagenet"  # imagenet | a tag | a file path | none
    hidden: int = 0  # width of an optional hidden layer in the head; 0 = linear head
    dropout: float = 0.2  # before the head's last layer
    RANGES: ClassVar[dict[str, str]] = {"dropout": "[0, 1)", "hidden": "[0, inf)"}


@dataclass
class ClassifyLoss:
    label_smoothing: float = 0.0  # in [0, 1); 0 = plain cross-entropy
    class_weights: Optional[Union[Literal["balanced"], list[float]]] = None  # balanced: 1/frequency


@dataclass
class ClassifyEval:
    worst_cams: str = ""  # gradcam, gradcam++, layercam or eigencam: also val_worst_cams.png (needs grad-cam); "": off


@dataclass
class ClassifyConfig:
    task: Literal["classify"] = "classify"
    data: ClassifyData = field(default_factory=ClassifyData)
    model: ClassifyModel = field(default_factory=ClassifyModel)
    loss: ClassifyLoss = field(default_factory=ClassifyLoss)
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(strategy="auto"))  # chosen from the data
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)  # train on a teacher's soft targets too
    eval: ClassifyEval = field(default_factory=ClassifyEval)

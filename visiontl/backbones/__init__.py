"""The backbone registry: ``create_backbone(name, weights=...)`` and ``list_backbones()``."""
from __future__ import annotations

from pathlib import Path

from ..registry import Registry
from . import timm_backbones, torchvision_backbones
from .base import Backbone, FeatureInfo, Preprocess, Preprocessing, freeze, set_bn_eval
from .weights import WeightsFile, WeightsUnavailable, availability, load_state_dict, resolve

BACKBONES: Registry = Registry("backbone")
for _name, _builder in torchvision_backbones.BUILDERS.items():
    BACKBONES.register(_name, _builder)

WEIGHTS: dict[str, list[WeightsFile]] = {n: s.files for n, s in torchvision_backbones.SPECS.items()}


def create_backbone(name: str, *, weights: str | Path = "imagenet") -> Backbone:
    """Build a registered backbone with its weights and matching preprocessing.

    Args:
        name: a registry key (``visiontl backbones`` lists them) or ``timm:<model>``.
        weights: ``"imagenet"`` (offline first, see :mod:`visiontl.backbones.weights`),
            a named tag (e.g. ``"IMAGENET1K_V2"``, ``"caffe"``), a local file path, or ``"none"``.

    Example::

        bb = create_backbone("mobilenet_v2", weights="imagenet")
        feats = bb(torch.rand(1, 3, 224, 224))   # RGB in [0, 1]; 5 maps, strides 2…32
        bb.feature_info[-1].channels              # 1280
    """
    weights = str(weights)
    if name.startswith("timm:"):
        if not timm_backbones.available():
            raise ImportError("timm:<name> backbones need timm: pip install timm")
        return timm_backbones.build(name[5:], weights)
    builder = BACKBONES.get(name)
    if weights.lower() == "none":
        bb = builder()
        bb.weights_source = "none"
        return bb
    if Path(weights).suffix in {".pth", ".pt", ".bin", ".safetensors"} or Path(weights).exists():
        sd = load_state_dict(weights)
        if any(k.startswith("stages.") for k in sd):  # a saved visiontl Backbone
            bb = builder()
            bb.load_state_dict(sd, strict=True)
        else:  # a torchvision-layout file
            bb = builder(state_dict=sd, source=weights)
        bb.weights_source = f"file:{weights}"
        return bb
    sd, wf, source = resolve(name, WEIGHTS[name], weights)
    bb = builder(state_dict=sd, preprocessing=wf.preprocessing, source=source)
    bb.weights_source = source
    return bb


def list_backbones() -> list[dict]:
    """Every registered backbone with the availability of its pretrained weights right now."""
    rows = []
    for name in BACKBONES:
        files = WEIGHTS[name]
        rows.append({"name": name, "weights": availability(files), "tags": sorted({f.tag for f in files})})
    if timm_backbones.available():
        rows.append({"name": "timm:<model>", "weights": "via timm (hub cache or download)", "tags": []})
    return rows


__all__ = [
    "BACKBONES", "Backbone", "FeatureInfo", "Preprocess", "Preprocessing", "WeightsUnavailable",
    "create_backbone", "freeze", "list_backbones", "set_bn_eval",
]
